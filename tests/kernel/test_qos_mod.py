"""qos_mod on real TCP between namespaces: the paper's size-aware marking.

::

    [client] c0 ---- r0 [router: itm_mod + qos_mod at post-routing] r1 ---- s0 [server]
      capture c0: what the client sends, what reaches it        capture s0: the same

Every test turns offloads off on the veths (buffers are wire packets), so the
n-th packet of a direction-flow is the n-th packet the capture shows, and
checks every packet against the rule of docs/qos_mod.md: packets
1..threshold and every FIN get the Minimize-Delay bit 0x10 (packet 1 only with
mark_first, the default; with mark_first=0 it goes as sent and only enters the
flow in the table), later ones lose it;
every other TOS bit (precedence, ECN) stays as the sender set it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel import kit
from tests.kernel import qos_kit as q
from tests.kernel.kit import Topology

#: data segments per transfer: below, at, just above and well above 20
SIZES = (5, 20, 21, 60)
#: precedence 1, Minimize-Delay and Maximize-Throughput set by the client
CLIENT_TOS = 0x38
#: one packet as its sender sent it and as the other end received it
Pair = tuple[q.Pkt, q.Pkt]


@pytest.fixture(autouse=True)
def one_cpu() -> Iterator[None]:
    """Run the test (its threads and so the softirqs its packets cause) on CPU 0.

    veth hands packets to the backlog of the CPU that sends them: a sender that
    moves between CPUs, or an ACK sent from a softirq on the other CPU, would
    reorder a flow before the router counts it, and "the n-th packet" would
    no longer be the same packet at both ends.
    """
    with kit.on_one_cpu():
        yield


def _prepare(t: Topology) -> None:
    q.offloads_off(t)
    for ns in (t.client, t.server):
        # ECN negotiated: the data packets carry ECT(0), which must survive
        q.sysctl(ns, "net.ipv4.tcp_ecn=1")


def _check_direction(
    sent: list[q.Pkt], recv: list[q.Pkt], threshold: int, *, first_as_sent: bool = False
) -> list[bool]:
    """Check one direction-flow packet by packet; return which were marked short."""
    assert sent and [p.shape for p in sent] == [p.shape for p in recv], (
        "the router changed the packet sequence",
        [p.shape for p in sent],
        [p.shape for p in recv],
    )
    marks = []
    for i, (a, b) in enumerate(zip(sent, recv, strict=False), start=1):
        want = q.expected_tos(a.tos, i, a.fin, threshold, first_as_sent=first_as_sent)
        assert b.tos == want, f"packet {i} (flags {a.flags:#x}): sent {a.tos:#x} got {b.tos:#x}"
        assert b.ip_ok, f"packet {i}: bad IP header checksum"
        assert b.tcp_ok, f"packet {i}: bad TCP checksum"
        marks.append(bool(b.tos & q.LOWDELAY))
    return marks


def _transfers(
    t: Topology,
    sizes: tuple[int, ...],
    threshold: int,
    *,
    v6: bool = False,
    port0: int = 5001,
    first_as_sent: bool = False,
) -> dict[tuple[int, str], list[Pair]]:
    """Run one transfer per size; check both directions; return the received packets."""
    out: dict[tuple[int, str], list[Pair]] = {}
    with q.captures(t) as (cc, sc):
        ports = []
        for k, segs in enumerate(sizes):
            cport, sent, got = q.tcp(t, segs * q.MSS, port0 + k, tos=CLIENT_TOS, v6=v6)
            assert got == sent, f"{segs} segments: payload damaged or incomplete"
            ports.append((segs, cport, port0 + k))
        q.settle((cc, sc))
        assert cc.drops() == 0 and sc.drops() == 0
        for segs, cport, sport in ports:
            c2s_sent = q.flow(cc.pkts, cport, sport, True)
            c2s_recv = q.flow(sc.pkts, cport, sport, False)
            s2c_sent = q.flow(sc.pkts, sport, cport, True)
            s2c_recv = q.flow(cc.pkts, sport, cport, False)
            assert len(c2s_sent) >= segs + 2
            _check_direction(c2s_sent, c2s_recv, threshold, first_as_sent=first_as_sent)
            _check_direction(s2c_sent, s2c_recv, threshold, first_as_sent=first_as_sent)
            out[(segs, "c2s")] = list(zip(c2s_sent, c2s_recv, strict=False))
            out[(segs, "s2c")] = list(zip(s2c_sent, s2c_recv, strict=False))
    return out


def _classified(result: dict[tuple[int, str], list[Pair]], *, first: bool = True) -> int:
    """Packets that went through process_func: every one (`first`, mark_first's
    default), else all but the first of each flow."""
    return sum(len(v) - (0 if first else 1) for v in result.values())


def test_qos_marks_flows_by_size(topo: Topology) -> None:
    _prepare(topo)
    with q.qos_loaded():
        kit.itm_attach(topo.router)
        assert q.param("threshold") == "20" and q.param("mode") == "tos"
        res = _transfers(topo, SIZES, 20)
        st = q.stats()
        # the long flows really went long, and the client's ECN bits were there
        assert any(not (b.tos & q.LOWDELAY) for _, b in res[(60, "c2s")])
        assert any(bool(a.tos & 0x03) for a, _ in res[(60, "c2s")])
        assert st["created"] == 2 * len(SIZES)
        assert st["short_packets"] + st["long_packets"] == _classified(res)
        long_pkts = sum(
            1 for v in res.values() for i, (a, _) in enumerate(v, start=1) if i > 20 and not a.fin
        )
        assert st["long_packets"] == long_pkts
        assert st["table_full"] == 0
        # itmtool status shows the same counters beside the application
        shown_status = kit.itmtool("status", "--json")
        assert shown_status.returncode == 0, shown_status.stderr
        doc = json.loads(shown_status.stdout)
        assert [a["label"] for a in doc["apps"]] == ["qos_mod"]
        shown = doc["module_stats"]["qos_mod"]
        assert set(shown) == set(st)  # flows and collected move with the collector
        for key in ("created", "short_packets", "long_packets", "table_full"):
            assert shown[key] == st[key]
        assert f"created {st['created']}  flows " in kit.itmtool("status").stdout.splitlines()[-1]


def _connbytes_rules(ns: str, threshold: int) -> None:
    kit.sh("modprobe", "nf_conntrack")
    q.sysctl(ns, "net.netfilter.nf_conntrack_acct=1")
    rules = []
    for cdir, ctdir in (("original", "ORIGINAL"), ("reply", "REPLY")):
        for rng, tos in ((f"0:{threshold}", "0x10/0x10"), (f"{threshold + 1}:", "0x00/0x10")):
            rules.append(
                f"-p tcp -m conntrack --ctdir {ctdir} -m connbytes --connbytes {rng} "
                f"--connbytes-dir {cdir} --connbytes-mode packets -j TOS --set-tos {tos}"
            )
    rules.append("-p tcp --tcp-flags FIN FIN -j TOS --set-tos 0x10/0x10")
    for r in rules:
        kit.sh(
            "ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-A", "POSTROUTING", *r.split()
        )


def test_qos_agrees_with_connbytes(topo: Topology) -> None:
    """The iptables connbytes + TOS rule set, a second implementation of the rule."""
    _prepare(topo)
    _connbytes_rules(topo.router, 20)
    ipt = _transfers(topo, SIZES, 20, port0=5101, first_as_sent=False)
    kit.sh("ip", "netns", "exec", topo.router, "iptables", "-t", "mangle", "-F")
    with q.qos_loaded():
        kit.itm_attach(topo.router)
        # mark_first, the default: the first packet is marked too, which
        # makes qos_mod and connbytes the same rule, packet for packet
        assert q.param("mark_first") == "Y"
        first = _transfers(topo, SIZES, 20, port0=5201)
        # mark_first=0 (switched at run time), the figures' literal class 0:
        # the first packet goes as sent
        q.set_param("mark_first", 0)
        qos = _transfers(topo, SIZES, 20, port0=5251, first_as_sent=True)
        st = q.stats()
        assert st["short_packets"] + st["long_packets"] == _classified(first) + _classified(
            qos, first=False
        )
    compared, differ = _against(qos, ipt, "qos_mod", first_differs=True)
    assert differ == 2 * len(SIZES) and compared > 100
    _against(first, ipt, "mark_first", first_differs=False)


def _against(
    run: dict[tuple[int, str], list[Pair]],
    ipt: dict[tuple[int, str], list[Pair]],
    label: str,
    *,
    first_differs: bool,
) -> tuple[int, int]:
    """Compare `run`'s marks with the connbytes run's, packet by packet where both
    runs sent the same kind of packet; return (compared, first packets that differ)."""
    compared = differ = 0
    for key, pkts in run.items():
        for i, ((a1, b1), (a2, b2)) in enumerate(zip(pkts, ipt[key], strict=False), start=1):
            if a1.flags != a2.flags:
                continue  # the two runs' ACK patterns may differ
            compared += 1
            m1, m2 = b1.tos & q.LOWDELAY, b2.tos & q.LOWDELAY
            if i == 1 and first_differs:
                # the one difference: connbytes counts the SYN, qos_mod only enters it
                assert b1.tos == a1.tos and m2
                differ += 1
            else:
                assert m1 == m2, f"{key} packet {i}: {label} {b1.tos:#x}, connbytes {b2.tos:#x}"
    return compared, differ


def test_qos_threshold_change_at_run_time(topo: Topology) -> None:
    _prepare(topo)
    with q.qos_loaded():
        kit.itm_attach(topo.router)
        _transfers(topo, (30,), 20, port0=5301)
        q.set_param("threshold", 8)
        assert q.param("threshold") == "8"
        res = _transfers(topo, (30,), 8, port0=5302)
        assert not (res[(30, "c2s")][8][1].tos & q.LOWDELAY)  # the 9th packet
        # closed flows (FIN) leave after 1 s, long before idle_timeout (30 s)
        assert kit.wait_until(lambda: q.stats()["flows"] == 0, 5)
        assert q.stats()["collected"] == 4
        with pytest.raises(OSError):
            q.set_param("max_flows", 5)  # read-only after load


def test_qos_ipv6_traffic_class(topo: Topology) -> None:
    _prepare(topo)
    with q.qos_loaded():
        kit.itm_attach(topo.router)
        res = _transfers(topo, (5, 40), 20, v6=True, port0=5401)
        assert all(b.v6 for v in res.values() for _, b in v)
        assert any(not (b.tos & q.LOWDELAY) for _, b in res[(40, "c2s")])
        assert q.stats()["created"] == 4


def test_qos_dscp_mode(topo: Topology) -> None:
    _prepare(topo)
    with q.qos_loaded("mode=dscp", "short_dscp=46", "long_dscp=8"):
        kit.itm_attach(topo.router)
        assert q.param("mode") == "dscp"
        for port, short in ((5501, 46), (5502, 34)):
            if short == 34:
                q.set_param("short_dscp", 34)
            with q.captures(topo) as (cc, sc):
                cport, sent, got = q.tcp(topo, 30 * q.MSS, port, tos=CLIENT_TOS)
                assert got == sent
                q.settle((cc, sc))
                a_list = q.flow(cc.pkts, cport, port, True)
                b_list = q.flow(sc.pkts, cport, port, False)
            assert [a.shape for a in a_list] == [b.shape for b in b_list]
            for i, (a, b) in enumerate(zip(a_list, b_list, strict=False), start=1):
                ecn = a.tos & 0x03
                # packets 1..20 (mark_first) and the FIN short, the rest long
                want = (short if i <= 20 or a.fin else 8) << 2 | ecn
                assert b.tos == want, f"packet {i}: sent {a.tos:#x} got {b.tos:#x}"
                assert b.ip_ok
        with pytest.raises(OSError):
            q.set_param("short_dscp", 64)


def _slab(cache: str) -> tuple[int, int] | None:
    """(active objects, objects per slab) of a slab cache."""
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        f = line.split()
        if f[0] == cache:
            return int(f[1]), int(f[4])
    return None


FLOWS = 100_000
MAX_FLOWS = 10_000


def _ipt(ns: str, *args: str) -> str:
    return kit.sh("ip", "netns", "exec", ns, "iptables", *args)


def test_qos_syn_flood_bounded_table(topo: Topology) -> None:
    """100,000 new flows: the table stays bounded, nothing is dropped, idle flows go."""
    q.offloads_off(topo)
    # the server counts the flood's SYNs and drops them (no RSTs: every flow
    # entry is a SYN flow that stays until idle_timeout)
    _ipt(topo.server, "-A", "INPUT", "-p", "tcp", "--dport", "20000:20009", "-j", "DROP")
    old_backlog = kit.sh("sysctl", "-n", "net.core.netdev_max_backlog").strip()
    kit.sh("sysctl", "-qw", "net.core.netdev_max_backlog=200000")
    try:
        # idle flows stay during the flood (so the table fills), then idle_timeout
        # is lowered at run time and they are collected
        with q.qos_loaded(f"max_flows={MAX_FLOWS}", "idle_timeout=600"):
            kit.itm_attach(topo.router)
            flood = q.SynFlood(topo)
            peak_flows, peak_slab, per_slab = 0, 0, 0
            t0 = time.monotonic()
            for _ in range(FLOWS // 10_000):
                flood.send(10_000)
                peak_flows = max(peak_flows, q.stats()["flows"])
                slab = _slab("qos_flow")
                assert slab
                peak_slab, per_slab = max(peak_slab, slab[0]), slab[1]
            elapsed = time.monotonic() - t0
            st = q.stats()
            counted = _ipt(topo.server, "-L", "INPUT", "-vnx")
            print(
                f"{FLOWS} SYNs in {elapsed:.1f}s; peak flows {peak_flows}, "
                f"peak qos_flow objects {peak_slab}, stats {st}"
            )
            # every SYN reached the server: nothing dropped on the way
            assert f" {FLOWS} " in counted.splitlines()[2], counted
            assert peak_flows == MAX_FLOWS and st["flows"] == MAX_FLOWS
            assert peak_slab <= MAX_FLOWS + per_slab  # objects of a partly used slab
            assert st["created"] == MAX_FLOWS
            assert st["table_full"] == FLOWS - MAX_FLOWS
            # with the table full, a new connection passes unmarked and intact
            with q.captures(topo) as (cc, sc):
                cport, sent, got = q.tcp(topo, 30 * q.MSS, 5601, tos=CLIENT_TOS)
                assert got == sent
                q.settle((cc, sc))
                pairs = list(
                    zip(
                        q.flow(cc.pkts, cport, 5601, True),
                        q.flow(sc.pkts, cport, 5601, False),
                        strict=True,
                    )
                )
            assert len(pairs) > 30 and all(b.tos == a.tos for a, b in pairs)
            assert q.stats()["table_full"] > FLOWS - MAX_FLOWS
            # idle flows are collected
            q.set_param("idle_timeout", 2)
            assert kit.wait_until(lambda: q.stats()["flows"] == 0, 10)
            assert q.stats()["collected"] == MAX_FLOWS
            # unload with flows live
            flood.send(5_000)
            assert q.stats()["flows"] > 0
            flood.close()
        assert not kit.loaded("qos_mod")
        assert _slab("qos_flow") is None
    finally:
        kit.sh("sysctl", "-qw", f"net.core.netdev_max_backlog={old_backlog}")


def test_qos_namespace_exit_frees_its_flows(topo: Topology) -> None:
    """Flows of a namespace that goes away leave with it, not after idle_timeout."""
    _ipt(topo.server, "-A", "INPUT", "-p", "tcp", "--dport", "20000", "-j", "DROP")
    with q.qos_loaded("idle_timeout=600"):
        kit.itm_attach(topo.router)
        flood = q.SynFlood(topo)
        flood.send(200)
        flood.close()
        assert q.stats()["flows"] == 200
        kit.sh("ip", "netns", "del", topo.router)
        assert kit.wait_until(lambda: q.stats()["flows"] == 0, 30)
        assert q.stats()["collected"] == 0  # removed by the namespace's exit


def _gso_class_short(first: int, segs: int, fin: bool, threshold: int) -> bool:
    """The class docs/qos_mod.md gives a buffer of wire packets first..first+segs-1:
    SHORT when at least half of them are SHORT by the packet rule (n <= threshold,
    or the FIN, which is the last segment)."""
    last = first + segs - 1
    short = max(0, min(last, threshold) - first + 1) + (1 if fin and last > threshold else 0)
    return 2 * short >= segs


def test_qos_gso_counts_wire_packets(topo: Topology) -> None:
    """Offloads on: a GSO buffer of n segments counts n, so the threshold is in wire
    packets, and a buffer is marked by the majority of its wire packets: a bulk
    buffer whose last segment carries FIN is not marked SHORT."""
    with q.qos_loaded():
        kit.itm_attach(topo.router)
        with q.captures(topo) as (cc, sc):
            flows = []
            for k in range(3):
                cport, sent, got = q.tcp(topo, 60 * q.MSS, 5701 + k)
                assert got == sent
                flows.append((cport, 5701 + k))
            q.settle((cc, sc))
            c2s = [q.flow(sc.pkts, cport, sport, False) for cport, sport in flows]
        assert any(p.plen > q.MSS for f in c2s for p in f), "no GSO buffer reached the server"
        wire_total = 0
        for pkts in c2s:
            index, wire = 0, 0
            for p in pkts:
                segs = max(1, -(-p.plen // q.MSS))
                index += 1
                first = wire + 1  # wire index of the buffer's first segment
                wire += segs
                short = bool(p.tos & q.LOWDELAY)
                want = _gso_class_short(first, segs, p.fin, 20)
                assert short == want, f"buffer {index} ({segs} segments) from wire packet {first}"
            assert index < wire
            wire_total += wire
        st = q.stats()
        # the server's direction counts too: compare only what this direction tells
        assert st["short_packets"] + st["long_packets"] >= wire_total
