"""sch_rio, the RIO core qdisc, in a real kernel: order, RED probabilities, counters, limits.

::

    [itmrio<pid>a] a0 ================ b0 [itmrio<pid>b]
      10.79.0.1     root: tbf (1:)       10.79.0.2
      fd79::1        child 1:1: rio      fd79::2 (one socket, both families)

The TBF parent is the "slow link": at 10 bit/s it lets the first packet out
and holds the rest in rio, so the tests decide when the queue drains (by
changing the TBF's rate), and no test depends on timing.  ARP and IPv6 ND are
static, so only the test's own UDP packets cross a0.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from libitm.control import rio
from tests.kernel import kit, rio_model

PAYLOAD = 1000
SO_SNDBUFFORCE = 32  # <asm-generic/socket.h>; root may exceed wmem_max
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
ECT0, CE = 0x02, 0x03


@dataclass
class Link:
    """The two namespaces and what the tests need to know about them."""

    a: str
    b: str
    ipv6: bool


def _setup(name: str, ipv6: bool) -> Link:
    a, b = f"{name}a", f"{name}b"
    kit.sh("ip", "netns", "add", a)
    kit.sh("ip", "netns", "add", b)
    kit.sh("ip", "-n", a, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", b)
    for ns, dev in ((a, "a0"), (b, "b0")):
        if not ipv6:
            kit.sh(
                "ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"
            )
    kit.sh("ip", "-n", a, "addr", "add", "10.79.0.1/24", "dev", "a0")
    kit.sh("ip", "-n", b, "addr", "add", "10.79.0.2/24", "dev", "b0")
    if ipv6:
        kit.sh("ip", "-n", a, "addr", "add", "fd79::1/64", "dev", "a0", "nodad")
        kit.sh("ip", "-n", b, "addr", "add", "fd79::2/64", "dev", "b0", "nodad")
    for ns, dev in ((a, "a0"), (b, "b0"), (a, "lo"), (b, "lo")):
        kit.sh("ip", "-n", ns, "link", "set", dev, "up")
    # static neighbours both ways: no ARP or ND crosses a0 (b's ICMP errors included)
    for ns, dev, peer_ns, peer_dev, v4, v6 in (
        (a, "a0", b, "b0", "10.79.0.2", "fd79::2"),
        (b, "b0", a, "a0", "10.79.0.1", "fd79::1"),
    ):
        mac = json.loads(kit.sh("ip", "-n", peer_ns, "-j", "link", "show", peer_dev))[0]["address"]
        kit.sh("ip", "-n", ns, "neigh", "replace", v4, "lladdr", mac, "dev", dev)
        if ipv6:
            kit.sh("ip", "-n", ns, "neigh", "replace", v6, "lladdr", mac, "dev", dev)
    return Link(a, b, ipv6)


@contextlib.contextmanager
def link(ipv6: bool = False) -> Iterator[Link]:
    """sch_rio loaded and two fresh namespaces; everything removed afterwards."""
    name = f"itmrio{os.getpid()}"
    kit.insmod("sch_rio")
    try:
        lk = _setup(name, ipv6)
        try:
            yield lk
        finally:
            for ns in (lk.a, lk.b):
                kit.sh("ip", "netns", "del", ns, check=False)
    finally:
        for ns in (f"{name}a", f"{name}b"):
            kit.sh("ip", "netns", "del", ns, check=False)
        assert kit.wait_until(lambda: _rmmod("sch_rio"), timeout=30), "sch_rio stayed in use"


def _rmmod(name: str) -> bool:
    """Try to unload; whether it is gone."""
    subprocess.run(["rmmod", name], capture_output=True, check=False)
    return not kit.loaded(name)


def stall(lk: Link) -> None:
    """TBF at 10 bit/s as a0's root: one packet leaves, the rest wait in its child."""
    kit.sh(
        "ip", "netns", "exec", lk.a, "tc", "qdisc", "add", "dev", "a0", "root", "handle", "1:",
        "tbf", "rate", "10bit", "burst", "1600", "limit", "100000",
    )  # fmt: skip


def release(lk: Link, tos: int = 0) -> None:
    """Open the TBF, and kick it: the child drains in its own order.

    A changed TBF dequeues again only at its next enqueue (its watchdog is set
    for the old rate), so one more packet goes out, to port 9001: the receiver
    on 9000 does not see it; the qdisc counts it.
    """
    kit.sh(
        "ip", "netns", "exec", lk.a, "tc", "qdisc", "change", "dev", "a0", "root", "handle",
        "1:", "tbf", "rate", "1gbit", "burst", "100000", "limit", "100000",
    )  # fmt: skip
    send(lk, [(4, tos)], port=9001)


