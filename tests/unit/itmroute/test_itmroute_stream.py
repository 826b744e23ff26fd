"""The failover figures of the lab's sequence stream, on made-up arrivals: the
largest gap and the outage measure the outage, not the end of the stream."""

from __future__ import annotations

import threading
import time

from itmroute.lab import SeqStream


def stream(
    lost: range | set[int], sent: int = 300, delay: float = 0.001, rate: float = 100.0
) -> SeqStream:
    """A 100 packet/s stream whose datagrams in ``lost`` never arrived."""
    s = object.__new__(SeqStream)
    s.sent_at = [i / rate for i in range(sent)]
    s.sent = sent
    s.arrivals = [(i, i / rate + delay) for i in range(sent) if i not in lost]
    s.ended = sent / rate
    return s


def test_an_outage_is_measured_from_the_first_loss_to_the_first_delivery_after_it() -> None:
    s = stream(range(100, 130))  # 30 datagrams lost from t = 1.00 s
    assert abs(s.outage(0.5) - 0.301) < 1e-9  # 0.3 s of losses, then the path's delay
    assert abs(s.largest_gap(0.5) - 0.31) < 1e-9
    assert stream(range(0)).outage(0.5) == 0.0  # nothing lost


def test_a_stream_that_never_recovers_has_no_finite_gap() -> None:
    # the cut 1.5 s before the end: the end of sending is not an arrival
    s = stream(range(150, 300))
    assert not s.recovered()
    assert s.largest_gap(0.5) == float("inf")
    assert s.outage(0.5) == float("inf")
    assert stream(range(200, 300)).largest_gap(0.5) == float("inf")  # the last second lost


def test_a_stream_that_recovered_and_lost_its_last_datagrams_keeps_its_gap() -> None:
    # CI on 6.12: recovered from the cut, then a loaded guest's relays moved
    # between paths of similar delay and the last 12 datagrams of 962 were lost
    s = stream(set(range(100, 130)) | set(range(288, 300)))
    assert s.recovered()
    assert abs(s.largest_gap(0.5) - 0.31) < 1e-9  # the failover's, not the end's


class _Sock:
    def close(self) -> None:
        pass


def _closing(late: list[tuple[float, int]]) -> tuple[SeqStream, threading.Thread]:
    """A stream of 10 datagrams whose first 8 arrived; ``late`` (delay s, seq) come
    while it closes, as a loaded guest delivers them."""
    s = object.__new__(SeqStream)
    s.sent = 10
    s.sent_at = [0.0] * 10
    s.arrivals = [(i, 0.0) for i in range(8)]
    s._stop = threading.Event()
    s.rx = s.tx = _Sock()  # type: ignore[assignment]

    def deliver() -> None:
        start = time.monotonic()
        for delay, seq in late:
            time.sleep(max(0.0, start + delay - time.monotonic()))
            s.arrivals.append((seq, time.monotonic()))

    t = threading.Thread(target=deliver, daemon=True)
    s._rx_thread = threading.Thread(target=s._stop.wait, daemon=True)
    s._rx_thread.start()
    return s, t


def test_closing_waits_for_stragglers_a_second_apart_and_stops_at_the_last() -> None:
    s, late = _closing([(1.0, 8), (1.9, 9)])  # quiet for 0.9-1.0 s twice
    t0 = time.monotonic()
    late.start()
    s.close()
    assert [seq for seq, _ in s.arrivals][-2:] == [8, 9]
    assert time.monotonic() - t0 < 2.5  # it stopped once the last one came


def test_closing_gives_up_after_a_quiet_spell_or_the_drain_bound() -> None:
    s, late = _closing([])  # the last two never come
    t0 = time.monotonic()
    s.close()
    assert 1.4 <= time.monotonic() - t0 < 2.5
    s, late = _closing([(0.5 * i, 100 + i) for i in range(1, 20)])  # never quiet
    t0 = time.monotonic()
    late.start()
    s.close(drain=2.0)
    assert 1.9 <= time.monotonic() - t0 < 2.6


def test_closing_waits_twice_the_transit_the_last_arrivals_took() -> None:
    # a loaded guest's datagrams took 1.2 s from sending to arrival: the last two
    # come 2.2 s after the others, after a quiet spell longer than 1.5 s
    s, late = _closing([(2.2, 8), (2.3, 9)])
    now = time.monotonic()
    s.sent_at = [now - 1.2] * 10
    s.arrivals = [(i, now) for i in range(8)]
    late.start()
    s.close()
    assert [seq for seq, _ in s.arrivals][-2:] == [8, 9]
