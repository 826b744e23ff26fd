"""The ``offline`` backend: replay a pcap through the applications.

Every IP packet of the trace is offered, in trace order, to the applications at
each hook that has registrations (in hook order pre_routing, ip_in, ip_forward,
ip_out, post_routing), as if the trace had been captured there. The result pcap
holds the packets that were accepted, with the applications' changes; dropped
packets are left out. Frames that are not IP (ARP, ...) pass through unchanged.
The verdict log has one line per input frame::

    <index> <accept|drop> <modified yes|no> <class>

where class is the class of the one application that saw the packet, ``-``
when none did, or ``label=class,...`` when several did. Timers run on trace
time: before a packet is handled, every timer due at its timestamp fires.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, TYPE_CHECKING, BinaryIO

from ..hooks import Hook
from ..info import ItmInfo
from ..packet import Packet
from ..pcap import PcapReader, PcapRecord, PcapWriter, ip_offset
from ..verdict import Verdict
from .base import Backend

if TYPE_CHECKING:
    from ..loop import ItmLoop

StrPath = str | os.PathLike[str]


class OfflineBackend(Backend):
    """Reads ``pcap``, writes ``out`` (optional) and the verdict ``log`` (optional)."""

    name = "offline"
    live = False

    def __init__(
        self,
        pcap: StrPath,
        out: StrPath | None = None,
        log: StrPath | None = None,
        **unused: object,
    ) -> None:
        """``pcap``: the input trace; ``out``: result pcap; ``log``: verdict log path."""
        if unused:
            raise TypeError(f"unknown offline backend options: {', '.join(sorted(unused))}")
        self.pcap = pcap
        self.out = out
        self.log = log
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

    def start(self, loop: ItmLoop) -> None:
        """Nothing to install: the trace is read in :meth:`run_offline`."""

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
        """Nothing to release."""

    def counters(self) -> dict[str, int]:
        """packets, accepted, dropped, modified, not_ip, malformed."""
        return dict(self._counters)

    def run_offline(self, loop: ItmLoop) -> None:
        """Replay the trace through ``loop``'s applications."""
        disp = loop.dispatcher
        timers = loop.timers
        timers.catch_up = True
        c = self._counters
        with contextlib.ExitStack() as stack:
            fin: BinaryIO = stack.enter_context(open(self.pcap, "rb"))
            reader = PcapReader(fin)
            writer: PcapWriter | None = None
            if self.out is not None:
                fout: BinaryIO = stack.enter_context(open(self.out, "wb"))
                writer = PcapWriter(
                    fout,
                    reader.linktype,
                    snaplen=max(reader.snaplen, 65535),
                    nanosecond=reader.nanosecond,
                )
            flog: IO[str] | None = None
            if self.log is not None:
                flog = stack.enter_context(open(self.log, "w", encoding="utf-8"))
            started = False
            for index, rec in enumerate(reader):
                ts = rec.timestamp
                if not started:
                    self._clock = ts
                    timers.start(ts)
                    started = True
                timers.run_due(ts, self._set_clock)
                self._clock = ts
                if loop._stopping:
                    break
                c["packets"] += 1
                verdict, modified, cls, data = self._one(disp, reader.linktype, rec)
                if verdict == Verdict.DROP:
                    c["dropped"] += 1
                else:
                    c["accepted"] += 1
                    if modified:
                        c["modified"] += 1
                    if writer is not None:
                        writer.write(
                            PcapRecord(rec.ts_sec, rec.ts_frac, data, rec.orig_len, rec.nanosecond)
                        )
                self.results.append((index, verdict, modified, cls))
                if flog is not None:
                    flog.write(
                        f"{index} {verdict.name.lower()} {'yes' if modified else 'no'} {cls}\n"
                    )

    def _one(
        self, disp: object, linktype: int, rec: PcapRecord
    ) -> tuple[Verdict, bool, str, bytes]:
        from ..dispatch import Dispatcher

        assert isinstance(disp, Dispatcher)
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
