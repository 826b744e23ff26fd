"""The packet an application sees: IPv4/IPv6 with TCP, UDP and ICMP headers.

Headers are parsed lazily over the packet's bytes (a writable buffer owned by the
backend). Setters change the bytes in place and update the IPv4 header checksum
and the TCP/UDP/ICMPv6 checksum incrementally (RFC 1624), and mark the packet
``modified`` so that the backend returns the new bytes with the verdict.

A :class:`Packet` is only valid during the callbacks of the packet it belongs to:
the backend reuses the buffer afterwards, and may reuse the object for the next
packet. Keep :meth:`Packet.copy` if you need the packet later.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

from . import checksum as _cs

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_ICMPV6: Final = 58
IPPROTO_DCCP: Final = 33
IPPROTO_SCTP: Final = 132
IPPROTO_UDPLITE: Final = 136
#: the protocols whose header starts with the source and destination ports
#: (those an Interest may name ports for)
PORT_PROTOS: Final = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_DCCP, IPPROTO_SCTP,
                                IPPROTO_UDPLITE})  # fmt: skip
#: the offset of the transport checksum libitm keeps right
_CSUM_AT: Final = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMP: 2, IPPROTO_ICMPV6: 2}

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10
TCP_URG: Final = 0x20
TCP_ECE: Final = 0x40
TCP_CWR: Final = 0x80

_V6_EXT_HEADERS: Final = frozenset({0, 43, 60, 44, 51})
_PSEUDO_HEADER_PROTOS: Final = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6})
_BE16: Final = struct.Struct(">H")
# IPv4: version/IHL and TOS, total length, header checksum
_V4_TOS_WORDS: Final = struct.Struct(">HH6xH")
#: the TOS setter keeps a whole copy of a packet up to this long for restore() (a
#: bigger one: only its first 12 bytes, which the setter changes)
_WHOLE_ORIG: Final = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PacketError(ValueError):
    """The bytes are not a packet libitm can parse (too short, not IPv4/IPv6)."""


class PacketTruncatedError(PacketError):
    """A change was asked for on a packet that the backend holds only in part."""


class _Layout:
    """Offsets found by parsing the network header once."""

    __slots__ = ("end", "l3_len", "l4", "l4_len", "proto", "version")

    def __init__(self, version: int, proto: int, l3_len: int, l4: int | None, end: int) -> None:
        self.version = version
        self.proto = proto
        self.l3_len = l3_len
        self.l4 = l4  # offset of the transport header, None for later fragments
        self.end = end  # end of the IP datagram inside the captured bytes
        self.l4_len = 0


class Packet:
    """One IPv4 or IPv6 packet, with lazily parsed headers and checksum-aware setters."""

    __slots__ = (
        "_buf",
        "_layout",
        "_len",
        "_mark",
        "_orig",
        "_orig_mark",
        "csum_not_ready",
        "hook",
        "mark_changed",
        "modified",
        "orig_len",
        "timestamp",
    )

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        *,
        orig_len: int | None = None,
        mark: int = 0,
        hook: int | None = None,
        timestamp: float | None = None,
        csum_not_ready: bool = False,
    ) -> None:
        """Wrap ``data`` (copied if it is immutable ``bytes``).

        ``orig_len`` is the packet's real length when ``data`` holds only its
        first bytes (nfqueue copy range, pcap snap length).
        """
        if isinstance(data, bytes):
            data = bytearray(data)
        mv = memoryview(data)
        self._buf = mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")
        self._len = len(self._buf)
        self.orig_len = self._len if orig_len is None else max(orig_len, self._len)
        self._mark = mark
        self._orig_mark = mark
        self.mark_changed = False
        self.hook = hook
        self.timestamp = timestamp
        self.csum_not_ready = csum_not_ready
        self.modified = False
        self._orig: bytes | None = None
        self._layout: _Layout | None = None

    @classmethod
    def from_view(
        cls,
        view: memoryview,
        orig_len: int,
        mark: int,
        hook: int | None,
        timestamp: float | None,
        csum_not_ready: bool,
    ) -> Packet:
        """A packet over ``view`` (a writable, 1-D, byte-format memoryview) — the backends'
        fast path: the same object as ``Packet(view, orig_len=..., ...)`` without the checks.
        """
        p = _new_packet(cls)
        p._buf = view
        n = p._len = len(view)
        p.orig_len = orig_len if orig_len > n else n
        p._mark = mark
        p._orig_mark = mark
        p.mark_changed = False
        p.hook = hook
        p.timestamp = timestamp
        p.csum_not_ready = csum_not_ready
        p.modified = False
        p._orig = None
        p._layout = None
        return p

    # ----------------------------------------------------------------- parsing
    def _parse(self) -> _Layout:
        lay = self._layout
        if lay is not None:
            return lay
        b = self._buf
        n = self._len
        if n >= 20 and b[0] == 0x45:
            # the common case: IPv4 without options
            tot = (b[2] << 8) | b[3]
            end = n if tot > n else (tot if tot > 20 else 20)
            if ((b[6] & 0x1F) << 8) | b[7]:
                lay = _Layout(4, b[9], 20, None, end)
            else:
                lay = _Layout(4, b[9], 20, 20, end)
                lay.l4_len = end - 20
            self._layout = lay
            return lay
        if n < 1:
            raise PacketError("empty packet")
        version = b[0] >> 4
        if version == 4:
            if n < 20:
                raise PacketError(f"IPv4 packet of {n} bytes is shorter than its header")
            ihl = (b[0] & 0x0F) * 4
            if ihl < 20 or ihl > n:
                raise PacketError(f"IPv4 header length {ihl} is invalid for {n} bytes")
            tot = (b[2] << 8) | b[3]
            end = min(max(tot, ihl), n)
            frag_off = ((b[6] << 8) | b[7]) & 0x1FFF
            lay = _Layout(4, b[9], ihl, ihl if frag_off == 0 else None, end)
        elif version == 6:
            if n < 40:
                raise PacketError(f"IPv6 packet of {n} bytes is shorter than its header")
            end = min(40 + ((b[4] << 8) | b[5]), n)
            nh = b[6]
            off = 40
            l4: int | None = None
            while True:
                if nh not in _V6_EXT_HEADERS:
                    l4 = off
                    break
                if off + 8 > end:
                    break  # extension header cut off: no transport header
                if nh == 44:
                    frag = ((b[off + 2] << 8) | b[off + 3]) >> 3
                    nxt, size = b[off], 8
                    if frag != 0:
                        # a later fragment: the network header ends after the
                        # Fragment header, what follows is data; proto is the
                        # fragment's next header (no transport header, as IPv4)
                        nh = nxt
                        off += size
                        break
                elif nh == 51:
                    nxt, size = b[off], (b[off + 1] + 2) * 4
                else:
                    nxt, size = b[off], (b[off + 1] + 1) * 8
                nh = nxt
                off += size
            lay = _Layout(6, nh, off, l4, end)
        else:
            raise PacketError(f"not an IP packet (version {version})")
        if lay.l4 is not None:
            lay.l4_len = max(0, lay.end - lay.l4)
        self._layout = lay
        return lay

    def _l4(self, need: int) -> int | None:
        """Offset of the transport header if at least ``need`` bytes of it are here."""
        lay = self._parse()
        if lay.l4 is None or lay.l4_len < need:
            return None
        return lay.l4

    def _l4_need(self) -> int:
        p = self._parse().proto
        if p == IPPROTO_TCP:
            return 20
        if p == IPPROTO_UDP:
            return 8
        return 4

    # -------------------------------------------------------------- properties
    @property
    def version(self) -> int:
        """4 or 6."""
        return self._parse().version

    @property
    def proto(self) -> int:
        """Transport protocol number (IPv6: after the extension headers; of a later
        fragment, the protocol its datagram carries, with no transport header here)."""
        return self._parse().proto

    @property
    def length(self) -> int:
        """The IP datagram's length as its header says (may exceed the captured bytes)."""
        b = self._buf
        if self._parse().version == 4:
            return (b[2] << 8) | b[3]
        return 40 + ((b[4] << 8) | b[5])

    @property
    def captured_length(self) -> int:
        """How many bytes of the packet the backend holds."""
        return self._len

    @property
    def truncated(self) -> bool:
        """True when only the first bytes of the packet are held (cannot be modified)."""
        return self.orig_len > self._len or self.length > self._len

    @property
    def header_length(self) -> int:
        """Length of the network header(s), IPv6 extension headers included (of a later
        IPv6 fragment, up to and including the Fragment header)."""
        return self._parse().l3_len

    @property
    def src(self) -> IPAddress:
        """Source address."""
        b = self._buf
        if self._parse().version == 4:
            return ipaddress.IPv4Address(bytes(b[12:16]))
        return ipaddress.IPv6Address(bytes(b[8:24]))

    @src.setter
    def src(self, value: IPAddress | str) -> None:
        self._set_addr(12 if self.version == 4 else 8, value)

    @property
    def dst(self) -> IPAddress:
        """Destination address."""
        b = self._buf
        if self._parse().version == 4:
            return ipaddress.IPv4Address(bytes(b[16:20]))
        return ipaddress.IPv6Address(bytes(b[24:40]))

    @dst.setter
    def dst(self, value: IPAddress | str) -> None:
        self._set_addr(16 if self.version == 4 else 24, value)

    @property
    def tos(self) -> int:
        """IPv4 TOS byte, or the IPv6 traffic class (DSCP << 2 | ECN)."""
        b = self._buf
        if self._parse().version == 4:
            return b[1]
        return ((b[0] & 0x0F) << 4) | (b[1] >> 4)

    @tos.setter
    def tos(self, value: int) -> None:
        if value.__class__ is not int or not 0 <= value <= 0xFF:
            _check_range("tos", value, 0xFF)
        b = self._buf
        n = self._len
        if (n >= 20 and b[0] == 0x45) or self._parse().version == 4:
            w0, tot, hc = _V4_TOS_WORDS.unpack_from(b)
            old = w0 & 0xFF
            if value == old:
                return
            if self._orig is None and tot <= n and self.orig_len <= n:
                # the first change to a whole packet: keep it for restore(); of a
                # big one (GSO) only the bytes this changes (a later change of
                # others keeps the rest then)
                self._orig = b.tobytes() if n <= _WHOLE_ORIG else b[:12].tobytes()
                self.modified = True
            else:
                self._prepare_write()
            b[1] = value
            # RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), where ~m + m' is 0xFFFF plus
            # the change of the TOS byte (the version/IHL byte is the same in m and
            # m'): the folded sum is ~HC + value - old modulo 0xFFFF, in 1..0xFFFF
            s = ((hc ^ 0xFFFF) + value - old - 1) % 0xFFFF
            _BE16.pack_into(b, 10, (s + 1) ^ 0xFFFF)
        else:
            if value == self.tos:
                return
            self._prepare_write()
            b[0] = (b[0] & 0xF0) | (value >> 4)
            b[1] = ((value & 0x0F) << 4) | (b[1] & 0x0F)

    traffic_class = tos

    @property
    def dscp(self) -> int:
        """The six DSCP bits of the TOS / traffic class."""
        return self.tos >> 2

    @dscp.setter
    def dscp(self, value: int) -> None:
        _check_range("dscp", value, 0x3F)
        self.tos = (value << 2) | (self.tos & 0x03)

    @property
    def ecn(self) -> int:
        """The two ECN bits of the TOS / traffic class."""
        return self.tos & 0x03

    @ecn.setter
    def ecn(self, value: int) -> None:
        _check_range("ecn", value, 0x03)
        self.tos = (self.tos & 0xFC) | value

    @property
    def ttl(self) -> int:
        """IPv4 TTL or IPv6 hop limit."""
        return self._buf[8] if self._parse().version == 4 else self._buf[7]

    @ttl.setter
    def ttl(self, value: int) -> None:
        _check_range("ttl", value, 0xFF)
        if value == self.ttl:
            return
        self._prepare_write()
        b = self._buf
        if self._parse().version == 4:
            old = bytes(b[8:10])
            b[8] = value
            self._adjust_ip_csum(old, b[8:10])
        else:
            b[7] = value

    hop_limit = ttl

    @property
    def sport(self) -> int | None:
        """The source port of TCP, UDP, UDP-Lite, DCCP and SCTP (None for other
        protocols, fragments, short packets)."""
        off = self._ports_offset()
        return None if off is None else (self._buf[off] << 8) | self._buf[off + 1]

    @sport.setter
    def sport(self, value: int) -> None:
        self._set_port(0, value)

    @property
    def dport(self) -> int | None:
        """The destination port (see :attr:`sport`)."""
        off = self._ports_offset()
        return None if off is None else (self._buf[off + 2] << 8) | self._buf[off + 3]

    @dport.setter
    def dport(self, value: int) -> None:
        self._set_port(2, value)

    @property
    def tcp_flags(self) -> int | None:
        """The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...)."""
        if self._parse().proto != IPPROTO_TCP:
            return None
        off = self._l4(14)
        return None if off is None else self._buf[off + 13]

    @property
    def fin(self) -> bool:
        """The TCP FIN flag (False for non-TCP)."""
        return bool((self.tcp_flags or 0) & TCP_FIN)

    @property
    def syn(self) -> bool:
        """The TCP SYN flag (False for non-TCP)."""
        return bool((self.tcp_flags or 0) & TCP_SYN)

    @property
    def rst(self) -> bool:
        """The TCP RST flag (False for non-TCP)."""
        return bool((self.tcp_flags or 0) & TCP_RST)

    @property
    def icmp_type(self) -> int | None:
        """ICMP / ICMPv6 type (None for other protocols)."""
        if self._parse().proto not in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            return None
        off = self._l4(2)
        return None if off is None else self._buf[off]

    @property
    def icmp_code(self) -> int | None:
        """ICMP / ICMPv6 code (None for other protocols)."""
        if self._parse().proto not in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            return None
        off = self._l4(2)
        return None if off is None else self._buf[off + 1]

    @property
    def payload_offset(self) -> int:
        """Offset of the transport payload (after the network header for unknown protocols
        and later fragments, whose bytes after it are all data)."""
        lay = self._parse()
        if lay.l4 is None:
            return lay.l3_len
        p = lay.proto
        if p == IPPROTO_TCP:
            off = self._l4(13)
            if off is None:
                return lay.end
            return min(off + (self._buf[off + 12] >> 4) * 4, lay.end)
        if p == IPPROTO_UDP:
            return min(lay.l4 + 8, lay.end)
        if p in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            return min(lay.l4 + 8, lay.end)
        return lay.l4

    @property
    def payload(self) -> memoryview:
        """The transport payload held (read-only; change it with :meth:`write_payload`)."""
        return self._buf[self.payload_offset : self._parse().end].toreadonly()

    @property
    def raw(self) -> bytes:
        """A copy of the bytes held."""
        return bytes(self._buf[: self._len])

    @property
    def data(self) -> memoryview:
        """A read-only view of the bytes held."""
        return self._buf[: self._len].toreadonly()

    @property
    def mark(self) -> int:
        """The firewall mark (nfqueue backend); setting it is returned with the verdict."""
        return self._mark

    @mark.setter
    def mark(self, value: int) -> None:
        _check_range("mark", value, 0xFFFFFFFF)
        self._mark = value
        self.mark_changed = value != self._orig_mark

    @property
    def flow(self) -> tuple[IPAddress, IPAddress, int | None, int | None, int]:
        """``(src, dst, sport, dport, proto)`` — one direction of a flow."""
        return (self.src, self.dst, self.sport, self.dport, self.proto)

    @property
    def ip_checksum(self) -> int | None:
        """The IPv4 header checksum field (None for IPv6)."""
        if self._parse().version != 4:
            return None
        return (self._buf[10] << 8) | self._buf[11]

    @property
    def l4_checksum(self) -> int | None:
        """The TCP/UDP/ICMP checksum field (None when absent or not held)."""
        off = self._l4_csum_offset()
        return None if off is None else (self._buf[off] << 8) | self._buf[off + 1]

    # ------------------------------------------------------------------ writes
    def write_payload(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Overwrite payload bytes at ``offset`` (same length) and fix the checksum."""
        start = self.payload_offset + offset
        end = start + len(data)
        if offset < 0 or end > self._parse().end:
            raise ValueError("write_payload goes past the end of the packet")
        self._prepare_write()
        lay = self._parse()
        csum_off = self._l4_csum_offset()
        if csum_off is None or lay.l4 is None:
            self._buf[start:end] = data
            return
        # Align the changed span to 16-bit words counted from the transport header.
        a = start - ((start - lay.l4) % 2)
        z = end + ((end - lay.l4) % 2)
        old = bytes(self._buf[a : min(z, lay.end)]).ljust(z - a, b"\0")
        self._buf[start:end] = data
        new = bytes(self._buf[a : min(z, lay.end)]).ljust(z - a, b"\0")
        self._adjust_l4_csum(old, new)

    def fix_l4_checksum(self) -> None:
        """Recompute the transport checksum from scratch (needs the whole packet).

        The packet counts as modified (it is returned with the new checksum), and
        :meth:`restore` undoes this too.
        """
        self._fix_l4_checksum(keep=True)

    def _fix_l4_checksum(self, keep: bool = False) -> None:
        """:meth:`fix_l4_checksum`; what it changes is kept for :meth:`restore` only
        with ``keep`` (:meth:`finalize`, the last change, keeps nothing)."""
        lay = self._parse()
        off = self._l4_csum_offset()
        if off is None or lay.l4 is None:
            return
        if self.truncated:
            raise PacketTruncatedError("cannot recompute the checksum of a truncated packet")
        if keep:
            self._prepare_write()
        b = self._buf
        b[off] = 0
        b[off + 1] = 0
        seg = b[lay.l4 : lay.end]
        if lay.proto in _PSEUDO_HEADER_PROTOS:
            start = _cs.ones_sum(self._pseudo_header(len(seg)))
        else:
            start = 0
        c = _cs.checksum(seg, start)
        if c == 0 and lay.proto == IPPROTO_UDP:
            c = 0xFFFF
        b[off] = c >> 8
        b[off + 1] = c & 0xFF

    def verify_checksums(self) -> bool:
        """True when the IPv4 header checksum and the transport checksum are right."""
        lay = self._parse()
        b = self._buf
        if lay.version == 4 and _cs.ones_sum(b[: lay.l3_len]) != 0xFFFF:
            return False
        off = self._l4_csum_offset()
        if off is None or lay.l4 is None or self.truncated:
            return True
        if lay.proto == IPPROTO_UDP and lay.version == 4 and b[off] == 0 and b[off + 1] == 0:
            return True
        seg = b[lay.l4 : lay.end]
        start = (
            _cs.ones_sum(self._pseudo_header(len(seg))) if lay.proto in _PSEUDO_HEADER_PROTOS else 0
        )
        return _cs.ones_sum(seg, start) == 0xFFFF

    def finalize(self) -> None:
        """Called by backends before returning a modified packet.

        A packet whose transport checksum is not computed yet (CHECKSUM_PARTIAL,
        nfqueue with GSO) holds only a pseudo-header sum: once handed back it is
        treated as complete, so compute the real checksum now.
        """
        if self.modified and self.csum_not_ready:
            self._fix_l4_checksum()
            self.csum_not_ready = False

    def restore(self) -> None:
        """Undo every change made since the packet was received."""
        orig = self._orig
        if orig is not None:
            self._buf[: len(orig)] = orig
            self._orig = None
            self._layout = None
        self.modified = False
        self._mark = self._orig_mark
        self.mark_changed = False

    def copy(self) -> Packet:
        """An independent packet with a copy of the bytes held."""
        p = Packet(
            bytearray(self._buf[: self._len]),
            orig_len=self.orig_len,
            mark=self._mark,
            hook=self.hook,
            timestamp=self.timestamp,
            csum_not_ready=self.csum_not_ready,
        )
        return p

    def __repr__(self) -> str:
        try:
            proto = self.proto
            s = f"{self.src}"
            d = f"{self.dst}"
            if self.sport is not None:
                s += f":{self.sport}"
                d += f":{self.dport}"
            return f"<Packet v{self.version} proto {proto} {s} > {d} len {self.length}>"
        except PacketError as e:
            return f"<Packet malformed: {e}>"

    # --------------------------------------------------------------- internals
    def _prepare_write(self) -> None:
        # The first change keeps a copy for restore(); truncation cannot change
        # (no setter changes the length), so it is checked then. The TOS setter
        # keeps only the head it changes: the rest is added to that copy here.
        orig = self._orig
        if orig is None:
            n = self._len
            if self.orig_len > n or self.length > n:
                raise PacketTruncatedError(
                    f"packet holds only {n} of {max(self.orig_len, self.length)} bytes; "
                    "register with needs_payload=True to modify packets"
                )
            self._orig = self._buf.tobytes()  # the view is exactly _len bytes long
        elif len(orig) < self._len:
            self._orig = orig + self._buf[len(orig) :].tobytes()
        self.modified = True

    def _ports_offset(self) -> int | None:
        if self._parse().proto not in PORT_PROTOS:
            return None
        return self._l4(4)

    def _l4_csum_offset(self) -> int | None:
        rel = _CSUM_AT.get(self._parse().proto)
        if rel is None:
            return None
        off = self._l4(rel + 2)
        return None if off is None else off + rel

    def _pseudo_header(self, l4_len: int) -> bytes:
        b = self._buf
        lay = self._parse()
        if lay.version == 4:
            return bytes(b[12:20]) + bytes((0, lay.proto)) + l4_len.to_bytes(2, "big")
        return bytes(b[8:40]) + l4_len.to_bytes(4, "big") + bytes((0, 0, 0, lay.proto))

    def _adjust_ip_csum(self, old: bytes | memoryview, new: bytes | memoryview) -> None:
        b = self._buf
        c = _cs.adjust((b[10] << 8) | b[11], old, new)
        b[10] = c >> 8
        b[11] = c & 0xFF

    def _adjust_l4_csum(self, old: bytes | memoryview, new: bytes | memoryview) -> None:
        off = self._l4_csum_offset()
        if off is None:
            return
        b = self._buf
        cur = (b[off] << 8) | b[off + 1]
        if self._parse().proto == IPPROTO_UDP and cur == 0 and self._parse().version == 4:
            return  # IPv4 UDP without checksum stays without
        c = _cs.adjust(cur, old, new)
        if c == 0 and self._parse().proto == IPPROTO_UDP:
            c = 0xFFFF
        b[off] = c >> 8
        b[off + 1] = c & 0xFF

    def _set_addr(self, off: int, value: IPAddress | str) -> None:
        addr = ipaddress.ip_address(value) if isinstance(value, str) else value
        lay = self._parse()
        if addr.version != lay.version:
            raise ValueError(
                f"cannot put an IPv{addr.version} address in an IPv{lay.version} packet"
            )
        new = addr.packed
        b = self._buf
        old = bytes(b[off : off + len(new)])
        if old == new:
            return
        self._prepare_write()
        b[off : off + len(new)] = new
        if lay.version == 4:
            self._adjust_ip_csum(old, new)
        if lay.proto in _PSEUDO_HEADER_PROTOS:
            self._adjust_l4_csum(old, new)

    def _set_port(self, rel: int, value: int) -> None:
        _check_range("port", value, 0xFFFF)
        off = self._ports_offset()
        if off is None:
            raise PacketError("packet has no ports to change")
        if self._parse().proto not in (IPPROTO_TCP, IPPROTO_UDP):
            # SCTP's checksum is a CRC32c, UDP-Lite's and DCCP's may cover part
            # of the packet only: libitm keeps TCP's and UDP's right
            raise PacketError("libitm rewrites the ports of TCP and UDP packets only")
        b = self._buf
        old = bytes(b[off + rel : off + rel + 2])
        new = value.to_bytes(2, "big")
        if old == new:
            return
        self._prepare_write()
        b[off + rel : off + rel + 2] = new
        self._adjust_l4_csum(old, new)


_new_packet = object.__new__


def _check_range(name: str, value: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
        raise ValueError(f"{name} must be an integer in 0..{hi}, not {value!r}")
