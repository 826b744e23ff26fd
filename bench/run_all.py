"""Run every benchmark of the project, one after another, and rewrite docs/benchmarks.md.

Each benchmark is its own module under bench/ with a ``--write`` that replaces
its section of docs/benchmarks.md (bench/vmbench.py ``write_section``); this
runner only calls them in order, records the command, date and machine at the
top of the page, and says which ones failed.

    .venv/bin/python -m bench.run_all [--only NAME,...] [--list]

(`make bench` runs it.)  A new benchmark joins by adding a line to BENCHMARKS.
itmRoute's benchmark (failover gaps, probe bytes, forwarding rate, against
RON-like probing) writes its tables into docs/itmroute.md, next to the daemon's
description; docs/benchmarks.md links to them.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import dataclass

from bench import cliargs, entry, mice_plan, vmbench
from itmtool.matrix import read_matrix


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name, its module, the arguments of a full run, and its time bound."""

    name: str
    module: str
    args: tuple[str, ...]
    minutes: int

    def command(self) -> list[str]:
        """The command line that reruns it and rewrites its section."""
        return [sys.executable, "-m", self.module, *self.args, "--write"]


#: every benchmark of the project, in the order of the page (add bench.itmroute here)
BENCHMARKS = (
    Benchmark("itm_dispatch", "bench.itm_dispatch", ("--kernel", "all"), 6),
    Benchmark("qos_cost", "bench.qos_cost", ("--kernel", "all"), 10),
    Benchmark("libitm_queue", "bench.libitm_queue", (), 10),
    Benchmark("libitm_packet_cost", "bench.libitm_packet_cost", ("--instructions",), 4),
    # the three host benchmarks of #18 (root, like libitm_queue), bounded by repeats * cases
    # * seconds a run, a run's seconds about 3x what it takes on a quiet machine:
    # 5 * 2 (one worker, two) * 20 s (the app's start, 100,000 datagrams sent from Python,
    # the drain, the stop: about 5 s quiet) = 3.3 min
    Benchmark("libitm_workers", "bench.libitm_workers", ("--repeats", "5"), 4),
    # 3 * 4 cases * (5 s of iperf3 + up to 5 s to start and stop the consumer and iperf3's
    # server) = 2 min, and the namespaces
    Benchmark("libitm_stream", "bench.libitm_stream", (), 3),
    # 5 * 4 cases * (a 5 s iperf3 stream around 300 pings 10 ms apart + up to 5 s to start
    # and stop the application) = 3.3 min
    Benchmark("libitm_observer", "bench.libitm_observer", ("--repeats", "5"), 4),
    Benchmark("libitm_kernel_queue", "bench.libitm_kernel_queue", ("--kernel", "all"), 16),
    Benchmark(
        "mice_elephants",
        "bench.mice_elephants",
        ("--kernel", "all"),
        math.ceil(len(read_matrix()) * mice_plan.bound_seconds(mice_plan.plan()) / 60),
    ),
    Benchmark("itmroute", "bench.itmroute", ("--kernel", "6.12"), 25),
    # #20's data paths against routing, natively (one CPU): 3 repeats * 3 modes *
    # 2 flows * (5 s of iperf3 + its start) and the boot = 3 min
    Benchmark("itmroute_kernel", "bench.itmroute_kernel", ("--kernel", "uml"), 5),
    # #20's failover on each data path, natively: 3 paths * 20 cuts * (1 s of stream
    # before the cut + 4 s after + up to 10 s for the path to settle) = 15 min at most
    Benchmark("itmroute_failover", "bench.itmroute_failover", ("--kernel", "uml"), 16),
)

HEADER = "run_all"


def header(ran: list[str], failed: list[str], minutes: float) -> list[str]:
    """The page's record of the last full run."""
    lines = [
        f"`python -m bench.run_all` (`make bench`) ran {', '.join(ran) or 'nothing'} on"
        f" {vmbench.today()} on a {vmbench.cpu()} host in {minutes:.0f} min"
        f" (bound: {sum(b.minutes for b in BENCHMARKS)} min for all of them).",
    ]
    if failed:
        lines.append(f"Failed, so their sections are older: {', '.join(failed)}.")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = cliargs.parser("bench.run_all", __doc__)
    ap.add_argument("--only", help="comma-separated names of benchmarks to run")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)
    names = [b.name for b in BENCHMARKS]
    only = args.only.split(",") if args.only else names
    unknown = [n for n in only if n not in names]
    if unknown:
        ap.error(
            f"--only: no benchmark {', '.join(map(repr, unknown))}"
            f" (the benchmarks: {', '.join(names)})"
        )
    chosen = [b for b in BENCHMARKS if b.name in only]
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.name:16} {' '.join(b.command()[1:])}  (at most {b.minutes} min)")
        return 0
    t0 = time.monotonic()
    failed = []
    for b in chosen:
        print(f"== {b.name}: {' '.join(b.command()[1:])}", flush=True)
        if subprocess.run(b.command(), check=False).returncode:
            failed.append(b.name)
    ran = [b.name for b in chosen]
    vmbench.write_section(HEADER, "Last run", header(ran, failed, (time.monotonic() - t0) / 60))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.run_all"))
