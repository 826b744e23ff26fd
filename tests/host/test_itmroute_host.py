"""itmRoute's data path on this machine's kernel (nfqueue backend, no netem).

The lab's overlay (itmroute/lab.py: A, relays R1..R3, D, a direct A--D link)
with the direct link black-holed, so that A and D must tunnel through a
relay: UDP, TCP and ICMP echo cross the overlay, DSCP/ECN survive the tunnel,
``itmroute show`` prints the path table, a cut relay is left for another, and
A's capture rules are gone after it stops; a fourth namespace that reaches
relay 1's port forges and replays datagrams, and none of them is delivered.
Delays, loss and timing are tested
in the VM (tests/kernel/test_itmroute.py), where netem exists.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from itmlab import netns, ping, sh
from itmroute import auth, wire
from itmroute.lab import (
    A_OVERLAY6,
    D_OVERLAY,
    D_OVERLAY6,
    Overlay,
    SeqStream,
    overlay,
    tcp_transfer,
)
from tests.support.itmroute_state import current, state, wait


@pytest.fixture(autouse=True)
def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces, iptables, nfnetlink_queue)")


IP_RECVTTL = 12  # Linux's, not in Python 3.11's socket module


def udp_pair(rx_ns: str, tx_ns: str) -> tuple[socket.socket, socket.socket]:
    """A UDP socket in each of two namespaces: (receiver, sender)."""
    with netns(rx_ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns(tx_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return rx, tx


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Overlay, Path]]:
    work = Path(tempfile.mkdtemp(prefix="itmroute-host-"))
    with overlay(f"itmh{os.getpid()}", 3, ipv6=True) as ov:
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):  # black-hole the direct link
            for tool in ("iptables", "ip6tables"):
                sh("ip", "netns", "exec", ov.d, tool, "-w", "-I", chain, flag, "a", "-j", "DROP")
        ov.add_intruder()
        ov.start_threads(["d", "r2", "r3"])
        _, r1_state = ov.start_process("r1", work)  # a process: `itmroute show` reads its table
        proc, st = ov.start_process("a", work)
        try:
            assert wait(lambda: bool(state(st)), 20), (work / "a.log").read_text()
            assert wait(lambda: bool(state(r1_state)), 20), (work / "r1.log").read_text()
            yield ov, st
        finally:
            ov.stop_daemons()
            assert proc.wait(10) == 0
            for tool in ("iptables", "ip6tables"):
                mangle = sh("ip", "netns", "exec", ov.a, tool, "-w", "-t", "mangle", "-S")
                assert "ITM" not in mangle


def test_udp_tcp_and_icmp_cross_the_overlay_through_a_relay(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    ping(ov.a, D_OVERLAY, 1)  # the first echo starts the probing (and is lost: direct)
    assert wait(lambda: str(current(st)).startswith("r"), 5), state(st)
    stream = SeqStream(ov, rate=100, port=5300)
    try:
        stream.run(1.0)
    finally:
        stream.close()
    assert len(stream.arrivals) == stream.sent
    # a one-way stream: D said by notices (receipts on their own) that it arrived
    assert wait(lambda: state(st)["counters"]["notices_received"] >= 1, 3), state(st)
    sent, got, err = tcp_transfer(ov, 1_000_000, 5400, lambda: None)
    assert err is None and got == sent
    assert ping(ov.a, D_OVERLAY, 3)
    c = state(st)["counters"] if wait(lambda: state(st)["counters"]["tunnelled"] > 0, 3) else {}
    assert c["tunnelled"] > 100 and c["mss_clamped"] >= 1 and c["send_errors"] == 0

    # D's tunnelled replies carried receipts for the relay path A's data took (the
    # state file is rewritten periodically: under load it can lag the transfer)
    def heard() -> dict[str, int]:
        return {p["name"]: p["heard"] for p in state(st)["destinations"][0]["paths"]}

    assert wait(lambda: sum(heard().values()) > 100, 5), heard()
    assert heard()["direct"] == 0, heard()


def test_dscp_and_ecn_survive_the_tunnel_and_the_ttl_loses_one(
    lab: tuple[Overlay, Path],
) -> None:
    ov, st = lab
    assert ping(ov.a, D_OVERLAY, 1)
    assert wait(lambda: str(current(st)).startswith("r"), 5)
    rx, tx = udp_pair(ov.d, ov.a)
    with rx, tx:
        rx.bind((D_OVERLAY, 5500))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        rx.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        rx.settimeout(3)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 5)
        for tos in (0xB9, 0x2A, 0x03):
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
            tx.sendto(b"x", (D_OVERLAY, 5500))
            _, anc, _, _ = rx.recvmsg(100, 2 * socket.CMSG_SPACE(4))
            ttl = [int.from_bytes(c[2], sys.byteorder) for c in anc if c[1] == socket.IP_TTL]
            assert ttl == [4]  # one hop at the relay, like a router
            assert [c[2][0] for c in anc if c[1] == socket.IP_TOS] == [tos]


def test_an_oversized_df_packet_draws_frag_needed(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    assert ping(ov.a, D_OVERLAY, 1)
    assert wait(lambda: str(current(st)).startswith("r"), 5)
    proc = subprocess.run(
        ["ip", "netns", "exec", ov.a, "ping", "-M", "do", "-s", "1472", "-c", "1", "-W", "1",
         D_OVERLAY],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    mtu = 1500 - wire.TUNNEL_OVERHEAD
    assert state(st)["tunnel_mtu"] == mtu
    assert f"mtu = {mtu}" in proc.stdout, proc.stdout + proc.stderr
    assert ping(ov.a, D_OVERLAY, 1)  # what fits still goes through


def test_show_prints_the_table_and_a_cut_relay_is_left(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    assert ping(ov.a, D_OVERLAY, 1)
    assert wait(lambda: str(current(st)).startswith("r"), 5)
    out = subprocess.run(
        [sys.executable, "-m", "itmroute", "show", "--state", str(st)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "10.77.200.0/24 via itm 10.77.200.1: active" in out
    assert "ALIVE  HEARD USE" in out
    for name in ("direct", "r1", "r2", "r3"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), out
    victim = int(str(current(st))[1:])
    stream = SeqStream(ov, rate=100, port=5600)
    try:
        stream.run(3.0, lambda t: ov.cut(victim) if t > 0.5 else None)
    finally:
        stream.close()
        ov.cut(victim, on=False)
    assert current(st) not in (f"r{victim}", "direct")
    assert stream.largest_gap() < 2.0


def test_forged_and_replayed_datagrams_are_dropped_and_counted(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    r1 = st.parent / "r1.json"
    captured = ov.sniff_from_a(3, lambda: ping(ov.a, D_OVERLAY, 1))
    assert len(captured) == 3
    before = state(r1)["counters"]
    inner = bytes.fromhex("4500002000004000401100000a4d3201") + bytes([10, 77, 200, 1])
    inner += bytes.fromhex("1f401f40000c0000") + b"evil"  # UDP to D's port 8000
    wrong_key = auth.Sealer(bytes(32), bytes([10, 77, 100, 1]))
    forged_probe = wire.Probe(wire.PROBE, 1, bytes([10, 77, 100, 1]), bytes([10, 77, 200, 1]))
    sends = (
        [wrong_key.seal(wire.DATA, inner) for _ in range(20)]  # packets behind the relay
        + [wrong_key.seal(wire.PROBE, forged_probe.body()) for _ in range(20)]  # probes
        + [b"IR\x01\x01" + inner for _ in range(20)]  # the old, unauthenticated format
        + [c for c in captured for _ in range(5)]  # A's own datagrams, replayed
    )
    rx, tx = udp_pair(ov.d, ov.intruder)
    with rx, tx:
        rx.bind((D_OVERLAY, 8000))
        rx.settimeout(1.0)
        for msg in sends:
            tx.sendto(msg, ("10.77.50.2", 7177))
            time.sleep(0.002)
        with pytest.raises(TimeoutError):
            rx.recv(100)  # nothing was delivered
    assert wait(lambda: state(r1)["counters"]["replayed"] - before["replayed"] >= 15, 3)
    after = state(r1)["counters"]
    delta = {k: after[k] - before[k] for k in ("auth_failed", "bad_datagrams", "replayed")}
    assert delta == {"auth_failed": 40, "bad_datagrams": 20, "replayed": 15}
    out = subprocess.run(
        [sys.executable, "-m", "itmroute", "show", "--state", str(r1)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"{after['auth_failed']} failed the check, {after['replayed']} replayed" in out


def test_a_relay_answers_ttl_1_like_a_router(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    assert ping(ov.a, D_OVERLAY, 1)
    assert wait(lambda: str(current(st)).startswith("r"), 5)
    proc = subprocess.run(
        ["ip", "netns", "exec", ov.a, "ping", "-n", "-t", "1", "-c", "1", "-W", "2", D_OVERLAY],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # the relay in use answers like a router (it may have changed: any relay's address)
    assert "Time to live exceeded" in proc.stdout, proc.stdout + proc.stderr
    assert re.search(r"From 10\.77\.[1-3]\.2 ", proc.stdout), proc.stdout


def ping6(ov: Overlay, *args: str) -> str:
    """``ping -6`` from A's overlay address to D's (one echo), its output."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ov.a, "ping", "-6", "-n", "-c", "1", "-W", "2",
         "-I", A_OVERLAY6, *args, D_OVERLAY6],
        capture_output=True, text=True, check=False, timeout=10,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def both_ends_tunnel(ov: Overlay, st: Path) -> None:
    """Make A and D send through relays: the first packet each way starts the
    probing and goes direct (lost: the direct link is black-holed)."""
    ping(ov.a, D_OVERLAY, 1)
    assert wait(lambda: str(current(st)).startswith("r"), 5)
    ping6(ov)  # D answers: its table for A starts (the answer is lost)
    assert wait(lambda: ov.router("d").dests[0][1].current.startswith("r"), 5)


