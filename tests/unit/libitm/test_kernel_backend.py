"""The kernel backend without a kernel: itm_queue messages and the REPEAT verdicts."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct

import pytest

from libitm import Hook, Interest, ItmInfo, Packet, Verdict
from libitm.backends.base import BackendUnavailable
from libitm.backends.kernel import NF_REPEAT, KernelBackend, _KernelApp
from libitm.backends.nfqueue import NfqueueBackend
from libitm.control import itm_queue_spec as spec
from libitm.control.client import ItmControlError
from libitm.control.queue import (
    kernel_interest,
    parse_register_reply,
    register_message,
    unregister_message,
)
from libitm.dispatch import Dispatcher
from libitm.transport import FULL_COPY, QueueTransport
from libitm.transport import codec as nfq
from libitm.transport.nflog import LogTransport
from libitm.transport.queue import _word_views
from tests.support.fake_queue import (
    FakeSock,
    fake_backend,
    port_app,
    sent_messages,
    sent_messages_of,
)
from tests.support.netlink_attrs import attrs as _attrs
from tests.support.packets import udp, verify

NLA_F_NESTED = 1 << 15


def test_register_message_layout() -> None:
    interest = Interest(protocol="tcp", dst="10.77.0.0/16", dport=(5000, 5010))
    msg = register_message("qos_ctrl", Hook.POST_ROUTING, -5, interest)
    msg.encode()
    data = bytes(msg.data)
    assert data[16] == spec.ITMQ_CMD_REGISTER and data[17] == spec.FAMILY_VERSION
    top = _attrs(data)
    assert top[spec.ITMQ_A_LABEL] == b"qos_ctrl\0"
    assert top[spec.ITMQ_A_HOOK][:1] == bytes([int(Hook.POST_ROUTING)])
    assert struct.unpack("=i", top[spec.ITMQ_A_PRIORITY])[0] == -5
    # the kernel's strict validation refuses a nest without NLA_F_NESTED
    nest = top[spec.ITMQ_A_INTEREST | NLA_F_NESTED]
    inner = _attrs(nest, 0)
    assert inner[spec.ITMQ_A_INTEREST_FAMILY][:1] == bytes([socket.AF_INET])
    assert inner[spec.ITMQ_A_INTEREST_PROTOCOL][:1] == bytes([6])
    assert inner[spec.ITMQ_A_INTEREST_DADDR] == bytes([10, 77, 0, 0]) + bytes(12)
    assert inner[spec.ITMQ_A_INTEREST_DMASK] == bytes([255, 255, 0, 0]) + bytes(12)
    assert struct.unpack("=H", inner[spec.ITMQ_A_INTEREST_DPORT_MIN][:2])[0] == 5000
    assert struct.unpack("=H", inner[spec.ITMQ_A_INTEREST_DPORT_MAX][:2])[0] == 5010
    assert spec.ITMQ_A_INTEREST_SADDR not in inner


def test_register_message_round_trip() -> None:
    msg = register_message("v6", Hook.IP_IN, 3, Interest(src="fd77::/16", protocol="udp"))
    msg.encode()
    back = spec.itm_queuemsg(msg.data)
    back.decode()
    assert back.get_attr("ITMQ_A_LABEL") == "v6"
    assert back.get_attr("ITMQ_A_HOOK") == int(Hook.IP_IN)
    nest = back.get_attr("ITMQ_A_INTEREST")
    assert nest.get_attr("ITMQ_A_INTEREST_FAMILY") == socket.AF_INET6
    assert nest.get_attr("ITMQ_A_INTEREST_SADDR") == ipaddress.ip_address("fd77::").packed
    assert nest.get_attr("ITMQ_A_INTEREST_SMASK") == b"\xff\xff" + bytes(14)


def test_register_message_asks_for_a_range_of_queues_only_with_workers() -> None:
    one = register_message("a", Hook.IP_IN, 0, Interest())
    one.encode()
    assert spec.ITMQ_A_QUEUE_COUNT not in _attrs(bytes(one.data))
    four = register_message("a", Hook.IP_IN, 0, Interest(), queue_count=4)
    four.encode()
    assert struct.unpack("=H", _attrs(bytes(four.data))[spec.ITMQ_A_QUEUE_COUNT][:2])[0] == 4


def test_unregister_message() -> None:
    msg = unregister_message("gone")
    msg.encode()
    data = bytes(msg.data)
    assert data[16] == spec.ITMQ_CMD_UNREGISTER
    assert _attrs(data) == {spec.ITMQ_A_LABEL: b"gone\0"}


@pytest.mark.parametrize(
    ("interest", "exact", "family", "proto"),
    [
        (Interest(), True, 0, 0),
        (Interest(family=4, protocol="udp", dport=53), True, socket.AF_INET, 17),
        (Interest(protocol="icmp", family=6), True, socket.AF_INET6, 58),
        # ICMP and ICMPv6 at once: one kernel interest cannot say it
        (Interest(protocol="icmp"), False, 0, 0),
        # libitm: TCP or UDP; the kernel also lets SCTP, DCCP, UDP-Lite through
        (Interest(dport=80), False, 0, 0),
    ],
)
def test_kernel_interest(interest: Interest, exact: bool, family: int, proto: int) -> None:
    kin = kernel_interest(interest)
    attrs = dict(kin.attrs)
    assert kin.exact is exact
    assert attrs["ITMQ_A_INTEREST_FAMILY"] == family
    assert attrs["ITMQ_A_INTEREST_PROTOCOL"] == proto


def test_parse_register_reply() -> None:
    reply = spec.itm_queuemsg()
    reply["cmd"] = spec.ITMQ_CMD_REGISTER
    reply["attrs"] = [
        ["ITMQ_A_LABEL", "app"],
        ["ITMQ_A_HOOK", int(Hook.IP_FORWARD)],
        ["ITMQ_A_PRIORITY", 7],
        ["ITMQ_A_QUEUE_NUM", 0x7003],
        ["ITMQ_A_PID", 1234],
        ["ITMQ_A_QUEUE_COUNT", 2],
    ]
    reply.encode()
    back = spec.itm_queuemsg(reply.data)
    back.decode()
    reg = parse_register_reply(back)
    assert reg.queues == range(0x7003, 0x7005)
    assert (reg.label, reg.hook, reg.priority, reg.queue_num, reg.pid) == (
        "app",
        Hook.IP_FORWARD,
        7,
        0x7003,
        1234,
    )
    empty = spec.itm_queuemsg()
    empty["attrs"] = [["ITMQ_A_LABEL", "app"]]
    empty.encode()
    back = spec.itm_queuemsg(empty.data)
    back.decode()
    with pytest.raises(ItmControlError, match="no queue number"):
        parse_register_reply(back)


def _bare() -> KernelBackend:
    """A kernel backend built without itm_queue (its __init__ looks the family up)."""
    be = KernelBackend.__new__(KernelBackend)
    be.copy_range = 128
    be.transport = QueueTransport(be._route, NF_REPEAT)
    be._closed = False
    be._client = None
    be._strict = False
    be._apps, be._queue_of = {}, {}
    be.workers, be._pool, be._worker, be._host = 1, None, None, None
    be._forked_client = None
    be.observers, be._groups, be._epoll = True, {}, None
    be.log = LogTransport(be._log_route)
    return be


def test_with_workers_the_supervisor_binds_nothing_and_worker_i_binds_queue_i(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """install() with workers registers a range and binds no queue (the supervisor
    holds the registration); a worker binds queue ``index`` of every app's range."""
    asked: list[int] = []

    class Reg:
        queue_num = 0x7010
        queue_count = 3

    class Client:
        def register(
            self, label: str, hook: Hook, prio: int, kin: object, count: int, observer: bool
        ) -> Reg:
            asked.append(count)
            return Reg()

        def forget_in_child(self) -> None:
            asked.append(-1)

    be = _bare()
    be.workers, be.observers = 3, False  # as __init__ makes it: no observers with workers
    be._observers_asked = True
    be._client = Client()  # type: ignore[assignment]
    bound: list[tuple[str, int, int | None]] = []

    def bind(q: int, rng: int | None = None) -> int:
        bound.append(("bind", q, rng))
        return 0

    monkeypatch.setattr(be.transport, "bind", bind)
    monkeypatch.setattr(be.transport, "configure", lambda q, n: bound.append(("cfg", q, n)))
    monkeypatch.setattr(be.transport, "open", lambda: None)
    info = ItmInfo("wk", Interest(protocol="udp"))
    with caplog.at_level(logging.WARNING, "libitm"):
        be.install(Hook.IP_FORWARD, info)
    assert asked == [3] and bound == []
    # an observer (no process_func) queued like a decider: said
    assert "app wk has no process_func (an observer), but with workers=3" in caplog.text
    assert be.app_queues == {"wk": 0x7010}
    be._become_worker(2)
    assert asked == [3, -1], "the worker closes its copy of the registering socket"
    assert be._client is None and be.supervises is False
    # bound and configured in one request (a restarted worker's queue already
    # gets packets; bound without a copy mode, nfnetlink_queue would drop them)
    assert bound == [("bind", 0x7012, be.copy_range)]
    route = be._route(0x7012)
    assert route is not None and route[0] is Hook.IP_FORWARD
    assert be._route(0x7010) is None, "another worker's queue"
    with pytest.raises(BackendUnavailable, match="before the loop starts"):
        be._client = Client()  # type: ignore[assignment]
        be.install(Hook.IP_IN, ItmInfo("late", Interest()))


