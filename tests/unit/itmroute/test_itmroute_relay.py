"""The Python data path's relay and target (wire version 4): a relay sends DATA
on as its sender sealed it, the target takes the relay's hop off the inner TTL."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import cast

import pytest

from itmroute import auth, wire
from itmroute.config import parse_config
from libitm.checksum import ones_sum
from tests.support.itmroute_offline import DOC, KEY, Clock, FakeSock, OfflineRouter

ME = "10.77.100.1"  # DOC's ITM: the relay, or the target
SENDER = "10.77.9.1"  # another ITM of the overlay
OTHER = "10.77.200.1"  # the target when ME relays
PORT = 7177


@pytest.fixture
def router() -> Iterator[OfflineRouter]:
    clock = Clock()
    r = OfflineRouter(parse_config(DOC), backend="offline", datapath="python", clock=clock)
    try:
        yield r
    finally:
        r.close()


def _inner(ttl: int, v6: bool = False) -> bytes:
    """A UDP packet from SENDER's side to ME's side, checksums right."""
    if v6:
        hdr = bytearray(40)
        hdr[0], hdr[5], hdr[6], hdr[7] = 0x60, 12, 17, ttl
        hdr[8:24] = socket.inet_pton(socket.AF_INET6, "fd77:9::1")
        hdr[24:40] = socket.inet_pton(socket.AF_INET6, "fd77:100::1")
        return bytes(hdr) + b"\x00\x01\x00\x02\x00\x0c\x00\x00" + b"ping"
    ip = bytearray(20)
    ip[0], ip[8], ip[9] = 0x45, ttl, 17
    ip[2:4] = (32).to_bytes(2, "big")
    ip[12:16], ip[16:20] = socket.inet_aton("10.77.9.5"), socket.inet_aton("10.77.100.5")
    ip[10:12] = (~ones_sum(bytes(ip)) & 0xFFFF).to_bytes(2, "big")
    return bytes(ip) + b"\x00\x01\x00\x02\x00\x0c\x00\x00" + b"ping"


def _datagram(target: str, inner: bytes, relayed: bool = True) -> bytes:
    sealer = auth.Sealer(bytes.fromhex(KEY), socket.inet_aton(SENDER))
    body = wire.data_body(socket.inet_aton(target), 2, None, inner)
    return sealer.seal(wire.DATA | (wire.RELAYED if relayed else 0), body)


def _receive(r: OfflineRouter, *datagrams: bytes, source: str = "10.77.9.1") -> None:
    udp = cast(FakeSock, r.udp)
    udp.inbox += [(d, (source, PORT)) for d in datagrams]
    r.handle_datagrams()


def _sent(sock: object) -> list[tuple[bytes, object]]:
    return cast(FakeSock, sock).sent


def test_a_relay_sends_data_on_as_its_sender_sealed_it_once(router: OfflineRouter) -> None:
    dg = _datagram(OTHER, _inner(ttl=5))
    _receive(router, dg, dg)  # the second time: a replay
    assert _sent(router.udp) == [(dg, (OTHER, PORT))]  # byte for byte, the sender's MAC
    c = router.counters
    assert c["data_relayed"] == 1 and c["replayed"] == 1 and c["bad_datagrams"] == 0
    assert _sent(router.raw) == []  # nothing delivered here
    # the target opens it under the sender's key, relayed bit set
    target = auth.Sealer(bytes.fromhex(KEY), socket.inet_aton(OTHER))
    kind, relayed, sender, _ = target.open(_sent(router.udp)[0][0], "10.77.100.1")
    assert (kind, relayed, sender) == (wire.DATA, True, socket.inet_aton(SENDER))


def test_a_relay_drops_data_for_another_itm_not_sent_to_be_relayed(
    router: OfflineRouter,
) -> None:
    _receive(router, _datagram(OTHER, _inner(ttl=5), relayed=False))
    assert _sent(router.udp) == [] and router.counters["bad_datagrams"] == 1


def test_a_relay_answers_a_packet_without_a_hop_left_and_sends_nothing_on(
    router: OfflineRouter,
) -> None:
    _receive(router, _datagram(OTHER, _inner(ttl=1)))
    assert _sent(router.udp) == []
    assert router.counters["ttl_exceeded"] == 1 and router.counters["data_relayed"] == 0
    ((err, _),) = _sent(router.raw)
    assert err[9] == 1 and err[20] == 11  # ICMP time exceeded, from the relay


@pytest.mark.parametrize("v6", [False, True])
def test_the_target_takes_the_relays_hop_off_relayed_data_only(
    router: OfflineRouter, v6: bool
) -> None:
    inner = _inner(ttl=5, v6=v6)
    _receive(router, _datagram(ME, inner, relayed=True), source="10.77.1.2")
    _receive(router, _datagram(ME, inner, relayed=False))
    raw = router.raw6 if v6 else router.raw
    (via_relay, _), (direct, _) = _sent(raw)
    at = 7 if v6 else 8
    assert via_relay[at] == 4 and direct == inner
    rest = at + 1 if v6 else 12  # IPv4: the header checksum changes with the TTL
    assert via_relay[:at] == inner[:at] and via_relay[rest:] == inner[rest:]
    if not v6:
        assert ones_sum(via_relay[:20]) == 0xFFFF
    assert router.counters["decapsulated"] == 2


def test_relayed_data_without_a_hop_left_is_not_delivered(router: OfflineRouter) -> None:
    _receive(router, _datagram(ME, _inner(ttl=1)))
    assert _sent(router.raw) == [] and router.counters["bad_datagrams"] == 1
