"""The mice-elephants experiment on the page: tables, comparisons and plots.

Reads docs/data/mice_elephants-<kernel>.json (bench/mice_elephants.py writes
them) and rewrites the experiment's section of docs/benchmarks.md and its PNG
plots in docs/img/.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import mice_rio_report, mice_stats, vmbench
from bench.mice_plan import SCHEMES
from bench.mice_runs import (
    CORE_NAMES,
    DATA,
    IMG,
    SCHEME_NAMES,
    fmt,
    grouped,
    ok_runs,
    same_seeds,
)
from bench.mice_trace import MSS

CT_PLOT = "mice_elephants_ct.png"
LOAD_PLOT = "mice_elephants_load.png"
#: long flows may lose at most this fraction of their goodput to count as unharmed
GOODPUT_MARGIN = 0.10


def load_docs() -> list[dict[str, Any]]:
    """Every kernel's results on disk, in kernel order."""
    docs = [json.loads(p.read_text()) for p in sorted(DATA.glob("mice_elephants-*.json"))]
    return sorted(docs, key=lambda d: [int(x) for x in d["kernel"].split("-")[0].split(".")[:2]])


def _cell(values: list[float], spec: str = ".0f", scale: float = 1.0) -> str:
    mean, lo, hi = mice_stats.spread([v * scale for v in values])
    if math.isnan(mean):
        return "—"
    if len(values) == 1 or lo == hi:
        return fmt(mean, spec)
    return f"{fmt(mean, spec)} ({fmt(lo, spec)}-{fmt(hi, spec)})"


def _ratio(a: list[float], b: list[float]) -> str:
    ma, mb = mice_stats.spread(a)[0], mice_stats.spread(b)[0]
    return "—" if math.isnan(ma) or math.isnan(mb) or mb == 0 else f"{ma / mb:.2f}"


def partial(doc: dict[str, Any]) -> str:
    """A note for a run that the VM's time bound cut short, else ""."""
    if not doc.get("partial"):
        return ""
    done = len(doc["runs"])
    return f" (partial: {done} of {doc.get('planned', '?')} runs done in the time bound)"


