"""One trace of TCP flows, marked by qos_ctrl and by qos_mod: the parity check's ground.

The same packets (flows of 1 to 60 packets, both directions, IPv4 and IPv6,
precedence and ECN bits set by the sender) are

- run through ``examples/qos_ctrl.py`` on the offline backend (unit tier),
- sent through a router running qos_ctrl on the nfqueue backend (host tier),
- sent through a router running kernel qos_mod (VM tier),

and every packet must leave with the TOS that the offline run gave it, which is
also the TOS the paper's rule gives it (:func:`expected_tos`).

:func:`replay` sends the packets with raw sockets from the namespace that owns
their source address (client or server side of a :class:`itmlab.Topology`)
and captures them where they arrive, so the router in between sees exactly this
trace, packet for packet and in order within each direction.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itmlab import Topology, netns, ping, sh
from libitm import ItmLoop, Packet
from tests.kernel.qos_kit import Capture
from tests.support.packets import build, read_pcap, tcp_header, write_pcap

ROOT = Path(__file__).resolve().parents[2]
FIN_ACK = 0x11
PSH_ACK = 0x18
LOWDELAY = 0x10
#: (from the client side?, family, sport, dport, packets, initial TOS)
FLOWS = [
    (True, 4, 40001, 80, 1, 0x00),
    (True, 4, 40002, 80, 5, 0xA2),
    (True, 4, 40003, 443, 20, 0x01),
    (True, 4, 40004, 443, 21, 0x10),
    (True, 4, 40005, 22, 60, 0xE3),
    (False, 4, 22, 40005, 30, 0x00),  # the other direction of the flow above: its own entry
    (True, 6, 40006, 80, 45, 0x22),
]


@dataclass(frozen=True)
class TracePacket:
    """One packet of the trace and where it sits in its flow."""

    flow: int
    n: int
    total: int
    tos: int
    from_client: bool
    data: bytes

    @property
    def key(self) -> tuple[int, int, int]:
        """What identifies the packet on the wire: ports and sequence number."""
        sport, dport, seq = struct.unpack_from("!HHI", self.data, self.l4)
        return sport, dport, seq

    @property
    def l4(self) -> int:
        """Offset of the TCP header."""
        return 20 if self.data[0] >> 4 == 4 else 40


def expected_tos(n: int, total: int, tos: int, threshold: int, *, mark_first: bool = True) -> int:
    """The paper's rule: packet 1 SHORT with ``mark_first`` (the default; else as
    sent), 2..threshold and the FIN SHORT, the rest LONG."""
    fin = n == total and total > 1
    if n == 1 and not mark_first:
        return tos
    if n <= threshold or fin:
        return tos | LOWDELAY
    return tos & ~LOWDELAY & 0xFF


def trace(
    client4: str = "10.0.0.1",
    server4: str = "10.0.0.9",
    client6: str = "fd00::1",
    server6: str = "fd00::9",
) -> list[TracePacket]:
    """The flows interleaved packet by packet; each packet's sequence number is its n."""
    longest = max(f[4] for f in FLOWS)
    out = []
    for n in range(1, longest + 1):
        for i, (from_client, family, sport, dport, total, tos) in enumerate(FLOWS):
            if n > total:
                continue
            c, s = (client4, server4) if family == 4 else (client6, server6)
            src, dst = (c, s) if from_client else (s, c)
            flags = FIN_ACK if n == total and total > 1 else PSH_ACK
            l4 = tcp_header(sport, dport, flags, seq=n) + b"p" * (n % 7)
            out.append(TracePacket(i, n, total, tos, from_client, build(src, dst, 6, l4, tos=tos)))
    return out


def write_trace(path: Path, pkts: list[TracePacket]) -> None:
    """The trace as a raw-IP pcap, a millisecond apart."""
    write_pcap(path, [(2000.0 + k * 0.001, p.data) for k, p in enumerate(pkts)])


