"""An application's registration (``struct itm_info``) and the class-based form."""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .epoch import bump
from .hooks import Hook
from .interest import Interest
from .packet import Packet
from .verdict import Verdict

LABEL_MAX = 31  # ITM_LABEL_MAX - 1 in the uapi header
# the whole label (fullmatch: ``$`` would let a trailing newline through)
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: ``struct itm_info.priority`` is an s32 (kernel/include/itm.h); itmtool's checks
#: (``new``, ``priority``) use these too
PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1

#: ``class_func(where, pkt) -> class`` (the paper's shape; ``class_func(pkt)`` also works)
ClassFunc = Callable[..., object]
#: ``log_func(where, cls, pkt)`` (``log_func(cls, pkt)`` also works)
LogFunc = Callable[..., object]
#: ``process_func(where, cls, pkt) -> Verdict`` (``NF_ACCEPT``/``NF_DROP``, ``None``: accept)
ProcessFunc = Callable[[Hook, int, Packet], "Verdict | int | None"]
#: ``update_func(where, cls, pkt)`` (``update_func(cls, pkt)`` also works)
UpdateFunc = Callable[..., object]
#: ``control_func(where, cls, pkt)`` (``control_func(cls, pkt)`` also works)
ControlFunc = Callable[..., object]
TimerFunc = Callable[..., object]

# the arity of each callback in the shape without ``where`` (libitm before issue 17)
_WITHOUT_WHERE = {"class_func": 1, "log_func": 2, "update_func": 2, "control_func": 2}
# the parameters each callback is called with (the paper's shape)
_PARAMETERS = {
    "class_func": "(where, pkt)",
    "log_func": "(where, cls, pkt)",
    "process_func": "(where, cls, pkt)",
    "update_func": "(where, cls, pkt)",
    "control_func": "(where, cls, pkt)",
}


