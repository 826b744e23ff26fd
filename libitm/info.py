"""An application's registration (``struct itm_info``) and the class-based form."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .epoch import bump
from .hooks import Hook
from .interest import Interest
from .packet import Packet
from .verdict import Verdict

LABEL_MAX = 31  # ITM_LABEL_MAX - 1 in the uapi header
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

ClassFunc = Callable[[Packet], int]
LogFunc = Callable[[int, Packet], object]
ProcessFunc = Callable[[Hook, int, Packet], "Verdict | int | None"]
UpdateFunc = Callable[[int, Packet], object]
ControlFunc = Callable[[int, Packet], object]
TimerFunc = Callable[[], object]


def check_label(label: str) -> str:
    """Validate an application label (also used for rule chain names)."""
    if not isinstance(label, str) or not _LABEL_RE.match(label) or len(label) > LABEL_MAX:
        raise ValueError(
            f"label {label!r} must be 1..{LABEL_MAX} characters of letters, digits, '_', '.', '-'"
            " starting with a letter or digit"
        )
    return label


@dataclass
class AppCounters:
    """Per-application counters."""

    packets: int = 0
    classified: int = 0
    accepted: int = 0
    dropped: int = 0
    modified: int = 0
    errors: int = 0

    def add(
        self, packets: int, classified: int, accepted: int, dropped: int, modified: int
    ) -> None:
        """Add counts kept elsewhere for a while (a backend's packet loop)."""
        self.packets += packets
        self.classified += classified
        self.accepted += accepted
        self.dropped += dropped
        self.modified += modified

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return dict(self.__dict__)


@dataclass(eq=False)
class ItmInfo:
    """One application's registration: label, interest and the five callbacks.

    Callbacks run in the paper's order for each packet of interest::

        cls = class_func(pkt)              # no class_func: class 0
        log_func(cls, pkt)
        v = process_func(where, cls, pkt)  # only when cls != 0; None means accept
        update_func(cls, pkt)
        control_func(cls, pkt)

    Any callback may be None. ``priority``: lower runs first at a hook (ties in
    registration order). ``needs_payload``: the backend must hand over the
    whole packet (needed to read the payload or to *modify* the packet; by
    default nfqueue copies only the first 128 bytes).
    """

    label: str
    interest: Interest = field(default_factory=Interest)
    class_func: ClassFunc | None = None
    log_func: LogFunc | None = None
    process_func: ProcessFunc | None = None
    update_func: UpdateFunc | None = None
    control_func: ControlFunc | None = None
    priority: int = 0
    needs_payload: bool = False
    hook: Hook | None = None
    enabled: bool = True
    counters: AppCounters = field(default_factory=AppCounters)

    def __setattr__(self, name: str, value: object) -> None:
        # the packet loops cache callbacks and ``enabled`` (see libitm.epoch)
        object.__setattr__(self, name, value)
        bump()

    def __post_init__(self) -> None:
        check_label(self.label)
        if not isinstance(self.interest, Interest):
            raise TypeError("interest must be a libitm.Interest")
        for name in ("class_func", "log_func", "process_func", "update_func", "control_func"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None")


_CALLBACKS = ("class_func", "log_func", "process_func", "update_func", "control_func")


class Application:
    """Class-based form of an application: override any of the five callbacks.

    Set ``label``, ``interest``, ``hook`` (and optionally ``priority`` and
    ``needs_payload``) as class or instance attributes. Callbacks that are not
    overridden are registered as None (no ``class_func`` means class 0, as in
    itm_mod, so ``process_func`` then never runs).
    """

    label: str = "app"
    interest: Interest = Interest()
    hook: Hook | str = Hook.POST_ROUTING
    priority: int = 0
    needs_payload: bool = False

    def class_func(self, pkt: Packet) -> int:
        """Return the packet's class (0: not classified)."""
        raise NotImplementedError

    def log_func(self, cls: int, pkt: Packet) -> None:
        """Log data and update class structures."""
        raise NotImplementedError

    def process_func(self, where: Hook, cls: int, pkt: Packet) -> Verdict | None:
        """Act on the packet; return the verdict."""
        raise NotImplementedError

    def update_func(self, cls: int, pkt: Packet) -> None:
        """Class update."""
        raise NotImplementedError

    def control_func(self, cls: int, pkt: Packet) -> None:
        """Controller update."""
        raise NotImplementedError

    def timers(self) -> list[tuple[TimerFunc, float]]:
        """Periodic events ``(fn, interval_seconds)`` to register with the application."""
        return []

    def to_info(self) -> ItmInfo:
        """The :class:`ItmInfo` for this application (overridden callbacks only)."""
        kw: dict[str, Any] = {}
        for name in _CALLBACKS:
            if getattr(type(self), name) is not getattr(Application, name):
                kw[name] = getattr(self, name)
        return ItmInfo(
            label=self.label,
            interest=self.interest,
            priority=self.priority,
            needs_payload=self.needs_payload,
            **kw,
        )
