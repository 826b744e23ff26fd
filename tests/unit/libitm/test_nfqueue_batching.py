"""The nfqueue backend's drain and verdict batching, driven by a fake netlink socket."""

from __future__ import annotations

import errno
import socket

import pytest

from libitm import Interest, ItmInfo, Packet
from libitm.transport import codec as nfq
from tests.support.fake_queue import fake_backend, pkt_msg, port_app, sent_messages
from tests.support.packets import tcp, verify


def test_verdicts_keep_the_packets_order() -> None:
    """Accepted packets wait for one batch verdict, but never behind a later packet:
    a modified packet's own verdict first releases the accepted ones before it."""
    msgs: list[bytes | OSError] = [
        pkt_msg(1, 0),
        pkt_msg(2, 1),
        pkt_msg(3, 2),
        pkt_msg(4, 0),
        pkt_msg(5, 0),
    ]
    be, sock = fake_backend([port_app()], msgs)
    assert be.process() == 5
    assert len(sock.sent) == 1, "all verdicts of a wakeup go out in one send"
    got = sent_messages(sock)
    assert [(t, v, i) for t, v, i, _ in got] == [
        (nfq.MSG_VERDICT, nfq.NF_DROP, 2),
        (nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 1),
        (nfq.MSG_VERDICT, nfq.NF_ACCEPT, 3),
        (nfq.MSG_VERDICT_BATCH, nfq.NF_ACCEPT, 5),
    ]
    modified = got[2][3]
    assert modified is not None and Packet(modified).tos == 0x10 and verify(modified)
    c = be.counters()
    assert (c["packets"], c["dropped"], c["modified"], c["batch_msgs"]) == (5, 1, 1, 2)


def test_packets_outside_every_interest_are_batched() -> None:
    tcp_msg = nfq.encode_packet(7, 1, tcp("10.0.0.1", "10.0.0.2", 9, 1))
    # two apps at the hook: the interests are checked in Python (one app alone is
    # trusted to the kernel rules, which never deliver other packets)
    other = ItmInfo("o", Interest(protocol="udp", dport=9999))
    be, sock = fake_backend([port_app(), other], [tcp_msg, pkt_msg(2, 0)])
    be.process()
    assert [(t, i) for t, _, i, _ in sent_messages(sock)] == [(nfq.MSG_VERDICT_BATCH, 2)]


def test_batch_limit_and_enobufs() -> None:
    msgs: list[bytes | OSError] = [pkt_msg(i, 0) for i in range(1, 4)]
    msgs.insert(1, OSError(errno.ENOBUFS, "lost"))
    be, sock = fake_backend([port_app()], msgs, batch=2)
    assert be.process() == 2
    assert be.process() == 1
    assert [i for _, _, i, _ in sent_messages(sock)] == [2, 3]
    assert be.counters()["enobufs"] == 1


def test_strict_exception_still_answers_the_packet() -> None:
    def boom(p: Packet) -> int:
        raise RuntimeError("x")

    d_app = ItmInfo("s", class_func=boom)
    be, sock = fake_backend([d_app], [pkt_msg(1, 0), pkt_msg(2, 0)])
    assert be._disp is not None
    be._disp.strict = True
    with pytest.raises(RuntimeError):
        be.process()
    assert [(t, v, i) for t, v, i, _ in sent_messages(sock)] == [
        (nfq.MSG_VERDICT, nfq.NF_ACCEPT, 1)
    ]


def test_netlink_errors_and_garbage_are_counted() -> None:
    err = (
        nfq.NLMSGHDR.pack(36, nfq.NLMSG_ERROR, 0, 0, 0)
        + (-errno.ENOENT).to_bytes(4, "little", signed=True)
        + bytes(16)
    )
    bad = nfq._message(nfq.MSG_PACKET, 7, b"", seq=0, flags=0, family=socket.AF_INET)
    be, _sock = fake_backend([port_app()], [err, bad, pkt_msg(3, 0)])
    assert be.process() == 2
    c = be.counters()
    assert c["netlink_errors"] == 1 and c["bad_messages"] == 1 and c["packets"] == 1
