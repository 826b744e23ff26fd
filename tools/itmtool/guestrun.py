"""What every guest run shares, in QEMU (:mod:`itmtool.vm`) or User-Mode Linux
(:mod:`itmtool.uml`): the guest's first lines (a start marker and a heartbeat),
the result of a run, and the runner that ends a guest's whole process group on a
timeout, a stalled heartbeat, ^C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: kernel command line for the tests: catch memory corruption, keep caches apart
DEBUG_APPEND = ("slub_debug=FZPU", "slab_nomerge", "panic_on_warn=0")

#: the file (in the first rwdir) the guest writes before anything else
STARTED = ".vm-started"

#: the file (in the first rwdir) the guest rewrites every HEARTBEAT_EVERY seconds
#: while its command runs: a guest whose user space stopped (a kernel spinning in a
#: warning's backtrace, a lost timer) stops writing it
HEARTBEAT = ".vm-heartbeat"
HEARTBEAT_EVERY = 5
#: how long the heartbeat may stay still before the VM counts as hung and is
#: killed: far above any pause of a guest that still runs (a TCG guest under the
#: detectors on a loaded machine), far below a tier's time limit
STALL_TIMEOUT = float(os.environ.get("ITM_VM_STALL", "300"))
#: how often the host looks at the heartbeat
STALL_POLL = 10.0


class GuestStalled(subprocess.TimeoutExpired):
    """The guest's heartbeat stopped for `timeout` seconds: the VM was killed."""

    def __str__(self) -> str:
        return f"the guest stopped: no heartbeat for {self.timeout:.0f} s; the VM was killed"


def preamble(rwdir: Path) -> list[str]:
    """The guest's first shell lines: mark the start, then beat until the guest ends."""
    started, beat = shlex.quote(str(rwdir / STARTED)), shlex.quote(str(rwdir / HEARTBEAT))
    return [
        f": > {started}",
        f"(while :; do date +%s > {beat}; sleep {HEARTBEAT_EVERY}; done) >/dev/null 2>&1 &",
    ]


@dataclass
class VmResult:
    """What a VM run returned."""

    returncode: int
    output: str
    #: whether the guest reached the command (False: the kernel died while booting)
    started: bool = True
    #: the console output of the boots that died before the command started
    failed_boots: list[str] = field(default_factory=list)

    @property
    def boots(self) -> int:
        """How many boots it took."""
        return len(self.failed_boots) + 1


def _stale(heartbeat: Path, stall: float) -> bool:
    """Whether the guest has beaten and then stayed still for `stall` seconds."""
    try:
        return time.time() - heartbeat.stat().st_mtime > stall
    except FileNotFoundError:  # not started yet: booting is the timeout's business
        return False


@contextlib.contextmanager
def _termination_raises() -> Iterator[None]:
    """While a guest runs, SIGTERM and SIGHUP raise SystemExit (128 + signal) instead
    of ending the process at once, so that the guest is killed on the way out (a
    `timeout` or a closed terminal left UML guests running, adopted by init). Only
    in the main thread, and only where the program kept the default action."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    caught = [s for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) == signal.SIG_DFL]
    for sig in caught:
        signal.signal(sig, raise_exit)
    try:
        yield
    finally:
        for sig in caught:
            signal.signal(sig, signal.SIG_DFL)


def run_group(
    cmd: list[str],
    env: dict[str, str],
    *,
    timeout: float,
    stream: bool,
    heartbeat: Path | None = None,
    stall: float | None = None,
) -> tuple[int, str]:
    """Run a VM (vng, UML) to its end; kill its whole process group on a timeout or ^C.

    Returns the exit status and the output (empty with `stream`).  With
    `heartbeat` (the guest's :data:`HEARTBEAT` file, removed here first), a
    guest whose heartbeat stays still for `stall` seconds (default
    :data:`STALL_TIMEOUT`) is killed and :class:`GuestStalled` raised, with the
    console so far as its ``output``.
    """
    stall = STALL_TIMEOUT if stall is None else stall
    if heartbeat is not None:
        heartbeat.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    # vng starts QEMU in children of its own, UML its helpers: a timeout must end them all
    with (
        _termination_raises(),
        subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=None if stream else subprocess.PIPE,
            stderr=None if stream else subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        ) as proc,
    ):
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    out, _ = proc.communicate(timeout=max(min(left, STALL_POLL), 0.0))
                    break
                except subprocess.TimeoutExpired:
                    if left <= STALL_POLL:
                        raise
                    if heartbeat is not None and _stale(heartbeat, stall):
                        os.killpg(proc.pid, signal.SIGKILL)
                        rest, _ = proc.communicate()
                        raise GuestStalled(cmd, stall, output=rest) from None
        except GuestStalled:
            raise
        except BaseException:  # a timeout, ^C: never leave a VM behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return proc.returncode, out or ""
