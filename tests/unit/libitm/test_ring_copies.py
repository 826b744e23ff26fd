"""Observers' copies through a BPF ring, without a kernel: the program's encoding,
the BTF reader, the ring's records, and which observers the nfqueue backend feeds
from the ring (and what it does where the kernel cannot)."""

from __future__ import annotations

import errno
import mmap
import struct
import subprocess

import pytest

from libitm import Hook, Interest, ItmInfo, Packet
from libitm.backends.base import BackendUnavailable
from libitm.backends.nfqueue import NfqueueBackend
from libitm.dispatch import Dispatcher, Runner
from libitm.owners import Owner
from libitm.transport import bpf_syscall
from libitm.transport import copy_program as cp
from libitm.transport import ring as ringmod
from libitm.transport.bpf_syscall import BpfError
from libitm.transport.btf import BtfError, member_offsets
from libitm.transport.queue import Route
from libitm.xtables import RING_TAG, Xtables
from tests.support.packets import udp as _udp


def udp(dport: int = 9) -> bytes:
    return _udp("10.0.0.1", "10.0.0.2", 4000, dport, b"x" * 20)


SKB = {"len": 112, "data_len": 116, "mark": 164, "data": 200}


def _insns(code: bytes) -> list[tuple[int, int, int, int, int]]:
    out = []
    for i in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


# ------------------------------------------------------------ the program
def test_the_program_reads_the_ring_and_the_skb_fields_it_was_given() -> None:
    code = cp.copy_program(9, 128, 0x402, SKB)
    ins = _insns(code)
    assert len(code) % 8 == 0
    assert (cp.LD_IMM64, 1, 1, 0, 9) in ins, "the ring as a map fd (BPF_PSEUDO_MAP_FD)"
    loads = {(off) for op, _, src, off, _ in ins if op in (cp.LDX_W, cp.LDX_DW) and src == 7}
    assert loads == set(SKB.values())
    assert (cp.ST_W, 8, 0, 16, 0x402) in ins, "the tag at offset 16 of the record"
    assert (cp.JGT_K, 2, 0, 1, 128) in ins, "never more than the copy range"
    assert ins[-2:] == [(cp.MOV64_K, 0, 0, 0, cp.NF_ACCEPT), (cp.EXIT, 0, 0, 0, 0)]
    # the jump over the body when the ring is full lands on "r0 = NF_ACCEPT"
    j = next(i for i, x in enumerate(ins) if x[0] == cp.JEQ_K)
    assert ins[j + 1 + ins[j][3]] == (cp.MOV64_K, 0, 0, 0, cp.NF_ACCEPT)


def test_with_wake_bytes_the_program_asks_the_ring_before_it_wakes_anyone() -> None:
    ins = _insns(cp.copy_program(9, 128, 1, SKB, wake_bytes=64 * 160))
    assert (cp.CALL, 0, 0, 0, 134) in ins, "bpf_ringbuf_query"
    assert (cp.JGT_K, 0, 0, 1, 64 * 160 - 1) in ins
    assert (cp.CALL, 0, 0, 0, 134) not in _insns(cp.copy_program(9, 128, 1, SKB))


def test_with_a_lost_counter_a_full_ring_adds_one_to_it() -> None:
    """The jump taken when no record can be reserved lands on the count; a copy
    made jumps past it; both end on "r0 = NF_ACCEPT"."""
    ins = _insns(cp.copy_program(9, 128, 1, SKB, wake_bytes=64 * 160, lost_fd=11))
    assert (cp.LD_IMM64, 1, 1, 0, 11) in ins, "the counter map as a map fd"
    lookup = ins.index((cp.CALL, 0, 0, 0, 1))  # bpf_map_lookup_elem
    assert ins[lookup + 1] == (cp.JEQ_K, 0, 0, 2, 0), "no counter: nothing to add to"
    assert ins[lookup + 3] == (cp.ATOMIC_ADD_DW, 0, 1, 0, 0), "*(u64 *)r0 += r1, atomically"
    assert ins[lookup + 4] == (cp.MOV64_K, 0, 0, 0, cp.NF_ACCEPT)
    full = next(i for i, x in enumerate(ins) if x[0] == cp.JEQ_K)  # after the reserve
    start = full + 1 + ins[full][3]
    assert ins[start] == (cp.ST_W, 10, 0, -4, 0), "the full ring's jump lands on the count"
    past = start - 1  # the body's last instruction: over the count
    assert ins[past][0] == cp.JA and past + 1 + ins[past][3] == lookup + 4
    # without a counter: the same program but for the jump over the count and the count
    plain = _insns(cp.copy_program(9, 128, 1, SKB, wake_bytes=64 * 160))
    assert plain[full + 1 :] == ins[full + 1 : past] + ins[-2:]
    assert plain[full][3] == ins[full][3] - 1


