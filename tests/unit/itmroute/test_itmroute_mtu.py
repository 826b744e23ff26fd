"""MSS clamping, ICMP "fragmentation needed", and a relay's TTL rule on plain bytes."""

from __future__ import annotations

import struct

from itmroute import hop, mtu
from libitm import Packet
from libitm.checksum import checksum

SRC = bytes([10, 77, 100, 1])
DST = bytes([10, 77, 200, 1])


def ip_header(proto: int, payload_len: int, df: bool = True, tos: int = 0) -> bytearray:
    hdr = bytearray(
        struct.pack(
            ">BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, 1, 0x4000 if df else 0, 64, proto, 0,
            SRC, DST,
        )
    )  # fmt: skip
    struct.pack_into(">H", hdr, 10, checksum(hdr))
    return hdr


def tcp_syn(options: bytes, flags: int = 0x02) -> bytearray:
    doff = (20 + len(options)) // 4
    tcp = bytearray(struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, doff << 4, flags, 65535, 0, 0))
    tcp += options
    pkt = ip_header(6, len(tcp)) + tcp
    pseudo = SRC + DST + struct.pack(">BBH", 0, 6, len(tcp))
    struct.pack_into(">H", pkt, 36, checksum(pseudo + bytes(tcp)))
    return pkt


def valid(pkt: bytes | bytearray) -> bool:
    return Packet(bytearray(pkt)).verify_checksums()


def mss_of(pkt: bytearray) -> int:
    i = 40
    while pkt[i] != 2:
        i += 1 if pkt[i] == 1 else pkt[i + 1]
    return int(struct.unpack_from(">H", pkt, i + 2)[0])


def test_syn_mss_is_clamped_and_the_checksum_stays_right() -> None:
    pkt = tcp_syn(b"\x02\x04\x05\xb4" + b"\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07")
    assert valid(pkt)
    assert mtu.clamp_mss(pkt, 1428)
    assert mss_of(pkt) == 1428
    assert valid(pkt)


def test_mss_at_an_odd_offset_is_clamped_too() -> None:
    pkt = tcp_syn(b"\x01\x02\x04\x05\xb4\x01\x01\x01")  # NOP, then MSS at offset 21
    assert valid(pkt)
    assert mtu.clamp_mss(pkt, 1000)
    assert mss_of(pkt) == 1000
    assert valid(pkt)


def test_small_mss_non_syn_and_other_protocols_are_left_alone() -> None:
    small = tcp_syn(b"\x02\x04\x02\x00")  # MSS 512
    assert not mtu.clamp_mss(small, 1428)
    ack = tcp_syn(b"\x02\x04\x05\xb4", flags=0x10)
    assert not mtu.clamp_mss(ack, 1428)
    udp = ip_header(17, 8) + bytes(8)
    assert not mtu.clamp_mss(udp, 1428)
    broken = tcp_syn(b"\x02\x00\x00\x00")  # option length 0 ends the walk
    assert not mtu.clamp_mss(broken, 1428)


def test_frag_needed_quotes_the_packet_and_says_the_mtu() -> None:
    big = ip_header(17, 1480) + struct.pack(">HHHH", 5000, 6000, 1488, 0) + bytes(1472)
    assert mtu.dont_fragment(big)
    assert not mtu.dont_fragment(ip_header(17, 8, df=False) + bytes(8))
    me = bytes([10, 77, 100, 1])
    icmp = mtu.frag_needed(big, 1468, me)
    p = Packet(bytearray(icmp))
    assert p.proto == 1 and p.icmp_type == 3 and p.icmp_code == 4
    assert p.src.packed == me and p.dst.packed == SRC  # back to the sender
    assert struct.unpack_from(">H", icmp, 26)[0] == 1468  # next-hop MTU
    assert icmp[28:] == bytes(big[:28])  # IP header + 8 bytes
    assert p.verify_checksums()
    assert checksum(icmp[:20]) == 0
    # the daemon hands over the queued packet as a read-only view
    assert mtu.frag_needed(memoryview(bytes(big)).toreadonly(), 1468, me) == icmp


def test_tunnel_mtu_subtracts_the_overhead() -> None:
    assert mtu.tunnel_mtu(1500, 32) == 1468


def test_a_relay_takes_one_off_the_ttl_and_keeps_the_checksum_right() -> None:
    for ttl in (64, 2, 255):
        pkt = bytearray(ip_header(17, 28) + bytes(8))
        pkt[8] = ttl
        struct.pack_into(">H", pkt, 10, 0)
        struct.pack_into(">H", pkt, 10, checksum(bytes(pkt[:20])))
        assert hop.decrement_ttl(pkt)
        assert pkt[8] == ttl - 1
        assert checksum(bytes(pkt[:20])) == 0  # still valid, computed from scratch
    v6 = bytearray(b"\x60" + bytes(6) + b"\x05" + bytes(32))
    assert hop.decrement_ttl(v6) and v6[7] == 4


