"""`itmtool dkms`: install the modules with DKMS, so that they rebuild on kernel upgrades.

The tree's top-level ``dkms.conf`` names the package and the modules to
install -- every one a user needs at run time: itm_mod, itm_queue (Python
applications on the kernel backend), qos_mod, sch_rio (the RIO core qdisc) and
itm_route (itmRoute's kernel data path);
DKMS builds them with the top-level Makefile's ``modules`` target against
``/lib/modules/<kernel>/build``.

``install`` stages the sources (Makefile, kernel/, a Kbuild of the installed
modules only, dkms.conf) under ``/usr/src/itmbench-<version>/``, leaving out
a module whose directory the tree does not have (or does not build), then
runs ``dkms add`` (once),
``dkms build`` and ``dkms install`` for one kernel.  DKMS puts the modules in
``/lib/modules/<kernel>/updates/dkms/`` and runs ``depmod``, so ``modprobe``
finds them; with ``AUTOINSTALL="yes"`` Debian's kernel hook
(``/etc/kernel/postinst.d/dkms``) builds them for every kernel installed later.
When the staged sources differ from the tree (an update), the package is
removed and added again, and reinstalled for every kernel that had it.

``remove`` undoes it: ``dkms remove`` (every kernel, or one), and the staged
sources once no kernel has the package any more.  ``status`` reads
``dkms status`` and shows, per kernel, the module files that ``modprobe``
would load and their vermagic.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itmtool import resources
from itmtool.errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_PERM, EXIT_UNSUPPORTED, ToolError

#: the sources staged for DKMS: the checkout, or the wheel's copy (itmtool.resources)
ROOT = resources.SOURCE_ROOT
CONF = ROOT / "dkms.conf"
#: first line of every dkms.conf that itmtool stages (how `remove` knows the sources are its own)
MARKER = "# written by itmtool dkms from the tree's dkms.conf"
_LINE = re.compile(r"^([A-Z_]+)(?:\[(\d+)\])?=\"(.*)\"\s*$")
#: a line of `dkms status` (dkms 3): `name/version[, kernel, arch]: state[ (note)]`
_STATUS = re.compile(
    r"^(?P<name>[^/,\s]+)/(?P<version>[^,:\s]+)"
    r"(?:, (?P<kernel>[^,]+), (?P<arch>[^:]+))?: (?P<state>[a-z]+)(?P<note>.*)$"
)
#: build products never staged (an in-tree `make` leaves them in kernel/)
_IGNORE = ("*.o", "*.ko", "*.ko.*", "*.cmd", "*.mod", "*.mod.c", "*.order", "*.symvers", "*.dwo")


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

    @property
    def ref(self) -> str:
        """`name/version`, as dkms names the package."""
        return f"{self.package}/{self.version}"

    def modules(self) -> list[tuple[str, str]]:
        """(BUILT_MODULE_NAME, BUILT_MODULE_LOCATION) in index order."""
        names = self.arrays.get("BUILT_MODULE_NAME", {})
        locs = self.arrays.get("BUILT_MODULE_LOCATION", {})
        return [(names[i], locs.get(i, "")) for i in sorted(names)]

    def render(self) -> str:
        """The file's text (scalars, then the arrays index by index)."""
        lines = [MARKER]
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


def tree_conf(root: Path = ROOT) -> tuple[DkmsConf, list[str]]:
    """The tree's dkms.conf as itmtool stages it, and the modules left out."""
    resources.require_sources(root)
    return for_tree(parse((root / "dkms.conf").read_text()), root)