@pytest.mark.parametrize("bad", [0, -1, 0x10000])
def test_a_copy_range_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="copy range"):
        cp.copy_program(9, bad, 1, SKB)


# ------------------------------------------------------------------- BTF
def _btf(types: bytes, strings: bytes, magic: int = 0xEB9F) -> bytes:
    hdr = struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def _type(name: int, kind: int, vlen: int, size: int, kflag: int = 0) -> bytes:
    return struct.pack("<III", name, kflag << 31 | kind << 24 | vlen, size)


def _sample() -> bytes:
    """u32 (1); struct sk_buff (2) {u32 len; union {u32 mark;}; u8 *data; u32 bits:4};
    the anonymous union (3) behind a const (4); a pointer (5)."""
    strings = b"\0u32\0sk_buff\0len\0mark\0data\0bits\0"
    s = {n: strings.index(n.encode() + b"\0") for n in ("u32", "sk_buff", "len", "mark", "data")}
    s["bits"] = strings.index(b"bits\0")
    types = _type(s["u32"], 1, 0, 4) + struct.pack("<I", 32)
    types += _type(s["sk_buff"], 4, 4, 24, kflag=1)
    types += struct.pack("<III", s["len"], 1, 0)
    types += struct.pack("<III", 0, 4, 32)  # the anonymous union, through a const
    types += struct.pack("<III", s["data"], 5, 64)
    types += struct.pack("<III", s["bits"], 1, 4 << 24 | 128)  # a bitfield (kind_flag)
    types += _type(0, 5, 1, 4) + struct.pack("<III", s["mark"], 1, 0)
    types += _type(0, 10, 0, 3)  # const -> the union
    types += _type(0, 2, 0, 1)  # pointer
    return _btf(types, strings)


def test_member_offsets_look_into_anonymous_members_and_bitfield_encodings() -> None:
    got = member_offsets("sk_buff", ("len", "mark", "data", "bits"), _sample())
    assert got == {"len": 0, "mark": 4, "data": 8, "bits": 16}


def test_member_offsets_say_what_is_missing() -> None:
    with pytest.raises(BtfError, match="no field nope"):
        member_offsets("sk_buff", ("len", "nope"), _sample())
    with pytest.raises(BtfError, match="no struct nf_conn"):
        member_offsets("nf_conn", ("len",), _sample())
    with pytest.raises(BtfError, match="not BTF"):
        member_offsets("sk_buff", ("len",), _btf(b"", b"\0", magic=0x1234))
    with pytest.raises(BtfError):
        member_offsets("sk_buff", ("len",), _sample()[:40])


# ------------------------------------------------------------- the ring
SIZE = 1 << 12


def _ring(route: Route) -> ringmod.RingTransport:
    """A ring transport over plain memory laid out as the kernel maps it."""
    t = ringmod.RingTransport(route, size=SIZE)
    t._cons = bytearray(8)  # type: ignore[assignment]
    t._data = bytearray(mmap.PAGESIZE + 2 * SIZE)  # type: ignore[assignment]
    t._view = memoryview(t._data)  # type: ignore[arg-type]
    return t


