"""Packet parsing and checksum-preserving setters, checked against from-scratch sums."""

from __future__ import annotations

import ipaddress
import random

import pytest

from libitm import Packet, PacketError, PacketTruncatedError
from libitm.checksum import adjust, checksum, ones_sum
from tests.support.packets import build, icmp_echo, ref_sum, tcp, udp, udp_header, verify

V4 = ("10.1.2.3", "10.4.5.6")
V6 = ("fd00::1", "fd00:1::2")


@pytest.mark.parametrize("addrs", [V4, V6])
def test_parse_tcp(addrs: tuple[str, str]) -> None:
    raw = tcp(*addrs, 1234, 80, b"GET /", flags=0x19, tos=0xB8, ttl=33)
    p = Packet(raw)
    assert p.version == (4 if addrs is V4 else 6)
    assert p.src == ipaddress.ip_address(addrs[0])
    assert p.dst == ipaddress.ip_address(addrs[1])
    assert p.proto == 6
    assert (p.sport, p.dport) == (1234, 80)
    assert p.tos == 0xB8 and p.dscp == 0x2E and p.ecn == 0
    assert p.ttl == 33 and p.hop_limit == 33
    assert p.tcp_flags == 0x19 and p.fin and not p.syn
    assert bytes(p.payload) == b"GET /"
    assert p.raw == raw
    assert not p.modified and not p.truncated
    assert p.verify_checksums()


@pytest.mark.parametrize("addrs", [V4, V6])
def test_parse_udp_icmp(addrs: tuple[str, str]) -> None:
    p = Packet(udp(*addrs, 53, 5353, b"abc"))
    assert (p.proto, p.sport, p.dport, bytes(p.payload)) == (17, 53, 5353, b"abc")
    assert p.tcp_flags is None and p.icmp_type is None
    q = Packet(icmp_echo(*addrs))
    assert q.proto == (1 if addrs is V4 else 58)
    assert q.icmp_type == (8 if addrs is V4 else 128) and q.icmp_code == 0
    assert q.sport is None and q.dport is None
    assert q.verify_checksums()


def _mutations() -> list[tuple[str, object]]:
    return [
        ("tos", 0x10),
        ("tos", 0xFF),
        ("dscp", 46),
        ("ecn", 3),
        ("ttl", 1),
        ("sport", 40000),
        ("dport", 1),
    ]


@pytest.mark.parametrize("addrs", [V4, V6])
@pytest.mark.parametrize("kind", ["tcp", "udp"])
@pytest.mark.parametrize(("field", "value"), _mutations())
def test_setters_keep_checksums(addrs: tuple[str, str], kind: str, field: str, value: int) -> None:
    make = tcp if kind == "tcp" else udp
    raw = make(*addrs, 1111, 2222, b"payload-odd", tos=0x01)
    p = Packet(raw)
    setattr(p, field, value)
    assert getattr(p, field) == value
    assert p.modified
    assert verify(p.raw), "checksums do not verify after the change"
    # the bytes equal a packet built from scratch with the new field
    p2 = Packet(p.raw)
    assert p2.verify_checksums()


@pytest.mark.parametrize("addrs", [V4, V6])
@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp"])
def test_address_change_updates_pseudo_header(addrs: tuple[str, str], kind: str) -> None:
    if kind == "icmp":
        raw = icmp_echo(*addrs)
    else:
        raw = (tcp if kind == "tcp" else udp)(*addrs, 1, 2, b"x" * 7)
    p = Packet(raw)
    new_src = "192.168.77.1" if addrs is V4 else "2001:db8::77"
    new_dst = "172.16.0.9" if addrs is V4 else "2001:db8:1::1"
    p.src = new_src
    p.dst = ipaddress.ip_address(new_dst)
    assert str(p.src) == new_src and str(p.dst) == new_dst
    assert verify(p.raw)
    sport = None if kind == "icmp" else 1
    assert p.sport == sport


def test_tos_keeps_other_bits_and_ipv6_flow_label() -> None:
    p = Packet(tcp(*V6, 1, 2, tos=0xE1))
    p.tos = (p.tos | 0x10) & 0xFF
    assert p.tos == 0xF1
    assert p.raw[1] & 0x0F == 0x01 and p.raw[2:4] == bytes.fromhex("2345")  # flow label
    assert p.raw[0] >> 4 == 6


