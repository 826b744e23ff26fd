"""Fragments: the network header of a later IPv6 fragment ends after its Fragment
header, its proto is the fragment's next header and it has no transport header
(as a later IPv4 fragment); first fragments keep their transport header."""

from __future__ import annotations

import struct

import pytest

from libitm import Packet
from libitm.checksum import checksum, ones_sum
from tests.support.packets import udp

V4 = ("10.1.2.3", "10.4.5.6")
V6 = ("fd00::1", "fd00:1::2")
DATA = bytes(range(100, 124))  # 24 bytes of a datagram's middle


def _v6_fragment(offset8: int, more: bool, body: bytes, *, hop: bool = False) -> bytes:
    """An IPv6 packet: fixed header, [hop-by-hop,] Fragment header (next header UDP)
    with fragment offset ``offset8`` (8-byte units), then ``body``."""
    fixed = bytearray(udp(*V6, 1, 2)[:40])
    frag = struct.pack("!BBHI", 17, 0, (offset8 << 3) | int(more), 0xABCD)
    ext = frag
    if hop:
        ext = bytes((44, 0, 1, 4, 0, 0, 0, 0)) + frag  # hop-by-hop (PadN), then Fragment
    fixed[6] = 0 if hop else 44
    fixed[4:6] = (len(ext) + len(body)).to_bytes(2, "big")
    return bytes(fixed) + ext + body


@pytest.mark.parametrize("hop", [False, True])
def test_ipv6_later_fragment_header_and_payload(hop: bool) -> None:
    raw = _v6_fragment(3, True, DATA, hop=hop)
    hlen = 56 if hop else 48
    p = Packet(raw)
    assert p.version == 6 and p.proto == 17
    assert p.header_length == hlen and p.payload_offset == hlen
    assert bytes(p.payload) == DATA
    assert p.sport is None and p.dport is None and p.l4_checksum is None


def test_ipv6_later_fragment_write_payload_writes_data_only() -> None:
    raw = _v6_fragment(3, False, DATA)
    p = Packet(raw)
    p.write_payload(0, b"zz")
    new = p.raw
    assert new[:48] == raw[:48], "the Fragment header (and no checksum) is left alone"
    assert new[48:] == b"zz" + DATA[2:]
    again = Packet(new)
    assert again.proto == 17 and again.header_length == 48
    with pytest.raises(ValueError, match="past the end"):
        p.write_payload(len(DATA) - 1, b"zz")


def test_ipv6_first_fragment_keeps_its_transport_header() -> None:
    whole = udp(*V6, 4242, 53, b"query")  # checksum right: an atomic fragment
    raw = _v6_fragment(0, False, whole[40:])
    p = Packet(raw)
    assert p.proto == 17 and p.header_length == 48
    assert (p.sport, p.dport) == (4242, 53)
    assert p.payload_offset == 56 and bytes(p.payload) == b"query"
    assert p.verify_checksums()
    p.write_payload(0, b"Q")
    assert p.raw[40] == 17 and p.verify_checksums()
    p.dport = 5353
    assert p.verify_checksums()


def test_ipv4_fragments_unchanged() -> None:
    first = bytearray(udp(*V4, 7, 8, DATA))
    first[6] = 0x20  # more fragments, offset 0
    first[10:12] = b"\0\0"
    first[10:12] = checksum(bytes(first[:20])).to_bytes(2, "big")
    p = Packet(first)
    assert p.header_length == 20 and (p.sport, p.dport) == (7, 8)
    assert bytes(p.payload) == DATA

    later = bytearray(first[:20]) + DATA
    later[2:4] = len(later).to_bytes(2, "big")
    later[6:8] = (0x2000 | 4).to_bytes(2, "big")  # more fragments, offset 32 bytes
    later[10:12] = b"\0\0"
    later[10:12] = checksum(bytes(later[:20])).to_bytes(2, "big")
    q = Packet(later)
    assert q.proto == 17 and q.header_length == 20 and q.payload_offset == 20
    assert q.sport is None and q.l4_checksum is None and bytes(q.payload) == DATA
    q.write_payload(0, b"zz")
    assert q.raw[:20] == bytes(later[:20]) and q.raw[20:] == b"zz" + DATA[2:]
    assert ones_sum(q.raw[:20]) == 0xFFFF
