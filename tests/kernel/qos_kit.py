"""Helpers of qos_mod's VM tests: loading, counters, captures, TCP with a TOS.

A capture is an AF_PACKET socket opened inside a namespace and bound to one
interface; it sees the packets the interface sends (as the sender made them)
and receives (as the router left them), so one capture at each end gives
both views of both directions of a TCP connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import itmlab
from tests.kernel import kit

QOS = Path("/sys/module/qos_mod")
LOWDELAY = 0x10
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
#: TCP payload of a full segment on the veths (MTU 1500, timestamps on)
MSS = 1448
VETHS = {"client": ("c0",), "router": ("r0", "r1"), "server": ("s0",)}


@contextlib.contextmanager
def qos_loaded(*params: str, qos: bool = True) -> Iterator[None]:
    """itm_mod, and qos_mod with `params` unless `qos` is false, for the block."""
    kit.insmod("itm_mod")
    try:
        if qos:
            kit.insmod("qos_mod", *params)
        yield
    finally:
        kit.rmmod("qos_mod")
        kit.rmmod("itm_mod")


def stats() -> dict[str, int]:
    """qos_mod's counters from /sys/module/qos_mod/stats."""
    return {p.name: int(p.read_text()) for p in (QOS / "stats").iterdir()}


def param(name: str) -> str:
    """A qos_mod parameter's current value."""
    return (QOS / "parameters" / name).read_text().strip()


def set_param(name: str, value: object) -> None:
    """Change a qos_mod parameter at run time."""
    (QOS / "parameters" / name).write_text(f"{value}\n")


def offloads_off(t: kit.Topology) -> None:
    """No TSO/GSO/GRO and no checksum offload on any veth: buffers are wire packets."""
    for role, devs in VETHS.items():
        ns = getattr(t, role)
        for dev in devs:
            kit.sh(
                "ip", "netns", "exec", ns, "ethtool", "-K", dev,
                "tx", "off", "tso", "off", "gso", "off", "gro", "off", check=False,
            )  # fmt: skip


def sysctl(ns: str, *settings: str) -> None:
    """Set sysctls in a namespace."""
    kit.sh("ip", "netns", "exec", ns, "sysctl", "-qw", *settings)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@dataclass
class Pkt:
    """One captured TCP packet."""

    outgoing: bool
    v6: bool
    tos: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    plen: int
    ip_ok: bool
    tcp_ok: bool

    @property
    def fin(self) -> bool:
        """The FIN flag."""
        return bool(self.flags & 0x01)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """What identifies the packet across the router (TOS and TTL change)."""
        return (self.seq, self.ack, self.flags, self.plen)


def parse(frame: bytes, outgoing: bool) -> Pkt | None:
    """An Ethernet frame carrying TCP over IPv4 or IPv6, or None."""
    if len(frame) < 14:
        return None
    etype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if etype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ip[9] != socket.IPPROTO_TCP:
            return None
        ip = ip[:total]
        tcp = ip[ihl:]
        src, dst = (
            socket.inet_ntop(socket.AF_INET, ip[12:16]),
            socket.inet_ntop(socket.AF_INET, ip[16:20]),
        )
        ip_ok = _csum(ip[:ihl]) == 0xFFFF
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
        tos, v6 = ip[1], False
    elif etype == 0x86DD and len(ip) >= 40:
        if ip[6] != socket.IPPROTO_TCP:
            return None
        plen = struct.unpack_from("!H", ip, 4)[0]
        tcp = ip[40 : 40 + plen]
        src, dst = (
            socket.inet_ntop(socket.AF_INET6, ip[8:24]),
            socket.inet_ntop(socket.AF_INET6, ip[24:40]),
        )
        ip_ok = True
        pseudo = ip[8:40] + struct.pack("!IxxxB", len(tcp), 6)
        tos, v6 = (struct.unpack_from("!H", ip, 0)[0] >> 4) & 0xFF, True
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", tcp)
    return Pkt(
        outgoing, v6, tos, src, dst, sport, dport, seq, ack, flags,
        len(tcp) - (off >> 4) * 4, ip_ok, _csum(pseudo + tcp) == 0xFFFF,
    )  # fmt: skip


