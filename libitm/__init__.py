"""libitm — the itmBench user-space API (the 2004 paper's API, in Python).

Quick start::

    import libitm
    from libitm import Hook, Interest, ItmInfo, Verdict

    def drop_odd(where, cls, pkt):
        return Verdict.DROP if pkt.dport % 2 else Verdict.ACCEPT

    info = ItmInfo("dropodd", Interest(protocol="udp"), class_func=lambda pkt: 1,
                   process_func=drop_odd)
    libitm.register_hook(Hook.IP_IN, info)
    libitm.run(backend="nfqueue")

The module-level functions act on a default :class:`ItmLoop`; create your own
``ItmLoop`` to run several independent loops.
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
from .timers import TimerHandle
from .verdict import Verdict

__all__ = [
    "BACKENDS",
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


def register_timer(fn: Callable[[], object], interval: float) -> TimerHandle:
    """``itm_register_timer``: call ``fn()`` every ``interval`` seconds."""
    return get_loop().register_timer(fn, interval)


def unregister_timer(handle: TimerHandle) -> None:
    """``itm_unregister_timer``: stop a timer."""
    get_loop().unregister_timer(handle)


def run(
    backend: str | None = None,
    *,
    duration: float | None = None,
    strict: bool | None = None,
    **options: Any,
) -> None:
    """Run the default loop (``backend``: auto, kernel, nfqueue or offline).

    The default loop is discarded afterwards, so a later ``register_hook``
    starts a fresh one.
    """
    global _default
    loop = get_loop()
    if backend is not None or options:
        loop.set_backend(backend or "auto", **options)
    if strict is not None:
        loop.strict = strict
        loop.dispatcher.strict = strict
        loop.timers.strict = strict
    try:
        loop.run(duration=duration)
    finally:
        _default = None
