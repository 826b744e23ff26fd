"""Fixtures for the libitm host tests: root check, namespaces, no rule leaks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
for p in (ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from tests.support.netns_pair import NetPair, RoutedPair, root_ns_rules  # noqa: E402


@pytest.fixture(autouse=True)
def _require_root() -> None:
    """Fail, never skip, when the tier cannot run."""
    if os.geteuid() != 0:
        pytest.fail(
            "tests/host/libitm needs root (network namespaces, iptables, nfnetlink_queue); "
            "run them with sudo or in CI's root job"
        )


@pytest.fixture(scope="module", autouse=True)
def _no_rules_leak_into_root_namespace() -> Iterator[None]:
    """Nothing these tests do may add ITM rules to the root namespace."""
    before = root_ns_rules() if os.geteuid() == 0 else ""
    yield
    if os.geteuid() == 0:
        after = root_ns_rules()
        assert after == before, "ITM rules leaked into the root network namespace"


@pytest.fixture
def net() -> Iterator[NetPair]:
    """Two namespaces joined by a veth pair; removed afterwards, also on failure."""
    pair = NetPair()
    try:
        pair.create()
        yield pair
    finally:
        pair.destroy()


@pytest.fixture
def routed() -> Iterator[RoutedPair]:
    """Namespaces a and b with a router namespace r between them; removed afterwards."""
    topo = RoutedPair()
    try:
        topo.create()
        yield topo
    finally:
        topo.destroy()
