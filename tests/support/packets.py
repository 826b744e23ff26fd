"""Builders for test packets and pcaps, independent of libitm's own code.

Checksums here are computed the slow, obvious way (RFC 1071 word by word) so
that tests compare libitm's incremental updates with a from-scratch result.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path


def ref_sum(data: bytes) -> int:
    """One's-complement sum of 16-bit words, word by word."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_csum(data: bytes) -> int:
    """Internet checksum of ``data``."""
    return ~ref_sum(data) & 0xFFFF


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + bytes((0, proto)) + length.to_bytes(2, "big")
    return src + dst + length.to_bytes(4, "big") + bytes((0, 0, 0, proto))


def tcp_header(sport: int, dport: int, flags: int = 0x10, seq: int = 1, ack: int = 0) -> bytes:
    """A 20-byte TCP header with a zero checksum."""
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)


def udp_header(sport: int, dport: int, payload_len: int) -> bytes:
    """An 8-byte UDP header with a zero checksum."""
    return struct.pack("!HHHH", sport, dport, 8 + payload_len, 0)


def build(
    src: str,
    dst: str,
    proto: int,
    l4: bytes,
    *,
    tos: int = 0,
    ttl: int = 64,
    csum: bool = True,
    ident: int = 1,
) -> bytes:
    """An IPv4 or IPv6 packet around transport bytes ``l4`` with correct checksums."""
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    l4b = bytearray(l4)
    coff = {6: 16, 17: 6, 1: 2, 58: 2}.get(proto)
    if csum and coff is not None:
        l4b[coff : coff + 2] = b"\0\0"
        ph = b"" if proto == 1 else _pseudo(s.packed, d.packed, proto, len(l4b))
        c = ref_csum(ph + bytes(l4b))
        if proto == 17 and c == 0:
            c = 0xFFFF
        l4b[coff : coff + 2] = c.to_bytes(2, "big")
    if s.version == 4:
        hdr = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                tos,
                20 + len(l4b),
                ident,
                0,
                ttl,
                proto,
                0,
                s.packed,
                d.packed,
            )
        )
        hdr[10:12] = ref_csum(bytes(hdr)).to_bytes(2, "big")
        return bytes(hdr) + bytes(l4b)
    first = (6 << 28) | (tos << 20) | 0x12345
    hdr6 = struct.pack("!IHBB16s16s", first, len(l4b), proto, ttl, s.packed, d.packed)
    return hdr6 + bytes(l4b)


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    flags: int = 0x18,
    tos: int = 0,
    ttl: int = 64,
) -> bytes:
    """A TCP packet."""
    return build(src, dst, 6, tcp_header(sport, dport, flags) + payload, tos=tos, ttl=ttl)


def udp(
    src: str, dst: str, sport: int, dport: int, payload: bytes = b"", *, tos: int = 0, ttl: int = 64
) -> bytes:
    """A UDP packet."""
    body = udp_header(sport, dport, len(payload)) + payload
    return build(src, dst, 17, body, tos=tos, ttl=ttl)


def icmp_echo(src: str, dst: str, payload: bytes = b"ping") -> bytes:
    """An ICMP (v4) or ICMPv6 echo request."""
    v6 = ipaddress.ip_address(src).version == 6
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 7, 1) + payload
    return build(src, dst, 58 if v6 else 1, body)


def verify(pkt: bytes) -> bool:
    """True when the IPv4 header checksum and the TCP/UDP/ICMP checksum verify."""
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0xF) * 4
        if ref_sum(pkt[:ihl]) != 0xFFFF:
            return False
        proto = pkt[9]
        src, dst, l4 = pkt[12:16], pkt[16:20], pkt[ihl:]
    else:
        proto = pkt[6]
        src, dst, l4 = pkt[8:24], pkt[24:40], pkt[40:]
    if proto not in (1, 6, 17, 58):
        return True
    if proto == 17 and v == 4 and l4[6:8] == b"\0\0":
        return True
    ph = b"" if proto == 1 else _pseudo(src, dst, proto, len(l4))
    return ref_sum(ph + l4) == 0xFFFF


ETH_HDR_V4 = bytes.fromhex("0200000000020200000000010800")
ETH_HDR_V6 = bytes.fromhex("02000000000202000000000186dd")


def write_pcap(
    path: Path, packets: list[tuple[float, bytes]], linktype: int = 101, ethernet: bool = False
) -> None:
    """Write a classic microsecond pcap; ``ethernet`` wraps each packet in a frame."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1 if ethernet else linktype))
        for ts, data in packets:
            if ethernet:
                data = (ETH_HDR_V4 if data[0] >> 4 == 4 else ETH_HDR_V6) + data
                if len(data) < 60:
                    data += b"\0" * (60 - len(data))
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            f.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
            f.write(data)


def read_pcap(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    """(linktype, [(timestamp, frame)]) of a little-endian microsecond pcap."""
    raw = Path(path).read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert magic == 0xA1B2C3D4
    pos = 24
    out = []
    while pos < len(raw):
        sec, usec, incl, _ = struct.unpack("<IIII", raw[pos : pos + 16])
        out.append((sec + usec / 1e6, raw[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return linktype, out


ROOT_DIR = Path(__file__).resolve().parents[2]
