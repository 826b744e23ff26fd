"""Generated kernel skeletons build on every kernel of the matrix, cleanly.

For each kernel: itm_mod is built first (its Module.symvers), then the
skeletons of `itmtool.new.EXAMPLES` (several hooks and interests) are
generated and built with W=1 into build/<release>/generated/ — the same
function tests/vm/guest.py calls before booting — without a warning; sparse
(C=2) is clean on them; and the generated Makefile builds one on its own.
checkpatch --strict on the generated C is in tests/unit/test_itmtool_new.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from itmtool import new
from itmtool.matrix import Kernel, read_matrix

KERNELS = read_matrix()


@pytest.fixture(params=KERNELS, ids=[k.name for k in KERNELS], scope="module")
def kernel(request: pytest.FixtureRequest) -> Kernel:
    k: Kernel = request.param
    return k


def test_examples_build_w1_without_warnings(kernel: Kernel) -> None:
    results = new.build_examples(kernel)
    assert [r.moddir.name for r in results] == [s.name for s in new.EXAMPLES]
    for spec, res in zip(new.EXAMPLES, results, strict=True):
        assert res.returncode == 0, res.log[-3000:]
        assert not res.diagnostics, f"{spec.name}:\n" + "\n".join(res.diagnostics)
        assert res.module(spec.name).exists()
        info = subprocess.run(
            ["modinfo", "-F", "depends", str(res.module(spec.name))],
            capture_output=True,
            text=True,
            check=True,
        )
        assert info.stdout.strip() == "itm_mod"  # resolved against itm_mod's Module.symvers
    assert new.examples_dir(kernel) == results[0].moddir.parent


def test_examples_are_sparse_clean(kernel: Kernel, tmp_path: Path) -> None:
    symvers = new.core_symvers(kernel)
    for spec in new.EXAMPLES:
        d = tmp_path / spec.name
        new.render_kernel(spec, d)
        res = new.build_module(kernel, d, sparse=True, symvers=symvers)
        assert res.returncode == 0, res.log[-3000:]
        assert "CHECK" in res.log, "sparse did not run"
        assert not res.diagnostics, f"{spec.name}:\n" + "\n".join(res.diagnostics)


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
