"""The debug kernel can fail: three deliberate bugs, each caught by name.

tests/vm/bugmod is a throw-away module (built and loaded only for this, at the
end of the kernel's tier, after the suite's own log was kept) that
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

import pytest

from itmtool.matrix import Kernel
from tests.kernel.kit import bad_lines
from tests.vm.guest import kmemleak_objects, selected_kernels, tier

DEBUG_KERNELS = [k for k in selected_kernels() if k.detectors]


def _lines_after(lines: list[str], marker: str, count: int) -> list[str]:
    """The `count` lines after each line containing `marker`."""
    out: list[str] = []
    for i, line in enumerate(lines):
        if marker in line:
            out += lines[i + 1 : i + 1 + count]
    return out


def _run_bugs(kernel: Kernel) -> tuple[list[str], str]:
    """The kernel log and kmemleak report after bugmod's three loads, which the
    kernel's tier (tests.vm.guest.SELFTEST) runs after the guest suite, in the same boot."""
    run = tier(kernel)
    assert run.bugmod_build is not None, "bugmod was not built"
    assert run.selftest_dmesg, (
        f"no kernel log came back from the self-test (vng exit {run.vm_rc}):\n"
        + run.bugmod_build[-2000:]
        + "\n--- console ---\n"
        + run.vm_output[-3000:]
    )
    assert run.selftest_kmemleak is not None, (
        f"the self-test's kmemleak scan did not run:\n{run.vm_output[-3000:]}"
    )
    return run.selftest_dmesg, run.selftest_kmemleak


if DEBUG_KERNELS:

    @pytest.fixture(scope="module", params=DEBUG_KERNELS, ids=lambda k: k.name)
    def bug_reports(request: pytest.FixtureRequest) -> tuple[list[str], str]:
        """A detector kernel's log and kmemleak report after bugmod's three loads."""
        return _run_bugs(request.param)

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
