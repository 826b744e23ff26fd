"""Boot a kernel of the matrix in a VM (virtme-ng on QEMU, TCG) and run a command.

The machine's own root filesystem is shared read-only with the guest, so the
checkout, its virtualenv and the modules built under build/<release>/ are all at
hand; only the directories given as ``rwdirs`` are written back.  KVM is not
used: it does not work with QEMU on the machines this project runs on.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from itmtool import resources, uml
from itmtool.guestrun import DEBUG_APPEND, HEARTBEAT, STARTED, VmResult, preamble, run_group
from itmtool.matrix import Kernel

#: boots again after a guest kernel that died before the command started
BOOT_RETRIES = 1


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


#: one vng boot (a name of its own so that tests can replace it)
_boot = run_group
