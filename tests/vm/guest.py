"""Run the VM tier for one kernel: build its modules, boot it, run tests/kernel in it.

The results (pytest's junit XML, the kernel log, the taint mask) come back through
a directory shared read-write with the guest, and are read by tests/vm.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from itmtool import buildmods, guestrun, matrix, new, vm
from itmtool.matrix import ROOT, Kernel, read_matrix

GUEST_SUITE = "tests/kernel"

#: before the suite: what boot left unreferenced is not the suite's
KMEMLEAK_CLEAR = """\
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
if [ -w /sys/kernel/debug/kmemleak ]; then
    echo scan > /sys/kernel/debug/kmemleak; echo clear > /sys/kernel/debug/kmemleak
fi"""

#: after the suite, on a kernel with kmemleak (the debug kernel): unload our modules
#: (a module's own leaks are only unreferenced once it is gone), scan twice (an
#: object is reported when two scans in a row find no reference to it), keep the report
KMEMLEAK_SCAN = """\
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
if [ -w /sys/kernel/debug/kmemleak ]; then
    mods=$(find "$ITM_MODDIR" -name '*.ko' -printf '%f\\n' | sed 's/[.]ko$//')
    for i in 1 2 3; do for m in $mods; do rmmod "$m" 2>/dev/null; done; done
    sleep 6; echo scan > /sys/kernel/debug/kmemleak
    sleep 6; echo scan > /sys/kernel/debug/kmemleak
    cat /sys/kernel/debug/kmemleak > {out}
fi"""
#: a tier's VM may take this long (a hung guest fails its tier, not the whole run);
#: Debian's kernels take 12-13 min for the whole suite on this 2-core machine
VM_TIMEOUT = float(os.environ.get("ITM_VM_TIMEOUT", "2400"))
#: the whole suite on the SMP debug kernel (`make test-debug`) takes hours
DEBUG_ALL_TIMEOUT = 4 * 3600.0
#: kernels whose tiers run at the same time (a TCG guest keeps about one core busy)
VM_JOBS = int(os.environ.get("ITM_VM_JOBS", "2"))
#: vCPUs of a guest that shares the machine with another (Debian's two run side
#: by side).  QEMU's TCG runs each vCPU in a thread of its own, and two guests of
#: two vCPUs on this 2-core machine made every guest program about 4x slower than
#: two guests of one (`import pyroute2`: 64-132 s against 20-24 s, measured side
#: by side; docs/testing.md).  The SMP debug kernel runs alone, with 2 vCPUs: the
#: tier where two CPUs meet in our code under the detectors.
SHARED_GUEST_CPUS = int(os.environ.get("ITM_VM_CPUS", "1"))
#: vCPUs of a guest that runs alone (the exclusive tiers)
ALONE_GUEST_CPUS = 2

#: on a kernel with the detectors, before anything of ours runs: a kernel tainted
#: while booting has already reported something (seen once in six debug boots
#: under TCG: ``BUG: KASAN: wild-memory-access in do_raw_spin_lock`` from an
#: interrupt during ``identify_cpu``), and its taint has switched lockdep off for
#: the whole run.  The guest keeps that boot's log and stops; the tier boots again
#: once, and the log check reports the first boot's console as a warning.
BOOT_TAINT_CHECK = """\
if [ "$(cat /proc/sys/kernel/tainted)" != 0 ]; then
    dmesg > {res}/tainted-at-boot.txt; exit 75
