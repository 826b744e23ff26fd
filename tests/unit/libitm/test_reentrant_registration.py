"""Registering from inside a callback never runs callbacks inside it.

Binding a new application's queue (or its observer's NFLOG group) means waiting
for the kernel's acknowledgement on the socket that also carries the packets:
what arrives meanwhile is kept and handled after the current callback
returns, in arrival order, each packet answered once. The kernel here is the
far end of a socket pair; in one thread it cannot answer a request after it is
sent, so the answer (and what arrives before it) is queued just before.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict
from libitm.backends import kernel as kernel_mod
from libitm.backends.kernel import NF_REPEAT, KernelBackend
from libitm.dispatch import ACCEPTED, DROPPED
from libitm.transport import FULL_COPY, QueueTransport, nflog
from libitm.transport import codec as nfq
from tests.support.fake_queue import sent_messages_of
from tests.support.packets import udp

Q = 7
GROUP = 5


def ack(seq: int) -> bytes:
    """The kernel's acknowledgement (NLMSG_ERROR, errno 0) of request ``seq``."""
    request = nfq.NLMSGHDR.pack(16, nfq.MSG_CONFIG, 0, seq, 0)
    return nfq.NLMSGHDR.pack(36, nfq.NLMSG_ERROR, 0, 0, 0) + struct.pack("=i", 0) + request


def pkt(queue: int, pid: int) -> bytes:
    """Packet message ``pid`` of ``queue``: a UDP datagram to port ``pid``."""
    return nfq.encode_packet(queue, pid, udp("10.0.0.1", "10.0.0.2", 9, pid, b"data"))


def copy_msg(port: int, group: int = GROUP) -> bytes:
    """An NFULNL_MSG_PACKET (an observer's copy) of a UDP datagram to ``port``."""
    body = nfq._attr(nflog.NFULA_PACKET_HDR, struct.pack(">HBx", 0x0800, 2))
    body += nfq._attr(nflog.NFULA_PAYLOAD, udp("10.0.0.1", "10.0.0.2", 9, port, b"c"))
    return nfq._message(nflog.MSG_PACKET, group, body, seq=0, flags=0, family=socket.AF_INET)


class Kernel:
    """The far end of a transport's socket."""

    def __init__(self, end: socket.socket, transport: QueueTransport | nflog.LogTransport):
        self.end = end
        self.transport = transport
        self._got: list[bytes] = []

    def send(self, *datagrams: bytes) -> None:
        """Datagrams for the transport to read."""
        for d in datagrams:
            self.end.send(d)

    def answer_next(self, count: int = 1, meanwhile: Sequence[bytes] = ()) -> None:
        """Queue ``meanwhile`` (what arrives while the transport waits), then the
        acknowledgements of the transport's next ``count`` requests."""
        seq = self.transport._seq
        self.send(*meanwhile, *(ack(seq + k) for k in range(1, count + 1)))

    def verdicts(self) -> list[tuple[int, int, int]]:
        """(type, verdict, packet id) of every verdict the transport sent so far."""
        while True:
            try:
                self._got.append(self.end.recv(1 << 20))
            except BlockingIOError:
                break
        verdict_types = (nfq.MSG_VERDICT, nfq.MSG_VERDICT_BATCH)
        chunks = [c for c in self._got if int.from_bytes(c[4:6], "little") in verdict_types]
        return [(t, v, i) for t, v, i, _ in sent_messages_of(chunks) if t in verdict_types]


