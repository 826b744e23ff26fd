"""dkms 3 and modinfo as far as `itmtool dkms` uses them, over a fake
/lib/modules, keeping their state the way dkms 3 does (shared by itmtool's dkms
and JSON unit tests)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from itmtool import dkms
from itmtool.matrix import ROOT

__all__ = ["K61", "K612", "RUNTIME", "FakeDkms"]

#: the two kernels FakeDkms has headers for
K61, K612 = "6.1.0-56-amd64", "6.12.117+deb12-amd64"
#: what a user needs at run time: the core, the Python applications' kernel backend, qos_mod,
#: the RIO qdisc, itmRoute's kernel data path
RUNTIME = ["itm_mod", "itm_queue", "qos_mod", "sch_rio", "itm_route"]


class FakeDkms:
    """dkms 3 and modinfo as far as itmtool uses them, over a fake /lib/modules."""

    def __init__(self, tmp: Path) -> None:
        self.lib = tmp / "lib-modules"
        for k in (K61, K612):
            (self.lib / k / "build").mkdir(parents=True)
        self.added = False
        self.installed: set[str] = set()
        self.calls: list[list[str]] = []
        self.fail = ""

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Answer a dkms or modinfo command line (a dkms verb equal to ``fail`` fails)."""
        a = list(argv)
        out, rc = "", 0
        if a[0] == "dkms":
            self.calls.append(a)
            if a[1] == self.fail:
                return subprocess.CompletedProcess(a, 10, "", "Error! Bad return status")
        if a[:2] == ["dkms", "status"]:
            lines = [f"itmbench/0.1.0, {k}, x86_64: installed" for k in sorted(self.installed)]
            out = "\n".join(lines or (["itmbench/0.1.0: added"] if self.added else []))
        elif a[:2] == ["dkms", "add"]:
            self.added = True
        elif a[:2] == ["dkms", "install"]:
            k = a[a.index("-k") + 1]
            self.installed.add(k)
            (self.lib / k / "updates" / "dkms").mkdir(parents=True, exist_ok=True)
            for name in RUNTIME:
                (self.lib / k / "updates" / "dkms" / f"{name}.ko").write_text(k)
        elif a[:2] == ["dkms", "remove"]:
            gone = set(self.installed) if "--all" in a else {a[a.index("-k") + 1]}
            for k in gone:
                shutil.rmtree(self.lib / k / "updates")
            self.installed -= gone
            self.added = bool(self.installed)  # dkms 3: the last kernel takes it out of the tree
        elif a[:2] == ["modinfo", "-k"]:
            f = self.lib / a[2] / "updates" / "dkms" / f"{a[4]}.ko"
            out, rc = (str(f), 0) if f.exists() else ("", 1)
        elif a[:3] == ["modinfo", "-F", "vermagic"]:
            out = Path(a[3]).read_text() + " SMP preempt mod_unload modversions"
        return subprocess.CompletedProcess(a, rc, out + "\n", "")

    def env(self, tmp: Path, said: list[str], *, dkms_here: bool = True, uid: int = 0) -> dkms.Env:
        """The environment `itmtool dkms` runs in: this fake, ``said`` collecting its lines."""
        return dkms.Env(
            src_root=tmp / "usr-src",
            lib_modules=self.lib,
            root=ROOT,
            run=self.run,
            which=lambda _: "/usr/sbin/dkms" if dkms_here else None,
            geteuid=lambda: uid,
            say=said.append,
        )
