"""recvmmsg slots, the raw verdict header, and the backend's many-packets-per-read path.

The backend is driven through a real AF_UNIX datagram socket pair (recvmmsg works
on any datagram socket): the messages nfnetlink_queue would send go in at one
end, the verdicts come out at the other, and they must be the ones the
one-message-per-recv path (a fake socket) gives for the same input.
"""

from __future__ import annotations

import socket

import pytest

from libitm import Hook, Interest, ItmInfo, Packet, Verdict
from libitm.transport import codec as nfq
from libitm.transport.mmsg import MultiReceiver, open_receiver
from tests.support.fake_queue import (
    fake_backend,
    mmsg_backend,
    pkt_msg,
    port_app,
    sent_messages,
    sent_messages_of,
)
from tests.support.packets import tcp, udp, verify


def test_receiver_slots_lengths_truncation(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    rx = open_receiver(b, 4, 100)
    assert isinstance(rx, MultiReceiver)
    assert rx.slot_size == 104 and len(rx.buf) == 4 * 104
    assert rx.recv() == 0, "nothing waiting: 0, not an error"
    data = [bytes([i]) * (10 * i + 1) for i in range(1, 6)] + [b"z" * 300]
    for d in data:
        a.send(d)
    assert rx.recv(3) == 3, "limit"
    assert rx.lengths(3) == [11, 21, 31]
    for i in range(3):
        assert bytes(rx.buf[i * 104 : i * 104 + rx.length(i)]) == data[i]
        assert not rx.truncated(i)
    assert rx.recv() == 3
    assert rx.lengths(3) == [41, 51, 104]
    assert rx.truncated(2) and not rx.truncated(1)
    assert bytes(rx.buf[0:41]) == data[3]
    assert rx.recv() == 0
    rx.close()


def test_receiver_dense_area_and_overflow(pair: tuple[socket.socket, socket.socket]) -> None:
    """Slots of 1000 bytes whose first 104 lie in the dense area: datagrams that fit
    are read in place, longer ones are put together in the overflow area."""
    a, b = pair
    rx = open_receiver(b, 4, 1000, dense=100)
    assert isinstance(rx, MultiReceiver)
    assert (rx.dense, rx.overflow, len(rx.buf)) == (104, 4 * 104, 4 * 104 + 4 * 1000)
    data = [b"a" * 104, b"b" * 105, b"c" * 3, b"d" * 1000]
    for d in data:
        a.send(d)
    assert rx.recv() == 4
    lens = rx.lengths(4)
    assert lens == [104, 105, 3, 1000]
    starts = rx.starts(lens)
    assert starts[0] == 0 and starts[2] == 2 * 104, "short ones stay in the dense area"
    assert starts[1] >= rx.overflow and starts[3] >= rx.overflow
    for i, d in enumerate(data):
        assert bytes(rx.buf[starts[i] : starts[i] + lens[i]]) == d
        assert starts[i] % 8 == 0
    a.send(b"e" * 1001)
    a.send(b"f" * 5)
    assert rx.recv() == 2
    assert rx.truncated(0) and not rx.truncated(1)
    lens = rx.lengths(2)
    starts = rx.starts(lens)
    assert bytes(rx.buf[starts[1] : starts[1] + 5]) == b"f" * 5
    assert rx.starts([5]) == [0, 104, 208, 312], "no copy when everything fits"
    rx.close()


def test_whole_packets_of_every_size_give_the_same_verdicts(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Whole packets (copy range 65535) small and large, rewritten or not: the
    recvmmsg path (dense area plus overflow) answers exactly as one recv each."""
    a, b = pair
    sizes = [10, 1400, 3000, 20, 9000, 1, 2100, 60000, 30]
    msgs: list[bytes | OSError] = [
        nfq.encode_packet(7, i + 1, udp("10.0.0.1", "10.0.0.2", 9, 2 if i % 3 else 0, b"x" * n))
        for i, n in enumerate(sizes)
    ]
    be_ref, sock = fake_backend([port_app()], list(msgs))
    assert be_ref.process() == len(msgs)
    be = mmsg_backend([port_app()], b)
    for m in msgs:
        assert isinstance(m, bytes)
        a.send(m)
    assert be.process() == len(msgs)
    assert b"".join(_verdicts(a)) == b"".join(sock.sent)
    got = sent_messages(sock)
    rewritten = [p for t, _, _, p in got if t == nfq.MSG_VERDICT]
    assert len(rewritten) == 6
    for p in rewritten:
        assert p is not None and Packet(p).tos == 0x10 and verify(p)
    assert be.counters() | {"recvs": 0, "sends": 0} == be_ref.counters() | {"recvs": 0, "sends": 0}


def test_raw_verdict_header_matches_append_verdict() -> None:
    payload = udp("10.0.0.1", "10.0.0.2", 9, 10, b"abcde")  # odd length: padding
    want = nfq.verdict(300, 0x01020304, nfq.NF_ACCEPT, payload=payload)
    got = bytearray(
        nfq.VERDICT_PAYLOAD_RAW.pack(
            36 + len(payload),
            nfq.VERDICT_RAW_HEAD,
            socket.htons(300),
            nfq.verdict_raw_attr(socket.htonl(nfq.NF_ACCEPT)),
            socket.htonl(0x01020304),
            4 + len(payload),
            nfq.NFQA_PAYLOAD,
        )
    )
    got += payload + b"\0" * (-len(payload) % 4)
    assert bytes(got) == want


def _attrs_msg(pid: int, dport: int, *, mark: int | None = None, cap: int | None = None) -> bytes:
    """A packet message with the attributes the kernel puts between header and payload."""
    return nfq.encode_forwarded_packet(
        7, pid, udp("10.0.0.1", "10.0.0.2", 9, dport, b"data"), mark=mark, cap_len=cap
    )


def _verdicts(a: socket.socket) -> list[bytes]:
    a.setblocking(False)
    out = []
    while True:
        try:
            out.append(a.recv(1 << 20))
        except BlockingIOError:
            return out


def test_mmsg_path_gives_the_same_verdicts(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    msgs = [
        _attrs_msg(1, 0),
        _attrs_msg(2, 1),  # dropped
        _attrs_msg(3, 2),  # TOS rewritten
        pkt_msg(4, 0),  # other attributes: the walk runs again
        _attrs_msg(5, 2),
        _attrs_msg(6, 0),
        _attrs_msg(7, 0),
    ]
    be_ref, sock = fake_backend([port_app()], list(msgs))
    assert be_ref.process() == len(msgs)
    be = mmsg_backend([port_app()], b)
    for m in msgs:
        a.send(m)
    assert be.process() == len(msgs)
    sent = _verdicts(a)
    assert len(sent) == 1, "one send per wakeup"
    assert sent == sock.sent
    got = sent_messages(sock)
    # in the packets' order: a rewritten packet first releases the accepted ones before it
    assert [(t, v, i) for t, v, i, _ in got] == [
        (nfq.MSG_VERDICT, nfq.NF_DROP, 2),
        (nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 1),
        (nfq.MSG_VERDICT, nfq.NF_ACCEPT, 3),
        (nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 4),
        (nfq.MSG_VERDICT, nfq.NF_ACCEPT, 5),
        (nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 7),
    ]
    for _, _, _, payload in (got[2], got[4]):
        assert payload is not None and Packet(payload).tos == 0x10 and verify(payload)
    assert be.counters() | {"recvs": 0} == be_ref.counters() | {"recvs": 0}
    assert be.counters()["recvs"] == 1


def test_changing_attributes_are_read_for_every_packet(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    seen: list[tuple[int, int]] = []

    def cls(p: Packet) -> int:
        seen.append((p.mark, p.orig_len))
        return 0

    be = mmsg_backend([ItmInfo("m", Interest(protocol="udp"), class_func=cls)], b)
    plain = _attrs_msg(1, 0)
    for m in (
        plain,
        _attrs_msg(2, 0, mark=5),
        _attrs_msg(3, 0, mark=5),
        _attrs_msg(4, 0, mark=6),
        _attrs_msg(5, 0, mark=6, cap=900),
        _attrs_msg(6, 0, mark=6, cap=900),
        _attrs_msg(7, 0),
    ):
        a.send(m)
    assert be.process() == 7
    n = len(Packet(udp("10.0.0.1", "10.0.0.2", 9, 0, b"data")).raw)
    assert seen == [(0, n), (5, n), (5, n), (6, n), (6, 900), (6, 900), (0, n)]


def test_mmsg_batch_limit_and_slot_count(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    be = mmsg_backend([port_app()], b, batch=3)
    assert be.transport._rx is not None and be.transport._rx.slots == 3
    for i in range(1, 6):
        a.send(_attrs_msg(i, 0))
    assert be.process() == 3
    assert be.process() == 2
    assert be.process() == 0
    ids = [i for _, _, i, _ in sent_messages_of(_verdicts(a))]
    assert ids == [3, 5]


def test_drop_and_mark_paths(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    def pf(w: Hook, c: int, p: Packet) -> Verdict:
        if p.dport == 1:
            return Verdict.DROP
        if p.dport == 3:
            p.mark = 42
        if p.dport == 4:
            p.mark = 43
            p.tos = 0x04
        return Verdict.ACCEPT

    info = ItmInfo("d", Interest(protocol="udp"), class_func=lambda p: 1, process_func=pf)
    msgs = [_attrs_msg(i, d) for i, d in ((1, 1), (2, 3), (3, 4), (4, 0))]
    be_ref, sock = fake_backend([info], list(msgs))
    be_ref.process()
    be = mmsg_backend([info], b)
    for m in msgs:
        a.send(m)
    be.process()
    assert _verdicts(a) == sock.sent


def test_portable_path_agrees(pair: tuple[socket.socket, socket.socket]) -> None:
    """The decode_packet-based path (used on big-endian machines) gives the same verdicts."""
    a, b = pair
    msgs = [_attrs_msg(i, d, mark=7 if i == 3 else None) for i, d in enumerate((0, 1, 2, 0, 3), 1)]
    sent = []
    for portable in (False, True):
        be = mmsg_backend([port_app()], b)
        if portable:
            be.transport._messages = be.transport._messages_portable  # type: ignore[method-assign]
        for m in msgs:
            a.send(m)
        assert be.process() == len(msgs)
        sent.append(_verdicts(a))
        c = be.counters()
        assert (c["packets"], c["dropped"], c["modified"]) == (5, 1, 1)
    assert sent[0] == sent[1]


def test_socket_drops_counter(pair: tuple[socket.socket, socket.socket]) -> None:
    """counters() reads the socket's own drop count (SO_MEMINFO), 0 on a healthy socket."""
    _a, b = pair
    be = mmsg_backend([port_app()], b)
    c = be.counters()
    assert c["socket_drops"] == 0
    assert set(c) >= {"packets", "enobufs", "socket_drops"}


@pytest.mark.parametrize("portable", [False, True])
def test_exception_mid_batch_keeps_the_rest(
    pair: tuple[socket.socket, socket.socket], portable: bool
) -> None:
    """A strict-mode exception on packet 2 of 4 read together: packet 2 is accepted,
    and 3 and 4 - already out of the socket - are handled by the next process()
    (closing the socket without answering them would drop them)."""
    a, b = pair
    seen: list[int] = []

    def cls(p: Packet) -> int:
        seen.append(p.dport or 0)
        if p.dport == 99 and len(seen) == 2:
            raise RuntimeError("boom")
        return 0

    be = mmsg_backend([ItmInfo("x", Interest(protocol="udp"), class_func=cls)], b)
    if portable:
        be.transport._messages = be.transport._messages_portable  # type: ignore[method-assign]
    assert be._disp is not None
    be._disp.strict = True
    for i, d in ((1, 5), (2, 99), (3, 6), (4, 7)):
        a.send(_attrs_msg(i, d))
    with pytest.raises(RuntimeError):
        be.process()
    first = sent_messages_of(_verdicts(a))
    assert [(t, i) for t, _, i, _ in first] == [(nfq.MSG_VERDICT, 2), (nfq.MSG_VERDICT_BATCH, 1)]
    assert be.process() == 2
    assert [(t, i) for t, _, i, _ in sent_messages_of(_verdicts(a))] == [(nfq.MSG_VERDICT_BATCH, 4)]
    assert seen == [5, 99, 6, 7]


def test_big_rewritten_packets_leave_from_the_receive_buffer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """GSO-sized TCP packets with the checksum the kernel left partial: each rewritten
    one's verdict leaves in a datagram of its own, in the fast lane gathered from its
    receive slot (not copied into the verdict buffer), with the new TOS and a full
    checksum; the bytes are those of the one-recv-per-packet path."""
    a, b = pair

    def pf(w: Hook, c: int, p: Packet) -> Verdict:
        p.tos = 0x28
        return Verdict.ACCEPT

    def app() -> ItmInfo:
        return ItmInfo("t", Interest(protocol="tcp"), class_func=lambda p: 1, process_func=pf)

    sizes = [60000, 60001, 60002, 60003, 1000, 50000]  # every padding; one small
    msgs: list[bytes | OSError] = []
    for i, n in enumerate(sizes):
        raw = bytearray(tcp("10.0.0.1", "10.0.0.2", 40000, 80, bytes([i + 1]) * n))
        raw[36:38] = b"\x12\x34"  # a pseudo-header sum, as CHECKSUM_PARTIAL leaves it
        msgs.append(nfq.encode_packet(7, i + 1, bytes(raw), skb_info=nfq.NFQA_SKB_CSUMNOTREADY))
    be_ref, sock = fake_backend([app()], list(msgs))
    assert be_ref.process() == len(msgs)
    be = mmsg_backend([app()], b)
    gathered: list[int] = []

    class Recording:
        """``b``, recording the parts of each sendmsg."""

        def __getattr__(self, name: str) -> object:
            return getattr(b, name)

        def sendmsg(self, parts: list[bytes]) -> int:
            gathered.append(len(parts))
            return b.sendmsg(parts)

    be.transport._sock = Recording()  # type: ignore[assignment]
    for m in msgs:
        assert isinstance(m, bytes)
        a.send(m)
    assert be.process() == len(msgs)
    got = _verdicts(a)
    assert b"".join(got) == b"".join(sock.sent)
    big = [d for d in got if len(d) > 4096]
    assert len(big) == 5, "one datagram per big verdict"
    # the first packet teaches the fast lane its layout (the general lane copies)
    assert gathered == [4] * 4, "verdict buffer, header, packet, padding"
    verdicts = sent_messages_of(got)
    assert [pid for _, _, pid, _ in verdicts] == list(range(1, 7))
    for _, _, _, p in verdicts:
        assert p is not None and Packet(p).tos == 0x28 and verify(p)
