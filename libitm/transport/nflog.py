"""nfnetlink_log: copies of packets for observers, no verdict.

An application without a ``process_func`` cannot change what happens to a
packet, so the packet need not wait for it: an NFLOG rule hands a *copy* to
user space and the packet goes on at once. :class:`LogTransport` binds NFLOG
groups on one netlink socket, receives the copies and runs the runner that its
``route`` callback names for the group; whatever the runner returns is ignored
(there is no verdict to send). Copies read while a configuration request waits
for its acknowledgement are kept (:class:`.deferred.Deferred`) and run by the
next :meth:`LogTransport.process`, never inside the request.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
from typing import Final

from ..packet import Packet
from . import codec as nfq
from .deferred import Deferred, await_ack
from .queue import Route, TransportError

log = logging.getLogger("libitm")

NFNL_SUBSYS_ULOG: Final = 4
MSG_PACKET: Final = NFNL_SUBSYS_ULOG << 8  # NFULNL_MSG_PACKET
MSG_CONFIG: Final = (NFNL_SUBSYS_ULOG << 8) | 1  # NFULNL_MSG_CONFIG
NFULA_PACKET_HDR: Final = 1
NFULA_MARK: Final = 2
NFULA_TIMESTAMP: Final = 3
NFULA_PAYLOAD: Final = 9
NFULA_CFG_CMD: Final = 1
NFULA_CFG_MODE: Final = 2
NFULA_CFG_TIMEOUT: Final = 4
NFULA_CFG_QTHRESH: Final = 5
#: with copies batched, the longest a copy waits in the kernel (1/100 s)
FLUSH_CS: Final = 1
NFULNL_CFG_CMD_BIND: Final = 1
NFULNL_CFG_CMD_UNBIND: Final = 2
NFULNL_COPY_PACKET: Final = 2
_BE32: Final = struct.Struct(">I")
_TS: Final = struct.Struct(">qq")
_RBUF: Final = 1 << 20
#: the most copies nfnetlink_log is asked to gather per message
MAX_OBSERVER_BATCH: Final = 1024


def config_bind(group: int, *, seq: int, unbind: bool = False) -> bytes:
    """NFULNL_MSG_CONFIG binding (or unbinding) ``group``, acked."""
    cmd = NFULNL_CFG_CMD_UNBIND if unbind else NFULNL_CFG_CMD_BIND
    body = nfq._attr(NFULA_CFG_CMD, struct.pack("B", cmd))
    flags = nfq.NLM_F_REQUEST | (0 if unbind else nfq.NLM_F_ACK)
    return nfq._message(MSG_CONFIG, group, body, seq=seq, flags=flags, family=socket.AF_UNSPEC)


def config_mode(group: int, copy_range: int, *, seq: int, batch: int = 1) -> bytes:
    """NFULNL_MSG_CONFIG: copy ``copy_range`` bytes of each packet; send each at once
    (``batch`` 1), or ``batch`` copies in one message, at the latest
    :data:`FLUSH_CS` hundredths of a second after the first."""
    body = nfq._attr(NFULA_CFG_MODE, struct.pack(">IBx", copy_range, NFULNL_COPY_PACKET))
    body += nfq._attr(NFULA_CFG_QTHRESH, _BE32.pack(batch))
    if batch > 1:
        body += nfq._attr(NFULA_CFG_TIMEOUT, _BE32.pack(FLUSH_CS))
    flags = nfq.NLM_F_REQUEST | nfq.NLM_F_ACK
    return nfq._message(MSG_CONFIG, group, body, seq=seq, flags=flags, family=socket.AF_UNSPEC)


def decode_log(
    buf: bytearray, off: int, length: int
) -> tuple[int, int, int, int, float | None] | None:
    """``(group, payload offset, payload length, mark, timestamp)`` of the
    NFULNL_MSG_PACKET at ``buf[off:off+length]``; None when it is malformed."""
    if length < 20:
        return None
    (group,) = struct.unpack_from(">H", buf, off + 18)
    pos, end = off + 20, off + length
    poff = plen = -1
    mark = 0
    ts: float | None = None
    while pos + 4 <= end:
        alen, atype = nfq.NLATTR.unpack_from(buf, pos)
        if alen < 4 or pos + alen > end:
            return None
        atype &= 0x3FFF
        if atype == NFULA_PAYLOAD:
            poff, plen = pos + 4, alen - 4
        elif atype == NFULA_MARK and alen >= 8:
            (mark,) = _BE32.unpack_from(buf, pos + 4)
        elif atype == NFULA_TIMESTAMP and alen >= 20:
            sec, usec = _TS.unpack_from(buf, pos + 4)
            ts = sec + usec / 1e6
        pos += (alen + 3) & ~3
    if poff < 0:
        return None
    return group, poff, plen, mark, ts


class LogTransport:
    """One nfnetlink_log socket: groups bound, copies in, each run through its route."""

    def __init__(self, route: Route, copy_range: int = 0xFFFF, batch: int = 1) -> None:
        """``route(group)``: the hook and runner of the group's observers; ``batch``:
        copies the kernel gathers per message (:func:`config_mode`)."""
        self.route = route
        self.copy_range = copy_range
        self.batch = batch
        self._sock: socket.socket | None = None
        self._buf = bytearray(_RBUF)
        self._seq = 0
        self.groups: set[int] = set()
        self.c = {"copies": 0, "bad_messages": 0, "enobufs": 0}
        #: datagrams of copies read while a config request waited for its ack
        self._deferred = Deferred()
        self._cbuf: bytearray | None = None  # the config requests' receive buffer

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._sock is not None

    def open(self) -> None:
        """The netlink socket, non-blocking."""
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfq.NETLINK_NETFILTER)
        s.bind((0, 0))
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, nfq.SO_RCVBUFFORCE, 8 << 20)
        s.setblocking(False)
        self._sock = s

    def fileno(self) -> int:
        """The socket (readable when copies wait)."""
        if self._sock is None:
            raise TransportError("the log socket is not open")
        return self._sock.fileno()

    def fds(self) -> tuple[int, int]:
        """What a loop watches: the socket, and the eventfd that is readable while
        copies read during a config request wait for :meth:`process`."""
        return self.fileno(), self._deferred.fileno()

    def bind(self, group: int, copy_range: int | None = None) -> int:
        """Bind NFLOG ``group`` and set its copy mode (the first ``copy_range``
        bytes of each packet, by default the transport's); 0 or the errno."""
        self._seq += 1
        err = self._request(config_bind(group, seq=self._seq))
        if err:
            return err
        self.groups.add(group)
        self._seq += 1
        rng = self.copy_range if copy_range is None else copy_range
        return self._request(config_mode(group, rng, seq=self._seq, batch=self.batch))

    def unbind(self, group: int) -> None:
        """Let go of NFLOG ``group`` (copies still in the socket are still read)."""
        if self._sock is None or group not in self.groups:
            return
        self.groups.discard(group)
        with contextlib.suppress(OSError):
            self._sock.send(config_bind(group, seq=0, unbind=True))

    def _request(self, msg: bytes) -> int:
        """Send a config request; its answer's errno. Copies read meanwhile are kept
        for :meth:`process`, not run (the request may come from a callback, and
        the receive buffer may be in use below it)."""
        s = self._sock
        assert s is not None
        if self._cbuf is None:
            self._cbuf = bytearray(_RBUF)
        result = await_ack(s, msg, self._cbuf, self._deferred, MSG_PACKET)
        if result is None:
            raise TransportError("nfnetlink_log did not answer a config request")
        return result

    def process(self) -> int:
        """Run the observers on every copy waiting now; how many copies."""
        s = self._sock
        if s is None:
            return 0
        handled = 0
        kept = self._deferred.kept
        while True:
            if kept:
                # copies read during a config request, before anything newer
                handled += self._copies(*self._deferred.take())
                continue
            try:
                n = s.recv_into(self._buf)
            except BlockingIOError:
                return handled
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.c["enobufs"] += 1  # copies lost, none delayed: carry on
                    continue
                raise
            handled += self._copies(self._buf, n)

    def _copies(self, buf: bytearray, n: int) -> int:
        """Run every copy in datagram ``buf[:n]``; how many there were."""
        handled = 0
        try:
            for mtype, _, off, length in nfq.messages(buf, n):
                if mtype == MSG_PACKET:
                    self._copy(buf, off, length)
                    handled += 1
        except ValueError:
            self.c["bad_messages"] += 1
        return handled

    def _copy(self, buf: bytearray, off: int, length: int) -> None:
        m = decode_log(buf, off, length)
        if m is None:
            self.c["bad_messages"] += 1
            return
        group, poff, plen, mark, ts = m
        rt = self.route(group)
        if rt is None:
            return
        hook, run = rt
        self.c["copies"] += 1
        # a copy of its own (a bytearray slice): the receive buffer is reused
        run(Packet(buf[poff : poff + plen], mark=mark, hook=hook, timestamp=ts))

    def close(self) -> None:
        """Unbind the groups and close the socket."""
        s, self._sock = self._sock, None
        if s is None:
            return
        for g in sorted(self.groups):
            with contextlib.suppress(OSError):
                s.send(config_bind(g, seq=0, unbind=True))
        self.groups.clear()
        s.close()
        self._deferred.close()

    def counters(self) -> dict[str, int]:
        """copies, bad_messages, enobufs."""
        return dict(self.c)
