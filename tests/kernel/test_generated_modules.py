"""Skeletons made by `itmtool new kernel` load, register, show in status and count.

tests/vm/guest.py generates and builds them on the host before the VM boots
(`itmtool.new.build_examples`, into build/<release>/generated/); a missing one
is a failure. Everything goes through `itmtool`'s command line as a person would
use it, run in this process: under TCG on a busy machine a Python start with
pyroute2 costs tens of seconds.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from itmtool import new
from tests.kernel import kit
from tests.kernel.kit import Topology

itmtool = kit.itmtool


@pytest.fixture
def generated() -> Iterator[dict[str, Path]]:
    """The generated modules' .ko files by name; unloaded afterwards whatever happens."""
    base = Path(os.environ["ITM_MODDIR"]).parent / "generated"
    found = {s.name: base / s.name / f"{s.name}.ko" for s in new.EXAMPLES}
    missing = [str(p) for p in found.values() if not p.exists()]
    if missing:
        pytest.fail(
            "generated modules were not built before the VM booted (tests/vm/guest.py must "
            f"call itmtool.new.build_examples): {missing}"
        )
    try:
        yield found
    finally:
        for name in found:
            kit.rmmod(name)
        kit.rmmod("itm_mod")


def _echo_requests(ns: str, dst: str, count: int) -> None:
    """Send ICMP echo requests from `ns` with a raw socket (no reply awaited)."""
    msg = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"itmBench"
    csum = sum(struct.unpack("!8H", msg[:16]))
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
    msg = msg[:2] + struct.pack("!H", csum) + msg[4:]
    with kit.netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        for _ in range(count):
            sock.sendto(msg, (dst, 0))


def test_generated_modules_register_and_count(topo: Topology, generated: dict[str, Path]) -> None:
    # an application without itm_mod is refused, with the way out
    res = itmtool("load", "gen_fwd_udp")
    assert res.returncode == 1 and "needs itm_mod" in res.stderr and "--deps" in res.stderr
    assert itmtool("load", "itm_mod").returncode == 0
    kit.itm_attach(topo.router)
    # parameters are checked against the module before insmod
    res = itmtool("load", "gen_post_tcp", "prio=3")
    assert res.returncode == 2 and "has no parameter 'prio'" in res.stderr
    res = itmtool("load", "gen_post_tcp", "timer_ms=-1")
    assert res.returncode == 2 and "is not a uint" in res.stderr
    # by name (found in build/<release>/generated) and by path
    assert itmtool("load", "gen_fwd_udp", "priority=5").returncode == 0
    for name in ("gen_post_tcp", "gen_in_icmp", "gen_pre_v6"):
        res = itmtool("load", str(generated[name]))
        assert res.returncode == 0, res.stderr

    assert kit.udp(topo, 10, 5000) == 10
    sent, got = kit.tcp(topo, 200_000, 6001)
    assert sent == got
    _echo_requests(topo.client, topo.router4, 3)  # to the router's ip_in
    assert kit.udp(topo, 7, 6002, v6=True) == 7

    res = itmtool("status", "--json", ns=topo.router)
    assert res.returncode == 0, res.stderr
    apps = {a["label"]: a for a in json.loads(res.stdout)["apps"]}
    assert set(apps) == set(generated)
    for name, app in apps.items():
        assert app["owner"] == name and app["type"] == "kernel" and app["enabled"]
    udp = apps["gen_fwd_udp"]
    assert (udp["hook"], udp["priority"]) == ("ip_forward", 5)
    assert udp["stats"]["matched"] == 10 and udp["stats"]["classified"] == 10
    assert udp["stats"]["accept"] == 10
    assert apps["gen_post_tcp"]["hook"] == "post_routing"
    assert apps["gen_post_tcp"]["stats"]["classified"] > 0
    assert apps["gen_in_icmp"]["stats"]["classified"] >= 1
    assert apps["gen_pre_v6"]["stats"]["classified"] >= 7
    assert Path("/sys/module/gen_fwd_udp/parameters/packets").read_text().strip() == "10"
    table = itmtool("status", ns=topo.router)
    assert all(name in table.stdout for name in generated)

    # itm_mod stays while applications are registered; --all takes them out first
    res = itmtool("unload", "itm_mod")
    assert res.returncode == 1
    assert "gen_fwd_udp (kernel, module gen_fwd_udp, at ip_forward)" in res.stderr
    res = itmtool("unload", "--all", "itm_mod", "--json")
    assert res.returncode == 0, res.stderr
    removed = json.loads(res.stdout)["unloaded"]
    assert removed[-1] == "itm_mod" and set(removed[:-1]) == set(generated)
    # and it says whose applications went with them, each once
    gone = json.loads(res.stdout)["unregistered"]
    assert sorted(a["owner"] for a in gone) == sorted(generated), gone
    assert not any(kit.loaded(n) for n in [*generated, "itm_mod"])
