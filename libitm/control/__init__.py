"""The control plane of itm_mod: its generic netlink family, from Python.

`ItmControl` lists the registered applications with their counters, enables,
disables and reorders them, and attaches itm_mod's hooks to a network
namespace.  The message classes in `itm_spec` are generated from spec/itm.yaml.
`libitm.control.queue` speaks itm_queue's family, `libitm.control.route`
itm_route's (itmRoute's kernel data path).
"""

from libitm.control.lazy_pyroute2 import install as _lazy_pyroute2

_lazy_pyroute2()  # before the first pyroute2 import: only pyroute2.netlink is needed

from libitm.control.client import App, ItmControl, ItmControlError, ItmNotLoaded  # noqa: E402

__all__ = ["App", "ItmControl", "ItmControlError", "ItmNotLoaded"]
