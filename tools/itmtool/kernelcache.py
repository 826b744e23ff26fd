"""Kernels of our own, built from Debian's linux-source-6.12 into a per-user cache.

Three flavours, each a configuration kept in ``kernels/`` of the tree:

``uml``
    User-Mode Linux (``make ARCH=um``): boots the machine's own root file system
    in a third of a second and runs our modules at native speed (uniprocessor).
    ``kernels/patches/uml-xstate.patch`` lets it run on CPUs with a large xstate
    (AMX), see docs/testing.md.
``uml-debug``
    ``uml`` with the bug detectors UML has (``kernels/uml-debug.config``);
    ``kernels/patches/uml-kasan-module-shadow.patch`` clears the KASAN shadow of
    a freed vmalloc area, which UML's static shadow otherwise keeps.
``debug``
    An x86-64 kernel for the VM tier with the kernel's bug detectors on (KASAN,
    lockdep, kmemleak, UBSAN...): ``kernels/debug.config``.

A kernel lives in ``<cache>/kernels/<flavour>-<source version>-<hash>`` where the
hash covers the configuration fragments and patches, so that a fresh clone reuses
a kernel built before and a changed fragment builds a new one.  The tree is built
in place: our modules build against it with ``make -C <tree> M=...``.

``python -m itmtool.kernelcache build uml|uml-debug|debug`` builds one (progress on stdout,
nothing when the cache holds it);
``python -m itmtool.kernelcache path uml|uml-debug|debug`` prints where it is (exit 1 when
it is not built yet).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from itmtool import resources

SOURCE_PKG = "linux-source-6.12"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
KERNELS_DIR = resources.SOURCE_ROOT / "kernels"
#: parallel jobs of a kernel build (the machine has 2 cores, shared)
JOBS = int(os.environ.get("ITM_KERNEL_JOBS", "2"))
#: marker written once the tree is complete
DONE = ".itm-built"
#: marker written once the tree is extracted, patched and configured: an
#: interrupted build resumes with ``make`` from there
CONFIGURED = ".itm-configured"


@dataclass(frozen=True)
class Flavour:
    """How one kernel of ours is configured and built."""

    name: str
    arch: str
    fragments: tuple[str, ...]
    patches: tuple[str, ...]
    #: make targets after the configuration
    targets: tuple[str, ...]
    #: the bootable file, relative to the tree
    image: str
    #: objects a full build compiles, roughly (for the progress line)
    objects: int


FLAVOURS = {
    "uml": Flavour(
        "uml",
        "um",
        ("net.config", "uml.config"),
        ("uml-xstate.patch",),
        ("linux", "modules"),
        "linux",
        2300,
    ),
    "uml-debug": Flavour(
        "uml-debug",
        "um",
        ("net.config", "uml.config", "uml-debug.config"),
        ("uml-xstate.patch", "uml-kasan-module-shadow.patch"),
        ("linux", "modules"),
        "linux",
        2300,
    ),
    "debug": Flavour(
        "debug",
        "x86_64",
        ("net.config", "virtme.config", "debug.config"),
        (),
        ("bzImage", "modules"),
        "arch/x86/boot/bzImage",
        3200,
    ),
}


#: the flavours built with the kernel's bug detectors (KASAN, lockdep, kmemleak, UBSAN)
DETECTOR_FLAVOURS = frozenset({"debug", "uml-debug"})


class KernelBuildError(RuntimeError):
    """A kernel of ours could not be configured or built (the message says why)."""


class KernelNotBuilt(LookupError):
    """A kernel of ours is not in the cache yet (like a Debian kernel not installed)."""


def cache_dir() -> Path:
    """Where built kernels are kept ($ITM_KERNEL_CACHE, default <user cache>/kernels)."""
    env = os.environ.get("ITM_KERNEL_CACHE")
    return Path(env) if env else resources.cache_root() / "kernels"


@functools.cache
def source_version() -> str:
    """The installed version of Debian's linux-source package (part of the key)."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", SOURCE_PKG],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip() or not SOURCE_TARBALL.exists():
        raise KernelBuildError(f"{SOURCE_PKG} is not installed (run `make setup`)")
    return proc.stdout.strip()


def _inputs(flavour: Flavour) -> list[Path]:
    files = [KERNELS_DIR / f for f in flavour.fragments]
    files += [KERNELS_DIR / "patches" / p for p in flavour.patches]
    for path in files:
        if not path.is_file():
            raise KernelBuildError(f"{path} is missing from the tree")
    return files


def key(flavour: Flavour) -> str:
    """``<flavour>-<source version>-<hash of fragments and patches>``."""
    digest = hashlib.sha256()
    digest.update(flavour.arch.encode())
    for path in _inputs(flavour):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    version = source_version().replace("~", "_").replace("+", "_")
    return f"{flavour.name}-{version}-{digest.hexdigest()[:12]}"


def tree(name: str) -> Path:
    """The (built or not) tree of flavour `name`."""
    return cache_dir() / key(FLAVOURS[name])


def built(name: str) -> Path | None:
    """The tree of flavour `name` when it is completely built, else None."""
    path = tree(name)
    return path if (path / DONE).is_file() else None


