"""`itmtool build`: the modules for the running kernel or a kernel of the matrix.

A thin layer over :mod:`itmtool.buildmods` (W=1, one source copy per kernel
under ``build/<release>/src``; ``build/`` is the checkout's, or
``~/.cache/itmbench/build`` when installed from a wheel) that picks the kernel
and explains what is missing when the headers are not installed.  A failed or
interrupted build leaves the previous good one in place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itmtool import buildmods
from itmtool.errors import EXIT_UNSUPPORTED, ToolError
from itmtool.matrix import Kernel, read_matrix


@dataclass(frozen=True)
class LocalKernel(Kernel):
    """A kernel outside the matrix, known only by its release (e.g. the running one)."""

    fixed_release: str = ""

    @property
    def release(self) -> str:
        """The release given."""
        return self.fixed_release


def local_kernel(release: str) -> LocalKernel:
    """A `Kernel` for a release that is not in kernels.txt."""
    return LocalKernel(release, "", "", fixed_release=release)


def resolve_kernel(wanted: str | None, matrix: list[Kernel] | None = None) -> Kernel:
    """The kernel named by `--kernel` (a matrix name or a release), or the running one."""
    kernels = read_matrix() if matrix is None else matrix
    if wanted is None:
        wanted = os.uname().release
    for k in kernels:
        if wanted == k.name:
            return k
    for k in kernels:
        try:
            if wanted == k.release:
                return k
        except LookupError:
            continue
    return local_kernel(wanted)


def check_headers(kernel: Kernel, lib_modules: Path = Path("/lib/modules")) -> Path:
    """The kbuild directory of `kernel`; refuses (exit 6) when it is missing."""
    try:
        release = kernel.release
    except LookupError as err:
        raise ToolError(
            str(err), hint="`make setup` installs the matrix", code=EXIT_UNSUPPORTED
        ) from None
    # a kernel of ours is built in its own tree (itmtool.kernelcache)
    build_dir = kernel.build_dir if kernel.flavour else lib_modules / release / "build"
    if not build_dir.exists():
        names = ", ".join(k.name for k in read_matrix())
        raise ToolError(
            f"no kernel headers for {release} (looked for {build_dir})",
            hint=f"install linux-headers-{release}, or build for a kernel of the matrix "
            f"({names}): `itmtool build --kernel 6.12`, then use it with `itmtool vm`",
            code=EXIT_UNSUPPORTED,
        )
    return build_dir


def build(kernel: Kernel) -> tuple[buildmods.BuildResult, dict[str, Any]]:
    """Build every module for `kernel`; returns the result and its `--json` summary."""
    check_headers(kernel)
    res = buildmods.build(kernel)
    # a failed build left the previous one in moddir: its modules are not this build's
    built = res.returncode == 0
    modules = sorted(str(p.relative_to(res.moddir)) for p in res.moddir.rglob("*.ko") if built)
    summary = {
        "kernel": kernel.release,
        "moddir": str(res.moddir),
        "ok": res.ok,
        "modules": modules,
        "diagnostics": res.diagnostics,
    }
    return res, summary
