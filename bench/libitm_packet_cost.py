"""Benchmark: what libitm's packet loop costs per packet, without the kernel.

    .venv/bin/python -m bench.libitm_packet_cost [--instructions] [--write]

The packet loop (``QueueTransport._messages``, shared by the nfqueue and the
kernel backend) runs over a batch of 128 queued-packet messages laid out as
nfnetlink_queue sends them for a forwarded 64-byte UDP datagram (the drain of
bench/libitm_queue.py), in a buffer as recvmmsg leaves it, with the consumers
of that benchmark: accept-all (``class_func`` returns 1, ``process_func``
returns ACCEPT) and a TOS rewrite (``pkt.tos = 0x28``; the batch is restored
before each pass, so that every packet is modified). No system call, no
kernel: this is the Python half of the drain's cost per packet.

The anchor, measured in the same run: a stripped loop over the same batch
that unpacks each header with one struct call, points a Packet at the
payload, calls the two callbacks and notes the id for the batch verdict - no
checks, counters, error handling or verdict building. The ratio says how far
the real loop is from the least any per-packet Python loop with callbacks
costs on this interpreter.

Times are the best of 7 passes of 200 batches, on one core. ``--instructions``
also counts instructions per packet with valgrind's callgrind (deterministic:
the difference of two runs of different lengths, so that start-up cancels),
about 1 minute. ``--write`` replaces this benchmark's section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import cliargs, entry, vmbench
from libitm import Hook, Interest, ItmInfo, Packet, Verdict
from libitm.backends.nfqueue import NfqueueBackend
from libitm.checksum import checksum
from libitm.dispatch import Dispatcher
from libitm.transport import codec as nfq
from libitm.transport.queue import _word_views

N = 128  # messages per batch (the backend's recvmmsg slots)
SLOT = 1152  # slot size for the default copy range (128 + 1024)
QUEUE = 7
PORT = 5009
NEW_TOS = 0x28
VARIANTS = ("floor", "accept", "tos")


def udp_packet(payload: bytes) -> bytes:
    """An IPv4 UDP datagram 10.0.0.1:9 -> 10.0.0.2:PORT with valid checksums."""
    udp = struct.pack("!HHHH", 9, PORT, 8 + len(payload), 0) + payload
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                                bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))  # fmt: skip
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return bytes(hdr) + udp


class Batch:
    """N queued-packet messages in recvmmsg slots, and their pristine copy."""

    def __init__(self) -> None:
        self.buf = bytearray(N * SLOT)
        self.lengths: list[int] = []
        packet = udp_packet(bytes(64 - 28))
        for i in range(N):
            m = nfq.encode_forwarded_packet(QUEUE, i + 1, packet)
            self.buf[i * SLOT : i * SLOT + len(m)] = m
            self.lengths.append(len(m))
        self.pristine = bytes(self.buf)
        self.views = (self.buf, memoryview(self.buf), *_word_views(self.buf))
        self.starts = [i * SLOT for i in range(N)]

    def restore(self) -> None:
        """Undo the previous pass's changes (TOS rewrites)."""
        self.buf[:] = self.pristine


def _class_func(where: Hook, pkt: Packet) -> int:
    return 1


def _accept(where: Hook, cls: int, pkt: Packet) -> Verdict:
    return Verdict.ACCEPT


def _rewrite(where: Hook, cls: int, pkt: Packet) -> Verdict:
    pkt.tos = NEW_TOS
    return Verdict.ACCEPT


def libitm_pass(mode: str, batch: Batch) -> Callable[[], None]:
    """One batch through the backend's packet loop, as a callable."""
    info = ItmInfo(
        "bench",
        Interest(family=4, protocol="udp", dport=PORT),
        class_func=_class_func,
        process_func=_rewrite if mode == "tos" else _accept,
        needs_payload=mode == "tos",
    )
    be = NfqueueBackend()
    d = Dispatcher()
    d.add(Hook.IP_FORWARD, info)
    be._disp = d
    be._qhook[QUEUE] = Hook.IP_FORWARD
    out = bytearray()
    pending: dict[int, int] = {}
    messages = be.transport._messages

    def one() -> None:
        if mode == "tos":
            batch.restore()
        out.clear()
        pending.clear()
        if messages(batch.views, N, batch.starts, batch.lengths, pending, out) != N:
            raise RuntimeError("the packet loop did not handle the whole batch")

    one()
    if mode == "tos" and len(out) < N * 36:
        raise RuntimeError("the TOS rewrite did not produce a verdict per packet")
    return one