def _signature(fn: Callable[..., object]) -> inspect.Signature | None:
    """``fn``'s signature; None if Python cannot read it (some builtins)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _required_positional(fn: Callable[..., object]) -> int | None:
    """How many positional arguments ``fn`` requires; None if it takes ``*args`` or
    its signature cannot be read."""
    sig = _signature(fn)
    if sig is None:
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


def where_first(name: str, fn: Callable[..., object] | None) -> Callable[..., object] | None:
    """The callback ``name`` as the packet loops call it: ``where`` first.

    The paper's shape (``class_func(where, pkt)``, ``log_func(where, cls, pkt)``,
    ...) is returned as it is. A callback written without ``where``
    (``class_func(pkt)``, ``log_func(cls, pkt)``: libitm's shape before
    issue 17), recognised once here by the number of positional arguments it
    requires, is wrapped so that it is called without it.
    """
    if fn is None:
        return None
    legacy = _WITHOUT_WHERE.get(name)
    if legacy is None or _required_positional(fn) != legacy:
        return fn
    if legacy == 1:

        def class_without_where(where: Hook, pkt: Packet, _f: Callable[..., object] = fn) -> object:
            return _f(pkt)

        return class_without_where

    def without_where(where: Hook, cls: int, pkt: Packet, _f: Callable[..., object] = fn) -> object:
        return _f(cls, pkt)

    return without_where


def check_callback(name: str, fn: Callable[..., object] | None) -> None:
    """Refuse callback ``name`` if it cannot be called as the packet loops call it
    (:class:`TypeError`): with the paper's parameters, or for a callback without
    ``where`` (see :func:`where_first`), with the others. A callable whose
    signature Python cannot read is accepted."""
    if fn is None:
        return
    if not callable(fn):
        raise TypeError(f"{name} must be callable or None, not {type(fn).__name__}")
    sig = _signature(fn)
    if sig is None:
        return
    params = _PARAMETERS[name]
    count = params.count(",") + 1
    legacy = _WITHOUT_WHERE.get(name)
    if legacy is not None and _required_positional(fn) == legacy:
        count = legacy  # called without where
    try:
        sig.bind(*range(count))
    except TypeError:
        shapes = params
        if legacy is not None:
            shapes += " or, without where, (" + params.split(", ", 1)[1]
        fname = getattr(fn, "__qualname__", None) or type(fn).__name__
        raise TypeError(f"{name} must take the parameters {shapes}, not {fname}{sig}") from None


def check_priority(priority: int) -> int:
    """Validate an application's priority: an int in the range of the kernel's s32."""
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"priority must be an int, not {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"priority {priority} is out of range {PRIORITY_MIN}..{PRIORITY_MAX}"
            " (an s32, as itm_mod's)"
        )
    return priority


def check_label(label: str) -> str:
    """Validate an application label (also used for rule chain names)."""
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label) or len(label) > LABEL_MAX:
        raise ValueError(
            f"label {label!r} must be 1..{LABEL_MAX} characters of letters, digits, '_', '.', '-'"
            " starting with a letter or digit"
        )
    return label


@dataclass
class AppCounters:
    """Per-application counters (``accepted`` is every packet of interest not dropped)."""

    packets: int = 0
    classified: int = 0
    dropped: int = 0
    modified: int = 0
    errors: int = 0

    @property
    def accepted(self) -> int:
        """Packets of interest that were accepted (a callback error accepts too)."""
        return self.packets - self.dropped

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {
            "packets": self.packets,
            "classified": self.classified,
            "accepted": self.accepted,
            "dropped": self.dropped,
            "modified": self.modified,
            "errors": self.errors,
        }


@dataclass(eq=False)
class ItmInfo:
    """One application's registration: label, interest and the five callbacks.

    Callbacks run in the paper's order for each packet of interest, each with
    the hook point ``where`` first, as in the paper::

        cls = class_func(where, pkt)       # no class_func: class 0
        log_func(where, cls, pkt)
        v = process_func(where, cls, pkt)  # only when cls != 0; None means accept
        update_func(where, cls, pkt)
        control_func(where, cls, pkt)

    Any callback may be None. A callback without ``where`` (``class_func(pkt)``,
    ``log_func(cls, pkt)``, ...: libitm's shape before) still works: the
    shape is read once, when the callback is set (see :func:`where_first`), and
    a callback that cannot take the parameters it would be called with is
    refused then (:class:`TypeError`, see :func:`check_callback`).

    ``priority``: lower runs first at a hook (ties in registration order); an
    int in -2**31..2**31-1 (s32, as itm_mod's), checked when set.
    ``needs_payload``: the backend must hand over the whole packet (needed to
    read the payload or to *modify* the packet; by default nfqueue copies only
    the first 128 bytes).
    While the application is registered (:attr:`registered`), ``priority``
    may change and applies from the next packet on every backend (the kernel
    backend moves it in itm_mod's run list; with workers it is refused,
    :class:`RuntimeError`). ``interest``, ``label``, ``needs_payload`` and
    ``hook`` are fixed then: what captures its packets was installed from
    them, and assigning another value raises :class:`RuntimeError`;
    unregister, change it and register again (also from a callback: it
    applies from the next packet). So is whether ``process_func`` is None
    (an observer, fed copies) or a function (a decider, whose packets are
    queued): one function may replace another, but None for a function or a
    function for None raises :class:`RuntimeError`.
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
        if name == "label":
            check_label(value)  # type: ignore[arg-type]
            self._check_fixed(name, value)
        elif name == "priority":
            check_priority(value)  # type: ignore[arg-type]
            self._apply_priority(value)  # type: ignore[arg-type]
        elif name == "enabled":
            self._apply_enabled(value)
        elif name == "interest":
            self._check_interest(value)
        elif name in _FIXED:
            self._check_fixed(name, value)
        elif name in _CALLBACKS:
            check_callback(name, value)  # type: ignore[arg-type]
            if name == "process_func":
                self._check_kind(value)
            # what the packet loops call: where first (see where_first)
            object.__setattr__(self, "wf_" + name, where_first(name, value))  # type: ignore[arg-type]
        # the packet loops cache callbacks and ``enabled`` (see libitm.epoch)
        object.__setattr__(self, name, value)
        bump()

    def _check_interest(self, interest: object) -> None:
        """Refuse what is not an :class:`Interest`, and another interest than the
        current one while registered (its capture was installed for the current)."""
        if not isinstance(interest, Interest):
            raise TypeError("interest must be a libitm.Interest")
        old = self.__dict__.get("interest")
        if old is not None and interest != old and self.registered:
            raise RuntimeError(
                f"the interest of application {self.label!r} cannot change while it is "
                f"registered: its capture was installed for {old}; to change it, "
                "unregister it (unregister_hook), set the interest and register it again"
            )

    def _check_fixed(self, name: str, value: object) -> None:
        """Refuse another ``label``, ``needs_payload`` or ``hook`` while registered:
        what captures the application's packets was installed from the current one."""
        old = self.__dict__.get(name, _UNSET)
        if old is _UNSET or value == old or not self.registered:
            return
        label = self.__dict__.get("label")
        again = f"set {name} and register it again"
        if name == "hook":
            again = "register it at the other hook"
        raise RuntimeError(
            f"the {name} of application {label!r} cannot change while it is "
            f"registered: {_FIXED_WHY[name]}; to change it, unregister it "
            f"(unregister_hook) and {again}"
        )

    def _check_kind(self, process_func: object) -> None:
        """Refuse, while registered, a ``process_func`` that turns an observer (None)
        into a decider or back: what captures its packets was chosen by it (copies
        for an observer, a queue for a decider). One function for another is fine."""
        old = self.__dict__.get("process_func", _UNSET)
        if old is _UNSET or (old is None) == (process_func is None) or not self.registered:
            return
        label = self.__dict__.get("label")
        now, then = ("an observer", "a decider") if old is None else ("a decider", "an observer")
        raise RuntimeError(
            f"the process_func of application {label!r} cannot change "
            f"{'from None' if old is None else 'to None'} while it is registered: it is "
            f"{now} (its packets {'copied' if old is None else 'queued'} since it was "
            f"registered) and would become {then}; to change it, unregister it "
            "(unregister_hook), set process_func and register it again (another "
            "function in place of the current one is allowed)"
        )

    def _apply_priority(self, priority: int) -> None:
        """A registered application's new priority goes to its loop first, which
        applies it to its backend (itm_mod's run list) or raises; the dispatcher
        takes the new order from the next packet (the epoch moves)."""
        old = self.__dict__.get("priority")
        if old is None or priority == old:
            return
        holder = self._holder()
        if holder is not None and holder._holds(self):
            holder._priority_changes(self, priority)

    def _apply_enabled(self, enabled: object) -> None:
        """A registered application enabled or disabled: its loop applies it to its
        backend first (the kernel backend: itm_mod's ``app-set``, so that itm_mod
        skips a disabled application) or raises; the dispatcher skips a disabled
        application from the next packet (the epoch moves)."""
        old = self.__dict__.get("enabled")
        if old is None or bool(enabled) == bool(old):
            return
        holder = self._holder()
        if holder is not None and holder._holds(self):
            holder._enabled_changes(self, bool(enabled))

    def _holder(self) -> Holder | None:
        """The loop that registered this application last, while it exists."""
        ref = self.__dict__.get("_holder_ref")
        return ref() if ref is not None else None

    @property
    def registered(self) -> bool:
        """True while a loop holds this application: registered there, and that loop
        not closed (its ``interest``, ``label``, ``needs_payload`` and ``hook``
        are then fixed)."""
        holder = self._holder()
        return holder is not None and holder._holds(self)

    if TYPE_CHECKING:
        # the callbacks as the packet loops call them, where first (set by
        # __setattr__; not dataclass fields)
        wf_class_func: Callable[[Hook, Packet], object] | None = field(init=False)
        wf_log_func: Callable[[Hook, int, Packet], object] | None = field(init=False)
        wf_process_func: Callable[[Hook, int, Packet], object] | None = field(init=False)
        wf_update_func: Callable[[Hook, int, Packet], object] | None = field(init=False)
        wf_control_func: Callable[[Hook, int, Packet], object] | None = field(init=False)


_CALLBACKS = ("class_func", "log_func", "process_func", "update_func", "control_func")

#: fixed while registered: what captures the packets was installed from them
_FIXED = ("needs_payload", "hook")
_UNSET = object()
_FIXED_WHY = {
    "label": (
        "its capture is known by it (the nfqueue backend's chain and rule comments, "
        "its itm_queue registration in itm_mod) and it is unique in its loop"
    ),
    "needs_payload": (
        "its queue's copy range (an observer's copy size) was set from it when it was registered"
    ),
    "hook": "its capture was installed at its hook",
}


class Holder(Protocol):
    """What registered an application (an :class:`~libitm.ItmLoop`), as the
    application sees it."""

    def _holds(self, info: ItmInfo) -> bool:
        """True while ``info`` is registered there and that loop is not closed."""

    def _priority_changes(self, info: ItmInfo, priority: int) -> None:
        """Apply ``info``'s new priority to what captures its packets, before it is
        set (:class:`RuntimeError` when it cannot be applied)."""

    def _enabled_changes(self, info: ItmInfo, enabled: bool) -> None:
        """Apply ``info`` being enabled or disabled to what captures its packets,
        before it is set (:class:`RuntimeError` when it cannot be applied)."""


def hold(info: ItmInfo, holder: Holder, app: Application | None = None) -> None:
    """Note that ``holder`` (kept weakly) registered ``info``, made from ``app`` if
    given; :attr:`ItmInfo.registered` asks it, and a new priority goes to it."""
    object.__setattr__(info, "_holder_ref", weakref.ref(holder))
    if app is not None:
        object.__setattr__(app, "_itm_info", info)


class Application:
    """Class-based form of an application: override any of the five callbacks.

    Set ``label``, ``interest``, ``hook`` (and optionally ``priority`` and
    ``needs_payload``) as class or instance attributes. Callbacks that are not
    overridden are registered as None (no ``class_func`` means class 0, as in
    itm_mod, so ``process_func`` then never runs). Every callback gets
    ``where`` first, as in the paper (an override without it still works).
    As with :class:`ItmInfo`, ``interest``, ``label``, ``needs_payload`` and
    ``hook`` cannot change while the application is registered
    (:class:`RuntimeError`); a new ``priority`` is applied to its registration
    (:attr:`ItmInfo.priority`) from the next packet.
    """

    label: str = "app"
    interest: Interest = Interest()
    hook: Hook | str = Hook.POST_ROUTING
    priority: int = 0
    needs_payload: bool = False

    def __setattr__(self, name: str, value: object) -> None:
        info: ItmInfo | None = self.__dict__.get("_itm_info")
        if info is not None and info.registered:
            # what the registration (info) was made from: the same rules apply
            if name == "interest":
                info._check_interest(value)  # another one raises: its capture is installed
            elif name == "hook":
                info._check_fixed(name, Hook.parse(value))  # type: ignore[arg-type]
            elif name in ("label", "needs_payload"):
                info._check_fixed(name, value)
            elif name == "priority":
                info.priority = value  # type: ignore[assignment]  # applied, or raises
        object.__setattr__(self, name, value)

    def class_func(self, *args: Any, **kwargs: Any) -> int:
        """``class_func(where, pkt)``: return the packet's class (0: not classified)."""
        raise NotImplementedError

    def log_func(self, *args: Any, **kwargs: Any) -> None:
        """``log_func(where, cls, pkt)``: log data and update class structures."""
        raise NotImplementedError

    def process_func(self, where: Hook, cls: int, pkt: Packet) -> Verdict | None:
        """Act on the packet; return the verdict."""
        raise NotImplementedError

    def update_func(self, *args: Any, **kwargs: Any) -> None:
        """``update_func(where, cls, pkt)``: class update."""
        raise NotImplementedError

    def control_func(self, *args: Any, **kwargs: Any) -> None:
        """``control_func(where, cls, pkt)``: controller update."""
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