class Depth:
    """How deep callbacks run inside each other (1: never nested)."""

    def __init__(self) -> None:
        self.now = 0
        self.deepest = 0

    def __enter__(self) -> None:
        self.now += 1
        self.deepest = max(self.deepest, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


@pytest.fixture
def kernel_end(pair: tuple[socket.socket, socket.socket]) -> socket.socket:
    """The socket pair's kernel end, non-blocking (it is read for the verdicts)."""
    pair[0].setblocking(False)
    return pair[0]


@pytest.mark.parametrize("mmsg", [False, True], ids=["recv", "recvmmsg"])
def test_a_queue_configured_from_a_callback_runs_no_packet_inside_it(
    pair: tuple[socket.socket, socket.socket], kernel_end: socket.socket, mmsg: bool
) -> None:
    """Packets 2 and 3 arrive while a callback waits for a config acknowledgement,
    packet 4 after it: all run after the callback, in order, and packet 1's drop
    goes out before the batch that accepts the others (a batch accepts every id up
    to its own: sent first, it would have accepted packet 1). The configuration
    asks for whole packets, which replaces the recvmmsg slots under the loop."""
    depth = Depth()
    seen: list[int] = []
    t: QueueTransport

    def run(p: Packet) -> int:
        with depth:
            seen.append(p.dport or 0)
            if p.dport == 1:
                kernel.answer_next(1, meanwhile=[pkt(Q, 2), pkt(Q, 3)])
                kernel.send(pkt(Q, 4))
                t.configure(Q, FULL_COPY)
                return DROPPED
            return ACCEPTED

    t = QueueTransport(lambda q: (Hook.IP_IN, run) if q == Q else None, use_recvmmsg=mmsg)
    t._sock = pair[1]
    t.bound[Q] = 128
    t._ensure_receiver()
    assert (t._rx is not None) is mmsg
    kernel = Kernel(kernel_end, t)
    kernel.send(pkt(Q, 1))
    assert t.process() == 4
    assert depth.deepest == 1, "a packet ran inside another packet's callback"
    assert seen == [1, 2, 3, 4]
    assert kernel.verdicts() == [
        (nfq.MSG_VERDICT, nfq.NF_DROP, 1),
        (nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 4),
    ]
    assert t.bound[Q] == FULL_COPY
    if mmsg:
        assert t._rx is not None and t._rx.slot_size > FULL_COPY
    assert t.process() == 0, "nothing left"
    assert select.select([*t.fds()], [], [], 0)[0] == [], "nothing to wake the loop for"
    t.close()


def test_packets_kept_during_a_wait_are_answered_when_the_transport_closes(
    pair: tuple[socket.socket, socket.socket], kernel_end: socket.socket
) -> None:
    seen: list[int] = []

    def run(p: Packet) -> int:
        seen.append(p.dport or 0)
        return ACCEPTED

    t = QueueTransport(lambda q: (Hook.IP_IN, run) if q == Q else None)
    t._sock = pair[1]
    kernel = Kernel(kernel_end, t)
    kernel.answer_next(1, meanwhile=[pkt(Q, 1), pkt(Q, 2)])
    assert t.bind(Q) == 0
    assert seen == [], "nothing runs while the transport waits"
    t.close()
    assert seen == [1, 2]
    assert kernel.verdicts() == [(nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 2)]


def test_an_observer_that_binds_a_group_from_its_callback_runs_no_copy_inside_it(
    pair: tuple[socket.socket, socket.socket], kernel_end: socket.socket
) -> None:
    """The log transport's bind waits for two acknowledgements (bind, copy mode):
    copies that come meanwhile run after the callback, in order."""
    depth = Depth()
    seen: list[int] = []
    t: nflog.LogTransport

    def run(p: Packet) -> int:
        with depth:
            seen.append(p.dport or 0)
            if p.dport == 1:
                kernel.answer_next(2, meanwhile=[copy_msg(2), copy_msg(3)])
                assert t.bind(GROUP + 1) == 0
            return ACCEPTED

    t = nflog.LogTransport(lambda g: (Hook.IP_FORWARD, run) if g == GROUP else None)
    t._sock = pair[1]
    kernel = Kernel(kernel_end, t)
    kernel.send(copy_msg(1))
    assert t.process() == 3
    assert depth.deepest == 1, "a copy ran inside another copy's callback"
    assert seen == [1, 2, 3]
    assert t.groups == {GROUP + 1}
    assert t.process() == 0
    assert select.select([*t.fds()], [], [], 0)[0] == []
    t.close()


# --------------------------------------------------------------- the loop
@dataclass
class Registration:
    """What the fake itm_queue answers (as libitm.control.queue.Registration)."""

    queue_num: int
    queue_count: int = 1


class FakeItmQueue:
    """itm_queue: each registration gets the next queue number; ``meanwhile``: the
    packets that reach the queue socket while the new queue is bound."""

    def __init__(self) -> None:
        self.kernel: Kernel | None = None
        self.next = 0x7000
        self.meanwhile: list[bytes] = []
        self.labels: list[str] = []

    def register(self, label: str, *args: object, **kwargs: object) -> Registration:
        """Register ``label``; the bind that follows is answered after ``meanwhile``."""
        assert self.kernel is not None
        self.labels.append(label)
        self.kernel.answer_next(1, meanwhile=self.meanwhile)
        self.meanwhile = []
        self.next += 1
        return Registration(self.next - 1)

    def unregister(self, label: str) -> None:
        """Forget ``label``."""
        if label in self.labels:
            self.labels.remove(label)

    def close(self) -> None:
        """Nothing to close."""


Started = tuple[ItmLoop, Kernel, FakeItmQueue]


@pytest.fixture
def kernel_loop(
    monkeypatch: pytest.MonkeyPatch,
    pair: tuple[socket.socket, socket.socket],
    kernel_end: socket.socket,
) -> Iterator[Callable[[ItmInfo], Started]]:
    """``start(app)``: a loop on the kernel backend (itm_queue faked, its queue
    socket one end of the pair) that runs ``app`` at POST_ROUTING on queue 0x7000."""
    itm_queue = FakeItmQueue()
    monkeypatch.setattr(kernel_mod, "family_id", lambda name: 30)
    monkeypatch.setattr(kernel_mod, "ItmQueueClient", lambda: itm_queue)
    loops: list[ItmLoop] = []

    def start(app: ItmInfo) -> Started:
        be = KernelBackend(observers=False)  # no nfnetlink_log socket
        monkeypatch.setattr(be.transport, "open", lambda: setattr(be.transport, "_sock", pair[1]))
        itm_queue.kernel = Kernel(kernel_end, be.transport)
        loop = ItmLoop(be)
        loops.append(loop)
        loop.register_hook(Hook.POST_ROUTING, app)
        loop.start()
        assert be.app_queues == {app.label: 0x7000}
        return loop, itm_queue.kernel, itm_queue

    yield start
    for loop in loops:
        loop.close()


def test_register_hook_from_a_callback_runs_the_packets_meanwhile_after_it(
    kernel_loop: Callable[[ItmInfo], Started],
) -> None:
    """The first application registers a second one from its process_func, then
    drops its packet; packets 2 and 3 of its queue arrive while the second one's
    queue is bound. The second application's packets come from the next one on."""
    depth = Depth()
    first_saw: list[int] = []
    second_saw: list[int] = []

    def second_class(where: Hook, p: Packet) -> int:
        with depth:
            second_saw.append(p.dport or 0)
            return 0

    second = ItmInfo("second", Interest(protocol="udp"), class_func=second_class)

    def process(where: Hook, cls: int, p: Packet) -> Verdict:
        with depth:
            first_saw.append(p.dport or 0)
            if p.dport == 1:
                itm_queue.meanwhile = [pkt(0x7000, 2), pkt(0x7000, 3)]
                loop.register_hook(Hook.IP_IN, second)
                return Verdict.DROP
            return Verdict.ACCEPT

    first = ItmInfo("first", Interest(protocol="udp"), class_func=lambda p: 1, process_func=process)
    loop, kernel, itm_queue = kernel_loop(first)
    kernel.send(pkt(0x7000, 1))
    assert loop.handle_events() == 3
    assert depth.deepest == 1, "callbacks ran inside a callback"
    assert first_saw == [1, 2, 3]
    assert kernel.verdicts() == [
        (nfq.MSG_VERDICT, nfq.NF_DROP, 1),
        (nfq.MSG_VERDICT_BATCH, NF_REPEAT, 3),
    ]
    assert itm_queue.labels == ["first", "second"]
    kernel.send(pkt(0x7001, 9))
    assert loop.handle_events() == 1
    assert second_saw == [9] and first_saw == [1, 2, 3]
    assert second.counters.packets == 1 and first.counters.packets == 3


def test_unregistering_and_registering_again_from_a_callback_nests_nothing(
    kernel_loop: Callable[[ItmInfo], Started],
) -> None:
    """An application that leaves and comes back from its own callback gets a new
    queue; what reached the old one meanwhile is handed back to itm_mod."""
    depth = Depth()
    saw: list[int] = []

    def class_func(where: Hook, p: Packet) -> int:
        with depth:
            saw.append(p.dport or 0)
            if p.dport == 1:
                loop.unregister_hook(app)
                itm_queue.meanwhile = [pkt(0x7000, 2)]
                loop.register_hook(Hook.POST_ROUTING, app)
            return 0

    app = ItmInfo("again", Interest(protocol="udp"), class_func=class_func)
    loop, kernel, itm_queue = kernel_loop(app)
    kernel.send(pkt(0x7000, 1))
    loop.handle_events()
    assert depth.deepest == 1
    assert saw == [1], "packet 2 was queued to the old registration: handed back unseen"
    assert kernel.verdicts() == [(nfq.MSG_VERDICT_BATCH, NF_REPEAT, 2)]
    kernel.send(pkt(0x7001, 3))
    loop.handle_events()
    assert saw == [1, 3]


def test_packets_that_arrive_during_a_registration_outside_callbacks_wake_the_loop(
    kernel_loop: Callable[[ItmInfo], Started],
) -> None:
    """Registering from the program (or a timer) between two turns of the loop:
    the packets that came meanwhile do not run inside register_hook, and the
    loop's descriptor is readable until they have run, so a loop that waits on
    it (select, asyncio) comes back for them even if nothing else arrives."""
    saw: list[int] = []

    def class_func(where: Hook, p: Packet) -> int:
        saw.append(p.dport or 0)
        return 0

    loop, kernel, itm_queue = kernel_loop(ItmInfo("first", class_func=class_func))
    itm_queue.meanwhile = [pkt(0x7000, 1)]
    loop.register_hook(Hook.IP_IN, ItmInfo("later", process_func=lambda w, c, p: None))
    assert saw == [], "a callback ran inside register_hook"
    assert select.select([loop.fileno()], [], [], 0)[0] == [loop.fileno()]
    assert loop.handle_events() == 1
    assert saw == [1]
    assert kernel.verdicts() == [(nfq.MSG_VERDICT_BATCH, NF_REPEAT, 1)]
    assert select.select([loop.fileno()], [], [], 0)[0] == [], "woken for nothing"
