"""The nfqueue backend's fast lane: packets that arrive many per read, same layout.

The packet loop reuses one Packet object for packets that arrive many per read
(recvmmsg) and hands each to the hook's runner (``Dispatcher.runner``); the
first packet of a read and the odd ones take the general lane (a Packet each,
the same runner). Every test runs both ways - one message per read through a
fake socket, and many per read through recvmmsg on a socket pair - and holds
the fast lane to the general one: changes made by a callback in the middle of
a batch apply from the next packet on, counters add up, a modified packet does
not leave its marks on the next one, errors are contained.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest

from libitm import Hook, Interest, ItmInfo, Packet, Verdict
from libitm.backends.nfqueue import NfqueueBackend
from libitm.transport import codec as nfq
from tests.support.fake_queue import FakeSock, fake_backend, mmsg_backend, pkt_msg, sent_messages
from tests.support.packets import verify

Sent = Callable[[], FakeSock]
Make = Callable[..., tuple[NfqueueBackend, Sent]]


@pytest.fixture(params=["recv", "recvmmsg"])
def backend(request: pytest.FixtureRequest) -> Iterator[Make]:
    """``backend(apps, datagrams, batch=256)`` -> (backend, sent): ``sent()`` is a
    FakeSock whose ``sent`` holds every verdict chunk so far."""
    pairs: list[socket.socket] = []

    def make(
        apps: list[ItmInfo], datagrams: list[bytes | OSError], batch: int = 256
    ) -> tuple[NfqueueBackend, Sent]:
        if request.param == "recv":
            be, sock = fake_backend(apps, datagrams, batch)
            return be, lambda: sock
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        pairs.extend((a, b))
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        a.setblocking(False)
        b.setblocking(False)
        be = mmsg_backend(apps, b, batch)
        for m in datagrams:
            assert isinstance(m, bytes)
            a.send(m)
        got = FakeSock([])

        def sent() -> FakeSock:
            while True:
                try:
                    got.sent.append(a.recv(1 << 20))
                except BlockingIOError:
                    return got

        return be, sent

    yield make
    for s in pairs:
        s.close()


def msgs(n: int, dport: int = 0) -> list[bytes | OSError]:
    return [pkt_msg(i, dport) for i in range(1, n + 1)]


def test_disabling_itself_applies_from_the_next_packet(backend: Make) -> None:
    seen: list[int] = []
    info = ItmInfo("d", class_func=lambda p: 1)

    def process(w: Hook, c: int, p: Packet) -> None:
        seen.append(len(seen) + 1)
        if len(seen) == 2:
            info.enabled = False

    info.process_func = process
    be, sent = backend([info], msgs(5))
    assert be.process() == 5
    assert seen == [1, 2], "packets 3-5 came after the application was disabled"
    assert info.counters.packets == 2 and info.counters.accepted == 2
    assert [(t, i) for t, _, i, _ in sent_messages(sent())] == [(nfq.MSG_VERDICT_BATCH, 5)]


def test_a_callback_replaced_mid_batch_runs_from_the_next_packet(backend: Make) -> None:
    calls: list[str] = []
    info = ItmInfo("r")

    def first(p: Packet) -> int:
        calls.append("first")
        info.class_func = second
        return 0

    def second(p: Packet) -> int:
        calls.append("second")
        return 0

    info.class_func = first
    be, _ = backend([info], msgs(3))
    be.process()
    assert calls == ["first", "second", "second"]


def test_an_application_registered_mid_batch_is_dispatched_in_order(backend: Make) -> None:
    order: list[str] = []

    def late_class(p: Packet) -> int:
        order.append("late")
        return 0

    late = ItmInfo("late", class_func=late_class)
    be, _ = backend([], msgs(3))
    assert be._disp is not None
    disp = be._disp

    def first(p: Packet) -> int:
        order.append("first")
        if len(order) == 1:
            disp.add(Hook.POST_ROUTING, late)
        return 0

    disp.add(Hook.POST_ROUTING, ItmInfo("first", class_func=first, priority=-1))
    be.process()
    assert order == ["first", "first", "late", "first", "late"]


def test_counters_add_up_over_batches_and_changes(backend: Make) -> None:
    def process(w: Hook, c: int, p: Packet) -> Verdict | None:
        if p.dport == 1:
            return Verdict.DROP
        if p.dport == 2:
            p.tos = 0x10
        return None

    info = ItmInfo("c", class_func=lambda p: 0 if p.dport == 3 else 1, process_func=process)
    data: list[bytes | OSError] = [pkt_msg(i, i % 4) for i in range(1, 13)]
    be, _ = backend([info], data, batch=5)
    while be.process():
        pass
    c = info.counters
    assert (c.packets, c.classified, c.dropped, c.modified, c.accepted) == (12, 9, 3, 3, 9)


def test_a_modified_packet_leaves_nothing_on_the_next_one(backend: Make) -> None:
    """The same Packet object carries every packet of the batch: a change made to
    one (TOS, mark) must not make the next one modified or marked."""
    kept: list[Packet] = []  # (a Packet is only valid during its callbacks)

    def process(w: Hook, c: int, p: Packet) -> None:
        kept.append(p)
        if p.dport == 2:
            p.tos = 0x10
            p.mark = 7

    info = ItmInfo("m", class_func=lambda p: 1, process_func=process)
    data: list[bytes | OSError] = [pkt_msg(1, 2), pkt_msg(2, 0), pkt_msg(3, 0)]
    be, sent = backend([info], data)
    be.process()
    got = sent_messages(sent())
    assert [(t, i) for t, _, i, _ in got] == [(nfq.MSG_VERDICT, 1), (nfq.MSG_VERDICT_BATCH, 3)]
    modified = got[0][3]
    assert modified is not None and Packet(modified).tos == 0x10 and verify(modified)
    assert info.counters.modified == 1
    assert [k.dport for k in kept[1:]] == [0, 0]


def test_bad_class_and_verdict_values_are_callback_errors(
    backend: Make, caplog: pytest.LogCaptureFixture
) -> None:
    bad = iter([True, "x", 1, None])  # 1: NF_ACCEPT

    def process(w: Hook, c: int, p: Packet) -> Verdict | None:
        return next(bad)  # type: ignore[return-value]

    info = ItmInfo("e", class_func=lambda p: 1, process_func=process)
    boolean = ItmInfo("b", class_func=lambda p: True)
    for app, n in ((info, 4), (boolean, 2)):
        caplog.clear()
        be, sent = backend([app], msgs(n))
        with caplog.at_level(logging.ERROR, logger="libitm"):
            be.process()
        assert app.counters.errors == 2
        assert all(app.label in r.getMessage() for r in caplog.records)
        assert [(t, i) for t, _, i, _ in sent_messages(sent())] == [(nfq.MSG_VERDICT_BATCH, n)]


def test_a_packet_that_cannot_be_parsed_is_accepted_unseen_not_a_crash(backend: Make) -> None:
    """Bytes that are not an IP packet fail the interest check: the application
    never sees them, they count as malformed and pass."""
    info = ItmInfo("p", class_func=lambda p: p.sport or 0)
    short = nfq.encode_packet(7, 1, b"\x45\x00\x00\x10")
    be, sent = backend([info], [short, pkt_msg(2, 0)])
    assert be.process() == 2
    assert info.counters.packets == 1 and info.counters.classified == 1, "the next one: sport 9"
    assert info.counters.errors == 0
    assert be._disp is not None and be._disp.malformed == 1
    assert [(t, i) for t, _, i, _ in sent_messages(sent())] == [(nfq.MSG_VERDICT_BATCH, 2)]


def test_keyboard_interrupt_answers_the_packet_and_keeps_the_rest(backend: Make) -> None:
    n = {"calls": 0}

    def class_func(p: Packet) -> int:
        n["calls"] += 1
        if n["calls"] == 2:
            raise KeyboardInterrupt
        return 0

    info = ItmInfo("k", class_func=class_func)
    be, sent = backend([info], msgs(3))
    with pytest.raises(KeyboardInterrupt):
        be.process()
    assert be.process() == 1, "the third packet was received and is handled next time"
    ids = sorted(i for _, _, i, _ in sent_messages(sent()))
    assert ids == [1, 2, 3]
    assert info.counters.packets == 3


def test_packets_outside_the_interest_never_reach_the_app(backend: Make) -> None:
    """Whatever rules queued them: the fast lane checks the interest too, and the
    packets it skips are accepted with the others (one batch verdict)."""
    seen: list[int] = []

    def class_func(p: Packet) -> int:
        seen.append(p.dport or 0)
        return 1

    info = ItmInfo(
        "i",
        Interest(protocol="udp", dport=5),
        class_func=class_func,
        process_func=lambda w, c, p: Verdict.DROP,
    )
    data: list[bytes | OSError] = [pkt_msg(i, 5 if i % 3 == 0 else 6) for i in range(1, 10)]
    be, sent = backend([info], data)
    assert be.process() == 9
    assert seen == [5, 5, 5]
    assert info.counters.packets == 3 and info.counters.dropped == 3
    got = [(t, i) for t, _, i, _ in sent_messages(sent())]
    assert sorted(i for t, i in got if t == nfq.MSG_VERDICT) == [3, 6, 9]
    assert (nfq.MSG_VERDICT_BATCH, 8) in got
