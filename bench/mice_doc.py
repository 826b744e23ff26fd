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
        " rate; 'guest CPU idle' is /proc/stat idle over the same window, both vCPUs (the"
        " headroom the emulated CPU had left); 'late start' is the most any flow of the run"
        " started after its time in the trace (the load generator keeping up). Long-flow"
        " goodput is the mean per-flow goodput of the flows of more than 20 segments."
        " Ratios '÷ none' are against no marking with the same core, load and seeds.",
        "",
        "Command: `python -m bench.mice_elephants --kernel all --write` (the full plan:"
        f" loads {', '.join(map(str, mice_plan.LOADS))}, {len(mice_plan.SEEDS)} seeds, both"
        " cores, the four schemes; add `--sweep` for thresholds 10/50/100 and offloads on at"
        " the top load, about 4 min more). Bounded: each run is stopped"
        f" {mice_plan.WINDOW + mice_plan.DRAIN:.0f} s after it starts, so one kernel takes at most"
        f" {mice_plan.bound_seconds(mice_plan.plan()) / 60:.0f} min"
        f" ({len(mice_plan.plan())} runs) and the VM is killed past that bound;"
        " `--quick` (kernel 6.12, one seed, loads 0.6 and 0.95, prio only, 8 runs) takes"
        f" at most {mice_plan.bound_seconds(mice_plan.plan((0.6, 0.95), (1,), ('prio',))) / 60:.0f}"
        " min in the VM (12 min of wall time with the module build on 2026-11-26, all 8"
        " runs done; its data goes to build/, not to this page). `--report` redraws this"
        " section from docs/data/mice_elephants-*.json. The bounds hold the VM; on a host"
        " shared with other VMs a full plan may not finish in them, and the tables then"
        " say how many of the planned runs they hold.",
        "",
        *[
            f"- This page's data: kernel {d['kernel']}, {runs[d['kernel']]} runs, run {d['date']}"
            f" on a {d['host_cpu']} host in {d['minutes']} min, command `{d['command']}`."
            for d in docs
        ],
        "",
        "What the data shows at the highest load ('lower on every seed': qos_mod's mean"
        " below no marking's on each seed's trace):",
        "",
        *verdict,
        "",
        "![completion time against flow size](img/mice_elephants_ct.png)",
        "",
        "![short-flow mean completion time against load](img/mice_elephants_load.png)",
    ]


ANALYSIS = [
    "### What the data says, and why",
    "",
    "- **The first packet matters more than the threshold.** qos_mod leaves the first"
    " packet of every flow — the SYN — as the sender made it (its reading of the paper's"
    " `class_func`, see [qos_mod.md](qos_mod.md#the-first-packet-of-a-flow)); the"
    " nftables rule marks it, because conntrack counts the SYN as packet 1. At the"
    " bottleneck an unmarked SYN waits in the elephants' queue, or is dropped from it,"
    " and a lost SYN costs Linux's 1 s initial retransmission timeout: compare the"
    " 'short ≥ 1 s' column of qos_mod with the nftables rule's. So the two give the same"
    " marking from packet 2 on (each matches its own rule on ≥ 99.5% of packets) but"
    " **not** the same completion times: at load 0.95 the paired tables show the"
    " nftables rule's short flows finishing significantly sooner on both kernels and"
    " both cores (75 to 140 ms on average); at load 0.6 the two are indistinguishable"
    " on 6.1 and differ either way on 6.12."
    " The issue's expectation that they are indistinguishable does not hold, for this"
    " reason; marking the SYN SHORT (the other reading the qos_mod page discusses) is"
    " the change this data argues for.",
    "- **The few packets that do not match their rule** are qos_mod's documented limit:"
    " 1 s after a flow's FIN without packets its entry is collected, and a retransmission"
    " that comes later starts a new entry and is marked SHORT (the 'position/flags' kept"
    " in the data file show them after the FIN).",
    "- **Long flows pay for strict priority.** Every marked packet — all of a mouse, and"
    " the first 20 of every elephant — overtakes the elephants' later packets, and an"
    " elephant's packets change queues at packet 21, which reorders them at the"
    " bottleneck (spurious fast retransmits). The paper's RIO keeps one FIFO and only"
    " drops differently, which is why it could promise no harm to long flows; the"
    " RED-per-class DRR here is not FIFO either.",
    "- **qos_ctrl marks exactly like qos_mod, but on this emulated CPU its cost does not"
    " stay in the CPU**: every client packet crosses to Python through nfnetlink_queue"
    " and back, which takes a large share of a vCPU (its table) and adds per-packet"
    " delay; where it cannot keep up the bottleneck's utilisation falls and completion"
    " times rise. The issue's expectation ('its cost shows in CPU, not in"
    " correctness') holds for the marking, not for the timing, at TCG speed.",
    "- **A mouse's last segments are LONG.** The threshold counts packets, and the SYN"
    " and the handshake's ACK are two of them: a mouse of 19 or 20 segments sends its"
    " last one or two data segments as packets 21 and 22, unmarked, behind the"
    " elephants (the FIN is marked again). With the RED-per-class core at the low load"
    " this, the reordering and the unmarked SYN made marking *slower* than no marking"
    " (the 'red 0.60' rows): one RED shared by everyone kept its queue short there,"
    " and splitting the traffic only added the penalties.",
    "- **Threshold sweep** (one trace, load 0.95, strict priority, where it ran): fewer"
    " marked packets did better on that trace — 10 beat 20, and 50 was worse than no"
    " marking — because every elephant's first `threshold` packets crowd the"
    " privileged band too. One trace of a heavy-tailed workload is not evidence enough"
    " to change the default; it is a hint that 20 is not a free choice.",
    "- **CPU headroom.** Both runs shared the 2-core host with another VM. At load 0.95"
    " the guest's idle time fell to roughly 15 to 50% on 6.12 and to about 20% on 6.1,"
    " and the load generator started some flows late ('late start'): up to about 2 s"
    " on 6.12 and up to about 6 s on 6.1, whose load-0.95 rows therefore rest on a"
    " distorted arrival process and one seed (the 6.1 run hit its time bound after 25"
    " of 32 runs). For the kernel schemes the carried load"
    " followed the offered load (utilisation against 'offered'), so the bottleneck and"
    " not the CPU set their pace, but the margin is thin: a 2 Mbit/s bottleneck would be"
    " the safer setting on this machine. The realised load varies a lot from seed to"
    " seed (the 'offered' column): with a few hundred heavy-tailed flows per run one"
    " elephant more or less moves it by tens of percent, so each seed's figures are"
    " compared with no marking on the same trace.",
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
