"""A generated kernel skeleton's own Makefile builds it, on every kernel of the matrix.

The skeletons of `itmtool.new.EXAMPLES` are built with W=1 and sparse by the VM
tier (tests/vm/test_kernels.py::test_generated_skeletons_build_clean) before
they are loaded; checkpatch --strict on the generated C is in
tests/unit/test_itmtool_new.py. Here: what a user runs, `make` in the
generated directory.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from itmtool import new
from itmtool.matrix import Kernel, selected

# UML's modules need ARCH=um, which a generated Makefile does not pass: tests/vm builds them
KERNELS = [k for k in selected() if not k.is_uml]  # $ITM_KERNELS, as the VM tier


@pytest.fixture(params=KERNELS, ids=[k.name for k in KERNELS], scope="module")
def kernel(request: pytest.FixtureRequest) -> Kernel:
    k: Kernel = request.param
    return k


def test_the_generated_makefile_builds_on_its_own(kernel: Kernel, tmp_path: Path) -> None:
    new.core_symvers(kernel)
    spec = new.AppSpec("mk_check", "out", new.parse_interest(["proto=tcp,sport=22"]))
    new.render_kernel(spec, tmp_path / "mk_check")
    proc = subprocess.run(
        ["make", "-C", str(tmp_path / "mk_check"), f"KDIR={kernel.build_dir}", "W=1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "WARNING" not in proc.stdout + proc.stderr
    assert (tmp_path / "mk_check" / "mk_check.ko").exists()
    shutil.rmtree(tmp_path / "mk_check")
