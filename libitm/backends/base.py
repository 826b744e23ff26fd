"""What every backend provides to :class:`libitm.loop.ItmLoop`, and what it sees of it."""

from __future__ import annotations

import abc
import logging
import select
from typing import ClassVar, NoReturn, Protocol

from ..dispatch import Dispatcher
from ..hooks import Hook
from ..info import ItmInfo
from ..spelling import unknown_names
from ..timers import TimerQueue

log = logging.getLogger("libitm")


class LoopHost(Protocol):
    """What a backend sees of the loop that runs it (the loop itself, without an
    import of :mod:`libitm.loop`: the loop imports the backends, not the reverse)."""

    strict: bool
    dispatcher: Dispatcher
    timers: TimerQueue

    @property
    def applications(self) -> list[ItmInfo]:
        """The registered applications."""

    @property
    def stopping(self) -> bool:
        """True once :meth:`ItmLoop.stop` was asked for."""


class Watched(Protocol):
    """A transport whose descriptors a backend's epoll set watches
    (:class:`~libitm.transport.QueueTransport`, ``LogTransport``)."""

    @property
    def is_open(self) -> bool:
        """True while its socket is open."""

    def fds(self) -> tuple[int, ...]:
        """Its socket, and the eventfd readable while it keeps packets read during
        a config request (:mod:`libitm.transport.deferred`)."""


def watch(epoll: select.epoll, transport: Watched) -> None:
    """Add ``transport``'s descriptors to ``epoll``, which the loop polls: packets
    in its socket and packets it kept both make the backend readable."""
    for fd in transport.fds():
        epoll.register(fd, select.EPOLLIN)


def epoll_over(old: select.epoll | None, transports: tuple[Watched, ...]) -> select.epoll:
    """A new epoll descriptor for the loop to poll, watching the open ``transports``
    (:func:`watch`); ``old`` is closed. Made anew where the sockets are new (a
    worker's, after the fork)."""
    if old is not None:
        old.close()
    epoll = select.epoll()
    for t in transports:
        if t.is_open:
            watch(epoll, t)
    return epoll


#: the values of the nfqueue backend's ``observer_copies`` option (accepted, and
#: without a meaning, by the kernel backend)
OBSERVER_COPIES = ("auto", "ring", "nflog")


def check_observer_copies(options: dict[str, object]) -> None:
    """Refuse an ``observer_copies`` that is none of :data:`OBSERVER_COPIES`."""
    value = options.get("observer_copies", "auto")
    if value not in OBSERVER_COPIES:
        raise ValueError(
            f"observer_copies must be one of {', '.join(OBSERVER_COPIES)}, not {value!r}"
        )


def refuse_with_workers(info: ItmInfo, hint: str = "", field: str = "priority") -> NoReturn:
    """A priority change (or another ``field``'s) after the workers were forked:
    each worker process runs its own copy of the applications, so it would
    reach one worker's only."""
    raise RuntimeError(
        f"the {field} of application {info.label!r} cannot change while workers run: "
        "each worker process has its own copy of the applications, and the change "
        "would reach one worker only; set it before the loop starts" + hint
    )


def observer_queued(info: ItmInfo, workers: int) -> None:
    """Say that observer ``info`` is queued to the workers like a decider: with
    workers every application's packets wait in a queue for one of them, so an
    observer delays them (with one process it gets copies and delays nothing)."""
    log.warning(
        "app %s has no process_func (an observer), but with workers=%d every application "
        "is queued to the workers: its packets wait for it as a decider's do; with one "
        "process (workers=1) an observer gets copies and delays nothing",
        info.label,
        workers,
    )


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (module not loaded, not root, ...)."""


def check_int(name: str, value: object, low: int, high: int) -> None:
    """Refuse an option that is not an int (a bool neither) in ``low``..``high``."""
    if value.__class__ is not int:
        raise TypeError(f"{name} must be an int in {low}..{high}, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {value}")


class Backend(abc.ABC):
    """A source of packets and a sink for verdicts.

    The loop calls :meth:`process` when a ``live`` backend's :meth:`fileno` is
    readable, and a recorded one's (``live`` False: the offline backend)
    :meth:`process` again and again until it is ``exhausted``.
    """

    name: str = "?"
    #: the options a backend of this kind takes: name -> (low, high) of an int
    #: option, or None for another kind of value (:meth:`check_options`)
    OPTIONS: ClassVar[dict[str, tuple[int, int] | None]] = {}
    live: bool = True
    #: a recorded source that has nothing more to give
    exhausted: bool = False
    #: the run failed (:meth:`abort`)
    aborted: bool = False
    #: this process only supervises workers: the loop runs no timers or readers
    #: here, :meth:`process` restarts the workers that ended
    supervises: bool = False

    @classmethod
    def check_options(cls, options: dict[str, object]) -> None:
        """Refuse what this kind of backend would refuse in ``options`` (an unknown
        name: :class:`TypeError`; an int option out of range: :class:`ValueError`),
        before anything is opened: :class:`~libitm.ItmLoop` checks its options
        when it is made, not when it starts."""
        unknown = unknown_names(options, cls.OPTIONS)
        if unknown:
            raise TypeError(f"unknown {cls.name} backend options: {unknown}")
        for key, limits in cls.OPTIONS.items():
            if limits is not None and key in options:
                check_int(key, options[key], *limits)

    @abc.abstractmethod
    def start(self, loop: LoopHost) -> None:
        """Open sockets and install the registrations already known to ``loop``."""

    @abc.abstractmethod
    def install(self, where: Hook, info: ItmInfo) -> None:
        """Start delivering the packets of ``info``'s interest at ``where``."""

    @abc.abstractmethod
    def uninstall(self, info: ItmInfo) -> None:
        """Stop delivering packets for ``info``."""

    def change_priority(self, info: ItmInfo, priority: int) -> None:
        """``info``, registered and installed, is about to get ``priority``: apply it
        to what captures its packets, or raise :class:`RuntimeError` and it is not
        set. By default there is nothing to do: the loop's dispatcher runs a
        hook's applications in their current order from the next packet."""
        del info, priority

    def change_enabled(self, info: ItmInfo, enabled: bool) -> None:
        """``info``, registered and installed, is about to be enabled or disabled:
        apply it to what captures its packets, or raise :class:`RuntimeError` and
        it is not set. By default there is nothing to do: the loop's dispatcher
        skips a disabled application from the next packet."""
        del info, enabled

    def fileno(self) -> int:
        """A file descriptor that becomes readable when packets wait."""
        raise BackendUnavailable(f"the {self.name} backend has no file descriptor")

    def process(self) -> int:
        """Handle every packet waiting now, without blocking; return how many."""
        return 0

    def abort(self) -> None:
        """The run failed: :meth:`close` then throws away what is half written."""
        self.aborted = True

    @abc.abstractmethod
    def now(self) -> float:
        """The backend's clock in seconds (monotonic, or trace time offline)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove everything installed and release resources (idempotent)."""

    def counters(self) -> dict[str, int]:
        """Backend-level counters."""
        return {}


class LabelInUse(BackendUnavailable):
    """Another live process runs an application with the same label here.

    ``label`` is the label, ``pid`` the process that holds it (its rules stay).
    """

    def __init__(self, label: str, pid: int) -> None:
        super().__init__(
            f"label {label!r} is in use by process {pid} in this network namespace "
            "(stop it, or choose another label)"
        )
        self.label = label
        self.pid = pid
