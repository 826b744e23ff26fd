"""The BPF program that copies a packet's first bytes into a ring buffer.

It runs at a netfilter hook (``BPF_PROG_TYPE_NETFILTER``), reserves one record
in the ring, fills it and submits it, and always lets the packet go on
(``NF_ACCEPT``). When the ring is full the packet goes on without a copy, and
the program adds one to a counter the reader maps (``lost_fd``). The
reader is woken only once ``wake_bytes`` wait in the ring (a wake-up per copy
would cost the packet's path and the reader's CPU more than the copy; the reader
also looks on a timer, :mod:`.ring`). A record (native byte order, 8-byte aligned by the ring):

====== ===== ==========================================================
offset bytes field
====== ===== ==========================================================
0      4     bytes copied (at most the copy range and the linear data)
4      4     the packet's mark
8      8     ``CLOCK_MONOTONIC`` nanoseconds (``bpf_ktime_get_ns``)
16     4     the tag of the (family, hook) the program was loaded for
20     4     the packet's length (``skb->len``)
24     n     the packet from its network header on
====== ===== ==========================================================

The program is written here as instructions (include/uapi/linux/bpf.h's
encoding), so no compiler is needed on the machine.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

#: bytes before the copied packet in a record
RECORD_HEADER: Final = 24
#: ``struct sk_buff`` fields the program reads
SKB_FIELDS: Final = ("len", "data_len", "mark", "data")
_INSN = struct.Struct("<BBhi")
_HELPER_MAP_LOOKUP_ELEM: Final = 1
_HELPER_KTIME_GET_NS: Final = 5
_HELPER_PROBE_READ_KERNEL: Final = 113
_HELPER_RINGBUF_RESERVE: Final = 131
_HELPER_RINGBUF_SUBMIT: Final = 132
_HELPER_RINGBUF_QUERY: Final = 134
_RB_NO_WAKEUP, _RB_FORCE_WAKEUP, _RB_AVAIL_DATA = 1, 2, 0
_PSEUDO_MAP_FD: Final = 1
#: ``struct bpf_nf_ctx``: the hook state, then the skb
_CTX_SKB: Final = 8
NF_ACCEPT: Final = 1


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One instruction (``struct bpf_insn``)."""
    return _INSN.pack(code, dst | (src << 4), off, imm)


# opcodes (class | size/op | source)
MOV64_X, MOV64_K, ADD64_K, SUB64_X = 0xBF, 0xB7, 0x07, 0x1F
LDX_W, LDX_DW, STX_W, STX_DW, ST_W = 0x61, 0x79, 0x63, 0x7B, 0x62
JA, JEQ_K, JGT_K, CALL, EXIT, LD_IMM64 = 0x05, 0x15, 0x25, 0x85, 0x95, 0x18
#: BPF_STX | BPF_DW | BPF_ATOMIC with imm BPF_ADD: ``*(u64 *)(dst + off) += src``
ATOMIC_ADD_DW: Final = 0xDB