def _require(name: str) -> Path:
    path = built(name)
    if path is None:
        raise KernelNotBuilt(
            f"the {name} kernel is not built yet "
            f"(`make setup`, or `python -m itmtool.kernelcache build {name}`)"
        )
    return path


def image(name: str) -> Path:
    """The bootable image of a built flavour (a one-line error when it is not built)."""
    return _require(name) / FLAVOURS[name].image


def release(name: str) -> str:
    """The release (``uname -r``) of flavour `name` (a one-line error when it is not built)."""
    return (_require(name) / "include" / "config" / "kernel.release").read_text().strip()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise KernelBuildError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}); full log {log}:\n"
            + "\n".join(tail)
        )


def _wanted(fragments: list[Path]) -> dict[str, str]:
    """CONFIG_X -> value that the fragments ask for (later fragments win)."""
    wanted: dict[str, str] = {}
    for frag in fragments:
        for line in frag.read_text().splitlines():
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                name, value = line.split("=", 1)
                wanted[name] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                wanted[line[2:].split()[0]] = "n"
    return wanted


def _check_config(config: Path, fragments: list[Path]) -> None:
    """Every option a fragment sets must have its value in the final .config."""
    have: dict[str, str] = {}
    for line in config.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            have[name] = value
    missing = [
        f"{name}={value} (got {have.get(name, 'n')})"
        for name, value in _wanted(fragments).items()
        if have.get(name, "n") != value
    ]
    if missing:
        raise KernelBuildError(
            "the configuration dropped options the fragments ask for "
            "(a dependency is off, or the option is gone):\n  " + "\n  ".join(missing)
        )


def _make_with_progress(
    cmd: list[str], cwd: Path, log: Path, flavour: Flavour, say: Callable[[str], None]
) -> None:
    start = time.monotonic()
    compiled = 0
    last = 0.0
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.lstrip().startswith("CC"):
                compiled += 1
            now = time.monotonic()
            if now - last >= 30:
                last = now
                pct = min(99, 100 * compiled // flavour.objects)
                say(
                    f"  {flavour.name} kernel: {compiled} objects compiled (~{pct}%), "
                    f"{int(now - start) // 60}:{int(now - start) % 60:02d} elapsed"
                )
        rc = proc.wait()
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise KernelBuildError(
            f"`{' '.join(cmd)}` failed (exit {rc}); full log {log}:\n" + "\n".join(tail)
        )


def _configure(
    flavour: Flavour, dest: Path, log: Path, make: list[str], say: Callable[[str], None]
) -> None:
    """Extract the sources into `dest` (emptied first), patch and configure them."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    say(f"  extracting {SOURCE_TARBALL}")
    _run(["tar", "-xJf", str(SOURCE_TARBALL), "--strip-components=1"], dest, log)
    for patch in flavour.patches:
        say(f"  applying {patch}")
        _run(["patch", "-p1", "-i", str(KERNELS_DIR / "patches" / patch)], dest, log)
    fragments = [KERNELS_DIR / f for f in flavour.fragments]
    _run([*make, "defconfig"], dest, log)
    merge = ["scripts/kconfig/merge_config.sh", "-m", ".config", *map(str, fragments)]
    _run(merge, dest, log)
    _run([*make, "olddefconfig"], dest, log)
    _check_config(dest / ".config", fragments)
    (dest / CONFIGURED).write_text("")


def build(name: str, say: Callable[[str], None] = print) -> Path:
    """Build flavour `name` into the cache unless it is there; returns its tree.

    Concurrent callers wait for each other (a lock file beside the tree).  A
    failed or interrupted build leaves no tree marked as built; the next call
    resumes it with ``make`` once the tree was configured.
    """
    flavour = FLAVOURS[name]
    dest = tree(name)
    with _locked(dest.with_name(dest.name + ".lock")):
        if (dest / DONE).is_file():
            return dest
        start = time.monotonic()
        log = dest / "itm-build.log"
        make = ["nice", "make", f"ARCH={flavour.arch}"]
        if (dest / CONFIGURED).is_file():
            say(f"resuming the build of the {name} kernel in {dest} (log: {log})")
        else:
            say(f"building the {name} kernel in {dest} (once per machine; log: {log})")
            _configure(flavour, dest, log, make, say)
        say(f"  compiling with -j{JOBS} (about {flavour.objects} objects)")
        _make_with_progress([*make, f"-j{JOBS}", *flavour.targets], dest, log, flavour, say)
        (dest / DONE).write_text(f"{int(time.monotonic() - start)}\n")
        say(f"built the {name} kernel in {int(time.monotonic() - start)} s: {dest}")
        return dest


def main(argv: list[str] | None = None) -> int:
    """Command line: ``build NAME`` or ``path NAME``."""
    parser = argparse.ArgumentParser(description="build our kernels into the cache")
    parser.add_argument("action", choices=("build", "path"))
    parser.add_argument("flavour", choices=sorted(FLAVOURS))
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            build(args.flavour, say=lambda s: print(s, flush=True))
            return 0
        path = built(args.flavour)
        print(path if path else tree(args.flavour))
        return 0 if path else 1
    except (KernelBuildError, KernelNotBuilt) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
