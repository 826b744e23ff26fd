"""Fixtures of the VM tier: every test checks the kernel log it caused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from itmlab import kmods
from tests.kernel import kit


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run outside the VM (these tests load kernel modules)."""
    if os.environ.get("ITM_COLLECT_ONLY"):
        return
    if not os.environ.get("ITM_MODDIR"):
        raise pytest.UsageError(
            "tests/kernel runs inside a VM: run `make test` (tests/vm boots the kernels)"
        )
    if not kit.DEBUGFS.joinpath("tracing").exists() and not os.path.ismount(kit.DEBUGFS):
        kit.sh("mount", "-t", "debugfs", "none", str(kit.DEBUGFS), check=False)


#: stock modules the user-space application tests need (veth for the topology, the
#: queue for the apps, the log for the observers)
QUEUE_STOCK = (
    "kernel/net/netfilter/nfnetlink",
    "kernel/net/netfilter/nfnetlink_queue",
    "kernel/net/netfilter/nfnetlink_log",
    "kernel/drivers/net/veth",
)


@pytest.fixture
def queue_stock_modules() -> None:
    """Load veth and nfnetlink_queue by path before the topology needs them.

    The guest reads the host's module index through 9p; when the host rewrites
    it (depmod, e.g. a dkms test) while the VM runs, the guest's modprobe
    crashes and the kernel's module autoloading fails ("Unknown device type").
    insmod with a path does not read the index.
    """
    kmods.insmod_stock(*QUEUE_STOCK)


@pytest.fixture(autouse=True)
def clean_kernel_log() -> Iterator[None]:
    """Fail a test whose run left a WARN, BUG, Oops, corruption report or new taint."""
    log = kit.KernelLog()
    taint_before = kit.taint()
    try:
        yield
        new = log.new_lines()
    finally:
        log.close()
    bad = kit.bad_lines(new)
    assert not bad, "kernel log shows:\n" + "\n".join(new[-60:])
    assert kit.taint() == taint_before, f"kernel taint changed to {kit.taint():#x}"
    ours = ("itm_route", "itm_test_app", "qos_mod", "paper_qos", "itm_queue", "itm_mod", "sch_rio")
    leftover = [m for m in ours if kit.loaded(m)]
    for m in leftover:
        kit.rmmod(m)
    assert not leftover, f"test left modules loaded: {leftover}"
    stale = [n for n in os.listdir("/run/netns")] if Path("/run/netns").exists() else []
    assert not [n for n in stale if n.startswith("itm")], f"namespaces left: {stale}"


@pytest.fixture
def topo() -> Iterator[kit.Topology]:
    """The client -- router -- server topology."""
    with kit.topology() as t:
        yield t
