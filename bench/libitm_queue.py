"""Benchmark: libitm's nfqueue path against python-netfilterqueue and C libnetfilter_queue.

    sudo .venv/bin/python -m bench.libitm_queue [--quick] [--write] [--profile]

Topology (created here, removed on exit, also on failure and Ctrl-C)::

    [ itmq-T-src ] s0 ──── m0 [ itmq-T-mid ] m1 ──── d0 [ itmq-T-dst ]
     10.R.1.1           10.R.1.2      10.R.2.1          10.R.2.2
     udp_blast (CPU 0)  consumer on CPU 1;              udp_sink (CPU 0): AF_PACKET
                        mangle FORWARD: UDP to PORT     on d0; raw PREROUTING drops
                        -> NFQUEUE                      the packets after it

Consumers (each accept-all, and rewriting the TOS byte to 0x28):
libitm's per-packet callback API (class_func + process_func, ``pkt.tos``
setter), python-netfilterqueue 1.1.0 (``accept()``; ``set_payload`` with a
header checksum fix), and bench/nfq_c/nfq_consumer.c on libnetfilter_queue with
a verdict per packet and with batched verdicts (nfq_set_verdict_batch).

(a) drain: the consumer binds its queue and is stopped (SIGSTOP); N 64-byte
    UDP packets are queued; SIGCONT; the time until the queue is empty
    (/proc/net/netfilter/nfnetlink_queue queue_total, polled every 0.5 ms from
    CPU 0) gives the service rate on one core.
(b) end to end: the sender sends for D seconds at full rate; the sink counts
    what reaches d0 (packets, valid checksums, the new TOS) between its first
    and last packet; the no-queue baseline is the same path without the rule.
    The drain also records the consumer's CPU time (/proc/PID/schedstat), so
    packets per CPU-second are reported next to packets per second: on a
    machine whose cores are shared with other work the former is the stable one.
    It also splits that time between user space and the kernel (/proc/PID/stat),
    which says whether a consumer's own code or the kernel's work bounds it.
Queues: maxlen 4096 (2N for the drain), fail-open off for every consumer, so
that overload shows in the counters: queue_dropped, user_dropped (netlink
unicast failed) and the netlink socket's Drops (/proc/net/netlink: the
overflows that ENOBUFS reports).

Consumers are interleaved (the order rotates each repeat); each figure is the
median of the repeats with its min-max, and ratios are taken against
netfilterqueue of the same repeat.  --quick: N=20000, D=2 s, 3 repeats, about
2 minutes; default: N=50000, D=4 s, 5 repeats, about 6-7 minutes.  --write puts the
table into docs/benchmarks.md, the JSON into docs/data/libitm_queue.json and
the plot into docs/img/libitm_queue.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import random
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cliargs, entry, vmbench
from itmlab import Lab, sh, stop

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
JSON_OUT = ROOT / "docs" / "data" / "libitm_queue.json"
PNG_OUT = ROOT / "docs" / "img" / "libitm_queue.png"
BEGIN, END = "<!-- libitm_queue:begin -->", "<!-- libitm_queue:end -->"
PY = sys.executable
PORT = 5009
QUEUE = 4200
NEW_TOS = 0x28
CONSUMER_CPU = "1"
OTHER_CPU = "0"
C_SOURCES = ("nfq_consumer", "udp_blast", "udp_sink")


@dataclass(frozen=True)
class Consumer:
    """One configuration measured."""

    name: str
    impl: str  # libitm | libitm-kernel | netfilterqueue | c | c-batch
    mode: str  # accept | tos

    def command(self, maxlen: int, rcvbuf: int, profile: str = "") -> list[str]:
        """The consumer's command line."""
        if self.impl in ("libitm", "libitm-kernel", "netfilterqueue"):
            cmd = [PY, "-m", "bench.queue_consumers", self.impl, self.mode]
            cmd += ["--queue", str(QUEUE), "--port", str(PORT)]
            cmd += ["--maxlen", str(maxlen), "--rcvbuf", str(rcvbuf)]
            if profile:
                cmd += ["--profile", profile]
            return cmd
        cmd = [str(BUILD / "nfq_consumer"), "-q", str(QUEUE), "-m", self.mode]
        cmd += ["-l", str(maxlen), "-r", str(rcvbuf), "-T", str(NEW_TOS)]
        return [*cmd, "-b"] if self.impl == "c-batch" else cmd

    @property
    def installs_rule(self) -> bool:
        """libitm installs its own rule (or itm_mod queues); the others get one here."""
        return not self.impl.startswith("libitm")