def _put(t: ringmod.RingTransport, pos: int, payload: bytes, tag: int, flags: int = 0) -> int:
    """Write a record at producer position ``pos``; the next position."""
    assert t._data is not None
    size = cp.RECORD_HEADER + len(payload)
    at = mmap.PAGESIZE + (pos & (SIZE - 1))
    body = struct.pack("=IIQII", len(payload), 5, 2_000_000_000, tag, len(payload) + 100)
    rec = struct.pack("=II", size | flags, 0) + body + payload
    t._data[at : at + len(rec)] = rec
    end = pos + ((size + 8 + 7) & ~7)
    struct.pack_into("<Q", t._data, 0, end)
    return end


def test_records_run_through_the_route_of_their_tag_and_the_reader_moves_on() -> None:
    got: list[tuple[Hook, bytes, int, int | None]] = []

    def run(p: Packet) -> int:
        got.append((p.hook, bytes(p.data), p.mark, p.orig_len))  # type: ignore[arg-type]
        return 0

    tag = ringmod.tag_of(4, Hook.IP_FORWARD)
    t = _ring(lambda g: (Hook.IP_FORWARD, run) if g == tag else None)
    one = udp(dport=9)
    pos = _put(t, 0, one, tag)
    pos = _put(t, pos, one, ringmod.tag_of(6, Hook.IP_IN))  # nobody's: skipped
    pos = _put(t, pos, one, tag, flags=1 << 30)  # discarded by the program
    pos = _put(t, pos, one, tag)
    assert t.process() == 2
    assert got == [(Hook.IP_FORWARD, one, 5, len(one) + 100)] * 2
    assert struct.unpack_from("<Q", t._cons, 0)[0] == pos  # type: ignore[arg-type]
    assert t.process() == 0


def test_a_record_still_being_written_stops_the_read_until_the_next_call() -> None:
    seen: list[int] = []
    tag = ringmod.tag_of(4, Hook.IP_IN)

    def run(p: Packet) -> int:
        seen.append(1)
        return 0

    t = _ring(lambda g: (Hook.IP_IN, run))
    pos = _put(t, 0, udp(), tag)
    _put(t, pos, udp(), tag, flags=1 << 31)
    assert t.process() == 1
    assert struct.unpack_from("<Q", t._cons, 0)[0] == pos  # type: ignore[arg-type]
    _put(t, pos, udp(), tag)
    assert t.process() == 1 and len(seen) == 2


def test_a_record_whose_lengths_disagree_is_counted_not_run() -> None:
    t = _ring(lambda g: (Hook.IP_IN, lambda p: 0))
    assert t._data is not None
    _put(t, 0, udp(), 1)
    struct.pack_into("=I", t._data, mmap.PAGESIZE + 8, 4000)  # copied > the record
    assert t.process() == 0 and t.c["bad_records"] == 1


def test_tags_name_a_family_and_a_hook() -> None:
    for fam in (4, 6):
        for h in Hook:
            assert ringmod.hook_of_tag(ringmod.tag_of(fam, h)) == (fam, h)
    assert ringmod.hook_of_tag(5 << 8) is None
    assert ringmod.hook_of_tag(4 << 8 | 9) is None
    assert len(ringmod.program_name(6, Hook.POST_ROUTING, 4194304)) <= 15


