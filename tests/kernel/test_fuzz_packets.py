"""Fuzz the packet path: malformed and unusual packets through a router where
itm_mod runs test applications at every hook, qos_mod, and a user-space
application queueing at every hook; then TCP with TSO/GSO across it, hashes
compared end to end.

Seeded: ITM_FUZZ_SEED=N replays a run (the seed is printed); ITM_FUZZ_SECONDS
sets the random storm's time (default 6 s).  The kernel log check of
conftest.py fails any splat.
"""

from __future__ import annotations

import collections
import os
import random
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from libitm import Interest
from tests.kernel import kit
from tests.kernel.genl_raw import RawGenl
from tests.kernel.itm_raw import app_seen
from tests.kernel.pkt_fuzz import catalogue, noise
from tests.kernel.user_app_child import HOOKS, queueing_app

SECONDS = float(os.environ.get("ITM_FUZZ_SECONDS", "6"))
SEED = int(os.environ.get("ITM_FUZZ_SEED", str(random.SystemRandom().randrange(1 << 32))))
SHORT = ("pre", "in", "fwd", "out", "post")
#: one test application per hook for every packet, one that parses ports
APPS = ";".join(f"label=t_{h},hook={h},class=1" for h in SHORT) + (
    ";label=t_ports,hook=pre,proto=tcp,dport=1-65535,class=1"
)
MAC_C0, MAC_R0 = "02:77:00:00:00:02", "02:77:00:00:00:01"


@pytest.fixture
def router(topo: kit.Topology) -> Iterator[kit.Topology]:
    """itm_mod on the router with the test applications, qos_mod and itm_queue."""
    kit.sh("ip", "-n", topo.client, "link", "set", "c0", "address", MAC_C0)
    kit.sh("ip", "-n", topo.router, "link", "set", "r0", "address", MAC_R0)
    kit.insmod("itm_mod", "init_netns=0")
    try:
        kit.itm_attach(topo.router)
        kit.insmod("itm_test_app", f"apps={APPS}")
        kit.insmod("qos_mod")
        kit.insmod("itm_queue")
        yield topo
    finally:
        for m in ("itm_queue", "qos_mod", "itm_test_app", "itm_mod"):
            kit.rmmod(m)


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def test_malformed_packets_at_every_hook(router: kit.Topology) -> None:
    """The catalogue, then random bytes: no splat, every hook ran, and the
    router still forwards TCP (TSO/GSO on) with the payload intact."""
    t = router
    print(f"seed {SEED} (ITM_FUZZ_SEED={SEED} replays it)")
    rng = random.Random(SEED)
    sent: collections.Counter[str] = collections.Counter()
    with kit.netns(t.client):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    interest = Interest(protocol="tcp", dport=(1, 1000))
    with tx, queueing_app(t.router, interest) as user:
        tx.bind(("c0", 0))
        eth = {k: _mac(MAC_R0) + _mac(MAC_C0) + struct.pack("!H", k) for k in (0x0800, 0x86DD)}
        cases = list(catalogue(rng, t.client4, t.server4, t.client6, t.server6))
        cases += list(catalogue(rng, t.client4, t.router4, t.client6, t.router6))
        for n, (kind, ethertype, pkt) in enumerate(cases):
            tx.send(eth[ethertype] + pkt)
            sent[kind] += 1
            if n % 64 == 63:
                time.sleep(0.02)  # let the queueing application keep up
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            kind, ethertype, pkt = noise(rng, t.client4, t.server4)
            tx.send(eth[ethertype] + pkt)
            sent["random storm"] += 1
            if sent["random storm"] % 64 == 0:
                time.sleep(0.02)
        with RawGenl() as s:
            seen = app_seen(s)
    total = sum(sent.values())
    print(f"{total} packets sent: " + ", ".join(f"{k} {v}" for k, v in sorted(sent.items())))
    print("seen per application: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    print(f"queueing application accepted {user.packets}")
    for h in SHORT:
        assert seen[f"t_{h}"] > 0, f"the test application at {h} saw nothing: {seen}"
    assert {f"uq_{hook}" for hook in HOOKS} <= seen.keys(), (
        "the user application is not at every hook"
    )
    assert seen["t_pre"] >= sent["tcp flags"], "packets that pass ip_rcv reach pre-routing"
    assert user.packets > 0

    features = kit.sh("ip", "netns", "exec", t.client, "ethtool", "-k", "c0")
    assert "tcp-segmentation-offload: on" in features, features
    for v6 in (False, True):
        want, got = kit.tcp(t, 2 << 20, 5201 + v6, v6=v6)
        assert got == want, f"TCP {'v6' if v6 else 'v4'} through the router: payload changed"
    print("TCP 2 MiB v4 and v6 with TSO/GSO across the router: sha256 equal")