CONSUMERS = tuple(
    Consumer(f"{label}, {mode}", impl, mode)
    for mode in ("accept", "tos")
    for impl, label in (
        ("libitm", "libitm"),
        ("netfilterqueue", "netfilterqueue"),
        ("c", "C per-packet"),
        ("c-batch", "C batched"),
    )
)
ANCHOR = "netfilterqueue"


def impl_list(text: str) -> set[str]:
    """``--only``: implementations of CONSUMERS, comma-separated (argparse's ``type``)."""
    known = list(dict.fromkeys(c.impl for c in CONSUMERS))
    unknown = [x for x in text.split(",") if x not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no implementation {', '.join(map(repr, unknown))} (they are: {', '.join(known)})"
        )
    return set(text.split(","))


#: libnetfilter_queue's header, from Debian's libnetfilter-queue-dev
NFQ_HEADER = Path("/usr/include/libnetfilter_queue/libnetfilter_queue.h")


def missing(consumers: tuple[Consumer, ...]) -> list[str]:
    """What the chosen consumers need that this machine lacks (empty: nothing);
    ``sudo make bench-libitm`` (scripts/setup.sh bench) installs all of it."""
    lack = []
    if importlib.util.find_spec("netfilterqueue") is None:
        lack.append("python-netfilterqueue (the anchor)")
    if shutil.which("gcc") is None:
        lack.append("gcc")
    if any(c.impl.startswith("c") for c in consumers) and not NFQ_HEADER.exists():
        lack.append(f"libnetfilter_queue's headers ({NFQ_HEADER})")
    return lack


