"""`itmtool dkms`: install the modules with DKMS, so that they rebuild on kernel upgrades.

The tree's top-level ``dkms.conf`` names the package and the modules to
install; DKMS builds them with the top-level Makefile's ``modules`` target
against ``/lib/modules/<kernel>/build``.  ``itmtool dkms`` stages the sources
(Kbuild, Makefile, kernel/, dkms.conf) under ``/usr/src/itmbench-<version>/``,
leaving out a module whose directory the tree does not have (or whose
directory the top-level Kbuild does not build), then runs
``dkms add``, ``dkms build`` and ``dkms install``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from itmtool.errors import EXIT_PERM, EXIT_UNSUPPORTED, ToolError
from itmtool.matrix import ROOT

CONF = ROOT / "dkms.conf"
_LINE = re.compile(r"^([A-Z_]+)(?:\[(\d+)\])?=\"(.*)\"\s*$")


@dataclass
class DkmsConf:
    """The parts of a dkms.conf itmtool reads and writes."""

    scalars: dict[str, str] = field(default_factory=dict)
    arrays: dict[str, dict[int, str]] = field(default_factory=dict)

    @property
    def package(self) -> str:
        """PACKAGE_NAME."""
        return self.scalars["PACKAGE_NAME"]

    @property
    def version(self) -> str:
        """PACKAGE_VERSION."""
        return self.scalars["PACKAGE_VERSION"]

    def modules(self) -> list[tuple[str, str]]:
        """(BUILT_MODULE_NAME, BUILT_MODULE_LOCATION) in index order."""
        names = self.arrays.get("BUILT_MODULE_NAME", {})
        locs = self.arrays.get("BUILT_MODULE_LOCATION", {})
        return [(names[i], locs.get(i, "")) for i in sorted(names)]

    def render(self) -> str:
        """The file's text (scalars, then the arrays index by index)."""
        lines = ["# written by itmtool dkms from the tree's dkms.conf"]
        lines += [f'{k}="{v}"' for k, v in self.scalars.items()]
        for name, values in self.arrays.items():
            lines += [f'{name}[{i}]="{v}"' for i, v in sorted(values.items())]
        return "\n".join(lines) + "\n"


def parse(text: str) -> DkmsConf:
    """Parse the assignments of a dkms.conf (comments and blank lines skipped)."""
    conf = DkmsConf()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"dkms.conf: cannot read {raw!r}")
        key, index, value = m.groups()
        if index is None:
            conf.scalars[key] = value
        else:
            conf.arrays.setdefault(key, {})[int(index)] = value
    return conf


def built_dirs(root: Path = ROOT) -> set[str]:
    """The directories the top-level Kbuild builds, e.g. {'kernel/itm_mod'}."""
    text = (root / "Kbuild").read_text()
    return {m.rstrip("/") for m in re.findall(r"^obj-m\s*[:+]?=\s*(\S+)", text, re.MULTILINE)}


def for_tree(conf: DkmsConf, root: Path = ROOT) -> tuple[DkmsConf, list[str]]:
    """`conf` without the modules the tree does not build; and what was left out, why."""
    keep: list[int] = []
    dropped: list[str] = []
    dirs = built_dirs(root)
    names = conf.arrays.get("BUILT_MODULE_NAME", {})
    locs = conf.arrays.get("BUILT_MODULE_LOCATION", {})
    for i in sorted(names):
        loc = locs.get(i, "").rstrip("/")
        if not (root / loc / "Kbuild").exists():
            dropped.append(f"{names[i]} (no {loc}/ in this tree)")
        elif loc not in dirs:
            dropped.append(f"{names[i]} (the top-level Kbuild does not build {loc}/)")
        else:
            keep.append(i)
    out = DkmsConf(dict(conf.scalars), {})
    for key, values in conf.arrays.items():
        if key.startswith(("BUILT_MODULE", "DEST_MODULE")):
            out.arrays[key] = {n: values[i] for n, i in enumerate(keep) if i in values}
        else:
            out.arrays[key] = dict(values)
    return out, dropped


def stage(dest: Path, conf: DkmsConf, root: Path = ROOT) -> None:
    """Copy what DKMS builds from (Kbuild, Makefile, kernel/) and the dkms.conf to `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("Kbuild", "Makefile"):
        shutil.copy2(root / name, dest / name)
    shutil.copytree(
        root / "kernel",
        dest / "kernel",
        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.cmd", "*.mod*", "*.order", "*.symvers"),
    )
    (dest / "dkms.conf").write_text(conf.render())


def plan(conf: DkmsConf, kernel: str, src_root: Path = Path("/usr/src")) -> list[list[str]]:
    """The dkms commands `itmtool dkms` runs for `kernel`."""
    mv = ["-m", conf.package, "-v", conf.version]
    return [
        ["dkms", "add", *mv],
        ["dkms", "build", *mv, "-k", kernel],
        ["dkms", "install", *mv, "-k", kernel],
    ]


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def install(
    kernel: str,
    *,
    dry_run: bool = False,
    src_root: Path = Path("/usr/src"),
    root: Path = ROOT,
    run: Runner = _run,
    which: Callable[[str], str | None] = shutil.which,
    say: Callable[[str], None] = print,
) -> list[list[str]]:
    """Print the plan and, unless `dry_run`, carry it out; returns the commands."""
    conf, dropped = for_tree(parse((root / "dkms.conf").read_text()), root)
    dest = src_root / f"{conf.package}-{conf.version}"
    cmds = plan(conf, kernel, src_root)
    say(f"modules: {', '.join(n for n, _ in conf.modules())}")
    for d in dropped:
        say(f"left out: {d}")
    say(f"copy Kbuild, Makefile, kernel/ and dkms.conf to {dest}")
    say(f"dkms remove {conf.package}/{conf.version} --all   (when already added)")
    for c in cmds:
        say(" ".join(c))
    if dry_run:
        return cmds
    if which("dkms") is None:
        raise ToolError(
            "dkms is not installed",
            hint="apt-get install dkms (then run `itmtool dkms` again)",
            code=EXIT_UNSUPPORTED,
        )
    if os.geteuid() != 0:
        raise ToolError("installing with dkms needs root", hint="run it with sudo", code=EXIT_PERM)
    stage(dest, conf, root)
    status = run(["dkms", "status", "-m", conf.package, "-v", conf.version])
    if status.stdout.strip():
        run(["dkms", "remove", f"{conf.package}/{conf.version}", "--all"])
    for c in cmds:
        out = run(c)
        if out.returncode != 0:
            raise ToolError(
                f"{' '.join(c)} failed (exit {out.returncode}):\n"
                + (out.stdout + out.stderr).strip()[-2000:],
                hint=f"the build log is under /var/lib/dkms/{conf.package}/{conf.version}/",
            )
    return cmds