def test_an_app_without_process_func_is_registered_as_an_observer_on_a_log_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, bool]] = []
    unregistered: list[str] = []

    class Reg:
        queue_num = 0x7005
        queue_count = 1

    class Client:
        def register(
            self, label: str, hook: Hook, prio: int, kin: object, count: int, observer: bool
        ) -> Reg:
            asked.append((label, observer))
            return Reg()

        def unregister(self, label: str) -> None:
            unregistered.append(label)

    be = _bare()
    be._client = Client()  # type: ignore[assignment]
    groups: list[tuple[int, int | None]] = []
    monkeypatch.setattr(be.log, "open", lambda: None)
    monkeypatch.setattr(be.log, "_sock", object())

    def bind(g: int, rng: int | None = None) -> int:
        groups.append((g, rng))
        return 0

    monkeypatch.setattr(be.log, "bind", bind)
    watcher = ItmInfo("watch", Interest(protocol="udp"), class_func=lambda w, p: 1)
    be.install(Hook.IP_FORWARD, watcher)
    # its copies are as long as a queue's: the first copy_range bytes, not the
    # whole of a 64 KiB GSO buffer that it did not ask for
    assert asked == [("watch", True)] and groups == [(0x7005, 128)]
    assert be.app_queues == {"watch": 0x7005}
    assert be._route(0x7005) is None, "an observer has no queue"
    route = be._log_route(0x7005)
    assert route is not None and route[0] is Hook.IP_FORWARD
    assert be.counters()["observer_copies"] == 0
    # a refused bind undoes the registration and says why
    monkeypatch.setattr(be.log, "bind", lambda g, rng=None: errno.EBUSY)
    with pytest.raises(BackendUnavailable, match="nfnetlink_log group 28677"):
        be.install(Hook.IP_IN, ItmInfo("busy", Interest()))
    assert unregistered == ["busy"]
    monkeypatch.setattr(be.log, "bind", bind)
    reader = ItmInfo("reader", Interest(), class_func=lambda w, p: 1, needs_payload=True)
    be.install(Hook.IP_IN, reader)
    assert groups[-1] == (0x7005, FULL_COPY), "needs_payload: whole packets"
    # with observers=False it is queued like any other application
    be.observers = False
    monkeypatch.setattr(be.transport, "bind", lambda q, rng=None: 0)
    be.install(Hook.IP_IN, ItmInfo("queued", Interest()))
    assert asked[-1] == ("queued", False)


