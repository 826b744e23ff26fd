"""The prose of the mice-elephants section of docs/benchmarks.md.

Kept apart from the tables (bench/mice_report.py) so that the words can be read
and changed on their own; what depends on the data is passed in.
"""

from __future__ import annotations

from typing import Any

from bench import mice_plan
from bench.mice_trace import Sizes, arrival_rate


def section(docs: list[dict[str, Any]], verdict: list[str]) -> list[str]:
    """The section's opening: what ran, how to rerun it, what it shows."""
    d0 = docs[0]
    sizes = Sizes(**{k: d0["sizes"][k] for k in ("alpha", "low", "high")})
    runs = {d["kernel"]: len(d["runs"]) for d in docs}
    lam = arrival_rate(0.95, 4e6, sizes)
    return [
        "Does size-aware differentiation at an ITM make short TCP flows finish sooner"
        " without starving long ones, with real TCP on real kernels? A dumbbell of network"
        " namespaces in a VM (QEMU TCG, 2 vCPUs): one client namespace whose transfers"
        " come from many concurrent sockets → the ITM (marks at post-routing, 20 ms delay"
        f" towards the core) → a core router with a {d0['rate']} TBF bottleneck → a server"
        " namespace. Each run replays a trace of TCP transfers with bounded-Pareto sizes"
        f" (shape {sizes.alpha}, {sizes.low:,} B to {sizes.high:,} B, mean"
        f" {sizes.mean():,.0f} B; 'short' below means at most 20 full segments, 28,960 B)"
        f" and Poisson arrivals for {d0['window']:.0f} s (flows may finish during"
        f" {d0['drain']:.0f} s more; at load 0.95 about {lam:.1f} flows/s). The same trace"
        " (per seed and load) is replayed for each scheme: no marking; qos_mod (threshold"
        " 20 unless said); the nftables `ct original packets` rule set of the qos_cost"
        " benchmark (`ip dscp set 4`, the same bit for these TOS-0 senders); and"
        " examples/qos_ctrl.py on libitm's nfqueue backend. The core either serves marked"
        " packets first (`prio`: TBF → prio, 100-packet FIFO bands) or gives each class a"
        " RED of its own, marked packets a late-dropping RED and three times the"
        " round-robin share of the unmarked one (`red`: TBF → DRR 3:1, RED 30/90 kB p=0.02"
        " for marked, 15/45 kB p=0.1 for the rest) — the closest stock-qdisc equivalent of"
        " the paper's RIO: GRED's virtual queues are chosen by `tc_index`, which nothing but"
        " BPF can set on 6.12 (dsmark and tcindex are gone), and unlike RIO the DRR does not"
        " keep one FIFO order across the classes. Without marking every packet is in one class:"
        " FIFO (`prio`) or one RED (`red`).",
        "",
        "A capture where packets enter the core checks every client packet's TOS against"
        " each scheme's rule ('marks as rule'; qos_mod and qos_ctrl leave a flow's first"
        " packet as sent, the nftables rule marks it: each is checked against its own rule)."
        " 'util.' is the bottleneck's transmitted bytes over the arrival window against its"
        " rate; 'guest CPU idle' is /proc/stat idle over the same window, both vCPUs — the"
        " headroom that shows the emulated CPU is not what limits the run. Long-flow"
        " goodput is the mean per-flow goodput of the flows of more than 20 segments.",
        "",
        "Command: `python -m bench.mice_elephants --kernel all --write` (the full plan:"
        f" loads {', '.join(map(str, mice_plan.LOADS))}, {len(mice_plan.SEEDS)} seeds, both"
        " cores, the four schemes; add `--sweep` for thresholds 10/50/100 and offloads on at"
        " the top load). Bounded: each run is stopped"
        f" {mice_plan.WINDOW + mice_plan.DRAIN:.0f} s after it starts, so one kernel takes at most"
        f" {mice_plan.bound_seconds(mice_plan.plan()) / 60:.0f} min"
        f" ({len(mice_plan.plan())} runs) and the VM is killed past that bound;"
        " `--quick` (kernel 6.12, one seed, loads 0.6 and 0.95, prio only, 8 runs) takes"
        f" at most {mice_plan.bound_seconds(mice_plan.plan((0.6, 0.95), (1,), ('prio',))) / 60:.0f}"
        " min. `--report` redraws this section from docs/data/mice_elephants-*.json.",
        "",
        *[
            f"This page's data: kernel {d['kernel']}, {runs[d['kernel']]} runs, run {d['date']}"
            f" on a {d['host_cpu']} host in {d['minutes']} min, command `{d['command']}`."
            for d in docs
        ],
        "",
        "What the data shows at the highest load (every seed must agree for 'lower'):",
        "",
        *verdict,
        "",
        "![completion time against flow size](img/mice_elephants_ct.png)",
        "",
        "![short-flow mean completion time against load](img/mice_elephants_load.png)",
    ]


PAPER = [
    "### Against the reference paper",
    "",
    "Guo and Matta, *The War between Mice and Elephants*, ICNP 2001, pp. 180-188"
    " (reference [5] of the itmBench paper). The paper itself is not on this machine and"
    " its figures could not be found in any source at hand, so no number of it is quoted"
    " here. What its abstract states (IEEE Xplore document 992898; OpenBU"
    " hdl.handle.net/2144/1626), from ns-2 simulations with RIO at the bottleneck: in a"
    " highly loaded network preferential treatment of short connections is needed for"
    " them to get better response time and fairness *without hurting the performance of"
    " long connections*; RIO keeps FIFO delivery (no reordering); in the worst case the"
    " scheme works as well as plain RED in response time and goodput. The threshold of"
    " about 20 packets that qos_mod uses by default is the figure commonly attributed to"
    " the paper; it is not checked against the paper here.",
    "",
    "Where ours can and cannot agree: the abstract's qualitative claims are the ones the"
    " tables above test (short flows faster at high load; long-flow goodput not hurt)."
    " Differences of set-up: real Linux TCP (CUBIC, initial window 10, SACK, RTO min 200"
    " ms) instead of ns-2's Reno/NewReno with a 3 s initial RTO; one 4 Mbit/s bottleneck and"
    " 20 ms of added delay instead of the paper's topology; a weighted two-RED DRR or strict"
    " priority instead of RIO's single FIFO queue; runs of a few hundred flows, so the"
    " heavy tail makes the realised load vary from seed to seed (the 'offered' column).",
]
