"""itmRoute's header and its authentication: seal, open, refuse what is not ours,
forged or replayed."""

from __future__ import annotations

import hashlib

import pytest

from itmroute import auth, wire

KEY = bytes(range(32))
A, D = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def pair(clock: Clock | None = None) -> tuple[auth.Sealer, auth.Sealer]:
    c = clock or Clock()
    return auth.Sealer(KEY, A, c), auth.Sealer(KEY, D, c)


def test_probe_round_trip_keeps_every_field() -> None:
    a, d = pair()
    p = wire.Probe(wire.PROBE, 0xDEADBEEF, A, D, True)
    data = a.seal(p.type_byte, p.body())
    assert len(data) == wire.PROBE_LEN == 16 + 12 + 16
    kind, relayed, sender, body = d.open(data, "10.0.0.1")
    assert (kind, relayed, sender) == (wire.PROBE, True, A)
    assert wire.decode_probe(kind, relayed, body) == p


def test_itms_with_ipv6_addresses_carry_them_whole() -> None:
    a6, d6 = bytes.fromhex("fd77" + "00" * 13 + "01"), bytes.fromhex("fd77" + "00" * 13 + "02")
    a, d = auth.Sealer(KEY, a6, Clock()), auth.Sealer(KEY, d6, Clock())
    p = wire.Probe(wire.ACK, 7, a6, d6)
    data = a.seal(p.type_byte, p.body())
    assert len(data) == wire.probe_len(16) == 28 + 36 + 16
    assert data[3] & wire.V6
    kind, relayed, sender, body = d.open(data, "fd77::1")
    assert sender == a6 and wire.decode_probe(kind, relayed, body, 16) == p
    assert wire.tunnel_overhead(16) == 40 + 8 + 28 + 18 + 16


def test_data_carries_the_inner_packet_byte_for_byte() -> None:
    a, d = pair()
    inner = bytes([0x45, 0xB9]) + bytes(range(18)) + b"payload"
    target = bytes([10, 0, 9, 1])
    data = a.seal(wire.DATA, wire.data_body(target, 3, None, inner))
    assert len(data) == len(inner) + wire.HEADER_LEN + 6 + wire.TAG_LEN
    kind, _, _, body = d.open(data, "10.0.0.1")
    got = wire.decode_data(body)
    assert kind == wire.DATA and bytes(got.inner) == inner
    assert (got.target, got.tag, got.receipt) == (target, 3, None)
    assert wire.TUNNEL_OVERHEAD == 20 + 8 + 16 + 6 + 16
    again = wire.decode_data(got.body(b"\x60" + bytes(39)), 4)
    assert (again.target, again.tag, len(again.inner)) == (target, 3, 40)


def test_data_carries_a_receipt_and_ipv6_targets() -> None:
    target = bytes(15) + b"\x01"
    got = wire.decode_data(wire.data_body(target, 0, 254, b"\x45" + bytes(19)), 16)
    assert (got.target, got.tag, got.receipt) == (target, 0, 254)
    assert wire.data_head_len(16) == 18
    with pytest.raises(wire.WireError):
        wire.decode_data(bytes(5), 4)  # shorter than target, tag and receipt
    with pytest.raises(wire.WireError):
        wire.decode_data(bytes(6) + b"\x70" + bytes(39), 4)  # not IP inside


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"IR",
        b"XX\x02\x01" + bytes(40),  # bad magic
        b"IR\x09\x01" + bytes(40),  # unknown version
        b"IR\x03\x07" + bytes(40),  # unknown type
        b"IR\x03\x01" + bytes(20),  # shorter than header and MAC
        b"IR\x02\x01" + bytes(40),  # version 2 (a keyed BLAKE2s MAC)
    ],
)
def test_foreign_datagrams_are_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        pair()[1].open(data, "10.0.0.9")


def test_a_datagram_without_the_key_or_altered_fails_the_check() -> None:
    a, d = pair()
    forged = auth.Sealer(bytes(32), A).seal(wire.DATA, b"\x45" + bytes(19))
    with pytest.raises(auth.AuthError) as exc:
        d.open(forged, "10.0.0.66")
    assert exc.value.counter == "auth_failed"
    good = bytearray(a.seal(wire.DATA, b"\x45" + bytes(19)))
    for i in (4, 8, 20, len(good) - 1):  # sender, counter, body, MAC
        bad = bytearray(good)
        bad[i] ^= 1
        with pytest.raises(auth.AuthError, match="bad MAC"):
            d.open(bytes(bad), "10.0.0.1")
    d.open(bytes(good), "10.0.0.1")  # the original still opens


def test_a_replayed_datagram_is_refused_from_any_source() -> None:
    a, d = pair()
    msgs = [a.seal(wire.PROBE, wire.Probe(wire.PROBE, i, A, D).body()) for i in range(70)]
    d.open(msgs[5], "10.0.0.1")
    for src in ("10.0.0.1", "10.0.0.66"):  # the window is the sender's, not the address's
        with pytest.raises(auth.AuthError) as exc:
            d.open(msgs[5], src)
        assert exc.value.counter == "replayed"
    d.open(msgs[3], "10.0.0.1")  # out of order, within the window: accepted once
    with pytest.raises(auth.AuthError):
        d.open(msgs[3], "10.0.0.1")
    d.open(msgs[69], "10.0.0.1")
    with pytest.raises(auth.AuthError, match="replayed"):
        d.open(msgs[4], "10.0.0.1")  # 65 below the highest: outside the window


