"""Where itmtool finds itmBench's files, and where it writes its builds.

The kernel sources (``Kbuild``, ``Makefile``, ``kernel/``), ``dkms.conf`` and
``kernels.txt`` are looked for, in this order:

1. ``$ITMBENCH_SRC``, when set (a checkout, or any directory with those files);
2. the checkout this package runs from (``make setup``'s editable install, or
   ``python -m itmtool`` in the tree);
3. the copy shipped in the wheel, ``itmtool/_src/`` in site-packages.

Builds (``itmtool build``, ``make kernels``, the demo) go to
``$ITMBENCH_BUILD`` when set; else to ``build/`` of the checkout when running
from one; else to ``$XDG_CACHE_HOME/itmbench/build`` (``~/.cache/itmbench/build``).
"""

from __future__ import annotations

import os
from pathlib import Path

from itmtool.errors import EXIT_UNSUPPORTED, ToolError

#: environment variables that point itmtool elsewhere
SRC_ENV = "ITMBENCH_SRC"
BUILD_ENV = "ITMBENCH_BUILD"

#: the package directory (tools/itmtool in a checkout, itmtool/ in site-packages)
PACKAGE_DIR = Path(__file__).resolve().parent
#: where the wheel carries the sources (written by setup.py's build_py)
SHIPPED = PACKAGE_DIR / "_src"
#: what a directory must hold to count as itmBench's sources
REQUIRED = ("Kbuild", "Makefile", "dkms.conf", "kernels.txt", "kernel/itm_mod/Kbuild")


def has_sources(path: Path) -> bool:
    """Whether `path` holds the kernel sources, dkms.conf and kernels.txt."""
    return all((path / name).is_file() for name in REQUIRED)


def checkout() -> Path | None:
    """The git checkout this package runs from, or None when installed from a wheel."""
    top = PACKAGE_DIR.parents[1]
    if (top / "pyproject.toml").is_file() and has_sources(top):
        return top
    return None


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def source_root() -> Path:
    """The directory with Kbuild, Makefile, kernel/, dkms.conf and kernels.txt.

    Never raises: when nothing is found it returns where the wheel's copy should
    be; :func:`require_sources` says so in one line.
    """
    env = os.environ.get(SRC_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return checkout() or SHIPPED


def build_root() -> Path:
    """Where builds go: $ITMBENCH_BUILD, build/ of the checkout, or the per-user cache."""
    env = os.environ.get(BUILD_ENV)
    if env:
        return Path(env).expanduser().resolve()
    top = checkout()
    if top is not None:
        return top / "build"
    return _cache_home() / "itmbench" / "build"


def cache_root() -> Path:
    """The per-user cache (checkpatch.pl and its friends): $XDG_CACHE_HOME/itmbench."""
    return _cache_home() / "itmbench"


def require_sources(root: Path | None = None) -> Path:
    """`root` (default :func:`source_root`) when it holds the sources; else a one-line error."""
    root = source_root() if root is None else root
    if has_sources(root):
        return root
    where = f"${SRC_ENV}={root}" if os.environ.get(SRC_ENV) else str(root)
    raise ToolError(
        f"no itmBench kernel sources in {where} (looked for {', '.join(REQUIRED)})",
        hint=f"set {SRC_ENV} to an itmBench checkout (git clone), or reinstall the package",
        code=EXIT_UNSUPPORTED,
    )


#: resolved once at import: the sources and the build directory of this process
SOURCE_ROOT = source_root()
BUILD_ROOT = build_root()
