"""`itmtool doctor`: is this machine ready for itmBench? One line per prerequisite.

Each check is OK or MISSING, and a MISSING one carries the exact command that
fixes it.  What is needed depends on what for (``--for``):

* ``demo`` (``make demo``): the VM path -- make and gcc, qemu-system-x86,
  busybox (virtme-ng builds the VM's initramfs with it), virtme-ng (``vng``)
  and the newest kernel of the matrix (kernels.txt) with its headers;
* ``test`` (``make test``): the VM path with every kernel of the matrix, the
  host's netfilter (iptables, ip6tables, nft, nfnetlink_queue), dkms,
  CAP_NET_ADMIN, the commands the tests call, and Debian's linux-source
  tarball (checkpatch.pl);
* ``user`` (the default): a way to run the kernel modules -- module support on
  the running kernel with its headers, or the VM path -- and make and gcc.
  The rest is shown and marked optional: the nfqueue backend needs netfilter
  and CAP_NET_ADMIN, `itmtool dkms` needs dkms.

The exit code is 0 when everything needed is there, 6 (EXIT_UNSUPPORTED)
otherwise.  Everything that looks at the machine goes through a
:class:`Probe`, so the decisions are tested with a fake one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itmtool import kernelcache
from itmtool.errors import EXIT_OK, EXIT_UNSUPPORTED
from itmtool.matrix import Kernel, newest_debian, selected

PURPOSES = ("user", "demo", "test")
#: what each purpose is, for the heading
WHAT = {
    "user": "running itmBench's modules and applications here",
    "demo": "`make demo`",
    "test": "`make test`",
}
#: bit of CAP_NET_ADMIN in /proc/self/status CapEff
CAP_NET_ADMIN = 12
#: where virtme-ng looks for busybox besides PATH (virtme/util.py find_binary)
BUSYBOX_NAMES = ("busybox-static", "busybox.static", "busybox")
BUSYBOX_DIRS = ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")
#: commands the tests call on the host or in the VM, and their Debian packages
TEST_COMMANDS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "ping": "iputils-ping",
    "ethtool": "ethtool",
    "modinfo": "kmod",
    "sparse": "sparse",
    "perl": "perl",
    "xz": "xz-utils",
}
#: checkpatch.pl comes from it (make style, the style tests)
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
#: libelf-dev: objtool, which every x86 kernel build runs
LIBELF_HEADER = Path("/usr/include/gelf.h")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _cap_eff(status: Path = Path("/proc/self/status")) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _vng() -> str | None:
    venv_bin = Path(sys.executable).parent
    return shutil.which("vng", path=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")


@dataclass
class Probe:
    """The machine as the doctor sees it (swappable in tests)."""

    which: Callable[[str], str | None] = shutil.which
    exists: Callable[[Path], bool] = Path.exists
    is_file: Callable[[Path], bool] = Path.is_file
    release: str = field(default_factory=lambda: os.uname().release)
    euid: int = field(default_factory=os.geteuid)
    cap_eff: Callable[[], int] = _cap_eff
    vng: Callable[[], str | None] = _vng
    run: Callable[[list[str]], subprocess.CompletedProcess[str]] = _run
    matrix: Callable[[], list[Kernel]] = selected
    python: str = sys.executable


@dataclass
class Check:
    """One prerequisite: whether it is there, what was found or is missing, the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    #: the purposes that need it
    needed_for: tuple[str, ...] = ()
    #: a group that one of its alternatives satisfies for `user` ("modules")
    group: str = ""

    def as_dict(self, purpose: str) -> dict[str, Any]:
        """The `--json` form."""
        return {
            "name": self.name,
            "ok": self.ok,
            "needed": purpose in self.needed_for,
            "detail": self.detail,
            "fix": "" if self.ok else self.fix,
        }


def _apt(probe: Probe, *pkgs: str) -> str:
    return ("" if probe.euid == 0 else "sudo ") + "apt-get install -y " + " ".join(pkgs)


