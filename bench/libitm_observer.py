"""Benchmark: what an observer application adds to a packet's latency, under load.

    sudo .venv/bin/python -m bench.libitm_observer [--pings N] [--repeats R] [--json FILE]
                                                   [--write] [--backend nfqueue|kernel]

The path of bench.libitm_stream (src -- mid -- dst on veth, mid the ITM). While
an iperf3 TCP stream loads the path, src pings dst N times, 10 ms apart.
Cases, interleaved (the order rotates each repeat):

* ``no app``: the ITM forwards, no application;
* ``observer``: an application at ip_forward interested in every IPv4 packet
  with a ``class_func`` and a ``log_func`` and no ``process_func``: it gets
  copies (nfqueue backend: by default from a BPF program at the hook through a
  ring buffer, or an NFLOG rule where the kernel has no BPF netfilter links;
  kernel backend: itm_queue's nf_log_packet() call in itm_mod's run list) and
  never holds a packet;
* ``observer, NFLOG`` (nfqueue backend): the observer with
  ``observer_copies="nflog"``, its copies from an NFLOG rule;
* ``observer, batched``: the observer with ``observer_batch=64`` (the kernel
  sends 64 copies per message, at the latest 10 ms after the first; on the
  nfqueue backend through NFLOG);
* ``decider``: the same application with a ``process_func`` that accepts, so
  every packet (the stream's too) waits in its queue for the verdict.

Added latency = median RTT of the case - median RTT of ``no app`` in the same
repeat; the goal (#18) is an observer's ≤ 5% of the path's RTT. The figures
are medians over the repeats with their min-max. ``--write`` replaces this
benchmark's section of docs/benchmarks.md (the table, the run's record and the
goal's verdict, judged on ``observer``'s median share).

``--backend kernel`` runs the applications on the kernel backend: itm_mod and
itm_queue must be loaded (``itmtool load itm_mod``, ``itmtool load itm_queue``;
in a VM of the matrix: ``itmtool vm --kernel uml -- ...``); the benchmark turns
itm_mod's hooks on in mid. Its section is its own.

``python -m bench.libitm_observer app observer|nflog|batched|decider [BACKEND]`` is the
application (prints READY, runs until SIGTERM, prints its counters as one JSON line).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import threading
from typing import Any

from bench import cliargs, entry, vmbench
from bench.libitm_stream import (
    RunRecord,
    StreamPath,
    command_line,
    interleave,
    iperf,
    md_table,
    parser,
    ready,
    start_app,
    stop_app,
    verdict,
)

PY = sys.executable
CASES = ("no app", "observer", "observer, NFLOG", "observer, batched", "decider")
#: the kernel backend's cases (its observers have one kind of copy)
KERNEL_CASES = ("no app", "observer", "observer, batched", "decider")
#: the app command line's name of each case that has an app
KINDS = {
    "observer": "observer",
    "observer, NFLOG": "nflog",
    "observer, batched": "batched",
    "decider": "decider",
}
_TIME = re.compile(r"time=([0-9.]+) ms")
#: the goal of #18: an observer adds at most this share of the path's RTT
GOAL = 0.05
SECTION = "libitm_observer"
TITLE = "An observer's latency under load (nfqueue backend)"
#: the kernel backend's section and title
KERNEL_SECTION = "libitm_observer_kernel"
KERNEL_TITLE = "An observer's latency under load (kernel backend)"
BACKENDS = ("nfqueue", "kernel")


def app(kind: str, backend: str = "nfqueue") -> int:
    """The observer or decider application (see the module docstring)."""
    import signal

    from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict

    seen = [0]

    def log_func(where: Hook, cls: int, pkt: Packet) -> None:
        seen[0] += 1

    def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
        return Verdict.ACCEPT

    info = ItmInfo(
        kind,
        Interest(family=4),
        class_func=lambda where, pkt: 1,
        log_func=log_func,
        process_func=process_func if kind == "decider" else None,
    )
    options: dict[str, Any] = {"observer_batch": 64 if kind == "batched" else 1}
    if backend == "nfqueue" and kind in ("nflog", "batched"):
        options["observer_copies"] = "nflog"
    loop = ItmLoop(backend, **options)
    loop.register_hook(Hook.IP_FORWARD, info)
    signal.signal(signal.SIGTERM, lambda s, f: loop.stop())
    loop.start()
    print("READY", flush=True)
    try:
        loop.run()
    finally:
        be = loop.counters()["backend"]
        loop.close()
        print(json.dumps({"seen": seen[0], **be}), flush=True)
    return 0


def pings(path: StreamPath, n: int) -> list[float]:
    """RTTs in ms of ``n`` pings src -> dst, 10 ms apart (lost ones left out)."""
    out = path.run_in(
        path.src, "ping", "-n", "-i", "0.01", "-W", "1", "-c", str(n), path.ip_dst, check=False
    )
    return [float(m) for m in _TIME.findall(out)]


def attach(ns: str) -> None:
    """Turn itm_mod's hooks on in namespace ``ns`` (the kernel backend's ITM)."""
    from itmlab import netns
    from libitm.control import ItmControl

    with netns(ns), ItmControl() as ctl:
        ctl.set_netns_active(True)


def one(path: StreamPath, case: str, n: int, backend: str = "nfqueue") -> dict[str, Any]:
    """One run of ``case`` under an iperf3 stream: the RTTs and the app's counters."""
    proc = None
    if backend == "kernel":
        attach(path.mid)
    if case != "no app":
        cmd = [PY, "-m", "bench.libitm_observer", "app", KINDS[case], backend]
        proc = start_app(path, *cmd)
    load: list[float] = []
    seconds = n * 0.01 + 2
    th = threading.Thread(target=lambda: load.append(iperf(path, seconds)), daemon=True)
    try:
        th.start()
        threading.Event().wait(0.5)  # the stream under way
        rtts = pings(path, n)
        th.join(seconds + 30)
    finally:
        counts = stop_app(proc) if proc is not None else {}
    return {"rtts": rtts, "load_mbps": load[0] if load else 0.0, **counts}


