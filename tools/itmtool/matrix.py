"""The kernel matrix: which Debian kernels the VM tier builds for and boots.

The list lives in one place, `kernels.txt` at the top of the tree (shipped in
the wheel too, see :mod:`itmtool.resources`): a name, the Debian image package
and the headers package per line.  The packages may be
meta-packages; the kernel release they stand for is resolved from dpkg.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from itmtool import resources

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
    def release(self) -> str:
        """The installed kernel release (`uname -r` in the VM), e.g. 6.1.0-56-amd64."""
        return resolve_release(self.headers_pkg, "linux-headers-")

    @property
    def vmlinuz(self) -> Path:
        """The kernel image to boot."""
        return Path("/boot") / f"vmlinuz-{self.release}"

    @property
    def build_dir(self) -> Path:
        """The headers (kbuild) directory to build modules against."""
        return Path("/lib/modules") / self.release / "build"


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
        kernels.append(Kernel(name, image, headers))
    return kernels


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