def _commands(probe: Probe, commands: dict[str, str]) -> tuple[list[str], list[str]]:
    """(found, missing) of `commands` on PATH; missing as their Debian packages."""
    missing = [c for c in commands if probe.which(c) is None]
    pkgs = sorted({commands[c] for c in missing})
    return missing, pkgs


def _tool_check(
    probe: Probe, name: str, commands: dict[str, str], why: str, needed: tuple[str, ...]
) -> Check:
    missing, pkgs = _commands(probe, commands)
    if not missing:
        return Check(name, True, f"{', '.join(commands)} ({why})", needed_for=needed)
    return Check(
        name,
        False,
        f"{', '.join(missing)} not found ({why})",
        _apt(probe, *pkgs),
        needed,
    )


def check_modules_here(probe: Probe) -> Check:
    """Module support on the running kernel, and its headers."""
    rel = probe.release
    if not probe.exists(Path("/proc/modules")):
        return Check(
            "modules on this kernel",
            False,
            f"the running kernel {rel} cannot load modules (no CONFIG_MODULES)",
            "boot a kernel with module support, or use the VM path (`itmtool vm`)",
            group="modules",
        )
    build = Path("/lib/modules") / rel / "build"
    if not probe.exists(build):
        return Check(
            "modules on this kernel",
            False,
            f"{rel} loads modules but has no headers ({build})",
            _apt(probe, f"linux-headers-{rel}"),
            group="modules",
        )
    return Check("modules on this kernel", True, f"{rel} loads modules, headers in {build}")


def find_busybox(probe: Probe) -> str | None:
    """busybox where virtme-ng looks for it (PATH, then the usual bin directories)."""
    for name in BUSYBOX_NAMES:
        found = probe.which(name)
        if found:
            return found
        for d in BUSYBOX_DIRS:
            if probe.is_file(Path(d) / name):
                return str(Path(d) / name)
    return None


def _found(
    name: str,
    path: str | None,
    detail: str,
    missing: str,
    fix: str,
    needed: tuple[str, ...],
    group: str = "",
) -> Check:
    """OK, with `detail` naming what was found (``{}``: `path`), when `path` was found;
    else MISSING, with `fix`."""
    if path:
        return Check(name, True, detail.format(path), needed_for=needed, group=group)
    return Check(name, False, missing, fix, needed, group)


def check_vm_path(probe: Probe) -> list[Check]:
    """QEMU, busybox, virtme-ng and the kernels of the matrix with their headers."""
    demo = ("demo", "test")
    checks = [
        _found(
            "qemu",
            probe.which("qemu-system-x86_64"),
            "qemu-system-x86_64 ({})",
            "qemu-system-x86_64 not found (the VM that runs the modules)",
            _apt(probe, "qemu-system-x86"),
            demo,
            "vm",
        ),
        _found(
            "busybox",
            find_busybox(probe),
            "{} (the VM's initramfs)",
            "no busybox: virtme-ng cannot build the VM's initramfs without it",
            _apt(probe, "busybox-static"),
            demo,
            "vm",
        ),
        _found(
            "virtme-ng",
            probe.vng(),
            "vng ({})",
            "vng (virtme-ng) not found next to this Python or on PATH",
            f"{probe.python} -m pip install virtme-ng",
            demo,
            "vm",
        ),
    ]
    try:
        kernels = probe.matrix()
    except Exception as err:  # a missing kernels.txt: say so on the line
        return [*checks, Check("kernel matrix", False, str(err), "", demo, "vm")]
    demo_kernel = newest_debian(kernels)
    for k in kernels:
        if k.flavour is not None:
            checks.append(_check_own_kernel(probe, k))
            continue
        checks.append(_check_kernel(probe, k, demo if k is demo_kernel else ("test",)))
    return checks


