"""The ``offline`` backend: replay a pcap or pcapng trace through the applications.

Every IP packet of the trace is offered, in trace order, to the applications at
each hook that has registrations (in hook order pre_routing, ip_in, ip_forward,
ip_out, post_routing), as if the trace had been captured there. The result pcap
holds the packets that were accepted, with the applications' changes; dropped
packets are left out. Frames that are not IP (ARP, ...) pass through unchanged.
The result has the input's format (:func:`libitm.pcap.writer_for`): classic
pcap with its link type and time resolution, or pcapng with its interfaces;
every frame keeps its link-layer header (Ethernet, Linux cooked v1/v2, ...) and
its bytes exactly, apart from the applications' changes.

The files are checked before any is opened (:func:`libitm.files.check_offline_paths`:
an output that is the input is refused), and the result and the log are
written whole or not at all (:func:`libitm.files.atomic_output`). A capture
libitm cannot read raises :class:`libitm.pcap.PcapError` naming the file.
The verdict log has one line per input frame::

    <index> <accept|drop> <modified yes|no> <class>

where class is the class of the one application that saw the packet, ``-``
when none did, or ``label=class,...`` when several did. Timers run on trace
time: before a packet is handled, every timer due at its timestamp fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO, ClassVar, TypeVar

from ..dispatch import Dispatcher
from ..files import atomic_output, atomic_text_output, check_offline_paths
from ..hooks import Hook
from ..info import ItmInfo
from ..packet import Packet
from ..pcap import (
    PcapError,
    PcapngWriter,
    PcapReader,
    PcapRecord,
    PcapWriter,
    ip_offset,
    writer_for,
)
from ..verdict import Verdict
from .base import Backend, LoopHost

StrPath = str | os.PathLike[str]
T = TypeVar("T")


class _Aborted(Exception):
    """The run failed: the half-written outputs are thrown away."""


class OfflineBackend(Backend):
    """Reads ``pcap``, writes ``out`` (optional) and the verdict ``log`` (optional).

    A recorded source: :meth:`start` checks and opens the files, each
    :meth:`process` replays up to ``batch`` frames (the loop calls it until the
    trace is ``exhausted``), :meth:`close` completes the outputs (or, after
    :meth:`abort`, removes them).
    """

    name = "offline"
    OPTIONS: ClassVar[dict[str, tuple[int, int] | None]] = {
        "pcap": None,
        "out": None,
        "log": None,
        "batch": None,
    }
    live = False

    def __init__(
        self,
        pcap: StrPath,
        out: StrPath | None = None,
        log: StrPath | None = None,
        batch: int = 256,
        **unused: object,
    ) -> None:
        """``pcap``: the input trace; ``out``: result pcap; ``log``: verdict log path;
        ``batch``: frames per :meth:`process`."""
        self.check_options(dict(unused))
        self.pcap = pcap
        self.out = out
        self.log = log
        self.batch = max(1, batch)
        self._clock = 0.0
        self._counters = {
            "packets": 0,
            "accepted": 0,
            "dropped": 0,
            "modified": 0,
            "not_ip": 0,
            "malformed": 0,
        }
        self.results: list[tuple[int, Verdict, bool, str]] = []
        self._host: LoopHost | None = None
        self._stack: contextlib.ExitStack | None = None
        self._reader: PcapReader | None = None
        self._records: Iterator[PcapRecord] | None = None
        self._writer: PcapWriter | PcapngWriter | None = None
        self._flog: IO[str] | None = None
        self._index = 0

    def start(self, loop: LoopHost) -> None:
        """Check the paths and open the trace and the outputs."""
        self._host = loop
        loop.timers.catch_up = True
        check_offline_paths(self.pcap, self.out, self.log)
        with contextlib.ExitStack() as stack:
            fin: BinaryIO = stack.enter_context(open(self.pcap, "rb"))
            reader = self._named(lambda: PcapReader(fin))
            if self.out is not None:
                self._writer = writer_for(reader, stack.enter_context(atomic_output(self.out)))
            if self.log is not None:
                self._flog = stack.enter_context(atomic_text_output(self.log))
            self._reader = reader
            self._records = iter(reader)
            self._stack = stack.pop_all()

    def _named(self, fn: Callable[[], T]) -> T:
        """``fn()``, with a :class:`PcapError` naming the trace."""
        try:
            return fn()
        except PcapError as err:
            raise PcapError(f"{os.fspath(self.pcap)}: {err}") from None

    def install(self, where: Hook, info: ItmInfo) -> None:
        """Nothing to install offline."""

    def uninstall(self, info: ItmInfo) -> None:
        """Nothing to remove offline."""

    def now(self) -> float:
        """Trace time of the packet being handled."""
        return self._clock

    def _set_clock(self, t: float) -> None:
        self._clock = t

    def close(self) -> None:
        """Complete the outputs (whole, or not at all after :meth:`abort`)."""
        stack, self._stack = self._stack, None
        self._records = None
        if stack is None:
            return
        if self.aborted:
            err = _Aborted()
            stack.__exit__(_Aborted, err, None)
        else:
            stack.close()

    def counters(self) -> dict[str, int]:
        """packets, accepted, dropped, modified, not_ip, malformed."""
        return dict(self._counters)

    def process(self) -> int:
        """Replay up to ``batch`` frames; at the end of the trace (or when the loop
        stops) the backend is ``exhausted``."""
        host, records, reader = self._host, self._records, self._reader
        if host is None or records is None or reader is None or self.exhausted:
            return 0
        timers = host.timers
        disp = host.dispatcher
        c = self._counters
        done = 0
        while done < self.batch:
            rec = self._named(lambda: next(records, None))
            if rec is None:
                self.exhausted = True
                break
            ts = rec.timestamp
            if self._index == 0:
                self._clock = ts
                timers.start(ts)
            timers.run_due(ts, self._set_clock)
            self._clock = ts
            if host.stopping:
                self.exhausted = True
                break
            index = self._index
            self._index += 1
            done += 1
            c["packets"] += 1
            linktype = reader.linktype if rec.linktype < 0 else rec.linktype
            verdict, modified, cls, data = self._one(disp, linktype, rec)
            if verdict == Verdict.DROP:
                c["dropped"] += 1
            else:
                c["accepted"] += 1
                if modified:
                    c["modified"] += 1
                if self._writer is not None:
                    self._writer.write(dataclasses.replace(rec, data=data))
            self.results.append((index, verdict, modified, cls))
            if self._flog is not None:
                self._flog.write(
                    f"{index} {verdict.name.lower()} {'yes' if modified else 'no'} {cls}\n"
                )
        return done

    def _one(
        self, disp: Dispatcher, linktype: int, rec: PcapRecord
    ) -> tuple[Verdict, bool, str, bytes]:
        off = ip_offset(linktype, rec.data)
        if off is None:
            self._counters["not_ip"] += 1
            return Verdict.ACCEPT, False, "-", rec.data
        buf = bytearray(rec.data[off:])
        pkt = Packet(buf, orig_len=rec.orig_len - off, timestamp=rec.timestamp)
        classes: list[tuple[str, int]] = []
        before = disp.malformed
        for hook in disp.hooks():
            pkt.hook = hook
            outcome = disp.dispatch(hook, pkt)
            classes += outcome.classes
            if outcome.verdict == Verdict.DROP:
                return Verdict.DROP, False, _classes(classes), rec.data
        if disp.malformed != before:
            self._counters["malformed"] += 1
        if pkt.modified:
            return Verdict.ACCEPT, True, _classes(classes), bytes(rec.data[:off]) + bytes(buf)
        return Verdict.ACCEPT, False, _classes(classes), rec.data


def _classes(classes: list[tuple[str, int]]) -> str:
    if not classes:
        return "-"
    if len(classes) == 1:
        return str(classes[0][1])
    return ",".join(f"{label}={cls}" for label, cls in classes)
