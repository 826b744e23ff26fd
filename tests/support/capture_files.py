"""Capture files written and read with struct, independently of libitm.pcap.

pcapng (RFC draft-ietf-opsawg-pcapng): Section Header, Interface Description
(with if_tsresol / if_tsoffset), Enhanced and Simple Packet blocks, plus a
Name Resolution block for a reader to skip; either byte order. Linux cooked
capture headers v1 (LINKTYPE_LINUX_SLL, 113: 16 bytes, protocol last) and v2
(LINKTYPE_LINUX_SLL2, 276: 20 bytes, protocol first).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

SLL = 113
SLL2 = 276
ETHERNET = 1
RAW = 101


def sll_header(proto: int = 0x0800, pkttype: int = 4) -> bytes:
    """Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol."""
    return struct.pack("!HHH8sH", pkttype, 772, 6, bytes(6) + b"\0\0", proto)


def sll2_header(proto: int = 0x0800, ifindex: int = 1, pkttype: int = 4) -> bytes:
    """Linux cooked v2: protocol, reserved, ifindex, ARPHRD, type, address length, address."""
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 772, pkttype, 6, bytes(8))


def write_classic(
    path: Path,
    linktype: int,
    frames: list[tuple[int, int, bytes]],
    *,
    big_endian: bool = False,
    nanosecond: bool = False,
) -> None:
    """A classic pcap: frames are (seconds, fraction, bytes)."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in frames:
        out += struct.pack(e + "IIII", sec, frac, len(data), len(data)) + data
    path.write_bytes(out)


@dataclass
class NgInterface:
    """An interface of a pcapng file: link type, snap length, timestamp options."""

    linktype: int
    snaplen: int = 0
    tsresol: int | None = None  # the if_tsresol byte
    tsoffset: int = 0


@dataclass
class NgPacket:
    """An Enhanced Packet Block (``simple``: a Simple Packet Block; no time, interface 0)."""

    interface: int
    ts: int  # in the interface's units
    data: bytes
    simple: bool = False
    orig: int = 0  # length on the wire; 0: len(data)


@dataclass
class NgFile:
    """What a pcapng file holds (one section)."""

    interfaces: list[NgInterface] = field(default_factory=list)
    packets: list[NgPacket] = field(default_factory=list)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_bytes(f: NgFile, *, big_endian: bool = False, extra_blocks: bool = True) -> bytes:
    """The file: SHB, IDBs, (a name resolution block), then the packets."""
    e = ">" if big_endian else "<"
    out = _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for i in f.interfaces:
        opts = b""
        if i.tsresol is not None:
            opts += struct.pack(e + "HHB3x", 9, 1, i.tsresol)
        if i.tsoffset:
            opts += struct.pack(e + "HHq", 14, 8, i.tsoffset)
        opts += struct.pack(e + "HH", 2, 4) + b"eth0"  # if_name, to be skipped
        opts += struct.pack(e + "HH", 0, 0)
        out += _block(e, 1, struct.pack(e + "HHI", i.linktype, 0, i.snaplen) + opts)
    if extra_blocks:  # a name resolution block: nothing a packet reader needs
        out += _block(e, 4, struct.pack(e + "HH", 0, 0))
    for p in f.packets:
        orig = p.orig or len(p.data)
        if p.simple:
            out += _block(e, 3, struct.pack(e + "I", orig) + p.data)
        else:
            head = struct.pack(
                e + "IIIII", p.interface, p.ts >> 32, p.ts & 0xFFFFFFFF, len(p.data), orig
            )
            out += _block(e, 6, head + p.data)
    return out


def read_pcapng(raw: bytes) -> NgFile:
    """Parse a one-section pcapng file (the blocks :func:`pcapng_bytes` writes)."""
    e = "<" if raw[8:12] == struct.pack("<I", 0x1A2B3C4D) else ">"
    assert struct.unpack(e + "I", raw[:4])[0] == 0x0A0D0D0A
    pos = struct.unpack(e + "I", raw[4:8])[0]
    f = NgFile()
    while pos < len(raw):
        btype, n = struct.unpack(e + "II", raw[pos : pos + 8])
        body = raw[pos + 8 : pos + n - 4]
        assert struct.unpack(e + "I", raw[pos + n - 4 : pos + n])[0] == n
        if btype == 1:
            lt, _, snap = struct.unpack(e + "HHI", body[:8])
            iface = NgInterface(lt, snap)
            off = 8
            while off + 4 <= len(body):
                code, ln = struct.unpack(e + "HH", body[off : off + 4])
                val = body[off + 4 : off + 4 + ln]
                if code == 0:
                    break
                if code == 9:
                    iface.tsresol = val[0]
                if code == 14:
                    iface.tsoffset = struct.unpack(e + "q", val)[0]
                off += 4 + (ln + 3) // 4 * 4
            f.interfaces.append(iface)
        elif btype == 6:
            ifid, hi, lo, incl, _ = struct.unpack(e + "IIIII", body[:20])
            f.packets.append(NgPacket(ifid, (hi << 32) | lo, body[20 : 20 + incl]))
        elif btype == 3:
            (orig,) = struct.unpack(e + "I", body[:4])
            incl = min(orig, f.interfaces[0].snaplen or orig)  # the rest is padding
            f.packets.append(NgPacket(0, 0, body[4 : 4 + incl], simple=True, orig=orig))
        pos += n
    return f
