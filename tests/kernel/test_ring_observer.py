"""An observer of every packet on the nfqueue backend, on each kernel of the matrix:
its copies come from a BPF ring where the kernel has BPF netfilter links (Debian's
6.12), and from NFLOG, with the reason logged, where it has not (6.1).

::

    [client] c0 ---- r0 [router: the observer, nfqueue backend] r1 ---- s0 [server]
"""

from __future__ import annotations

import json
import platform
import signal

import pytest

from tests.kernel import kit
from tests.kernel.kit import Topology
from tests.support.netns_script import netns_script

APP = """
import json, logging, signal, sys
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop

logging.basicConfig(level=logging.INFO, format="%(message)s")
out = Path(sys.argv[1])
seen = []
ready = []

def class_func(where, pkt):
    if pkt.proto == 17 and pkt.dport == 5300:
        seen.append(pkt.length)
    return 1

def tick():
    if not ready:
        (out / "ready").touch()
        ready.append(1)

loop = ItmLoop("nfqueue")
signal.signal(signal.SIGTERM, lambda *_: loop.stop())
loop.register_hook("ip_forward", ItmInfo("all", Interest(family=4), class_func=class_func))
loop.register_timer(tick, 0.05)
loop.run()
print(json.dumps({"seen": seen, "backend": loop.counters()["backend"]}), flush=True)
"""


@pytest.fixture(autouse=True)
def stock_modules(queue_stock_modules: None) -> None:
    """veth, nfnetlink_queue and nfnetlink_log, loaded by path (conftest)."""


def _debian_612() -> bool:
    """Debian's 6.12 (not our UML or debug builds), which has BPF netfilter links."""
    rel = platform.release()
    return rel.startswith("6.12.") and rel.endswith("-amd64")


def test_an_observer_of_every_packet_gets_each_copy_ring_or_nflog(topo: Topology) -> None:
    with netns_script(topo.router, APP, prefix="itm-ring-") as (proc, out):
        assert kit.wait_until(lambda: (out / "ready").exists() or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.communicate()
        assert kit.udp(topo, 20, 5300, size=300) == 20
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["seen"] == [328] * 20, res
    ring = res["backend"]["ring_copies"]
    assert res["backend"]["ring_lost"] == 0, res  # a 4 MiB ring, 20 copies
    if _debian_612():
        assert ring >= 20, (res, err)
    if ring == 0:
        assert "BPF ring copies are not available here" in err, err
    else:
        assert "not available" not in err, err
