"""Benchmark: libitm's nfqueue drain rate with one worker and with two.

    sudo .venv/bin/python -m bench.libitm_workers [--packets N] [--repeats R] [--sources S]

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
with the machine's load (other work shares these cores).
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
from itmlab import ip_batch, netns, sh

SOURCES = 64

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


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved drains and print a JSON summary."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sources", type=int, default=SOURCES, help="source addresses (1-200)")
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
    med = {w: statistics.median(r["pps"] for r in runs if r["workers"] == w) for w in (1, 2)}
    # two workers against the one worker of the same repeat
    paired = [two["pps"] / one["pps"] for one, two in zip(runs[::2], runs[1::2], strict=True)]
    print(
        json.dumps(
            {
                "packets": a.packets,
                "repeats": a.repeats,
                "sources": a.sources,
                "pps_1_worker": round(med[1]),
                "pps_2_workers": round(med[2]),
                "ratio": round(med[2] / med[1], 2),
                "ratio_of_repeats": round(statistics.median(paired), 2),
                "ratio_range": [round(min(paired), 2), round(max(paired), 2)],
                "loadavg_before": load0,
                "loadavg_after": Path("/proc/loadavg").read_text().strip(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