def set_rio(lk: Link, cfg: rio.RioConfig, **clear: bool) -> None:
    """rio as the TBF's child, through libitm's rtnetlink client (`clear`: what to clear)."""
    with kit.netns(lk.a), rio.RioControl() as ctl:
        ctl.set("a0", cfg, parent="1:1", handle="10:", **clear)


def status(lk: Link) -> rio.RioStatus:
    """The one rio qdisc of a0."""
    with kit.netns(lk.a), rio.RioControl() as ctl:
        (st,) = ctl.show("a0")
    return st


@contextlib.contextmanager
def receiver(lk: Link) -> Iterator[socket.socket]:
    """A UDP socket in b on port 9000 for both families, TOS reported."""
    with kit.netns(lk.b):
        s = socket.socket(socket.AF_INET6 if lk.ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        if lk.ipv6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
            s.bind(("::", 9000))
        else:
            s.bind(("0.0.0.0", 9000))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.settimeout(10)
        yield s


def send(lk: Link, marks: list[tuple[int, int]], port: int = 9000) -> None:
    """One UDP packet per (family, tos), sequence-numbered, from a to b in this order."""
    with kit.netns(lk.a):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) if lk.ipv6 else None
    try:
        for s in filter(None, (s4, s6)):
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)
        tos4 = tos6 = -1
        for seq, (family, tos) in enumerate(marks):
            data = struct.pack("!I", seq) + bytes(PAYLOAD - 4)
            if family == 6:
                assert s6 is not None
                if tos != tos6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
                    tos6 = tos
                s6.sendto(data, ("fd79::2", port))
            else:
                if tos != tos4:
                    s4.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
                    tos4 = tos
                s4.sendto(data, ("10.79.0.2", port))
    finally:
        for s in filter(None, (s4, s6)):
            s.close()


def receive(sock: socket.socket, count: int) -> list[tuple[int, int]]:
    """(sequence number, TOS) of `count` packets in arrival order."""
    got = []
    for _ in range(count):
        data, anc, _flags, _addr = sock.recvmsg(PAYLOAD + 64, 64)
        tos = next((c[2][0] for c in anc if c[1] in (socket.IP_TOS, socket.IPV6_TCLASS)), -1)
        got.append((struct.unpack("!I", data[:4])[0], tos))
    return got


def test_fifo_order_is_kept_whatever_the_mark() -> None:
    """IPv4 and IPv6, marked and unmarked, queued together: they leave in arrival order."""
    marks = [(4 if i % 4 < 2 else 6, 0x10 if i % 2 else 0) for i in range(80)]
    with link(ipv6=True) as lk, receiver(lk) as rx:
        stall(lk)
        set_rio(lk, rio.RioConfig(in_profile=rio.RedProfile(500, 600, 0.1),
                                  out_profile=rio.RedProfile(500, 600, 0.1)))  # fmt: skip
        send(lk, marks)
        held = status(lk)
        release(lk)
        got = receive(rx, len(marks))
        after = status(lk)
        shown = kit.sh("ip", "netns", "exec", lk.a, "tc", "-s", "qdisc", "show", "dev", "a0")
    assert [seq for seq, _ in got] == list(range(len(marks)))
    assert [tos & ~3 for _, tos in got] == [tos for _, tos in marks]
    # each family's "in" packets (TOS 0x10) were counted as "in", the rest as "out"
    # (a0's own IPv6 multicast listener reports are "out" packets too: at least 40)
    assert held.xstats["in_enqueued"] == 40 and held.xstats["in_qlen"] == 40
    assert held.xstats["out_enqueued"] >= 40
    enqueued = after.xstats["in_enqueued"] + after.xstats["out_enqueued"]
    assert after.xstats["qlen"] == 0 and after.counters["packets"] == enqueued
    assert after.xstats["in_early"] + after.xstats["out_early"] == 0
    assert "qdisc rio 10: parent 1:1" in shown
    assert "Sent 8" in shown.split("qdisc rio", 1)[1]  # 80 packets of ~1 kB


