"""Benchmark: a bulk TCP stream through a TOS-rewriting application, GSO on.

    sudo .venv/bin/python -m bench.libitm_stream [--seconds S] [--repeats R] [--json FILE]
                                                 [--write]

Topology (created here, removed on exit, also on failure)::

    [ itms-T-src ] s0 ──── m0 [ itms-T-mid ] m1 ──── d0 [ itms-T-dst ]
      iperf3 -c                 the ITM: forwards,          iperf3 -s
                                a consumer rewrites TOS

veth with its default offloads (TSO/GSO on), so the stream leaves the sender in
aggregates of up to 64 KiB. Cases, interleaved (the order rotates each repeat):

* ``no queue``: the path alone;
* ``libitm, gso``: bench.queue_consumers' libitm consumer, one worker, TOS 0x28
  on every packet of the stream (interest TCP to the iperf3 port, at
  ip_forward), the nfqueue backend's ``gso`` option: whole aggregates reach it;
* ``libitm``: the same without ``gso`` (the kernel segments before queueing);
* ``netfilterqueue``: python-netfilterqueue 1.1.0 rewriting TOS behind the
  bench's NFQUEUE rule (when it is installed: ``scripts/setup.sh bench``).

Queues are fail-closed, so a slow consumer slows the stream instead of letting
packets by. Throughput: what the iperf3 receiver got over S seconds. Each
figure is the median of the repeats with its min-max; ratios are against ``no
queue`` of the same repeat. ``--write`` replaces this benchmark's section of
docs/benchmarks.md (the table, the run's record and #18's goal: ``libitm, gso``
at ≥ 50% of ``no queue``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cliargs, entry, vmbench
from bench.libitm_queue import RoutedPath, cpu_ns, user_system_s
from itmlab import run, stop

PORT = 5201
QUEUE = 4321
PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
#: the goal of #18: the stream through libitm with gso at least this share of no queue
GOAL = 0.5
SECTION = "libitm_stream"
TITLE = "libitm on a bulk TCP stream with GSO (nfqueue backend)"


class StreamPath(RoutedPath):
    """The module docstring's topology, with commands run in its namespaces."""

    def run_in(self, ns: str, *cmd: str, check: bool = True) -> str:
        """Run ``cmd`` in ``ns``; its stdout."""
        return run("ip", "netns", "exec", ns, *cmd, check=check, timeout=120).stdout

    def popen(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        """Start ``cmd`` in ``ns`` (stdout piped, text)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )


def start_app(path: StreamPath, *cmd: str, timeout: float = 20) -> subprocess.Popen[str]:
    """Start an application in ``path.mid`` and wait for its ``READY`` line."""
    p = path.popen(path.mid, *cmd)
    assert p.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if line.startswith("READY"):
            return p
        if not line and p.poll() is not None:
            break
    stop_app(p)
    err = p.stderr.read() if p.stderr else ""
    raise RuntimeError(f"{' '.join(cmd)} did not start: {err.strip()[-500:]}")


def cpu_times(pid: int) -> dict[str, float]:
    """Seconds process ``pid`` has run: ``cpu_s``, and its ``user_s`` / ``kernel_s``."""
    user, kernel = user_system_s(pid)
    return {"cpu_s": cpu_ns(pid) / 1e9, "user_s": user, "kernel_s": kernel}


def stop_app(p: subprocess.Popen[str], since: dict[str, float] | None = None) -> dict[str, Any]:
    """SIGTERM, wait; the JSON line it printed last ({} if none), with the CPU time
    the process used since ``since`` (:func:`cpu_times`; None: since it started)."""
    now = cpu_times(p.pid)
    cpu = {k: v - (since or {}).get(k, 0.0) for k, v in now.items()}
    out, _ = stop(p, timeout=20)
    for line in reversed(out.splitlines()):
        with contextlib.suppress(ValueError):
            got = json.loads(line)
            if isinstance(got, dict):
                return {**got, **cpu}
    return cpu


def iperf(path: StreamPath, seconds: float, port: int = PORT) -> float:
    """A TCP stream src -> dst for ``seconds``: the receiver's Mbit/s."""
    srv = path.popen(path.dst, "iperf3", "-s", "-1", "-p", str(port))
    try:
        for _ in range(50):  # until the server listens
            if f":{port} " in path.run_in(path.dst, "ss", "-ltn"):
                break
            time.sleep(0.05)
        out = path.run_in(
            path.src, "iperf3", "-c", path.ip_dst, "-p", str(port), "-t", str(seconds), "-J"
        )
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            srv.wait(5)
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    got = json.loads(out)
    return float(got["end"]["sum_received"]["bits_per_second"]) / 1e6


def queue_rule(path: StreamPath, add: bool) -> None:
    """The NFQUEUE rule of the netfilterqueue case, in mid's mangle FORWARD."""
    path.run_in(
        path.mid,
        "iptables", "-w", "-t", "mangle", "-A" if add else "-D", "FORWARD",
        "-p", "tcp", "--dport", str(PORT), "-j", "NFQUEUE", "--queue-num", str(QUEUE),
        check=add,
    )  # fmt: skip


CONSUMER = (PY, "-m", "bench.queue_consumers")
CASES: dict[str, tuple[str, ...]] = {
    "no queue": (),
    "libitm, gso": (*CONSUMER, "libitm", "tos", "--proto", "tcp", "--gso"),
    "libitm": (*CONSUMER, "libitm", "tos", "--proto", "tcp"),
    "netfilterqueue": (*CONSUMER, "netfilterqueue", "tos"),
}
COMMON = ("--queue", str(QUEUE), "--port", str(PORT), "--maxlen", "4096", "--rcvbuf", "8388608")


def one(path: StreamPath, case: str, seconds: float) -> dict[str, Any]:
    """One run of ``case``: Mbit/s and the consumer's counters."""
    cmd = CASES[case]
    if not cmd:
        return {"mbps": iperf(path, seconds)}
    nfq = case == "netfilterqueue"
    if nfq:
        queue_rule(path, True)
    app = start_app(path, *cmd, *COMMON)
    ready = cpu_times(app.pid)  # the stream's CPU time, not the start's
    try:
        mbps = iperf(path, seconds)
    finally:
        counts = stop_app(app, ready)
        if nfq:
            queue_rule(path, False)
    return {"mbps": mbps, **counts}


def _per_packet(r: dict[str, Any], key: str) -> float:
    """µs of the consumer's ``key`` time per packet it saw (0 without a consumer)."""
    n = r.get("packets", 0)
    return 1e6 * float(r.get(key, 0.0)) / n if n else 0.0


def summarize(samples: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per case: median (min-max) Mbit/s and ratio to no queue of the same repeat."""
    rows = []
    base = [s["mbps"] for s in samples["no queue"]]
    for case, runs in samples.items():
        mbps = [r["mbps"] for r in runs]
        ratios = [m / b for m, b in zip(mbps, base, strict=True) if b > 0]
        rows.append(
            {
                "case": case,
                "mbps": statistics.median(mbps),
                "mbps_range": (min(mbps), max(mbps)),
                "ratio": statistics.median(ratios) if ratios else None,
                "ratio_range": (min(ratios), max(ratios)) if ratios else None,
                "packets": statistics.median(r.get("packets", 0) for r in runs),
                "modified": statistics.median(r.get("modified", 0) for r in runs),
                "cpu_us": statistics.median(_per_packet(r, "cpu_s") for r in runs),
                "user_us": statistics.median(_per_packet(r, "user_s") for r in runs),
                "kernel_us": statistics.median(_per_packet(r, "kernel_s") for r in runs),
            }
        )
    return rows


def md_table(head: list[str], body: list[list[str]]) -> str:
    """A markdown table: the first column left-aligned, the others right."""
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in body)])


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    body = []
    for r in rows:
        lo, hi = r["mbps_range"]
        rt = r["ratio_range"]
        body.append(
            [
                r["case"],
                f"{r['mbps']:.0f} ({lo:.0f}-{hi:.0f})",
                f"{r['ratio']:.0%} ({rt[0]:.0%}-{rt[1]:.0%})" if rt else "—",
                f"{r['packets']:.0f}",
                f"{r['modified']:.0f}",
                f"{r['cpu_us']:.1f} ({r['user_us']:.1f} + {r['kernel_us']:.1f})",
            ]
        )
    head = ["case", "Mbit/s, median (min-max)", "÷ no queue (min-max)", "packets seen"]
    return md_table([*head, "modified", "consumer CPU µs per packet (user + kernel)"], body)


def commit() -> str:
    """The checkout's commit, short, marked when bench/ or libitm/ differ from it."""
    # safe.directory: under sudo, root reads a checkout that another user owns
    git = ("git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT))
    head = run(*git, "rev-parse", "--short", "HEAD", check=False)
    if head.returncode:
        return "unknown"
    changed = run(*git, "diff", "--quiet", "HEAD", "--", "bench", "libitm", check=False)
    return head.stdout.strip() + (" with local changes" if changed.returncode else "")


@dataclass(frozen=True)
class RunRecord:
    """How a run was made, for its section of docs/benchmarks.md."""

    command: str
    date: str
    commit: str
    cpu: str
    load_before: str
    load_after: str

    @classmethod
    def now(cls, command: str, load_before: str) -> RunRecord:
        """The record of a run that ends now (date, commit, CPU and load read here)."""
        return cls(
            command, vmbench.today(), commit(), vmbench.cpu(), load_before, vmbench.loadavg()
        )

    def line(self) -> str:
        """One line: command, date, commit, CPU, load average before and after."""
        return (
            f"Command: `{self.command}`, {self.date}, commit {self.commit}, {self.cpu}; "
            f"load average {self.load_before} before, {self.load_after} after (other work "
            "on the machine shares its cores)."
        )

    def body(self, intro: str, table: str, goal: str) -> list[str]:
        """A section's body: what the benchmark does, this record, the table, the goal."""
        return [intro, "", self.line(), "", table, "", goal, ""]


def verdict(ok: bool) -> str:
    """A goal's verdict, in bold."""
    return "**met**" if ok else "**NOT met**"


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that made a run: ``module`` with ``argv`` (None: this process's)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["sudo .venv/bin/python -m", module, *args])


def section(rows: list[dict[str, Any]], record: RunRecord) -> list[str]:
    """The body of this benchmark's section of docs/benchmarks.md (rows: :func:`summarize`)."""
    by_case = {r["case"]: r for r in rows}
    gso = by_case.get("libitm, gso")
    if gso is None or gso["ratio"] is None:
        goal = f"Goal (#18): ≥ {GOAL:.0%} of the no-queue path: {verdict(False)} (not measured)."
    else:
        others = {"netfilterqueue": "python-netfilterqueue", "libitm": "libitm without GSO"}
        beside = [
            f"{gso['mbps'] / r['mbps']:.1f}x {name}"
            for case, name in others.items()
            if (r := by_case.get(case)) and r["mbps"] > 0
        ]
        goal = (
            f"Goal (#18): libitm with gso ≥ {GOAL:.0%} of the no-queue path: "
            f"{verdict(gso['ratio'] >= GOAL)} ({gso['ratio']:.0%}, median of the repeats' "
            f"ratios{''.join(', ' + b for b in beside)})."
        )
    return record.body(
        "An iperf3 TCP stream src → mid → dst over veth with its default offloads (TSO/GSO "
        "on), mid forwarding; a consumer in mid rewrites the TOS byte of every packet of the "
        "stream (fail-closed queue: a slow consumer slows the stream). The same path with no "
        "queue is the anchor, in the same run, the cases interleaved; ratios are against it "
        "in the same repeat (bench/libitm_stream.py says how).",
        table(rows),
        goal,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = parser("bench.libitm_stream", __doc__)
    ap.add_argument("--seconds", type=cliargs.seconds, default=5.0, help="iperf3 time per run")
    a = ap.parse_args(argv)
    if not ready("bench.libitm_stream"):
        return 2
    cases = list(CASES)
    if importlib.util.find_spec("netfilterqueue") is None:
        print("netfilterqueue not installed: its case is left out", file=sys.stderr)
        cases.remove("netfilterqueue")
    cmd = command_line("bench.libitm_stream", argv)

    def write(samples: dict[str, list[dict[str, Any]]], load: str) -> None:
        vmbench.write_section(SECTION, TITLE, section(summarize(samples), RunRecord.now(cmd, load)))

    return interleave(
        "itms",
        cases,
        a.repeats,
        lambda path, case: one(path, case, a.seconds),
        lambda samples: table(summarize(samples)),
        a.json,
        write if a.write else None,
    )


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The options both path benchmarks (``python -m module``) take: ``--repeats``,
    ``--json``, ``--write``."""
    ap = cliargs.parser(module, doc)
    ap.add_argument("--repeats", type=cliargs.positive, default=3)
    ap.add_argument("--json", type=Path, help="write the samples here")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    return ap


def ready(name: str) -> bool:
    """False (and a one-line error) when not root or iperf3 is not installed."""
    if os.geteuid() != 0:
        print(f"{name}: needs root (namespaces, nfnetlink)", file=sys.stderr)
        return False
    if shutil.which("iperf3") is None:
        print(f"{name}: iperf3 is not installed (apt-get install iperf3)", file=sys.stderr)
        return False
    return True


def interleave(
    prefix: str,
    cases: list[str],
    repeats: int,
    one_run: Callable[[StreamPath, str], dict[str, Any]],
    report: Callable[[dict[str, list[dict[str, Any]]]], str],
    json_out: Path | None,
    write: Callable[[dict[str, list[dict[str, Any]]], str], None] | None = None,
) -> int:
    """Run every case ``repeats`` times on one :class:`StreamPath`, the order rotating
    each repeat; print ``report(samples)`` and the load average before and after;
    write the samples to ``json_out``; then ``write(samples, load average before)``.
    Samples' ``rtts`` are left out of the log."""
    load = [Path("/proc/loadavg").read_text().strip()]
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
    path = StreamPath(prefix)
    path.create()
    path.resolve()
    try:
        for rep in range(repeats):
            k = rep % len(cases)
            for case in cases[k:] + cases[:k]:
                r = one_run(path, case)
                samples[case].append(r)
                brief = {k: v for k, v in r.items() if k != "rtts"}
                print(f"repeat {rep + 1}: {case}: {brief}", file=sys.stderr)
    finally:
        path.destroy()
    load.append(Path("/proc/loadavg").read_text().strip())
    print(report(samples))
    print(f"\nload average before / after: {load[0]} / {load[1]}")
    if json_out:
        json_out.write_text(json.dumps({"samples": samples, "load": load}, indent=1))
    if write:
        write(samples, " ".join(load[0].split()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.libitm_stream"))
