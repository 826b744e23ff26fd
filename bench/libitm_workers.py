"""Benchmark: libitm's nfqueue drain rate with one worker and with two.

    sudo .venv/bin/python -m bench.libitm_workers [--packets N] [--repeats R] [--sources S]
                                                  [--write]

The topology of bench/libitm_queue.py (src -- mid -- dst; dst drops the
datagrams in raw PREROUTING) with S (default 64) more source addresses on src:
the kernel spreads ``--queue-balance`` by a hash of the addresses, so S
address pairs reach both queues of a two-worker range (the hash's seed is
random per boot: with 16 pairs one queue got 11 of them once, which capped two
workers at 1.48x; more pairs split closer to even). The application is the accept-all
consumer (``class_func`` 1, ``process_func`` ACCEPT) at ip_forward in mid, run
as ``ItmLoop("nfqueue", workers=W)`` with a queue long enough for the whole
batch and ``fail_open=False`` (an overflow would show as drops, not as speed).

Each repeat, for W = 1 and W = 2 in turn: the draining processes (the loop's
process for W = 1, its two workers for W = 2) are stopped (SIGSTOP); N 64-byte
datagrams are sent from the S sources; once the queues hold them all, the
processes continue (SIGCONT) and the time until every queue of the range is
empty (/proc/net/netfilter/nfnetlink_queue, read from mid's namespace) gives
the drain rate. Repeats interleave W = 1 and W = 2; the median is reported
with the machine's load (other work shares these cores). ``--write`` replaces
this benchmark's section of docs/benchmarks.md (a row per repeat, the run's
record and #18's goal: two workers ≥ 1.8x one worker, judged on the median of
each repeat's two workers ÷ its own one worker).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import libitm_queue as lq
from bench import vmbench
from bench.libitm_stream import RunRecord, command_line, md_table, positive, verdict
from itmlab import ip_batch, netns, sh

SOURCES = 64
#: the goal of #18: two workers drain at least this many times as fast as one
GOAL = 1.8
SECTION = "libitm_workers"
TITLE = "libitm with two workers (drain, nfqueue backend)"

APP = """
import sys
sys.path.insert(0, {root!r})
from libitm import Hook, Interest, ItmInfo, ItmLoop, Verdict

loop = ItmLoop("nfqueue", workers={workers}, queue_maxlen={maxlen}, fail_open=False,
               rcvbuf=256 << 20)
loop.register_hook(Hook.IP_FORWARD, ItmInfo(
    "drain", Interest(protocol="udp", dport={port}),
    class_func=lambda where, pkt: 1,
    process_func=lambda where, cls, pkt: Verdict.ACCEPT))
loop.run()
"""

SEND = """
import socket, sys
dst, port, n, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
socks = []
for src in sources:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    socks.append(s)
payload = b"d" * 36
for i in range(n):
    socks[i % len(socks)].sendto(payload, (dst, port))