def test_dscp_parameter_chooses_what_is_in() -> None:
    """With --dscp 18 (qos_mod's dscp mode), AF21 packets are "in", TOS 0x10 is not."""
    marks = [(4, 18 << 2)] * 5 + [(4, 0x10)] * 7 + [(4, 0)] * 3
    with link() as lk, receiver(lk):
        stall(lk)
        set_rio(lk, rio.RioConfig(dscp=18))
        send(lk, marks)
        st = status(lk)
    assert st.config.dscp == 18
    assert (st.xstats["in_enqueued"], st.xstats["out_enqueued"]) == (5, 10)


def test_itmtool_rio_set_takes_back_the_dscp_and_the_idle_table() -> None:
    """`--no-dscp` and `--no-bandwidth` in a change: "in" is TOS 0x10 again, the table
    is gone (scell_log back to 10), the queue and the counters stay; each with its
    positive twin in one call is refused before anything is sent."""
    marks = [(4, 18 << 2)] * 5 + [(4, 0x10)] * 7 + [(4, 0)] * 3
    with link() as lk:
        stall(lk)

        def rio_set(*args: str) -> rio.RioStatus:
            out = kit.itmtool("rio", "set", "a0", "--parent", "1:1", "--handle", "10:", *args,
                              ns=lk.a)  # fmt: skip
            assert out.returncode == 0, out.stderr
            return status(lk)

        marked = rio_set("--dscp", "18", "--bandwidth", "10mbit")
        send(lk, marks)  # the first (AF21) leaves, 14 wait
        no_dscp = rio_set("--no-dscp")
        plain = rio_set("--no-bandwidth")
        send(lk, marks)
        after = status(lk)
        shown = kit.itmtool("rio", "show", "a0", ns=lk.a)
        both = kit.itmtool("rio", "set", "a0", "--parent", "1:1", "--dscp", "3", "--no-dscp",
                           ns=lk.a)  # fmt: skip
        unchanged = status(lk)
    assert marked.config.dscp == 18 and marked.config.stab is not None
    cell, table = rio.idle_damping(9, 1000, 10_000_000)
    assert (marked.config.scell_log, marked.config.stab) == (cell, table)
    # --no-dscp alone keeps the table; --no-bandwidth alone keeps the DSCP cleared
    assert no_dscp.config.dscp is None and no_dscp.config.stab == table
    assert plain.config.dscp is None and plain.config.stab is None
    assert plain.config.scell_log == 10
    assert plain.xstats["qlen"] == 14  # a change keeps the queue
    # first AF21 "in" (5), then TOS 0x10 "in" (7): the counters run on
    assert (after.xstats["in_enqueued"], after.xstats["out_enqueued"]) == (5 + 7, 10 + 8)
    assert "in=TOS 0x10" in shown.stdout and "idle-table" not in shown.stdout
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr.splitlines()[0]
    assert unchanged.xstats == after.xstats and unchanged.config == after.config


def _qavg_after_idle(lk: Link) -> tuple[int, int]:
    """(the total average after 39 queued packets, the average after 50 ms idle)."""
    send(lk, [(4, 0)] * 40)
    busy = status(lk).xstats["qavg_all"]
    release(lk)
    assert kit.wait_until(lambda: status(lk).xstats["qlen"] == 0, timeout=30)
    time.sleep(0.05)
    send(lk, [(4, 0)])  # the average is brought up to date as it arrives
    return busy, status(lk).xstats["qavg_all"]


def test_a_cleared_idle_table_no_longer_decays_the_average() -> None:
    """A table that shifts by 31 after any idle time empties the average; once it is
    cleared, idle time halves it, as without a table (red.h's own rule)."""
    far = rio.RedProfile(500, 600, 0.1)
    cfg = rio.RioConfig(wlog=1, in_profile=far, out_profile=far, scell_log=10)
    table = bytes([0] + [31] * 255)
    with link() as lk:
        stall(lk)
        set_rio(lk, replace(cfg, stab=table))
        assert status(lk).config.stab == table
        busy, idle = _qavg_after_idle(lk)
    assert busy >= 30 and idle == 0
    with link() as lk:
        stall(lk)
        set_rio(lk, replace(cfg, stab=table))
        set_rio(lk, cfg, clear_stab=True)
        assert status(lk).config.stab is None
        busy, idle = _qavg_after_idle(lk)
    assert busy >= 30 and busy // 2 - 3 <= idle <= busy // 2 + 3


def _trace(n: int) -> list[bool]:
    return [i % 2 == 0 for i in range(n)]