def test_an_ipv6_packet_too_big_for_the_tunnel_draws_packet_too_big(
    lab: tuple[Overlay, Path],
) -> None:
    ov, st = lab
    both_ends_tunnel(ov, st)
    mtu = 1500 - wire.TUNNEL_OVERHEAD  # the IPv4 ITMs' tunnel carries IPv6 packets too
    big = str(mtu - 40 - 8 + 20)  # an echo of 20 bytes more than the tunnel takes
    out = ping6(ov, "-M", "do", "-s", big)
    assert f"Packet too big: mtu={mtu}" in out, out
    # the sender's kernel learned the MTU: the next one is refused before it leaves
    route = sh("ip", "netns", "exec", ov.a, "ip", "-6", "route", "get", D_OVERLAY6)
    assert f"mtu {mtu}" in route, route
    out = ping6(ov, "-M", "do", "-s", big)
    assert "1 received" not in out and "too long" in out, out
    assert "1 received" in ping6(ov, "-M", "do", "-s", str(mtu - 48)), "what fits goes through"
    assert state(st)["counters"]["packet_too_big"] >= 1


def test_a_relay_answers_ipv6_hop_limit_1_like_a_router(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    both_ends_tunnel(ov, st)
    out = ping6(ov, "-t", "1")
    assert "Time exceeded: Hop limit" in out, out
    assert re.search(r"From fd77:a[1-3]::2 ", out), out  # the relay's address towards A
    assert "1 received" in ping6(ov, "-t", "3"), "two hops left at the relay: delivered"


def test_ipv6_crosses_the_overlay_through_a_relay(lab: tuple[Overlay, Path]) -> None:
    ov, st = lab
    ping(ov.a, D_OVERLAY, 1)  # starts the probing if no test before did (then lost: direct)
    assert wait(lambda: str(current(st)).startswith("r"), 5)
    tunnelled = state(st)["counters"]["tunnelled"]
    with netns(ov.d):
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with netns(ov.a):
        tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        cli = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with rx, tx, srv, cli:
        tx.bind((A_OVERLAY6, 0))  # from A's overlay prefix, so that D tunnels its answers
        cli.bind((A_OVERLAY6, 0))
        rx.bind((D_OVERLAY6, 5560))
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        rx.settimeout(3)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 9)
        for i in range(20):
            tx.sendto(b"v6 %d" % i, (D_OVERLAY6, 5560))
            data, anc, _, _ = rx.recvmsg(100, socket.CMSG_SPACE(4))
            assert data == b"v6 %d" % i
            hops = [int.from_bytes(c[2], sys.byteorder) for c in anc if c[1] == 52]
            assert hops == [8]  # IPV6_HOPLIMIT: one hop at the relay
        srv.bind((D_OVERLAY6, 5561))
        srv.listen(1)
        srv.settimeout(10)
        cli.settimeout(10)
        cli.connect((D_OVERLAY6, 5561))
        conn, _ = srv.accept()
        with conn:
            payload = os.urandom(300_000)
            cli.sendall(payload)
            cli.shutdown(socket.SHUT_WR)
            got = b""
            conn.settimeout(10)
            while chunk := conn.recv(65536):
                got += chunk
            assert got == payload
            # the SYN's MSS was clamped for the tunnel: IPv6 header 40, TCP 20
            assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) <= (
                1500 - wire.TUNNEL_OVERHEAD - 60
            )
    assert wait(lambda: state(st)["counters"]["tunnelled"] > tunnelled + 20, 3)


