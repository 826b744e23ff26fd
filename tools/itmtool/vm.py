"""Boot a kernel of the matrix in a VM (virtme-ng on QEMU, TCG) and run a command.

The machine's own root filesystem is shared read-only with the guest, so the
checkout, its virtualenv and the modules built under build/<release>/ are all at
hand; only the directories given as ``rwdirs`` are written back.  KVM is not
used: it does not work with QEMU on the machines this project runs on.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from itmtool import resources
from itmtool.matrix import Kernel

#: kernel command line for the tests: catch memory corruption, keep caches apart
DEBUG_APPEND = ("slub_debug=FZPU", "slab_nomerge", "panic_on_warn=0")

#: boots again after a guest kernel that died before the command started
BOOT_RETRIES = 1

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


def vng_path() -> str:
    """The vng executable (from the project's virtualenv)."""
    venv_bin = Path(sys.executable).parent
    found = shutil.which("vng", path=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise FileNotFoundError("vng (virtme-ng) is not installed: run `make setup`")
    return found


def run(
    kernel: Kernel,
    script: str,
    *,
    rwdirs: list[Path],
    timeout: float = 1200,
    cpus: int = 2,
    memory: str = "2G",
    append: tuple[str, ...] = DEBUG_APPEND,
    env: dict[str, str] | None = None,
    stream: bool = False,
    console: bool = False,
) -> VmResult:
    """Boot `kernel` and run the shell `script` in it as root, in the project's checkout.

    (Installed from a wheel: in the current directory.)

    `env` is exported in the guest.  With `stream`, the guest's output goes to
    this process's stdout as it comes (for people); otherwise it is captured.
    With `console`, the kernel's console (boot log, an Oops or a panic that
    kills the VM) is part of the output.

    A guest kernel that dies before the command starts (QEMU's TCG has been
    seen to crash 6.12 with an ``Oops: int3`` while it patches its own code at
    boot, with no module loaded) is booted again, up to `BOOT_RETRIES` times,
    with a line on stderr; the result's ``output`` is the last boot's, the
    others are in ``failed_boots``.  A failure after the command started is
    never retried.
    Raises `subprocess.TimeoutExpired` when the VM does not finish in time
    (`timeout` covers every boot).

    User-Mode Linux (``kernel.is_uml``) is not booted in QEMU: :func:`itmtool.uml.run`
    runs the script in it, at native speed, with the same arguments.
    """
    if kernel.is_uml:
        from itmtool import uml  # it builds on this module

        return uml.run(
            kernel,
            script,
            rwdirs=rwdirs,
            timeout=timeout,
            env=env,
            stream=stream,
            console=console,
            append=append,
        )
    if not kernel.vmlinuz.exists():
        raise FileNotFoundError(f"{kernel.vmlinuz} is missing: run `make setup`")
    venv_bin = Path(sys.executable).parent
    exports = {"PATH": f"{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    exports.update(env or {})
    for d in rwdirs:
        d.mkdir(parents=True, exist_ok=True)
    started = rwdirs[0] / STARTED
    lines = preamble(rwdirs[0])
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    lines += [f"cd {shlex.quote(str(resources.checkout() or Path.cwd()))}", script]
    script_file = rwdirs[0] / ".vm-script.sh"
    script_file.write_text("\n".join(lines) + "\n")
    cmd = [
        vng_path(),
        "-r",
        str(kernel.vmlinuz),
        "--disable-kvm",
        "--cpus",
        str(cpus),
        "--memory",
        memory,
        "--user",
        "root",
    ]
    if console:
        cmd.append("--verbose")
    for d in rwdirs:
        cmd += ["--rwdir", str(d)]
    for a in append:
        cmd += ["--append", a]
    cmd += ["--", f"bash {shlex.quote(str(script_file))}"]
    proc_env = dict(os.environ)
    proc_env["PATH"] = f"{venv_bin}{os.pathsep}{proc_env.get('PATH', '')}"
    failed: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        started.unlink(missing_ok=True)
        left = max(deadline - time.monotonic(), 1.0)
        rc, out = _boot(cmd, proc_env, timeout=left, stream=stream, heartbeat=rwdirs[0] / HEARTBEAT)
        reached = started.exists()
        if rc == 0 or reached or len(failed) == BOOT_RETRIES:
            break
        failed.append(out)
        print(
            f"itmtool vm: the guest kernel {kernel.release} died before the command "
            f"started (exit {rc}, boot {len(failed)}); booting again",
            file=sys.stderr,
            flush=True,
        )
    started.unlink(missing_ok=True)
    return VmResult(rc, out, started=reached, failed_boots=failed)


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


#: one vng boot (a name of its own so that tests can replace it)
_boot = run_group
