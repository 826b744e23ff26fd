"""The debug kernel can fail: three deliberate bugs, each caught by name.

tests/vm/bugmod is a throw-away module (built and loaded only here) that
commits one bug per load: a one-byte out-of-bounds read, an ``rcu_dereference``
outside ``rcu_read_lock``, and leaked allocations.  Booted on the debug kernel,
KASAN, lockdep's RCU checker and kmemleak must each report theirs, naming the
function that did it, and the checks the tier applies to the guest suite
(:func:`tests.kernel.kit.bad_lines`, :func:`tests.vm.guest.kmemleak_objects`)
must see them: a tier that could not fail would prove nothing.

Runs on each kernel with the detectors (debug, uml-debug) among the selected
kernels (all of them by default; see ``ITM_KERNELS``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from itmtool import vm
from itmtool.matrix import Kernel
from tests.kernel.kit import bad_lines
from tests.vm.guest import KMEMLEAK_CLEAR, kmemleak_objects, selected_kernels

BUGMOD = Path(__file__).parent / "bugmod"
DEBUG_KERNELS = [k for k in selected_kernels() if k.detectors]


def _lines_after(lines: list[str], marker: str, count: int) -> list[str]:
    """The `count` lines after each line containing `marker`."""
    out: list[str] = []
    for i, line in enumerate(lines):
        if marker in line:
            out += lines[i + 1 : i + 1 + count]
    return out


def _run_bugs(kernel: Kernel, top: Path) -> tuple[list[str], str]:
    """Build bugmod for `kernel`, load it once per bug in a VM; (kernel log, kmemleak)."""
    src = top / "bugmod"
    shutil.copytree(BUGMOD, src)
    build = subprocess.run(
        ["make", "-C", str(kernel.build_dir), *kernel.make_args, f"M={src}", "modules"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    res = top / "results"
    ko = src / "bugmod.ko"
    # KASAN's report taints the kernel, which turns lockdep off: the RCU bug goes
    # first.  The leak is scanned for while bugmod is loaded: kmemleak resolves a
    # backtrace's symbols when it prints the report, and an unloaded module's are gone.
    kml = "/sys/kernel/debug/kmemleak"
    script = f"""
{KMEMLEAK_CLEAR}
insmod {ko} bug=rcu && rmmod bugmod
insmod {ko} bug=leak
sleep 6; echo scan > {kml}; sleep 6; echo scan > {kml}
cat {kml} > {res}/kmemleak.txt
rmmod bugmod
insmod {ko} bug=oob && rmmod bugmod
dmesg > {res}/dmesg.txt
"""
    run = vm.run(
        kernel, script, rwdirs=[res], timeout=900, console=True, env={"ITM_MODDIR": str(src)}
    )
    dmesg = (res / "dmesg.txt").read_text(errors="replace").splitlines()
    assert dmesg, f"no kernel log came back (exit {run.returncode}):\n{run.output[-3000:]}"
    leaks = res / "kmemleak.txt"
    assert leaks.exists(), f"the kmemleak scan did not run:\n{run.output[-3000:]}"
    return dmesg, leaks.read_text(errors="replace")


if DEBUG_KERNELS:

    @pytest.fixture(scope="module", params=DEBUG_KERNELS, ids=lambda k: k.name)
    def bug_reports(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> tuple[list[str], str]:
        """A detector kernel's log and kmemleak report after bugmod's three loads."""
        return _run_bugs(request.param, tmp_path_factory.mktemp("bugmod"))

    def test_kasan_names_the_out_of_bounds_read(bug_reports: tuple[list[str], str]) -> None:
        dmesg, _ = bug_reports
        hits = [line for line in dmesg if "BUG: KASAN: slab-out-of-bounds in bugmod_oob" in line]
        assert hits, "\n".join(dmesg[-60:])
        assert any("Read of size 1" in line for line in dmesg), "\n".join(dmesg[-60:])
        assert set(hits) <= set(bad_lines(dmesg))  # the tier's log check fails on it

    def test_lockdep_names_the_rcu_dereference_outside_a_read_section(
        bug_reports: tuple[list[str], str],
    ) -> None:
        dmesg, _ = bug_reports
        hits = [line for line in dmesg if "WARNING: suspicious RCU usage" in line]
        assert hits, "\n".join(dmesg[-60:])
        where = _lines_after(dmesg, "WARNING: suspicious RCU usage", 4)
        assert any("bugmod.c" in line for line in where), "\n".join(where)
        assert set(hits) <= set(bad_lines(dmesg))

    def test_kmemleak_names_the_leaked_allocations(bug_reports: tuple[list[str], str]) -> None:
        _, leaks = bug_reports
        assert kmemleak_objects(leaks) >= 1, leaks[:3000] or "(empty kmemleak report)"
        assert "bugmod_leak" in leaks, leaks[:3000]