class Capture:
    """Every TCP packet on one interface of a namespace, from now until drain()."""

    def __init__(self, ns: str, dev: str) -> None:
        with kit.netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
        self.sock.bind((dev, ETH_P_ALL))
        self.sock.setblocking(False)
        self.pkts: list[Pkt] = []

    def drain(self) -> list[Pkt]:
        """Read what has arrived; return every packet captured so far."""
        while True:
            try:
                frame, addr = self.sock.recvfrom(65536)
            except BlockingIOError:
                break
            p = parse(frame, addr[2] == PACKET_OUTGOING)
            if p:
                self.pkts.append(p)
        return self.pkts

    def drops(self) -> int:
        """Packets the socket could not keep."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return int(struct.unpack("II", raw)[1])

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@contextlib.contextmanager
def captures(t: kit.Topology) -> Iterator[tuple[Capture, Capture]]:
    """Captures on the client's c0 and the server's s0."""
    c, s = Capture(t.client, "c0"), Capture(t.server, "s0")
    try:
        yield c, s
    finally:
        c.close()
        s.close()


#: a TCP transfer with the client's TOS set: (client port, sha256 sent, received)
tcp = itmlab.tcp_transfer


def flow(pkts: list[Pkt], sport: int, dport: int, outgoing: bool) -> list[Pkt]:
    """The packets of one direction of one connection, in capture order."""
    return [p for p in pkts if p.sport == sport and p.dport == dport and p.outgoing == outgoing]


def settle(caps: tuple[Capture, ...], quiet: float = 0.3, timeout: float = 5.0) -> None:
    """Drain the captures until nothing new arrives for `quiet` seconds."""
    end = time.monotonic() + timeout
    counts = [-1] * len(caps)
    while time.monotonic() < end:
        now = [len(c.drain()) for c in caps]
        if now == counts:
            return
        counts = now
        time.sleep(quiet)


def expected_tos(sent: int, index: int, fin: bool, threshold: int, *, first_as_sent: bool) -> int:
    """The TOS the paper's rule gives the `index`-th (1-based) packet of a flow.

    qos_mod with mark_first=0 leaves the first packet as sent (first_as_sent);
    with mark_first (its default), like the connbytes rule set, it counts it
    like any other.
    """
    if index == 1 and first_as_sent:
        return sent
    if index <= threshold or fin:
        return sent | LOWDELAY
    return sent & ~LOWDELAY


class SynFlood:
    """Crafted TCP SYNs from the client namespace to the server, distinct flows."""

    def __init__(self, t: kit.Topology, dport_base: int = 20000) -> None:
        with kit.netns(t.client):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.src = socket.inet_aton(t.client4)
        self.dst = socket.inet_aton(t.server4)
        self.dst_str = t.server4
        self.dport_base = dport_base
        self.sent = 0
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, self.src, self.dst)
        self.tcp_tmpl = bytearray(struct.pack("!HHIIBBHHH", 0, 0, 1, 0, 5 << 4, 0x02, 64240, 0, 0))
        self.ip = ip
        # checksum of the pseudo header and the template with zero ports and checksum
        pseudo = self.src + self.dst + struct.pack("!BBH", 0, 6, 20)
        self.base = _csum_sum(pseudo + bytes(self.tcp_tmpl))

    def send(self, n: int) -> float:
        """Send `n` SYNs of new flows; returns the seconds it took."""
        t0 = time.monotonic()
        tcp = self.tcp_tmpl
        for _ in range(n):
            i = self.sent
            sport = 1024 + i % 60000
            dport = self.dport_base + i // 60000
            s = self.base + sport + dport
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            struct.pack_into("!HH", tcp, 0, sport, dport)
            struct.pack_into("!H", tcp, 16, ~s & 0xFFFF)
            self.sock.sendto(self.ip + tcp, (self.dst_str, 0))
            self.sent += 1
        return time.monotonic() - t0

    def close(self) -> None:
        """Close the raw socket."""
        self.sock.close()


def _csum_sum(data: bytes) -> int:
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def link_stats(ns: str, dev: str) -> dict[str, int]:
    """rx/tx packet and drop counters of a device in a namespace."""
    import json

    out = json.loads(kit.sh("ip", "-n", ns, "-s", "-j", "link", "show", dev))[0]["stats64"]
    return {
        "rx": out["rx"]["packets"],
        "rx_dropped": out["rx"]["dropped"],
        "tx": out["tx"]["packets"],
        "tx_dropped": out["tx"]["dropped"],
    }


def nstat(ns: str, *names: str) -> dict[str, int]:
    """Absolute SNMP counters of a namespace."""
    out = kit.sh("ip", "netns", "exec", ns, "nstat", "-asz", *names)
    vals = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            vals[parts[0]] = int(parts[1])
    return vals
