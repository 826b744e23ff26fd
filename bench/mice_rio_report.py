"""The RIO core on the page: do short flows win *and* long flows not lose (issue 19)?

Reads docs/data/mice_rio-<kernel>.json, written by::

    python -m bench.mice_elephants --kernel K --name mice_rio --cores rio \\
        --schemes none,qos_mod --compare prio,red@0.95 --seeds 5 --steer

and renders, per kernel and core, both halves of Guo and Matta's claim as
paired ratios (qos_mod over no marking, flow by flow on the same traces, with
bootstrap intervals), the receiver's reordering, rio's own counters and the
largest flow's arrivals over time (a plot).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench import mice_stats
from bench.mice_runs import CORE_NAMES, DATA, IMG, SCHEME_NAMES, fmt, grouped, ok_runs

STEM = "mice_rio"
ELEPHANT_PLOT = "mice_rio_elephant.png"
#: the claim: short flows at most this fraction of no marking at the top load ...
SHORT_BOUND = 0.5
#: ... and long flows at least this fraction at every load
LONG_BOUND = 0.95


def load_docs() -> list[dict[str, Any]]:
    """Every kernel's RIO results on disk, in kernel order."""
    docs = [json.loads(p.read_text()) for p in sorted(DATA.glob(f"{STEM}-*.json"))]
    return sorted(docs, key=lambda d: [int(x) for x in d["kernel"].split("-")[0].split(".")[:2]])


def _pairs(
    doc: dict[str, Any],
) -> list[tuple[str, float, list[dict[str, Any]], list[dict[str, Any]]]]:
    """(core, load, qos_mod runs, no-marking runs) on the seeds both ran, cores in page order."""
    groups = grouped(ok_runs(doc))
    out = []
    order = list(CORE_NAMES)
    for core, load in sorted(
        {(c, ld) for c, ld, _ in groups}, key=lambda k: (order.index(k[0]), k[1])
    ):
        q, n = groups.get((core, load, "qos_mod"), []), groups.get((core, load, "none"), [])
        seeds = sorted({r["seed"] for r in q} & {r["seed"] for r in n})
        if seeds:
            out.append((
                core,
                load,
                [r for r in q if r["seed"] in seeds],
                [r for r in n if r["seed"] in seeds],
            ))  # fmt: skip
    return out


def _interval(ratio: float, lo: float, hi: float) -> str:
    return "—" if math.isnan(ratio) else f"{ratio:.2f} ({lo:.2f} to {hi:.2f})"


def claim(
    q: list[dict[str, Any]], n: list[dict[str, Any]]
) -> dict[str, tuple[float, float, float, int, list[float]]]:
    """The two halves for one (core, load): short-flow mean and long-flow goodput ratios."""
    return {
        "short": mice_stats.paired_ratio(q, n, mice_stats.short_ms),
        "long": mice_stats.paired_ratio(q, n, mice_stats.long_mbps),
    }


def claim_table(doc: dict[str, Any]) -> str:
    """Both halves of the claim for every core and load of one kernel."""
    lines = [
        f"Kernel {doc['kernel']}: qos_mod ÷ no marking, flow by flow on the same traces"
        f" (ratio of the means over the flows that finished in both; 95% bootstrap interval"
        f" resampling the pairs within each seed; then each seed's ratio; late start: the"
        f" most any flow of these runs started after its time in the trace). Claim: short"
        f" ≤ {SHORT_BOUND} at the top load, long ≥ {LONG_BOUND} at every load.",
        "",
        "| core | load | seeds | short mean ms none → qos_mod | short ratio (95% CI) | per seed"
        " | pairs | long Mbit/s none → qos_mod | long ratio (95% CI) | per seed | pairs |"
        " long holds | late start s |",
        "|---|---:|---:|---|---|---|---:|---|---|---|---:|---|---:|",
    ]
    for core, load, q, n in _pairs(doc):
        c = claim(q, n)
        sq, sn = _means(q, "short_mean"), _means(n, "short_mean")
        lq, ln = _means(q, "long_mbps"), _means(n, "long_mbps")
        s, lg = c["short"], c["long"]
        holds = _verdict(lg[0], lg[1], LONG_BOUND, above=True)
        lines.append(
            f"| {core} | {load:.2f} | {len(q)} | {fmt(sn)} → {fmt(sq)} "
            f"| {_interval(*s[:3])} | {', '.join(f'{x:.2f}' for x in s[4])} | {s[3]} "
            f"| {fmt(ln, '.3f')} → {fmt(lq, '.3f')} | {_interval(*lg[:3])} "
            f"| {', '.join(f'{x:.2f}' for x in lg[4])} | {lg[3]} | {holds} "
            f"| {fmt(max(r.get('slip_max', math.nan) for r in q + n), '.1f')} |"
        )
    return "\n".join(lines)


