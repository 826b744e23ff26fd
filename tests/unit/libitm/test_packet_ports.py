"""Ports of every protocol an Interest may name ports for: TCP, UDP, UDP-Lite, DCCP, SCTP."""

from __future__ import annotations

import struct

import pytest
from itm_testlib import build

from libitm import Interest, Packet, PacketError
from libitm.interest_match import matcher

PROTOS = {"udplite": 136, "dccp": 33, "sctp": 132}


def _packet(src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    # the first four bytes of each of these headers are the ports; 12 bytes of
    # header (UDP-Lite needs 8, DCCP 12 and more, SCTP 12) and a little payload
    raw: bytes = build(src, dst, proto, struct.pack("!HH8x", sport, dport) + b"data")
    return raw


@pytest.mark.parametrize("name", sorted(PROTOS))
@pytest.mark.parametrize("addrs", [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")])
def test_ports_are_read_and_an_interest_in_them_matches(name: str, addrs: tuple[str, str]) -> None:
    pkt = Packet(_packet(*addrs, PROTOS[name], 4000, 5000))
    assert (pkt.proto, pkt.sport, pkt.dport) == (PROTOS[name], 4000, 5000)
    wanted = Interest(protocol=name, dport=5000)
    other = Interest(protocol=name, dport=5001)
    for test in (wanted.matches, matcher(wanted)):
        assert test(pkt)
    for test in (other.matches, matcher(other)):
        assert not test(pkt)


@pytest.mark.parametrize("name", sorted(PROTOS))
def test_their_ports_are_not_rewritten_and_the_packet_stays_as_it_was(name: str) -> None:
    raw = _packet("10.0.0.1", "10.0.0.2", PROTOS[name], 4000, 5000)
    pkt = Packet(bytearray(raw))
    with pytest.raises(PacketError, match="TCP and UDP packets only"):
        pkt.dport = 6000
    assert pkt.raw == raw and not pkt.modified
