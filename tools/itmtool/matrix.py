"""The kernel matrix: which Debian kernels the VM tier builds for and boots.

The list lives in one place, `kernels.txt` at the top of the tree (shipped in
the wheel too, see :mod:`itmtool.resources`): a name, the Debian image package
and the headers package per line.  The packages may be
meta-packages; the kernel release they stand for is resolved from dpkg.

A row whose packages read ``build:<flavour>`` is a kernel of ours, built from
Debian's linux-source into a per-user cache by :mod:`itmtool.kernelcache`: the
debug kernel (``debug``, booted by the VM tier like the others) and User-Mode
Linux (``uml``, run as a process by :mod:`itmtool.uml`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from itmtool import kernelcache, resources

#: how kernels.txt names a kernel of ours (see :mod:`itmtool.kernelcache`)
OWN = "build:"

#: the sources (a checkout, or the wheel's copy): kept for the code that reads the tree
ROOT = resources.SOURCE_ROOT
MATRIX_FILE = ROOT / "kernels.txt"


@dataclass(frozen=True)
class Kernel:
    """One kernel of the matrix."""

    name: str
    image_pkg: str
    headers_pkg: str

    @property
    def flavour(self) -> str | None:
        """For a kernel of ours, its :data:`itmtool.kernelcache.FLAVOURS` key; else None."""
        if self.image_pkg.startswith(OWN):
            return self.image_pkg.removeprefix(OWN)
        return None

    @property
    def is_uml(self) -> bool:
        """Whether this is User-Mode Linux (run as a process, not booted in QEMU)."""
        return self.flavour is not None and kernelcache.FLAVOURS[self.flavour].arch == "um"

    @property
    def detectors(self) -> bool:
        """Whether the kernel runs the kernel's bug detectors (KASAN, lockdep, kmemleak)."""
        return self.flavour in kernelcache.DETECTOR_FLAVOURS

    @property
    def release(self) -> str:
        """The installed kernel release (`uname -r` in the VM), e.g. 6.1.0-56-amd64."""
        if self.flavour:
            return kernelcache.release(self.flavour)
        return resolve_release(self.headers_pkg, "linux-headers-")

    @property
    def vmlinuz(self) -> Path:
        """The kernel image to boot."""
        if self.flavour:
            return kernelcache.tree(self.flavour) / kernelcache.FLAVOURS[self.flavour].image
        return Path("/boot") / f"vmlinuz-{self.release}"

    @property
    def build_dir(self) -> Path:
        """The headers (kbuild) directory to build modules against."""
        if self.flavour:
            return kernelcache.tree(self.flavour)
        return Path("/lib/modules") / self.release / "build"

    @property
    def make_args(self) -> tuple[str, ...]:
        """Extra arguments of ``make -C build_dir M=...`` (``ARCH=um`` for UML)."""
        if self.flavour:
            return (f"ARCH={kernelcache.FLAVOURS[self.flavour].arch}",)
        return ()


def read_matrix(path: Path = MATRIX_FILE) -> list[Kernel]:
    """Parse kernels.txt (a one-line error when it is missing)."""
    if not path.is_file():
        resources.require_sources(path.parent)
    kernels = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, image, headers = line.split()
        kernel = Kernel(name, image, headers)
        if kernel.flavour is not None and kernel.flavour not in kernelcache.FLAVOURS:
            raise ValueError(f"{path}: unknown kernel of ours {image!r}")
        kernels.append(kernel)
    return kernels


def selected(kernels: list[Kernel] | None = None) -> list[Kernel]:
    """The kernels of the matrix, or those ``$ITM_KERNELS`` names (comma-separated):
    what ``make test``'s set-up builds, the doctor checks and the VM tier runs."""
    kernels = read_matrix() if kernels is None else kernels
    wanted = [n for n in os.environ.get("ITM_KERNELS", "").split(",") if n]
    unknown = set(wanted) - {k.name for k in kernels}
    if unknown:
        raise ValueError(f"ITM_KERNELS names kernels not in kernels.txt: {sorted(unknown)}")
    return [k for k in kernels if not wanted or k.name in wanted]


def newest_debian(kernels: list[Kernel]) -> Kernel:
    """The last Debian kernel of the list: the demo's and `itmtool vm`'s default."""
    return [k for k in kernels if k.flavour is None][-1]


def _depends(pkg: str) -> list[str]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}|${Depends}", pkg],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or "install ok installed" not in out.stdout:
        raise LookupError(f"Debian package {pkg} is not installed (run `make setup`)")
    deps = out.stdout.split("|", 1)[1]
    return [d.strip().split()[0] for d in deps.split(",") if d.strip()]


def resolve_release(pkg: str, prefix: str) -> str:
    """The kernel release a (meta-)package stands for, following meta-packages."""
    for dep in _depends(pkg):
        if dep.startswith(prefix) and dep.endswith("-amd64"):
            return resolve_release(dep, prefix)
    return pkg[len(prefix) :]


def main() -> None:
    """Print `name release` per kernel (used by the Makefile)."""
    for k in read_matrix():
        print(k.name, k.release)


if __name__ == "__main__":
    main()
