"""The hand-written nfnetlink_queue codec on hand-built messages."""

from __future__ import annotations

import socket
import struct

import pytest

from libitm.transport import codec as nfq
from tests.support.packets import tcp


def _nlhdr(msg: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack_from("=IHHII", msg, 0)


def test_config_bind_layout() -> None:
    m = nfq.config_cmd(4100, nfq.NFQNL_CFG_CMD_BIND, seq=7)
    length, mtype, flags, seq, pid = _nlhdr(m)
    assert length == len(m) == 28
    assert mtype == (3 << 8) | 2
    assert flags == nfq.NLM_F_REQUEST | nfq.NLM_F_ACK and seq == 7 and pid == 0
    family, version, res_id = struct.unpack_from("!BBH", m, 16)
    assert (family, version, res_id) == (0, 0, 4100)
    alen, atype = struct.unpack_from("=HH", m, 20)
    assert (alen, atype) == (8, nfq.NFQA_CFG_CMD)
    assert m[24:28] == bytes((1, 0, 0, 0))


def test_config_params_layout() -> None:
    m = nfq.config_params(3, copy_range=128, maxlen=4096, flags=1, mask=5)
    attrs = {}
    pos = 20
    while pos < len(m):
        alen, atype = struct.unpack_from("=HH", m, pos)
        attrs[atype] = m[pos + 4 : pos + alen]
        pos += (alen + 3) & ~3
    assert attrs[nfq.NFQA_CFG_PARAMS] == struct.pack(">IB", 128, nfq.NFQNL_COPY_PACKET)
    assert attrs[nfq.NFQA_CFG_QUEUE_MAXLEN] == struct.pack(">I", 4096)
    assert attrs[nfq.NFQA_CFG_FLAGS] == struct.pack(">I", 1)
    assert attrs[nfq.NFQA_CFG_MASK] == struct.pack(">I", 5)
    assert len(m) % 4 == 0 and _nlhdr(m)[0] == len(m)


def test_config_params_can_bind_in_the_same_message() -> None:
    """The bind command first, then the parameters: one request, so the queue is
    never bound without a copy mode (nfnetlink_queue drops packets for it then)."""
    m = nfq.config_params(4101, copy_range=256, bind=True)
    order = _attrs_of(m)
    assert order[0] == (nfq.NFQA_CFG_CMD, bytes((nfq.NFQNL_CFG_CMD_BIND, 0, 0, 0)))
    assert order[1] == (nfq.NFQA_CFG_PARAMS, struct.pack(">IB", 256, nfq.NFQNL_COPY_PACKET))
    assert struct.unpack_from("!H", m, 18)[0] == 4101 and _nlhdr(m)[0] == len(m)
    assert nfq.NFQA_CFG_CMD not in [a for a, _ in _attrs_of(nfq.config_params(1))]


def _attrs_of(m: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 20
    while pos < len(m):
        alen, atype = struct.unpack_from("=HH", m, pos)
        out.append((atype, m[pos + 4 : pos + alen]))
        pos += (alen + 3) & ~3
    return out


def test_verdict_plain_and_batch() -> None:
    m = nfq.verdict(9, 0x01020304, nfq.NF_DROP)
    assert len(m) == 32 and _nlhdr(m)[1] == (3 << 8) | 1
    assert struct.unpack_from("!H", m, 18)[0] == 9
    assert struct.unpack_from("=HH", m, 20) == (12, nfq.NFQA_VERDICT_HDR)
    assert struct.unpack_from("!II", m, 24) == (nfq.NF_DROP, 0x01020304)
    b = nfq.verdict(9, 77, nfq.NF_ACCEPT, batch=True)
    assert _nlhdr(b)[1] == (3 << 8) | 3 and struct.unpack_from("!II", b, 24) == (1, 77)


def test_verdict_with_mark_and_odd_payload() -> None:
    payload = b"\x45" + bytes(20)  # 21 bytes: needs padding
    m = nfq.verdict(1, 5, nfq.NF_ACCEPT, mark=0xDEADBEEF, payload=payload)
    length = _nlhdr(m)[0]
    assert length == 32 + 8 + 4 + 21 and len(m) == (length + 3) & ~3
    assert struct.unpack_from("=HH", m, 32) == (8, nfq.NFQA_MARK)
    assert struct.unpack_from("!I", m, 36) == (0xDEADBEEF,)
    assert struct.unpack_from("=HH", m, 40) == (25, nfq.NFQA_PAYLOAD)
    assert m[44 : 44 + 21] == payload


def test_several_messages_concatenate_aligned() -> None:
    out = bytearray()
    nfq.append_verdict(out, 1, 1, nfq.NF_ACCEPT, payload=b"abc")
    nfq.append_verdict(out, 1, 2, nfq.NF_DROP)
    nfq.append_verdict(out, 1, 3, nfq.NF_ACCEPT, batch=True)
    got = [(t, off) for t, _, off, _ in nfq.messages(out, len(out))]
    assert [t for t, _ in got] == [nfq.MSG_VERDICT, nfq.MSG_VERDICT, nfq.MSG_VERDICT_BATCH]
    assert all(off % 4 == 0 for _, off in got)


def test_decode_packet_round_trip() -> None:
    pkt = tcp("10.0.0.1", "10.0.0.2", 1, 2, b"xyz")
    m = nfq.encode_packet(
        4101, 42, pkt[:30], hook=4, mark=7, cap_len=len(pkt), skb_info=nfq.NFQA_SKB_CSUMNOTREADY
    )
    buf = bytearray(b"\0" * 8 + m)  # not at offset 0
    [(mtype, _, off, length)] = list(nfq.messages(memoryview(buf)[8:], len(m)))
    assert mtype == nfq.MSG_PACKET
    d = nfq.decode_packet(buf, 8 + off, length)
    assert (d.queue, d.packet_id, d.hook, d.mark) == (4101, 42, 4, 7)
    assert d.cap_len == len(pkt) and d.skb_info == 1 and d.hw_protocol == 0x0800
    assert bytes(buf[d.payload_off : d.payload_off + d.payload_len]) == pkt[:30]


def test_decode_rejects_garbage() -> None:
    m = bytearray(nfq.encode_packet(1, 1, b"\x45" * 20))
    with pytest.raises(ValueError):
        nfq.decode_packet(m, 0, 19)
    bad = bytearray(m)
    struct.pack_into("=H", bad, 20, 2)  # attribute length < 4
    with pytest.raises(ValueError):
        nfq.decode_packet(bad, 0, len(bad))
    with pytest.raises(ValueError):
        list(nfq.messages(b"\xff\x00\x00\x00" + bytes(12), 16))
    nohdr = nfq._message(
        nfq.MSG_PACKET, 1, nfq._attr(nfq.NFQA_PAYLOAD, b"x"), seq=0, flags=0, family=socket.AF_INET
    )
    with pytest.raises(ValueError, match="PACKET_HDR"):
        nfq.decode_packet(nohdr, 0, len(nohdr))


def test_decode_error() -> None:
    req = nfq.config_cmd(1, 1, seq=99)
    err = (
        struct.pack("=IHHII", 36 + 0, nfq.NLMSG_ERROR, 0, 99, 0) + struct.pack("=i", -16) + req[:16]
    )
    assert nfq.decode_error(err, 0, len(err)) == (16, 99)
