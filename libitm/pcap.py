"""A small reader and writer for classic libpcap files (no third-party dependency).

Link types: Ethernet (1, with 802.1Q/802.1ad tags), raw IP (101, and 12 / 14 as
some systems spell it), IPv4 (228), IPv6 (229), Linux cooked (113) and BSD
loopback (0). Microsecond and nanosecond files, either byte order.
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
_RAW_ALIASES = {12, 14, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6}
SUPPORTED_LINKTYPES = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL} | _RAW_ALIASES
)

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D


class PcapError(ValueError):
    """The file is not a classic pcap libitm can read."""


@dataclass
class PcapRecord:
    """One captured frame: time, captured bytes, original length on the wire."""

    ts_sec: int
    ts_frac: int  # microseconds or nanoseconds, as the file says
    data: bytes
    orig_len: int
    nanosecond: bool = False

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch."""
        return self.ts_sec + self.ts_frac / (1e9 if self.nanosecond else 1e6)


class PcapReader:
    """Iterate over the records of a pcap file."""

    def __init__(self, f: BinaryIO) -> None:
        """Read the global header of the open binary file ``f``."""
        self._f = f
        hdr = f.read(24)
        if len(hdr) < 24:
            raise PcapError("file is shorter than a pcap global header")
        (magic,) = struct.unpack("<I", hdr[:4])
        if magic in (MAGIC_US, MAGIC_NS):
            self._endian = "<"
        else:
            (magic,) = struct.unpack(">I", hdr[:4])
            if magic not in (MAGIC_US, MAGIC_NS):
                raise PcapError(
                    f"not a classic pcap file (magic {hdr[:4].hex()}); "
                    "pcapng is not supported, convert it with editcap -F pcap"
                )
            self._endian = ">"
        self.nanosecond = magic == MAGIC_NS
        _, _, _, _, self.snaplen, self.linktype = struct.unpack(self._endian + "HHiIII", hdr[4:])
        self.linktype &= 0x0FFFFFFF
        if self.linktype not in SUPPORTED_LINKTYPES:
            raise PcapError(f"unsupported pcap link type {self.linktype}")
        self._rec = struct.Struct(self._endian + "IIII")

    def __iter__(self) -> Iterator[PcapRecord]:
        while True:
            h = self._f.read(16)
            if not h:
                return
            if len(h) < 16:
                raise PcapError("pcap file ends inside a record header")
            sec, frac, incl, orig = self._rec.unpack(h)
            data = self._f.read(incl)
            if len(data) < incl:
                raise PcapError("pcap file ends inside a record")
            yield PcapRecord(sec, frac, data, orig, self.nanosecond)


class PcapWriter:
    """Write records to a pcap file (same link type and time resolution as given)."""

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
        self.nanosecond = nanosecond
        magic = MAGIC_NS if nanosecond else MAGIC_US
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, rec: PcapRecord) -> None:
        """Append one record (its time converted to this file's resolution)."""
        frac = rec.ts_frac
        if rec.nanosecond and not self.nanosecond:
            frac //= 1000
        elif self.nanosecond and not rec.nanosecond:
            frac *= 1000
        self._f.write(
            struct.pack("<IIII", rec.ts_sec, frac, len(rec.data), max(rec.orig_len, len(rec.data)))
        )
        self._f.write(rec.data)

    def write_packet(self, timestamp: float, data: bytes, orig_len: int | None = None) -> None:
        """Append a frame with a float timestamp."""
        sec = int(timestamp)
        scale = 1_000_000_000 if self.nanosecond else 1_000_000
        frac = min(round((timestamp - sec) * scale), scale - 1)
        self.write(
            PcapRecord(
                sec, frac, data, len(data) if orig_len is None else orig_len, self.nanosecond
            )
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
    elif linktype == LINKTYPE_NULL:
        if n < 4:
            return None
        off = 4
    else:
        return None
    if off >= n or (frame[off] >> 4) not in (4, 6):
        return None
    return off