def test_random_changes_against_scratch() -> None:
    rng = random.Random(7)
    for _ in range(300):
        addrs = V4 if rng.random() < 0.5 else V6
        make = tcp if rng.random() < 0.5 else udp
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        p = Packet(
            make(
                *addrs,
                rng.randrange(65536),
                rng.randrange(65536),
                payload,
                tos=rng.randrange(256),
                ttl=rng.randrange(1, 256),
            )
        )
        p.tos = rng.randrange(256)
        p.ttl = rng.randrange(256)
        p.sport = rng.randrange(65536)
        p.dport = rng.randrange(65536)
        if payload:
            off = rng.randrange(len(payload))
            n = rng.randrange(1, len(payload) - off + 1)
            p.write_payload(off, bytes(rng.randrange(256) for _ in range(n)))
        assert verify(p.raw)


def test_tos_on_ipv4_against_scratch() -> None:
    """The TOS setter's shortcut for a whole IPv4 packet without options (RFC 1624
    on the header checksum), over header checksums of every kind, and undone by
    restore()."""
    rng = random.Random(11)
    for k in range(4000):
        old, new = rng.randrange(256), rng.randrange(256)
        ident = k * 17 % 65536
        raw = build(*V4, 17, udp_header(1, 2, 0), tos=old, ident=ident)
        p = Packet(raw)
        p.tos = new
        # the very bytes of a header built with the new TOS (checksum from scratch)
        assert p.raw == build(*V4, 17, udp_header(1, 2, 0), tos=new, ident=ident), (old, new, k)
        assert p.modified == (old != new)
        p.restore()
        assert p.raw == raw and not p.modified


def test_udp_zero_checksum_stays_zero() -> None:
    raw = bytearray(udp(*V4, 1, 2, b"abc"))
    raw[26:28] = b"\0\0"
    p = Packet(raw)
    p.dport = 99
    assert p.l4_checksum == 0
    assert verify(p.raw)


def test_restore_and_copy() -> None:
    raw = tcp(*V4, 1, 2, b"hi")
    p = Packet(raw)
    c = p.copy()
    p.tos = 0x10
    p.mark = 5
    assert p.modified and p.mark_changed and c.tos == 0
    p.restore()
    assert p.raw == raw and not p.modified and p.mark == 0 and not p.mark_changed


def test_truncated_packets_parse_but_refuse_changes() -> None:
    raw = tcp(*V4, 1, 2, b"x" * 100)
    p = Packet(raw[:60], orig_len=len(raw))
    assert p.truncated and p.sport == 1 and p.length == len(raw)
    with pytest.raises(PacketTruncatedError, match="needs_payload"):
        p.tos = 0x10
    assert p.raw == raw[:60]
    short = Packet(raw[:22])  # transport header cut off
    assert short.proto == 6 and short.sport is None and short.tcp_flags is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x45",
        b"\x45" + b"\0" * 10,
        b"\x60" + b"\0" * 20,
        b"\x15" + b"\0" * 40,
        bytes([0x4F]) + b"\0" * 30,
    ],
)
def test_malformed_raises_packet_error(raw: bytes) -> None:
    p = Packet(raw)
    with pytest.raises(PacketError):
        _ = p.src
    assert "malformed" in repr(p)


def test_later_fragment_has_no_ports() -> None:
    raw = bytearray(udp(*V4, 1, 2, b"x" * 16))
    raw[6:8] = (0x0002).to_bytes(2, "big")  # offset 16 bytes
    raw[10:12] = b"\0\0"
    raw[10:12] = checksum(bytes(raw[:20])).to_bytes(2, "big")
    p = Packet(raw)
    assert p.sport is None and p.dport is None
    p.ttl = 5
    assert ones_sum(p.raw[:20]) == 0xFFFF


def test_ipv6_extension_headers_are_walked() -> None:
    inner = tcp(*V6, 7, 8, b"z")
    hop = bytes((6, 0, 1, 4, 0, 0, 0, 0))  # hop-by-hop, next header TCP, PadN
    raw = bytearray(inner[:40] + hop + inner[40:])
    raw[6] = 0
    raw[4:6] = (len(raw) - 40).to_bytes(2, "big")
    p = Packet(raw)
    assert p.proto == 6 and p.header_length == 48 and (p.sport, p.dport) == (7, 8)
    p.dport = 9
    assert p.verify_checksums()


def test_partial_checksum_is_recomputed_on_finalize() -> None:
    raw = bytearray(tcp(*V4, 1, 2, b"data"))
    raw[36:38] = b"\x12\x34"  # what CHECKSUM_PARTIAL leaves: not a valid checksum
    p = Packet(raw, csum_not_ready=True)
    p.tos = 0x10
    p.finalize()
    assert verify(p.raw)


