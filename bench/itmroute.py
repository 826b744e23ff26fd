"""Benchmark: itmRoute's path choice, failover and costs on netem links, against RON's probing.

In a VM booted on a kernel of the matrix (netem is a module there), the
overlay of itmroute/lab.py — client ITM A, relays R1..R4, destination ITM D,
a direct A--D link — runs every daemon in threads of one process, and:

- path choice: ``--iterations`` random delay sets (round trips 20..100 ms per
  path, kept when the best beats the next by 10% and 2 ms); for each, the
  destination is made new, a 20 packet/s stream starts, and the path in use
  3 s after the first packet is compared with the best;
- adoption: a relay made 25..40% better than the path in use, time until it
  is used (5 trials); a relay 5..9% better, watched for 15 s (2 trials);
- flapping: two relays 40 and 41 ms (±2 ms jitter on every link end), the
  others far worse, switches counted over ``--flap-seconds``, as a rate per
  10 minutes;
- loss: 10% loss on the lowest-RTT relay (40 ms), a loss-free one at 58 ms
  (1.45x), which one is used after 45 s;
- failover: the relay in use black-holed (every packet dropped) 1 s into a
  100 packet/s UDP sequence stream that goes on 4 s past the cut (30 s with
  RON's settings); the largest gap between arrivals, and the time from the
  sending of the first datagram the cut lost to the arrival of the first one
  delivered on the new path, over ``--iterations`` cuts
  (itmRoute) and ``--ron-cuts`` cuts (RON's settings);
- probe overhead: bytes of A's probes, their acknowledgements and D's notices
  to A on A's links (iptables counters with ``u32`` on the message type, plus
  14 bytes of Ethernet header each), 30 s of a one-way and 30 s of a two-way
  (echoed) 20 packet/s flow through R1 (the best path), then after 65 s idle;
- forwarding: a UDP flood through one relay for 5 s, datagrams per second
  delivered at D.

RON's settings (Andersen et al., SOSP 2001): a probe every 12 s per path, after
a loss retries every 3 s, a path is down after 4 consecutive losses, no races.

    .venv/bin/python -m bench.itmroute [--kernel 6.12] [--iterations 20] [--write]

takes about 25 minutes per kernel under TCG; --write puts the tables into
docs/itmroute.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cliargs, entry, vmbench
from itmlab import netns, sh
from itmroute import ProbeSettings, wire
from itmroute.daemon import Router
from itmroute.lab import D_OVERLAY, CutLater, Overlay, SeqStream, load_stock_modules, overlay
from itmtool.matrix import ROOT

ROUTE_DOC = ROOT / "docs" / "itmroute.md"
PROBE_IP_LEN = 20 + 8 + wire.PROBE_LEN  # an itmRoute probe or ack: IP + UDP + header, body, MAC
NAMES = ("direct", "r1", "r2", "r3", "r4")


@dataclass
class Bench:
    """The overlay and the in-process daemons of A and D."""

    ov: Overlay
    probe: ProbeSettings

    def start(self) -> None:
        self.ov.start_threads(["a", "d", "r1", "r2", "r3", "r4"], self.probe)

    def restart(self, probe: ProbeSettings) -> None:
        self.ov.stop_daemons()
        self.probe = probe
        self.start()

    @property
    def a(self) -> Router:
        return self.ov.router("a")

    def dest(self) -> Any:
        return self.a.dests[0][1]

    def set_rtts(self, rtts: list[float], jitter: float = 0.0) -> None:
        self.ov.set_paths({i: (rtt, 0.0, jitter) for i, rtt in enumerate(rtts)})

    def forget(self) -> None:
        """A and D start afresh at their next packet."""
        for node in ("a", "d"):
            self.ov.router(node).forget()
        time.sleep(0.2)


class Trickle:
    """``rate`` datagrams a second A -> D, to a socket that takes them silently
    (a one-way flow) or, with ``echo``, sends each one back (a two-way flow)."""

    def __init__(self, ov: Overlay, rate: float = 20.0, echo: bool = False) -> None:
        with netns(ov.d):
            self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sink.bind((D_OVERLAY, 9))
        with netns(ov.a):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sink.settimeout(0.2)
        self.rate = rate
        self.first = 0.0
        self.echoed = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._echo = threading.Thread(target=self._answer, daemon=True)
        self._th.start()
        if echo:
            self._echo.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.first:
                self.first = time.monotonic()
            with contextlib.suppress(OSError):
                self.sock.sendto(b"t" * 32, (D_OVERLAY, 9))
            with contextlib.suppress(OSError):
                while self.sock.recv(100):  # the echoes (until none waits)
                    self.echoed += 1
            self._stop.wait(1 / self.rate)

    def _answer(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                data, addr = self.sink.recvfrom(100)
                self.sink.sendto(data, addr)

    def close(self) -> None:
        self._stop.set()
        self._th.join(2)
        if self._echo.is_alive():
            self._echo.join(2)
        self.sock.close()
        self.sink.close()


def delay_set(rng: random.Random) -> list[float]:
    """Round trips for direct, R1..R4 whose best beats the next by 10% and 2 ms."""
    while True:
        rtts = [float(rng.randrange(20, 101, 2)) for _ in NAMES]
        a, b = sorted(rtts)[:2]
        if b >= a * 1.1 and b - a >= 2:
            return rtts


def path_choice(b: Bench, n: int, rng: random.Random) -> dict[str, Any]:
    """The path in use 3 s after the first packet, against the best, over ``n`` sets."""
    rows = []
    for _ in range(n):
        rtts = delay_set(rng)
        b.set_rtts(rtts)
        b.forget()
        t = Trickle(b.ov)
        try:
            while not t.first:
                time.sleep(0.01)
            time.sleep(max(0.0, t.first + 3.0 - time.monotonic()))
            st = b.dest()
            used = st.current
            start = next(
                (d for d in st.decisions if d.reason == "start" and d.time >= t.first), None
            )
        finally:
            t.close()
        best = NAMES[rtts.index(min(rtts))]
        rows.append(
            {
                "rtts": rtts,
                "best": best,
                "used_at_3s": used,
                "decided_after": None if start is None else start.time - t.first,
            }
        )
    ok = sum(r["best"] == r["used_at_3s"] for r in rows)
    return {"sets": n, "correct": ok, "rows": rows}


def wait_current(b: Bench, name: str, timeout: float) -> float | None:
    """Seconds until the path ``name`` is in use (None: not within ``timeout``)."""
    return wait_until(lambda: b.dest().current == name, timeout)


def wait_until(pred: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``pred()`` holds (None: not within ``timeout``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def adoption(b: Bench, rng: random.Random) -> dict[str, Any]:
    """Clearly better (25..40%) relays adopted, barely better (5..9%) ones ignored."""
    adopted: list[float | None] = []
    ignored: list[int | None] = []
    t = Trickle(b.ov)
    try:
        for trial in range(7):
            base = [60.0, 50.0, 80.0, 80.0, 80.0]
            b.set_rtts(base)
            b.forget()
            if wait_current(b, "r1", 8) is None:
                (adopted if trial < 5 else ignored).append(None)
                continue
            time.sleep(2)
            target = rng.randrange(2, 5)
            if trial < 5:
                gain = rng.uniform(0.25, 0.40)
                b.ov.set_path(target, 50.0 * (1 - gain))
                adopted.append(wait_current(b, f"r{target}", 10))
            else:
                gain = rng.uniform(0.05, 0.09)
                switches = b.dest().switches
                b.ov.set_path(target, 50.0 * (1 - gain))
                time.sleep(15)
                ignored.append(b.dest().switches - switches)
    finally:
        t.close()
    return {"adopt_seconds": adopted, "switches_when_slightly_better": ignored}


def flapping(b: Bench, seconds: float) -> dict[str, Any]:
    """Two relays within 5% under jitter: switches per 10 minutes."""
    b.set_rtts([120.0, 40.0, 41.0, 120.0, 120.0], jitter=2.0)
    b.forget()
    t = Trickle(b.ov)
    try:
        time.sleep(5)
        s0 = b.dest().switches
        time.sleep(seconds)
        n = b.dest().switches - s0
    finally:
        t.close()
        b.set_rtts([120.0, 40.0, 41.0, 120.0, 120.0])
    return {"seconds": seconds, "switches": n, "per_10_min": n * 600 / seconds}


def lossy(b: Bench) -> dict[str, Any]:
    """10% loss on the 40 ms relay, a clean one at 58 ms: which is used after 45 s."""
    b.set_rtts([150.0, 40.0, 58.0, 150.0, 150.0])
    b.ov.set_path(1, 40.0, loss=10.0)
    b.forget()
    t = Trickle(b.ov)
    used: list[str] = []
    try:
        for _ in range(45):
            time.sleep(1)
            used.append(b.dest().current)
    finally:
        t.close()
        b.ov.set_path(1, 40.0)
    st = b.dest()
    return {
        "used_last": used[-1],
        "share_r2_last_20s": used[-20:].count("r2") / 20,
        "loss_estimate": {p.name: round(p.loss, 3) for p in st.paths},
    }


def cuts(b: Bench, n: int, after_s: float, rtts: list[float] | None = None) -> dict[str, Any]:
    """Black-hole the relay in use during a 100 packet/s stream, ``n`` times.

    The stream runs 1 s before the cut and ``after_s`` after it (well past any
    failover). Per cut: the outage, from the sending of the first datagram the
    cut lost to the arrival of the first later one that arrived (the first
    delivered on the new path); and the largest gap between arrivals from
    0.5 s before the cut command to the end (infinite when the stream has not
    recovered by its end). Both are independent of how long the cut command
    takes to put its rules in.
    """
    if rtts is not None:
        b.set_rtts(rtts)
    gaps: list[float] = []
    outages: list[float] = []
    phases: list[dict[str, Any]] = []
    for i in range(n):
        b.forget()
        t = Trickle(b.ov)
        try:
            if rtts is None:  # no netem: any relay (the direct link is black-holed)
                wait_until(lambda: b.dest().current.startswith("r"), 10)
            else:
                wait_current(b, "r1", 10)
            time.sleep(1.0)
        finally:
            t.close()
        victim = b.dest().current
        if not victim.startswith("r"):
            gaps.append(float("inf"))
            outages.append(float("inf"))
            continue
        v = int(victim[1:])
        stream = SeqStream(b.ov, rate=100, port=6000 + i)
        cutter = CutLater(b.ov, v, 1.0)
        try:
            stream.run(1.0 + after_s)
        finally:
            stream.close()
            cutter.join()
            b.ov.cut(v, on=False)
        gaps.append(stream.largest_gap(after=cutter.began - 0.5))
        outages.append(stream.outage(cutter.began - 0.5))
        phases.append(cut_phases(b, stream, cutter))
    return {
        "cuts": n,
        "gaps": gaps,
        "outages": outages,
        "phases": phases,
        "median": statistics.median(gaps),
        "p95": percentile(gaps, 0.95),
        "outage_median": statistics.median(outages),
        "outage_p95": percentile(outages, 0.95),
    }


def cut_phases(b: Bench, stream: SeqStream, cutter: CutLater) -> dict[str, Any]:
    """Where one cut's gap went (seconds): the last arrival before A's decision to
    leave the path, to the cut command's end (the rules in place), to the
    decision, to the first arrival after it; the longest pause of the sender
    itself (the measuring process not scheduled) and A's decisions."""
    t0 = cutter.began - 0.5
    times = sorted(t for _, t in stream.arrivals if t >= t0)
    sent = [t for t in stream.sent_at if t >= t0]
    decisions = [d for d in b.dest().decisions if d.time >= t0]
    decided = decisions[0].time if decisions else None
    at = cutter.done if decided is None else decided
    last = max((t for t in times if t <= at), default=t0)
    first = min((t for t in times if t > at), default=float("inf"))
    return {
        "last_arrival_to_cut_done": round(cutter.done - last, 4),
        "cut_command": round(cutter.done - cutter.began, 4),
        "cut_done_to_decision": None if decided is None else round(decided - cutter.done, 4),
        "decision_to_first_arrival": None if decided is None else round(first - decided, 4),
        "sender_pause": round(max((y - x for x, y in itertools.pairwise(sent)), default=0.0), 4),
        "decisions": [d.line() for d in decisions],
    }