def _means(runs: list[dict[str, Any]], key: str) -> float:
    return mice_stats.spread([mice_stats.summary(r)[key] for r in runs])[0]


def _verdict(ratio: float, bound_side: float, bound: float, above: bool) -> str:
    """'yes' when the ratio and its interval's near end clear the bound, 'point only'
    when only the ratio does, 'no' otherwise."""
    if math.isnan(ratio):
        return "—"
    ok = ratio >= bound if above else ratio <= bound
    sure = bound_side >= bound if above else bound_side <= bound
    return "yes" if ok and sure else ("point only" if ok else "no")


def _pct(share: float) -> str:
    """A share as a percentage with two decimals, '—' when the runs did not record it."""
    return "—" if math.isnan(share) else f"{100 * share:.2f}%"


def order_table(doc: dict[str, Any]) -> str:
    """Packets out of order at the receiver and at the core, per core, load and scheme."""
    groups = grouped(ok_runs(doc))
    order = list(CORE_NAMES)
    lines = [
        f"Kernel {doc['kernel']}: order, mean over seeds. At the receiver: a packet that"
        " arrived after one its sender sent later (by the socket's IP ID), wherever it was"
        " reordered; at the core: a packet that left the core's qdisc after one of its flow"
        " that entered the core after it. Resent: retransmissions that arrived. Where the"
        " rest came from, by the receiver's rule: packets out of order already in the"
        " sender's own capture (as its stack handed them to its link), and where they"
        " entered the core.",
        "",
        "| core | load | scheme | flows | receiver: flows with a packet out of order"
        " | packets out of order | median position of the first | core: flows"
        " | packets | median position of the first | packets resent"
        " | out of order as sent | entering the core |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for core, load, scheme in sorted(groups, key=lambda k: (order.index(k[0]), k[1], k[2])):
        runs = groups[(core, load, scheme)]
        rs = [mice_stats.reordering(r) for r in runs]
        flows = mice_stats.spread([len(r["flows"]) for r in runs])[0]

        def m(key: str, rs: list[dict[str, float]] = rs) -> float:
            return mice_stats.spread([x[key] for x in rs])[0]

        lines.append(
            f"| {core} | {load:.2f} | {SCHEME_NAMES[scheme]} | {fmt(flows)} "
            f"| {fmt(100 * m('flows'), '.1f')}% | {fmt(100 * m('packets'), '.2f')}% "
            f"| {fmt(m('first'))} | {fmt(100 * m('core_flows'), '.1f')}% "
            f"| {fmt(100 * m('core_packets'), '.2f')}% | {fmt(m('core_first'))} "
            f"| {fmt(100 * m('resent'), '.2f')}% | {_pct(m('sent'))} | {_pct(m('entry'))} |"
        )
    return "\n".join(lines)


def counters_table(doc: dict[str, Any]) -> str | None:
    """rio's own counters per load and scheme (sum over seeds), or None without them."""
    runs = [r for r in ok_runs(doc) if r["core"] == "rio" and "in_enqueued" in r.get("rio", {})]
    if not runs:
        return None
    groups = grouped(runs)
    keys = ("in_enqueued", "in_early", "in_forced", "out_enqueued", "out_early", "out_forced")
    lines = [
        f"Kernel {doc['kernel']}: sch_rio's counters, summed over the seeds (`itmtool status`"
        " shows the same per qdisc); drop % is early and forced drops of the class over its"
        " arrivals.",
        "",
        "| load | scheme | in enqueued | in early | in forced | in drop % | out enqueued"
        " | out early | out forced | out drop % | full |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, load, scheme in sorted(groups):
        tot = {k: sum(r["rio"][k] for r in groups[("rio", load, scheme)]) for k in keys}
        full = sum(r["rio"]["limit_drops"] for r in groups[("rio", load, scheme)])

        def pct(c: str, tot: dict[str, int] = tot) -> str:
            arrived = tot[f"{c}_enqueued"] + tot[f"{c}_early"] + tot[f"{c}_forced"]
            drops = tot[f"{c}_early"] + tot[f"{c}_forced"]
            return fmt(100 * drops / arrived, ".2f") if arrived else "—"

        lines.append(
            f"| {load:.2f} | {SCHEME_NAMES[scheme]} | "
            + " | ".join(str(tot[k]) for k in keys[:3])
            + f" | {pct('in')} | "
            + " | ".join(str(tot[k]) for k in keys[3:])
            + f" | {pct('out')} | {full} |"
        )
    return "\n".join(lines)


def elephant_table(doc: dict[str, Any]) -> str:
    """The largest flow of each run at the top load: how long it took, what it lost."""
    runs = [r for r in ok_runs(doc) if r.get("elephant")]
    top = max((r["load"] for r in runs), default=math.nan)
    lines = [
        f"Kernel {doc['kernel']}: the largest flow of each trace at load {top:.2f}"
        " (flight: the sender's bytes sent and not yet acknowledged, in segments, from a"
        " capture at the sender; its mean over the 100 ms bins of the transfer).",
        "",
        "| core | seed | scheme | size kB | seconds | Mbit/s | resent | out of order"
        " | packets marked | mean flight | largest flight |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = list(CORE_NAMES)
    for r in sorted(
        (r for r in runs if r["load"] == top),
        key=lambda r: (order.index(r["core"]), r["seed"], r["scheme"]),
    ):
        ele = r["elephant"]
        row = next(f for f in r["flows"] if f[mice_stats.SIZE] == ele["size"])
        secs = row[mice_stats.SECONDS]
        flight = [x for x in ele.get("flight", []) if x]
        lines.append(
            f"| {r['core']} | {r['seed']} | {SCHEME_NAMES[r['scheme']]} | {ele['size'] / 1000:.0f}"
            f" | {fmt(secs, '.1f') if secs > 0 else 'failed'}"
            f" | {fmt(row[mice_stats.SENT] * 8 / secs / 1e6, '.3f') if secs > 0 else '—'}"
            f" | {ele['resent']} | {ele['out_of_order']} | {sum(b[3] for b in ele['trace'])}"
            f" | {fmt(sum(flight) / len(flight), '.1f') if flight else '—'}"
            f" | {max(flight, default=0) or '—'} |"
        )
    return "\n".join(lines)


def verdict(docs: list[dict[str, Any]]) -> list[str]:
    """Both halves of the claim, per kernel and core, in words."""
    out = []
    for doc in docs:
        by_core: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for core, load, q, n in _pairs(doc):
            by_core.setdefault(core, []).append((load, claim(q, n)))
        for core, rows in by_core.items():
            top_load, top = max(rows, key=lambda x: x[0])
            s = top["short"]
            short_ok = _verdict(s[0], s[2], SHORT_BOUND, above=False)
            longs = ", ".join(
                f"{ld:.2f}: {_interval(*c['long'][:3])}"
                for ld, c in sorted(rows, key=lambda x: x[0])
            )
            long_ok = all(
                _verdict(c["long"][0], c["long"][1], LONG_BOUND, above=True) == "yes"
                for _, c in rows
            )
            long_point = all(c["long"][0] >= LONG_BOUND for _, c in rows)
            out.append(
                f"- {doc['kernel']}, {CORE_NAMES.get(core, core)}: short-flow mean at load"
                f" {top_load:.2f} {_interval(*s[:3])} of no marking (≤ {SHORT_BOUND}:"
                f" {short_ok}); long-flow goodput {longs} (≥ {LONG_BOUND} at every load:"
                f" {'yes' if long_ok else 'point only' if long_point else 'no'})."
            )
    return out


def plot_elephant(docs: list[dict[str, Any]], path: Path) -> None:
    """The largest flow of the top load's first seed, per core: bytes delivered over time,
    no marking against qos_mod, with its resent and out-of-order packets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = [c for c in CORE_NAMES if any(r["core"] == c for d in docs for r in ok_runs(d))]
    fig, axes = plt.subplots(
        len(docs), len(cores), figsize=(5.5 * len(cores), 4 * len(docs)), squeeze=False
    )
    for row, doc in zip(axes, docs, strict=True):
        runs = ok_runs(doc)
        top = max(r["load"] for r in runs)
        seed = min(r["seed"] for r in runs)
        for ax, core in zip(row, cores, strict=True):
            twin = None
            for scheme, colour in (("none", "tab:blue"), ("qos_mod", "tab:orange")):
                got = [
                    r for r in runs
                    if (r["core"], r["load"], r["seed"], r["scheme"]) == (core, top, seed, scheme)
                ]  # fmt: skip
                ele = got[0].get("elephant") if got else None
                if not ele:
                    continue
                step = ele["bin"]
                total, xs, ys = 0, [], []
                for i, b in enumerate(ele["trace"]):
                    total += b[0]
                    xs.append(i * step)
                    ys.append(total / 1e6)
                label = (
                    f"{SCHEME_NAMES[scheme]}: {ele['resent']} resent,"
                    f" {ele['out_of_order']} out of order"
                )
                ax.plot(xs, ys, color=colour, label=label)
                if ele.get("flight"):
                    twin = twin or ax.twinx()
                    twin.plot(
                        [i * step for i in range(len(ele["flight"]))],
                        ele["flight"],
                        color=colour,
                        ls=":",
                        lw=1,
                    )
                    twin.set_ylabel("segments in flight (dotted)")
                for i, b in enumerate(ele["trace"]):
                    if b[1]:
                        ax.plot(i * step, ys[i], "x", color=colour, ms=5)
                    if b[2]:
                        ax.plot(i * step, ys[i], "o", mfc="none", color=colour, ms=6)
            ax.set_title(
                f"{doc['kernel'].split('+')[0]}, {core}, load {top}, seed {seed}: largest flow"
            )
            ax.set_xlabel("s since its first packet arrived (x: resent, o: out of order)")
            ax.set_ylabel("MB delivered")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section() -> list[str]:
    """The RIO part of the mice-elephants section (empty without data)."""
    from bench import mice_doc

    docs = load_docs()
    if not docs:
        return []
    IMG.mkdir(parents=True, exist_ok=True)
    plot_elephant(docs, IMG / ELEPHANT_PLOT)
    body = [*mice_doc.rio_intro(docs), "", *verdict(docs)]
    for doc in docs:
        body += ["", claim_table(doc), "", order_table(doc)]
        counters = counters_table(doc)
        if counters:
            body += ["", counters]
        body += ["", elephant_table(doc)]
    body += ["", f"![The largest flow, per core](img/{ELEPHANT_PLOT})", "", *mice_doc.rio_notes()]
    return body


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_rio_report",
            "python -m bench.mice_elephants --report rewrites the experiment's section of"
            " docs/benchmarks.md, the RIO core's included, from docs/data",
        )
    )