def test_a_packet_out_of_ttl_is_not_sent_on_and_draws_time_exceeded() -> None:
    me = bytes([10, 77, 1, 2])
    for ttl in (1, 0):
        pkt = bytearray(ip_header(17, 28) + bytes(8))
        pkt[8] = ttl
        before = bytes(pkt)
        assert not hop.decrement_ttl(pkt)
        assert bytes(pkt) == before
        icmp = hop.time_exceeded(pkt, me)
        assert icmp is not None
        assert icmp[9] == 1 and icmp[12:16] == me and icmp[16:20] == pkt[12:16]
        assert (icmp[20], icmp[21]) == (11, 0)
        assert checksum(icmp[:20]) == 0 and checksum(icmp[20:]) == 0
        assert icmp[28:] == before[:28]  # the header and 8 bytes of payload quoted
    v6 = bytearray(b"\x60" + bytes(6) + b"\x01" + bytes(32))
    assert not hop.decrement_ttl(v6) and hop.time_exceeded(v6, me) is None


SRC6 = bytes.fromhex("fd770100000000000000000000000001")
DST6 = bytes.fromhex("fd770200000000000000000000000001")


def tcp6_syn(options: bytes) -> bytearray:
    doff = (20 + len(options)) // 4
    tcp = bytearray(struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, doff << 4, 0x02, 65535, 0, 0))
    tcp += options
    pseudo = SRC6 + DST6 + struct.pack(">IxxxB", len(tcp), 6)
    struct.pack_into(">H", tcp, 16, checksum(pseudo + bytes(tcp)))
    return bytearray(struct.pack(">IHBB", 0x6B800000, len(tcp), 6, 64) + SRC6 + DST6) + tcp


def test_an_ipv6_syn_is_clamped_with_its_checksum_right() -> None:
    for options in (b"\x02\x04\x05\xa0", b"\x01\x02\x04\x05\xa0\x00\x00\x00"):  # even, odd
        pkt = tcp6_syn(options)
        assert valid(pkt)
        assert mtu.clamp_mss(pkt, 1380)
        assert valid(pkt)  # checked from scratch by libitm's parser
        at = 40 + 20 + options.index(b"\x02\x04")
        assert struct.unpack_from(">H", pkt, at + 2)[0] == 1380
    assert not mtu.clamp_mss(tcp6_syn(b"\x02\x04\x04\x00"), 1380)  # 1024: already lower


def test_dscp_of_ipv4_and_ipv6() -> None:
    assert mtu.dscp_byte(ip_header(17, 8, tos=0xB9)) == 0xB8
    assert mtu.dscp_byte(tcp6_syn(b"")) == 0xB8  # traffic class 0xb8, ECN 0


def ip6_packet(next_header: int, payload: bytes, hops: int = 64, src: bytes = SRC6) -> bytearray:
    return bytearray(
        struct.pack(">IHBB16s16s", 6 << 28, len(payload), next_header, hops, src, DST6) + payload
    )


def test_an_ipv6_packet_too_big_draws_packet_too_big_with_the_tunnel_mtu() -> None:
    big = ip6_packet(17, bytes(1460))
    ptb = mtu.packet_too_big(big, 1434)
    assert ptb is not None
    kind, code, csum, word = struct.unpack_from(">BBHI", ptb)
    assert (kind, code, word) == (2, 0, 1434)
    assert csum == 0  # the ICMPv6 socket's kernel fills it in
    assert ptb[8:] == big[: 1280 - 48]  # as much of the packet as fits in 1280 bytes
    small = ip6_packet(17, bytes(20))
    ptb_small = mtu.packet_too_big(small, 1434)
    assert ptb_small is not None and ptb_small[8:] == small


def test_no_icmpv6_error_about_an_error_or_from_no_source() -> None:
    error = ip6_packet(58, bytes([1, 4]) + bytes(30))  # destination unreachable
    assert mtu.packet_too_big(error, 1434) is None
    echo = ip6_packet(58, bytes([128, 0]) + bytes(30))  # an echo request is answered
    assert mtu.packet_too_big(echo, 1434) is not None
    assert mtu.packet_too_big(ip6_packet(17, bytes(8), src=bytes(16)), 1434) is None
    assert mtu.packet_too_big(ip6_packet(17, bytes(8), src=b"\xff" + bytes(15)), 1434) is None
    assert mtu.packet_too_big(ip_header(17, 8) + bytes(8), 1434) is None  # IPv4


def test_an_ipv6_packet_out_of_hops_draws_icmpv6_time_exceeded() -> None:
    for hops in (1, 0):
        pkt = ip6_packet(17, bytes(16), hops)
        before = bytes(pkt)
        assert not hop.decrement_ttl(pkt) and bytes(pkt) == before
        msg = hop.time_exceeded6(pkt)
        assert msg is not None
        assert struct.unpack_from(">BBHI", msg) == (3, 0, 0, 0)
        assert msg[8:] == before
    assert hop.time_exceeded6(ip_header(17, 8) + bytes(8)) is None  # IPv4: time_exceeded's


def test_time_exceeded_for_an_icmp_socket_is_the_icmp_part_alone() -> None:
    pkt = bytearray(ip_header(17, 28) + bytes(8))
    pkt[8] = 1
    msg = hop.time_exceeded_message(pkt)
    assert msg is not None
    assert (msg[0], msg[1]) == (11, 0) and checksum(msg) == 0
    assert msg[8:] == pkt[:28]  # the header and 8 bytes of payload quoted
    assert hop.time_exceeded_message(ip6_packet(17, bytes(8), 1)) is None