fi"""
#: boots of a detector kernel that came up tainted, before the tier gives up on clean ones
TAINTED_BOOT_RETRIES = 1

#: the detectors' self-test, after the suite's log and kmemleak report are kept:
#: tests/vm/bugmod commits one bug per load (test_debug_selftest.py checks that
#: each is reported).  KASAN's report taints the kernel, which turns lockdep off:
#: the RCU bug goes first.  The leak is scanned for while bugmod is loaded:
#: kmemleak resolves a backtrace's symbols when it prints the report, and an
#: unloaded module's are gone.
SELFTEST_MARK = "itm-selftest: the deliberate bugs start here"
SELFTEST = """\
echo "{mark}" > /dev/kmsg
{clear}
insmod {ko} bug=rcu && rmmod bugmod
insmod {ko} bug=leak
sleep 6; echo scan > /sys/kernel/debug/kmemleak; sleep 6; echo scan > /sys/kernel/debug/kmemleak
cat /sys/kernel/debug/kmemleak > {res}/selftest-kmemleak.txt
rmmod bugmod
insmod {ko} bug=oob && rmmod bugmod
dmesg > {res}/selftest-dmesg.txt"""
BUGMOD = Path(__file__).parent / "bugmod"

#: where the guest loads our modules from: a copy in its own tmpfs, made when it
#: starts, of the .ko files stripped of their debug info (Kbuild's INSTALL_MOD_STRIP
#: does the same).  virtme-ng shares the root over 9p without a page cache, so
#: every read goes to the host, at about 1.5 MB/s under TCG: each insmod of the
#: 2.4 MB itm_mod.ko cost over a second, and 20 load/unload cycles 110 s instead
#: of 70 (docs/testing.md)
GUEST_MODULES = "/tmp/itm-modules"


@dataclass
class GuestRun:
    """Everything one VM run of the kernel tier produced."""

    kernel: Kernel
    build: buildmods.BuildResult
    vm_rc: int | None = None
    vm_output: str = ""
    #: consoles of boots that died before the suite started (vm.run booted again)
    failed_boots: list[str] = field(default_factory=list)
    uname: str = ""
    pytest_rc: int | None = None
    pytest_log: str = ""
    dmesg: list[str] = field(default_factory=list)
    #: kmemleak's report after the suite; None on a kernel without kmemleak
    kmemleak: str | None = None
    tainted: int | None = None
    #: skeletons made by `itmtool new kernel`, built beside the modules
    generated: list[buildmods.BuildResult] = field(default_factory=list)
    #: guest test id -> (outcome, message)
    results: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: on a kernel with the detectors: bugmod's build log (None: not built), and
    #: the kernel log and kmemleak report after its deliberate bugs
    bugmod_build: str | None = None
    selftest_dmesg: list[str] = field(default_factory=list)
    selftest_kmemleak: str | None = None
    #: why the VM was killed before its end, when its heartbeat stopped
    stalled: str | None = None

    def problem(self) -> str | None:
        """Why the run as a whole failed, or None."""
        if not self.build.ok:
            return "modules did not build cleanly:\n" + "\n".join(self.build.diagnostics[-30:])
        for gen in self.generated:
            if not gen.ok:
                return f"generated module {gen.moddir.name} did not build cleanly:\n" + (
                    "\n".join(gen.diagnostics[-30:] or gen.log.splitlines()[-30:])
                )
        if self.stalled:
            return (
                f"{self.stalled}:\n"
                + self.pytest_log[-2000:]
                + ("\n--- console ---\n" + self.vm_output[-40000:])
            )
        if self.vm_rc is None:
            return "the VM did not finish in time:\n" + self.vm_output[-3000:]
        if not self.results:
            return (
                f"the VM ran no test (vng exit {self.vm_rc}, pytest exit {self.pytest_rc}):\n"
                + self.pytest_log[-2000:]
                + "\n--- console ---\n"
                + self.vm_output[-40000:]
            )
        return None


def kmemleak_objects(report: str) -> int:
    """How many objects a kmemleak report (/sys/kernel/debug/kmemleak) lists."""
    return report.count("unreferenced object 0x")


#: what the SMP debug kernel runs in `make test`: the guest files where two CPUs
#: meet in our code (netlink storms from several threads, module load and unload
#: under traffic on the other CPU).  Under the emulator its detectors make the
#: whole suite take over an hour on 2 cores; it runs on this kernel with
#: ITM_DEBUG_SUITE=all (`make test-debug`).  docs/testing.md says why.
DEBUG_SMP_SUITE = (
    "tests/kernel/test_fuzz_netlink.py",
    "tests/kernel/test_fuzz_modules.py",
    # itm_route's counters, replay windows and peer table, from both CPUs' softirqs
    # (Debian's guests have one vCPU since 2026-12-06: guest_cpus); about 4 min
    "tests/kernel/test_itm_route.py",
)


#: guest files that the SMP debug kernel leaves out (with ITM_DEBUG_SUITE=all), with
#: why.  Every other kernel runs them (uml-debug too: docs/testing.md).
DEBUG_LEAVE_OUT = {
    "tests/kernel/test_itmroute.py": (
        "itmRoute's daemons over netem links, timed: on the SMP debug kernel (TCG, "
        "KASAN) a relayed round trip takes 1-2 s, so the paths' order and the "
        "failover times the file checks are noise (one failover never resumed "
        "within its 10 s stream)"
    ),
    "tests/kernel/test_itmroute_kernel_path.py": (
        "the same daemons with itm_route carrying the packets: the same noise"
    ),
}


#: guest files that only one of Debian's kernels runs, the kernel and why: code of
#: ours that loads no module and behaves alike on both, whose TCG minutes count on
#: the critical path of `make test` (Debian's two guests run side by side)
ONE_DEBIAN_KERNEL = {
    "tests/kernel/test_itmroute.py": (
        "6.12",
        "itmRoute's daemons on their own Python data path over netem links: no module "
        "of ours, the same user space on either kernel, and 3 min of each TCG guest "
        "(its overlay with the kernel data path, test_itmroute_kernel_path.py, and "
        "itm_route's own tests run on both)",
    ),
    "tests/kernel/test_itmroute_wireguard.py": (
        "6.1",
        "the kernel's own WireGuard steered by the daemons through nftables: no module "
        "of ours, and 2.5 min of 6.12's TCG guest, the longer of the two (uml-debug, "
        "6.12's source, runs it too)",
    ),
}


def _guest_files() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / GUEST_SUITE).glob("test_*.py"))


def suite_of(kernel: Kernel) -> tuple[str, ...]:
    """The guest test files `kernel` runs; () for the whole of tests/kernel."""
    if kernel.flavour == "debug" and os.environ.get("ITM_DEBUG_SUITE", "smp") != "all":
        return DEBUG_SMP_SUITE
    if kernel.detectors:
        leave_out = DEBUG_LEAVE_OUT if kernel.flavour == "debug" else {}
        return tuple(f for f in _guest_files() if f not in leave_out)
    if kernel.flavour is None:  # Debian's
        return tuple(
            f
            for f in _guest_files()
            if ONE_DEBIAN_KERNEL.get(f, (kernel.name, ""))[0] == kernel.name
        )
    return ()


def in_suite(kernel: Kernel, test_id: str) -> bool:
    """Whether the guest test `test_id` is part of `kernel`'s suite."""
    files = suite_of(kernel)
    return not files or test_id.split("::", 1)[0] in files