# -------------------------------------------- the backend: who gets the ring
class RecordingXtables(Xtables):
    def _exec(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")


class FakeRing(ringmod.RingTransport):
    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__(lambda tag: None)
        self.fail = fail
        self.links: list[tuple[int, Hook]] = []

    def attach(self, family: int, hook: Hook) -> None:
        if self.fail is not None:
            raise self.fail
        self.links.append((family, hook))

    def detach(self, family: int, hook: Hook) -> None:
        self.links.remove((family, hook))


def _backend(copies: str = "auto", fail: Exception | None = None) -> NfqueueBackend:
    be = NfqueueBackend(observer_copies=copies)
    be.xt = RecordingXtables()
    be.ring = FakeRing(fail)
    be._disp = Dispatcher()
    be._group_for = lambda where: 4242  # type: ignore[method-assign]
    return be


def _observer(interest: Interest, **kw: object) -> ItmInfo:
    return ItmInfo("obs", interest, class_func=lambda w, p: 1, **kw)  # type: ignore[arg-type]


def test_an_observer_of_whole_families_is_fed_from_the_ring_and_walks_no_rule() -> None:
    be = _backend()
    info = _observer(Interest())
    be.install(Hook.IP_FORWARD, info)
    assert be.ring.links == [(4, Hook.IP_FORWARD), (6, Hook.IP_FORWARD)]  # type: ignore[attr-defined]
    rules = [c for c in be.xt.commands if "-A" in c]
    assert rules and all(c[c.index("-A") + 1] == "ITM-obs" for c in rules), "no jump"
    assert all(c[-2:] == ["-j", "RETURN"] and f"{RING_TAG} FORWARD" in c for c in rules)
    be.uninstall(info)
    assert be.ring.links == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("interest", "kw"),
    [(Interest(protocol="udp"), {}), (Interest(family=4), {"needs_payload": True})],
)
def test_a_narrower_or_payload_observer_keeps_nflog(interest: Interest, kw: object) -> None:
    be = _backend()
    be.install(Hook.IP_IN, _observer(interest, **kw))  # type: ignore[arg-type]
    assert be.ring.links == []  # type: ignore[attr-defined]
    assert any("NFLOG" in c for c in be.xt.commands)


def test_ring_when_asked_for_also_for_a_narrower_interest_but_not_for_payload() -> None:
    be = _backend("ring")
    be.install(Hook.IP_IN, _observer(Interest(protocol="udp", dport=53)))
    assert be.ring.links == [(4, Hook.IP_IN), (6, Hook.IP_IN)]  # type: ignore[attr-defined]
    be.install(Hook.IP_OUT, ItmInfo("p", Interest(), needs_payload=True))
    assert any("NFLOG" in c for c in be.xt.commands)


def test_nflog_when_asked_for() -> None:
    be = _backend("nflog")
    be.install(Hook.IP_IN, _observer(Interest(family=4)))
    assert be.ring.links == []  # type: ignore[attr-defined]
    assert any("NFLOG" in c for c in be.xt.commands)


def test_where_the_kernel_cannot_auto_falls_back_to_nflog_and_ring_says_why() -> None:
    be = _backend(fail=BpfError(errno.EINVAL, "loading a BPF netfilter program"))
    be.install(Hook.IP_IN, _observer(Interest(family=4)))
    assert any("NFLOG" in c for c in be.xt.commands)
    assert be.ring_unusable is not None and "Invalid argument" in be.ring_unusable
    be = _backend("ring", fail=BtfError("the kernel's BTF: No such file"))
    with pytest.raises(BackendUnavailable, match=r"observer_copies='ring'.*BTF"):
        be.install(Hook.IP_IN, _observer(Interest(family=4)))
    assert not any("-N" in c for c in be.xt.commands), "nothing installed"


def test_observer_copies_takes_three_values() -> None:
    with pytest.raises(ValueError, match="observer_copies must be one of auto, ring, nflog"):
        NfqueueBackend(observer_copies="bpf")


def test_observer_copies_ring_is_refused_with_workers() -> None:
    """Workers queue observers too: asking for the ring with them is an error, at
    the loop's construction as at the backend's."""
    from libitm import ItmLoop

    with pytest.raises(ValueError, match="observer_copies='ring' cannot be used with workers"):
        NfqueueBackend(observer_copies="ring", workers=2)
    with pytest.raises(ValueError, match="observer_copies='ring' cannot be used with workers"):
        ItmLoop("nfqueue", observer_copies="ring", workers=2)
    NfqueueBackend(observer_copies="auto", workers=2)  # auto: what workers can do
    NfqueueBackend(observer_copies="ring", workers=1)


