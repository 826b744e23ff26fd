"""Which guest files each kernel of the matrix runs (tests.vm.guest.suite_of)."""

from __future__ import annotations

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
