"""Build itmBench's kernel modules for the kernels of the matrix, and check them.

Each kernel gets its own copy of the sources under ``build/<release>/src`` so that
builds for several kernels never share objects (``build/`` is
:data:`itmtool.resources.BUILD_ROOT`: the checkout's, or a per-user cache when
installed from a wheel).  A build runs in a new directory beside its target and
replaces the target only when ``make`` succeeded: a failed or interrupted
(Ctrl-C) build leaves the previous good one in place.  The checks are the ones of a
well-kept out-of-tree module: ``W=1`` without warnings, ``sparse`` (``C=2``) and
``checkpatch.pl --strict`` (taken from Debian's linux-source tarball).

``python -m itmtool.buildmods --all | --style | --sparse`` (``make kernels``,
``make style``, ``make check``) exits 1 on any warning.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from itmtool import kernelcache, resources
from itmtool.matrix import ROOT, Kernel, read_matrix, selected

BUILD_ROOT = resources.BUILD_ROOT
CACHE = resources.cache_root()
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
CHECKPATCH_FILES = ("checkpatch.pl", "spelling.txt", "const_structs.checkpatch", "kernel-doc")

# lines of kbuild output that are diagnostics
_DIAG = re.compile(r"(warning|error)\b", re.IGNORECASE)


@dataclass
class BuildResult:
    """The outcome of one build."""

    kernel: str
    moddir: Path
    log: str
    returncode: int

    @property
    def diagnostics(self) -> list[str]:
        """Warning and error lines of the build output."""
        return [line for line in self.log.splitlines() if _DIAG.search(line)]

    @property
    def ok(self) -> bool:
        """Built, with no warning at all."""
        return self.returncode == 0 and not self.diagnostics

    def module(self, name: str) -> Path:
        """Path of a built module, e.g. module("itm_mod")."""
        found = sorted(self.moddir.rglob(f"{name}.ko"))
        if not found:
            raise FileNotFoundError(f"{name}.ko was not built for {self.kernel}")
        return found[0]


def module_sources() -> list[Path]:
    """Every C source and header of the modules (generated *.mod.c excluded)."""
    root = resources.require_sources(ROOT)
    files = [p for p in (root / "kernel").rglob("*.[ch]") if not p.name.endswith(".mod.c")]
    return sorted(files)


def _copy_sources(dest: Path, root: Path | None = None) -> None:
    root = resources.require_sources(ROOT if root is None else root)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "Kbuild", dest / "Kbuild")
    shutil.copytree(
        root / "kernel",
        dest / "kernel",
        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.cmd", "*.mod*", "*.order", "*.symvers"),
    )


def _relocate(work: Path, dest: Path) -> None:
    """Make the lists kbuild leaves for other builds (Module.symvers) name `dest`."""
    for name in ("Module.symvers", "modules.order"):
        path = work / name
        if path.is_file():
            path.write_text(path.read_text().replace(str(work), str(dest)))


def _replace(dest: Path, new: Path) -> None:
    """Put the directory `new` where `dest` is (two renames; the old one is deleted)."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        dest.rename(old / dest.name)
    new.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(kernel: Kernel, *, sparse: bool = False, dest: Path | None = None) -> BuildResult:
    """Build every module for one kernel with W=1 (and sparse when asked).

    The sources are copied to a new directory beside `dest` (default
    ``build/<release>/src``, or ``.../sparse``) and built there; when ``make``
    succeeds (warnings or not) that directory replaces `dest`.  When it fails or
    is interrupted, it is deleted and `dest` keeps the previous build; the
    result's ``moddir`` is then `dest` all the same, and its log says why.
    Give runs that may overlap directories of their own.
    """
    if not kernel.build_dir.exists():
        raise FileNotFoundError(
            f"no headers for {kernel.release} at {kernel.build_dir} (run `make setup`)"
        )
    if dest is None:
        dest = BUILD_ROOT / kernel.release / ("sparse" if sparse else "src")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    work.chmod(0o755)
    try:
        _copy_sources(work)
        cmd = ["make", "-C", str(kernel.build_dir), *kernel.make_args, f"M={work}", "W=1"]
        if sparse:
            cmd += ["C=2", "CHECK=sparse"]
        cmd.append("modules")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            _relocate(work, dest)
            _replace(dest, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log = (proc.stdout + proc.stderr).replace(str(work), str(dest))
    return BuildResult(kernel.release, dest, log, proc.returncode)


def checkpatch() -> Path:
    """checkpatch.pl from Debian's linux-source tarball, extracted once into a cache."""
    dest = CACHE / "checkpatch"
    script = dest / "checkpatch.pl"
    if all((dest / name).exists() for name in CHECKPATCH_FILES):
        return script
    if not SOURCE_TARBALL.exists():
        raise FileNotFoundError(f"{SOURCE_TARBALL} is missing (run `make setup`)")
    tmp = dest.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    wanted = [f"*/scripts/{name}" for name in CHECKPATCH_FILES]
    subprocess.run(
        ["tar", "-xJf", str(SOURCE_TARBALL), "-C", str(tmp), "--wildcards", *wanted],
        check=True,
    )
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in CHECKPATCH_FILES:
        (found,) = tmp.rglob(name)
        shutil.move(found, dest / name)
    shutil.rmtree(tmp)
    return script


_CAMELCASE = re.compile(r"CAMELCASE: Avoid CamelCase: <(\w+)>")


def _kernel_name(line: str) -> bool:
    """A CamelCase complaint about a name of the kernel's own headers (struct Qdisc).

    In a kernel tree checkpatch learns those names from include/; outside one it
    cannot, so the complaint is dropped when the matrix's headers declare the name.
    """
    found = _CAMELCASE.search(line)
    if not found:
        return False
    # Debian's headers (a kernel of ours, built or not, adds nothing to them)
    includes = [str(k.build_dir / "include") for k in read_matrix() if k.flavour is None]
    includes += [str(p) for p in Path("/usr/src").glob("linux-headers-*-common/include")]
    pattern = rf"(struct|union|enum)\s+{found.group(1)}\b"
    proc = subprocess.run(["grep", "-rqsE", "--include=*.h", pattern, *includes], check=False)
    return proc.returncode == 0


def style(files: list[Path] | None = None) -> list[str]:
    """Run checkpatch.pl --strict and kernel-doc -Wall; returns their complaints."""
    script = checkpatch()
    problems = []
    for path in files or module_sources():
        doc = subprocess.run(
            ["perl", str(script.with_name("kernel-doc")), "-none", "-Wall", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        problems += [line for line in (doc.stdout + doc.stderr).splitlines() if line]
        proc = subprocess.run(
            [
                "perl",
                str(script),
                "--strict",
                "--no-tree",
                "--terse",
                "--show-types",
                "-f",
                str(path.resolve()),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=script.parent,  # where checkpatch leaves its CamelCase cache file
        )
        problems += [
            line
            for line in proc.stdout.splitlines()
            if line
            and not line.startswith("total: 0 errors, 0 warnings")
            and not _kernel_name(line)
        ]
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: --all builds, --sparse checks, --style runs checkpatch."""
    parser = argparse.ArgumentParser(description="build and check the kernel modules")
    parser.add_argument("--all", action="store_true", help="build for every kernel (W=1)")
    parser.add_argument("--sparse", action="store_true", help="sparse (C=2) for every kernel")
    parser.add_argument("--style", action="store_true", help="checkpatch.pl --strict")
    args = parser.parse_args(argv)
    failed = False
    if args.style:
        problems = style()
        print("\n".join(problems) or "checkpatch --strict: clean")
        failed |= bool(problems)
    # the selected kernels; a kernel of ours only once it is built (make test-debug,
    # make test-fast build theirs)
    kernels = [k for k in selected() if k.flavour is None or kernelcache.built(k.flavour)]
    for kernel in kernels if (args.all or args.sparse) else []:
        res = build(kernel, sparse=args.sparse)
        what = "sparse" if args.sparse else "W=1 build"
        if res.ok:
            print(f"{kernel.release}: {what} clean -> {res.moddir}")
        else:
            failed = True
            print(f"{kernel.release}: {what} FAILED (exit {res.returncode})")
            print("\n".join(res.diagnostics or res.log.splitlines()[-30:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