def percentile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` (nearest rank)."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


#: an itmRoute NOTICE (a receipt on its own, or a stop notice): IP + UDP + header,
#: target, origin, tag, silence, MAC
NOTICE_IP_LEN = 20 + 8 + wire.HEADER_LEN + 11 + wire.TAG_LEN
#: iptables rules in A counting itmRoute's control datagrams (IPv4 ITMs): ``all``
#: probes, acknowledgements and notices, and ``own``: A's probes (type PROBE, not
#: relayed), the acknowledgements of them (type ACK, relayed or not; A relays
#: nothing) and the notices D sends A about A's data — the active destination's
#: own cost, without the probes of D's table and A's answers to them
_WORD = (wire.MAGIC << 16) | (wire.VERSION << 8)  # 'IR', version: the u32 at byte 28
PROBE_RULES = (
    ("all", "INPUT", "--sport", PROBE_IP_LEN, None),
    ("all", "OUTPUT", "--dport", PROBE_IP_LEN, None),
    ("all", "INPUT", "--sport", NOTICE_IP_LEN, None),
    ("all", "OUTPUT", "--dport", NOTICE_IP_LEN, None),
    ("own", "OUTPUT", "--dport", PROBE_IP_LEN, f"28={_WORD | wire.PROBE:#010x}"),
    ("own", "INPUT", "--sport", PROBE_IP_LEN, f"28&0xFFFFFF7F={_WORD | wire.ACK:#010x}"),
    ("own", "INPUT", "--sport", NOTICE_IP_LEN, f"28&0xFFFFFF7F={_WORD | wire.NOTICE:#010x}"),
)


def _probe_rule(
    op: str, chain: str, port: str, length: int, u32: str | None, what: str
) -> list[str]:
    rule = ["iptables", "-w", op, chain, "-p", "udp", port, "7177",
            "-m", "length", "--length", str(length)]  # fmt: skip
    if u32 is not None:
        rule += ["-m", "u32", "--u32", u32]
    return [*rule, "-m", "comment", "--comment", f"itmbench-{what}"]


def counters(ns: str, what: str = "all") -> int:
    """Bytes (with 14 bytes of Ethernet header each) counted by the rules ``what`` in ``ns``."""
    total = 0
    for chain in ("INPUT", "OUTPUT"):
        out = sh("ip", "netns", "exec", ns, "iptables", "-w", "-nvxL", chain)
        for line in out.splitlines():
            if f"itmbench-{what} " in line + " ":
                pkts, nbytes = line.split()[:2]
                total += int(nbytes) + 14 * int(pkts)
    return total


def _active(b: Bench, ns: str, seconds: float, echo: bool) -> dict[str, float]:
    """Probe bytes/s of a 20 packet/s flow (one-way, or echoed by D) after 3 s."""
    t = Trickle(b.ov, echo=echo)
    a = b.a.counters
    try:
        time.sleep(3)
        c0 = {w: counters(ns, w) for w in ("all", "own")}
        d0 = a["tunnelled"] + a["decapsulated"]
        time.sleep(seconds)
        got = {f"{w}_bytes_per_s": (counters(ns, w) - c0[w]) / seconds for w in c0}
        data = (a["tunnelled"] + a["decapsulated"] - d0) / seconds
    finally:
        t.close()
    # what DATA carries for delivery at the destination ITM and its receipts
    got["data_head_bytes_per_s"] = data * wire.data_head_len(4)
    got["echoed"] = t.echoed
    return got


def overhead(
    b: Bench, active_s: float, idle_wait: float, netem: bool = True, idle_s: float = 20.0
) -> dict[str, Any]:
    """Probe bytes per second on A's links: active destination, then idle."""
    if netem:
        b.set_rtts([90.0, 30.0, 60.0, 70.0, 80.0])  # R1 best: receipts ride on the data
    ns = b.ov.a
    for what, chain, port, length, u32 in PROBE_RULES:
        sh("ip", "netns", "exec", ns, *_probe_rule("-I", chain, port, length, u32, what))
    try:
        b.forget()
        one_way = _active(b, ns, active_s, echo=False)
        two_way = _active(b, ns, active_s, echo=True)
        time.sleep(idle_wait)
        c0 = counters(ns)
        time.sleep(idle_s)
        idle = (counters(ns) - c0) / idle_s
    finally:
        for what, chain, port, length, u32 in PROBE_RULES:
            sh("ip", "netns", "exec", ns, *_probe_rule("-D", chain, port, length, u32, what))
    return {
        "active_bytes_per_s": one_way["all_bytes_per_s"],
        "one_way": one_way,
        "two_way": two_way,
        "idle_bytes_per_s_after": idle,
        "idle_wait": idle_wait,
    }


def forwarding(b: Bench, seconds: float = 5.0) -> dict[str, Any]:
    """A UDP flood A -> D through one relay: datagrams per second delivered."""
    b.set_rtts([90.0, 2.0, 60.0, 70.0, 80.0])
    b.forget()
    t = Trickle(b.ov)
    try:
        wait_current(b, "r1", 10)
    finally:
        t.close()
    return udp_flood(b.ov, seconds)


def udp_flood(ov: Overlay, seconds: float = 5.0) -> dict[str, Any]:
    """A UDP flood A -> D of 100-byte datagrams: sent and delivered per second."""
    with netns(ov.d):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns(ov.a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = [0]
    stop = threading.Event()
    rx.bind((D_OVERLAY, 6500))
    rx.settimeout(0.2)

    def receive() -> None:
        while not stop.is_set():
            try:
                rx.recv(2048)
                got[0] += 1
            except (TimeoutError, OSError):
                pass

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    sent = 0
    payload = b"f" * 100
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(50):
            try:
                tx.sendto(payload, (D_OVERLAY, 6500))
                sent += 1
            except OSError:
                pass
        time.sleep(0.001)
    time.sleep(1)
    stop.set()
    th.join(2)
    rx.close()
    tx.close()
    return {"sent_per_s": sent / seconds, "delivered_per_s": got[0] / seconds}


def guest(out: Path, iterations: int, ron_cuts: int, flap_seconds: float) -> int:
    """Inside the VM: every measurement, itmRoute's settings then RON's.

    The result file is rewritten after each measurement; one that fails is
    recorded as ``{"error": ...}`` and the others still run.
    """
    load_stock_modules()
    rng = random.Random(2026)
    doc: dict[str, Any] = {"kernel": platform.release(), "iterations": iterations}
    doc["itmroute"], doc["ron"] = {}, {}

    def measure(into: dict[str, Any], key: str, fn: Callable[[], dict[str, Any]]) -> None:
        try:
            into[key] = fn()
        except Exception as e:
            into[key] = {"error": f"{type(e).__name__}: {e}"}
        out.write_text(json.dumps(doc, indent=1))

    with overlay(f"itmb{os.getpid()}", 4) as ov:
        b = Bench(ov, ProbeSettings())
        b.start()
        try:
            measure(doc, "path_choice", lambda: path_choice(b, iterations, rng))
            measure(doc, "adoption", lambda: adoption(b, rng))
            measure(doc, "flapping", lambda: flapping(b, flap_seconds))
            measure(doc, "lossy", lambda: lossy(b))
            it = doc["itmroute"]
            measure(
                it, "failover", lambda: cuts(b, iterations, 4.0, [90.0, 30.0, 40.0, 50.0, 60.0])
            )
            measure(it, "overhead", lambda: overhead(b, 30.0, 65.0))
            measure(it, "forwarding", lambda: forwarding(b))
            b.restart(ProbeSettings.preset("ron"))
            ron = doc["ron"]
            measure(
                ron, "failover", lambda: cuts(b, ron_cuts, 30.0, [90.0, 30.0, 40.0, 50.0, 60.0])
            )
            measure(ron, "overhead", lambda: overhead(b, 36.0, 0.0))
            measure(ron, "forwarding", lambda: forwarding(b))
        finally:
            ov.stop_daemons()
    out.write_text(json.dumps(doc, indent=1))
    return 0


def tables(doc: dict[str, Any]) -> str:
    """Markdown tables of one kernel's results (a failed measurement shows its error)."""
    try:
        return _tables(doc)
    except (KeyError, TypeError, ValueError) as e:
        return (
            f"Kernel {doc.get('kernel')}: incomplete ({e!r}):\n\n```\n"
            + json.dumps(doc, indent=1)[:6000]
            + "\n```"
        )