def test_drop_probabilities_follow_red_on_a_synthetic_trace() -> None:
    """Early and forced drops of a stalled queue fall where RED's formula puts them.

    wlog 0 makes each average the queue length the packet sees (the "in" one:
    "in" packets queued); the trace alternates "in" and "out" packets.  A
    simulation of the same arithmetic (tests/kernel/rio_model.py) gives the
    distribution of the counts over ``ROUNDS`` runs; the kernel's counts must
    lie in its central 99.8 %, and the forced drops and acceptances must add up.
    """
    rounds, n = 4, 200
    inp = rio.RedProfile(10, 40, 0.1)
    out = rio.RedProfile(3, 20, 0.3)
    trace = _trace(n)
    totals = dict.fromkeys(rio.XSTATS_FIELDS[:6], 0)
    for _ in range(rounds):
        with link() as lk:
            stall(lk)
            set_rio(lk, rio.RioConfig(wlog=0, in_profile=inp, out_profile=out))
            send(lk, [(4, 0x10 if is_in else 0) for is_in in trace])
            st = status(lk)
        assert sum(st.xstats[k] for k in totals) == n
        assert st.xstats["limit_drops"] == 0
        assert st.counters["packets"] == 1  # only the first packet left
        # RIO's point: "in" packets still get in long after the total passed out's max
        assert st.xstats["in_enqueued"] > out.max
        for k in totals:
            totals[k] += st.xstats[k]

    def model(p: rio.RedProfile) -> rio_model.Profile:
        return rio_model.Profile(p.min, p.max, p.max_p_fixed)

    sims = rio_model.distribution(trace, model(inp), model(out), rounds, samples=400)
    for key in totals:
        lo, hi = rio_model.interval([getattr(s, key) for s in sims], 0.001)
        assert lo <= totals[key] <= hi, f"{key}: kernel {totals[key]}, RED model [{lo}, {hi}]"


def test_a_flood_fills_the_queue_and_the_rest_is_dropped() -> None:
    """Thresholds above the limit: the FIFO holds `limit` packets, the rest are tail drops."""
    with link() as lk:
        stall(lk)
        set_rio(lk, rio.RioConfig(limit=50, in_profile=rio.RedProfile(900, 1000, 0.1),
                                  out_profile=rio.RedProfile(900, 1000, 0.1)))  # fmt: skip
        send(lk, [(4, 0x10 if i % 3 else 0) for i in range(300)])
        st = status(lk)
        shown = kit.sh("ip", "netns", "exec", lk.a, "tc", "-s", "qdisc", "show", "dev", "a0")
    assert st.xstats["qlen"] == 50
    assert st.xstats["in_enqueued"] + st.xstats["out_enqueued"] == 51  # 1 left at once
    assert st.xstats["limit_drops"] == 249 == st.counters["drop"]
    rio_part = shown.split("qdisc rio", 1)[1]
    assert "dropped 249" in rio_part


def test_ecn_capable_packets_are_marked_instead_of_dropped() -> None:
    """--ecn: between the thresholds, an ECT packet gets CE and stays; none is dropped early."""
    marks = [(4, ECT0)] * 60
    with link() as lk, receiver(lk) as rx:
        stall(lk)
        set_rio(lk, rio.RioConfig(wlog=0, ecn=True, out_profile=rio.RedProfile(2, 100, 1.0)))
        send(lk, marks)
        st = status(lk)
        release(lk, ECT0)
        got = receive(rx, len(marks))
    assert st.xstats["out_early"] == 0 and st.xstats["out_enqueued"] == 60
    assert st.xstats["ecn_marked"] > 0
    assert sum(1 for _, tos in got if tos & 3 == CE) == st.xstats["ecn_marked"]