def _check_own_kernel(probe: Probe, k: Kernel) -> Check:
    """A kernel of ours (debug, UML): built in the cache, or the command that builds it."""
    name = f"kernel {k.name}"
    fix = f"{probe.python} -m itmtool.kernelcache build {k.flavour}  (or `make setup`)"
    try:
        rel = k.release
    except (LookupError, kernelcache.KernelBuildError) as err:  # not built, no fragment
        return Check(name, False, str(err), fix, ("test",), "vm")
    if not probe.exists(k.vmlinuz):
        return Check(name, False, f"{rel}: no {k.vmlinuz}", fix, ("test",), "vm")
    return Check(name, True, f"{rel}: built in {k.build_dir}", needed_for=("test",), group="vm")


def check_kernel_build_tools(probe: Probe) -> Check:
    """flex, bison, bc and libelf's headers: building the debug kernel and UML needs them."""
    tools = {"flex": "flex", "bison": "bison", "bc": "bc"}
    missing = sorted({pkg for cmd, pkg in tools.items() if not probe.which(cmd)})
    if not probe.exists(LIBELF_HEADER):
        missing.append("libelf-dev")
    if missing:
        return Check(
            "kernel build tools",
            False,
            f"missing {', '.join(missing)} (building the debug kernel and UML)",
            _apt(probe, *missing),
            ("test",),
        )
    return Check("kernel build tools", True, "flex, bison, bc, libelf", needed_for=("test",))


def _check_kernel(probe: Probe, k: Kernel, needed: tuple[str, ...]) -> Check:
    name = f"kernel {k.name}"
    fix = _apt(probe, k.image_pkg, k.headers_pkg)
    try:
        rel = k.release
    except LookupError:
        return Check(name, False, f"{k.headers_pkg} is not installed", fix, needed, "vm")
    lacking = [str(p) for p in (k.vmlinuz, k.build_dir) if not probe.exists(p)]
    if lacking:
        return Check(name, False, f"{rel}: no {' or '.join(lacking)}", fix, needed, "vm")
    return Check(name, True, f"{rel}: image and headers", needed_for=needed, group="vm")


def check_netfilter(probe: Probe) -> list[Check]:
    """iptables, ip6tables, nft and nfnetlink_queue (the nfqueue backend, the host tests)."""
    cmds = {"iptables": "iptables", "ip6tables": "iptables", "nft": "nftables"}
    checks = [_tool_check(probe, "netfilter tools", cmds, "the nfqueue backend", ("test",))]
    proc = Path("/proc/net/netfilter/nfnetlink_queue")
    if probe.exists(proc):
        checks.append(Check("nfnetlink_queue", True, str(proc), needed_for=("test",)))
    elif (
        probe.exists(Path("/proc/modules"))
        and probe.run(["modinfo", "nfnetlink_queue"]).returncode == 0
    ):
        checks.append(
            Check(
                "nfnetlink_queue",
                False,
                "the module is not loaded",
                ("" if probe.euid == 0 else "sudo ") + "modprobe nfnetlink_queue",
                ("test",),
            )
        )
    else:
        checks.append(
            Check(
                "nfnetlink_queue",
                False,
                f"the running kernel has no nfnetlink_queue ({proc} missing)",
                "boot a kernel with CONFIG_NETFILTER_NETLINK_QUEUE",
                ("test",),
            )
        )
    return checks


def check_cap_net_admin(probe: Probe) -> Check:
    """CAP_NET_ADMIN: netfilter rules, network namespaces, itm_mod's admin commands."""
    if probe.cap_eff() >> CAP_NET_ADMIN & 1:
        return Check("CAP_NET_ADMIN", True, "this process has it", needed_for=("test",))
    return Check(
        "CAP_NET_ADMIN",
        False,
        "not held (netfilter rules, namespaces, itmtool enable/disable need it)",
        "run it as root: sudo make test (or sudo itmtool ...)",
        ("test",),
    )


def check_dkms(probe: Probe) -> Check:
    """dkms, for `itmtool dkms` (and its host test)."""
    return _found(
        "dkms",
        probe.which("dkms"),
        "{}",
        "dkms not found (`itmtool dkms`)",
        _apt(probe, "dkms"),
        ("test",),
    )