def test_itms_that_talk_ipv6_carry_ipv4_and_ipv6_through_a_relay() -> None:
    with overlay(f"itm6{os.getpid()}", 2, outer=6) as ov:
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):  # black-hole the direct link
            for tool in ("iptables", "ip6tables"):
                sh("ip", "netns", "exec", ov.d, tool, "-w", "-I", chain, flag, "a", "-j", "DROP")
        ov.start_threads(["a", "d", "r1", "r2"])
        try:
            a = ov.router("a")
            assert a.tunnel_mtu == 1500 - (40 + 8 + 28 + 18 + 16)
            for family, dst, src, port in (
                (socket.AF_INET, D_OVERLAY, "10.77.100.1", 5570),
                (socket.AF_INET6, D_OVERLAY6, A_OVERLAY6, 5571),
            ):
                with netns(ov.d):
                    rx = socket.socket(family, socket.SOCK_DGRAM)
                with netns(ov.a):
                    tx = socket.socket(family, socket.SOCK_DGRAM)
                with rx, tx:
                    rx.bind((dst, port))
                    tx.bind((src, 0))
                    rx.settimeout(0.2)
                    got = 0
                    for i in range(60):  # the first ones go direct (into the black hole)
                        tx.sendto(b"%d" % i, (dst, port))
                        try:
                            rx.recv(100)
                            got += 1
                        except TimeoutError:
                            pass
                    assert got >= 20, (family, got, a.snapshot())
            assert a.dests[0][1].current.startswith("r")
            assert a.counters["tunnelled"] >= 40 and a.counters["acks_received"] > 0
            # a relay of IPv6 ITMs answers an IPv4 packet out of TTL from an IPv4
            # address of its own
            proc = subprocess.run(
                ["ip", "netns", "exec", ov.a, "ping", "-n", "-t", "1", "-c", "1", "-W", "2",
                 "-I", "10.77.100.1", D_OVERLAY],
                capture_output=True, text=True, check=False, timeout=10,
            )  # fmt: skip
            assert "Time to live exceeded" in proc.stdout, proc.stdout + proc.stderr
            assert re.search(r"From 10\.77\.[12]\.2 ", proc.stdout), proc.stdout
        finally:
            ov.stop_daemons()