def summarize(samples: dict[str, list[dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    """Per case: median RTT, p90, added latency against ``no app`` and its share."""
    rows = []
    base = [statistics.median(r["rtts"]) for r in samples["no app"]]
    for case, runs in samples.items():
        med = [statistics.median(r["rtts"]) for r in runs]
        p90 = [statistics.quantiles(r["rtts"], n=10)[-1] for r in runs]
        added = [m - b for m, b in zip(med, base, strict=True)]
        share = [a / b for a, b in zip(added, base, strict=True)]
        rows.append(
            {
                "case": case,
                "rtt_ms": statistics.median(med),
                "rtt_range": (min(med), max(med)),
                "p90_ms": statistics.median(p90),
                "added_ms": statistics.median(added),
                "share": statistics.median(share),
                "share_range": (min(share), max(share)),
                "lost": sum(n - len(r["rtts"]) for r in runs),
                "load_mbps": statistics.median(r["load_mbps"] for r in runs),
                "copies": statistics.median(r.get("observer_copies", 0) for r in runs),
                "queued": statistics.median(r.get("packets", 0) for r in runs),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = ["case", "RTT ms, median (min-max)", "p90 ms", "added ms", "÷ path RTT (min-max)"]
    head += ["pings lost", "stream Mbit/s", "copies / queued"]
    body = [
        [
            r["case"],
            f"{r['rtt_ms']:.3f} ({r['rtt_range'][0]:.3f}-{r['rtt_range'][1]:.3f})",
            f"{r['p90_ms']:.3f}",
            f"{r['added_ms']:+.3f}",
            f"{r['share']:+.1%} ({r['share_range'][0]:+.1%} to {r['share_range'][1]:+.1%})",
            str(r["lost"]),
            f"{r['load_mbps']:.0f}",
            f"{r['copies']:.0f} / {r['queued']:.0f}",
        ]
        for r in rows
    ]
    return md_table(head, body)


def section(rows: list[dict[str, Any]], record: RunRecord, backend: str = "nfqueue") -> list[str]:
    """The body of this benchmark's section of docs/benchmarks.md (rows: :func:`summarize`)."""
    by_case = {r["case"]: r for r in rows}
    obs, base = by_case.get("observer"), by_case.get("no app")
    if obs is None or base is None:
        goal = f"Goal (#18): an observer adds ≤ {GOAL:.0%} of the path's RTT: {verdict(False)} "
        goal += "(not measured)."
    else:
        overall = (obs["rtt_ms"] - base["rtt_ms"]) / base["rtt_ms"]
        lo, hi = obs["share_range"]
        goal = (
            f"Goal (#18): an observer adds ≤ {GOAL:.0%} of the path's RTT: "
            f"{verdict(obs['share'] <= GOAL and overall <= GOAL)} ({obs['share']:+.1%}, the "
            f"median of the repeats' added RTT ÷ their no-app RTT, {lo:+.1%} to {hi:+.1%}; "
            f"{obs['added_ms'] * 1e3:+.0f} µs on a {base['rtt_ms'] * 1e3:.0f} µs path; the "
            f"medians over all repeats differ by {overall:+.1%}; met only when both are "
            "within the goal)."
        )
    how = (
        "copies from a BPF program at the hook through a ring buffer; `observer, NFLOG`: "
        'the same observer with `observer_copies="nflog"`, an NFLOG rule\'s copies'
        if backend == "nfqueue"
        else "copies from itm_queue's nf_log_packet() in itm_mod's run list, itm_mod's hooks "
        "on in mid"
    )
    return record.body(
        "The path of the stream section above, loaded by an iperf3 stream; src pings dst 10 ms "
        "apart with no application in mid, with an observer (`class_func` + `log_func`, no "
        f"`process_func`, interested in every IPv4 packet at ip_forward: {how}), the "
        "same observer with `observer_batch=64` (NFLOG copies), and the same application as "
        "a decider (a "
        "`process_func` that accepts: every packet queued). Added latency: the case's median "
        "RTT minus no app's of the same repeat, the cases interleaved "
        f"(bench/libitm_observer.py says how). Backend: {backend}.",
        table(rows),
        goal,
    )


def kernel_ready() -> bool:
    """False (and a one-line error) when itm_queue is not loaded."""
    from libitm.backends import kernel_available

    if kernel_available():
        return True
    print(
        "bench.libitm_observer: --backend kernel needs itm_mod and itm_queue loaded "
        "(itmtool load itm_mod; itmtool load itm_queue)",
        file=sys.stderr,
    )
    return False


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["app"]:
        kind = argv[1] if len(argv) > 1 else ""
        backend = argv[2] if len(argv) > 2 else "nfqueue"
        if kind not in KINDS.values() or backend not in BACKENDS or len(argv) > 3:
            print(
                "usage: python -m bench.libitm_observer app observer|nflog|batched|decider "
                "[nfqueue|kernel]",
                file=sys.stderr,
            )
            return 2
        return app(kind, backend)
    ap = parser("bench.libitm_observer", __doc__)
    ap.add_argument(
        "--pings", type=cliargs.positive, default=300, help="pings per run, 10 ms apart"
    )
    ap.add_argument("--backend", choices=BACKENDS, default="nfqueue", help="libitm backend")
    a = ap.parse_args(argv)
    if not ready("bench.libitm_observer"):
        return 2
    if a.backend == "kernel" and not kernel_ready():
        return 2
    cmd = command_line("bench.libitm_observer", argv)
    name, title = (SECTION, TITLE) if a.backend == "nfqueue" else (KERNEL_SECTION, KERNEL_TITLE)

    def write(samples: dict[str, list[dict[str, Any]]], load: str) -> None:
        rows = summarize(samples, a.pings)
        body = section(rows, RunRecord.now(cmd, load), a.backend)
        vmbench.write_section(name, title, body)

    return interleave(
        "itmo",
        list(CASES if a.backend == "nfqueue" else KERNEL_CASES),
        a.repeats,
        lambda path, case: one(path, case, a.pings, a.backend),
        lambda samples: table(summarize(samples, a.pings)),
        a.json,
        write if a.write else None,
    )


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.libitm_observer"))