def test_workers_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"workers must be in 1\.\.64"):
        KernelBackend.__init__(KernelBackend.__new__(KernelBackend), workers=0)


def _backend(info: ItmInfo, datagrams: list[bytes | OSError]) -> tuple[KernelBackend, FakeSock]:
    """A kernel backend with one app on queue 0x7000, without itm_queue or a socket."""
    be = _bare()
    disp = Dispatcher()
    disp.add(Hook.POST_ROUTING, info)
    be._apps = {0x7000: _KernelApp(info, Hook.POST_ROUTING, 0x7000, disp)}
    be._queue_of = {id(info): 0x7000}
    sock = FakeSock(datagrams)
    be.transport._sock = sock  # type: ignore[assignment]
    return be, sock


def test_accepted_packets_are_repeated_and_drops_dropped() -> None:
    info = port_app()  # drops port 1, TOS 0x10 on port 2
    pkts = [
        nfq.encode_packet(0x7000, 1, udp("10.0.0.1", "10.0.0.2", 9, 5)),
        nfq.encode_packet(0x7000, 2, udp("10.0.0.1", "10.0.0.2", 9, 1)),
        nfq.encode_packet(0x7000, 3, udp("10.0.0.1", "10.0.0.2", 9, 2)),
        nfq.encode_packet(0x7001, 4, udp("10.0.0.1", "10.0.0.2", 9, 5)),  # unknown queue
    ]
    be, sock = _backend(info, [b"".join(pkts)])
    assert be.process() == 4
    msgs = sent_messages(sock)
    single = {pid: (v, payload) for t, v, pid, payload in msgs if t == nfq.MSG_VERDICT}
    batch = {pid: v for t, v, pid, _ in msgs if t == nfq.MSG_VERDICT_BATCH}
    assert single[2] == (nfq.NF_DROP, None)
    v, payload = single[3]
    assert v == NF_REPEAT and payload is not None and payload[1] == 0x10 and verify(payload)
    # plainly accepted packets: one batch per queue, NF_REPEAT (itm_mod goes on)
    assert batch == {1: NF_REPEAT, 4: NF_REPEAT}
    assert all(v in (NF_REPEAT, nfq.NF_DROP) for _, v, _, _ in msgs)
    assert info.counters.packets == 3
    # in arrival order: the accepted packet 1 is released before 3 gets its own
    # verdict (the dropped 2 leaves nothing to keep in order)
    assert [(t, pid) for t, _, pid, _ in msgs] == [
        (nfq.MSG_VERDICT, 2),
        (nfq.MSG_VERDICT_BATCH, 1),
        (nfq.MSG_VERDICT, 3),
        (nfq.MSG_VERDICT_BATCH, 4),
    ]


