"""Worker processes: N forks of the program, each draining one queue of a range.

The process that installs the rules (the *supervisor*) forks ``n`` workers.
Worker ``i`` turns itself into a one-queue backend (``become(i)``, in the
child) and runs the loop as any single process would: its applications, its
timers, its readers. The supervisor watches one pidfd per worker (an epoll
descriptor that the loop polls, :meth:`WorkerPool.fileno`) and forks a new
worker ``i`` when one dies; meanwhile that worker's queue has no listener and
``--queue-bypass`` lets its packets pass. On close it stops the workers
(SIGTERM, then SIGKILL) and collects what each reported when it exited (its
counters, over a pipe).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ..info import ItmInfo
    from ..transport import QueueTransport

log = logging.getLogger("libitm")

#: seconds a worker has to exit after SIGTERM before SIGKILL
STOP_GRACE = 5.0
#: the most workers a backend forks
MAX_WORKERS = 64
#: a worker that ends sooner than this after its start is restarted this much later
#: (one that cannot bind its queue does not spin)
RESTART_DELAY = 1.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent (the supervisor) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class WorkerPool:
    """``n`` forked workers; ``become(i)`` runs in the child to make it worker ``i``."""

    def __init__(self, n: int, become: Callable[[int], None]) -> None:
        self.n = n
        self._become = become
        self._epoll = select.epoll()
        self._pid: dict[int, int] = {}  # worker index -> pid
        self._pidfd: dict[int, int] = {}  # pidfd -> worker index
        self._pipe: dict[int, int] = {}  # worker index -> read end of its report pipe
        self._born: dict[int, float] = {}  # worker index -> when it was forked
        self._reports: list[dict[str, Any]] = []
        self.restarts = 0
        #: in a worker: the write end of its report pipe
        self.report_fd = -1

    def start(self) -> bool:
        """Fork every worker; True in the supervisor, False in a worker (which
        returns as that worker, see ``become``)."""
        return all(self._spawn(i) for i in range(self.n))

    def _spawn(self, i: int) -> bool:
        """Fork worker ``i``: True in the supervisor, False in the child."""
        r, w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            if os.getppid() != parent:
                os._exit(1)  # the supervisor died before the request took
            os.close(r)
            for fd in self._pipe.values():
                os.close(fd)
            for fd in self._pidfd:
                os.close(fd)
            self._epoll.close()
            self._pipe.clear()
            self._pidfd.clear()
            self._pid.clear()
            self.report_fd = w
            self._become(i)
            return False
        os.close(w)
        self._born[i] = time.monotonic()
        fd = os.pidfd_open(pid)
        self._pid[i] = pid
        self._pidfd[fd] = i
        self._pipe[i] = r
        self._epoll.register(fd, select.EPOLLIN)
        return True

    def fileno(self) -> int:
        """Readable when a worker has exited."""
        return self._epoll.fileno()

    @property
    def pids(self) -> dict[int, int]:
        """The pid of each worker by index."""
        return dict(self._pid)

    def reap(self) -> bool:
        """Restart every worker that exited; True in the supervisor, False in a
        newly forked worker (which returns as that worker)."""
        for fd, _ in self._epoll.poll(0):
            i = self._pidfd.pop(fd)
            self._epoll.unregister(fd)
            os.close(fd)
            pid = self._pid.pop(i)
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(pid, 0)
                log.warning(
                    "libitm worker %d (pid %d) ended (%s); its queue passes packets until "
                    "it is back",
                    i,
                    pid,
                    _status_text(status),
                )
            self._collect(i)
            self.restarts += 1
            if time.monotonic() - self._born.get(i, 0.0) < RESTART_DELAY:
                time.sleep(RESTART_DELAY)
            if not self._spawn(i):
                return False
        return True

    def _collect(self, i: int) -> None:
        """Read worker ``i``'s report (if it wrote one) and close its pipe."""
        fd = self._pipe.pop(i, -1)
        if fd < 0:
            return
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        os.close(fd)
        with contextlib.suppress(ValueError):
            if chunks:
                self._reports.append(json.loads(b"".join(chunks)))

    def stop(self) -> list[dict[str, Any]]:
        """Stop every worker (SIGTERM, then SIGKILL after :data:`STOP_GRACE` s) and
        return the reports of all the workers that ever exited cleanly."""
        for pid in self._pid.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE
        for i, pid in list(self._pid.items()):
            while True:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > end:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
            self._collect(i)
        for fd in self._pidfd:
            os.close(fd)
        self._pidfd.clear()
        self._pid.clear()
        self._epoll.close()
        return self._reports

    def report(self, data: dict[str, Any]) -> None:
        """In a worker: hand ``data`` to the supervisor (read when the worker exits)."""
        if self.report_fd < 0:
            return
        with contextlib.suppress(OSError):
            payload = json.dumps(data).encode()
            while payload:
                payload = payload[os.write(self.report_fd, payload) :]
        with contextlib.suppress(OSError):
            os.close(self.report_fd)
        self.report_fd = -1


def end_worker(
    pool: WorkerPool | None,
    index: int | None,
    transport: QueueTransport,
    applications: Iterable[ItmInfo],
    counters: Callable[[], dict[str, int]],
    aborted: bool,
) -> NoReturn:
    """A worker ends: its queues handed back and closed, its counts (the
    applications' and the backend's ``counters()``) reported to the supervisor,
    then the process exits (1 when the run was aborted or the close failed)."""
    code = 1 if aborted else 0
    try:
        transport.close()
    except Exception as e:
        log.error("worker %s: closing its queue: %s", index, e)
        code = 1
    if pool is not None:
        pool.report(
            {
                "apps": {i.label: i.counters.as_dict() for i in applications},
                "backend": counters(),
            }
        )
    logging.shutdown()
    os._exit(code)


def merge_reports(
    applications: Iterable[ItmInfo], transport: QueueTransport, reports: list[dict[str, Any]]
) -> None:
    """Add the workers' reports (:func:`end_worker`) to this process's counters."""
    infos = {i.label: i for i in applications}
    for r in reports:
        for label, counts in r.get("apps", {}).items():
            info = infos.get(label)
            if info is None:
                continue
            c = info.counters
            c.packets += counts.get("packets", 0)
            c.classified += counts.get("classified", 0)
            c.dropped += counts.get("dropped", 0)
            c.modified += counts.get("modified", 0)
            c.errors += counts.get("errors", 0)
        transport.add_counts(r.get("backend", {}))


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"