def stage(dest: Path, conf: DkmsConf, root: Path = ROOT) -> None:
    """Copy what DKMS builds from (Makefile, kernel/) and the dkms.conf to `dest`.

    The staged Kbuild builds the modules of `conf` only (not the test and
    benchmark modules of the tree).
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(root / "Makefile", dest / "Makefile")
    dirs = sorted({loc.rstrip("/") for _, loc in conf.modules()})
    (dest / "Kbuild").write_text(
        "# SPDX-License-Identifier: GPL-2.0\n"
        "# written by itmtool dkms: the modules dkms.conf installs, no others\n"
        + "".join(f"obj-m += {d}/\n" for d in dirs)
    )
    shutil.copytree(root / "kernel", dest / "kernel", ignore=shutil.ignore_patterns(*_IGNORE))
    (dest / "dkms.conf").write_text(conf.render())


def tree_digest(path: Path) -> str:
    """A digest of every file under `path` (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def staged_matches(dest: Path, conf: DkmsConf, root: Path = ROOT) -> bool:
    """Whether `dest` holds exactly what `stage` would write from the tree now."""
    if not dest.is_dir():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "src"
        stage(fresh, conf, root)
        return tree_digest(fresh) == tree_digest(dest)


def is_ours(dest: Path) -> bool:
    """Whether `dest` is a source tree staged by itmtool (its dkms.conf has the marker)."""
    try:
        return (dest / "dkms.conf").read_text().startswith(MARKER)
    except OSError:
        return False


def plan(conf: DkmsConf, kernel: str) -> list[list[str]]:
    """The dkms commands a first `itmtool dkms install` runs for `kernel`."""
    mv = ["-m", conf.package, "-v", conf.version]
    return [
        ["dkms", "add", *mv],
        ["dkms", "build", *mv, "-k", kernel],
        ["dkms", "install", *mv, "-k", kernel],
    ]


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@dataclass
class Env:
    """Where DKMS, the sources and the kernels' modules live; how commands run.

    The defaults are the machine's; unit tests replace them.
    """

    src_root: Path = Path("/usr/src")
    lib_modules: Path = Path("/lib/modules")
    root: Path = ROOT
    run: Runner = _run
    which: Callable[[str], str | None] = shutil.which
    geteuid: Callable[[], int] = os.geteuid
    say: Callable[[str], None] = print


@dataclass(frozen=True)
class Entry:
    """One line of `dkms status`: the package on one kernel (or only added)."""

    name: str
    version: str
    kernel: str | None
    arch: str | None
    state: str
    note: str = ""


def parse_status(text: str) -> list[Entry]:
    """The lines of `dkms status` output (dkms 3 format); other lines are ignored."""
    out = []
    for line in text.splitlines():
        m = _STATUS.match(line.strip())
        if m:
            out.append(
                Entry(
                    m["name"],
                    m["version"],
                    m["kernel"],
                    m["arch"],
                    m["state"],
                    m["note"].strip(" ()"),
                )
            )
    return out


def require_dkms(env: Env) -> None:
    """Refuse (exit 6) when dkms is not installed."""
    if env.which("dkms") is None:
        raise ToolError(
            "dkms is not installed",
            hint="apt-get install dkms (or `make setup`), then run it again",
            code=EXIT_UNSUPPORTED,
        )


def _require_root(env: Env, what: str) -> None:
    if env.geteuid() != 0:
        raise ToolError(f"{what} with dkms needs root", hint="run it with sudo", code=EXIT_PERM)


def require_headers(kernel: str, env: Env) -> None:
    """Refuse (exit 6) when `kernel` has no headers for DKMS to build against."""
    build_dir = env.lib_modules / kernel / "build"
    if not build_dir.exists():
        raise ToolError(
            f"no kernel headers for {kernel} (looked for {build_dir}): dkms cannot build for it",
            hint=f"apt-get install linux-headers-{kernel}, or install for a kernel of the "
            "matrix: `itmtool dkms install --kernel 6.12`",
            code=EXIT_UNSUPPORTED,
        )


def entries(conf: DkmsConf, env: Env, *, all_versions: bool = False) -> list[Entry]:
    """`dkms status` for the package (this version only unless `all_versions`)."""
    out = env.run(["dkms", "status", "-m", conf.package])
    found = [e for e in parse_status(out.stdout) if e.name == conf.package]
    return found if all_versions else [e for e in found if e.version == conf.version]


def _installed_kernels(found: list[Entry]) -> list[str]:
    return [e.kernel for e in found if e.kernel and e.state == "installed"]


def installed_modules(conf: DkmsConf, kernel: str, env: Env) -> list[dict[str, Any]]:
    """Each module of `conf` as modprobe finds it for `kernel`: path and vermagic.

    The path is what `modinfo -k KERNEL -n NAME` resolves through depmod's
    index; None when the module is not in the index.
    """
    mods: list[dict[str, Any]] = []
    for name, _ in conf.modules():
        out = env.run(["modinfo", "-k", kernel, "-n", name])
        path = out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
        vermagic = None
        if path:
            vm = env.run(["modinfo", "-F", "vermagic", path])
            vermagic = vm.stdout.strip() if vm.returncode == 0 else None
        mods.append({"name": name, "path": path, "vermagic": vermagic})
    return mods


def _do(argv: list[str], env: Env, done: list[list[str]], conf: DkmsConf) -> None:
    env.say("==> " + " ".join(argv))
    out = env.run(argv)
    done.append(argv)
    if out.returncode != 0:
        raise ToolError(
            f"{' '.join(argv)} failed (exit {out.returncode}):\n"
            + (out.stdout + out.stderr).strip()[-2000:],
            hint=f"the build log is under /var/lib/dkms/{conf.package}/{conf.version}/",
            code=EXIT_FAILED,
        )


def install(kernel: str, *, dry_run: bool = False, env: Env | None = None) -> dict[str, Any]:
    """Install the modules for `kernel` with DKMS; returns what `--json` prints.

    Prints the plan first; with `dry_run` does nothing else.
    """
    env = env or Env()
    conf, dropped = tree_conf(env.root)
    dest = env.src_root / f"{conf.package}-{conf.version}"
    result: dict[str, Any] = {
        "package": conf.package,
        "version": conf.version,
        "kernel": kernel,
        "source": str(dest),
        "left_out": dropped,
        "commands": [],
        "modules": [],
    }
    # a dry run refuses what the install would (a release with no headers: a typo)
    require_headers(kernel, env)
    env.say(f"modules: {', '.join(n for n, _ in conf.modules())}")
    for d in dropped:
        env.say(f"left out: {d}")
    if dry_run:
        env.say(f"stage Makefile, kernel/, a Kbuild of these modules and dkms.conf in {dest}")
        env.say(f"dkms remove {conf.ref} --all   (when added from other sources)")
        for c in plan(conf, kernel):
            env.say(" ".join(c))
        result["commands"] = plan(conf, kernel)
        return result
    require_dkms(env)
    _require_root(env, "installing")
    done: list[list[str]] = result["commands"]
    for other in {e.version for e in entries(conf, env, all_versions=True)} - {conf.version}:
        env.say(f"note: {conf.package}/{other} is added too (`dkms remove {conf.package}/{other}`)")
    found = entries(conf, env)
    again: list[str] = []
    if found and staged_matches(dest, conf, env.root):
        env.say(f"{conf.ref} is added to dkms from {dest}, the same sources as this tree")
    else:
        if found:
            again = [k for k in _installed_kernels(found) if k != kernel]
            env.say(f"the sources in {dest} differ from this tree: adding them again")
            _do(["dkms", "remove", conf.ref, "--all"], env, done, conf)
            found = []
        env.say(f"stage Makefile, kernel/, a Kbuild of these modules and dkms.conf in {dest}")
        stage(dest, conf, env.root)
        _do(["dkms", "add", "-m", conf.package, "-v", conf.version], env, done, conf)
    mv = ["-m", conf.package, "-v", conf.version]
    for k in [*again, kernel]:
        if k in _installed_kernels(found):
            env.say(f"{conf.ref} is installed for {k} already")
            continue
        _do(["dkms", "build", *mv, "-k", k], env, done, conf)
        _do(["dkms", "install", *mv, "-k", k], env, done, conf)
    result["modules"] = installed_modules(conf, kernel, env)
    wrong = [m for m in result["modules"] if (m["vermagic"] or "").split(" ")[:1] != [kernel]]
    if wrong:
        names = ", ".join(m["name"] for m in wrong)
        raise ToolError(
            f"dkms install succeeded but modprobe would not find {names} built for {kernel}: "
            f"{wrong}",
            hint=f"see `dkms status` and /lib/modules/{kernel}/updates/dkms/",
        )
    return result


def remove(
    kernel: str | None = None, *, dry_run: bool = False, env: Env | None = None
) -> dict[str, Any]:
    """Remove the package from DKMS (every kernel, or `kernel` only); returns the `--json` doc.

    The staged sources go too once no kernel has the package any more.
    """
    env = env or Env()
    conf, _ = tree_conf(env.root)
    dest = env.src_root / f"{conf.package}-{conf.version}"
    argv = ["dkms", "remove", conf.ref, *(["-k", kernel] if kernel else ["--all"])]
    result: dict[str, Any] = {
        "package": conf.package,
        "version": conf.version,
        "removed": [],
        "source_removed": False,
        "commands": [],
    }
    if dry_run:
        env.say(" ".join(argv))
        env.say(f"then, when no kernel has {conf.ref} any more: delete {dest}")
        result["commands"] = [argv]
        return result
    require_dkms(env)
    _require_root(env, "removing")
    found = entries(conf, env)
    if not found and not is_ours(dest):
        raise ToolError(
            f"{conf.ref} is not installed with dkms",
            hint="`itmtool dkms status` shows what is",
            code=EXIT_NOT_FOUND,
        )
    kernels = _installed_kernels(found) + [
        e.kernel for e in found if e.kernel and e.state != "installed"
    ]
    if kernel and kernel not in kernels:
        raise ToolError(
            f"{conf.ref} is not built or installed for {kernel}",
            hint=f"it is for: {', '.join(kernels) or 'no kernel'} (`itmtool dkms status`)",
            code=EXIT_NOT_FOUND,
        )
    if found:
        _do(argv, env, result["commands"], conf)
    result["removed"] = [kernel] if kernel else kernels
    if not entries(conf, env) and is_ours(dest):
        env.say(f"==> rm -r {dest}")
        shutil.rmtree(dest)
        result["source_removed"] = True
    left = [
        str(p)
        for k in result["removed"]
        for name, _ in conf.modules()
        for p in (env.lib_modules / k / "updates" / "dkms").glob(f"{name}.ko*")
    ]
    if left:
        raise ToolError(f"dkms remove left module files behind: {', '.join(left)}")
    return result


def status(kernel: str | None = None, *, env: Env | None = None) -> dict[str, Any]:
    """The package in DKMS: every version and kernel, and the module files modprobe finds."""
    env = env or Env()
    conf, _ = tree_conf(env.root)
    require_dkms(env)
    dest = env.src_root / f"{conf.package}-{conf.version}"
    rows: list[dict[str, Any]] = []
    found = entries(conf, env, all_versions=True)
    for e in found:
        if kernel and e.kernel != kernel:
            continue
        mods = (
            installed_modules(conf, e.kernel, env)
            if e.kernel and e.state == "installed" and e.version == conf.version
            else []
        )
        rows.append(
            {
                "version": e.version,
                "kernel": e.kernel,
                "arch": e.arch,
                "state": e.state,
                "note": e.note,
                "modules": mods,
            }
        )
    return {
        "package": conf.package,
        "version": conf.version,
        "added": any(e.version == conf.version for e in found),
        "source": str(dest) if dest.is_dir() else None,
        "kernels": rows,
    }


def status_table(doc: dict[str, Any]) -> str:
    """`itmtool dkms status` for a person."""
    head = f"{doc['package']} {doc['version']}: "
    if not doc["added"]:
        head += "not added to dkms (install it: `itmtool dkms install --kernel 6.12`)"
    else:
        head += f"added to dkms, sources in {doc['source']}"
    lines = [head]
    if doc["kernels"]:
        lines.append(f"{'KERNEL':<24} {'STATE':<10} {'MODULE':<9} {'VERMAGIC':<22} FILE")
    for row in doc["kernels"]:
        first = f"{row['kernel'] or '-':<24} {row['state']:<10}"
        if row["version"] != doc["version"]:
            first += f" (version {row['version']})"
        if not row["modules"]:
            lines.append(first.rstrip())
        for i, m in enumerate(row["modules"]):
            lead = first if i == 0 else " " * len(first)
            vermagic = (m["vermagic"] or "-").split(" ")[0]
            lines.append(f"{lead} {m['name']:<9} {vermagic:<22} {m['path'] or 'not found'}")
        if row["note"]:
            lines.append(f"{'':<24} {row['note']}")
    return "\n".join(lines)
