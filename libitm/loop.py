"""The event loop that runs applications: registrations, timers, a backend, readers.

One loop per process: the backend (the packet source), the timers and any
other file descriptors the program watches (:meth:`ItmLoop.add_reader`), as
itmroute does with its UDP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

from .backends import BACKENDS, check_options, make_backend
from .backends.base import Backend
from .dispatch import Dispatcher
from .hooks import Hook
from .info import Application, ItmInfo, hold
from .timers import TimerHandle, TimerQueue

#: the loop each registered ItmInfo belongs to (by id: an ItmInfo is not hashable)
_OWNER: dict[int, weakref.ref[ItmLoop]] = {}


def _check_backend(backend: object) -> None:
    """Refuse an unknown backend name at once (not only when an application starts it)."""
    if isinstance(backend, str) and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(backend, (str, Backend)):
        raise TypeError(f"backend must be a name ({', '.join(BACKENDS)}) or a Backend")


class ItmLoop:
    """Runs registered applications on one backend in one thread.

    ``backend`` is ``"auto"`` (kernel when the itm_queue module is loaded, else
    nfqueue), ``"nfqueue"``, ``"offline"``, ``"kernel"`` or a :class:`Backend`;
    ``options`` go to the backend (for example ``pcap=``/``out=`` offline).
    ``strict=True`` re-raises callback exceptions and stops the loop instead of
    accepting the packet and carrying on.

    The backend starts with the first application (a loop that has none yet
    runs its timers and readers only). For asyncio, use :meth:`attach_asyncio`.
    """

    def __init__(
        self, backend: str | Backend = "auto", *, strict: bool = False, **options: Any
    ) -> None:
        _check_backend(backend)
        if isinstance(backend, str):
            check_options(backend, options)  # now, not when the loop starts
        self.strict = strict
        self._backend_spec = backend
        self._options = options
        self._backend: Backend | None = None
        self.dispatcher = Dispatcher(strict=strict)
        self.timers = TimerQueue(strict=strict)
        self._infos: list[ItmInfo] = []
        self._readers: dict[int, Callable[[], object]] = {}
        # written by stop(): wakes a run() that waits in select (signal handlers too)
        self._wake: tuple[int, int] | None = None
        self._wake_pid = 0
        self._started = False
        self._be_started = False
        self._stopping = False
        self._closed = False
        self._running = False  # inside run(): its callbacks must not run it again

    # ------------------------------------------------------------- API
    def register_hook(self, where: Hook | str | int, info: ItmInfo | Application) -> ItmInfo:
        """Register an application at ``where``; returns its :class:`ItmInfo`.

        An :class:`Application` instance is turned into an ``ItmInfo`` and its
        ``timers()`` are registered too.
        """
        app: Application | None = None
        if isinstance(info, Application):
            app = info
            info = app.to_info()
        if not isinstance(info, ItmInfo):
            raise TypeError("register_hook needs an ItmInfo or an Application")
        hook = Hook.parse(where)
        if any(i is info for i in self._infos):
            raise ValueError(f"application {info.label!r} is already registered")
        if any(i.label == info.label for i in self._infos):
            raise ValueError(f"an application labelled {info.label!r} is already registered")
        owner = _OWNER.get(id(info))
        other = owner() if owner is not None else None
        if other is not None and other is not self and not other._closed:
            raise ValueError(
                f"application {info.label!r} is registered in another ItmLoop; "
                "unregister it there first (or build a second ItmInfo)"
            )
        timers = list(app.timers()) if app is not None else []
        added: list[TimerHandle] = []
        info.hook = hook
        self._infos.append(info)
        _OWNER[id(info)] = weakref.ref(self)
        hold(info, self, app)  # its interest is fixed while this loop holds it (and more)
        try:
            self.dispatcher.add(hook, info)
            if self._started:
                if self._be_started:
                    self.backend.install(hook, info)
                else:
                    self._start_backend()  # installs every application, this one too
            for fn, interval in timers:
                added.append(self.register_timer(fn, interval))
        except BaseException:
            # nothing of a failed registration stays (its rules, dispatch, timers)
            if self._be_started:
                with contextlib.suppress(Exception):
                    self.backend.uninstall(info)
            for h in added:
                self.timers.remove(h)
            self._forget(info)
            raise
        return info

    def register_app(self, app: Application) -> ItmInfo:
        """Register an :class:`Application` at its own ``hook``."""
        return self.register_hook(app.hook, app)

    def unregister_hook(self, info: ItmInfo) -> None:
        """Remove an application (its packets are no longer delivered)."""
        if not isinstance(info, ItmInfo):
            raise TypeError(f"unregister_hook needs the ItmInfo register_hook gave, not {info!r}")
        if not any(i is info for i in self._infos):
            raise ValueError(f"application {info.label!r} is not registered")
        if self._be_started:
            self.backend.uninstall(info)
        self._forget(info)

    def register_timer(self, fn: Callable[[], object], interval: float) -> TimerHandle:
        """Call ``fn()`` every ``interval`` seconds of the loop's clock."""
        now = self.now() if self._started else None
        return self.timers.add(fn, interval, now)

    def unregister_timer(self, handle: TimerHandle) -> None:
        """Stop a timer."""
        self.timers.remove(handle)

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable while the loop runs
        (another socket of the program; one callback per descriptor)."""
        if fd < 0:
            raise ValueError("add_reader needs a file descriptor")
        self._readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` (nothing happens if it was not watched)."""
        self._readers.pop(fd, None)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was asked for (also before :meth:`run`: it then
        returns at once)."""
        return self._stopping

    @property
    def closed(self) -> bool:
        """True once the loop ran (or was closed): it cannot run again."""
        return self._closed

    @property
    def applications(self) -> list[ItmInfo]:
        """The registered applications."""
        return list(self._infos)

    @property
    def backend(self) -> Backend:
        """The backend (chosen on first use)."""
        if self._backend is None:
            spec = self._backend_spec
            self._backend = (
                spec if isinstance(spec, Backend) else make_backend(spec, **self._options)
            )
        return self._backend

    def set_backend(self, backend: str | Backend, **options: Any) -> None:
        """Choose the backend before the loop starts."""
        if self._started:
            raise RuntimeError("the loop has already started")
        _check_backend(backend)
        if isinstance(backend, str):
            check_options(backend, options)
        self._backend_spec = backend
        self._options = options
        self._backend = None

    def now(self) -> float:
        """The loop's clock (trace time in the offline backend, else monotonic)."""
        if self._backend is None and not self._recorded():
            return time.monotonic()  # every live backend's clock; not built yet
        return self.backend.now()

    def _recorded(self) -> bool:
        """True when the backend is a recorded source (offline), without building it."""
        spec = self._backend_spec
        if isinstance(spec, Backend):
            return not spec.live
        return spec == "offline" or (spec == "auto" and "pcap" in self._options)

    # ----------------------------------------------------------- running
    def start(self) -> None:
        """Install every registration on the backend (run() does this)."""
        if self._started:
            return
        if self._closed:
            raise RuntimeError("the loop is closed")
        recorded = self._recorded()
        if self._infos or recorded:
            self._start_backend()
        self._started = True
        if not recorded:
            self.timers.start(self.now())

    def _start_backend(self) -> None:
        if not self._be_started:
            self.backend.start(self)
            self._be_started = True

    def fileno(self) -> int:
        """The backend's file descriptor (readable when packets wait; a recorded
        source has none: :class:`BackendUnavailable`)."""
        if self._recorded():
            return self.backend.fileno()
        self.start()
        self._start_backend()
        return self.backend.fileno()

    def next_timeout(self) -> float | None:
        """Seconds until the next timer is due (None: no timer)."""
        d = self.timers.next_deadline()
        if d is None:
            return None
        return max(0.0, d - self.now())

    def handle_events(self) -> int:
        """Handle waiting packets and due timers without blocking; returns packets handled."""
        self.start()
        n = self.backend.process() if self._be_started else 0
        self.timers.run_due(self.now())
        return n

    def attach_asyncio(self, aloop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Run this loop inside an asyncio event loop; returns a function that detaches it.

        The backend's descriptor is watched with ``add_reader`` and timers are
        driven with ``call_later``. Detaching removes the rules (``close``).
        """
        self.start()
        fd = self.fileno()
        handle: list[asyncio.TimerHandle] = []

        def tick() -> None:
            self.timers.run_due(self.now())
            t = self.next_timeout()
            handle[:] = [aloop.call_later(0.25 if t is None else min(t, 0.25), tick)]

        aloop.add_reader(fd, self.handle_events)
        readers = dict(self._readers)
        for rfd, cb in readers.items():
            aloop.add_reader(rfd, cb)
        tick()

        def detach() -> None:
            aloop.remove_reader(fd)
            for rfd in readers:
                aloop.remove_reader(rfd)
            for h in handle:
                h.cancel()
            self.close()

        return detach

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from callbacks, timers and signal handlers:
        a run waiting for packets wakes up)."""
        self._stopping = True
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake[1], b"!")

    def run(self, duration: float | None = None) -> None:
        """Run until :meth:`stop`, ``duration`` seconds, or the end of an offline trace.

        Rules and sockets are removed on return, on an exception, on SIGINT and
        on SIGTERM (which is turned into ``SystemExit`` while the loop runs in the
        main thread, unless the program set its own SIGTERM handler).
        """
        if self._running:
            raise RuntimeError(
                "run() called while this loop runs (from a callback or a timer?): "
                "it cannot run inside itself; call stop() to end it"
            )
        if self._closed:
            raise RuntimeError("this loop has run and is closed; build a new ItmLoop")
        if duration is not None and (
            duration.__class__ not in (int, float) or not math.isfinite(duration) or duration <= 0
        ):
            raise ValueError(f"duration must be a finite number of seconds > 0, not {duration!r}")
        old_term: Any = None
        in_main = threading.current_thread() is threading.main_thread()
        own_term = in_main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        if own_term:
            old_term = signal.signal(signal.SIGTERM, _sigterm)
        self._running = True
        started = False
        try:
            self.start()
            started = True
            if self._recorded():
                self._run_recorded()
            else:
                self._run_live(duration)
        except BaseException:
            if self._backend is not None:
                self._backend.abort()
            raise
        finally:
            self._running = False
            try:
                self.close()
                if not started and not self._be_started:
                    # nothing was installed (the backend could not start): the loop
                    # keeps its registrations and may run again, on another backend
                    self._closed = False
                    self._backend = None
                    self._started = False
                    for info in self._infos:  # still this loop's (close() let go)
                        _OWNER[id(info)] = weakref.ref(self)
            finally:
                if own_term:
                    signal.signal(
                        signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL
                    )

    def _run_recorded(self) -> None:
        """A recorded source gives packets (and runs the timers on its clock) until
        it is exhausted."""
        be = self.backend
        while not self._stopping and not be.exhausted:
            be.process()

    def _run_live(self, duration: float | None) -> None:
        readers = self._readers
        end = None if duration is None else time.monotonic() + duration
        while not self._stopping:
            wake = self._wake_fd()
            be = self._backend if self._be_started else None
            # the supervisor of workers only restarts them: the applications,
            # their timers and the readers run in the workers
            supervising = be is not None and be.supervises
            timeout = None if supervising else self.next_timeout()
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    break
                timeout = left if timeout is None else min(timeout, left)
            bfd = be.fileno() if be is not None else -1
            fds = [wake] if bfd < 0 else [wake, bfd]
            if not supervising:
                fds += readers
            readable, _, _ = select.select(fds, [], [], timeout)
            for fd in readable:
                if be is not None and fd == bfd:
                    be.process()
                elif fd == wake:
                    with contextlib.suppress(OSError):
                        os.read(wake, 64)
                elif not supervising:
                    cb = readers.get(fd)
                    if cb is not None:
                        cb()
            if not supervising:
                self.timers.run_due(self.now())
        self._drain()

    def _drain(self) -> None:
        """On stop, what already waits (packets, observers' copies) is handled once,
        without waiting: a stop that lands between two reads loses no copy."""
        be = self._backend if self._be_started else None
        if self._stopping and be is not None and not be.supervises:
            be.process()

    def _wake_fd(self) -> int:
        """The read end of this process's wake-up pipe (a forked worker makes its own)."""
        pid = os.getpid()
        if self._wake is None or self._wake_pid != pid:
            self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._wake_pid = pid
        return self._wake[0]

    def close(self) -> None:
        """Remove everything the backend installed (idempotent). From a callback or a
        timer of a running loop it only asks :meth:`run` to stop (run closes on its
        way out): the backend is in use below the caller."""
        if self._running:
            self.stop()
            return
        if self._wake is not None:
            for fd in self._wake:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake = None
        if self._backend is not None and not self._closed:
            self._closed = True
            for info in self._infos:  # free to register in another loop now
                owner = _OWNER.get(id(info))
                if owner is not None and owner() is self:
                    del _OWNER[id(info)]
            if self._be_started:
                self._backend.close()

    def counters(self) -> dict[str, Any]:
        """Per-application and backend counters."""
        return {
            "apps": {i.label: i.counters.as_dict() for i in self._infos},
            "backend": self._backend.counters() if self._backend is not None else {},
            "malformed": self.dispatcher.malformed,
        }

    def __enter__(self) -> ItmLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _holds(self, info: ItmInfo) -> bool:
        """True while ``info`` is registered here and this loop holds it (not closed,
        or kept after a run whose backend could not start)."""
        owner = _OWNER.get(id(info))
        return owner is not None and owner() is self and any(i is info for i in self._infos)

    def _priority_changes(self, info: ItmInfo, priority: int) -> None:
        """``info``, registered here, gets another priority (not set yet): the
        started backend applies it first (the kernel's: itm_mod's run list) or
        raises :class:`RuntimeError`; the dispatcher orders the hook's
        applications anew from the next packet (setting it moves the epoch)."""
        if self._be_started and self._backend is not None:
            self._backend.change_priority(info, priority)

    def _enabled_changes(self, info: ItmInfo, enabled: bool) -> None:
        """``info``, registered here, is enabled or disabled (not set yet): the
        started backend applies it first (the kernel's: itm_mod skips a disabled
        application) or raises :class:`RuntimeError`; the dispatcher skips a
        disabled application from the next packet (setting it moves the epoch)."""
        if self._be_started and self._backend is not None:
            self._backend.change_enabled(info, enabled)

    def _forget(self, info: ItmInfo) -> None:
        self._infos = [i for i in self._infos if i is not info]
        self.dispatcher.remove(info)
        owner = _OWNER.get(id(info))
        if owner is not None and owner() is self:
            del _OWNER[id(info)]


def _sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)