def check_source_tarball(probe: Probe) -> Check:
    """Debian's linux-source tarball: checkpatch.pl for the style checks."""
    if probe.exists(SOURCE_TARBALL):
        detail = f"{SOURCE_TARBALL} (checkpatch.pl)"
        return Check("linux-source", True, detail, needed_for=("test",))
    return Check(
        "linux-source",
        False,
        f"no {SOURCE_TARBALL} (checkpatch.pl for the style checks)",
        _apt(probe, "linux-source-6.12"),
        ("test",),
    )


def run_checks(probe: Probe | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    probe = probe or Probe()
    all_three = ("user", "demo", "test")
    build = {"make": "make", "gcc": "gcc"}
    return [
        _tool_check(probe, "build tools", build, "building the modules", all_three),
        check_modules_here(probe),
        *check_vm_path(probe),
        *check_netfilter(probe),
        check_dkms(probe),
        check_cap_net_admin(probe),
        _tool_check(probe, "test commands", TEST_COMMANDS, "called by the tests", ("test",)),
        check_source_tarball(probe),
        check_kernel_build_tools(probe),
    ]


def needed(check: Check, purpose: str, checks: list[Check]) -> bool:
    """Whether `check` must be OK for `purpose`.

    For `user`, the running kernel's modules and the VM path are alternatives:
    the VM path is needed when the running kernel cannot load modules, and
    the other way round.
    """
    if purpose != "user" or check.group not in ("modules", "vm"):
        return purpose in check.needed_for
    here_ok = all(c.ok for c in checks if c.group == "modules")
    # the VM path a user needs is the demo's (qemu, vng, the newest Debian kernel);
    # the other kernels of the matrix (and the debug kernel, UML) are the tests'
    vm = [c for c in checks if c.group == "vm" and "demo" in c.needed_for]
    vm_ok = all(c.ok for c in vm)
    if check.group == "modules":
        return not vm_ok
    return not here_ok and "demo" in check.needed_for


def report(purpose: str, probe: Probe | None = None) -> dict[str, Any]:
    """The `--json` document: every check, whether it is needed, and the verdict."""
    checks = run_checks(probe)
    rows = []
    for c in checks:
        row = c.as_dict(purpose)
        row["needed"] = needed(c, purpose, checks)
        rows.append(row)
    missing = [r["name"] for r in rows if r["needed"] and not r["ok"]]
    return {"for": purpose, "ok": not missing, "missing": missing, "checks": rows}


def table(doc: dict[str, Any], *, quiet: bool = False) -> str:
    """The report for a person: one line per check, the fix under a missing one.

    `quiet` shows only what is needed and missing, and the verdict.
    """
    lines = [f"itmtool doctor --for {doc['for']}: what {WHAT[doc['for']]} needs on this machine"]
    if quiet:
        lines = [] if doc["ok"] else lines[:1]
    for r in doc["checks"]:
        if quiet and (r["ok"] or not r["needed"]):
            continue
        state = "OK" if r["ok"] else ("MISSING" if r["needed"] else "missing")
        note = "" if r["needed"] or r["ok"] else f" (not needed for {doc['for']})"
        lines.append(f"{state:<8} {r['name']:<23} {r['detail']}{note}")
        if not r["ok"] and r["fix"]:
            lines.append(f"{'':<8} {'':<23} fix: {r['fix']}")
    if doc["ok"]:
        lines.append(f"ready for {doc['for']}")
    else:
        lines.append(
            f"NOT ready for {doc['for']}: {', '.join(doc['missing'])} missing "
            "(run the fix lines above; in a checkout `scripts/setup.sh` installs them)"
        )
    return "\n".join(lines)


def exit_code(doc: dict[str, Any]) -> int:
    """0 when everything needed is there, 6 otherwise."""
    return EXIT_OK if doc["ok"] else EXIT_UNSUPPORTED
