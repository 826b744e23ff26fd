"""The failover figures of the lab's sequence stream, on made-up arrivals: the
largest gap and the outage measure the outage, not the end of the stream."""

from __future__ import annotations

from itmroute.lab import SeqStream


def stream(lost: range, sent: int = 300, delay: float = 0.001, rate: float = 100.0) -> SeqStream:
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
    # the cut late in the stream: the end of sending is not an arrival
    s = stream(range(280, 300))
    assert s.largest_gap(0.5) == float("inf")
    assert s.outage(0.5) == float("inf")
