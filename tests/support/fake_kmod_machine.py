"""A machine for `itmtool load` / `unload` without root or a kernel: /proc,
/sys/module and a checkout with built modules in a temporary directory, and
modinfo/insmod/rmmod/modprobe answering as the kernel would (shared by the kmod
and JSON unit tests of itmtool)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from itmtool import kmod

__all__ = ["MODINFO", "REAL_HOST", "RELEASE", "FakeMachine"]

RELEASE = "6.12.0-test-amd64"
REAL_HOST = kmod.Host  # the tests swap kmod.Host for the command line

MODINFO: dict[str, dict[str, list[str]]] = {
    "itm_mod": {
        "name": ["itm_mod"],
        "parm": ["nf_priority:netfilter priority (int)", "init_netns:attach at load (bool)"],
        "parmtype": ["nf_priority:int", "init_netns:bool"],
        "depends": [""],
        "vermagic": [f"{RELEASE} SMP preempt mod_unload modversions"],
    },
    "count_udp": {
        "name": ["count_udp"],
        "parm": ["priority:run order (int)", "timer_ms:period (uint)", "packets:read only"],
        "parmtype": ["priority:int", "timer_ms:uint"],
        "depends": ["itm_mod"],
        "vermagic": [f"{RELEASE} SMP preempt mod_unload modversions"],
    },
    "itm_queue": {
        "name": ["itm_queue"],
        "parm": ["queue_base:first queue number (uint)"],
        "parmtype": ["queue_base:uint"],
        "depends": ["itm_mod"],
        "vermagic": [f"{RELEASE} SMP preempt mod_unload modversions"],
    },
    "route_app": {
        "name": ["route_app"],
        "parm": [],
        "parmtype": [],
        "depends": ["itm_mod,libchacha20poly1305"],
        "vermagic": [f"{RELEASE} SMP preempt mod_unload modversions"],
    },
    "old_app": {
        "name": ["old_app"],
        "parm": [],
        "parmtype": [],
        "depends": ["itm_mod"],
        "vermagic": ["6.1.0-1-amd64 SMP preempt mod_unload modversions"],
    },
}


class FakeMachine:
    """/proc, /sys/module, a checkout with built modules, and the kmod tools."""

    def __init__(self, tmp: Path, *, modules: bool = True) -> None:
        self.proc = tmp / "proc"
        self.sys = tmp / "sys" / "module"
        self.root = tmp / "checkout"
        self.libmod = tmp / "lib" / "modules"
        self.proc.mkdir(parents=True)
        self.sys.mkdir(parents=True)
        if modules:
            (self.proc / "modules").write_text("")
        for name, sub in (
            ("itm_mod", "itm_mod"),
            ("count_udp", "count_udp"),
            ("itm_queue", "itm_queue"),
            ("route_app", "route_app"),
        ):
            kdir = self.root / "kernel" / sub
            kdir.mkdir(parents=True)
            (kdir / "Kbuild").write_text(f"obj-m := {name}.o\n")
            built = self.root / "build" / RELEASE / "src" / "kernel" / sub
            built.mkdir(parents=True)
            (built / f"{name}.ko").write_bytes(b"\x7fELF")
        intree = self.root / "kernel" / "old_app"
        intree.mkdir(parents=True)
        (intree / "Kbuild").write_text("obj-m := old_app.o\n")
        (intree / "old_app.ko").write_bytes(b"\x7fELF")
        self.calls: list[list[str]] = []
        #: the kernel's own modules modprobe finds
        self.kernel_modules = {"libchacha20poly1305"}

    def host(self, euid: int = 0) -> kmod.Host:
        """The real kmod.Host over this machine, running as ``euid``."""
        return REAL_HOST(
            release=RELEASE,
            proc=self.proc,
            sys_module=self.sys,
            lib_modules=self.libmod,
            root=self.root,
            euid=euid,
            run=self.run,
        )

    def insert(self, name: str) -> None:
        """Make module ``name`` live in /sys/module, held by nothing, holding its deps."""
        (self.sys / name / "holders").mkdir(parents=True, exist_ok=True)
        (self.sys / name / "initstate").write_text("live\n")
        for line in MODINFO.get(name, {}).get("depends", []):
            for dep in filter(None, line.split(",")):
                (self.sys / dep / "holders" / name).touch()

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Answer modinfo, modprobe, insmod or rmmod as the kernel would."""
        self.calls.append(list(argv))
        tool = argv[0]
        if tool == "modinfo":
            name = Path(argv[3]).stem
            if name not in MODINFO:
                return subprocess.CompletedProcess(argv, 1, "", f"modinfo: ERROR: {argv[3]}")
            return subprocess.CompletedProcess(argv, 0, "\n".join(MODINFO[name][argv[2]]) + "\n")
        name = Path(argv[1]).stem
        if tool == "modprobe":
            if name not in self.kernel_modules:
                return subprocess.CompletedProcess(
                    argv, 1, "", f"modprobe: FATAL: Module {name} not found in directory"
                )
            self.insert(name)
            return subprocess.CompletedProcess(argv, 0, "", "")
        if tool == "insmod":
            self.insert(name)
            return subprocess.CompletedProcess(argv, 0, "", "")
        if tool == "rmmod":
            if any((self.sys / name / "holders").iterdir()):
                return subprocess.CompletedProcess(argv, 1, "", f"rmmod: {name} is in use")
            for line in MODINFO[name]["depends"]:
                for dep in filter(None, line.split(",")):
                    (self.sys / dep / "holders" / name).unlink()
            for p in sorted((self.sys / name).rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            (self.sys / name).rmdir()
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise AssertionError(f"unexpected command {argv}")

    def tools_called(self) -> list[tuple[str, str]]:
        """(tool, module) of every insmod, rmmod and modprobe run so far."""
        return [
            (c[0], Path(c[-1] if c[0] == "rmmod" else c[1]).stem)
            for c in self.calls
            if c[0] in ("insmod", "rmmod", "modprobe")
        ]