def test_itmtool_status_shows_the_counters_after_traffic() -> None:
    """`itmtool status` (--json and text) shows the qdisc's own and generic counters.

    30 "in" and 30 "out" packets, alternating, into a stalled queue: the "in"
    profile is far away (all 30 in), the "out" one drops against the total
    average (wlog 0: the queue length) from 2 packets, all of them above 10;
    then the queue drains onto the wire.
    """
    marks = [(4, 0x10 if i % 2 == 0 else 0) for i in range(60)]
    with link() as lk:
        stall(lk)
        set_rio(lk, rio.RioConfig(wlog=0, in_profile=rio.RedProfile(100, 200, 0.1),
                                  out_profile=rio.RedProfile(2, 10, 0.5)))  # fmt: skip
        send(lk, marks)
        release(lk)
        assert kit.wait_until(lambda: status(lk).xstats["qlen"] == 0, timeout=30)
        as_json = kit.itmtool("status", "--json", ns=lk.a)
        as_text = kit.itmtool("status", ns=lk.a)
        direct = status(lk)
    assert as_json.returncode in (0, 3)  # 3: itm_mod is not loaded; rio is shown either way
    (q,) = json.loads(as_json.stdout)["rio_qdiscs"]
    assert (q["dev"], q["handle"], q["parent"]) == ("a0", "10:0", "1:1")
    x, g = q["xstats"], q["counters"]
    assert x == direct.xstats and g == direct.counters
    assert (x["in_enqueued"], x["in_early"], x["in_forced"]) == (30, 0, 0)
    dropped = x["out_early"] + x["out_forced"]
    assert x["out_forced"] > 0 and x["out_enqueued"] + dropped == 31  # 30 and the kick
    assert g["drop"] == dropped and g["packets"] == x["in_enqueued"] + x["out_enqueued"]
    assert x["qlen"] == 0 and x["limit_drops"] == 0
    lines = as_text.stdout[as_text.stdout.index("rio qdiscs (sch_rio)") :].splitlines()
    assert lines[1].startswith("rio 10:0 dev a0 parent 1:1: limit 1000p wlog 0")
    assert "enqueued 30 early 0 forced 0" in lines[2]
    assert (
        f"enqueued {x['out_enqueued']} early {x['out_early']} forced {x['out_forced']}"
        in (lines[3])
    )
    assert (
        lines[4]
        .strip()
        .startswith(f"sent {g['packets']} pkt {g['bytes']} bytes, dropped {dropped},")
    )


def test_bad_options_are_refused_with_the_kernels_reason() -> None:
    """The kernel checks what it is sent (policy and RED limits), and says why."""
    with link() as lk, kit.netns(lk.a), rio.RioControl() as ctl:
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        index = socket.if_nametoindex("a0")
        for attrs, reason in (
            ([("TCA_RIO_IN_MIN", 50), ("TCA_RIO_IN_MAX", 40)], 'bad "in" profile'),
            ([("TCA_RIO_OUT_MAX_P", 0)], 'bad "out" profile'),
            ([("TCA_RIO_DSCP", 64)], "out of range"),
            ([("TCA_RIO_FLAGS", 0x4)], "reserved"),
            # the table's own fault, not the "in" profile's
            ([("TCA_RIO_STAB", bytes([0] * 255 + [32]))], "bad idle table TCA_RIO_STAB"),
            ([("TCA_RIO_DSCP", 18), ("TCA_RIO_CLEAR", 1)], "TCA_RIO_DSCP given and cleared"),
            ([("TCA_RIO_STAB", bytes(256)), ("TCA_RIO_CLEAR", 2)], "STAB given and cleared"),
            ([("TCA_RIO_CLEAR", 0x4)], "reserved"),
        ):
            msg = rio.rio_tcmsg()
            msg["index"] = index
            msg["parent"] = rio.TC_H_ROOT
            msg["attrs"] = [("TCA_KIND", "rio"), ("TCA_OPTIONS", {"attrs": attrs})]
            with pytest.raises(rio.RioError) as err:
                ctl._request(msg, rio.RTM_NEWQDISC, flags)
            assert reason in str(err.value), str(err.value)
        assert ctl.show("a0") == []


def test_unload_with_packets_queued() -> None:
    """Packets queued when the namespace goes: freed; the module then unloads (no leak, no oops)."""
    with link() as lk:
        stall(lk)
        set_rio(lk, rio.RioConfig())
        send(lk, [(4, 0x10), (4, 0)] * 15)
        assert status(lk).xstats["qlen"] == 29
        assert not _rmmod("sch_rio")  # in use: the qdisc holds the module
        from itmtool import rio as rio_cli  # what `itmtool unload sch_rio` would name

        with kit.netns(lk.a):
            named = rio_cli.unload_refused()
        with kit.netns(lk.b):
            elsewhere = rio_cli.unload_refused()
    assert "  rio 10:0 dev a0 parent 1:1" in named.message.splitlines()
    assert "`itmtool rio del a0 --parent 1:1`" in named.hint
    assert "by no rio qdisc of this network namespace" in elsewhere.message
    # link() removed the namespaces with the packets still queued and unloaded sch_rio
    assert not kit.loaded("sch_rio")