def selected_kernels() -> list[Kernel]:
    """The kernels of the matrix, or those $ITM_KERNELS names (comma-separated)."""
    return matrix.selected()


def collect_guest_tests() -> list[str]:
    """The test ids of tests/kernel, collected on the host without running them."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            GUEST_SUITE,
        ],
        cwd=ROOT,
        env={**os.environ, "ITM_COLLECT_ONLY": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode != 0 or not ids:
        raise RuntimeError(f"cannot collect {GUEST_SUITE}:\n{proc.stdout}\n{proc.stderr}")
    return ids


def _junit_results(path: Path) -> dict[str, tuple[str, str]]:
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        test_id = classname.replace(".", "/") + ".py::" + case.get("name", "")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = (el.get("message") or "") + "\n" + (el.text or "")
                break
        if test_id in results and results[test_id][0] != "passed":
            continue  # keep a teardown error attached to the test
        results[test_id] = (outcome, message)
    return results


def _run_dir(kernel: Kernel) -> Path:
    """A directory of this process's own (runs may overlap), old ones removed."""
    base = buildmods.BUILD_ROOT / kernel.release
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob("vm-*"):
        pid = old.name.removeprefix("vm-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    mine = base / f"vm-{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    return mine


def exclusive(kernel: Kernel) -> bool:
    """Whether `kernel`'s tier runs alone: the SMP debug kernel keeps both vCPUs busy
    under its detectors, and a Debian guest beside it ran three times slower than
    alone (its tier overran its time in CI)."""
    return kernel.flavour == "debug"


def guest_cpus(kernel: Kernel) -> int:
    """The vCPUs `kernel`'s guest gets: 2 when its tier runs alone, else
    SHARED_GUEST_CPUS (1; ``ITM_VM_CPUS``)."""
    return ALONE_GUEST_CPUS if exclusive(kernel) else SHARED_GUEST_CPUS


_tiers: dict[str, Future[GuestRun]] = {}
_tiers_lock = threading.Lock()


def _fill(future: Future[GuestRun], kernel: Kernel) -> None:
    try:
        future.set_result(run_kernel_tier(kernel))
    except BaseException as exc:  # handed to whoever waits for this tier
        future.set_exception(exc)


def _schedule(kernels: list[Kernel]) -> None:
    """Each exclusive kernel first, alone among the VMs (in `make test` that is
    while the unit and host tiers run in the foreground, which leave much of the
    machine idle); then the QEMU kernels VM_JOBS at once and, beside them, the UML
    kernels one at a time (a UML kernel is one native process: a few minutes of
    one core)."""
    for k in kernels:
        if exclusive(k):
            _fill(_tiers[k.name], k)
    qemu = [k for k in kernels if not exclusive(k) and not k.is_uml]
    uml = [k for k in kernels if not exclusive(k) and k.is_uml]
    with (
        ThreadPoolExecutor(max_workers=max(VM_JOBS, 1), thread_name_prefix="vm-tier") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="uml-tier") as lane,
    ):
        for k in uml:
            lane.submit(_fill, _tiers[k.name], k)
        for k in qemu:
            pool.submit(_fill, _tiers[k.name], k)


def start_tiers() -> None:
    """Start every selected kernel's tier in the background (:func:`_schedule`), once.

    tests/conftest.py calls it as soon as a run has collected tests of the VM
    tier, so that the guests build, boot and run while the unit and host tiers
    still run in the foreground: their minutes are then off the critical path of
    `make test` (docs/testing.md)."""
    with _tiers_lock:
        if not _tiers:
            kernels = selected_kernels()
            _tiers.update((k.name, Future()) for k in kernels)
            threading.Thread(
                target=_schedule, args=(kernels,), name="vm-tiers", daemon=True
            ).start()


def tier(kernel: Kernel) -> GuestRun:
    """`kernel`'s tier run, waited for (started by the first call if nothing
    started it before), so that the tests of one kernel can be read while the
    others' still run."""
    start_tiers()
    return _tiers[kernel.name].result()


def _build_bugmod(kernel: Kernel, top: Path) -> tuple[Path, str, bool]:
    """Build tests/vm/bugmod for `kernel` under `top`; (the .ko, the log, whether it built)."""
    src = top / "bugmod"
    shutil.copytree(BUGMOD, src)
    build = subprocess.run(
        ["make", "-C", str(kernel.build_dir), *kernel.make_args, f"M={src}", "modules"],
        capture_output=True,
        text=True,
        check=False,
    )
    return src / "bugmod.ko", build.stdout[-2000:] + build.stderr[-2000:], build.returncode == 0


def stage_modules(top: Path, stage: Path) -> Path:
    """Copy every .ko under `top`'s src/ and generated/ to `stage`, in the same
    layout, stripped of debug info (``strip --strip-debug``); `stage` is returned."""
    shutil.rmtree(stage, ignore_errors=True)
    for part in ("src", "generated"):
        for ko in sorted((top / part).rglob("*.ko")):
            dst = stage / ko.relative_to(top)
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["strip", "--strip-debug", "-o", str(dst), str(ko)],
                check=True,
                capture_output=True,
            )
    return stage


