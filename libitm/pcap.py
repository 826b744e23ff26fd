"""A small reader and writer for pcap and pcapng captures (no third-party dependency).

Formats: classic libpcap files (microsecond and nanosecond, either byte order)
and pcapng (Section Header, Interface Description, Enhanced, Simple and the
obsolete Packet blocks; several sections and interfaces, each interface with
its own link type, snap length and timestamp resolution ``if_tsresol`` /
offset ``if_tsoffset``; either byte order). Other pcapng blocks (name
resolution, statistics, custom) are skipped.

Link types: Ethernet (1, with 802.1Q/802.1ad tags), raw IP (101, and 12 / 14 as
some systems spell it), IPv4 (228), IPv6 (229), Linux cooked capture v1 (113)
and v2 (276, what ``tcpdump -i any`` writes with libpcap >= 1.10) and BSD
loopback (0).

Anything else — an empty, truncated or malformed file, another format, another
link type — raises :class:`PcapError` with a one-line message.

:func:`writer_for` writes a result in the format of its input: classic pcap
with the input's link type and time resolution, or pcapng with the input's
interfaces (link type, snap length, ``if_tsresol``, ``if_tsoffset``) and each
packet on its own interface with its own timestamp. Packet bytes are written
as given; block options, comments and non-packet blocks are not copied.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = {12, 14, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6}
SUPPORTED_LINKTYPES = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2} | _RAW_ALIASES
)

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_BLOCK_IDB = 1
_BLOCK_PB = 2  # obsolete Packet Block
_BLOCK_SPB = 3
_BLOCK_EPB = 6
_OPT_END = 0
_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14
#: the largest record or block accepted: a bigger length is a damaged file
MAX_RECORD = 1 << 26
US = 1_000_000
NS = 1_000_000_000


class PcapError(ValueError):
    """The file is not a capture libitm can read (the message says why, in one line)."""


@dataclass
class Interface:
    """A capture interface: one per classic pcap, one per pcapng IDB."""

    linktype: int
    snaplen: int
    units: int = US  # timestamp units per second
    tsresol: int | None = None  # the pcapng if_tsresol byte, when the file had one
    tsoffset: int = 0  # pcapng if_tsoffset: seconds added to every timestamp


@dataclass
class PcapRecord:
    """One captured frame: time, captured bytes, original length on the wire.

    ``ts_frac`` counts ``units`` per second (microseconds or nanoseconds in a
    classic pcap: ``nanosecond`` says which; a pcapng interface's if_tsresol).
    ``linktype`` and ``interface`` say how to read ``data`` and where it was
    captured (-1: the file's only link type). ``simple``: it came from a pcapng
    Simple Packet Block, which has no time (it gets the previous packet's).
    """

    ts_sec: int
    ts_frac: int
    data: bytes
    orig_len: int
    nanosecond: bool = False
    linktype: int = -1
    interface: int = 0
    units: int = 0
    simple: bool = False

    @property
    def units_per_second(self) -> int:
        """The unit of ``ts_frac``."""
        return self.units or (NS if self.nanosecond else US)

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch."""
        return self.ts_sec + self.ts_frac / self.units_per_second


def _check_linktype(linktype: int, where: str) -> None:
    if linktype not in SUPPORTED_LINKTYPES:
        known = ", ".join(str(t) for t in sorted(SUPPORTED_LINKTYPES))
        raise PcapError(f"unsupported link type {linktype} {where} (libitm reads {known})")


class PcapReader:
    """Iterate over the records of a pcap or pcapng file.

    After construction: ``format`` ("pcap" or "pcapng"), ``linktype``,
    ``snaplen`` and ``nanosecond`` of the (first) interface, and
    ``interfaces``, which a pcapng file extends as its blocks are read.
    """

    def __init__(self, f: BinaryIO) -> None:
        """Read the file header of the open binary file ``f``."""
        self._f = f
        self._pos = 0
        self.interfaces: list[Interface] = []
        head = self._read(4)
        if not head:
            raise PcapError("empty file: not a capture")
        if len(head) < 4:
            raise PcapError(f"not a capture: only {len(head)} bytes")
        if struct.unpack("<I", head)[0] == PCAPNG_SHB:
            self.format = "pcapng"
            self._endian = "<"
            self._base = 0
            self._pending: list[PcapRecord] = []
            self._last_ts = (0, 0, US)
            self._read_shb(head + self._exact(4, "the section header block"))
            self._records = self._ng_records()
            first = self._first_interface()
        else:
            self.format = "pcap"
            first = self._read_classic_header(head)
            self._records = self._classic_records()
        self.linktype = first.linktype
        self.snaplen = first.snaplen
        self.nanosecond = first.units == NS

    # -- common -----------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def _exact(self, n: int, what: str) -> bytes:
        start = self._pos
        data = self._read(n)
        if len(data) < n:
            raise PcapError(
                f"truncated {self.format} file: it ends inside {what} "
                f"(byte {start}: {len(data)} of {n} bytes)"
            )
        return data

    def __iter__(self) -> Iterator[PcapRecord]:
        return self._records

    # -- classic pcap -----------------------------------------------------

    def _read_classic_header(self, head: bytes) -> Interface:
        (magic,) = struct.unpack("<I", head)
        if magic in (MAGIC_US, MAGIC_NS):
            self._endian = "<"
        else:
            (magic,) = struct.unpack(">I", head)
            if magic not in (MAGIC_US, MAGIC_NS):
                raise PcapError(f"not a pcap or pcapng capture (it starts with {head.hex()})")
            self._endian = ">"
        rest = self._exact(20, "the pcap file header")
        _, _, _, _, snaplen, linktype = struct.unpack(self._endian + "HHiIII", rest)
        linktype &= 0x0FFFFFFF
        _check_linktype(linktype, "in the pcap header")
        iface = Interface(linktype, snaplen, NS if magic == MAGIC_NS else US)
        self.interfaces.append(iface)
        return iface

    def _classic_records(self) -> Iterator[PcapRecord]:
        rec = struct.Struct(self._endian + "IIII")
        iface = self.interfaces[0]
        nano = iface.units == NS
        index = 0
        while True:
            h = self._read(16)
            if not h:
                return
            if len(h) < 16:
                raise PcapError(
                    f"truncated pcap file: it ends inside the header of record {index} "
                    f"(byte {self._pos - len(h)})"
                )
            sec, frac, incl, orig = rec.unpack(h)
            if incl > MAX_RECORD:
                raise PcapError(
                    f"damaged pcap file: record {index} claims {incl} bytes (byte {self._pos - 16})"
                )
            data = self._exact(incl, f"record {index}")
            yield PcapRecord(sec, frac, data, orig, nano, iface.linktype)
            index += 1

    # -- pcapng -----------------------------------------------------------

    def _block_length(self, raw: bytes, btype: int, start: int) -> int:
        length: int = struct.unpack(self._endian + "I", raw)[0]
        if length < 12 or length % 4 or length > MAX_RECORD:
            raise PcapError(
                f"damaged pcapng file: block of type {btype:#x} at byte {start} has length {length}"
            )
        return length

    def _read_shb(self, h: bytes) -> None:
        """A section header; ``h``: its type and length, already read."""
        start = self._pos - len(h)
        bom = self._exact(4, "a section header block")
        if struct.unpack("<I", bom)[0] == PCAPNG_BYTE_ORDER:
            self._endian = "<"
        elif struct.unpack(">I", bom)[0] == PCAPNG_BYTE_ORDER:
            self._endian = ">"
        else:
            raise PcapError(
                f"not a valid pcapng file: bad byte-order magic {bom.hex()} at byte {start + 8}"
            )
        length = self._block_length(h[4:], PCAPNG_SHB, start)
        if length < 28:
            raise PcapError(f"damaged pcapng file: section header at byte {start} is too short")
        body = self._exact(length - 12, "a section header block")
        major, _minor = struct.unpack(self._endian + "HH", body[:4])
        if major != 1:
            raise PcapError(f"unsupported pcapng version {major} (libitm reads version 1)")
        self._check_trailer(body, length, start)
        self._base = len(self.interfaces)  # interface ids restart in each section

    def _check_trailer(self, body: bytes, length: int, start: int) -> None:
        (trail,) = struct.unpack(self._endian + "I", body[-4:])
        if trail != length:
            raise PcapError(
                f"damaged pcapng file: block at byte {start} has lengths {length} and {trail}"
            )

    def _blocks(self) -> Iterator[tuple[int, bytes, int]]:
        """(type, body without the trailing length, offset) of the blocks that follow."""
        while True:
            start = self._pos
            h = self._read(8)
            if not h:
                return
            if len(h) < 8:
                raise PcapError(
                    f"truncated pcapng file: it ends inside a block header (byte {start})"
                )
            if struct.unpack("<I", h[:4])[0] == PCAPNG_SHB:
                self._read_shb(h)
                continue
            (btype,) = struct.unpack(self._endian + "I", h[:4])
            length = self._block_length(h[4:], btype, start)
            body = self._exact(length - 8, f"a block of type {btype:#x} at byte {start}")
            self._check_trailer(body, length, start)
            yield btype, body[:-4], start

    def _interface(self, body: bytes, start: int) -> Interface:
        if len(body) < 8:
            raise PcapError(f"damaged pcapng file: interface block at byte {start} is too short")
        linktype, _, snaplen = struct.unpack(self._endian + "HHI", body[:8])
        _check_linktype(linktype, f"on interface {len(self.interfaces)}")
        iface = Interface(linktype, snaplen)
        for code, value in self._options(body[8:], start):
            if code == _OPT_TSRESOL and len(value) >= 1:
                res = value[0]
                iface.tsresol = res
                iface.units = 2 ** (res & 0x7F) if res & 0x80 else 10 ** (res & 0x7F)
            elif code == _OPT_TSOFFSET and len(value) >= 8:
                (iface.tsoffset,) = struct.unpack(self._endian + "q", value[:8])
        return iface

    def _options(self, data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
        off = 0
        while off + 4 <= len(data):
            code, length = struct.unpack(self._endian + "HH", data[off : off + 4])
            if code == _OPT_END:
                return
            value = data[off + 4 : off + 4 + length]
            if len(value) < length:
                raise PcapError(f"damaged pcapng file: bad option {code} in block at byte {start}")
            yield code, value
            off += 4 + (length + 3) // 4 * 4

    def _first_interface(self) -> Interface:
        """Read up to the first interface (the packet blocks met on the way are kept)."""
        for btype, body, start in self._blocks():
            if btype == _BLOCK_IDB:
                self.interfaces.append(self._interface(body, start))
                return self.interfaces[0]
            if btype in (_BLOCK_EPB, _BLOCK_SPB, _BLOCK_PB):
                raise PcapError(
                    f"damaged pcapng file: packet block at byte {start} before any interface"
                )
        # no interface at all: a valid capture without packets
        self._records = iter(())
        return Interface(LINKTYPE_ETHERNET, 0)

    def _ng_records(self) -> Iterator[PcapRecord]:
        index = 0
        for btype, body, start in self._blocks():
            if btype == _BLOCK_IDB:
                self.interfaces.append(self._interface(body, start))
                continue
            if btype == _BLOCK_EPB:
                if len(body) < 20:
                    raise PcapError(f"damaged pcapng file: packet block at byte {start}")
                ifid, hi, lo, incl, orig = struct.unpack(self._endian + "IIIII", body[:20])
                data = body[20 : 20 + incl]
            elif btype == _BLOCK_PB:
                if len(body) < 20:
                    raise PcapError(f"damaged pcapng file: packet block at byte {start}")
                ifid, _, hi, lo, incl, orig = struct.unpack(self._endian + "HHIIII", body[:20])
                data = body[20 : 20 + incl]
            elif btype == _BLOCK_SPB:
                if len(body) < 4:
                    raise PcapError(f"damaged pcapng file: simple packet block at byte {start}")
                (orig,) = struct.unpack(self._endian + "I", body[:4])
                # captured: the original length cut at interface 0's snap length
                snap = (
                    self.interfaces[self._base].snaplen if self._base < len(self.interfaces) else 0
                )
                ifid, incl = 0, min(orig, snap or orig, len(body) - 4)
                data = body[4 : 4 + incl]
            else:
                continue
            if len(data) < incl:
                raise PcapError(
                    f"damaged pcapng file: packet {index} at byte {start} claims {incl} bytes"
                )
            gid = self._base + ifid
            if gid >= len(self.interfaces):
                raise PcapError(
                    f"damaged pcapng file: packet {index} at byte {start} names interface "
                    f"{ifid}, which the section does not describe"
                )
            iface = self.interfaces[gid]
            if btype == _BLOCK_SPB:
                sec, frac, units = self._last_ts
                if units != iface.units:
                    sec, frac, units = sec, frac * iface.units // units, iface.units
            else:
                raw = (hi << 32) | lo
                units = iface.units
                sec, frac = divmod(raw, units)
                sec += iface.tsoffset
                self._last_ts = (sec, frac, units)
            yield PcapRecord(
                sec,
                frac,
                bytes(data),
                orig,
                units == NS,
                iface.linktype,
                gid,
                units,
                btype == _BLOCK_SPB,
            )
            index += 1


class PcapWriter:
    """Write records to a classic pcap file (one link type, us or ns resolution)."""

    format = "pcap"

    def __init__(
        self,
        f: BinaryIO,
        linktype: int = LINKTYPE_RAW,
        *,
        snaplen: int = 262144,
        nanosecond: bool = False,
    ) -> None:
        """Write the global header to the open binary file ``f``."""
        self._f = f
        self.linktype = linktype
        self.nanosecond = nanosecond
        magic = MAGIC_NS if nanosecond else MAGIC_US
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, rec: PcapRecord) -> None:
        """Append one record (its time converted to this file's resolution)."""
        if rec.linktype not in (-1, self.linktype):
            raise PcapError(
                f"a link type {rec.linktype} packet cannot go in a link type {self.linktype} pcap"
            )
        target = NS if self.nanosecond else US
        frac = rec.ts_frac
        if rec.units_per_second != target:
            frac = frac * target // rec.units_per_second
        self._f.write(
            struct.pack("<IIII", rec.ts_sec, frac, len(rec.data), max(rec.orig_len, len(rec.data)))
        )
        self._f.write(rec.data)

    def write_packet(self, timestamp: float, data: bytes, orig_len: int | None = None) -> None:
        """Append a frame with a float timestamp."""
        sec = int(timestamp)
        scale = NS if self.nanosecond else US
        frac = min(round((timestamp - sec) * scale), scale - 1)
        self.write(
            PcapRecord(
                sec, frac, data, len(data) if orig_len is None else orig_len, self.nanosecond
            )
        )


class PcapngWriter:
    """Write records to a pcapng file (little endian, one section).

    ``interfaces`` is the list of interfaces the records refer to (by index);
    an interface's description block is written before its first packet, so the
    list may grow while records are written (a :class:`PcapReader`'s does).
    """

    format = "pcapng"

    def __init__(self, f: BinaryIO, interfaces: list[Interface]) -> None:
        """Write the section header to the open binary file ``f``."""
        self._f = f
        self.interfaces = interfaces
        self._described = 0
        self._block(PCAPNG_SHB, struct.pack("<IHHq", PCAPNG_BYTE_ORDER, 1, 0, -1))

    def _block(self, btype: int, body: bytes) -> None:
        body += bytes(-len(body) % 4)
        length = len(body) + 12
        self._f.write(struct.pack("<II", btype, length) + body + struct.pack("<I", length))

    def _describe(self, upto: int) -> None:
        while self._described <= upto:
            iface = self.interfaces[self._described]
            opts = b""
            if iface.tsresol is not None:
                opts += struct.pack("<HHB3x", _OPT_TSRESOL, 1, iface.tsresol)
            if iface.tsoffset:
                opts += struct.pack("<HHq", _OPT_TSOFFSET, 8, iface.tsoffset)
            if opts:
                opts += struct.pack("<HH", _OPT_END, 0)
            self._block(_BLOCK_IDB, struct.pack("<HHI", iface.linktype, 0, iface.snaplen) + opts)
            self._described += 1

    def write(self, rec: PcapRecord) -> None:
        """Append one record on its interface, with its own timestamp."""
        if rec.interface >= len(self.interfaces):
            raise PcapError(f"a packet names interface {rec.interface}, which was not described")
        self._describe(rec.interface)
        iface = self.interfaces[rec.interface]
        if rec.simple and rec.interface == 0:
            self._block(_BLOCK_SPB, struct.pack("<I", max(rec.orig_len, len(rec.data))) + rec.data)
            return
        frac = rec.ts_frac
        if rec.units_per_second != iface.units:
            frac = frac * iface.units // rec.units_per_second
        raw = (rec.ts_sec - iface.tsoffset) * iface.units + frac
        head = struct.pack(
            "<IIIII",
            rec.interface,
            raw >> 32,
            raw & 0xFFFFFFFF,
            len(rec.data),
            max(rec.orig_len, len(rec.data)),
        )
        self._block(_BLOCK_EPB, head + rec.data)


def writer_for(reader: PcapReader, f: BinaryIO) -> PcapWriter | PcapngWriter:
    """A writer of ``reader``'s format, link types and time resolution (see the module doc)."""
    if reader.format == "pcapng":
        return PcapngWriter(f, reader.interfaces)
    return PcapWriter(
        f, reader.linktype, snaplen=max(reader.snaplen, 65535), nanosecond=reader.nanosecond
    )


def ip_offset(linktype: int, frame: bytes | bytearray | memoryview) -> int | None:
    """Where the IP header starts in ``frame``, or None if the frame is not IPv4/IPv6."""
    n = len(frame)
    if linktype in _RAW_ALIASES:
        off = 0
    elif linktype == LINKTYPE_ETHERNET:
        off = 12
        if n < 14:
            return None
        etype = (frame[12] << 8) | frame[13]
        while etype in (0x8100, 0x88A8) and n >= off + 6:
            off += 4
            etype = (frame[off] << 8) | frame[off + 1]
        if etype not in (0x0800, 0x86DD):
            return None
        off += 2
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        etype = (frame[14] << 8) | frame[15]
        if etype not in (0x0800, 0x86DD):
            return None
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        etype = (frame[0] << 8) | frame[1]
        if etype not in (0x0800, 0x86DD):
            return None
        off = 20
    elif linktype == LINKTYPE_NULL:
        if n < 4:
            return None
        off = 4
    else:
        return None
    if off >= n or (frame[off] >> 4) not in (4, 6):
        return None
    return off
