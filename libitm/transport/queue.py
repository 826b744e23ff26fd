"""The queue socket: nfnetlink_queue's transport, with no policy in it.

:class:`QueueTransport` owns one netlink socket: it binds and configures
queues, receives packet messages in batches (recvmmsg, :mod:`.mmsg`), decodes
them (:mod:`.codec`), hands each packet to the runner that its ``route``
callback names for its queue (:meth:`libitm.dispatch.Dispatcher.runner`) and
sends every verdict of a wakeup in one ``send``: the packets that were simply
accepted are covered by a single NFQNL_MSG_VERDICT_BATCH per queue, drops and
modified packets get their own NFQNL_MSG_VERDICT, placed before the batch.
What puts packets in a queue (xtables rules, itm_queue) and which
applications a queue feeds is the caller's: a backend composes a transport
with its capture.

A configuration request waits for the kernel's acknowledgement on the same
socket; the packets read meanwhile are kept (:class:`.deferred.Deferred`) and
run by the next :meth:`QueueTransport.process`, never inside the request,
which may come from an application's callback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Final

from ..dispatch import ACCEPTED, DROPPED, MODIFIED, Runner, accept_all
from ..epoch import EPOCH
from ..hooks import Hook
from ..packet import Packet
from . import codec as nfq
from .deferred import Deferred, await_ack
from .mmsg import MultiReceiver, open_receiver

log = logging.getLogger("libitm")

#: where a queue's packets go: its hook and the runner of its applications
#: (None: nobody, accept them)
Route = Callable[[int], "tuple[Hook, Runner] | None"]


class TransportError(RuntimeError):
    """nfnetlink_queue refused or did not answer a request."""


FULL_COPY = 0xFFFF
_RBUF_SIZE = 0x20000
_SEND_FLUSH = 0x4000
# a modified packet from this many bytes on is sent from the receive buffer with
# its verdict's header (sendmsg), not copied into the verdict buffer first
_GATHER_FROM = 4096
# recvmmsg slots: room for the copy range plus the attributes before the payload
_SLOT_OVERHEAD = 1024
_SLOTS = 128  # slots per recvmmsg for small copy ranges
_SLOTS_LARGE = 64  # ... and for whole packets (slots of 65 KiB)
# the part of a whole-packet slot in the receiver's dense area: a packet of an
# ordinary MTU and its attributes (see MultiReceiver)
_DENSE = 2048
_FIRST: Final = [0]  # where the one datagram of a recv_into starts

_MSG_PACKET: Final = nfq.MSG_PACKET
_PAYLOAD: Final = nfq.NFQA_PAYLOAD
_PACKET_HDR: Final = nfq.NFQA_PACKET_HDR
_MARK: Final = nfq.NFQA_MARK
_CAP_LEN: Final = nfq.NFQA_CAP_LEN
_SKB_INFO: Final = nfq.NFQA_SKB_INFO
_TIMESTAMP: Final = nfq.NFQA_TIMESTAMP
_WANTED: Final = frozenset({_PACKET_HDR, _MARK, _CAP_LEN, _SKB_INFO, _TIMESTAMP})
_CSUMNOTREADY: Final = nfq.NFQA_SKB_CSUMNOTREADY
_NF_DROP: Final = nfq.NF_DROP
_TS: Final = struct.Struct(">qq")
_PAD: Final = (b"", b"\0\0\0", b"\0\0", b"\0")
_LITTLE: Final = sys.byteorder == "little"

# a receive buffer and its views: bytes, memoryview, native 32-bit and 16-bit words
_Views = tuple[bytearray, memoryview, memoryview, memoryview]


_SO_MEMINFO: Final = 55
_SK_MEMINFO_DROPS: Final = 8


def socket_drops(sock: socket.socket) -> int:
    """The socket's drop count (SK_MEMINFO_DROPS of SO_MEMINFO; 0 if unavailable)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4 * (_SK_MEMINFO_DROPS + 1))
    except (OSError, AttributeError):
        return 0
    if len(raw) < 4 * (_SK_MEMINFO_DROPS + 1):
        return 0
    return int(struct.unpack_from("=I", raw, 4 * _SK_MEMINFO_DROPS)[0])


