"""The compiled interest test answers exactly as Interest.matches, on every kind of packet."""

from __future__ import annotations

import itertools

import pytest

from libitm import Interest, Packet, PacketError
from libitm.interest_match import matcher
from tests.support.packets import build, icmp_echo, tcp, udp

INTERESTS = [
    Interest(),
    Interest(family=4),
    Interest(protocol="udp"),
    Interest(protocol="tcp", dport=80),
    Interest(family=4, protocol="udp", dport=5009),
    Interest(dport=(5000, 5009)),
    Interest(sport=(1024, 2047)),
    Interest(sport=(1, 100), dport=53),
    Interest(protocol="icmp"),
    Interest(dst="10.0.0.0/8"),
    Interest(src="10.1.2.3", dst="192.168.0.0/17", protocol="udp"),
    Interest(src="10.1.0.0/15", dport=(0, 65535)),
    Interest(dst="fd00::/8", protocol="udp"),
    Interest(family=6, dport=80),
]


def _fragment(pkt: bytes) -> bytes:
    """``pkt`` as a later IPv4 fragment (offset 8)."""
    b = bytearray(pkt)
    b[6:8] = (1).to_bytes(2, "big")
    return bytes(b)


def _with_options(pkt: bytes) -> bytes:
    """``pkt`` with 4 bytes of IPv4 options (NOP padding)."""
    b = bytearray(pkt)
    total = len(b) + 4
    return bytes([0x46, b[1]]) + total.to_bytes(2, "big") + bytes(b[4:20]) + b"\1\1\1\1" + b[20:]


def _short_total(pkt: bytes) -> bytes:
    """``pkt`` whose total length says 20: no transport header by the IP header."""
    b = bytearray(pkt)
    b[2:4] = (20).to_bytes(2, "big")
    return bytes(b)


PACKETS = {
    "udp 5009": udp("10.0.0.1", "10.0.0.2", 9, 5009, b"data"),
    "udp 53 from 100": udp("10.1.2.3", "192.168.1.1", 100, 53, b"q"),
    "udp 5003 from 1500": udp("10.1.9.9", "10.0.0.2", 1500, 5003),
    "tcp 80": tcp("10.0.0.1", "192.168.127.1", 40000, 80),
    "tcp 443": tcp("10.0.0.1", "11.0.0.1", 40000, 443),
    "icmp": icmp_echo("10.0.0.1", "10.0.0.2"),
    "udp6 80": udp("fd00::1", "fd00::2", 9, 80),
    "tcp6 80": tcp("fd00::1", "fe80::2", 9, 80),
    "icmp6": icmp_echo("fd00::1", "fd00::2"),
    "fragment udp 5009": _fragment(udp("10.0.0.1", "10.0.0.2", 9, 5009, b"data")),
    "options udp 5009": _with_options(udp("10.0.0.1", "10.0.0.2", 9, 5009, b"data")),
    "short total tcp 80": _short_total(tcp("10.0.0.1", "10.0.0.2", 9, 80)),
    "sctp": build("10.0.0.1", "10.0.0.2", 132, b"\0\x09\0\x50" + bytes(8)),
}


def _answer(fn: object, raw: bytes) -> bool | str:
    assert callable(fn)
    try:
        return bool(fn(Packet(bytearray(raw))))
    except PacketError:
        return "PacketError"


@pytest.mark.parametrize(("interest", "name"), list(itertools.product(INTERESTS, PACKETS)), ids=str)
def test_same_answer_as_interest_matches(interest: Interest, name: str) -> None:
    raw = PACKETS[name]
    assert _answer(matcher(interest), raw) == _answer(interest.matches, raw)


def test_it_can_say_no() -> None:
    """The answers above are not all True: the comparison would hide a matcher
    that accepts everything."""
    m = matcher(Interest(family=4, protocol="udp", dport=5009))
    assert _answer(m, PACKETS["udp 5009"]) is True
    assert _answer(m, PACKETS["udp 5003 from 1500"]) is False
    assert _answer(m, PACKETS["tcp 80"]) is False
    assert _answer(m, PACKETS["fragment udp 5009"]) is False


def test_not_an_ip_packet_raises_as_interest_matches() -> None:
    for interest in INTERESTS[:5]:
        assert _answer(matcher(interest), b"\x45\0\0\x10") == "PacketError"
        assert _answer(matcher(interest), b"\x20" * 30) == "PacketError"