def _tables(doc: dict[str, Any]) -> str:
    pc = doc["path_choice"]
    decided = [r["decided_after"] for r in pc["rows"] if r["decided_after"] is not None]
    ad = doc["adoption"]
    adopt = [x for x in ad["adopt_seconds"] if x is not None]
    fl, lo = doc["flapping"], doc["lossy"]
    lines = [
        f"Kernel {doc['kernel']}:",
        "",
        "| must show | measured |",
        "|---|---|",
        f"| lowest-RTT path in use 3 s after the first packet | {pc['correct']}/{pc['sets']}"
        f" delay sets (start decision after {max(decided, default=0):.2f} s at most) |",
        f"| relay ≥ 25% better adopted within 5 s | {len(adopt)}/{len(ad['adopt_seconds'])}"
        f" adopted, after {', '.join(f'{x:.1f}' for x in adopt)} s |",
        f"| relay < 10% better never adopted | switches: {ad['switches_when_slightly_better']} |",
        f"| two relays within 5% under jitter | {fl['switches']} switches in {fl['seconds']:.0f} s"
        f" = {fl['per_10_min']:.1f} per 10 min |",
        f"| 10% loss on the best relay, clean one at 1.45x | uses {lo['used_last']} at 45 s,"
        f" r2 {lo['share_r2_last_20s'] * 100:.0f}% of the last 20 s |",
        "",
        "| | itmRoute | RON's probing |",
        "|---|---:|---:|",
    ]
    it, ron = doc["itmroute"], doc.get("ron")

    def cell(d: dict[str, Any] | None, f: str) -> str:
        if d is None:
            return "—"
        fo, ov, fw = d["failover"], d["overhead"], d["forwarding"]
        return {
            "cuts": f"{fo['cuts']}",
            "median": f"{fo['median']:.2f} s",
            "p95": f"{fo['p95']:.2f} s",
            "max": f"{max(fo['gaps']):.2f} s",
            "outage": f"{fo['outage_median']:.2f} / {fo['outage_p95']:.2f}"
            f" / {max(fo['outages']):.2f} s",
            "probe": f"{ov['two_way']['own_bytes_per_s']:.0f} /"
            f" {ov['one_way']['own_bytes_per_s']:.0f} B/s",
            "idle": f"{ov['idle_bytes_per_s_after']:.0f} B/s" if ov["idle_wait"] >= 60 else "—",
            "fwd": f"{fw['delivered_per_s']:.0f} /s",
        }[f]

    for key, label in (
        ("cuts", "relay cuts"),
        ("median", "largest gap in a 100 packet/s stream, median"),
        ("p95", "... 95th percentile"),
        ("max", "... worst"),
        ("outage", "cut to the first datagram delivered on the new path, median / p95 / worst"),
        ("probe", "probe bytes per active destination, 4 relays, two-way / one-way flow"),
        ("idle", "... after a minute idle"),
        ("fwd", "datagrams/s delivered through one relay (UDP flood)"),
    ):
        lines.append(f"| {label} | {cell(it, key)} | {cell(ron, key)} |")
    return "\n".join(lines)