@functools.lru_cache(maxsize=64)
def _fast_layout(sig_len: int) -> struct.Struct:
    """A packet message laid out as the last one walked, whose attributes between
    NFQA_PACKET_HDR and NFQA_PAYLOAD took ``sig_len`` bytes: (nlmsg_len,
    nlmsg_type | nlmsg_flags << 16, res_id (the queue, network order),
    NFQA_PACKET_HDR's attribute header, packet id (network order), the
    ``sig_len`` attribute bytes, NFQA_PAYLOAD's attribute header), native
    little-endian words as in :meth:`NfqueueBackend._messages`."""
    return struct.Struct(f"<II10xHII4x{sig_len}sI")


def _word_views(buf: bytearray) -> tuple[memoryview, memoryview]:
    """``buf`` as native 32-bit and 16-bit words (its length is a multiple of 4)."""
    mv = memoryview(buf)
    return mv.cast("I"), mv.cast("H")


class QueueTransport:
    """One nfnetlink_queue socket: queues bound and configured, packets in, verdicts out.

    ``route(q)`` names the hook and runner of queue ``q``'s packets (asked again
    when the configuration epoch moves); ``accept_verdict`` answers a packet
    the applications accepted (NF_ACCEPT; the kernel backend's NF_REPEAT lets
    itm_mod go on with the next application). Options as the backends take
    them: ``queue_maxlen``, ``copy_range`` (the receive slots' size until a
    queue is configured), ``batch``, ``rcvbuf``, ``gso``, ``fail_open``,
    ``use_recvmmsg``.
    """

    def __init__(
        self,
        route: Route,
        accept_verdict: int = nfq.NF_ACCEPT,
        *,
        queue_maxlen: int = 4096,
        copy_range: int = 128,
        batch: int = 256,
        rcvbuf: int | None = None,
        gso: bool = False,
        fail_open: bool = True,
        use_recvmmsg: bool = True,
    ) -> None:
        """See the class docstring."""
        if not 20 <= copy_range <= FULL_COPY:
            raise ValueError("copy_range must be in 20..65535")
        self.route = route
        self.accept_verdict = accept_verdict
        self.queue_maxlen = queue_maxlen
        self.copy_range = copy_range
        self.batch = max(1, batch)
        self.rcvbuf = rcvbuf
        self.gso = gso
        self.fail_open = fail_open
        self.use_recvmmsg = use_recvmmsg
        self._sock: socket.socket | None = None
        self._rbuf = bytearray(_RBUF_SIZE)
        self._rmv = memoryview(self._rbuf)
        self._rbuf_views: _Views = (self._rbuf, self._rmv, *_word_views(self._rbuf))
        self._rx: MultiReceiver | None = None
        self._rx_views: _Views | None = None
        # the attribute bytes between NFQA_PACKET_HDR and NFQA_PAYLOAD of the last
        # packet walked, and the values read from them (mark, cap_len, skb_info, ts)
        self._sig: bytes | None = None
        self._sig_vals: tuple[int, int, int, float | None] = (0, 0, 0, None)
        self._sig_hdr = -1  # the NFQA_PACKET_HDR attribute header word before them
        self._out = bytearray()
        #: the queues bound on this socket, with their copy ranges (0: not configured)
        self.bound: dict[int, int] = {}
        self._seq = 0
        self._socket_drops = 0  # the socket's drop count when last read (kept after close)
        # (views, n, starts, lengths, datagram, offset): received, not yet handled
        self._leftover: tuple[_Views, int, list[int], list[int], int, int] | None = None
        #: datagrams of packets read while a config request waited for its ack
        self._deferred = Deferred()
        self._cbuf: bytearray | None = None  # the config requests' receive buffer
        self.c = {
            "packets": 0,
            "accepted": 0,
            "dropped": 0,
            "modified": 0,
            "verdict_msgs": 0,
            "batch_msgs": 0,
            "sends": 0,
            "recvs": 0,
            "enobufs": 0,
            "netlink_errors": 0,
            "bad_messages": 0,
        }

    # ------------------------------------------------------------ the socket
    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._sock is not None

    def open(self) -> None:
        """The nfnetlink_queue socket, sized and non-blocking."""
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfq.NETLINK_NETFILTER)
        self._sock = s
        s.bind((0, 0))
        rcv = self.rcvbuf or min(64 << 20, max(4 << 20, self.queue_maxlen * 2560))
        for opt, size in ((nfq.SO_RCVBUFFORCE, rcv), (nfq.SO_SNDBUFFORCE, 4 << 20)):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                s.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_RCVBUF if opt == nfq.SO_RCVBUFFORCE else socket.SO_SNDBUF,
                    size,
                )
        try:
            s.setsockopt(nfq.SOL_NETLINK, nfq.NETLINK_NO_ENOBUFS, 1)
        except OSError:
            log.warning("NETLINK_NO_ENOBUFS not available; ENOBUFS will be counted")
        s.setblocking(False)

    def bind(self, q: int, rng: int | None = None) -> int:
        """Bind queue ``q`` to this socket; 0 or the errno nfnetlink_queue answered.

        With ``rng``, the same request also sets what :meth:`configure` sets: a
        queue that packets are already sent to (a restarted worker's, an
        application's that itm_queue registered) is never bound without a copy
        mode, when nfnetlink_queue would drop its packets."""
        if rng is None:
            msg = nfq.config_cmd(q, nfq.NFQNL_CFG_CMD_BIND, seq=self._next_seq())
        else:
            msg = self._params(q, rng, bind=True)
        err = self._config(msg)
        if err == 0:
            self.bound[q] = rng or 0
            if rng is not None:
                self._ensure_receiver()
        return err

    def unbind(self, q: int) -> None:
        """Let queue ``q`` go (no answer awaited)."""
        self.bound.pop(q, None)
        self._ensure_receiver()
        s = self._sock
        if s is not None:
            with contextlib.suppress(OSError):
                s.send(nfq.config_cmd(q, nfq.NFQNL_CFG_CMD_UNBIND, ack=False))

    def configure(self, q: int, rng: int) -> None:
        """Set queue ``q``'s copy range, length and flags (fail-open, GSO) from the options."""
        err = self._config(self._params(q, rng))
        if err:
            raise TransportError(f"configuring nfqueue {q} failed: {os.strerror(err)}")
        self.bound[q] = rng
        self._ensure_receiver()

    def _params(self, q: int, rng: int, *, bind: bool = False) -> bytes:
        """The config request for queue ``q``'s copy range, length and flags."""
        flags = (nfq.NFQA_CFG_F_FAIL_OPEN if self.fail_open else 0) | (
            nfq.NFQA_CFG_F_GSO if self.gso else 0
        )
        return nfq.config_params(
            q,
            copy_mode=nfq.NFQNL_COPY_PACKET,
            copy_range=rng,
            maxlen=self.queue_maxlen,
            flags=flags,
            mask=nfq.NFQA_CFG_F_FAIL_OPEN | nfq.NFQA_CFG_F_GSO,
            seq=self._next_seq(),
            bind=bind,
        )

    def close(self) -> None:
        """Hand back the packets still queued (:meth:`_drain_after_rules_removed`),
        unbind the queues, close the socket."""
        s = self._sock
        if s is None:
            return
        try:
            self._drain_after_rules_removed()
        finally:
            for q in list(self.bound):
                with contextlib.suppress(OSError):
                    s.send(nfq.config_cmd(q, nfq.NFQNL_CFG_CMD_UNBIND, ack=False))
            self._socket_drops = socket_drops(s)
            s.close()
            self._sock = None
            self.bound.clear()
            self._deferred.close()
            if self._rx is not None:
                self._rx_views = None
                self._rx.close()
                self._rx = None

    def _drain_after_rules_removed(self) -> None:
        quiet_until = time.monotonic() + 0.02
        hard_end = time.monotonic() + 1.0
        while time.monotonic() < hard_end:
            if self.process():
                quiet_until = time.monotonic() + 0.02
            elif time.monotonic() >= quiet_until:
                break
            else:
                time.sleep(0.002)

    def fileno(self) -> int:
        """The netlink socket (readable when packets wait)."""
        if self._sock is None:
            raise TransportError("the queue socket is not open")
        return self._sock.fileno()

    def fds(self) -> tuple[int, int]:
        """What a loop watches: the socket, and the eventfd that is readable while
        packets read during a config request wait for :meth:`process`."""
        return self.fileno(), self._deferred.fileno()

    def counters(self) -> dict[str, int]:
        """packets, verdicts, messages, sends, ENOBUFS, netlink errors, socket drops.

        ``socket_drops`` is the kernel's count of messages the netlink socket
        could not take (its receive buffer was full: the overflows ENOBUFS
        reports, which NETLINK_NO_ENOBUFS silences), read with SO_MEMINFO.
        """
        c = dict(self.c)
        if self._sock is not None:
            self._socket_drops = socket_drops(self._sock)
        c["socket_drops"] = self._socket_drops
        return c

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add another transport's :meth:`counters` (a worker's) to this one's."""
        for key, value in counts.items():
            if key == "socket_drops":
                self._socket_drops += value
            elif key in self.c:
                self.c[key] += value

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _config(self, msg: bytes) -> int:
        """Send a config request and wait for its ack (its errno, 0: done).

        Packets read meanwhile are kept for :meth:`process`, not run: the request
        may come from an application's callback (``register_hook`` there), which
        must not run callbacks inside it, nor have a batch verdict accept the
        packet it is still deciding. Its own buffer: the packet loop's may be in
        use below the caller."""
        s = self._sock
        assert s is not None
        if self._cbuf is None:
            self._cbuf = bytearray(_RBUF_SIZE)
        result = await_ack(s, msg, self._cbuf, self._deferred, nfq.MSG_PACKET)
        if result is None:
            raise TransportError("nfnetlink_queue did not answer a config request")
        return result

    # ------------------------------------------------------------ hot path
    def _ensure_receiver(self) -> None:
        """(Re)create the recvmmsg slots when the largest copy range needs bigger ones."""
        s = self._sock
        if s is None or not self.use_recvmmsg or not isinstance(s, socket.socket):
            return
        need = max([r for r in self.bound.values() if r] or [self.copy_range]) + _SLOT_OVERHEAD
        rx = self._rx
        if rx is not None and rx.slot_size >= need:
            return
        slots = max(1, min(self.batch, _SLOTS if need <= 4096 else _SLOTS_LARGE))
        new = open_receiver(s, slots, need, _DENSE if need > 4096 else None)
        if new is None:
            if rx is None:
                log.info("recvmmsg not available; reading one message per recv")
            return
        if rx is not None:
            self._rx_views = None
            rx.close()
        self._rx = new
        self._rx_views = (new.buf, memoryview(new.buf), *_word_views(new.buf))

    def process(self) -> int:
        """Drain waiting packets (at most ``batch``), then send all verdicts at once."""
        s = self._sock
        if s is None:
            return 0
        out = self._out
        out.clear()
        # per queue, the id of the last plainly accepted packet, in network byte
        # order as in its message (one NFQNL_MSG_VERDICT_BATCH each at the end)
        pending: dict[int, int] = {}
        handled = 0
        try:
            lo = self._leftover
            if lo is not None:
                self._leftover = None
                lviews, ln, lstarts, llengths, li, lpos = lo
                handled += self._messages(lviews, ln, lstarts, llengths, pending, out, li, lpos)
            if self._rx is not None and self._rx_views is not None:
                handled = self._drain_mmsg(handled, pending, out)
            else:
                handled = self._drain_recv(s, handled, pending, out)
        finally:
            self._flush(out, pending)
        return handled

    def _drain_mmsg(self, handled: int, pending: dict[int, int], out: bytearray) -> int:
        """:meth:`process` with recvmmsg: read until the socket is empty or ``batch``
        packets were handled (``handled`` so far; returns the new count). The
        packets kept during a config request run before anything newer is read."""
        c = self.c
        kept = self._deferred.kept
        while handled < self.batch:
            if kept:
                handled += self._run_kept(pending, out)
                continue
            # asked again each time: a callback may have configured bigger slots
            rx, views = self._rx, self._rx_views
            if rx is None or views is None:
                break
            try:
                n = rx.recv(self.batch - handled)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    c["enobufs"] += 1
                    continue
                raise
            if n == 0:
                break
            c["recvs"] += 1
            lens = rx.lengths(n)
            handled += self._messages(views, n, rx.starts(lens), lens, pending, out)
            if len(out) > _SEND_FLUSH:
                self._send(out)
                out.clear()
        return handled

    def _drain_recv(
        self, s: socket.socket, handled: int, pending: dict[int, int], out: bytearray
    ) -> int:
        """:meth:`_drain_mmsg` one datagram per ``recv_into`` (no recvmmsg)."""
        c = self.c
        kept = self._deferred.kept
        recv_into = s.recv_into
        buf = self._rbuf
        rviews = self._rbuf_views
        while handled < self.batch:
            if kept:
                handled += self._run_kept(pending, out)
                continue
            try:
                n = recv_into(buf)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    c["enobufs"] += 1
                    continue
                raise
            c["recvs"] += 1
            handled += self._messages(rviews, 1, _FIRST, [n], pending, out)
            if len(out) > _SEND_FLUSH:
                self._send(out)
                out.clear()
        return handled

    def _run_kept(self, pending: dict[int, int], out: bytearray) -> int:
        """Handle the oldest datagram kept during a config request; packets handled."""
        buf, n = self._deferred.take()
        views = (buf, memoryview(buf), *_word_views(buf))
        return self._messages(views, 1, _FIRST, [n], pending, out)

    def _messages(
        self,
        views: _Views,
        n: int,
        starts: list[int],
        lengths: list[int],
        pending: dict[int, int],
        out: bytearray,
        first: int = 0,
        first_pos: int = -1,
    ) -> int:
        """Handle every netlink message in the ``n`` datagrams at ``starts[i]``.

        (From datagram ``first``, at offset ``first_pos`` in it when given: the
        rest of a batch that an exception interrupted, see ``_leftover``.)

        The packet path of the backend, in two lanes:

        * the fast lane takes a datagram holding one packet message of the
          same queue as the previous packet, laid out as the previous one
          (NFQA_PACKET_HDR first, the same attribute bytes up to NFQA_PAYLOAD:
          interfaces, mark, ...), nothing reconfigured since (:mod:`libitm.epoch`):
          one struct unpack reads the header, one reused :class:`Packet` points
          at the payload, a plainly accepted packet only updates ``pending`` and
          a modified one gets its verdict packed at once;
        * the general lane takes everything else, message by message: header
          fields read as native words, the attributes walked when their bytes
          change (then remembered for the fast lane).

        Both lanes hand the packet to the hook's runner
        (:meth:`Dispatcher.runner`: the five-callback rule, written once).
        Packets that need their own verdict otherwise (dropped, mark changed)
        go through :meth:`_answer`. Returns how many packet messages were handled.
        """
        if not _LITTLE:
            return self._messages_portable(
                views, n, starts, lengths, pending, out, first, first_pos
            )
        buf, rmv, m32, m16 = views
        c = self.c
        route = self.route
        answer = self._answer
        acc = self.accept_verdict
        acc_raw = socket.htonl(acc)  # as it reads natively in a message
        pack_verdict = nfq.VERDICT_PAYLOAD_RAW.pack
        v_head = nfq.VERDICT_RAW_HEAD
        v_attr = nfq.verdict_raw_attr(acc_raw)
        ntohl = socket.ntohl
        startswith = buf.startswith
        epoch = EPOCH
        sig, sig_vals, sig_hdr = self._sig, self._sig_vals, self._sig_hdr
        sig_end = 32 + len(sig) if sig is not None else 0
        sig_w = sig_end >> 2
        sig_min = sig_end + 4
        sig_unpack = _fast_layout(len(sig)).unpack_from if sig is not None else None
        mark, cap, info, ts = sig_vals
        # where the current queue's packets go (see _route), as of seen_epoch: its
        # hook and the runner of the applications there (Dispatcher.runner)
        q = 0
        cur_q_raw = -1
        seen_epoch = -1
        hook = Hook.IP_IN
        run: Runner = accept_all
        rp = Packet.from_view(rmv[0:0], 0, 0, hook, None, False)
        rp_meta = False  # rp's fields other than the bytes are this packet's
        handled = packets = dropped = modified = verdicts = nfast = 0
        resume = first if first_pos >= 0 else -1
        i = first
        pos = length = 0
        answered = completed = False
        try:
            while i < n:
                if sig_unpack is not None and i != resume:
                    # ------------------------------------------------ fast lane
                    while i < n:
                        pos = starts[i]
                        try:
                            length, tf, q_raw, ha, pid_raw, sg, pa = sig_unpack(buf, pos)
                        except struct.error:  # a datagram shorter than the layout
                            break
                        plen = (pa & 0xFFFF) - 4
                        if (
                            tf != _MSG_PACKET
                            or q_raw != cur_q_raw
                            or length != lengths[i]
                            or sg != sig
                            or ha != sig_hdr
                            or pa >> 16 != _PAYLOAD
                            or plen < 0
                            or sig_min + plen > length
                            or epoch[0] != seen_epoch
                        ):
                            break
                        nfast += 1
                        pkt = rp
                        pkt._buf = mv = rmv[pos + sig_min : pos + sig_min + plen]
                        pkt._len = plen
                        pkt.orig_len = cap if cap > plen else plen
                        pkt._layout = None
                        if not rp_meta:
                            pkt._mark = pkt._orig_mark = mark
                            pkt.hook = hook
                            pkt.timestamp = ts
                            pkt.csum_not_ready = (info & _CSUMNOTREADY) != 0
                            pkt.modified = pkt.mark_changed = False
                            pkt._orig = None
                            rp_meta = True
                        try:
                            r = run(pkt)
                        except BaseException:
                            pkt.restore()
                            nfq.append_verdict(out, q, ntohl(pid_raw), acc)
                            verdicts += 1
                            answered = True
                            raise
                        if pkt.mark_changed or r == DROPPED:
                            dropped += answer(out, pending, q, pid_raw, r, pkt, mv)
                            rp_meta = False
                        elif r == ACCEPTED:
                            pending[q] = pid_raw
                        else:
                            if pending:
                                self._release(out, pending, q)
                            head = pack_verdict(
                                36 + plen, v_head, q_raw, v_attr, pid_raw, 4 + plen, _PAYLOAD
                            )
                            if plen < _GATHER_FROM:
                                out += head
                                out += mv
                                if plen & 3:
                                    out += _PAD[plen & 3]
                            else:
                                # a big (GSO) packet is sent from where it lies
                                self._send(out, head, mv, _PAD[plen & 3])
                                out.clear()
                            pkt.modified = False
                            pkt._orig = None
                            if info & _CSUMNOTREADY:
                                rp_meta = False  # finalize() cleared csum_not_ready
                            verdicts += 1
                            modified += 1
                            if len(out) > _SEND_FLUSH:
                                self._send(out)
                                out.clear()
                        i += 1
                    if i >= n:
                        break
                # ------------------------------------------------- general lane
                pos = starts[i]
                end = pos + lengths[i]
                if i == resume:
                    pos = first_pos
                while pos + 16 <= end:
                    p = pos >> 2  # word index: every message starts 4-aligned
                    length = m32[p]
                    mtype = m16[p + p + 2]
                    if length < 16 or pos + length > end:
                        c["bad_messages"] += 1
                        break
                    if mtype != _MSG_PACKET:
                        if mtype == nfq.NLMSG_ERROR:
                            err, _ = nfq.decode_error(buf, pos, length)
                            if err:
                                c["netlink_errors"] += 1
                                if c["netlink_errors"] <= 10:
                                    log.warning("nfnetlink_queue error: %s", os.strerror(err))
                        pos += (length + 3) & ~3
                        continue
                    handled += 1
                    mend = pos + length
                    poff = -1
                    # the common case: NFQA_PACKET_HDR first, then the same attribute
                    # bytes as the previous packet, then NFQA_PAYLOAD
                    if (
                        sig is not None
                        and length >= sig_min
                        and m32[p + 5] == sig_hdr
                        and startswith(sig, pos + 32)
                    ):
                        w = m32[p + sig_w]
                        if w >> 16 == _PAYLOAD:
                            plen = (w & 0xFFFF) - 4
                            poff = pos + sig_end + 4
                            if plen < 0 or poff + plen > mend:
                                poff = -1
                            else:
                                pid_raw = m32[p + 6]
                    if poff < 0:
                        # walk the attributes; remember their bytes for the next packet
                        rp_meta = False
                        a = pos + 20
                        pid_raw = -1
                        poff = plen = 0
                        mark = cap = info = 0
                        ts = None
                        while a + 4 <= mend:
                            w = m32[a >> 2]
                            alen = w & 0xFFFF
                            t = (w >> 16) & 0x3FFF
                            if alen < 4 or a + alen > mend:
                                pid_raw = -2
                                break
                            if t == _PAYLOAD:
                                poff = a + 4
                                plen = alen - 4
                                break
                            if t in _WANTED:
                                if alen < 8:
                                    pid_raw = -2
                                    break
                                if t == _PACKET_HDR:
                                    pid_raw = m32[(a + 4) >> 2]
                                elif t == _MARK:
                                    mark = ntohl(m32[(a + 4) >> 2])
                                elif t == _CAP_LEN:
                                    cap = ntohl(m32[(a + 4) >> 2])
                                elif t == _SKB_INFO:
                                    info = ntohl(m32[(a + 4) >> 2])
                                elif alen >= 20:  # NFQA_TIMESTAMP
                                    sec, usec = _TS.unpack_from(buf, a + 4)
                                    ts = sec + usec / 1e6
                            a += (alen + 3) & ~3
                        w = m32[p + 5] if length >= 32 else 0
                        if (
                            poff >= pos + 36
                            and pid_raw >= 0
                            and (w >> 16) & 0x3FFF == _PACKET_HDR
                            and 9 <= (w & 0xFFFF) <= 12
                        ):
                            # NFQA_PACKET_HDR first, in 12 bytes (nla_len 11 from the
                            # kernel): remember what follows it
                            sig_hdr = w
                            sig = bytes(buf[pos + 32 : poff - 4])
                            sig_vals = (mark, cap, info, ts)
                            sig_end = 32 + len(sig)
                            sig_w = sig_end >> 2
                            sig_min = sig_end + 4
                            sig_unpack = _fast_layout(len(sig)).unpack_from
                        else:
                            sig = sig_unpack = None
                    if length < 20 or pid_raw < 0:
                        c["bad_messages"] += 1
                        pos += (length + 3) & ~3
                        continue
                    packets += 1
                    q_raw = m16[(pos + 18) >> 1]
                    if q_raw != cur_q_raw or epoch[0] != seen_epoch:
                        q = ((q_raw & 0xFF) << 8) | (q_raw >> 8)
                        rt = route(q)
                        if rt is None:
                            pending[q] = pid_raw
                            pos += (length + 3) & ~3
                            continue
                        hook, run = rt
                        cur_q_raw = q_raw
                        seen_epoch = epoch[0]
                        rp_meta = False
                    mv = rmv[poff : poff + plen]
                    pkt = Packet.from_view(
                        mv, cap or plen, mark, hook, ts, (info & _CSUMNOTREADY) != 0
                    )
                    try:
                        r = run(pkt)
                    except BaseException:
                        nfq.append_verdict(out, q, ntohl(pid_raw), acc)
                        verdicts += 1
                        answered = True
                        raise
                    if r == ACCEPTED and not pkt.mark_changed:
                        pending[q] = pid_raw
                    else:
                        dropped += answer(out, pending, q, pid_raw, r, pkt, mv)
                    pos += (length + 3) & ~3
                i += 1
            completed = True
        finally:
            if not completed:
                # The packets received but not handled yet must not be lost with
                # the buffer (closing the socket would drop them): the next
                # process() - also the one of close() - starts with them.
                nxt = pos + ((length + 3) & ~3) if answered else pos
                self._leftover = (views, n, starts, lengths, i, nxt)
            self._sig, self._sig_vals, self._sig_hdr = sig, sig_vals, sig_hdr
            handled += nfast
            packets += nfast
            c["packets"] += packets
            c["accepted"] += packets - dropped
            c["modified"] += modified
            c["verdict_msgs"] += verdicts
        return handled

    def _release(self, out: bytearray, pending: dict[int, int], q: int) -> None:
        """Batch-accept the earlier plainly accepted packets of queue ``q`` now, before
        a later packet's own verdict: packets leave in the order they came."""
        earlier = pending.pop(q, None)
        if earlier is not None:
            nfq.append_verdict(out, q, socket.ntohl(earlier), self.accept_verdict, batch=True)
            self.c["batch_msgs"] += 1

    def _answer(
        self,
        out: bytearray,
        pending: dict[int, int],
        q: int,
        pid_raw: int,
        r: int,
        pkt: Packet,
        payload: memoryview,
    ) -> int:
        """The own verdict of a packet the applications dropped (``r``), or changed in
        bytes or mark (the earlier accepted packets of its queue are released
        first); ``pid_raw`` is its id in network order. Returns 1 if dropped."""
        c = self.c
        if r == DROPPED:
            nfq.append_verdict(out, q, socket.ntohl(pid_raw), nfq.NF_DROP)
            c["verdict_msgs"] += 1
            c["dropped"] += 1
            return 1
        self._release(out, pending, q)
        nfq.append_verdict(
            out,
            q,
            socket.ntohl(pid_raw),
            self.accept_verdict,
            mark=pkt.mark if pkt.mark_changed else None,
            payload=payload if r == MODIFIED else None,
        )
        c["verdict_msgs"] += 1
        if r == MODIFIED:
            c["modified"] += 1
        if len(out) > _SEND_FLUSH:
            self._send(out)
            out.clear()
        return 0

    def _messages_portable(
        self,
        views: _Views,
        n: int,
        starts: list[int],
        lengths: list[int],
        pending: dict[int, int],
        out: bytearray,
        first: int = 0,
        first_pos: int = -1,
    ) -> int:
        """:meth:`_messages` through :func:`codec.decode_packet` and
        :meth:`_packet` (any byte order)."""
        handled = 0
        buf = views[0]
        unpack = nfq.NLMSGHDR.unpack_from
        i = first
        pos = length = 0
        completed = in_packet = False
        try:
            for i in range(first, n):
                pos = starts[i]
                end = pos + lengths[i]
                if i == first and first_pos >= 0:
                    pos = first_pos
                while pos + 16 <= end:
                    length, mtype, _, _, _ = unpack(buf, pos)
                    if length < 16 or pos + length > end:
                        self.c["bad_messages"] += 1
                        break
                    if mtype == _MSG_PACKET:
                        handled += 1
                        in_packet = True  # _packet answers its packet before raising
                        self._packet(pos, length, pending, out, views)
                        in_packet = False
                    elif mtype == nfq.NLMSG_ERROR:
                        err, _ = nfq.decode_error(buf, pos, length)
                        if err:
                            self.c["netlink_errors"] += 1
                    pos += (length + 3) & ~3
            completed = True
        finally:
            if not completed:
                nxt = pos + ((length + 3) & ~3) if in_packet else pos
                self._leftover = (views, n, starts, lengths, i, nxt)
        return handled

    def _packet(
        self,
        pos: int,
        length: int,
        pending: dict[int, int],
        out: bytearray,
        views: _Views | None = None,
    ) -> None:
        """One packet message, decoded with :func:`codec.decode_packet` (the
        path for big-endian machines, where the word views of :meth:`_messages`
        do not apply); the same :meth:`_route`, dispatcher and verdicts as the
        general lane."""
        c = self.c
        buf, rmv = (self._rbuf, self._rmv) if views is None else views[:2]
        try:
            m = nfq.decode_packet(buf, pos, length)
        except ValueError:
            c["bad_messages"] += 1
            return
        c["packets"] += 1
        q = m.queue
        pid_raw = socket.htonl(m.packet_id)
        rt = self.route(q)
        if rt is None:
            pending[q] = pid_raw
            c["accepted"] += 1
            return
        hook, run = rt
        mv = rmv[m.payload_off : m.payload_off + m.payload_len]
        pkt = Packet(
            mv,
            orig_len=m.cap_len or m.payload_len,
            mark=m.mark,
            hook=hook,
            timestamp=m.timestamp,
            csum_not_ready=bool(m.skb_info & nfq.NFQA_SKB_CSUMNOTREADY),
        )
        try:
            r = run(pkt)
        except BaseException:
            nfq.append_verdict(out, q, m.packet_id, self.accept_verdict)
            c["verdict_msgs"] += 1
            raise
        if r == ACCEPTED and not pkt.mark_changed:
            pending[q] = pid_raw
            c["accepted"] += 1
        elif not self._answer(out, pending, q, pid_raw, r, pkt, mv):
            c["accepted"] += 1

    def _flush(self, out: bytearray, pending: dict[int, int]) -> None:
        """Batch-accept the plainly accepted packets of each queue, then send."""
        for q, pid in pending.items():
            nfq.append_verdict(out, q, socket.ntohl(pid), self.accept_verdict, batch=True)
            self.c["batch_msgs"] += 1
        pending.clear()
        if out:
            self._send(out)
            out.clear()

    def _send(self, out: bytearray, *more: bytes | memoryview) -> None:
        """Send ``out``, and ``more`` after it (gathered, not copied), as one datagram."""
        s = self._sock
        if s is None:
            return
        while True:
            try:
                if more:
                    s.sendmsg([out, *more])
                else:
                    s.send(out)
                self.c["sends"] += 1
                return
            except BlockingIOError:
                select.select([], [s], [], 1.0)
            except InterruptedError:
                continue
