"""The VM tier, seen from the host: for every kernel of the matrix, the modules
and the `itmtool new` skeletons build with W=1 and sparse without a warning,
the kernel boots in a VM, every test of tests/kernel passes in it (a skip is a
failure), and its log stays clean.

The matrix holds the Debian kernels, the debug kernel (KASAN, lockdep, kmemleak,
UBSAN: their reports fail the log check, and a kmemleak scan after the suite
must find nothing) and User-Mode Linux (run as a process, at native speed).
``ITM_KERNELS=uml`` (a comma-separated list of names) runs only those: that is
``make test-fast``.

Results are reported per kernel: test ids carry the kernel's name.
"""

from __future__ import annotations

import re
import subprocess
import warnings

import pytest

from itmtool import buildmods, new
from itmtool.matrix import Kernel
from tests.kernel.kit import ALLOWED_TAINT, KERNEL_LACKS, bad_lines
from tests.vm.guest import (
    GuestRun,
    collect_guest_tests,
    in_suite,
    kmemleak_objects,
    selected_kernels,
    tier,
)

KERNELS = selected_kernels()

#: the debug kernel's reports that are not bugs of ours: (pattern, reason).  Each
#: is matched against one log line; a report of ours is never named here.
KNOWN_FALSE_POSITIVES: tuple[tuple[str, str], ...] = ()
GUEST_TESTS = collect_guest_tests()


def _run(kernel: Kernel) -> GuestRun:
    """The tier of `kernel` (tests.vm.guest.tier: the SMP debug kernel alone, then
    Debian's kernels two at a time with the UML kernels beside them)."""
    return tier(kernel)


@pytest.fixture(params=KERNELS, ids=[k.name for k in KERNELS], scope="module")
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """One kernel of the matrix."""
    k: Kernel = request.param
    return k


def test_modules_build_w1_without_warnings(kernel: Kernel) -> None:
    res = _run(kernel).build
    assert res.returncode == 0, res.log[-3000:]
    assert not res.diagnostics, "\n".join(res.diagnostics)


def test_sparse_is_clean(kernel: Kernel) -> None:
    res = _run(kernel).build  # built with C=2: sparse ran on every file
    assert res.returncode == 0, res.log[-3000:]
    assert "CHECK" in res.log, "sparse did not run"
    assert not res.diagnostics, "\n".join(res.diagnostics)


def test_generated_skeletons_build_clean(kernel: Kernel) -> None:
    """`itmtool new kernel` skeletons: W=1 and sparse clean, linked against itm_mod."""
    run = _run(kernel)
    assert [g.moddir.name for g in run.generated] == [s.name for s in new.EXAMPLES]
    for spec, gen in zip(new.EXAMPLES, run.generated, strict=True):
        assert gen.returncode == 0, gen.log[-3000:]
        assert "CHECK" in gen.log, f"{spec.name}: sparse did not run"
        assert not gen.diagnostics, f"{spec.name}:\n" + "\n".join(gen.diagnostics)
        info = subprocess.run(
            ["modinfo", "-F", "depends", str(gen.module(spec.name))],
            capture_output=True,
            text=True,
            check=True,
        )
        assert info.stdout.strip() == "itm_mod"  # resolved against itm_mod's Module.symvers


def test_vm_booted_this_kernel(kernel: Kernel) -> None:
    run = _run(kernel)
    assert run.problem() is None, run.problem()
    assert run.uname == kernel.release


#: (kernel, guest test) pairs: every kernel runs every guest test, but the SMP
#: debug kernel its concurrency files (tests.vm.guest.DEBUG_SMP_SUITE) unless
#: ITM_DEBUG_SUITE=all, when it leaves out the files named in
#: tests.vm.guest.DEBUG_LEAVE_OUT, each with its reason; a file of
#: tests.vm.guest.ONE_DEBIAN_KERNEL runs on that one of Debian's kernels
CASES = [(k, t) for k in KERNELS for t in GUEST_TESTS if in_suite(k, t)]


@pytest.mark.parametrize(("kernel", "guest_test"), CASES, ids=[f"{k.name}-{t}" for k, t in CASES])
def test_in_vm(kernel: Kernel, guest_test: str) -> None:
    run = _run(kernel)
    problem = run.problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    if guest_test not in run.results:
        pytest.fail(f"{guest_test} did not run in the VM:\n{run.pytest_log[-2000:]}", pytrace=False)
    outcome, message = run.results[guest_test]
    if outcome == "skipped" and KERNEL_LACKS in message:
        # named, with its reason: this kernel lacks what the test needs
        pytest.skip(f"{kernel.name}: {message.strip()}")
    if outcome != "passed":
        pytest.fail(f"{outcome} in the VM ({kernel.release}):\n{message}", pytrace=False)


def test_kernel_log_is_clean(kernel: Kernel) -> None:
    run = _run(kernel)
    assert run.problem() is None, run.problem()
    assert run.dmesg, "no kernel log came back"
    bad = [
        line
        for line in bad_lines(run.dmesg + run.vm_output.splitlines())
        if not any(re.search(pattern, line) for pattern, _ in KNOWN_FALSE_POSITIVES)
    ]
    assert not bad, "\n".join(bad[:40])
    for console in run.failed_boots:
        # the emulator's crash, or a detector's report while booting, before the
        # suite ran (tests.vm.guest.BOOT_TAINT_CHECK): reported, not hidden
        died = bad_lines(console.splitlines())[:5] or console.splitlines()[-5:]
        warnings.warn(
            f"{kernel.release}: a boot died or came up tainted before the suite started "
            "and the VM was booted again; its console:\n" + "\n".join(died),
            stacklevel=1,
        )
    assert run.tainted is not None
    assert run.tainted & ~ALLOWED_TAINT == 0, f"taint {run.tainted:#x}"


def test_kmemleak_finds_no_leak(kernel: Kernel) -> None:
    """On a kernel with kmemleak: after the suite, with our modules unloaded, 0 objects."""
    run = _run(kernel)
    assert run.problem() is None, run.problem()
    if not kernel.detectors:
        assert run.kmemleak is None  # only the kernels with the detectors have kmemleak
        return
    assert run.kmemleak is not None, "the kmemleak scan did not run"
    leaks = kmemleak_objects(run.kmemleak)
    assert leaks == 0, f"kmemleak: {leaks} objects\n{run.kmemleak[:4000]}"


def test_checkpatch_strict_is_clean() -> None:
    problems = buildmods.style()
    assert not problems, "\n".join(problems)