def test_a_queued_packet_does_not_run_the_ring_fed_observers_again() -> None:
    seen: list[str] = []
    d = Dispatcher()
    ring = ItmInfo("ring", Interest(), log_func=lambda w, c, p: seen.append("ring"))
    nflog = ItmInfo("nflog", Interest(protocol="udp"), log_func=lambda w, c, p: seen.append("nf"))
    d.add(Hook.IP_IN, ring)
    d.add(Hook.IP_IN, nflog)
    d.runner(Hook.IP_IN, skip=frozenset({id(ring)}))(Packet(udp()))
    assert seen == ["nf"]
    d.runner(Hook.IP_IN, True, only=frozenset({id(ring)}))(Packet(udp()))
    assert seen == ["nf", "ring"]


def test_a_ring_fed_chain_shows_its_hook_and_owner() -> None:
    class Listed(RecordingXtables):
        def _exec(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
            out = ""
            if cmd[-1] == "-S":
                out = (
                    "-N ITM-obs\n"
                    '-A ITM-obs -m comment --comment "itm owner=7 start=3 label=obs" '
                    f'-m comment --comment "{RING_TAG} PREROUTING" -j RETURN\n'
                )
            return subprocess.CompletedProcess(cmd, 0, out, "")

    ch = Listed().itm_chains(4)["ITM-obs"]
    assert ch.hooks == [Hook.PRE_ROUTING]
    assert ch.owner == Owner(7, 3, "obs")
    assert ch.interest_text() == "all", "itmtool status: every packet, not 'none'"
    assert ch.copies == "ring"


def test_whole_families_means_nothing_but_the_family() -> None:
    assert Interest().whole_families() and Interest(family=6).whole_families()
    for narrow in (Interest(protocol=6), Interest(dst="10.0.0.0/8"), Interest(dport=53)):
        assert not narrow.whole_families()


def test_a_route_is_asked_once_per_read_and_again_after_a_change() -> None:
    from libitm.epoch import bump

    asked: list[int] = []
    ran: list[int] = []

    def run(p: Packet) -> int:
        ran.append(1)
        if len(ran) == 2:
            bump()  # e.g. a callback registered an application
        return 0

    def route(tag: int) -> tuple[Hook, Runner]:
        asked.append(tag)
        return Hook.IP_IN, run

    t = _ring(route)
    pos = 0
    for _ in range(4):
        pos = _put(t, pos, udp(), 7)
    assert t.process() == 4
    assert asked == [7, 7], "once, then again for the copy after the change"


def test_a_failing_observer_does_not_run_its_copy_again() -> None:
    def run(p: Packet) -> int:
        raise RuntimeError("boom")

    t = _ring(lambda g: (Hook.IP_IN, run))
    pos = _put(t, 0, udp(), 7)
    with pytest.raises(RuntimeError):
        t.process()
    assert struct.unpack_from("<Q", t._cons, 0)[0] == pos  # type: ignore[arg-type]
    assert t.process() == 0


def test_a_taken_priority_moves_the_link_to_the_next_free_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried: list[int] = []

    def link(prog: int, pf: int, hooknum: int, priority: int) -> int:
        tried.append(priority)
        if len(tried) < 3:
            raise BpfError(errno.EBUSY, "attaching")
        return 99

    monkeypatch.setattr(bpf_syscall, "netfilter_link", link)
    assert ringmod.RingTransport._link(5, 4, Hook.IP_IN) == 99
    assert tried == [-151, -152, -153]

    def busy(prog: int, pf: int, hooknum: int, priority: int) -> int:
        raise BpfError(errno.EBUSY, "attaching")

    monkeypatch.setattr(bpf_syscall, "netfilter_link", busy)
    with pytest.raises(BpfError, match=r"-199\.\.-151 are all taken"):
        ringmod.RingTransport._link(5, 4, Hook.IP_IN)

    def other(prog: int, pf: int, hooknum: int, priority: int) -> int:
        raise BpfError(errno.EPERM, "attaching")

    monkeypatch.setattr(bpf_syscall, "netfilter_link", other)
    with pytest.raises(BpfError, match="Operation not permitted"):
        ringmod.RingTransport._link(5, 4, Hook.IP_IN)
