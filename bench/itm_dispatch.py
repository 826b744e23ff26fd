"""Benchmark: the per-packet cost of itm_mod's dispatch, against a bare netfilter hook.

In a VM booted on a kernel of the matrix, a driver module (kernel/bench/
itm_bench_drive.c) pushes one UDP packet through the IPv4 forward hooks of the
initial namespace two million times with bottom halves disabled, as on the
forward path, and times the loop.  It does so with nothing hooked (the floor),
with a bare netfilter hook that accepts (the anchor), and with itm_mod and 0, 1
and 8 registered no-op applications: with all five callbacks present and doing
nothing, and with no callbacks at all (the cost of the interest check alone).
The cost of a configuration is its time per packet minus the floor; the ratios
divide by the anchor's cost, measured in the same run.

    .venv/bin/python -m bench.itm_dispatch [--kernel 6.12|all] [--iterations N]

takes about two minutes per kernel and prints a table; with --write it also
updates its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import vmbench

RUN_FILE = vmbench.RUN_FILE_DIR / "run"
#: (name, n_apps, callbacks) of the itm_mod configurations
ITM_CONFIGS = (
    ("itm_mod, 1 app", 1, 1),
    ("itm_mod, 8 apps", 8, 1),
    ("itm_mod, 1 app without callbacks", 1, 0),
    ("itm_mod, 8 apps without callbacks", 8, 0),
)
NO_TIME = "itm_mod, 8 apps, account_time=0"
CONFIGS = ("floor", "bare nf hook", "itm_mod, 0 apps", *(c[0] for c in ITM_CONFIGS), NO_TIME)


def _measure(iterations: int, repeats: int) -> float:
    """Median nanoseconds per packet over `repeats` runs."""
    samples = []
    for _ in range(repeats):
        RUN_FILE.write_text(str(iterations))
        iters, ns = map(int, RUN_FILE.read_text().split())
        samples.append(ns / iters)
    return statistics.median(samples)


def guest(moddir: Path, out: Path, iterations: int, repeats: int) -> int:
    """Inside the VM: load each configuration in turn and time it."""
    ko = vmbench.module_paths(moddir)
    vmbench.mount_debugfs()
    vmbench.sh("insmod", ko["itm_bench_drive"])
    results: dict[str, float] = {}
    try:
        _measure(iterations // 10, 1)  # warm up
        results["floor"] = _measure(iterations, repeats)
        vmbench.sh("insmod", ko["itm_bench_nf"])
        results["bare nf hook"] = _measure(iterations, repeats)
        vmbench.sh("rmmod", "itm_bench_nf")
        vmbench.sh("insmod", ko["itm_mod"])
        results["itm_mod, 0 apps"] = _measure(iterations, repeats)
        for name, n, callbacks in ITM_CONFIGS:
            vmbench.sh("insmod", ko["itm_bench_apps"], f"n_apps={n}", f"callbacks={callbacks}")
            results[name] = _measure(iterations, repeats)
            vmbench.sh("rmmod", "itm_bench_apps")
        Path("/sys/module/itm_mod/parameters/account_time").write_text("0")
        vmbench.sh("insmod", ko["itm_bench_apps"], "n_apps=8")
        results[NO_TIME] = _measure(iterations, repeats)
        vmbench.sh("rmmod", "itm_bench_apps")
        vmbench.sh("rmmod", "itm_mod")
    finally:
        for m in ("itm_bench_apps", "itm_bench_nf", "itm_mod", "itm_bench_drive"):
            subprocess.run(["rmmod", m], capture_output=True, check=False)
    doc = {
        "kernel": platform.release(),
        "iterations": iterations,
        "repeats": repeats,
        "ns_per_packet": results,
    }
    out.write_text(json.dumps(doc, indent=2))
    return 0


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of one kernel's results."""
    ns = doc["ns_per_packet"]
    floor = ns["floor"]
    anchor = ns["bare nf hook"] - floor
    lines = [
        f"Kernel {doc['kernel']} ({doc['iterations']:,} packets x {doc['repeats']}, median):",
        "",
        "| configuration | ns/packet | cost over floor (ns) | ratio to bare hook |",
        "|---|---:|---:|---:|",
    ]
    for name in CONFIGS:
        cost = ns[name] - floor
        ratio = "—" if name == "floor" else f"{cost / anchor:.2f}x"
        lines.append(f"| {name} | {ns[name]:.1f} | {cost:.1f} | {ratio} |")
    return "\n".join(lines)


def host(args: argparse.Namespace) -> int:
    """Build the modules, boot each kernel asked for, collect and print the results."""
    tables = vmbench.tables_per_kernel(args, "itm_dispatch", table)
    if tables is None:
        return 1
    if args.write:
        vmbench.write_section(
            "itm_dispatch",
            "itm_mod dispatch cost",
            [
                "Per-packet cost of pushing a UDP packet through the IPv4 forward hooks, in a"
                f" VM (QEMU TCG, 2 vCPUs, on a {vmbench.cpu()} host); ratios are against a bare"
                " netfilter hook that accepts, measured in the same VM run. TCG inflates"
                " absolute times; the ratios are what carries over.",
                "",
                "Command: `python -m bench.itm_dispatch --kernel all --write` — run"
                f" {vmbench.today()}, about 2 minutes per kernel.",
                "",
                *[t + "\n" for t in tables],
            ],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    return vmbench.main(__doc__ or "", 2_000_000, 5, guest, host, argv)


if __name__ == "__main__":
    sys.exit(main())
