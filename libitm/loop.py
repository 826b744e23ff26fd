"""The event loop that runs applications: registrations, timers, backend."""

from __future__ import annotations

import asyncio
import select
import signal
import threading
import time
import types
from collections.abc import Callable
from typing import Any

from .backends import make_backend
from .backends.base import Backend
from .dispatch import Dispatcher
from .hooks import Hook
from .info import Application, ItmInfo
from .timers import TimerHandle, TimerQueue


class ItmLoop:
    """Runs registered applications on one backend in one thread.

    ``backend`` is ``"auto"`` (kernel when the itm_queue module is loaded, else
    nfqueue), ``"nfqueue"``, ``"offline"``, ``"kernel"`` or a :class:`Backend`;
    ``options`` go to the backend (for example ``pcap=``/``out=`` offline).
    ``strict=True`` re-raises callback exceptions and stops the loop instead of
    accepting the packet and carrying on.

    For asyncio, watch :meth:`fileno` and call :meth:`handle_events` when it is
    readable and after :meth:`next_timeout` seconds.
    """

    def __init__(
        self, backend: str | Backend = "auto", *, strict: bool = False, **options: Any
    ) -> None:
        self.strict = strict
        self._backend_spec = backend
        self._options = options
        self._backend: Backend | None = None
        self.dispatcher = Dispatcher(strict=strict)
        self.timers = TimerQueue(strict=strict)
        self._infos: list[ItmInfo] = []
        self._started = False
        self._stopping = False
        self._closed = False

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
        info.hook = hook
        self._infos.append(info)
        self.dispatcher.add(hook, info)
        if self._started and self._backend is not None:
            try:
                self._backend.install(hook, info)
            except BaseException:
                self._forget(info)
                raise
        if app is not None:
            for fn, interval in app.timers():
                self.register_timer(fn, interval)
        return info

    def register_app(self, app: Application) -> ItmInfo:
        """Register an :class:`Application` at its own ``hook``."""
        return self.register_hook(app.hook, app)

    def unregister_hook(self, info: ItmInfo) -> None:
        """Remove an application (its packets are no longer delivered)."""
        if not any(i is info for i in self._infos):
            raise ValueError(f"application {info.label!r} is not registered")
        if self._started and self._backend is not None:
            self._backend.uninstall(info)
        self._forget(info)

    def register_timer(self, fn: Callable[[], object], interval: float) -> TimerHandle:
        """Call ``fn()`` every ``interval`` seconds of the loop's clock."""
        now = self._backend.now() if self._started and self._backend is not None else None
        return self.timers.add(fn, interval, now)

    def unregister_timer(self, handle: TimerHandle) -> None:
        """Stop a timer."""
        self.timers.remove(handle)

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
        self._backend_spec = backend
        self._options = options
        self._backend = None

    def now(self) -> float:
        """The loop's clock (trace time in the offline backend)."""
        return self.backend.now()

    # ----------------------------------------------------------- running
    def start(self) -> None:
        """Install every registration on the backend (run() does this)."""
        if self._started:
            return
        if self._closed:
            raise RuntimeError("the loop is closed")
        be = self.backend
        be.start(self)
        self._started = True
        if be.live:
            self.timers.start(be.now())

    def fileno(self) -> int:
        """The backend's file descriptor (readable when packets wait)."""
        self.start()
        return self.backend.fileno()

    def next_timeout(self) -> float | None:
        """Seconds until the next timer is due (None: no timer)."""
        d = self.timers.next_deadline()
        if d is None:
            return None
        return max(0.0, d - self.backend.now())

    def handle_events(self) -> int:
        """Handle waiting packets and due timers without blocking; returns packets handled."""
        self.start()
        n = self.backend.process()
        self.timers.run_due(self.backend.now())
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
            self.timers.run_due(self.backend.now())
            t = self.next_timeout()
            handle[:] = [aloop.call_later(0.25 if t is None else min(t, 0.25), tick)]

        aloop.add_reader(fd, self.handle_events)
        tick()

        def detach() -> None:
            aloop.remove_reader(fd)
            for h in handle:
                h.cancel()
            self.close()

        return detach

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from callbacks, timers and signal handlers)."""
        self._stopping = True

    def run(self, duration: float | None = None) -> None:
        """Run until :meth:`stop`, ``duration`` seconds, or the end of an offline trace.

        Rules and sockets are removed on return, on an exception, on SIGINT and
        on SIGTERM (which is turned into ``SystemExit`` while the loop runs in the
        main thread).
        """
        old_term: Any = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            old_term = signal.signal(signal.SIGTERM, _sigterm)
        try:
            self.start()
            be = self.backend
            if not be.live:
                be.run_offline(self)
                return
            fd = be.fileno()
            end = None if duration is None else time.monotonic() + duration
            self._stopping = False
            while not self._stopping:
                timeout = self.next_timeout()
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    timeout = left if timeout is None else min(timeout, left)
                readable, _, _ = select.select([fd], [], [], timeout)
                if readable:
                    be.process()
                self.timers.run_due(be.now())
        finally:
            try:
                self.close()
            finally:
                if in_main:
                    signal.signal(
                        signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL
                    )

    def close(self) -> None:
        """Remove everything the backend installed (idempotent)."""
        if self._backend is not None and not self._closed:
            self._closed = True
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

    def _forget(self, info: ItmInfo) -> None:
        self._infos = [i for i in self._infos if i is not info]
        self.dispatcher.remove(info)


def _sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)