def run_kernel_tier(kernel: Kernel, pytest_args: tuple[str, ...] = ()) -> GuestRun:
    """Build for `kernel`, boot it and run the guest suite; never raises for test failures."""
    top = _run_dir(kernel)
    # one build serves W=1 and sparse (C=2): the checker runs beside the compiler
    run = GuestRun(kernel, buildmods.build(kernel, dest=top / "src", sparse=True))
    if not run.build.ok:
        return run
    run.generated = new.build_examples(
        kernel, top / "generated", symvers=top / "src" / "Module.symvers", sparse=True
    )
    if not all(gen.ok for gen in run.generated):
        return run
    res = top / "results"
    res.mkdir(parents=True)
    stage = stage_modules(top, top / "guest-modules")
    # a test file or node id among the arguments replaces the kernel's suite
    paths = [a for a in pytest_args if a.startswith(GUEST_SUITE)] or list(suite_of(kernel))
    suite = " ".join(paths) if paths else GUEST_SUITE
    args = " ".join(shlex.quote(a) for a in pytest_args if a not in paths)
    selftest = ""
    if kernel.detectors and not pytest_args:
        # one boot serves the suite and the detectors' self-test
        ko, run.bugmod_build, built = _build_bugmod(kernel, top)
        if built:
            selftest = SELFTEST.format(mark=SELFTEST_MARK, clear=KMEMLEAK_CLEAR, ko=ko, res=res)
    boot_check = BOOT_TAINT_CHECK.format(res=res) if kernel.detectors else ""
    script = f"""
mkdir -p {GUEST_MODULES} && cp -r {stage}/. {GUEST_MODULES}/ || exit 1
export ITM_MODDIR={GUEST_MODULES}/src
uname -r > {res}/uname
{boot_check}
{KMEMLEAK_CLEAR}
dmesg -w > {res}/dmesg-live.txt 2>&1 &
python -m pytest -p no:cacheprovider -v -rA --durations=0 --timeout=600 {suite} \
    --junitxml={res}/junit.xml {args} > {res}/pytest.log 2>&1
echo $? > {res}/pytest.rc
{KMEMLEAK_SCAN.format(out=f"{res}/kmemleak.txt")}
dmesg > {res}/dmesg.txt
cat /proc/sys/kernel/tainted > {res}/tainted
{selftest}
"""
    tainted_boot = res / "tainted-at-boot.txt"
    for _ in range(TAINTED_BOOT_RETRIES + 1):
        tainted_boot.unlink(missing_ok=True)
        try:
            out = vm.run(
                kernel,
                script,
                rwdirs=[res],
                timeout=DEBUG_ALL_TIMEOUT
                if kernel.flavour == "debug" and suite_of(kernel) != DEBUG_SMP_SUITE
                else VM_TIMEOUT,
                console=True,
                cpus=guest_cpus(kernel),
                # the fuzz tests' seed, time and cycles (docs/fuzzing.md) pass through
                env={k: v for k, v in os.environ.items() if k.startswith("ITM_FUZZ_")},
            )
            run.vm_rc, run.vm_output = out.returncode, out.output
            run.failed_boots += out.failed_boots
            # the console after the mark is the self-test's (its reports are wanted there)
            run.vm_output = run.vm_output.split(SELFTEST_MARK, 1)[0]
        except subprocess.TimeoutExpired as exc:  # guestrun.GuestStalled among them
            run.vm_output = str(exc.output or "")
            if isinstance(exc, guestrun.GuestStalled):
                run.stalled = str(exc)
        if not tainted_boot.exists():
            break
        run.failed_boots.append(tainted_boot.read_text(errors="replace"))
        print(
            f"tests.vm.guest: {kernel.release} came up tainted (a detector's report while "
            "booting, before anything of ours); booting again",
            file=sys.stderr,
            flush=True,
        )
    else:
        # every boot came up tainted: its log is the suite's, so the log check fails on it
        (res / "dmesg.txt").write_text(run.failed_boots[-1])
    read = functools.partial(_read, res)
    run.uname = read("uname").strip()
    run.pytest_log = read("pytest.log")
    rc = read("pytest.rc").strip()
    run.pytest_rc = int(rc) if rc else None
    run.dmesg = read("dmesg.txt").splitlines()
    if (res / "kmemleak.txt").exists():
        run.kmemleak = read("kmemleak.txt")
    tainted = read("tainted").strip()
    run.tainted = int(tainted) if tainted else None
    if (res / "junit.xml").exists():
        run.results = _junit_results(res / "junit.xml")
    run.selftest_dmesg = read("selftest-dmesg.txt").splitlines()
    if (res / "selftest-kmemleak.txt").exists():
        run.selftest_kmemleak = read("selftest-kmemleak.txt")
    return run


def _read(res: Path, name: str) -> str:
    path = res / name
    return path.read_text(errors="replace") if path.exists() else ""


def main() -> int:
    """`python -m tests.vm.guest [KERNEL-NAME ...] [-- PYTEST-ARGS]`: run the tier, print a summary.

    Arguments after ``--`` go to the guest's pytest, e.g. ``-- -k queue`` or a test file,
    to run part of the guest suite while working on it.
    """
    argv = sys.argv[1:]
    extra: tuple[str, ...] = ()
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], tuple(argv[cut + 1 :])
    wanted = argv
    failed = False
    for k in read_matrix():
        if wanted and k.name not in wanted:
            continue
        run = run_kernel_tier(k, extra)
        bad = [t for t, (o, _) in run.results.items() if o != "passed"]
        print(f"{k.release}: {len(run.results) - len(bad)} passed, {len(bad)} failed")
        if run.problem() or bad:
            failed = True
            print(run.problem() or "\n".join(bad))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
