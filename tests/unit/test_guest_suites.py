"""Which guest files each kernel of the matrix runs (tests.vm.guest.suite_of)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from itmtool.matrix import ROOT, read_matrix
from tests.vm import guest


def test_a_file_for_one_debian_kernel_runs_there_and_only_there() -> None:
    kernels = {k.name: k for k in read_matrix()}
    every = set(guest._guest_files())
    for path, (name, why) in guest.ONE_DEBIAN_KERNEL.items():
        assert (ROOT / path).is_file() and why
        assert kernels[name].flavour is None, "one of Debian's kernels"
        for other in (k for k in kernels.values() if k.flavour is None):
            suite = set(guest.suite_of(other))
            assert (path in suite) == (other.name == name)
            # nothing else is left out of Debian's suites
            assert suite | set(guest.ONE_DEBIAN_KERNEL) == every


def test_guests_that_share_the_machine_get_one_vcpu_and_the_debug_kernel_two() -> None:
    kernels = {k.name: k for k in read_matrix()}
    assert guest.guest_cpus(kernels["debug"]) == 2  # runs alone: where two CPUs meet
    for name in ("6.1", "6.12"):  # side by side: one vCPU thread each (docs/testing.md)
        assert guest.guest_cpus(kernels[name]) == guest.SHARED_GUEST_CPUS == 1


def test_the_guest_loads_stripped_copies_of_the_modules(tmp_path: Path) -> None:
    """tests.vm.guest.stage_modules: every .ko of src/ and generated/, same layout,
    without debug info; nothing else."""
    src = tmp_path / "t.c"  # an ELF object with debug info stands in for a module
    src.write_text("int x;\n")
    ko = tmp_path / "t.ko"
    subprocess.run(["cc", "-g", "-c", str(src), "-o", str(ko)], check=True)
    top = tmp_path / "top"
    (top / "src" / "kernel" / "m").mkdir(parents=True)
    (top / "generated" / "g").mkdir(parents=True)
    shutil.copy(ko, top / "src" / "kernel" / "m" / "m.ko")
    shutil.copy(ko, top / "generated" / "g" / "g.ko")
    (top / "src" / "kernel" / "m" / "m.o").write_bytes(b"not copied")
    stage = guest.stage_modules(top, tmp_path / "stage")
    found = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    assert found == ["generated/g/g.ko", "src/kernel/m/m.ko"]
    copy = stage / "src" / "kernel" / "m" / "m.ko"
    assert copy.stat().st_size < ko.stat().st_size
    sections = subprocess.run(
        ["readelf", "-S", str(copy)], capture_output=True, text=True, check=True
    ).stdout
    assert ".debug_info" not in sections
