"""The observers' receive path: nfnetlink_log datagrams, one copy or a batch of
copies each, each copy run through its group's route; malformed messages counted,
the rest still run."""

from __future__ import annotations

import socket
import struct

from libitm import Hook, Packet
from libitm.transport import codec as nfq
from libitm.transport import nflog
from tests.support.packets import udp

GROUP = 5


def copy_msg(payload: bytes, mark: int = 0, group: int = GROUP) -> bytes:
    """An NFULNL_MSG_PACKET as nfnetlink_log sends it."""
    body = nfq._attr(nflog.NFULA_PACKET_HDR, struct.pack(">HBx", 0x0800, 2))
    body += nfq._attr(nflog.NFULA_MARK, struct.pack(">I", mark))
    body += nfq._attr(nflog.NFULA_PAYLOAD, payload)
    return nfq._message(nflog.MSG_PACKET, group, body, seq=0, flags=0, family=socket.AF_INET)


def transport(b: socket.socket, seen: list[tuple[bytes, int, int | None]]) -> nflog.LogTransport:
    """A LogTransport reading socket ``b``: its observer records (bytes, mark, hook)."""

    def run(p: Packet) -> int:
        seen.append((bytes(p.raw), p.mark, p.hook))
        return 0

    t = nflog.LogTransport(lambda g: (Hook.IP_FORWARD, run) if g == GROUP else None)
    t._sock = b
    return t


def test_copies_single_and_batched_small_and_whole(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    pkts = [
        udp("10.0.0.1", "10.0.0.2", 9, 10 + i, bytes([i]) * n)
        for i, n in enumerate([1, 100, 5000, 60000, 7, 1400])
    ]
    a.send(copy_msg(pkts[0], mark=7))
    a.send(copy_msg(pkts[1]) + copy_msg(pkts[2]))  # a batch of two, one over the dense area
    a.send(copy_msg(pkts[3]))  # a whole 60 KB packet
    a.send(copy_msg(pkts[4], group=GROUP + 1) + copy_msg(pkts[5]))  # a group nobody routes
    seen: list[tuple[bytes, int, int | None]] = []
    t = transport(b, seen)
    assert t.process() == 6
    assert [s[0] for s in seen] == [pkts[i] for i in (0, 1, 2, 3, 5)]
    assert seen[0][1:] == (7, Hook.IP_FORWARD)
    assert t.c["copies"] == 5 and t.c["bad_messages"] == 0
    assert t.process() == 0, "nothing left"
    t.close()


def test_a_malformed_message_is_counted_and_the_next_datagram_runs(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    good = udp("10.0.0.1", "10.0.0.2", 9, 10, b"ok")
    bad = bytearray(copy_msg(good))
    bad[0:4] = struct.pack("=I", len(bad) + 100)  # longer than the datagram
    a.send(copy_msg(good) + bytes(bad))
    a.send(copy_msg(good, mark=3))
    seen: list[tuple[bytes, int, int | None]] = []
    t = transport(b, seen)
    assert t.process() == 2
    assert [s[1] for s in seen] == [0, 3]
    assert t.c["bad_messages"] == 1
    t.close()
