"""pyroute2's package without its eager ``__init__`` until a top-level name is used.

``import pyroute2.netlink.generic`` runs ``pyroute2/__init__.py`` first, and that
imports every part of the library (IPDB, NDB, conntrack, ethtool, WireGuard, ...):
0.3 s on a host, about 10 s on the VM tier's emulated CPU, in every process that
talks to itm_mod or itm_queue. libitm needs only ``pyroute2.netlink``.
:func:`install` registers the package module without running its ``__init__``:
submodules import as usual, and the first use of a name that only ``__init__``
defines (``pyroute2.IPRoute``, ``from pyroute2 import NDB``) runs it then, so
code that wants the whole library still gets it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def install() -> None:
    """Register the lazy ``pyroute2`` package, unless pyroute2 is imported already."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # not installed: the import that follows says so
    loader = spec.loader
    mod = importlib.util.module_from_spec(spec)
    loaded = False

    def __getattr__(name: str) -> object:  # PEP 562
        nonlocal loaded
        if not name.startswith("__"):
            # `from pyroute2 import config`: a submodule, without the rest
            try:
                found = importlib.util.find_spec(f"pyroute2.{name}")
            except (ImportError, ValueError):
                found = None
            if found is not None:
                return importlib.import_module(f"pyroute2.{name}")
        if loaded:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")
        loaded = True
        loader.exec_module(mod)  # the real __init__, in the same module object
        if name in mod.__dict__:
            return mod.__dict__[name]
        raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["pyroute2"] = mod


__all__ = ["install"]
