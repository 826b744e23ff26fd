"""Benchmark: libitm's nfqueue drain rate with one worker and with two.

    sudo .venv/bin/python -m bench.libitm_workers [--packets N] [--repeats R] [--sources S]
                                                  [--spread even|hash] [--write]

The topology of bench/libitm_queue.py (src -- mid -- dst; dst drops the
datagrams in raw PREROUTING) with S (default 64) more source addresses on src:
the kernel spreads ``--queue-balance`` by a hash of the address pair, whose
seed is random per boot. Left to the hash (``--spread hash``: the first S
addresses), the split varies from boot to boot: with 16 pairs one queue got 11
of them once, which capped two workers at 1.48x, and 64 pairs have split
40,623 / 59,377 (a cap of 1.68x). The workers' scaling is what this measures,
so by default (``--spread even``) 200 candidate addresses are probed first,
one datagram each with the workers stopped, and S are taken of which half
reach each queue; the datagrams are then sent round-robin over them, so each
queue gets the same number. The application is the accept-all
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

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import cliargs, entry, vmbench
from bench import libitm_queue as lq
from bench.libitm_stream import RunRecord, command_line, md_table, verdict
from itmlab import ip_batch, netns, sh, stop

SOURCES = 64
#: the addresses on src that --spread even chooses its sources from
CANDIDATES = 200
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


#: the machine's anchor: a CPU-bound Python loop on one given CPU, its own time printed
SPIN = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
t = time.perf_counter()
x = 0
for i in range(int(sys.argv[2])):
    x += i
print(time.perf_counter() - t)
"""
#: iterations of :data:`SPIN` (about 0.4 s on this machine, as long as a drain)
SPIN_LOOPS = 5_000_000


def machine_scaling(loops: int = SPIN_LOOPS) -> float:
    """How much more two CPU-bound Python processes, one on each of CPUs 0 and 1,
    get done per second than one alone (on CPU 1): the machine's own two-core
    scaling at the time, which bounds the workers' (a VM's cores are not always
    as fast together as alone)."""

    def spin(cpus: tuple[int, ...]) -> float:
        ps = [
            subprocess.Popen(
                [sys.executable, "-c", SPIN, str(c), str(loops)], stdout=subprocess.PIPE, text=True
            )
            for c in cpus
        ]
        return max(float(p.communicate(timeout=60)[0]) for p in ps)

    one = spin((1,))
    two = spin((0, 1))
    return round(2 * one / two, 3)


PROBE = """
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
for line in sys.stdin:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((line.strip(), 0))
    s.sendto(b"p", (dst, port))
    s.close()
    print("sent", flush=True)
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


def _start(
    topo: lq.Topology, workers: int, maxlen: int
) -> tuple[subprocess.Popen[str], set[int], list[int]]:
    """The application with ``workers`` workers in mid, its draining processes
    stopped (SIGSTOP): the process, the queues of its range, the drainers' pids."""
    app = APP.format(root=str(lq.ROOT), workers=workers, maxlen=maxlen, port=lq.PORT)
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
    except BaseException:
        _stop(p, [])
        raise
    return p, queues, drainers


def _stop(p: subprocess.Popen[str], drainers: list[int]) -> None:
    """End the application of :func:`_start` (its drainers continued first)."""
    for pid in drainers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    stop(p)


def _open_queue_file(topo: lq.Topology) -> Any:
    """/proc/net/netfilter/nfnetlink_queue of mid's namespace, open."""
    with netns(topo.mid):
        return open("/proc/net/netfilter/nfnetlink_queue")