def kernel_table(doc: dict[str, Any]) -> str:
    """The main comparison of one kernel as a Markdown table."""
    groups = grouped(ok_runs(doc))
    seeds = sorted({r["seed"] for r in ok_runs(doc)})
    lines = [
        f"Kernel {doc['kernel']}{partial(doc)}"
        f" — seeds {', '.join(map(str, seeds))}; mean over seeds with (lowest-highest):",
        "",
        "| core | load | scheme | offered | short mean ms | ÷ none | short p99 ms | ÷ none |"
        " short ≥ 1 s |"
        " long Mbit/s | ÷ none | util. | marks as rule | guest CPU idle | late start s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for core, load, scheme in sorted(groups, key=lambda k: (k[0], k[1], SCHEMES.index(k[2]))):
        runs = groups[(core, load, scheme)]
        base = [mice_stats.summary(r) for r in same_seeds(groups, (core, load, "none"), runs)]
        s = [mice_stats.summary(r) for r in runs]

        def col(name: str, rows: list[dict[str, float]]) -> list[float]:
            return [x[name] for x in rows]

        def vs_none(
            name: str, spec: str = ".0f", s: list[dict[str, float]] = s, base: Any = base
        ) -> str:
            return f"{_cell(col(name, s), spec)} | {_ratio(col(name, s), col(name, base))}"

        lines.append(
            f"| {core} | {load:.2f} | {SCHEME_NAMES.get(scheme, scheme)} "
            f"| {_cell([r['offered'] for r in runs], '.2f')} "
            f"| {vs_none('short_mean')} | {vs_none('short_p99')} "
            f"| {_cell(col('short_1s', s), '.0f', 100)}% | {vs_none('long_mbps', '.3f')} "
            f"| {_cell(col('utilisation', s), '.2f')} "
            f"| {_cell(col('agreement', s), '.1f', 100)}% "
            f"| {_cell(col('cpu_idle', s), '.0f', 100)}% "
            f"| {_cell(col('slip_max', s), '.2f')} |"
        )
    failed = [r for r in doc["runs"] if "error" in r]
    if failed:
        lines += ["", f"Runs that failed ({len(failed)}):"]
        lines += [
            f"- {r['scheme']}/{r['core']}/{r['load']}/seed {r['seed']}: {r['error']}"
            for r in failed
        ]
    return "\n".join(lines)


def pair_table(doc: dict[str, Any]) -> str:
    """qos_mod against the nftables rule and qos_ctrl: paired short-flow differences."""
    groups = grouped(ok_runs(doc))
    lines = [
        f"Kernel {doc['kernel']}: short-flow completion time, scheme minus qos_mod, paired"
        " flow by flow on the same traces (mean and 95% bootstrap interval, ms); qos_ctrl's"
        " own CPU time over the run, and per client packet it handled:",
        "",
        "| core | load | scheme | Δ mean ms | 95% interval | pairs | indistinguishable |"
        " qos_ctrl CPU (of one vCPU) | µs per packet |",
        "|---|---:|---|---:|---|---:|---|---:|---:|",
    ]
    for core, load, scheme in sorted(groups):
        if scheme not in ("nft", "qos_ctrl") or (core, load, "qos_mod") not in groups:
            continue
        a, b = groups[(core, load, scheme)], groups[(core, load, "qos_mod")]
        seeds = sorted({r["seed"] for r in a} & {r["seed"] for r in b})
        a = [r for r in a if r["seed"] in seeds]
        b = [r for r in b if r["seed"] in seeds]
        mean, lo, hi, n = mice_stats.paired_short_diff(a, b)
        same = "—" if n == 0 else ("yes" if lo <= 0 <= hi else "no")
        ctrl = [r for r in a if not math.isnan(r.get("ctrl_cpu", math.nan))]
        cpu = [r["ctrl_cpu"] for r in ctrl]
        pkts = sum(f[mice_stats.PACKETS] for r in ctrl for f in r["flows"])
        per_pkt = 1e6 * sum(cpu) / pkts if cpu and pkts else math.nan
        share = [r["ctrl_cpu"] / r["seconds"] for r in ctrl]
        lines.append(
            f"| {core} | {load:.2f} | {SCHEME_NAMES[scheme]} | {fmt(mean, '+.0f')} "
            f"| {fmt(lo, '+.0f')} … {fmt(hi, '+.0f')} | {n} | {same} "
            f"| {_cell(share, '.0f', 100) + '%' if cpu else '—'} | {fmt(per_pkt)} |"
        )
    return "\n".join(lines)


def sweep_table(doc: dict[str, Any]) -> str | None:
    """The threshold and offload sweep of one kernel, or None when it did not run."""
    runs = ok_runs(doc, "sweep")
    if not runs:
        return None
    first = runs[0]
    main = [
        r
        for r in ok_runs(doc)
        if (r["core"], r["load"], r["seed"]) == (first["core"], first["load"], first["seed"])
        and r["scheme"] in ("none", "qos_mod")
    ]
    lines = [
        f"Kernel {doc['kernel']}: core {runs[0]['core']}, load {runs[0]['load']:.2f},"
        f" seed {runs[0]['seed']} (one trace):",
        "",
        "| scheme | threshold | first packet | offloads | short mean ms | short p99 ms |"
        " long Mbit/s | util. | packets marked | marks as rule |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def order(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["offloads"], r["scheme"], r["threshold"], not r.get("mark_first", False))

    for r in sorted(main + runs, key=order):
        s = mice_stats.summary(r)
        marked = r["scheme"] != "none"
        first_pkt = "marked" if r.get("mark_first", False) else "as sent"
        lines.append(
            f"| {SCHEME_NAMES[r['scheme']]} | {r['threshold'] if marked else '—'} "
            f"| {first_pkt if marked else '—'} "
            f"| {'on' if r['offloads'] else 'off'} | {fmt(s['short_mean'])} "
            f"| {fmt(s['short_p99'])} "
            f"| {fmt(s['long_mbps'], '.3f')} | {fmt(s['utilisation'], '.2f')} "
            f"| {fmt(100 * s['marked'], '.0f')}% | {fmt(100 * s['agreement'], '.1f')}% |"
        )
    return "\n".join(lines)


def _grid(docs: list[dict[str, Any]]) -> tuple[Any, Any, list[str]]:
    """A figure with one row of panels per kernel and one column per core treatment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = sorted({r["core"] for d in docs for r in ok_runs(d)})
    fig, axes = plt.subplots(
        len(docs), len(cores), figsize=(5.5 * len(cores), 4 * len(docs)), squeeze=False
    )
    return fig, axes, cores


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ct(docs: list[dict[str, Any]], path: Path) -> None:
    """Completion time against flow size per scheme: top load, both cores, each kernel."""
    fig, axes, cores = _grid(docs)
    for row, doc in zip(axes, docs, strict=True):
        runs = ok_runs(doc)
        top = max(r["load"] for r in runs)
        for ax, core in zip(row, cores, strict=True):
            for scheme in SCHEMES:
                pts = [
                    (f[0], 1000 * f[1])
                    for r in runs
                    if r["core"] == core and r["load"] == top and r["scheme"] == scheme
                    for f in r["flows"]
                    if mice_stats.completed(f)
                ]
                if not pts:
                    continue
                xs, ys = _binned(pts)
                ax.plot(xs, ys, marker="o", ms=3, label=SCHEME_NAMES[scheme])
            ax.axvline(20 * MSS, color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{doc['kernel'].split('+')[0]}, {CORE_NAMES.get(core, core)}, load {top}")
            ax.set_xlabel("flow size (bytes); dotted: 20 segments")
            ax.set_ylabel("median completion time (ms)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    _save(fig, path)


def _binned(pts: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Median completion time in logarithmic size bins (two per octave... of 2^0.5)."""
    bins: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for size, ms in pts:
        bins[int(2 * math.log2(size))].append((size, ms))
    xs, ys = [], []
    for b in sorted(bins):
        group = bins[b]
        xs.append(mice_stats.percentile([s for s, _ in group], 50))
        ys.append(mice_stats.percentile([m for _, m in group], 50))
    return xs, ys


def plot_load(docs: list[dict[str, Any]], path: Path) -> None:
    """Short-flow mean completion time against offered load, per scheme, with the seeds' spread."""
    fig, axes, cores = _grid(docs)
    for row, doc in zip(axes, docs, strict=True):
        groups = grouped(ok_runs(doc))
        for ax, core in zip(row, cores, strict=True):
            for i, scheme in enumerate(SCHEMES):
                loads = sorted(ld for c, ld, s in groups if c == core and s == scheme)
                if not loads:
                    continue
                stats = [
                    mice_stats.spread(
                        [mice_stats.summary(r)["short_mean"] for r in groups[(core, ld, scheme)]]
                    )
                    for ld in loads
                ]
                xs = [ld + (i - 1.5) * 0.004 for ld in loads]
                ys = [m for m, _, _ in stats]
                err = [[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=SCHEME_NAMES[scheme])
            ax.set_title(f"{doc['kernel'].split('+')[0]}, {CORE_NAMES.get(core, core)}")
            ax.set_xlabel("offered load (fraction of the bottleneck)")
            ax.set_ylabel("short-flow mean completion (ms)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    _save(fig, path)


def verdict(docs: list[dict[str, Any]]) -> list[str]:
    """What the data says about the issue's three claims, kernel by kernel, in words."""
    out = []
    for doc in docs:
        groups = grouped(ok_runs(doc))
        kern = doc["kernel"]
        for core, load, scheme in sorted(groups):
            if scheme != "qos_mod" or (core, load, "none") not in groups:
                continue
            if load != max(ld for c, ld, _ in groups if c == core):
                continue
            q = [mice_stats.summary(r) for r in groups[(core, load, "qos_mod")]]
            n = [
                mice_stats.summary(r)
                for r in same_seeds(groups, (core, load, "none"), groups[(core, load, scheme)])
            ]
            qs, ns = (
                mice_stats.spread([x["short_mean"] for x in q]),
                mice_stats.spread([x["short_mean"] for x in n]),
            )
            ql, nl = (
                mice_stats.spread([x["long_mbps"] for x in q]),
                mice_stats.spread([x["long_mbps"] for x in n]),
            )
            by_seed = zip(q, n, strict=False)  # the same trace in both: compare seed by seed
            lower = all(a["short_mean"] < b["short_mean"] for a, b in by_seed)
            kept = ql[0] >= (1 - GOODPUT_MARGIN) * nl[0]
            out.append(
                f"- {kern}, {CORE_NAMES.get(core, core)}, load {load}: short-flow mean"
                f" {fmt(ns[0])} → {fmt(qs[0])} ms with qos_mod"
                f" ({'lower' if lower else 'NOT lower'} on every seed, {len(q)} seed(s));"
                f" long-flow goodput {fmt(nl[0], '.3f')} → {fmt(ql[0], '.3f')} Mbit/s"
                f" ({'within' if kept else 'NOT within'} the {GOODPUT_MARGIN:.0%} margin)."
            )
    return out


def write() -> None:
    """Rewrite the experiment's section of docs/benchmarks.md and its plots."""
    docs = load_docs()
    if not docs:
        raise SystemExit("no results in docs/data/mice_elephants-*.json: run the experiment first")
    IMG.mkdir(parents=True, exist_ok=True)
    plot_ct(docs, IMG / CT_PLOT)
    plot_load(docs, IMG / LOAD_PLOT)
    from bench import mice_doc

    body = mice_doc.section(docs, verdict(docs))
    for doc in docs:
        body += ["", kernel_table(doc), "", pair_table(doc)]
        sweep = sweep_table(doc)
        if sweep:
            body += ["", "Threshold and offloads:", "", sweep]
    rio = mice_rio_report.section()  # the RIO core's runs (issue 19), when there are some
    body += ["", *rio] if rio else []
    body += ["", *mice_doc.ANALYSIS, "", *mice_doc.PAPER]
    vmbench.write_section(
        "mice_elephants", "The war between mice and elephants (qos_mod at work)", body
    )


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_report",
            "python -m bench.mice_elephants --report rewrites the experiment's section of"
            " docs/benchmarks.md and its plots from docs/data",
        )
    )
