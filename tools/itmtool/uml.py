"""Run a command in User-Mode Linux: our modules at native speed, without an emulator.

The UML kernel (``uml`` in kernels.txt, built by :mod:`itmtool.kernelcache`) runs
as an ordinary process.  It mounts the machine's own root file system read-only
through hostfs, so the checkout, its virtualenv and the modules built for it
are at hand, as in the VM tier; ``/tmp``, ``/run``, ``/var/tmp`` and ``/var/log``
are fresh tmpfs (a checkout inside one of them, e.g. a clone in /tmp, is mounted
back read-only), and only the directories given as ``rwdirs`` are written back
(they are mounted read-write through hostfs).  It boots in about a third of a
second.  UML is uniprocessor: it complements the 2-vCPU VM tier, it does not
replace it.

:func:`run` takes the arguments of :func:`itmtool.vm.run` (which hands a UML
kernel over to it), so code written for the VM tier runs here unchanged.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from itmtool import guestrun, kernelcache, resources
from itmtool.errors import EXIT_USAGE, ToolError
from itmtool.matrix import ROOT, Kernel

#: memory of the UML kernel (its RAM is a sparse file in $TMPDIR)
MEMORY = "2G"

#: environment variable: a host CPU to keep UML's processes on (taskset), for
#: benchmarks. UML's kernel and the host processes of its guest's processes hand
#: control to each other (ptrace, signals); spread over the host's CPUs every
#: hand-over is a wake-up on another CPU, and a system-call-heavy figure (a routed
#: TCP stream: 82% of UML's CPU in the host kernel) moved 3x from run to run
#: with what else ran on the host
CPU_ENV = "ITM_UML_CPU"

#: where the init script writes the command's exit status (in the first rwdir)
RC_FILE = ".uml-rc"

#: the host's directories the guest gets fresh (and empty) tmpfs on
FRESH = ("/tmp", "/run", "/var/tmp", "/var/log", "/var/lib/nfs")

_MOUNTS = f"""\
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for d in {" ".join(FRESH)}; do
	[ -d "$d" ] && mount -t tmpfs tmpfs "$d"
