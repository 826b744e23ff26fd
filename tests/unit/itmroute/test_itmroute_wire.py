"""itmRoute's header: encode, decode, refuse what is not ours."""

from __future__ import annotations

import pytest

from itmroute import wire


def test_probe_round_trip_keeps_every_field() -> None:
    p = wire.Probe(wire.PROBE, 0xDEADBEEF, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), True)
    data = p.encode()
    assert len(data) == wire.PROBE_LEN == 16
    assert wire.decode_probe(data) == p
    assert wire.message_type(data) == (wire.PROBE, True)


def test_ack_is_not_relayed_unless_said() -> None:
    a = wire.Probe(wire.ACK, 7, b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    assert wire.decode_probe(a.encode()).relayed is False


def test_data_carries_the_inner_packet_byte_for_byte() -> None:
    inner = bytes([0x45, 0xB9]) + bytes(range(18)) + b"payload"
    data = wire.encapsulate(inner)
    assert len(data) == len(inner) + wire.DATA_HEADER_LEN
    assert bytes(wire.inner_packet(data)) == inner
    assert wire.TUNNEL_OVERHEAD == 20 + 8 + wire.DATA_HEADER_LEN


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"IR",
        b"XX\x01\x01" + bytes(20),  # bad magic
        b"IR\x09\x01" + bytes(20),  # unknown version
        b"IR\x01\x07" + bytes(20),  # unknown type
    ],
)
def test_foreign_datagrams_are_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.message_type(data)


def test_data_that_is_not_ipv4_is_refused() -> None:
    with pytest.raises(wire.WireError):
        wire.inner_packet(wire.encapsulate(b"\x60" + bytes(39)))
    with pytest.raises(wire.WireError):
        wire.decode_probe(wire.encapsulate(b"\x45" + bytes(19)))
    with pytest.raises(wire.WireError):
        wire.decode_probe(b"IR\x01\x02" + bytes(4))  # probe too short


def test_the_daemons_own_datagrams_are_told_from_traffic() -> None:
    assert wire.is_overlay_datagram(17, 7177, 7177, 7177)  # a probe or its ack
    assert wire.is_overlay_datagram(17, 40000, 7177, 7177)
    assert not wire.is_overlay_datagram(17, 5300, 5300, 7177)  # the flow's own UDP
    assert not wire.is_overlay_datagram(6, 7177, 7177, 7177)  # TCP on that port is traffic
    assert not wire.is_overlay_datagram(1, None, None, 7177)