"""


def _per_queue(f: object, queues: set[int]) -> dict[int, int]:
    """Packets waiting in each of ``queues`` (the open nfnetlink_queue file of mid's
    namespace)."""
    assert hasattr(f, "seek") and hasattr(f, "read")
    f.seek(0)
    out = {}
    for line in f.read().splitlines():
        parts = line.split()
        if parts and int(parts[0]) in queues:
            out[int(parts[0])] = int(parts[2])
    return out


def _queued(f: object, queues: set[int]) -> int:
    """Packets waiting in ``queues`` in all."""
    return sum(_per_queue(f, queues).values())


def _queues(topo: lq.Topology) -> set[int]:
    """The queue numbers libitm's rules in mid send to."""
    for line in sh(*topo.ipt_cmd(topo.mid), "-t", "mangle", "-S").splitlines():
        parts = line.split()
        if "--queue-balance" in parts:
            lo, hi = parts[parts.index("--queue-balance") + 1].split(":")
            return set(range(int(lo), int(hi) + 1))
        if "--queue-num" in parts:
            return {int(parts[parts.index("--queue-num") + 1])}
    return set()


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def drain(topo: lq.Topology, sources: list[str], workers: int, n: int) -> dict[str, Any]:
    """One drain of ``n`` packets with ``workers`` workers."""
    app = APP.format(root=str(lq.ROOT), workers=workers, maxlen=2 * n, port=lq.PORT)
    p = subprocess.Popen(
        ["ip", "netns", "exec", topo.mid, sys.executable, "-c", app],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 20
        queues: set[int] = set()
        drainers: list[int] = []
        while time.monotonic() < end:
            queues = _queues(topo)
            drainers = [p.pid] if workers == 1 else _children(p.pid)
            if queues and len(drainers) == workers:
                break
            time.sleep(0.05)
        if not queues or len(drainers) != workers:
            raise RuntimeError(f"the application did not start: {p.stderr}")
        time.sleep(0.3)  # the workers bind their queues
        for pid in drainers:
            os.kill(pid, signal.SIGSTOP)
        sh("ip", "netns", "exec", topo.src, sys.executable, "-c", SEND, topo.ip_dst,
           str(lq.PORT), str(n), *sources, timeout=120)  # fmt: skip
        with netns(topo.mid):
            f = open("/proc/net/netfilter/nfnetlink_queue")  # noqa: SIM115 - closed below
        with f:
            last, stable = -1, time.monotonic()
            while time.monotonic() - stable < 0.2:
                q = _queued(f, queues)
                if q != last:
                    last, stable = q, time.monotonic()
                time.sleep(0.005)
            queued = last
            spread = sorted(_per_queue(f, queues).values())
            t0 = time.perf_counter()
            for pid in drainers:
                os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 60
            while _queued(f, queues) > 0 and time.monotonic() < deadline:
                time.sleep(0.0005)
            dt = time.perf_counter() - t0
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    return {
        "workers": workers,
        "queued": queued,
        "per_queue": spread,
        "seconds": round(dt, 4),
        "pps": round(queued / dt),
    }


def summary(runs: list[dict[str, Any]], packets: int, sources: int) -> dict[str, Any]:
    """The interleaved drains (``runs``: W = 1, W = 2, W = 1, ...) summed up: median drain
    rates, their ratio, and the median (min-max) of each repeat's two workers ÷ its one."""
    med = {w: statistics.median(r["pps"] for r in runs if r["workers"] == w) for w in (1, 2)}
    # two workers against the one worker of the same repeat
    paired = [two["pps"] / one["pps"] for one, two in zip(runs[::2], runs[1::2], strict=True)]
    return {
        "packets": packets,
        "repeats": len(paired),
        "sources": sources,
        "pps_1_worker": round(med[1]),
        "pps_2_workers": round(med[2]),
        "ratio": round(med[2] / med[1], 2),
        "ratio_of_repeats": round(statistics.median(paired), 2),
        "ratio_range": [round(min(paired), 2), round(max(paired), 2)],
    }


def table(runs: list[dict[str, Any]], result: dict[str, Any]) -> str:
    """A row per repeat and one of medians, as a markdown table."""
    head = ["repeat", "1 worker: packets queued", "kpps", "2 workers: packets per queue"]
    head += ["kpps", "2 workers ÷ 1 worker", "the hash split's cap"]
    body = []
    for i, (one, two) in enumerate(zip(runs[::2], runs[1::2], strict=True)):
        spread = two["per_queue"]
        cap = f"{sum(spread) / max(spread):.2f}x" if spread and max(spread) else "—"
        body.append(
            [
                str(i + 1),
                f"{one['queued']:,}",
                f"{one['pps'] / 1e3:.1f}",
                " / ".join(f"{q:,}" for q in spread),
                f"{two['pps'] / 1e3:.1f}",
                f"{two['pps'] / one['pps']:.2f}x",
                cap,
            ]
        )
    lo, hi = result["ratio_range"]
    body.append(
        [
            "median (min-max)",
            "",
            f"{result['pps_1_worker'] / 1e3:.1f}",
            "",
            f"{result['pps_2_workers'] / 1e3:.1f}",
            f"{result['ratio_of_repeats']:.2f}x ({lo:.2f}-{hi:.2f})",
            "",
        ]
    )
    return md_table(head, body)


def section(runs: list[dict[str, Any]], result: dict[str, Any], record: RunRecord) -> list[str]:
    """The body of this benchmark's section of docs/benchmarks.md (``runs`` and
    ``result``: :func:`drain`'s and :func:`summary`'s)."""
    per_repeat = result["ratio_of_repeats"]
    lo, hi = result["ratio_range"]
    return record.body(
        "The drain of bench.libitm_queue (libitm accept-all at ip_forward, fail-closed, a "
        'queue long enough for the batch) run as `ItmLoop("nfqueue", workers=W)`, one '
        f"worker and two interleaved, {result['packets']:,} datagrams from "
        f"{result['sources']} source addresses so that `--queue-balance`'s address hash "
        "reaches both queues; drain rate = packets queued ÷ time until every queue of the "
        "range is empty (bench/libitm_workers.py says how). The hash split's cap: how much "
        "faster two workers could at best drain than the fuller queue's worker alone.",
        table(runs, result),
        f"Goal (#18): two workers ≥ {GOAL:.1f}x one worker's drain rate: "
        f"{verdict(per_repeat >= GOAL and result['ratio'] >= GOAL)} ({per_repeat:.2f}x, the "
        f"median of each repeat's two workers ÷ its own one worker, {lo:.2f}-{hi:.2f}; "
        f"{result['ratio']:.2f}x of the medians; met only when both are).",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved drains and print a JSON summary."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--packets", type=positive, default=100_000)
    ap.add_argument("--repeats", type=positive, default=3)
    ap.add_argument("--sources", type=int, default=SOURCES, help="source addresses (1-200)")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    a = ap.parse_args(argv)
    if not 1 <= a.sources <= 200:
        print("bench.libitm_workers: --sources must be in 1..200", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench.libitm_workers: needs root (namespaces, iptables, nfqueue)", file=sys.stderr)
        return 4
    topo = lq.Topology()
    load0 = Path("/proc/loadavg").read_text().strip()
    runs: list[dict[str, Any]] = []
    try:
        topo.create()
        prefix = topo.ip_src.rsplit(".", 1)[0]
        sources = [f"{prefix}.{10 + i}" for i in range(a.sources)]
        ip_batch([f"addr add {s}/24 dev s0" for s in sources], topo.src)
        for _ in range(a.repeats):
            for w in (1, 2):
                runs.append(drain(topo, sources, w, a.packets))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        topo.destroy()
    result = summary(runs, a.packets, a.sources)
    load = {"loadavg_before": load0, "loadavg_after": Path("/proc/loadavg").read_text().strip()}
    print(json.dumps({**result, **load}))
    if a.write:
        cmd = command_line("bench.libitm_workers", argv)
        record = RunRecord.now(cmd, " ".join(load0.split()[:3]))
        vmbench.write_section(SECTION, TITLE, section(runs, result, record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
