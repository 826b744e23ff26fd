"""itmRoute's failover on each data path: the gap when the relay in use is cut.

The overlay of itmroute.lab (A, relays R1..R4, D; netem round trips: direct
90 ms, R1 30, R2 40, R3 50, R4 60), every daemon in threads of one process. For
each data path (the daemon itself, ``python``; itm_route, ``kernel``; the
kernel's WireGuard, ``wireguard``), ``--iterations`` cuts as
bench.itmroute measures them: the relay in use is black-holed 1 s into a 100
packet/s UDP stream that goes on 4 s past the cut; per cut the largest gap
between arrivals and the outage (from the sending of the first datagram the
cut lost to the first arrival on the new path). The goal (#20): p95 of the
largest gap at most 0.3 s, the worst at most 0.5 s.

    .venv/bin/python -m bench.itmroute_failover --kernel uml [--iterations 20] [--write]

In User-Mode Linux (native speed, one CPU) the timers are what they are on a
real machine; under QEMU TCG the daemons' Python is slowed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from bench import entry, vmbench
from bench.itmroute import Bench, cuts
from itmtool import uml

DATAPATHS = ("python", "kernel", "wireguard")
RTTS = [90.0, 30.0, 40.0, 50.0, 60.0]
#: the goal of #20 (seconds): p95 and worst of the largest gap per cut
GOAL_P95, GOAL_WORST = 0.3, 0.5


def _attach(ov: Any) -> None:
    """itm_mod's hooks in every namespace of the overlay (itm_route's applications
    run only there)."""
    from itmlab import netns
    from libitm.control import ItmControl

    for ns in (ov.a, ov.d, *ov.relays):
        with netns(ns), ItmControl() as ctl:
            ctl.set_netns_active(True)


def _one(datapath: str, cuts_n: int) -> dict[str, Any]:
    from itmroute import ProbeSettings
    from itmroute.lab import overlay

    with overlay(f"itmf{datapath[0]}", 4, datapath=datapath) as ov:
        if datapath == "kernel":
            _attach(ov)
        b = Bench(ov, ProbeSettings())
        b.start()
        try:
            got = b.a.snapshot()["datapath"]
            if got != datapath:
                raise RuntimeError(f"asked for data path {datapath}, the daemon runs {got}")
            return cuts(b, cuts_n, 4.0, RTTS)
        finally:
            ov.stop_daemons()


def guest(moddir: Path, out: Path, iterations: int, repeats: int) -> int:
    """Inside the VM: each data path's cuts, one after the other."""
    from itmlab import kmods
    from itmroute.lab import load_stock_modules, load_wireguard_modules

    ko = vmbench.module_paths(moddir)
    load_stock_modules()
    load_wireguard_modules()
    doc: dict[str, Any] = {"kernel": platform.release(), "iterations": iterations, "paths": {}}
    loaded: list[str] = []
    try:
        if "kernel" in DATAPATHS:
            vmbench.sh("insmod", ko["itm_mod"])
            loaded.append("itm_mod")
            kmods.insmod_deps(Path(ko["itm_route"]), ours=frozenset({"itm_mod"}))
            vmbench.sh("insmod", ko["itm_route"])
            loaded.append("itm_route")
        for dp in DATAPATHS:
            try:
                doc["paths"][dp] = _one(dp, iterations)
            except Exception as e:  # recorded; the other data paths still run
                doc["paths"][dp] = {"error": f"{type(e).__name__}: {e}"}
            doc["load"] = vmbench.loadavg()
            out.write_text(json.dumps(doc, indent=1))
    finally:
        for name in reversed(loaded):
            vmbench.sh("rmmod", name)
    out.write_text(json.dumps(doc, indent=1))
    return 0


def _s(x: float) -> str:
    return "never" if x == float("inf") else f"{x:.2f}"


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of one kernel's results (a failed data path shows its error)."""
    lines = [
        f"Kernel {doc['kernel']} ({doc['iterations']} cuts per data path; guest load average"
        f" at the end {doc.get('load', '?')}); seconds, goal p95 ≤ {GOAL_P95}, worst ≤"
        f" {GOAL_WORST}:",
        "",
        "| data path | largest gap: median | p95 | worst | outage: median | p95 | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for dp, r in doc["paths"].items():
        if "error" in r:
            lines.append(f"| {dp} | {r['error']} | | | | | |")
            continue
        worst = max(r["gaps"])
        met = r["p95"] <= GOAL_P95 and worst <= GOAL_WORST
        lines.append(
            f"| {dp} | {_s(r['median'])} | {_s(r['p95'])} | {_s(worst)} "
            f"| {_s(r['outage_median'])} | {_s(r['outage_p95'])} | {'met' if met else 'missed'} |"
        )
    return "\n".join(lines)


def host(args: argparse.Namespace) -> int:
    """Boot each kernel asked for, print (and write) the tables."""
    os.environ.setdefault(uml.CPU_ENV, str((os.cpu_count() or 1) - 1))
    tiers = vmbench.tables_per_kernel(args, "itmroute_failover", table)
    if tiers is None:
        return 1
    for native, tables in tiers.items() if args.write else ():
        vmbench.write_section(
            "itmroute_failover_uml" if native else "itmroute_failover",
            "itmRoute's failover on each data path" + (", native (UML)" if native else ""),
            [
                "The relay in use black-holed 1 s into a 100 packet/s stream, "
                f"{args.iterations} times per data path (bench/itmroute_failover.py). "
                + (
                    "User-Mode Linux: every namespace and daemon shares one CPU at native"
                    f" speed (UML kept on host CPU {os.environ[uml.CPU_ENV]})."
                    if native
                    else f"QEMU TCG, 2 vCPUs, on a {vmbench.cpu()} host."
                ),
                "",
                f"Command: `python -m bench.itmroute_failover --kernel {args.kernel} "
                f"--iterations {args.iterations} --write` — run {vmbench.today()}, host load "
                f"average at the end {vmbench.loadavg()}.",
                "",
                *[t + "\n" for t in tables],
            ],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line (``--iterations``: cuts per data path)."""
    return vmbench.main("bench.itmroute_failover", __doc__ or "", 20, 1, guest, host, argv)


if __name__ == "__main__":
    import sys

    sys.exit(entry.run(main, "bench.itmroute_failover"))