def write_doc(body: list[str]) -> None:
    """Put the results section into docs/itmroute.md (vmbench's section writer)."""
    saved = vmbench.DOC
    vmbench.DOC = ROUTE_DOC
    try:
        vmbench.write_section("itmroute_bench", "Measured (bench/itmroute.py)", body)
    finally:
        vmbench.DOC = saved


def host(args: argparse.Namespace) -> int:
    """Boot each kernel asked for, run the guest half, print (and write) the tables."""
    chosen = vmbench.kernels(args.kernel)
    if not chosen:
        return vmbench.fail(f"no kernel {args.kernel!r} in kernels.txt")
    out = []
    for k in chosen:
        try:
            doc = vmbench.run_in_vm(
                k,
                "itmroute",
                f"--iterations {args.iterations} --ron-cuts {args.ron_cuts}"
                f" --flap-seconds {args.flap_seconds}",
                timeout=3600,
            )
        except RuntimeError as err:
            return vmbench.fail(str(err))
        out.append(tables(doc))
        print(out[-1] + "\n", flush=True)
    if args.write:
        write_doc(
            [
                f"Command: `python -m bench.itmroute --kernel {args.kernel} --iterations"
                f" {args.iterations} --write` — run {vmbench.today()} in a VM (QEMU TCG,"
                f" 2 vCPUs, {vmbench.cpu()}), every daemon in threads of one Python process.",
                "",
                *[t + "\n" for t in out],
            ]
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = vmbench.parser("bench.itmroute", __doc__ or "", 20, 1)
    parser.add_argument("--ron-cuts", type=cliargs.positive, default=4)
    parser.add_argument("--flap-seconds", type=cliargs.seconds, default=120.0)
    args = parser.parse_args(argv)
    if args.guest:
        return guest(args.out, args.iterations, args.ron_cuts, args.flap_seconds)
    return host(args)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.itmroute"))