def even_sources(topo: lq.Topology, candidates: list[str], count: int) -> list[str]:
    """``count`` of ``candidates`` (addresses on src) that ``--queue-balance``'s hash
    spreads evenly over a two-worker range, alternating between the queues.

    The hash's seed is random per boot, so each candidate is probed: with the
    workers stopped, it sends one datagram and the queue whose count rises is
    where its address pair goes."""
    p, queues, drainers = _start(topo, 2, 4 * len(candidates))
    by_queue: dict[int, list[str]] = {q: [] for q in queues}
    sender = subprocess.Popen(
        ["ip", "netns", "exec", topo.src, sys.executable, "-c", PROBE, topo.ip_dst, str(lq.PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sender.stdin is not None and sender.stdout is not None
        with _open_queue_file(topo) as f:
            before = _per_queue(f, queues)
            for src in candidates:
                sender.stdin.write(src + "\n")
                sender.stdin.flush()
                if sender.stdout.readline().strip() != "sent":
                    raise RuntimeError(f"probing from {src} failed")
                end = time.monotonic() + 2
                while time.monotonic() < end:
                    now = _per_queue(f, queues)
                    rose = [q for q in queues if now.get(q, 0) > before.get(q, 0)]
                    if rose:
                        by_queue[rose[0]].append(src)
                        before = now
                        break
                    time.sleep(0.001)
                else:
                    raise RuntimeError(f"the datagram from {src} reached no queue")
    finally:
        if sender.stdin is not None:
            sender.stdin.close()
        sender.wait(timeout=10)
        _stop(p, drainers)
    return pick_even(by_queue, count)


def pick_even(by_queue: dict[int, list[str]], count: int) -> list[str]:
    """``count`` addresses, half from each of the two queues' lists (``by_queue``: the
    addresses whose pairs hash to each queue), alternating; RuntimeError if a list is
    too short."""
    half = count // 2
    lists = [by_queue[q] for q in sorted(by_queue)]
    if len(lists) != 2 or min(len(x) for x in lists) < half:
        split = " / ".join(str(len(x)) for x in lists)
        raise RuntimeError(f"the candidates split {split}: too few for {count} sources")
    return [a for pair in zip(lists[0][:half], lists[1][:half], strict=True) for a in pair]


def drain(topo: lq.Topology, sources: list[str], workers: int, n: int) -> dict[str, Any]:
    """One drain of ``n`` packets with ``workers`` workers."""
    p, queues, drainers = _start(topo, workers, 2 * n)
    try:
        sh("ip", "netns", "exec", topo.src, sys.executable, "-c", SEND, topo.ip_dst,
           str(lq.PORT), str(n), *sources, timeout=120)  # fmt: skip
        with _open_queue_file(topo) as f:
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
            # polled every 2 ms: the two workers need both cores, and a tighter
            # loop here would take a share of them (a drain lasts 0.2-0.4 s)
            while _queued(f, queues) > 0 and time.monotonic() < deadline:
                time.sleep(0.002)
            dt = time.perf_counter() - t0
    finally:
        _stop(p, drainers)  # continued: an interrupt can come while they are stopped
    return {
        "workers": workers,
        "queued": queued,
        "per_queue": spread,
        "seconds": round(dt, 4),
        "pps": round(queued / dt),
    }


def summary(
    runs: list[dict[str, Any]], packets: int, sources: int, spread: str = "even"
) -> dict[str, Any]:
    """The interleaved drains (``runs``: W = 1, W = 2, W = 1, ...) summed up: median drain
    rates, their ratio, and the median (min-max) of each repeat's two workers ÷ its one
    (``spread``: how the sources were chosen, ``--spread``)."""
    med = {w: statistics.median(r["pps"] for r in runs if r["workers"] == w) for w in (1, 2)}
    # two workers against the one worker of the same repeat
    paired = [two["pps"] / one["pps"] for one, two in zip(runs[::2], runs[1::2], strict=True)]
    return {
        "packets": packets,
        "repeats": len(paired),
        "sources": sources,
        "spread": spread,
        "pps_1_worker": round(med[1]),
        "pps_2_workers": round(med[2]),
        "ratio": round(med[2] / med[1], 2),
        "ratio_of_repeats": round(statistics.median(paired), 2),
        "ratio_range": [round(min(paired), 2), round(max(paired), 2)],
        **_machine(runs[1::2]),
    }


def _machine(twos: list[dict[str, Any]]) -> dict[str, Any]:
    """The machine's own two-core scaling over the repeats (``machine_scaling`` of the
    W = 2 runs), median and range; nothing when the runs lack it."""
    got = [r["machine_scaling"] for r in twos if "machine_scaling" in r]
    if not got:
        return {}
    return {
        "machine_scaling": round(statistics.median(got), 2),
        "machine_range": [round(min(got), 2), round(max(got), 2)],
    }


def table(runs: list[dict[str, Any]], result: dict[str, Any]) -> str:
    """A row per repeat and one of medians, as a markdown table."""
    head = ["repeat", "1 worker: packets queued", "kpps", "2 workers: packets per queue"]
    head += ["kpps", "2 workers ÷ 1 worker", "the hash split's cap"]
    machine = "machine_scaling" in result
    if machine:
        head.append("the machine: 2 busy loops ÷ 1")
    body = []
    for i, (one, two) in enumerate(zip(runs[::2], runs[1::2], strict=True)):
        spread = two["per_queue"]
        cap = f"{sum(spread) / max(spread):.2f}x" if spread and max(spread) else "—"
        row = [
            str(i + 1),
            f"{one['queued']:,}",
            f"{one['pps'] / 1e3:.1f}",
            " / ".join(f"{q:,}" for q in spread),
            f"{two['pps'] / 1e3:.1f}",
            f"{two['pps'] / one['pps']:.2f}x",
            cap,
        ]
        if machine:
            got = two.get("machine_scaling")
            row.append(f"{got:.2f}x" if got is not None else "—")
        body.append(row)
    lo, hi = result["ratio_range"]
    last = [
        "median (min-max)",
        "",
        f"{result['pps_1_worker'] / 1e3:.1f}",
        "",
        f"{result['pps_2_workers'] / 1e3:.1f}",
        f"{result['ratio_of_repeats']:.2f}x ({lo:.2f}-{hi:.2f})",
        "",
    ]
    if machine:
        mlo, mhi = result["machine_range"]
        last.append(f"{result['machine_scaling']:.2f}x ({mlo:.2f}-{mhi:.2f})")
    body.append(last)
    return md_table(head, body)


def section(runs: list[dict[str, Any]], result: dict[str, Any], record: RunRecord) -> list[str]:
    """The body of this benchmark's section of docs/benchmarks.md (``runs`` and
    ``result``: :func:`drain`'s and :func:`summary`'s)."""
    per_repeat = result["ratio_of_repeats"]
    lo, hi = result["ratio_range"]
    if result.get("spread", "hash") == "even":
        spread_text = (
            ", half of them hashed to each queue by `--queue-balance` (the hash's seed is "
            "random per boot: each of 200 candidates was probed with one datagram, "
            "`--spread even`), so both workers get the same share;"
        )
    else:
        spread_text = (
            " as `--queue-balance`'s address hash spreads them over the two queues "
            "(`--spread hash`);"
        )
    return record.body(
        "The drain of bench.libitm_queue (libitm accept-all at ip_forward, fail-closed, a "
        'queue long enough for the batch) run as `ItmLoop("nfqueue", workers=W)`, one '
        f"worker and two interleaved, {result['packets']:,} datagrams from "
        f"{result['sources']} source addresses{spread_text} drain rate = packets queued ÷ "
        "time until every queue of the range is empty (bench/libitm_workers.py says how). "
        "The hash split's cap: how much faster two workers could at best drain than the "
        "fuller queue's worker alone."
        + (
            " The machine's anchor, right after each two-worker drain: a CPU-bound Python "
            "loop on each of the two CPUs at once against one alone (work per second), "
            "which no pair of processes can beat."
            if "machine_scaling" in result
            else ""
        ),
        table(runs, result),
        f"Goal (#18): two workers ≥ {GOAL:.1f}x one worker's drain rate: "
        f"{verdict(per_repeat >= GOAL and result['ratio'] >= GOAL)} ({per_repeat:.2f}x, the "
        f"median of each repeat's two workers ÷ its own one worker, {lo:.2f}-{hi:.2f}; "
        f"{result['ratio']:.2f}x of the medians; met only when both are)."
        + (
            f" The machine itself scaled {result['machine_scaling']:.2f}x in the same repeats "
            f"({result['machine_range'][0]:.2f}-{result['machine_range'][1]:.2f}): two "
            f"workers reached {per_repeat / result['machine_scaling']:.0%} of that."
            if "machine_scaling" in result
            else ""
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved drains and print a JSON summary."""
    ap = cliargs.parser("bench.libitm_workers", __doc__)
    ap.add_argument("--packets", type=cliargs.positive, default=100_000)
    ap.add_argument("--repeats", type=cliargs.positive, default=3)
    ap.add_argument("--sources", type=int, default=SOURCES, help="source addresses (1-200)")
    ap.add_argument(
        "--spread",
        choices=("even", "hash"),
        default="even",
        help="even: sources probed so that half of them hash to each queue (default); "
        "hash: the first S addresses, split as the hash falls",
    )
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    a = ap.parse_args(argv)
    if not 1 <= a.sources <= 200 or (a.spread == "even" and a.sources % 2):
        print(
            "bench.libitm_workers: --sources must be in 1..200 (even with --spread even)",
            file=sys.stderr,
        )
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
        candidates = [f"{prefix}.{10 + i}" for i in range(CANDIDATES)]
        if a.spread == "hash":
            candidates = candidates[: a.sources]
        ip_batch([f"addr add {s}/24 dev s0" for s in candidates], topo.src)
        sources = candidates
        if a.spread == "even":
            sources = even_sources(topo, candidates, a.sources)
        for _ in range(a.repeats):
            for w in (1, 2):
                runs.append(drain(topo, sources, w, a.packets))
                if w == 2:
                    runs[-1]["machine_scaling"] = machine_scaling()
                print(json.dumps(runs[-1]), flush=True)
    finally:
        topo.destroy()
    result = summary(runs, a.packets, a.sources, a.spread)
    load = {"loadavg_before": load0, "loadavg_after": Path("/proc/loadavg").read_text().strip()}
    print(json.dumps({**result, **load}))
    if a.write:
        cmd = command_line("bench.libitm_workers", argv)
        record = RunRecord.now(cmd, " ".join(load0.split()[:3]))
        vmbench.write_section(SECTION, TITLE, section(runs, result, record))
    return 0


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.libitm_workers"))