def floor_pass(batch: Batch) -> Callable[[], None]:
    """The anchor: the least a per-packet loop with the two callbacks does."""
    payload_at = batch.lengths[0] - len(udp_packet(bytes(64 - 28)))
    sig = bytes(batch.buf[32 : payload_at - 4])
    unpack = struct.Struct(f"<II10xHII4x{len(sig)}sI").unpack_from
    buf, rmv = batch.buf, batch.views[1]
    pkt = Packet(udp_packet(b""))
    accept = Verdict.ACCEPT
    hook = Hook.IP_FORWARD
    pending: dict[int, int] = {}

    def one() -> None:
        for i in range(N):
            pos = i * SLOT
            _length, _tf, q_raw, _ha, pid_raw, sg, pa = unpack(buf, pos)
            if sg == sig:
                plen = (pa & 0xFFFF) - 4
                pkt._buf = rmv[pos + payload_at : pos + payload_at + plen]
                pkt._len = plen
                pkt._layout = None
                cls = _class_func(hook, pkt)
                if cls and _accept(hook, cls, pkt) is accept:
                    pending[q_raw] = pid_raw

    return one


def timed(fn: Callable[[], None], passes: int = 200, repeats: int = 7) -> float:
    """Best seconds per packet over ``repeats`` runs of ``passes`` batches."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(passes):
            fn()
        best = min(best, (time.perf_counter() - t) / (passes * N))
    return best


def make(variant: str) -> Callable[[], None]:
    """The pass of one variant."""
    batch = Batch()
    return floor_pass(batch) if variant == "floor" else libitm_pass(variant, batch)


def instructions(variant: str) -> float:
    """Instructions per packet under callgrind: (run of 30 batches - run of 10) / 20 N."""
    totals = []
    for passes in (10, 30):
        r = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-m", "bench.libitm_packet_cost", "--one", variant,
             "--passes", str(passes)],
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode or not m:
            raise RuntimeError(f"callgrind of {variant} failed: {r.stderr.strip()[-400:]}")
        totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / (20 * N)


def report(rows: dict[str, dict[str, float]]) -> list[str]:
    """The markdown table."""
    floor = rows["floor"]
    lines = [
        "| loop | µs per packet | ÷ anchor | instructions per packet | ÷ anchor |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {
        "floor": "anchor: stripped loop (unpack, Packet, two callbacks, note the id)",
        "accept": "libitm, accept-all",
        "tos": "libitm, TOS rewrite",
    }
    for v, r in rows.items():
        ins = r.get("instructions")
        lines.append(
            f"| {names[v]} | {r['seconds'] * 1e6:.2f} | {r['seconds'] / floor['seconds']:.2f}x | "
            + (f"{ins:,.0f} | {ins / floor['instructions']:.2f}x |" if ins else "— | — |")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = cliargs.parser("bench.libitm_packet_cost", __doc__)
    ap.add_argument("--instructions", action="store_true", help="also count with callgrind")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--passes", type=cliargs.positive, default=200, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:  # the callgrind child: run one variant, nothing else
        fn = make(a.one)
        for _ in range(a.passes):
            fn()
        return 0
    if a.instructions and shutil.which("valgrind") is None:
        return vmbench.fail("--instructions needs valgrind (Debian package valgrind)")
    with _pinned():
        rows: dict[str, dict[str, float]] = {v: {"seconds": timed(make(v))} for v in VARIANTS}
    if a.instructions:
        for v in VARIANTS:
            rows[v]["instructions"] = instructions(v)
    table = report(rows)
    print("\n".join(table))
    if a.write:
        cmd = "python -m bench.libitm_packet_cost" + (" --instructions" if a.instructions else "")
        vmbench.write_section(
            "libitm_packet_cost",
            "libitm's packet loop per packet, without the kernel",
            [
                "The Python half of the drain above: the backend's packet loop over a batch of 128 "
                "queued-packet messages as nfnetlink_queue sends them for the drain's forwarded "
                "64-byte UDP datagrams, no system call (bench/libitm_packet_cost.py says how). "
                "The anchor is the least a per-packet loop with the two callbacks does on this "
                "interpreter, measured in the same run.",
                "",
                f"Command: `{cmd}`, {vmbench.today()}, {vmbench.cpu()}, "
                f"Python {platform.python_version()}; best of 7 runs of 200 "
                "batches on one core; instructions by callgrind.",
                "",
                *table,
                "",
            ],
        )
    return 0


class _pinned:
    """Run on one core (the last one) while timing, where the platform allows."""

    def __enter__(self) -> None:
        self.old: Any = None
        if hasattr(os, "sched_setaffinity"):
            self.old = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {max(self.old)})

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            os.sched_setaffinity(0, self.old)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.libitm_packet_cost"))