def copy_program(
    map_fd: int,
    copy_range: int,
    tag: int,
    skb: Mapping[str, int],
    wake_bytes: int = 0,
    lost_fd: int | None = None,
) -> bytes:
    """The program for ring ``map_fd``: ``copy_range`` bytes at most, records
    tagged ``tag``; ``skb``: the byte offsets of :data:`SKB_FIELDS` in this
    kernel's ``struct sk_buff`` (:func:`libitm.transport.btf.member_offsets`);
    ``wake_bytes``: wake the reader once this much waits (0: the ring's own
    rule, a wake-up whenever the reader had caught up); ``lost_fd``: an array
    map (:func:`libitm.transport.bpf_syscall.counter`) whose first counter
    counts the copies a full ring had no room for."""
    if not 0 < copy_range <= 0xFFFF:
        raise ValueError(f"copy range {copy_range} is not 1..65535")
    if not 0 <= wake_bytes < 1 << 31:
        raise ValueError(f"wake_bytes {wake_bytes} is not 0..2^31-1")
    ring = insn(LD_IMM64, 1, _PSEUDO_MAP_FD, 0, map_fd) + insn(0)
    head = [
        insn(MOV64_X, 6, 1),  # r6 = ctx
        insn(LDX_DW, 7, 6, _CTX_SKB),  # r7 = ctx->skb
        insn(CALL, imm=_HELPER_KTIME_GET_NS),
        insn(MOV64_X, 9, 0),  # r9 = now
        ring,  # r1 = the ring
        insn(MOV64_K, 2, imm=RECORD_HEADER + copy_range),
        insn(MOV64_K, 3, imm=0),
        insn(CALL, imm=_HELPER_RINGBUF_RESERVE),
    ]
    body = [
        insn(MOV64_X, 8, 0),  # r8 = the record
        insn(STX_DW, 8, 9, 8),  # time
        insn(LDX_W, 2, 7, skb["len"]),
        insn(STX_W, 8, 2, 20),  # length
        insn(LDX_W, 3, 7, skb["data_len"]),
        insn(SUB64_X, 2, 3),  # r2 = the linear bytes
        insn(JGT_K, 2, 0, 1, copy_range),
        insn(JA, off=1),
        insn(MOV64_K, 2, imm=copy_range),  # at most the copy range
        insn(STX_W, 8, 2, 0),  # bytes copied
        insn(LDX_W, 3, 7, skb["mark"]),
        insn(STX_W, 8, 3, 4),  # mark
        insn(ST_W, 8, 0, 16, tag),  # tag
        insn(LDX_DW, 3, 7, skb["data"]),
        insn(MOV64_X, 1, 8),
        insn(ADD64_K, 1, imm=RECORD_HEADER),
        insn(CALL, imm=_HELPER_PROBE_READ_KERNEL),  # (dst, size, src)
        *_submit(ring, wake_bytes),
    ]
    lost = _count_lost(lost_fd) if lost_fd is not None else []
    if lost:
        body.append(insn(JA, off=_length(lost)))  # a copy made: past the count
    tail = [insn(MOV64_K, 0, imm=NF_ACCEPT), insn(EXIT)]
    return b"".join([*head, insn(JEQ_K, 0, 0, _length(body), 0), *body, *lost, *tail])


def _length(insns: list[bytes]) -> int:
    """How many instruction slots ``insns`` take (a 64-bit load takes two)."""
    return sum(len(i) for i in insns) // 8


def _count_lost(lost_fd: int) -> list[bytes]:
    """Add one to counter 0 of array map ``lost_fd`` (atomically: every CPU's
    copies count in the one counter)."""
    return [
        insn(ST_W, 10, 0, -4, 0),  # key 0, on the stack
        insn(LD_IMM64, 1, _PSEUDO_MAP_FD, 0, lost_fd) + insn(0),
        insn(MOV64_X, 2, 10),
        insn(ADD64_K, 2, imm=-4),
        insn(CALL, imm=_HELPER_MAP_LOOKUP_ELEM),  # r0 = &counter, or NULL
        insn(JEQ_K, 0, 0, 2, 0),
        insn(MOV64_K, 1, imm=1),
        insn(ATOMIC_ADD_DW, 0, 1, 0, 0),
    ]


def _submit(ring: bytes, wake_bytes: int) -> list[bytes]:
    """Submit the record in r8: with ``wake_bytes``, waking the reader only when
    at least that much waits (``bpf_ringbuf_query``), else by the ring's rule."""
    if not wake_bytes:
        return [
            insn(MOV64_X, 1, 8),
            insn(MOV64_K, 2, imm=0),
            insn(CALL, imm=_HELPER_RINGBUF_SUBMIT),
        ]
    return [
        ring,
        insn(MOV64_K, 2, imm=_RB_AVAIL_DATA),
        insn(CALL, imm=_HELPER_RINGBUF_QUERY),  # r0 = bytes waiting
        insn(MOV64_K, 2, imm=_RB_NO_WAKEUP),
        insn(JGT_K, 0, 0, 1, wake_bytes - 1),
        insn(JA, off=1),
        insn(MOV64_K, 2, imm=_RB_FORCE_WAKEUP),  # wake only with enough waiting
        insn(MOV64_X, 1, 8),
        insn(CALL, imm=_HELPER_RINGBUF_SUBMIT),
    ]
