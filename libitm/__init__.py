"""libitm — the itmBench user-space API (the 2004 paper's API, in Python).

Quick start, in the paper's names::

    import libitm
    from libitm import IP_IN, NF_ACCEPT, NF_DROP, Interest, itm_info

    def drop_odd(where, cls, pkt):
        return NF_DROP if pkt.dport % 2 else NF_ACCEPT

    info = itm_info("dropodd", Interest(protocol="udp"),
                    class_func=lambda where, pkt: 1, process_func=drop_odd)
    libitm.itm_register_hook(IP_IN, info)
    libitm.run(backend="nfqueue")

Every callback gets ``where`` first; the verdicts are netfilter's values.
``register_hook``/``ItmInfo``/``Hook.IP_IN``/``Verdict.ACCEPT`` are the same
things under libitm's own names. The module-level functions act on a
default :class:`ItmLoop`; create your own ``ItmLoop`` to run several
independent loops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backends import BACKENDS, BackendUnavailable, LabelInUse, kernel_available
from .hooks import Hook
from .info import AppCounters, Application, ItmInfo
from .interest import Interest
from .loop import ItmLoop
from .packet import Packet, PacketError, PacketTruncatedError
from .timers import HZ, TimerHandle, jiffies_to_seconds, with_data
from .verdict import NF_ACCEPT, NF_DROP, Verdict

# the paper's names (the same objects)
itm_info = ItmInfo
PRE_ROUTE = Hook.PRE_ROUTE
IP_IN = Hook.IP_IN
IP_FORWARD = Hook.IP_FORWARD
IP_OUT = Hook.IP_OUT
IP_POST_ROUTE = Hook.IP_POST_ROUTE

__all__ = [
    "BACKENDS",
    "HZ",
    "IP_FORWARD",
    "IP_IN",
    "IP_OUT",
    "IP_POST_ROUTE",
    "NF_ACCEPT",
    "NF_DROP",
    "PRE_ROUTE",
    "AppCounters",
    "Application",
    "BackendUnavailable",
    "Hook",
    "Interest",
    "ItmInfo",
    "ItmLoop",
    "LabelInUse",
    "Packet",
    "PacketError",
    "PacketTruncatedError",
    "TimerHandle",
    "Verdict",
    "get_loop",
    "itm_info",
    "itm_register_hook",
    "itm_register_timer",
    "itm_unregister_hook",
    "itm_unregister_timer",
    "kernel_available",
    "register_hook",
    "register_timer",
    "run",
    "unregister_hook",
    "unregister_timer",
]

_default: ItmLoop | None = None


def get_loop() -> ItmLoop:
    """The default loop used by the module-level functions."""
    global _default
    if _default is None:
        _default = ItmLoop()
    return _default


def register_hook(where: Hook | str | int, info: ItmInfo | Application) -> ItmInfo:
    """``itm_register_hook``: register an application at ``where`` on the default loop."""
    return get_loop().register_hook(where, info)


def unregister_hook(info: ItmInfo) -> None:
    """``itm_unregister_hook``: remove an application from the default loop."""
    get_loop().unregister_hook(info)


_NO_DATA: Any = object()


def register_timer(
    fn: Callable[..., object],
    interval: float | None = None,
    *,
    jiffies: int | None = None,
    data: object = _NO_DATA,
) -> TimerHandle:
    """Call ``fn()`` every ``interval`` seconds (or every ``jiffies`` ticks of
    :data:`HZ`); with ``data``, ``fn(data)``."""
    if (interval is None) == (jiffies is None):
        raise TypeError("register_timer needs an interval in seconds or jiffies=, not both")
    seconds = jiffies_to_seconds(jiffies) if jiffies is not None else interval
    assert seconds is not None
    call = fn if data is _NO_DATA else with_data(fn, data)
    return get_loop().register_timer(call, seconds)


def unregister_timer(handle: TimerHandle) -> None:
    """``itm_unregister_timer``: stop a timer."""
    get_loop().unregister_timer(handle)


def itm_register_timer(fn: Callable[..., object], timeout: int, data: object = None) -> TimerHandle:
    """The paper's ``itm_register_timer(fn, timeout)``: call ``fn`` every ``timeout``
    jiffies (:data:`HZ` per second, so ``timeout / HZ`` seconds).

    A function that takes one argument, the paper's ``fn(data)``, is called
    with ``data``; one that takes none is called as ``fn()``.
    """
    return get_loop().register_timer(with_data(fn, data), jiffies_to_seconds(timeout))


#: the paper's ``itm_register_hook(where, info)`` (the same function)
itm_register_hook = register_hook
#: the paper's ``itm_unregister_hook(info)`` (the same function)
itm_unregister_hook = unregister_hook
#: the paper's ``itm_unregister_timer(handle)`` (the same function)
itm_unregister_timer = unregister_timer


def run(
    backend: str | None = None,
    *,
    duration: float | None = None,
    strict: bool | None = None,
    **options: Any,
) -> None:
    """Run the default loop (``backend``: auto, kernel, nfqueue or offline).

    The default loop is discarded once it ran, so a later ``register_hook``
    starts a fresh one. A run whose backend could not start (e.g.
    :class:`BackendUnavailable` for ``kernel``) installed nothing: the
    registrations stay, and ``run`` may be called again with another backend.
    """
    global _default
    loop = get_loop()
    if backend is not None or options:
        loop.set_backend("auto" if backend is None else backend, **options)
    if strict is not None:
        loop.strict = strict
        loop.dispatcher.strict = strict
        loop.timers.strict = strict
    try:
        loop.run(duration=duration)
    finally:
        if loop.closed:
            _default = None
