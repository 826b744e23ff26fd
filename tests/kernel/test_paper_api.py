"""The paper's API as a reader of the paper writes it (issue 17), on real TCP.

::

    [client] c0 ---- r0 [router: itm_mod + the paper-shaped qos at post-routing] r1 ---- s0 [server]
      capture c0                                                       capture s0

kernel/paper_qos is Figures 8-11 in C: Figure 8's registration with only
class/log/process set, `where`-first callbacks, `return NF_ACCEPT;`, the
paper's hook name IP_POST_ROUTE. tests/support/paper_app.py is the same
in Python with libitm's paper names, here on the kernel backend (itm_queue).
Both must mark every packet of real TCP transfers as the figures' rule
says: packet 1 of a direction as sent, packets 2..22 (THRESHOLD 20: pkt_cnt
starts at 0 and is counted after classification) and every FIN with the
Minimize-Delay bit, later ones without it, the other TOS bits kept.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from itmlab import kmods
from tests.kernel import kit
from tests.kernel import qos_kit as q
from tests.kernel.kit import Topology
from tests.support import forked
from tests.support.paper_app import THRESHOLD, figures_tos

ROOT = Path(__file__).resolve().parents[2]
#: data segments per transfer: below, at the figures' last SHORT packet, after it, well after
SIZES = (5, 20, 21, 50)
#: precedence 1, Minimize-Delay and Maximize-Throughput set by the client
CLIENT_TOS = 0x38
#: stock modules these tests need (veth for the topology, the queue for the Python app)
STOCK = (
    "kernel/net/netfilter/nfnetlink",
    "kernel/net/netfilter/nfnetlink_queue",
    "kernel/drivers/net/veth",
)


@pytest.fixture(autouse=True)
def one_cpu() -> Iterator[None]:
    """Keep the test's sends (and the softirqs they cause) on one CPU: no reordering
    before the router counts, so the n-th packet is the same at both ends."""
    with kit.on_one_cpu():
        yield


@pytest.fixture(autouse=True)
def stock_modules() -> None:
    """Load veth and nfnetlink_queue by path (the guest's modprobe may not read the
    host's index; see test_itm_queue.py)."""
    kmods.insmod_stock(*STOCK)


def _transfers_marked_as_the_figures_say(t: Topology) -> int:
    """Run the transfers; check every packet of both directions; the packets marked."""
    q.offloads_off(t)
    marked = 0
    with q.captures(t) as (cc, sc):
        ports = []
        for k, segs in enumerate(SIZES):
            cport, sent, got = q.tcp(t, segs * q.MSS, 5101 + k, tos=CLIENT_TOS)
            assert got == sent, f"{segs} segments: payload damaged or incomplete"
            ports.append((segs, cport, 5101 + k))
        q.settle((cc, sc))
        assert cc.drops() == 0 and sc.drops() == 0
        for segs, cport, sport in ports:
            for a_port, b_port, out_cap, in_cap in ((cport, sport, cc, sc), (sport, cport, sc, cc)):
                sent_pkts = q.flow(out_cap.pkts, a_port, b_port, True)
                recv_pkts = q.flow(in_cap.pkts, a_port, b_port, False)
                assert sent_pkts and [p.shape for p in sent_pkts] == [p.shape for p in recv_pkts], (
                    "the router changed the packet sequence"
                )
                for n, (a, b) in enumerate(zip(sent_pkts, recv_pkts, strict=True), start=1):
                    want = figures_tos(n, a.fin, a.tos)
                    assert b.tos == want, (
                        f"{segs} segments, {a_port}->{b_port} packet {n} (flags {a.flags:#x}):"
                        f" sent {a.tos:#x}, got {b.tos:#x}, the figures say {want:#x}"
                    )
                    assert b.ip_ok and b.tcp_ok, f"packet {n}: bad checksum"
                    marked += bool(b.tos & q.LOWDELAY)
        # the rule bit both ways: the longest client flow has SHORT and LONG packets
        longest = q.flow(sc.pkts, ports[-1][1], ports[-1][2], False)
        assert len(longest) > THRESHOLD + 3
        assert [bool(p.tos & q.LOWDELAY) for p in longest[1 : THRESHOLD + 2]] == [True] * (
            THRESHOLD + 1
        )
        assert not any(p.tos & q.LOWDELAY for p in longest[THRESHOLD + 2 : -3] if not p.fin)
    return marked


def test_paper_shaped_module_marks_tcp_as_the_figures_say(topo: Topology) -> None:
    kit.insmod("itm_mod")
    try:
        kit.insmod("paper_qos")
        kit.itm_attach(topo.router)
        marked = _transfers_marked_as_the_figures_say(topo)
        assert marked > 0
        out = kit.itmtool("status", "--json", ns=topo.router)
        assert '"paper_qos"' in out.stdout, out.stdout + out.stderr
    finally:
        kit.rmmod("paper_qos")
        kit.rmmod("itm_mod")


def test_paper_shaped_python_app_on_the_kernel_backend(topo: Topology) -> None:
    kit.insmod("itm_mod")
    tmp = Path(tempfile.mkdtemp(prefix="itm-paper-"))
    ready, events = tmp / "ready", tmp / "events"
    proc = None
    try:
        kit.insmod("itm_queue")
        kit.itm_attach(topo.router)
        cmd = [sys.executable, "-m", "tests.support.paper_app", "--backend", "kernel"]
        cmd += ["--ready", str(ready), "--events", str(events)]
        # a fork of this process (tests/support/forked.py): a new Python takes seconds here
        target, argv = forked.python_command(cmd)
        proc = forked.start(target, argv, ns=topo.router, cwd=str(ROOT), stdout=None)
        if not kit.wait_until(lambda: ready.exists() or proc.poll() is not None, 300):
            proc.kill()
        if not ready.exists():
            _, err = proc.communicate(timeout=10)
            raise AssertionError("the application did not start:\n" + err)
        assert _transfers_marked_as_the_figures_say(topo) > 0
        proc.send_signal(signal.SIGTERM)
        _, text = proc.communicate(timeout=60)
        assert proc.returncode == 0, text
        assert "'errors': 0" in text and "'dropped': 0" in text, text
        lines = dict(line.split(" ", 1) for line in events.read_text().splitlines())
        assert lines["where"] == "POST_ROUTING", "every callback got where first"
        assert lines["ticks"].split()[0] != "0" and "'paper'" in lines["ticks"], lines
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stderr:
            proc.stderr.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
        kit.rmmod("itm_queue")
        kit.rmmod("itm_mod")


def test_qos_mod_with_figures_counts_as_the_figures(topo: Topology) -> None:
    """qos_mod figures=1: the figures' counting is one parameter away (mark_first ignored)."""
    with q.qos_loaded("figures=1", "mark_first=1", f"threshold={THRESHOLD}"):
        kit.itm_attach(topo.router)
        assert q.param("figures") == "Y"
        assert _transfers_marked_as_the_figures_say(topo) > 0
