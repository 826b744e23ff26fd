"""The ``kernel`` backend: applications registered with itm_mod through itm_queue.

Each application is registered over itm_queue's generic netlink family
(pyroute2, control path) and gets a queue number of its own; itm_mod matches
its interest in the kernel, in priority order with the kernel applications
at the hook, and queues the packets to that number.  The packets then travel
over nfnetlink_queue through a :class:`libitm.transport.QueueTransport` (one
socket, drained per wakeup, verdicts batched), as in the nfqueue backend, but:

* no xtables rule is installed;
* each queue belongs to one application, so only that application runs on
  its packets;
* accepted packets are answered with NF_REPEAT instead of NF_ACCEPT, so that
  itm_mod goes on with the next application after this one at the hook;
* a modified packet's own verdict first releases the batch of the earlier
  accepted packets of its queue: packets leave in the order they arrived (as
  in the nfqueue backend; a dropped packet leaves nothing to keep in order);
* an application without a ``process_func`` (an *observer*) is registered as
  one: itm_queue hands it a copy of each packet through nfnetlink_log, in the
  group of its number, and the packet goes on at once (as the nfqueue backend's
  NFLOG rule does); a stopped or slow observer loses copies, never packets.

The packet loop is the transport's, with this backend's :meth:`_route` from
queue to application and NF_REPEAT as its accept verdict.

The registrations belong to the netlink socket that made them: when the
process exits or is killed, the kernel removes them and traffic flows on.

With ``workers`` N > 1, each application is registered with N consecutive
queues and itm_mod spreads its packets over them by a hash of the flow (both
directions of a flow to one queue). The process that registered them (the
*supervisor*) forks N workers (:mod:`libitm.backends.workers`); worker ``i``
binds queue ``i`` of every application's range and runs the applications on
what arrives there. A worker that dies is restarted; meanwhile its queue has
no listener and its packets pass (the bypass flag). When the supervisor ends,
however it ends, the registrations go with its socket.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import time
from dataclasses import dataclass
from typing import ClassVar, NoReturn

from ..control.client import ItmControl, ItmControlError, ItmNotLoaded
from ..control.queue import NOT_LOADED, ItmQueueClient, KernelInterest, kernel_interest
from ..dispatch import Dispatcher, Runner
from ..epoch import bump
from ..genl import family_id
from ..hooks import Hook
from ..info import ItmInfo
from ..transport import FULL_COPY, QueueTransport, TransportError
from ..transport.nflog import MAX_OBSERVER_BATCH, LogTransport
from .base import (
    Backend,
    BackendUnavailable,
    LoopHost,
    check_observer_copies,
    epoll_over,
    observer_queued,
    refuse_with_workers,
    watch,
)
from .workers import MAX_WORKERS, WorkerPool, end_worker, merge_reports

log = logging.getLogger("libitm")

#: netfilter's NF_REPEAT: call the hook again (itm_mod resumes after the app)
NF_REPEAT = 4

__all__ = ["NF_REPEAT", "NOT_LOADED", "KernelBackend"]


@dataclass
class _KernelApp:
    """One registered application: its (first) queue, hook and private dispatcher."""

    info: ItmInfo
    hook: Hook
    queue: int
    disp: Dispatcher
    #: queues from ``queue`` on (one per worker)
    count: int = 1


class KernelBackend(Backend):
    """Registers applications with itm_mod through itm_queue; packets over nfnetlink_queue.

    Options (as in the nfqueue backend): ``queue_maxlen``, ``copy_range``,
    ``batch``, ``rcvbuf``, ``gso``, ``workers`` (default 1; N > 1: N forked
    worker processes, each draining one queue of every application, flows
    spread over them by itm_mod; see the module docstring), ``observers``
    (default True: an application without a ``process_func`` gets copies through
    nfnetlink_log; not with workers), ``observer_batch`` (copies per message, as
    in the nfqueue backend), ``use_recvmmsg``.  Queue numbers are assigned by
    itm_queue, and itm_mod spreads flows over a worker's queues, so the
    nfqueue backend's ``queue_base``, ``iptables``, ``ip6tables``, ``fanout`` and
    ``observer_copies`` (here an observer's copies come from itm_mod's run list,
    which needs no hook of its own) are accepted and ignored: a program that
    passes them runs on either backend (``auto`` picks this one wherever itm_queue is loaded).
    Every queue is configured fail-open (a full queue accepts):
    ``fail_open=False`` is refused, naming the nfqueue backend.
    """

    name = "kernel"
    #: itm_mod's family, opened for the first priority or enabled change (``app-set``)
    _control: ItmControl | None = None

    OPTIONS: ClassVar[dict[str, tuple[int, int] | None]] = {
        "queue_maxlen": (1, 0xFFFFFFFF),
        "copy_range": (20, FULL_COPY),
        "batch": (1, 1 << 16),
        "rcvbuf": None,
        "gso": None,
        "use_recvmmsg": None,
        "workers": (1, MAX_WORKERS),
        "observers": None,
        "observer_batch": (1, MAX_OBSERVER_BATCH),
        "fail_open": None,
        # the nfqueue backend's, without a meaning here (class docstring)
        "queue_base": None,
        "iptables": None,
        "ip6tables": None,
        "fanout": None,
        "observer_copies": None,
    }

    @classmethod
    def check_options(cls, options: dict[str, object]) -> None:
        """:meth:`Backend.check_options`, and ``fail_open=False`` refused."""
        super().check_options(options)
        check_observer_copies(options)
        if options.get("fail_open", True) is not True:
            raise ValueError(
                "the kernel backend's queues are always fail-open (a full queue "
                "accepts); for fail_open=False use the nfqueue backend"
            )

    def __init__(
        self,
        *,
        queue_maxlen: int = 4096,
        copy_range: int = 128,
        batch: int = 256,
        rcvbuf: int | None = None,
        gso: bool = False,
        use_recvmmsg: bool = True,
        workers: int = 1,
        observers: bool = True,
        observer_batch: int = 1,
        **other: object,
    ) -> None:
        """See the class docstring for the options."""
        self.check_options(
            {
                "queue_maxlen": queue_maxlen,
                "copy_range": copy_range,
                "batch": batch,
                "workers": workers,
                "observer_batch": observer_batch,
                **other,
            }
        )
        self.workers = workers
        #: applications without a process_func get copies (not with workers)
        self.observers = observers and workers == 1
        self._observers_asked = observers
        self.log = LogTransport(self._log_route, batch=observer_batch)
        #: observers by their log group
        self._groups: dict[int, _KernelApp] = {}
        #: the queue and log sockets as one descriptor for the loop
        self._epoll: select.epoll | None = None
        try:
            fid = family_id("itm_queue")
        except OSError as e:
            raise BackendUnavailable(f"{NOT_LOADED}: {e}") from e
        if fid is None:
            raise BackendUnavailable(NOT_LOADED)
        self.copy_range = copy_range
        #: accepted packets go back to itm_mod (NF_REPEAT), which runs the next application
        self.transport = QueueTransport(
            self._route,
            NF_REPEAT,
            queue_maxlen=queue_maxlen,
            copy_range=copy_range,
            batch=batch,
            rcvbuf=rcvbuf,
            gso=gso,
            fail_open=True,
            use_recvmmsg=use_recvmmsg,
        )
        self._closed = False
        self.family_id = fid
        self._client: ItmQueueClient | None = None
        self._strict = False
        self._apps: dict[int, _KernelApp] = {}  # queue number -> app
        self._queue_of: dict[int, int] = {}  # id(info) -> (first) queue number
        #: with workers: the pool (the supervisor's, or the one this worker came from)
        self._pool: WorkerPool | None = None
        #: in a worker: its index (None: the supervisor, or no workers)
        self._worker: int | None = None
        self._host: LoopHost | None = None
        self._forked_client: ItmQueueClient | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self, loop: LoopHost) -> None:
        """Open the itm_queue socket, then the nfqueue socket, and register every app
        (with workers: register every app with a range of queues, fork the workers)."""
        self._strict = loop.strict
        self._host = loop
        try:
            self._client = ItmQueueClient()
        except ItmNotLoaded as e:
            raise BackendUnavailable(NOT_LOADED) from e
        except ItmControlError as e:
            raise BackendUnavailable(f"itm_queue: {e}") from e
        try:
            if self.workers == 1:
                self.transport.open()
                self._watch()
            for info in loop.applications:
                assert info.hook is not None
                self.install(info.hook, info)
        except BaseException:
            self.close()
            raise
        if self.workers > 1:
            # the supervisor holds the registrations; each worker binds its own queues
            self._pool = WorkerPool(self.workers, self._become_worker)
            self.supervises = True
            self._pool.start()  # a worker returns from here as that worker

    def _become_worker(self, index: int) -> None:
        """In a freshly forked worker: bind queue ``index`` of every application's range."""
        self._worker = index
        self.supervises = False
        # the registrations stay with the supervisor's socket: this copy of it is
        # let go, so that they go when the supervisor does
        if self._client is not None:
            self._forked_client = self._client  # kept: its finaliser must not run here
            self._forked_client.forget_in_child()
            self._client = None
        apps = list(self._apps.values())
        self._apps.clear()
        self.transport.open()
        for app in apps:
            q = app.queue + index
            # bound and configured in one request: packets already come (a restart)
            err = self.transport.bind(q, FULL_COPY if app.info.needs_payload else self.copy_range)
            if err:
                raise BackendUnavailable(f"worker {index}: binding nfqueue {q}: {os.strerror(err)}")
            self._apps[q] = app
        self._watch()

    def _watch(self) -> None:
        """The loop's epoll descriptor over the queue and log transports (see
        :func:`.base.epoll_over`)."""
        self._epoll = epoll_over(self._epoll, (self.transport, self.log))

    def install(self, where: Hook, info: ItmInfo) -> None:
        """Register ``info`` with itm_queue, bind its queue and configure it fail-open
        (with workers: register a range of queues, which the workers bind). An
        application registered disabled is then disabled in itm_mod (which
        starts every application enabled); refused, the registration fails."""
        self._register(where, info)
        if info.enabled:
            return
        try:
            self._app_set(info.label, enabled=False)
        except ItmControlError as e:
            self.uninstall(info)
            raise BackendUnavailable(
                f"itm_mod refused to disable application {info.label!r}, registered "
                f"disabled: {e} ({os.strerror(e.code)})"
            ) from e

    def _register(self, where: Hook, info: ItmInfo) -> None:
        """:meth:`install` but the enabled flag."""
        client = self._client
        if client is None:
            raise BackendUnavailable("the kernel backend is not started")
        if self.workers > 1 and (self._pool is not None or self._worker is not None):
            raise BackendUnavailable(
                "with workers, register every application before the loop starts"
            )
        kin: KernelInterest = kernel_interest(info.interest)
        observer = self.observers and info.process_func is None
        try:
            reg = client.register(
                info.label, where, info.priority, kin, self.workers, observer=observer
            )
        except ItmControlError as e:
            if e.code == errno.EPERM:
                raise BackendUnavailable(
                    f"itm_queue refused to register {info.label!r}: "
                    "registering needs CAP_NET_ADMIN (root has it)"
                ) from e
            raise BackendUnavailable(
                f"itm_queue refused to register {info.label!r}: {e} ({os.strerror(e.code)})"
            ) from e
        q = reg.queue_num
        disp = Dispatcher(strict=self._strict)
        disp.add(where, info)
        if observer:
            self._watch_group(q, info)
            self._groups[q] = _KernelApp(info, where, q, disp)
            self._queue_of[id(info)] = q
            log.debug("%s registered at %s as an observer, log group %d", info.label,
                      where.name, q)  # fmt: skip
            return
        if self.workers > 1:
            if self._observers_asked and info.process_func is None:
                observer_queued(info, self.workers)
            self._apps[q] = _KernelApp(info, where, q, disp, reg.queue_count)
            self._queue_of[id(info)] = q
            log.debug("%s registered at %s, queues %d..%d", info.label, where.name, q,
                      q + reg.queue_count - 1)  # fmt: skip
            return
        try:
            # whole packets or the headers; fail-open (the transport's fail_open); one
            # request, since itm_queue already sends packets to the queue
            err = self.transport.bind(q, FULL_COPY if info.needs_payload else self.copy_range)
            if err:
                raise BackendUnavailable(f"binding nfqueue {q} failed: {os.strerror(err)}")
        except TransportError as e:
            with contextlib.suppress(ItmControlError):
                client.unregister(info.label)
            raise BackendUnavailable(str(e)) from None
        except BaseException:
            with contextlib.suppress(ItmControlError):
                client.unregister(info.label)
            raise
        self._apps[q] = _KernelApp(info, where, q, disp)
        self._queue_of[id(info)] = q
        log.debug("%s registered at %s, queue %d", info.label, where.name, q)

    def _watch_group(self, group: int, info: ItmInfo) -> None:
        """Bind an observer's log group (the log socket opened with the first one);
        on failure the registration is undone."""
        try:
            if not self.log.is_open:
                self.log.open()
                if self._epoll is not None:
                    watch(self._epoll, self.log)
            # a copy as long as the queue's would be: whole packets only when asked
            err = self.log.bind(group, FULL_COPY if info.needs_payload else self.copy_range)
        except (OSError, TransportError) as e:
            err = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
        if err:
            if self._client is not None:
                with contextlib.suppress(ItmControlError):
                    self._client.unregister(info.label)
            raise BackendUnavailable(
                f"binding nfnetlink_log group {group} for observer {info.label!r} failed: "
                f"{os.strerror(err)}"
            )

    def change_priority(self, info: ItmInfo, priority: int) -> None:
        """Move the application in itm_mod's run list (``app-set`` of the itm family,
        what ``itmtool priority`` sends): itm_mod runs it at its new place from
        the next packet, with the kernel applications and every process's; a
        packet already in user space resumes after the right application (the
        resume point is a (priority, order) pair). Refused by itm_mod
        (:class:`RuntimeError`, the priority then stays), and with workers once
        forked (:func:`.base.refuse_with_workers`)."""
        self._change(
            info,
            f"priority {priority} for application {info.label!r}",
            f"its priority stays {info.priority}",
            " (itmtool priority changes itm_mod's order, which is every worker's)",
            "priority",
            priority=priority,
        )

    def change_enabled(self, info: ItmInfo, enabled: bool) -> None:
        """Switch the application in itm_mod (``app-set`` of the itm family, what
        ``itmtool enable``/``disable`` sends): a disabled application is skipped
        by itm_mod, so its packets are no longer queued to this process (a
        packet already queued is accepted past it by the dispatcher). Refused by
        itm_mod (:class:`RuntimeError`, ``enabled`` then stays), and with workers
        once forked (each has its own copy of ``enabled``)."""
        self._change(
            info,
            f"to {'enable' if enabled else 'disable'} application {info.label!r}",
            f"it stays {'enabled' if info.enabled else 'disabled'}",
            " (itmtool enable/disable switches it in itm_mod, which is every worker's)",
            "enabled flag",
            enabled=enabled,
        )

    def _change(
        self,
        info: ItmInfo,
        what: str,
        stays: str,
        hint: str,
        field: str,
        *,
        enabled: bool | None = None,
        priority: int | None = None,
    ) -> None:
        """itm_mod's ``app-set`` of ``enabled`` or ``priority`` for registered
        ``info``: refused with workers forked (:func:`.base.refuse_with_workers`,
        ``field`` and ``hint``), nothing to do before itm_queue registered it
        (install() sends it), and a refusal of itm_mod a :class:`RuntimeError`
        ("itm_mod refused ``what``: why; ``stays``")."""
        if self._pool is not None or self._worker is not None:
            refuse_with_workers(info, hint, field=field)
        if id(info) not in self._queue_of:
            return
        try:
            self._app_set(info.label, enabled=enabled, priority=priority)
        except ItmControlError as e:
            raise RuntimeError(
                f"itm_mod refused {what}: {e} ({os.strerror(e.code)}); {stays}"
            ) from e

    def _app_set(
        self, label: str, *, enabled: bool | None = None, priority: int | None = None
    ) -> None:
        """itm_mod's ``app-set`` for ``label`` (the itm family's client, opened on
        first use); :class:`ItmControlError` when itm_mod refuses."""
        if self._control is None:
            self._control = ItmControl()
        self._control.set_app(label, enabled=enabled, priority=priority)

    def uninstall(self, info: ItmInfo) -> None:
        """Unregister the app; packets already queued to it are handed back (NF_REPEAT)."""
        q = self._queue_of.pop(id(info), None)
        if q is None:
            return
        if self._groups.pop(q, None) is not None:
            self.log.unbind(q)
        self._apps.pop(q, None)
        bump()  # the packet loop may hold the app for this queue
        if self._client is not None:
            with contextlib.suppress(ItmControlError):
                self._client.unregister(info.label)

    def close(self) -> None:
        """Unregister every app, hand back the queued packets, unbind the queues, close."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._close_worker()
        for info_id in list(self._queue_of):
            q = self._queue_of.pop(info_id)
            app = self._apps.pop(q, None) or self._groups.pop(q, None)
            if app is not None and self._client is not None:
                with contextlib.suppress(ItmControlError, OSError):
                    self._client.unregister(app.info.label)
        self._close_client()
        self.transport.close()
        self.log.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._pool is not None:  # the registrations are gone: the workers drain and end
            apps = self._host.applications if self._host is not None else []
            merge_reports(apps, self.transport, self._pool.stop())

    def _close_worker(self) -> NoReturn:
        """A worker ends: its queues handed back and closed, its counts reported to
        the supervisor (which owns the registrations), then the process exits."""
        apps = self._host.applications if self._host is not None else []
        end_worker(self._pool, self._worker, self.transport, apps, self.counters, self.aborted)

    def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()
            self._control = None

    def counters(self) -> dict[str, int]:
        """The transport's counters plus ``malformed`` packets seen by the apps and
        ``observer_copies``, the copies that observers got through nfnetlink_log."""
        out = self.transport.counters()
        apps = [*self._apps.values(), *self._groups.values()]
        out["malformed"] = sum(a.disp.malformed for a in apps)
        out["observer_copies"] = self.log.c["copies"]
        return out

    @property
    def app_queues(self) -> dict[str, int]:
        """The (first) queue number itm_queue assigned to each registered application
        (an observer's: its log group)."""
        return {a.info.label: a.queue for a in [*self._apps.values(), *self._groups.values()]}

    def now(self) -> float:
        """Monotonic time."""
        return time.monotonic()

    def fileno(self) -> int:
        """The queue socket (the supervisor of workers: readable when one ended)."""
        if self.supervises and self._pool is not None:
            return self._pool.fileno()
        if self._epoll is not None:
            return self._epoll.fileno()
        if not self.transport.is_open:
            raise BackendUnavailable("the kernel backend is not started")
        return self.transport.fileno()

    def process(self) -> int:
        """Handle the packets waiting (:meth:`QueueTransport.process`; the supervisor
        of workers: restart the workers that ended, a restarted worker returns from
        here as that worker)."""
        if self.supervises and self._pool is not None:
            self._pool.reap()
            return 0
        n = self.transport.process()
        if self.log.is_open:
            n += self.log.process()
        return n

    # ------------------------------------------------------------ hot path
    def _route(self, q: int) -> tuple[Hook, Runner] | None:
        """Queue ``q`` belongs to one application: its hook and its runner (None: it
        left, hand back)."""
        app = self._apps.get(q)
        if app is None:
            return None
        return app.hook, app.disp.runner(app.hook)

    def _log_route(self, group: int) -> tuple[Hook, Runner] | None:
        """Log group ``group`` belongs to one observer: its hook and its runner."""
        app = self._groups.get(group)
        if app is None:
            return None
        return app.hook, app.disp.runner(app.hook, True)
