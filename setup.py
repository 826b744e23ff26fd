"""Build hook of the itmtool package: ship the kernel sources in the wheel.

Everything else is in pyproject.toml.  `itmtool build`, `itmtool dkms` and
`itmtool new kernel` need the module sources (Kbuild, Makefile, kernel/),
dkms.conf and kernels.txt, and the kernels of ours their fragments (kernels/);
a wheel carries a copy of them as ``itmtool/_src/`` (see tools/itmtool/resources.py).
An editable install (``make setup``) does not copy them: it uses the checkout itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent
#: the files of the tree the wheel ships, and the build products it never does
SHIPPED_FILES = ("Kbuild", "Makefile", "dkms.conf", "kernels.txt")
IGNORE = ("*.o", "*.ko", "*.ko.*", "*.cmd", "*.mod", "*.mod.c", "*.order", "*.symvers", "*.dwo")


class BuildPyWithSources(build_py):
    """build_py, then a copy of the kernel sources into itmtool/_src/ of the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "itmtool" / "_src"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name in SHIPPED_FILES:
            shutil.copy2(TOP / name, dest / name)
        shutil.copytree(TOP / "kernel", dest / "kernel", ignore=shutil.ignore_patterns(*IGNORE))
        # the debug kernel's and UML's configuration fragments and patches
        shutil.copytree(TOP / "kernels", dest / "kernels")


setup(cmdclass={"build_py": BuildPyWithSources})