def build(with_nfq: bool = True) -> None:
    """Compile bench/nfq_c/*.c into build/bench/ when missing or older than the source
    (the libnetfilter_queue consumer only ``with_nfq``)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    for name in C_SOURCES:
        if name == "nfq_consumer" and not with_nfq:
            continue
        src = ROOT / "bench" / "nfq_c" / f"{name}.c"
        out = BUILD / name
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        libs = ["-lnetfilter_queue", "-lnfnetlink"] if name == "nfq_consumer" else []
        sh("gcc", "-O2", "-Wall", "-Wextra", "-o", str(out), str(src), *libs)


class RoutedPath:
    """src -- mid -- dst over IPv4 on veth, mid forwarding (the module docstring's
    three namespaces, without the drain's extras); names start with ``prefix``."""

    def __init__(self, prefix: str = "itmq") -> None:
        tag = f"{random.getrandbits(20):05x}"
        self.src, self.mid, self.dst = (f"{prefix}-{tag}-{n}" for n in ("src", "mid", "dst"))
        r = random.randrange(100, 250)
        self.ip_src, self.ip_m0 = f"10.{r}.1.1", f"10.{r}.1.2"
        self.ip_m1, self.ip_dst = f"10.{r}.2.1", f"10.{r}.2.2"
        self.lab = Lab()

    def create(self) -> None:
        """Namespaces, veth pairs, addresses, routes, forwarding."""
        lab = self.lab
        for ns in (self.src, self.mid, self.dst):
            lab.ns(ns, exact=True)
        left = ("s0", f"{self.ip_src}/24", "m0", f"{self.ip_m0}/24")
        right = ("m1", f"{self.ip_m1}/24", "d0", f"{self.ip_dst}/24")
        lab.via_router(self.src, self.mid, self.dst, left, right)
        lab.create()

    def resolve(self) -> None:
        """Resolve the neighbours before timing anything."""
        sh("ip", "netns", "exec", self.src, "ping", "-c1", "-W2", self.ip_dst, check=False)

    def destroy(self) -> None:
        """Delete the namespaces (their links, rules and queues go with them)."""
        self.lab.destroy()


class Topology(RoutedPath):
    """The three namespaces of the module docstring."""

    def create(self) -> None:
        """Namespaces, veth pairs, addresses, routes, forwarding, the sink's drop rule."""
        super().create()
        # checksums computed by the sender's stack, so the sink can verify every packet
        sh("ip", "netns", "exec", self.src, "ethtool", "-K", "s0", "tx", "off")
        sh(
            *self.ipt_cmd(self.dst),
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "--dport",
            str(PORT),
            "-j",
            "DROP",
        )
        self.resolve()

    @staticmethod
    def ipt_cmd(ns: str) -> list[str]:
        """iptables in namespace ``ns``."""
        return ["ip", "netns", "exec", ns, "iptables", "-w"]

    def queue_rule(self, add: bool) -> None:
        """The NFQUEUE rule for the non-libitm consumers, in mid's mangle FORWARD."""
        op = "-A" if add else "-D"
        sh(
            *self.ipt_cmd(self.mid),
            "-t",
            "mangle",
            op,
            "FORWARD",
            "-p",
            "udp",
            "--dport",
            str(PORT),
            "-j",
            "NFQUEUE",
            "--queue-num",
            str(QUEUE),
            check=add,
        )

    def exec(self, ns: str, cpu: str, *cmd: str) -> list[str]:
        """A command line running ``cmd`` in ``ns`` pinned to ``cpu``."""
        return ["ip", "netns", "exec", ns, "taskset", "-c", cpu, *cmd]


@dataclass
class QueueStat:
    """A line of /proc/net/netfilter/nfnetlink_queue plus the socket's netlink Drops."""

    total: int = 0
    queue_dropped: int = 0
    user_dropped: int = 0
    sock_drops: int = 0


def user_system_s(pid: int) -> tuple[float, float]:
    """Seconds process ``pid`` has spent in user space and in the kernel
    (/proc/PID/stat utime and stime, in clock ticks: 10 ms here, so 0.2 µs a
    packet over a 50 000-packet drain)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` has run on a CPU (/proc/PID/schedstat), system calls
    and the softirq work done in them included."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def read_stats(pid: int, queue: int) -> QueueStat | None:
    """The queue's counters as seen from the namespace of process ``pid``."""
    try:
        lines = Path(f"/proc/{pid}/net/netfilter/nfnetlink_queue").read_text().splitlines()
    except OSError:
        return None
    for ln in lines:
        f = ln.split()
        if int(f[0]) != queue:
            continue
        st = QueueStat(int(f[2]), int(f[5]), int(f[6]))
        portid = f[1]
        with contextlib.suppress(OSError):
            for nl in Path(f"/proc/{pid}/net/netlink").read_text().splitlines()[1:]:
                g = nl.split()
                if g[1] == "12" and g[2] == portid:
                    st.sock_drops = int(g[8])
        return st
    return None


class Running:
    """A consumer process in the middle namespace."""

    def __init__(self, topo: Topology, c: Consumer, maxlen: int, rcvbuf: int, profile: str = ""):
        self.topo = topo
        self.c = c
        self.rule = False
        self.p = subprocess.Popen(
            topo.exec(topo.mid, CONSUMER_CPU, *c.command(maxlen, rcvbuf, profile)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        line = _readline(self.p, 20.0)
        if not line.startswith("READY"):
            err = self.stop_raw()
            raise RuntimeError(f"{c.name}: consumer did not start: {line!r} {err}")
        parts = line.split()
        self.queue = int(parts[1]) if len(parts) > 1 else QUEUE
        if c.installs_rule:
            topo.queue_rule(True)
            self.rule = True

    def stats(self) -> QueueStat:
        """The queue's counters now."""
        return read_stats(self.p.pid, self.queue) or QueueStat()

    def stop(self) -> dict[str, Any]:
        """Remove the rule, SIGTERM the consumer, return its JSON counters."""
        if self.rule:
            self.topo.queue_rule(False)
            self.rule = False
        out, err = stop(self.p, timeout=20, cont=True)
        for ln in reversed(out.splitlines()):
            if ln.startswith("{"):
                return dict(json.loads(ln))
        raise RuntimeError(f"{self.c.name}: no counters from the consumer: {err.strip()[-500:]}")

    def stop_raw(self) -> str:
        """Kill without collecting counters (start-up failure)."""
        with contextlib.suppress(ProcessLookupError):
            self.p.kill()
        _, err = self.p.communicate()
        return err.strip()[-800:]


def _readline(p: subprocess.Popen[str], timeout: float) -> str:
    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        return ""
    return p.stdout.readline().strip()


def drain(topo: Topology, c: Consumer, n: int, profile: str = "") -> dict[str, Any]:
    """Queue ``n`` packets while the consumer is stopped, then time the drain."""
    run = Running(topo, c, maxlen=2 * n, rcvbuf=max(64 << 20, n * 2048), profile=profile)
    try:
        os.kill(run.p.pid, signal.SIGSTOP)
        sender = sh(
            *topo.exec(topo.src, OTHER_CPU, str(BUILD / "udp_blast")),
            topo.ip_dst,
            str(PORT),
            "-n",
            str(n),
            timeout=60,
        )
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 0.1:
            t = run.stats().total
            if t != last:
                last, stable_since = t, time.monotonic()
            time.sleep(0.005)
        before = run.stats()
        queued = before.total
        cpu0 = cpu_ns(run.p.pid)
        user0, sys0 = user_system_s(run.p.pid)
        t0 = time.perf_counter()
        os.kill(run.p.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while run.stats().total > 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
        dt = time.perf_counter() - t0
        cpu = (cpu_ns(run.p.pid) - cpu0) / 1e9
        user1, sys1 = user_system_s(run.p.pid)
        after = run.stats()
    finally:
        counters = run.stop()
    return {
        "queued": queued,
        "sent": json.loads(sender)["sent"],
        "seconds": dt,
        "pps": queued / dt if dt > 0 else 0.0,
        "cpu_seconds": cpu,
        "cpu_pps": queued / cpu if cpu > 0 else 0.0,
        "user_us": (user1 - user0) * 1e6 / queued if queued else 0.0,
        "system_us": (sys1 - sys0) * 1e6 / queued if queued else 0.0,
        "queue_dropped": after.queue_dropped,
        "user_dropped": after.user_dropped,
        "sock_drops": after.sock_drops,
        "consumer": counters,
    }


def end_to_end(topo: Topology, c: Consumer | None, seconds: float) -> dict[str, Any]:
    """Full-rate sender through mid (queue ``c``, or no queue) to the sink."""
    run = Running(topo, c, maxlen=4096, rcvbuf=16 << 20) if c else None
    try:
        tos = ["-T", str(NEW_TOS)] if c and c.mode == "tos" else []
        sink = subprocess.Popen(
            topo.exec(
                topo.dst,
                OTHER_CPU,
                str(BUILD / "udp_sink"),
                *tos,
                "d0",
                str(PORT),
                str(seconds + 1.0),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if _readline(sink, 10) != "READY":
            sink.kill()
            raise RuntimeError(f"sink did not start: {sink.communicate()[1]}")
        sender = sh(
            *topo.exec(topo.src, OTHER_CPU, str(BUILD / "udp_blast")),
            topo.ip_dst,
            str(PORT),
            "-d",
            str(seconds),
            timeout=seconds + 30,
        )
        out, _ = sink.communicate(timeout=seconds + 30)
        st = run.stats() if run else QueueStat()
    finally:
        counters = run.stop() if run else {}
    s = json.loads(out.strip().splitlines()[-1])
    snd = json.loads(sender)
    ok = s["tos_ok"] / s["count"] if s["count"] else 0.0
    return {
        "sent_pps": snd["pps"],
        "sent": snd["sent"],
        "received": s["count"],
        "valid": s["valid"],
        "tos_ok": s["tos_ok"],
        "pps": s["pps"],
        "good_pps": s["pps"] * ok,
        "queue_dropped": st.queue_dropped,
        "user_dropped": st.user_dropped,
        "sock_drops": st.sock_drops,
        "consumer": counters,
    }


@dataclass
class Results:
    """Every sample, by consumer name."""

    meta: dict[str, Any]
    drain: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    e2e: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def run_all(
    n: int,
    seconds: float,
    repeats: int,
    consumers: tuple[Consumer, ...],
    log: Any,
    e2e: bool = True,
) -> Results:
    """Interleaved repeats of every measurement."""
    topo = Topology()
    res = Results(meta={})
    try:
        topo.create()
        for r in range(repeats):
            order = list(consumers[r % len(consumers) :] + consumers[: r % len(consumers)])
            for c in order:
                d = drain(topo, c, n)
                res.drain.setdefault(c.name, []).append(d)
                print(
                    f"[{r + 1}/{repeats}] drain {c.name:28s} {d['pps'] / 1e3:7.1f} kpps "
                    f"({d['cpu_pps'] / 1e3:.1f} per CPU-second) "
                    f"(queued {d['queued']}, drops {d['queue_dropped']}/{d['user_dropped']}"
                    f"/{d['sock_drops']})",
                    file=log,
                    flush=True,
                )
            for c2 in [None, *order] if e2e else []:
                e = end_to_end(topo, c2, seconds)
                name = c2.name if c2 else "no queue"
                res.e2e.setdefault(name, []).append(e)
                print(
                    f"[{r + 1}/{repeats}] e2e   {name:28s} {e['pps'] / 1e3:7.1f} kpps at the sink "
                    f"(sent {e['sent_pps'] / 1e3:.0f} kpps, good {e['good_pps'] / 1e3:.1f}, "
                    f"drops {e['queue_dropped']}/{e['user_dropped']}/{e['sock_drops']})",
                    file=log,
                    flush=True,
                )
    finally:
        topo.destroy()
    return res


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def _ratios(samples: dict[str, list[dict[str, Any]]], name: str, key: str) -> list[float]:
    """Per-repeat ratio of ``name`` to netfilterqueue of the same mode."""
    mode = name.split(", ")[-1]
    anchor = samples.get(f"{ANCHOR}, {mode}", [])
    return [
        a[key] / b[key] for a, b in zip(samples.get(name, []), anchor, strict=False) if b[key] > 0
    ]


def summarize(res: Results) -> dict[str, Any]:
    """Medians, spreads and ratios per consumer."""
    rows: dict[str, Any] = {}
    names = [c.name for c in CONSUMERS if c.name in res.drain] + ["no queue"]
    for name in names:
        d = res.drain.get(name, [])
        e = res.e2e.get(name, [])
        dp = [x["pps"] for x in d]
        cp = [x["cpu_pps"] for x in d]
        ep = [x["good_pps"] for x in e]
        cr = _ratios(res.drain, name, "cpu_pps")
        er = _ratios(res.e2e, name, "good_pps")
        rows[name] = {
            "cpu_kpps": _med(cp) / 1e3,
            "cpu_min": min(cp, default=0) / 1e3,
            "cpu_max": max(cp, default=0) / 1e3,
            "cpu_us_per_packet": 1e6 / _med(cp) if cp and _med(cp) > 0 else None,
            "user_us_per_packet": _med([x.get("user_us", 0.0) for x in d]) if d else None,
            "system_us_per_packet": _med([x.get("system_us", 0.0) for x in d]) if d else None,
            "cpu_ratio": _med(cr) if d else None,
            "cpu_ratio_min": min(cr, default=None),
            "cpu_ratio_max": max(cr, default=None),
            "drain_kpps": _med(dp) / 1e3,
            "drain_min": min(dp, default=0) / 1e3,
            "drain_max": max(dp, default=0) / 1e3,
            "drain_ratio": _med(_ratios(res.drain, name, "pps")) if d else None,
            "drain_ratio_min": min(_ratios(res.drain, name, "pps"), default=None),
            "drain_ratio_max": max(_ratios(res.drain, name, "pps"), default=None),
            "drain_drops": sum(x["queue_dropped"] + x["user_dropped"] + x["sock_drops"] for x in d),
            "e2e_kpps": _med(ep) / 1e3,
            "e2e_min": min(ep, default=0) / 1e3,
            "e2e_max": max(ep, default=0) / 1e3,
            "e2e_ratio": _med(er) if name != "no queue" and er else None,
            "e2e_ratio_min": min(er, default=None),
            "e2e_ratio_max": max(er, default=None),
            "e2e_sent_kpps": _med([x["sent_pps"] for x in e]) / 1e3,
            "e2e_valid_pct": 100.0
            * sum(x["tos_ok"] for x in e)
            / max(1, sum(x["received"] for x in e)),
            "queue_dropped": _med([x["queue_dropped"] for x in e]),
            "user_dropped": _med([x["user_dropped"] for x in e]),
            "sock_drops": sum(x["sock_drops"] for x in e),
        }
    return rows


def _fmt_ratio(v: float | None, lo: float | None, hi: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}x ({lo:.2f}-{hi:.2f})" if lo is not None and hi is not None else f"{v:.2f}x"


def table(rows: dict[str, Any]) -> str:
    """The markdown table."""
    out = [
        "| consumer | drain kpps | ratio | drain kpps per CPU-second | ratio "
        "| CPU µs/packet (user + kernel) "
        "| end-to-end kpps | ratio | on the wire ok | queue / user / socket drops (e2e) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if name == "no queue":
            drain = ratio = cpu = cratio = us = drops = "—"
        else:
            drain = f"{r['drain_kpps']:.1f} ({r['drain_min']:.1f}-{r['drain_max']:.1f})"
            ratio = _fmt_ratio(r["drain_ratio"], r["drain_ratio_min"], r["drain_ratio_max"])
            cpu = f"{r['cpu_kpps']:.1f} ({r['cpu_min']:.1f}-{r['cpu_max']:.1f})"
            cratio = _fmt_ratio(r["cpu_ratio"], r["cpu_ratio_min"], r["cpu_ratio_max"])
            us = f"{r['cpu_us_per_packet']:.1f}" if r["cpu_us_per_packet"] else "—"
            if r.get("user_us_per_packet") is not None:
                us += f" ({r['user_us_per_packet']:.1f} + {r['system_us_per_packet']:.1f})"
            drops = f"{r['queue_dropped']:.0f} / {r['user_dropped']:.0f} / {r['sock_drops']}"
        e2e = f"{r['e2e_kpps']:.1f} ({r['e2e_min']:.1f}-{r['e2e_max']:.1f})"
        er = _fmt_ratio(r["e2e_ratio"], r["e2e_ratio_min"], r["e2e_ratio_max"])
        out.append(
            f"| {name} | {drain} | {ratio} | {cpu} | {cratio} | {us} | {e2e} | {er} "
            f"| {r['e2e_valid_pct']:.1f}% | {drops} |"
        )
    return "\n".join(out)


def goals(rows: dict[str, Any]) -> list[str]:
    """The issue's goals, checked against this run."""
    la, lt = rows.get("libitm, accept"), rows.get("libitm, tos")
    out = []

    def met(v: float | None, goal: float) -> str:
        return "met" if v is not None and v >= goal else "NOT met"

    if la and lt:
        for r, m, goal in ((la, "accept-all", 1.8), (lt, "TOS rewrite", 1.35)):
            out.append(
                f"- drain, {m}: libitm {r['drain_ratio']:.2f}x netfilterqueue in packets per "
                f"second ({met(r['drain_ratio'], goal)}), {r['cpu_ratio']:.2f}x in packets per "
                f"CPU-second ({met(r['cpu_ratio'], goal)}); goal ≥ {goal:.2f}x"
            )
        sd = la["sock_drops"] + lt["sock_drops"] + la["drain_drops"] + lt["drain_drops"]
        out.append(
            f"- netlink socket overflows of libitm at saturation (every e2e run and drain): "
            f"{sd}: {'met' if sd == 0 else 'NOT met'}; goal 0"
        )
        for r, m in ((la, "accept-all"), (lt, "TOS rewrite")):
            v = r["e2e_ratio"]
            out.append(
                f"- end to end, {m}: libitm {v if v is not None else 0:.2f}x netfilterqueue: "
                f"{met(v, 1.0)}; goal ≥ 1.00x"
            )
    return out


def plot(rows: dict[str, Any], path: Path) -> None:
    """Bar chart of drain and end-to-end rates with min-max error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, axes = plt.subplots(1, 3, figsize=(19, 4.8))
    for ax, key, title in (
        (axes[0], "drain", "drain, packets per second (one core)"),
        (axes[1], "cpu", "drain, packets per consumer CPU-second"),
        (axes[2], "e2e", "end to end at the sink (packets as intended)"),
    ):
        ns = [n for n in names if key == "e2e" or n != "no queue"]
        vals = [rows[n][f"{key}_kpps"] for n in ns]
        lo = [rows[n][f"{key}_kpps"] - rows[n][f"{key}_min"] for n in ns]
        hi = [rows[n][f"{key}_max"] - rows[n][f"{key}_kpps"] for n in ns]
        colors = [
            "tab:blue"
            if n.startswith("libitm")
            else "tab:orange"
            if n.startswith("netfilterqueue")
            else "tab:gray"
            if n == "no queue"
            else "tab:green"
            for n in ns
        ]
        ax.barh(range(len(ns)), vals, xerr=[lo, hi], color=colors)
        ax.set_yticks(range(len(ns)), ns)
        ax.invert_yaxis()
        ax.set_xlabel("kpps")
        ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> dict[str, str]:
    """CPU model, core count, kernel."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": vmbench.loadavg(),
    }


def write_doc(rows: dict[str, Any], meta: dict[str, Any]) -> None:
    """Replace this benchmark's section of docs/benchmarks.md."""
    m = meta["machine"]
    body = "\n".join(
        [
            BEGIN,
            "## libitm's nfqueue path against python-netfilterqueue and C libnetfilter_queue",
            "",
            f"Command: `{meta['command']}` — run {meta['date']}, {meta['wall_seconds']:.0f} s; "
            f"{m['cores']} cores ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, "
            f"load average at the start {m['loadavg']}. Drain: {meta['n']} packets queued per "
            f"run; end to end: {meta['seconds']} s at full sender rate; {meta['repeats']} "
            "interleaved repeats, median (min-max); ratios against netfilterqueue of the "
            'same repeat and mode. "On the wire ok": packets at the sink with valid IPv4 '
            "and UDP checksums (and the new TOS 0x28 for the rewriting consumers), of all "
            'received. End-to-end kpps counts only those. "Per CPU-second": packets '
            "drained per second of CPU time the consumer process used (its "
            "/proc/PID/schedstat; the kernel's work in its system calls, reinjection "
            "included) — robust against other load sharing the core, which the plain "
            "packets-per-second figure is not.",
            "",
            table(rows),
            "",
            "Goals (issue #4):",
            "",
            *goals(rows),
            "",
            "![drain and end-to-end rates](img/libitm_queue.png)",
            "",
            END,
        ]
    )
    text = DOC.read_text()
    if BEGIN in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + body + post
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    DOC.write_text(text)


def profile_drain(n: int, log: Any) -> dict[str, str]:
    """One cProfile'd libitm drain per mode; the top functions by own time."""
    import pstats
    import tempfile

    out: dict[str, str] = {}
    topo = Topology()
    try:
        topo.create()
        for mode in ("accept", "tos"):
            with tempfile.TemporaryDirectory() as td:
                path = str(Path(td) / "prof")
                d = drain(topo, Consumer(f"libitm, {mode}", "libitm", mode), n, profile=path)
                import io

                s = io.StringIO()
                pstats.Stats(path, stream=s).sort_stats("tottime").print_stats(14)
                out[mode] = s.getvalue()
                print(
                    f"profile, libitm {mode} ({d['pps'] / 1e3:.1f} kpps under cProfile):", file=log
                )
                print(out[mode], file=log, flush=True)
    finally:
        topo.destroy()
    return out


def _on_term(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = cliargs.parser("bench.libitm_queue", __doc__)
    ap.add_argument("--quick", action="store_true", help="N=20000, D=2 s, 3 repeats (~2 min)")
    ap.add_argument("-n", type=cliargs.positive, default=None, help="packets queued per drain run")
    ap.add_argument("--seconds", type=cliargs.seconds, default=None, help="end-to-end send time")
    ap.add_argument("--repeats", type=cliargs.positive, default=None)
    ap.add_argument(
        "--only",
        type=impl_list,
        default=None,
        help="comma-separated impls (libitm,netfilterqueue,c,c-batch)",
    )
    ap.add_argument("--write", action="store_true", help="update docs/ (table, JSON, plot)")
    ap.add_argument("--drain-only", action="store_true", help="skip the end-to-end runs")
    ap.add_argument("--profile", action="store_true", help="also profile libitm's drain")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.libitm_queue needs root (namespaces, nfqueue)", file=sys.stderr)
        return 1
    n = a.n or (20000 if a.quick else 50000)
    seconds = a.seconds or (2.0 if a.quick else 4.0)
    repeats = a.repeats or (3 if a.quick else 5)
    only: set[str] | None = a.only
    consumers = tuple(c for c in CONSUMERS if only is None or c.impl in only)
    if only and ANCHOR not in only:
        consumers = tuple(c for c in CONSUMERS if c.impl in only | {ANCHOR})
    lack = missing(consumers)
    if lack:
        print(
            f"bench.libitm_queue: not installed here: {', '.join(lack)}; "
            "`sudo make bench-libitm` installs them (scripts/setup.sh bench)",
            file=sys.stderr,
        )
        return 1
    signal.signal(signal.SIGTERM, _on_term)
    os.sched_setaffinity(0, {int(OTHER_CPU)})
    build(any(c.impl.startswith("c") for c in consumers))
    start = time.monotonic()
    meta: dict[str, Any] = {
        "command": "sudo .venv/bin/python -m bench.libitm_queue "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "n": n,
        "seconds": seconds,
        "repeats": repeats,
    }
    res = run_all(n, seconds, repeats, consumers, sys.stderr, e2e=not a.drain_only)
    prof = profile_drain(n, sys.stderr) if a.profile else {}
    meta["wall_seconds"] = time.monotonic() - start
    rows = summarize(res)
    print(table(rows))
    print("\n".join(goals(rows)))
    if a.write:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "summary": rows,
                    "drain": res.drain,
                    "e2e": res.e2e,
                    "profile": prof,
                },
                indent=1,
            )
            + "\n"
        )
        plot(rows, PNG_OUT)
        write_doc(rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.libitm_queue"))
