"""What one mice-elephants experiment runs: its configurations, in order, and its time bound.

Pure logic: the guest half runs the list that `plan` returns, the host half
bounds the VM's time with `bound_seconds`, and the unit tests check both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

#: the ITM's schemes: nothing, the kernel module, the nftables rule set, libitm's example
SCHEMES = ("none", "qos_mod", "nft", "qos_ctrl")
#: the core router's treatments of marked packets
CORES = ("prio", "red", "rio")
LOADS = (0.6, 0.8, 0.95)
SEEDS = (1, 2)
THRESHOLDS = (10, 20, 50, 100)
#: seconds of arrivals per run; flows started in it may run DRAIN seconds more
WINDOW = 12.0
DRAIN = 12.0
#: seconds a run takes beyond its window and drain (setup, teardown, reading the
#: captures; measured: about 40 s a run in all on a busy 2-core host with one
#: capture, about 50 s with the three of the order measurement, host load 8-10)
OVERHEAD = 26.0
#: seconds to boot a VM on a busy 2-core host, load what the experiment needs and
#: start qos_ctrl (Python on the emulated CPU)
BOOT = 300.0


@dataclass(frozen=True)
class Run:
    """One configuration: a scheme at the ITM, a treatment at the core, one trace."""

    scheme: str
    core: str
    load: float
    seed: int
    threshold: int = 20
    offloads: bool = False
    #: qos_mod / qos_ctrl classify a flow's first packet (the SYN) too, as the
    #: nftables rule does; False is the paper's class 0 (first packet as sent)
    mark_first: bool = False
    #: "main" (the comparison of schemes) or "sweep" (threshold, offloads)
    part: str = "main"

    def as_dict(self) -> dict[str, Any]:
        """The configuration as it is stored with the run's results."""
        return asdict(self)


def plan(
    loads: tuple[float, ...] = LOADS,
    seeds: tuple[int, ...] = SEEDS,
    cores: tuple[str, ...] = CORES,
    schemes: tuple[str, ...] = SCHEMES,
    sweep_load: float | None = None,
    compare: tuple[tuple[str, ...], float] | None = None,
) -> list[Run]:
    """Every run of one experiment on one kernel, in the order they run.

    The main comparison interleaves the schemes over each (core, load, seed),
    so a slow drift of the machine touches every scheme alike; qos_mod and
    qos_ctrl mark the first packet there (`mark_first`), so that all three
    marking schemes apply the same rule.  With `sweep_load`, qos_mod's other
    thresholds, qos_mod with the paper's unmarked first packet, and offloads on
    (for no marking and qos_mod) follow at that load, first seed, strict
    priority.  With `compare` = (more cores, a load), those cores run too, at that
    load only, interleaved with the rest (every seed, every scheme).
    """
    more, at = compare if compare is not None else ((), math.nan)
    runs = [
        Run(scheme, core, load, seed, mark_first=scheme in ("qos_mod", "qos_ctrl"))
        for seed in seeds
        for load in loads
        for core in cores + tuple(c for c in more if c not in cores and load == at)
        for scheme in schemes
    ]
    if sweep_load is not None:
        seed, core = seeds[0], "prio"
        runs += [
            Run("qos_mod", core, sweep_load, seed, threshold=t, mark_first=True, part="sweep")
            for t in THRESHOLDS
            if t != 20
        ]
        runs.append(Run("qos_mod", core, sweep_load, seed, mark_first=False, part="sweep"))
        runs += [
            Run(s, core, sweep_load, seed, offloads=True, mark_first=s == "qos_mod", part="sweep")
            for s in ("none", "qos_mod")
        ]
    return runs


def bound_seconds(runs: list[Run]) -> float:
    """The longest one kernel's experiment may take, boot included."""
    return BOOT + len(runs) * (WINDOW + DRAIN + OVERHEAD)


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_plan",
            "it is a part of the mice-elephants experiment;"
            " run python -m bench.mice_elephants (see its --help)",
        )
    )