def test_an_app_that_leaves_mid_batch_hands_back_the_rest() -> None:
    """The packet loop caches the queue's application; unregistering it inside a
    callback takes effect from the next packet, which goes back to itm_mod."""
    seen: list[int] = []
    be: KernelBackend | None = None

    def class_func(p: Packet) -> int:
        seen.append(p.dport or 0)
        if len(seen) == 2:
            assert be is not None
            be.uninstall(info)
        return 1

    info = ItmInfo("gone", Interest(protocol="udp"), class_func=class_func)
    pkts = [nfq.encode_packet(0x7000, i, udp("10.0.0.1", "10.0.0.2", 9, i)) for i in range(1, 5)]
    be, sock = _backend(info, [b"".join(pkts)])
    assert be.process() == 4
    assert seen == [1, 2]
    assert [(t, v, pid) for t, v, pid, _ in sent_messages(sock)] == [
        (nfq.MSG_VERDICT_BATCH, NF_REPEAT, 4)
    ]
    assert info.counters.packets == 2


def test_registered_apps_are_read_many_packets_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """install() sizes the recvmmsg receiver for the queue it binds (whole packets for
    an app that needs them): the kernel backend reads as the nfqueue one does."""

    class Reg:
        queue_num = 0x7002

    class Client:
        def register(self, *args: object, **kwargs: object) -> Reg:
            return Reg()

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        be = _bare()
        be.observers = False  # the app has no process_func: queued all the same
        be._client = Client()  # type: ignore[assignment]
        be.transport._sock = b
        monkeypatch.setattr(be.transport, "_config", lambda msg: 0)
        be.install(Hook.IP_FORWARD, ItmInfo("rx", Interest(protocol="udp"), needs_payload=True))
        assert be.transport._rx is not None and be.transport._rx.slots > 1
        assert be.transport._rx.slot_size > 0xFFFF, "whole packets"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "nfqueue"])
def test_decoded_path_answers_as_the_packet_loop(kernel: bool) -> None:
    """The decoded path (_messages_portable -> _packet: config acks, big-endian
    machines) goes through the same _route, dispatcher and verdicts as the loop."""

    def pf(w: Hook, c: int, p: Packet) -> Verdict:
        if p.dport == 1:
            return Verdict.DROP
        if p.dport == 2:
            p.tos = 0x10
        if p.dport == 3:
            p.mark = 9
        return Verdict.ACCEPT

    q = 0x7000 if kernel else 7
    pkts = [
        nfq.encode_packet(q, i, udp("10.0.0.1", "10.0.0.2", 9, d))
        for i, d in enumerate([5, 1, 2, 5, 3, 5], start=1)
    ] + [nfq.encode_packet(q + 1, 7, udp("10.0.0.1", "10.0.0.2", 9, 5))]  # unknown queue
    datagram = b"".join(pkts)
    sent = []
    for portable in (False, True):
        info = ItmInfo("d", Interest(protocol="udp"), class_func=lambda p: 1, process_func=pf)
        be: KernelBackend | NfqueueBackend
        if kernel:
            be, sock = _backend(info, [])
        else:
            be, sock = fake_backend([info], [])
        buf = bytearray(datagram) + bytes(-len(datagram) % 4)
        views = (buf, memoryview(buf), *_word_views(buf))
        pending: dict[int, int] = {}
        out = bytearray()
        run = be.transport._messages_portable if portable else be.transport._messages
        assert run(views, 1, [0], [len(datagram)], pending, out) == 7
        be.transport._flush(out, pending)
        sent.append((sock.sent, be.counters(), info.counters.as_dict()))
    assert sent[0] == sent[1]
    got = sent_messages_of(sent[0][0])
    acc = NF_REPEAT if kernel else nfq.NF_ACCEPT
    assert [(t, v, i) for t, v, i, _ in got] == [
        (nfq.MSG_VERDICT, nfq.NF_DROP, 2),
        (nfq.MSG_VERDICT_BATCH, acc, 1),
        (nfq.MSG_VERDICT, acc, 3),
        (nfq.MSG_VERDICT_BATCH, acc, 4),
        (nfq.MSG_VERDICT, acc, 5),
        (nfq.MSG_VERDICT_BATCH, acc, 6),
        (nfq.MSG_VERDICT_BATCH, acc, 7),
    ]
