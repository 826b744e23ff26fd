"""itmlab's topologies carry traffic and leave nothing behind (root, running kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import itmlab
from itmlab import Lab


@pytest.fixture(autouse=True)
def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)")


def _namespaces() -> set[str]:
    d = Path("/run/netns")
    return {p.name for p in d.iterdir()} if d.exists() else set()


def test_the_client_router_server_topology_forwards_v4_and_v6_and_is_removed() -> None:
    with itmlab.topology() as t:
        made = {t.client, t.router, t.server}
        assert made <= _namespaces()
        assert itmlab.ping(t.client, t.server4)
        # the first IPv6 echo waits for neighbour discovery: a loaded machine may
        # need more than one ping's two seconds
        assert any(itmlab.ping(t.client, t.server6) for _ in range(3))
        assert itmlab.udp(t, 20, 7009) == 20
        sent, got = itmlab.tcp(t, 200_000, 7010)
        assert sent == got
    assert not made & _namespaces()


def test_a_chain_reaches_end_to_end_through_its_middle() -> None:
    with itmlab.chain(["left", "middle", "right"]) as c:
        assert itmlab.ping(c.names[0], c.addr(2))
        assert itmlab.ping(c.names[2], c.addr(0))
        names = set(c.names)
    assert not names & _namespaces()


def test_a_lab_that_fails_to_build_removes_what_it_made() -> None:
    lab = Lab("itmlabt")
    a, b = lab.ns("a"), lab.ns("b")
    lab.link(a, "va", b, "vb", ["10.231.1.1/24"], ["10.231.1.2/24"])
    lab.ip(a, "route add 10.232.0.0/16 via 10.99.99.99")  # unreachable gateway: fails
    with pytest.raises(RuntimeError, match="ip -n"):
        lab.create()
    assert not {a, b} & _namespaces()
