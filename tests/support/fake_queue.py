"""The nfqueue backend without a kernel: fake and socket-pair queue sockets,
packet messages in, verdict messages out (shared by the libitm unit tests)."""

from __future__ import annotations

import errno
import socket

from libitm import Hook, Interest, ItmInfo, Packet, Verdict
from libitm.backends.nfqueue import FULL_COPY, NfqueueBackend
from libitm.dispatch import Dispatcher
from libitm.transport import codec as nfq

from .packets import udp

#: the queue number the fake backends route to Hook.POST_ROUTING
QUEUE = 7

#: (message type, verdict, packet id, payload or None) of one sent verdict message
SentMessage = tuple[int, int, int, bytes | None]


class FakeSock:
    """Hands out queued datagrams to recv_into, records what is sent."""

    def __init__(self, datagrams: list[bytes | OSError]) -> None:
        self.datagrams = list(datagrams)
        self.sent: list[bytes] = []

    def recv_into(self, buf: bytearray) -> int:
        """The next datagram (or its OSError); BlockingIOError when none is left."""
        if not self.datagrams:
            raise BlockingIOError(errno.EAGAIN, "empty")
        d = self.datagrams.pop(0)
        if isinstance(d, OSError):
            raise d
        buf[: len(d)] = d
        return len(d)

    def send(self, data: bytes | bytearray) -> int:
        """Record ``data``."""
        self.sent.append(bytes(data))
        return len(data)


def _routed(apps: list[ItmInfo], batch: int) -> NfqueueBackend:
    """An nfqueue backend whose queue :data:`QUEUE` feeds ``apps`` at POST_ROUTING."""
    be = NfqueueBackend(batch=batch)
    d = Dispatcher()
    for a in apps:
        d.add(Hook.POST_ROUTING, a)
    be._disp = d
    be._qhook[QUEUE] = Hook.POST_ROUTING
    return be


def fake_backend(
    apps: list[ItmInfo], datagrams: list[bytes | OSError], batch: int = 256
) -> tuple[NfqueueBackend, FakeSock]:
    """A backend reading ``datagrams`` one per recv from a :class:`FakeSock`."""
    be = _routed(apps, batch)
    sock = FakeSock(datagrams)
    be.transport._sock = sock  # type: ignore[assignment]
    return be, sock


def mmsg_backend(apps: list[ItmInfo], b: socket.socket, batch: int = 256) -> NfqueueBackend:
    """A backend reading many datagrams per recvmmsg from socket ``b`` (whole-packet
    slots); what is sent to ``b``'s peer comes in."""
    be = _routed(apps, batch)
    be.transport.bound[QUEUE] = FULL_COPY
    be.transport._sock = b
    be.transport._ensure_receiver()
    assert be.transport._rx is not None, "recvmmsg available on Linux"
    return be


def sent_messages(sock: FakeSock) -> list[SentMessage]:
    """(type, verdict, id, payload) of every message sent, in order."""
    return sent_messages_of(sock.sent)


def sent_messages_of(chunks: list[bytes]) -> list[SentMessage]:
    """(type, verdict, id, payload) of every message in the sent ``chunks``, in order."""
    res: list[SentMessage] = []
    for chunk in chunks:
        for mtype, _, off, length in nfq.messages(chunk, len(chunk)):
            v, pid = (
                int.from_bytes(chunk[off + 24 : off + 28], "big"),
                int.from_bytes(chunk[off + 28 : off + 32], "big"),
            )
            payload = None
            pos = off + 32
            while pos < off + length:
                alen = int.from_bytes(chunk[pos : pos + 2], "little")
                atype = int.from_bytes(chunk[pos + 2 : pos + 4], "little")
                if atype == nfq.NFQA_PAYLOAD:
                    payload = chunk[pos + 4 : pos + alen]
                pos += (alen + 3) & ~3
            res.append((mtype, v, pid, payload))
    return res


def port_app() -> ItmInfo:
    """A UDP application that drops packets to port 1, sets TOS 0x10 on those to
    port 2 and accepts the rest."""

    def pf(w: Hook, c: int, p: Packet) -> Verdict:
        if p.dport == 1:
            return Verdict.DROP
        if p.dport == 2:
            p.tos = 0x10
        return Verdict.ACCEPT

    return ItmInfo("b", Interest(protocol="udp"), class_func=lambda p: 1, process_func=pf)


def pkt_msg(pid: int, dport: int) -> bytes:
    """Packet message ``pid`` of queue :data:`QUEUE`: a small UDP datagram to ``dport``."""
    return nfq.encode_packet(QUEUE, pid, udp("10.0.0.1", "10.0.0.2", 9, dport, b"data"))
