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
  in the nfqueue backend; a dropped packet leaves nothing to keep in order).

The packet loop is the transport's, with this backend's :meth:`_route` from
queue to application and NF_REPEAT as its accept verdict.

The registrations belong to the netlink socket that made them: when the
process exits or is killed, the kernel removes them and traffic flows on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass

from ..control.client import ItmControlError, ItmNotLoaded
from ..control.queue import NOT_LOADED, ItmQueueClient, KernelInterest, kernel_interest
from ..dispatch import Dispatcher, Runner
from ..epoch import bump
from ..genl import family_id
from ..hooks import Hook
from ..info import ItmInfo
from ..transport import FULL_COPY, QueueTransport, TransportError
from .base import Backend, BackendUnavailable, LoopHost

log = logging.getLogger("libitm")

#: netfilter's NF_REPEAT: call the hook again (itm_mod resumes after the app)
NF_REPEAT = 4

__all__ = ["NF_REPEAT", "NOT_LOADED", "KernelBackend"]


@dataclass
class _KernelApp:
    """One registered application: its queue, hook and private dispatcher."""

    info: ItmInfo
    hook: Hook
    queue: int
    disp: Dispatcher


class KernelBackend(Backend):
    """Registers applications with itm_mod through itm_queue; packets over nfnetlink_queue.

    Options (as in the nfqueue backend): ``queue_maxlen``, ``copy_range``,
    ``batch``, ``rcvbuf``, ``gso``.  Queue numbers are assigned by itm_queue
    (``queue_base`` is accepted and ignored).
    Every queue is configured fail-open (a full queue accepts).
    """

    name = "kernel"

    def __init__(
        self,
        *,
        queue_maxlen: int = 4096,
        copy_range: int = 128,
        batch: int = 256,
        rcvbuf: int | None = None,
        gso: bool = False,
        queue_base: int | None = None,
        **unused: object,
    ) -> None:
        """See the class docstring for the options."""
        del queue_base  # accepted for the nfqueue backend's callers; itm_queue assigns
        if unused:
            raise TypeError(f"unknown kernel backend options: {', '.join(sorted(unused))}")
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
        )
        self._closed = False
        self.family_id = fid
        self._client: ItmQueueClient | None = None
        self._strict = False
        self._apps: dict[int, _KernelApp] = {}  # queue number -> app
        self._queue_of: dict[int, int] = {}  # id(info) -> queue number

    # ------------------------------------------------------------ lifecycle
    def start(self, loop: LoopHost) -> None:
        """Open the itm_queue socket, then the nfqueue socket, and register every app."""
        self._strict = loop.strict
        try:
            self._client = ItmQueueClient()
        except ItmNotLoaded as e:
            raise BackendUnavailable(NOT_LOADED) from e
        except ItmControlError as e:
            raise BackendUnavailable(f"itm_queue: {e}") from e
        try:
            self.transport.open()
            for info in loop.applications:
                assert info.hook is not None
                self.install(info.hook, info)
        except BaseException:
            self.close()
            raise

    def install(self, where: Hook, info: ItmInfo) -> None:
        """Register ``info`` with itm_queue, bind its queue and configure it fail-open."""
        client = self._client
        if client is None:
            raise BackendUnavailable("the kernel backend is not started")
        kin: KernelInterest = kernel_interest(info.interest)
        try:
            reg = client.register(info.label, where, info.priority, kin)
        except ItmControlError as e:
            if e.code == errno.EPERM:
                raise BackendUnavailable(
                    f"itm_queue refused to register {info.label!r}: "
                    "registering needs CAP_NET_ADMIN (run as root)"
                ) from e
            raise BackendUnavailable(
                f"itm_queue refused to register {info.label!r}: {e} ({os.strerror(e.code)})"
            ) from e
        q = reg.queue_num
        try:
            err = self.transport.bind(q)
            if err:
                raise BackendUnavailable(f"binding nfqueue {q} failed: {os.strerror(err)}")
            # whole packets or the headers; fail-open (the transport's fail_open)
            self.transport.configure(q, FULL_COPY if info.needs_payload else self.copy_range)
        except TransportError as e:
            with contextlib.suppress(ItmControlError):
                client.unregister(info.label)
            raise BackendUnavailable(str(e)) from None
        except BaseException:
            with contextlib.suppress(ItmControlError):
                client.unregister(info.label)
            raise
        disp = Dispatcher(strict=self._strict)
        disp.add(where, info)
        self._apps[q] = _KernelApp(info, where, q, disp)
        self._queue_of[id(info)] = q
        log.debug("%s registered at %s, queue %d", info.label, where.name, q)

    def uninstall(self, info: ItmInfo) -> None:
        """Unregister the app; packets already queued to it are handed back (NF_REPEAT)."""
        q = self._queue_of.pop(id(info), None)
        if q is None:
            return
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
        for info_id in list(self._queue_of):
            q = self._queue_of.pop(info_id)
            app = self._apps.pop(q, None)
            if app is not None and self._client is not None:
                with contextlib.suppress(ItmControlError, OSError):
                    self._client.unregister(app.info.label)
        self._close_client()
        self.transport.close()

    def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None

    def counters(self) -> dict[str, int]:
        """The transport's counters plus ``malformed`` packets seen by the apps."""
        out = self.transport.counters()
        out["malformed"] = sum(a.disp.malformed for a in self._apps.values())
        return out

    @property
    def app_queues(self) -> dict[str, int]:
        """The queue number itm_queue assigned to each registered application."""
        return {a.info.label: q for q, a in self._apps.items()}

    def now(self) -> float:
        """Monotonic time."""
        return time.monotonic()

    def fileno(self) -> int:
        """The queue socket."""
        if not self.transport.is_open:
            raise BackendUnavailable("the kernel backend is not started")
        return self.transport.fileno()

    def process(self) -> int:
        """Handle the packets waiting (:meth:`QueueTransport.process`)."""
        return self.transport.process()

    # ------------------------------------------------------------ hot path
    def _route(self, q: int) -> tuple[Hook, Runner] | None:
        """Queue ``q`` belongs to one application: its hook and its runner (None: it
        left, hand back)."""
        app = self._apps.get(q)
        if app is None:
            return None
        return app.hook, app.disp.runner(app.hook)