def test_setter_validation() -> None:
    p = Packet(tcp(*V4, 1, 2))
    for field, bad in (("tos", 256), ("dscp", 64), ("ecn", 4), ("ttl", -1), ("dport", 70000)):
        with pytest.raises(ValueError):
            setattr(p, field, bad)
    with pytest.raises(ValueError, match="IPv6 address"):
        p.src = "fd00::1"
    q = Packet(icmp_echo(*V4))
    with pytest.raises(PacketError):
        q.dport = 5
    assert not p.modified


def test_rfc1624_examples() -> None:
    # RFC 1624 section 4: HC = 0xDD2F, m 0x5555 -> 0x3285 gives HC' = 0x0000
    assert adjust(0xDD2F, b"\x55\x55", b"\x32\x85") == 0x0000
    data = bytes(range(40))
    c = checksum(data)
    changed = data[:10] + b"\xab\xcd" + data[12:]
    assert adjust(c, data[10:12], b"\xab\xcd") == checksum(changed)


def test_build_helper_is_sane() -> None:
    assert verify(build("10.0.0.1", "10.0.0.2", 99, b"abc"))


def test_ipv4_options_shift_the_transport_header() -> None:
    base = udp(*V4, 4242, 53, b"opt")
    opts = bytes((1, 1, 1, 0))  # NOP NOP NOP EOL
    hdr = bytearray(base[:20] + opts)
    hdr[0] = 0x46
    hdr[2:4] = (len(base) + 4).to_bytes(2, "big")
    hdr[10:12] = b"\0\0"
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    p = Packet(bytes(hdr) + base[20:])
    assert p.header_length == 24 and (p.sport, p.dport) == (4242, 53)
    assert bytes(p.payload) == b"opt"
    p.tos = 0x28
    p.dport = 5353
    assert verify(p.raw)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 39, 40, 1499, 1500, 4096, 9001, 65000, 65535])
def test_ones_sum_matches_rfc1071_word_by_word_at_every_size(size: int) -> None:
    """ones_sum folds big buffers before dividing; the sum is RFC 1071's all the same."""
    rng = random.Random(size)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    assert ones_sum(data) == ref_sum(data)
    assert ones_sum(memoryview(bytearray(data))) == ref_sum(data)
    if size % 2 == 0:
        for start in (1, 0x1234, 0xFFFF):
            assert ones_sum(data, start) == ref_sum(data + start.to_bytes(2, "big"))
    # a sum that is a multiple of 0xffff reads 0xffff, an all-zero one 0
    assert ones_sum(b"\xff" * (size & ~1)) == (0xFFFF if size > 1 else 0)
    assert ones_sum(bytes(size)) == 0


def test_restore_after_tos_then_other_changes() -> None:
    """The TOS setter keeps only the head it changes for restore(); a later change
    of other bytes keeps the rest: restore() gives back every original byte."""
    raw = tcp(*V4, 1, 2, bytes(range(256)) * 40)
    p = Packet(bytearray(raw))
    p.tos = 0x28
    assert p.modified
    p.restore()
    assert bytes(p.raw) == raw and not p.modified
    p.tos = 0x28
    p.dport = 9
    p.ttl = 3
    assert verify(p.raw)
    p.restore()
    assert bytes(p.raw) == raw


def test_fix_l4_checksum_counts_as_a_change_and_restores() -> None:
    raw = bytearray(tcp(*V4, 1, 2, b"payload"))
    raw[36:38] = b"\x12\x34"
    orig = bytes(raw)
    p = Packet(raw)
    p.fix_l4_checksum()
    assert p.modified and verify(p.raw)
    p.restore()
    assert bytes(p.raw) == orig
    p.tos = 0x10  # head only, then the checksum: both undone
    p.fix_l4_checksum()
    p.restore()
    assert bytes(p.raw) == orig


@pytest.mark.parametrize("size", [4095, 4096, 4097, 4098, 4099, 65535])
def test_ones_sum_is_the_same_with_and_without_numpy(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buffers from checksum.WIDE_FROM bytes are summed with numpy when it is there,
    in pure Python when it is not: the same sums."""
    from libitm import checksum as cs

    rng = random.Random(size)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    with_np = [ones_sum(data), ones_sum(data, 0x1234), ones_sum(bytes(size))]
    with_np.append(ones_sum(b"\xff" * (size & ~1)))
    monkeypatch.setattr(cs, "_np", lambda: None)
    without = [ones_sum(data), ones_sum(data, 0x1234), ones_sum(bytes(size))]
    without.append(ones_sum(b"\xff" * (size & ~1)))
    assert with_np == without
    assert with_np[0] == ref_sum(data)