done
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /lib/modules
"""


def _hidden(path: Path) -> bool:
    """Whether `path` lies in one of the directories the guest gets fresh (FRESH)."""
    return any(path == Path(d) or Path(d) in path.parents for d in FRESH)


def kernel() -> Kernel:
    """The UML kernel as a row of the matrix (``build:uml``)."""
    return Kernel("uml", "build:uml", "build:uml")


def _init_script(
    tree: Path, release: str, script: Path, rwdirs: list[Path], rc_file: Path, root: Path = ROOT
) -> str:
    """The guest's init: mounts, the built-in modules list for modprobe, the command.

    A checkout (`root`) inside a directory the guest gets fresh, e.g. a clone in
    /tmp, is mounted back read-only from the host, like the rest of its file system.
    """
    lines = ["#!/bin/sh", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin", _MOUNTS]
    if _hidden(root):
        q = shlex.quote(str(root))
        lines.append(f"mkdir -p {q}; mount -r -t hostfs -o {q} hostfs {q}")
    # modprobe of a built-in module succeeds when modules.builtin says it is built in
    mods = f"/lib/modules/{release}"
    lines.append(f"mkdir -p {mods}")
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (tree / name).exists():
            lines.append(f"cp {shlex.quote(str(tree / name))} {mods}/")
    lines.append(f"depmod -a {release} 2>/dev/null")
    for d in rwdirs:
        q = shlex.quote(str(d))
        lines.append(f"mkdir -p {q} 2>/dev/null; mount -t hostfs -o {q} hostfs {q}")
    lines += [
        "ip link set lo up",
        "hostname uml",
        f"bash {shlex.quote(str(script))}",
        f"echo $? > {shlex.quote(str(rc_file))}",
        "sync",
        "poweroff -f 2>/dev/null",
        "echo o > /proc/sysrq-trigger",
        "sleep 10",
    ]
    return "\n".join(lines) + "\n"


def run(
    kern: Kernel,
    script: str,
    *,
    rwdirs: list[Path],
    timeout: float = 1200,
    env: dict[str, str] | None = None,
    stream: bool = False,
    console: bool = False,
    append: tuple[str, ...] = guestrun.DEBUG_APPEND,
    **_vm_only: object,
) -> guestrun.VmResult:
    """Boot UML and run the shell `script` in it as root, in the project's checkout.

    The arguments are :func:`itmtool.vm.run`'s; those that only mean something
    to QEMU (``cpus``, ``memory``) are accepted and ignored; `append` goes on the
    kernel command line as there (``slub_debug``: exact slab counts).  The
    result's ``returncode`` is the script's exit status (255 when UML died
    before the script finished).  With `console`, the kernel's messages are
    part of the output.  Raises `subprocess.TimeoutExpired` when it does not
    finish in time.
    """
    flavour = kern.flavour or "uml"
    if kern.detectors:
        # under KASAN, slub_debug's red zones trip a report in UML's own early
        # caches at boot (init_object), and stack ids read back as poison; KASAN
        # keeps red zones of its own.  Slab counts stay exact: tests shrink first.
        append = tuple(a for a in append if not a.startswith("slub_debug"))
    tree = kernelcache.built(flavour)
    if tree is None or not kern.is_uml:
        raise FileNotFoundError(
            f"the {flavour} kernel is not built: "
            f"run `python -m itmtool.kernelcache build {flavour}`"
        )
    release = kernelcache.release(flavour)
    venv_bin = Path(sys.executable).parent
    exports = {"PATH": f"{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    exports.update(env or {})
    for d in rwdirs:
        d.mkdir(parents=True, exist_ok=True)
    started = rwdirs[0] / guestrun.STARTED
    rc_file = rwdirs[0] / RC_FILE
    started.unlink(missing_ok=True)
    rc_file.unlink(missing_ok=True)
    lines = guestrun.preamble(rwdirs[0])
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    lines += [f"cd {shlex.quote(str(resources.checkout() or Path.cwd()))}", script]
    script_file = rwdirs[0] / ".vm-script.sh"
    script_file.write_text("\n".join(lines) + "\n")
    init = rwdirs[0] / ".uml-init.sh"
    init.write_text(_init_script(tree, release, script_file, rwdirs, rc_file))
    init.chmod(0o755)
    cpu = os.environ.get(CPU_ENV, "")
    usable = sorted(os.sched_getaffinity(0))
    if cpu and not (cpu.isdigit() and int(cpu) in usable):
        raise ToolError(
            f"{CPU_ENV}={cpu!r} is not a host CPU this process may use",
            hint=f"set it to one of {', '.join(map(str, usable))}, or unset it",
            code=EXIT_USAGE,
        )
    cmd = [
        *(["taskset", "-c", cpu] if cpu else []),
        str(tree / kernelcache.FLAVOURS[flavour].image),
        f"mem={MEMORY}",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        f"init={init}",
        "con=null",
        "con0=null,fd:1",
        "loglevel=7" if console else "quiet",
        *append,
    ]
    # UML's RAM is a file there: tmpfs keeps it out of the disk's way
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="itm-uml-", dir=shm) as tmp:
        proc_env = {**os.environ, "TMPDIR": tmp}
        status, out = guestrun.run_group(
            cmd, proc_env, timeout=timeout, stream=stream, heartbeat=rwdirs[0] / guestrun.HEARTBEAT
        )
    reached = started.exists()
    started.unlink(missing_ok=True)
    if rc_file.exists():
        rc = int(rc_file.read_text())
        rc_file.unlink()
    else:
        # UML itself ended before the script did: say how (a host signal kills it
        # without a word on its console)
        rc = 255
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        out += f"\nitmtool uml: the UML process ended before the script finished ({how})\n"
    return guestrun.VmResult(rc, out, started=reached)
