"""Benchmark: the per-packet cost of itm_mod's dispatch, against a bare netfilter hook.

In a VM booted on a kernel of the matrix, a driver module (kernel/bench/
itm_bench_drive.c) pushes one UDP packet through the IPv4 forward hooks of the
initial namespace two million times with bottom halves disabled, as on the
forward path, and times the loop.  It does so with nothing hooked (the floor),
with a bare netfilter hook that accepts at the same hook (the anchor: itm_mod
registers exactly one hook there, IPv4 forward, and only while an application
wants it), and with itm_mod and 0, 1 and 8 registered no-op applications: with
all five callbacks present and doing nothing, with no callbacks at all (the cost
of the interest check alone), and 8 of which only one wants the packet (the
other 7 want TCP; the packet is UDP).
The cost of a configuration is its time per packet (the fastest round: a
run the host preempts only ever takes longer; the median beside it) minus the
floor's; the ratios divide by the anchor's cost, measured in the same run.

    .venv/bin/python -m bench.itm_dispatch [--kernel 6.12|all|uml] [--iterations N]

takes about two minutes per kernel (30 s in User-Mode Linux: --kernel uml) and
prints a table; with --write it also updates its section of docs/benchmarks.md
(itm_dispatch_uml for --kernel uml).  Under load, many short rounds
(--iterations 100000 --repeats 30) give a steadier fastest round.
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

from bench import entry, vmbench

RUN_FILE = vmbench.RUN_FILE_DIR / "run"
#: (name, n_apps, callbacks, tcp_apps) of the itm_mod configurations
ITM_CONFIGS = (
    ("itm_mod, 1 app", 1, 1, 0),
    ("itm_mod, 8 apps, 1 interested", 8, 1, 7),
    ("itm_mod, 8 apps", 8, 1, 0),
    ("itm_mod, 1 app without callbacks", 1, 0, 0),
    ("itm_mod, 8 apps without callbacks", 8, 0, 0),
)
NO_TIME = "itm_mod, 8 apps, account_time=0"
CONFIGS = ("floor", "bare nf hook", "itm_mod, 0 apps", *(c[0] for c in ITM_CONFIGS), NO_TIME)


def _measure(iterations: int) -> float:
    """Nanoseconds per packet of one run."""
    RUN_FILE.write_text(str(iterations))
    iters, ns = map(int, RUN_FILE.read_text().split())
    return ns / iters


def _configs(ko: dict[str, str]) -> list[tuple[str, list[list[str]]]]:
    """Each configuration: its name and the modules (with parameters) it loads."""
    itm = [ko["itm_mod"]]
    out: list[tuple[str, list[list[str]]]] = [
        ("floor", []),
        ("bare nf hook", [[ko["itm_bench_nf"]]]),
        ("itm_mod, 0 apps", [itm]),
    ]
    for name, n, callbacks, tcp_apps in ITM_CONFIGS:
        apps = [ko["itm_bench_apps"], f"n_apps={n}", f"callbacks={callbacks}"]
        out.append((name, [itm, [*apps, f"tcp_apps={tcp_apps}"]]))
    out.append((NO_TIME, [[*itm, "account_time=0"], [ko["itm_bench_apps"], "n_apps=8"]]))
    return out


def guest(moddir: Path, out: Path, iterations: int, repeats: int) -> int:
    """Inside the VM: time each configuration once per round, rounds interleaved."""
    ko = vmbench.module_paths(moddir)
    vmbench.mount_debugfs()
    vmbench.sh("insmod", ko["itm_bench_drive"])
    samples: dict[str, list[float]] = {}
    try:
        _measure(iterations // 10)  # warm up
        for _ in range(repeats):
            for name, mods in _configs(ko):
                for mod in mods:
                    vmbench.sh("insmod", *mod)
                samples.setdefault(name, []).append(_measure(iterations))
                for mod in reversed(mods):
                    vmbench.sh("rmmod", Path(mod[0]).stem)
    finally:
        for m in ("itm_bench_apps", "itm_bench_nf", "itm_mod", "itm_bench_drive"):
            subprocess.run(["rmmod", m], capture_output=True, check=False)
    doc = {
        "kernel": platform.release(),
        "iterations": iterations,
        "repeats": repeats,
        "ns_per_packet": {k: statistics.median(v) for k, v in samples.items()},
        "fastest": {k: min(v) for k, v in samples.items()},
        "samples": samples,
    }
    out.write_text(json.dumps(doc, indent=2))
    return 0


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of one kernel's results: the fastest round of each configuration
    (a run the host preempts only ever takes longer), the median beside it."""
    median = doc["ns_per_packet"]
    ns = doc.get("fastest", median)
    floor = ns["floor"]
    anchor = ns["bare nf hook"] - floor
    lines = [
        f"Kernel {doc['kernel']} ({doc['iterations']:,} packets x {doc['repeats']} interleaved"
        " rounds, fastest round):",
        "",
        "| configuration | ns/packet | (median) | cost over floor (ns) | ratio to bare hook |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in CONFIGS:
        cost = ns[name] - floor
        ratio = "—" if name == "floor" else f"{cost / anchor:.2f}x"
        lines.append(f"| {name} | {ns[name]:.1f} | {median[name]:.1f} | {cost:.1f} | {ratio} |")
    return "\n".join(lines)


def _intro(uml: bool) -> str:
    """The paragraph that says where the figures come from."""
    where = (
        "natively in User-Mode Linux (Debian's 6.12 source built ARCH=um,"
        f" {vmbench.uml_build()}one CPU; the"
        f" guest's kernel code runs as ordinary instructions on the {vmbench.cpu()} host, so"
        " an indirect call or a per-CPU update costs what it costs there)"
        if uml
        else f"in a VM (QEMU TCG, 2 vCPUs, on a {vmbench.cpu()} host)"
    )
    return (
        f"Per-packet cost of pushing a UDP packet through the IPv4 forward hooks, {where};"
        " ratios are against a bare netfilter hook that accepts at the same hook, measured"
        " in the same run. itm_mod registers exactly one netfilter hook on this path (IPv4"
        " forward), and only while an application is registered there. '8 apps, 1"
        " interested': seven of the eight want TCP only (the packet is UDP). Configurations"
        " are interleaved round by round."
        + ("" if uml else " TCG inflates absolute times; the ratios are what carries over.")
    )


def host(args: argparse.Namespace) -> int:
    """Build the modules, boot each kernel asked for, collect and print the results."""
    load = vmbench.loadavg()
    tiers = vmbench.tables_per_kernel(args, "itm_dispatch", table)
    if tiers is None:
        return 1
    for uml, tables in tiers.items() if args.write else ():
        vmbench.write_section(
            "itm_dispatch_uml" if uml else "itm_dispatch",
            "itm_mod dispatch cost" + (", native (User-Mode Linux)" if uml else ""),
            [
                _intro(uml),
                "",
                f"Command: `python -m bench.itm_dispatch --kernel {args.kernel}"
                f" --iterations {args.iterations} --repeats {args.repeats} --write` — run"
                f" {vmbench.today()}, load average {load} at the start.",
                "",
                *[t + "\n" for t in tables],
            ],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    return vmbench.main("bench.itm_dispatch", __doc__ or "", 2_000_000, 5, guest, host, argv)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.itm_dispatch"))
