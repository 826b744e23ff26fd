"""Observers' copies through a BPF ring buffer: the cheapest copy a packet can pay.

An NFLOG copy costs the packet's path a netlink message (an allocation and a
dozen attributes) and, when its rule is the only one, the mangle table's
traversal. Here a small BPF program (:mod:`.copy_program`), attached at the
hook with a BPF link just before the mangle table (priority
:data:`PRIORITY`, or the next free one below it: each process has its own),
copies the packet's first bytes into a ring buffer that this process maps
into its memory; the packet goes on at once, and a full ring drops the copy,
never the packet. The process reads the copies in place, in
batches: the program wakes it once :data:`WAKE_COPIES` copies wait, and a timer
every :data:`FLUSH_S` seconds picks up the rest, so a copy reaches its
observer at the latest about 10 ms after the packet passed (as NFLOG's
``observer_batch`` does). A wake-up per copy costs more than the copy: on
bench.libitm_observer's path it doubled the observer's CPU time and the ping's
added delay.

A link lives as long as its descriptor: when the process ends, however it
ends, the kernel detaches the program and frees the ring. Nothing is left in
the namespace.

Needs a kernel with ``CONFIG_NETFILTER_BPF_LINK`` (6.4 and later; Debian's
6.12 has it, 6.1 does not), its BTF, and CAP_BPF with CAP_PERFMON (root). What
is missing shows as a :class:`~.bpf_syscall.BpfError` or
:class:`~.btf.BtfError` from :meth:`RingTransport.attach`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import struct
import time
from typing import Final

from ..dispatch import Runner
from ..epoch import EPOCH
from ..hooks import Hook
from ..packet import Packet
from . import bpf_syscall
from .bpf_syscall import BpfError
from .btf import member_offsets
from .copy_program import RECORD_HEADER, SKB_FIELDS, copy_program
from .queue import Route

log = logging.getLogger("libitm")

#: NF_IP_PRI_MANGLE - 1: copies are made where an NFLOG rule in the mangle
#: table would make them, before any of the table's rules
PRIORITY: Final = -151
#: the last priority tried when others hold the ones above (one BPF program per
#: priority and hook): after conntrack (-200), before the mangle table (-150)
LOWEST_PRIORITY: Final = -199
#: NFPROTO_* of each IP version
NFPROTO: Final = {4: 2, 6: 10}
#: the ring's size: 4 MiB, about 27,000 copies of 128 bytes
RING_SIZE: Final = 1 << 22
#: the program wakes the reader once this many copies (of the full copy range) wait
WAKE_COPIES: Final = 64
#: the reader's timer: it looks at the ring this often whatever waits
FLUSH_S: Final = 0.01
#: the most copies one :meth:`RingTransport.process` runs (the rest stay readable)
MAX_PER_CALL: Final = 4096
_TFD_FLAGS: Final = 0o4000 | 0o2000000  # TFD_NONBLOCK | TFD_CLOEXEC
_CLOCK_MONOTONIC: Final = 1
_BUSY: Final = 1 << 31
_DISCARD: Final = 1 << 30
_LEN: Final = (1 << 28) - 1
_POS = struct.Struct("<Q")
_REC = struct.Struct("=IIIIQII")  # ring header (len, page offset), then ours


def tag_of(family: int, hook: Hook) -> int:
    """The tag of the records copied at ``hook`` for IP version ``family``."""
    return family << 8 | int(hook)


def program_name(family: int, hook: Hook, pid: int | None = None) -> str:
    """The name of process ``pid``'s (default: this one's) copying program at
    ``hook`` for ``family``: ``itm`` + family + hook number + ``_`` + pid (a BPF
    program's name holds 15 bytes)."""
    return f"itm{family}{int(hook)}_{os.getpid() if pid is None else pid}"


def hook_of_tag(tag: int) -> tuple[int, Hook] | None:
    """``(family, hook)`` of a record's tag; None when it is none of ours."""
    fam, h = tag >> 8, tag & 0xFF
    if fam not in NFPROTO or h > max(Hook):
        return None
    return fam, Hook(h)


class RingTransport:
    """One ring buffer and the programs copying into it, one per (family, hook)."""

    def __init__(self, route: Route, copy_range: int = 128, size: int = RING_SIZE) -> None:
        """``route(tag)``: the hook and runner of the observers fed at the (family,
        hook) of ``tag`` (:func:`tag_of`); ``copy_range``: bytes copied a packet."""
        self.route = route
        self.copy_range = copy_range
        self.size = size
        self._map = -1
        self._links: dict[tuple[int, Hook], tuple[int, int]] = {}
        self._cons: mmap.mmap | None = None
        self._data: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._skb: dict[str, int] | None = None
        self._timer = -1
        #: the counter of copies a full ring had no room for, and its mapping
        self._lost = -1
        self._lost_map: mmap.mmap | None = None
        #: lost copies of maps this transport had before (a close, then an open)
        self._lost_before = 0
        self.c = {"copies": 0, "bad_records": 0}

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._map >= 0

    def open(self) -> None:
        """Create the ring and map it; raises BpfError or BtfError when this
        kernel or process cannot (nothing is left open then)."""
        if self._map >= 0:
            return
        self._skb = member_offsets("sk_buff", SKB_FIELDS)
        page = mmap.PAGESIZE
        # each piece is let go again if a later one cannot be made
        with contextlib.ExitStack() as undo:
            fd = bpf_syscall.ringbuf(self.size)
            undo.callback(os.close, fd)
            cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            undo.callback(cons.close)
            data = mmap.mmap(fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
            undo.callback(data.close)
            timer = _timerfd(FLUSH_S)
            undo.callback(os.close, timer)
            lost = bpf_syscall.counter()
            undo.callback(os.close, lost)
            lost_map = mmap.mmap(lost, page, mmap.MAP_SHARED, mmap.PROT_READ)
            undo.pop_all()  # all made: they are this transport's now
        self._map, self._cons, self._data, self._timer = fd, cons, data, timer
        self._lost, self._lost_map = lost, lost_map
        self._view = memoryview(data)

    def attach(self, family: int, hook: Hook) -> None:
        """Copy the packets of IP version ``family`` at ``hook`` from now on."""
        if (family, hook) in self._links:
            return
        self.open()
        assert self._skb is not None
        record = (8 + RECORD_HEADER + self.copy_range + 7) & ~7
        code = copy_program(
            self._map,
            self.copy_range,
            tag_of(family, hook),
            self._skb,
            WAKE_COPIES * record,
            self._lost,
        )
        prog = bpf_syscall.load_netfilter(code, program_name(family, hook))
        try:
            link = self._link(prog, family, hook)
        except BaseException:
            os.close(prog)
            raise
        self._links[(family, hook)] = (prog, link)

    @staticmethod
    def _link(prog: int, family: int, hook: Hook) -> int:
        """Attach ``prog`` at the first free priority from :data:`PRIORITY` down
        to :data:`LOWEST_PRIORITY`: netfilter takes one BPF program per priority
        at a hook (EBUSY), and another process may have its copies there."""
        for prio in range(PRIORITY, LOWEST_PRIORITY - 1, -1):
            try:
                return bpf_syscall.netfilter_link(prog, NFPROTO[family], int(hook), prio)
            except BpfError as e:
                if e.errno != errno.EBUSY:
                    raise
        raise BpfError(
            errno.EBUSY,
            f"attaching a BPF program at {hook.name.lower()}: priorities "
            f"{LOWEST_PRIORITY}..{PRIORITY} are all taken",
        )

    def detach(self, family: int, hook: Hook) -> None:
        """Stop copying at ``hook`` for ``family`` (copies already in the ring are
        still read)."""
        fds = self._links.pop((family, hook), None)
        if fds is not None:
            for fd in reversed(fds):
                os.close(fd)

    def attached(self) -> list[tuple[int, Hook]]:
        """The (family, hook) pairs copied now."""
        return sorted(self._links)

    def fileno(self) -> int:
        """The ring (readable when copies wait)."""
        return self._map

    def fds(self) -> tuple[int, ...]:
        """What a loop watches: the ring (readable once enough copies wait) and
        the timer (readable every :data:`FLUSH_S`)."""
        return (self._map, self._timer)

    def process(self) -> int:
        """Run the observers on every copy waiting now; how many copies."""
        cons, data, view = self._cons, self._data, self._view
        if cons is None or data is None or view is None:
            return 0
        if self._timer >= 0:
            with contextlib.suppress(BlockingIOError):
                os.read(self._timer, 8)
        page, mask = mmap.PAGESIZE, self.size - 1
        (c,) = _POS.unpack_from(cons, 0)
        (p,) = _POS.unpack_from(data, 0)
        wall = time.time() - time.monotonic()
        handled = 0
        # each tag's route, asked again when the configuration moves (a callback
        # may register or remove an application)
        routes: dict[int, tuple[Hook, Runner] | None] = {}
        epoch = EPOCH[0]
        unpack, from_view = _REC.unpack_from, Packet.from_view
        try:
            while c < p and handled < MAX_PER_CALL:
                at = page + (c & mask)
                rlen, _, caplen, mark, ns, tag, wire = unpack(data, at)
                if rlen & _BUSY:
                    break  # still being written: the next call reads it
                size = rlen & _LEN
                c += (size + 15) & ~7  # the ring's 8-byte header, 8-byte aligned
                if rlen & _DISCARD:
                    continue
                if size < RECORD_HEADER or caplen > size - RECORD_HEADER:
                    self.c["bad_records"] += 1
                    continue
                if EPOCH[0] != epoch:
                    routes.clear()
                    epoch = EPOCH[0]
                try:
                    rt = routes[tag]
                except KeyError:
                    rt = routes[tag] = self.route(tag)
                if rt is None:
                    continue
                start = at + 8 + RECORD_HEADER
                # a copy of its own: the ring's memory is reused once read
                buf = memoryview(bytearray(view[start : start + caplen]))
                handled += 1
                rt[1](from_view(buf, wire, mark, rt[0], wall + ns / 1e9, False))
        finally:
            _POS.pack_into(cons, 0, c)
            self.c["copies"] += handled
        return handled

    def close(self) -> None:
        """Detach every program, then let go of the ring."""
        for key in list(self._links):
            self.detach(*key)
        if self._view is not None:
            self._view.release()
            self._view = None
        for m in (self._cons, self._data):
            if m is not None:
                with contextlib.suppress(BufferError):
                    m.close()
        self._cons = self._data = None
        if self._timer >= 0:
            os.close(self._timer)
            self._timer = -1
        if self._map >= 0:
            os.close(self._map)
            self._map = -1
        self._lost_before = self.lost
        if self._lost_map is not None:
            self._lost_map.close()
            self._lost_map = None
        if self._lost >= 0:
            os.close(self._lost)
            self._lost = -1

    @property
    def lost(self) -> int:
        """Copies the programs could not make because the ring was full (the
        packets went on): read from the counter they add to."""
        m = self._lost_map
        return self._lost_before + (_POS.unpack_from(m, 0)[0] if m is not None else 0)

    def counters(self) -> dict[str, int]:
        """copies, bad_records, lost (copies a full ring had no room for)."""
        return {**self.c, "lost": self.lost}


def _timerfd(interval: float) -> int:
    """A timerfd (monotonic, non-blocking) readable every ``interval`` seconds
    (``os.timerfd_create`` is Python 3.13's; this is the same call)."""
    libc = bpf_syscall.libc()
    fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_FLAGS)
    if fd < 0:
        raise BpfError(ctypes.get_errno(), "creating the ring's timer")
    ns = int(interval * 1e9)
    spec = struct.pack("<qqqq", ns // 10**9, ns % 10**9, ns // 10**9, ns % 10**9)
    if libc.timerfd_settime(fd, 0, spec, None) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise BpfError(err or errno.EINVAL, "setting the ring's timer")
    return int(fd)
