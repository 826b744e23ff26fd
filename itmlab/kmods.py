"""The kernel's own modules that a module of ours needs, inserted by path.

In the VM the guest reads the host's module index through 9p, and modprobe
fails when the host rewrites it meanwhile (a dkms test, depmod); insmod with
a path needs no index. :func:`insmod_deps` finds each dependency that
``modinfo`` names under ``/lib/modules/<release>/kernel`` by its name and
inserts it, its own dependencies first; :func:`insmod_stock` inserts modules
the caller names by their paths. ``itmtool load`` uses modprobe instead: on a
user's machine the index is stable.
"""

from __future__ import annotations

import os
from pathlib import Path

from .commands import run

#: the suffixes of a module file, uncompressed or not
EXTS = (".ko", ".ko.xz", ".ko.zst")


def insmod_stock(*rels: str, release: str | None = None, root: Path = Path("/lib/modules")) -> None:
    """insmod, by path, each of the kernel's modules at ``rels`` (paths under
    ``/lib/modules/<release>`` without the suffix, in the order given: a module's
    dependencies first) that is not loaded. One without a file (built in, or not
    in this kernel) is skipped; a refused insmod is not an error here (the step
    that needs the module says what is missing)."""
    base = root / (release or os.uname().release)
    for rel in rels:
        if loaded(rel.rsplit("/", 1)[-1]):
            continue
        for ext in EXTS:
            if (base / (rel + ext)).exists():
                run("insmod", str(base / (rel + ext)), check=False)
                break


def depends(ko: Path) -> list[str]:
    """The modules ``ko`` needs, as modinfo names them."""
    out = run("modinfo", "-F", "depends", str(ko)).stdout
    return [d for line in out.splitlines() for d in line.split(",") if d]


def loaded(name: str) -> bool:
    """Whether module ``name`` is loaded (or built in with a /sys/module entry)."""
    return Path("/sys/module", name.replace("-", "_")).exists()


def find_stock(
    name: str, release: str | None = None, root: Path = Path("/lib/modules")
) -> Path | None:
    """The kernel's own module file of ``name`` (``-`` and ``_`` alike), or None.

    Looked up in ``modules.dep`` (a text file that depmod replaces whole, so a
    read never sees half of it), else searched for in the tree.
    """
    base = root / (release or os.uname().release)
    want = name.replace("-", "_")
    try:
        index = (base / "modules.dep").read_text()
    except OSError:
        index = ""
    for line in index.splitlines():
        rel = line.split(":", 1)[0]
        stem = rel.rsplit("/", 1)[-1].split(".ko", 1)[0]
        if stem.replace("-", "_") == want and (base / rel).is_file():
            return base / rel
    if not (base / "kernel").is_dir():
        return None
    for path in (base / "kernel").rglob("*.ko*"):
        if path.name.split(".ko", 1)[0].replace("-", "_") == want:
            return path
    return None


def insmod_deps(ko: Path, ours: frozenset[str] = frozenset()) -> list[str]:
    """Insert the kernel modules ``ko`` needs that are not loaded (not those named
    in ``ours``, with ``_`` for ``-``: the caller loads its own); returns the names
    inserted.

    Raises ``RuntimeError`` naming a dependency the kernel does not have.
    """
    done: list[str] = []
    for dep in depends(ko):
        if dep.replace("-", "_") in ours:
            continue
        got = insmod_named(dep, ours)
        if got is None:
            raise RuntimeError(f"{ko.name} needs {dep}, which this kernel does not have")
        done += got
    return done


def insmod_named(name: str, ours: frozenset[str] = frozenset()) -> list[str] | None:
    """Insert the kernel's module ``name`` by path, its dependencies first, unless
    it is loaded (or built in); returns the names inserted, None when this kernel
    has no such module. A refused insmod raises ``RuntimeError`` with its stderr."""
    if loaded(name):
        return []
    path = find_stock(name)
    if path is None:
        return None
    done = insmod_deps(path, ours)
    if not loaded(name):
        run("insmod", str(path))
        done.append(name)
    return done