def _qos_ctrl_class() -> Any:
    spec = importlib.util.spec_from_file_location("qos_ctrl", ROOT / "examples" / "qos_ctrl.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.QosCtrl


def offline_tos(
    pkts: list[TracePacket], workdir: Path, threshold: int = 20, *, mark_first: bool = True
) -> list[int]:
    """Run qos_ctrl offline over the trace; the TOS each packet leaves with."""
    src, out = workdir / "trace.pcap", workdir / "marked.pcap"
    write_trace(src, pkts)
    loop = ItmLoop("offline", pcap=src, out=out)
    loop.register_app(_qos_ctrl_class()(threshold, mark_first=mark_first))
    loop.run()
    _, frames = read_pcap(out)
    assert len(frames) == len(pkts), "the offline run dropped packets"
    return [Packet(bytearray(raw)).tos for _, raw in frames]


def _arrived(cap: Capture) -> dict[tuple[int, int, int], list[int]]:
    """The TOS values of the TCP packets ``cap`` saw arrive, by (sport, dport, seq)."""
    seen: dict[tuple[int, int, int], list[int]] = {}
    for p in cap.drain():
        if not p.outgoing:
            seen.setdefault((p.sport, p.dport, p.seq), []).append(p.tos)
    return seen


@contextlib.contextmanager
def _no_tcp_replies(t: Topology) -> Iterator[None]:
    """The ends drop the trace's segments at input, so they send no RST through the router."""
    rules = [
        (ns, tool) for ns in (t.client, t.server) for tool in ("iptables", "ip6tables")
    ]  # fmt: skip
    for ns, tool in rules:
        sh("ip", "netns", "exec", ns, tool, "-I", "INPUT", "-p", "tcp", "-j", "DROP")
    try:
        yield
    finally:
        for ns, tool in rules:
            sh(
                "ip",
                "netns",
                "exec",
                ns,
                tool,
                "-D",
                "INPUT",
                "-p",
                "tcp",
                "-j",
                "DROP",
                check=False,
            )


def replay(t: Topology, pkts: list[TracePacket], gap: float = 0.002) -> list[list[int]]:
    """Send the trace across ``t``'s router; per packet, the TOS values it arrived with.

    A packet that did not arrive has an empty list; one that arrived twice, two
    values. Packets go ``gap`` seconds apart.
    """
    for family_addr in (t.server4, t.server6):
        ping(t.client, family_addr)  # resolve neighbours first: nothing waits in a queue
    with _no_tcp_replies(t):
        caps = {True: Capture(t.server, "s0"), False: Capture(t.client, "c0")}
        socks: dict[tuple[bool, int], socket.socket] = {}
        try:
            for from_client in (True, False):
                with netns(t.client if from_client else t.server):
                    for fam in (socket.AF_INET, socket.AF_INET6):
                        socks[from_client, fam] = socket.socket(
                            fam, socket.SOCK_RAW, socket.IPPROTO_RAW
                        )
            for p in pkts:
                v4 = p.data[0] >> 4 == 4
                fam = socket.AF_INET if v4 else socket.AF_INET6
                dst = Packet(bytearray(p.data)).dst
                socks[p.from_client, fam].sendto(p.data, (str(dst), 0))
                time.sleep(gap)
                for cap in caps.values():
                    cap.drain()
            end = time.monotonic() + 5
            while time.monotonic() < end:
                if sum(len(_arrived(c)) for c in caps.values()) >= len(pkts):
                    break
                time.sleep(0.05)
            seen = {side: _arrived(c) for side, c in caps.items()}
        finally:
            for s in socks.values():
                s.close()
            for cap in caps.values():
                cap.close()
    return [seen[p.from_client].get(p.key, []) for p in pkts]


def check_parity(live: list[list[int]], offline: list[int], pkts: list[TracePacket]) -> None:
    """Every packet arrived once, with the TOS of the offline run and of the rule."""
    missing = [(p.flow, p.n) for p, seen in zip(pkts, live, strict=True) if len(seen) != 1]
    assert not missing, f"{len(missing)} packets did not arrive exactly once: {missing[:10]}"
    for p, seen, want in zip(pkts, live, offline, strict=True):
        assert want == expected_tos(p.n, p.total, p.tos, 20), (p.flow, p.n)
        assert seen[0] == want, (
            f"flow {p.flow} packet {p.n}/{p.total}: tos {seen[0]:#x}, offline qos_ctrl {want:#x}"
        )