def test_a_stale_datagram_is_refused_by_a_receiver_that_never_saw_its_sender() -> None:
    clock = Clock()
    a, _ = pair(clock)
    old = a.seal(wire.PROBE, wire.Probe(wire.PROBE, 1, A, D).body())
    clock.t += auth.MAX_AGE + 1  # e.g. the receiver restarted since: no window yet
    with pytest.raises(auth.AuthError, match="stale"):
        auth.Sealer(KEY, D, clock).open(old, "10.0.0.1")


def test_a_restarted_sender_continues_above_what_it_sent_before() -> None:
    clock = Clock()
    a, d = pair(clock)
    for _ in range(3):
        d.open(a.seal(wire.DATA, b"\x45" + bytes(19)), "10.0.0.1")
    clock.t += 0.001
    again = auth.Sealer(KEY, A, clock)  # same address, counter from the clock
    d.open(again.seal(wire.DATA, b"\x45" + bytes(19)), "10.0.0.1")


def test_data_that_is_not_ip_or_a_probe_of_the_wrong_length_is_refused() -> None:
    for bad in (b"\x70" + bytes(39), b"\x60" + bytes(20), b"\x45" + bytes(10), b""):
        with pytest.raises(wire.WireError):
            wire.inner_packet(bad)
    assert len(wire.inner_packet(b"\x60" + bytes(39))) == 40  # IPv6 is carried too
    with pytest.raises(wire.WireError):
        wire.decode_probe(wire.DATA, False, bytes(12))
    with pytest.raises(wire.WireError):
        wire.decode_probe(wire.PROBE, False, bytes(4))


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("zz" * 16, "not hex"),
        ("ab" * 15, "15 bytes"),
        ("ab" * 33, r"33 bytes; 16\.\.32 bytes \(32\.\.64 hex digits\) wanted \(BLAKE2s keys"),
        ("ab" * 40, "40 bytes"),
        ("ab" * 65, "65 bytes"),
        (12345, "not a int"),
    ],
)
def test_bad_keys_say_why_without_repeating_the_key(key: object, said: str) -> None:
    with pytest.raises(ValueError, match=said) as exc:
        auth.parse_key(key)
    assert str(key) not in str(exc.value)
    assert auth.parse_key("ab" * 32) == b"\xab" * 32


def test_every_key_the_configuration_takes_seals() -> None:
    """BLAKE2s takes keys of at most 32 bytes: a longer one that passed the check
    would crash the daemon at its first datagram."""
    assert hashlib.blake2s.MAX_KEY_SIZE == auth.KEY_MAX == 32
    for n in (auth.KEY_MIN, 24, auth.KEY_MAX):
        key = auth.parse_key("ab" * n)
        a, d = auth.Sealer(key, A, Clock()), auth.Sealer(key, D, Clock())
        assert d.open(a.seal(wire.DATA, b"\x45" + bytes(19)), "10.0.0.1")[2] == A
    with pytest.raises(ValueError, match="40 bytes"):
        auth.Sealer(b"k" * 40, A)


def test_a_probe_sealed_before_a_later_arriving_burst_of_data_is_accepted() -> None:
    """With the kernel data path one address sends two counter sequences: the
    kernel's DATA and the daemon's probes, acks and notices. A probe the daemon
    sealed just before a burst of DATA that overtakes it is no replay."""
    clock = Clock()
    daemon, kernel = auth.Sealer(KEY, A, clock), auth.Sealer(KEY, A, clock)
    d = auth.Sealer(KEY, D, clock)
    probe = daemon.seal(wire.PROBE, wire.Probe(wire.PROBE, 1, A, D).body())
    clock.t += 0.001  # 1000 counters later, far beyond the window of 64
    burst = [kernel.seal(wire.DATA, b"\x45" + bytes(19)) for _ in range(100)]
    for data in burst:
        d.open(data, "10.0.0.1")
    kind, _, sender, _ = d.open(probe, "10.0.0.1")
    assert (kind, sender) == (wire.PROBE, A)
    # each sequence is still checked against replays on its own
    for again in (probe, burst[-1], burst[0]):
        with pytest.raises(auth.AuthError) as exc:
            d.open(again, "10.0.0.1")
        assert exc.value.counter == "replayed"
    ack = daemon.seal(wire.ACK, wire.Probe(wire.ACK, 1, A, D).body())
    d.open(ack, "10.0.0.1")  # below the DATA, above the probe: accepted


def test_the_daemons_own_datagrams_are_told_from_traffic() -> None:
    assert wire.is_overlay_datagram(17, 7177, 7177, 7177)  # a probe or its ack
    assert wire.is_overlay_datagram(17, 40000, 7177, 7177)
    assert not wire.is_overlay_datagram(17, 5300, 5300, 7177)  # the flow's own UDP
    assert not wire.is_overlay_datagram(6, 7177, 7177, 7177)  # TCP on that port is traffic
    assert not wire.is_overlay_datagram(1, None, None, 7177)


def test_a_notice_carries_target_origin_tag_and_silence() -> None:
    a, d = pair()
    n = wire.Notice(bytes([10, 0, 0, 1]), bytes([10, 0, 9, 1]), 3, 0.25)
    data = d.seal(n.type_byte, n.body())
    assert len(data) == wire.HEADER_LEN + 11 + wire.TAG_LEN
    kind, relayed, _, body = a.open(data, "10.0.9.1")
    assert kind == wire.NOTICE and not relayed
    assert wire.decode_notice(relayed, body) == n
    fwd = wire.Notice(n.target, n.origin, n.tag, 100.0, True)  # silence caps at 65.535 s
    assert wire.decode_notice(True, fwd.body()).silence == 65.535
    assert fwd.type_byte == wire.NOTICE | wire.RELAYED
    with pytest.raises(wire.WireError):
        wire.decode_notice(False, bytes(10))
    with pytest.raises(wire.WireError):
        wire.decode_probe(wire.NOTICE, False, bytes(12))  # a notice is not a probe
