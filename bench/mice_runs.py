"""The mice-and-elephants experiment's saved runs: where they are kept, the names
of the cores and schemes, and how runs are picked, grouped and printed.

Shared by the experiment's reports (bench/mice_report.py for the section,
bench/mice_rio_report.py for the RIO core's runs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from itmtool.matrix import ROOT

DATA = ROOT / "docs" / "data"
IMG = ROOT / "docs" / "img"
CORE_NAMES = {
    "prio": "strict priority (prio)",
    "red": "RED per class, DRR 3:1 (RIO-like)",
    "rio": "RIO, one FIFO (sch_rio)",
}
SCHEME_NAMES = {
    "none": "no marking",
    "qos_mod": "qos_mod",
    "nft": "nftables rule",
    "qos_ctrl": "libitm qos_ctrl",
}

Key = tuple[str, float, str]  # core, load, scheme


def ok_runs(doc: dict[str, Any], part: str = "main") -> list[dict[str, Any]]:
    """The runs of `part` that produced flows (failed runs are listed separately)."""
    return [r for r in doc["runs"] if r.get("part") == part and "flows" in r]


def grouped(runs: Iterable[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    """Runs by (core, load, scheme), each list in seed order."""
    out: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r["seed"]):
        out[(r["core"], r["load"], r["scheme"])].append(r)
    return out


def same_seeds(
    groups: dict[Key, list[dict[str, Any]]], key: Key, like: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The runs of `key` on the seeds that `like` ran: ratios compare the same traces."""
    seeds = {r["seed"] for r in like}
    return [r for r in groups.get(key, []) if r["seed"] in seeds]


def fmt(x: float, spec: str = ".0f") -> str:
    """`x` formatted by `spec`, or a dash for a missing value (NaN)."""
    return "—" if math.isnan(x) else format(x, spec)


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_runs",
            "python -m bench.mice_elephants runs the experiment and saves its runs;"
            " --report rewrites its section of docs/benchmarks.md from them",
        )
    )
