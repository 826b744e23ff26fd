"""The mice-elephants experiment's statistics: marking rules, per-run figures, spreads.

Pure logic over the JSON records the guest half writes (no I/O), so that the
numbers on the page can be checked by unit tests.  A run record holds its
configuration and one row per flow of the trace, in trace order::

    [size, seconds, sent, packets, marked, mismatches, where]

``seconds`` is negative for a flow that failed (no answer); a flow with
``sent < size`` was cut at the run's hard deadline.  ``packets``, ``marked``
and ``mismatches`` count the flow's client-to-server packets seen entering the
core router (after the ITM), how many carried TOS 0x10, and how many did not
carry the mark the scheme's rule gives them; ``where`` lists the first few
mismatching packets as ``position/flags`` (flags: 1 marked, 2 FIN) of
``packets``, so that a disagreement can be explained.  Runs that captured at the
receiver too add ``[rx packets, out of order, first out of order, resent,
out of order at the core, first of those]`` (bench/mice_order.py defines them).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

from bench.mice_trace import is_short

#: the schemes that leave a flow's first packet as sent (qos_mod's class 0) unless
#: they run with mark_first
FIRST_AS_SENT = ("qos_mod", "qos_ctrl")
#: the schemes that mark nothing
UNMARKED = ("none",)

SIZE, SECONDS, SENT, PACKETS, MARKED, MISMATCHES = range(6)
#: the receiver's view (bench/mice_order.py), in runs that recorded it: packets
#: that arrived, how many out of order, the first one's position (0: none), resent
RX_PACKETS, OUT_OF_ORDER, FIRST_OUT_OF_ORDER, RESENT = range(7, 11)
#: and the core's own share: packets that left the core's qdisc after a packet of
#: their flow that entered the core after them, and the first one's position
CORE_OUT_OF_ORDER, CORE_FIRST = range(11, 13)
#: and where the rest came from, by the same IP ID rule: packets out of order in the
#: sender's own capture (as its stack handed them to its link) and where they
#: entered the core (runs of 2026-12-06 on)
SENT_OUT_OF_ORDER, ENTRY_OUT_OF_ORDER = range(13, 15)


def expected_mark(
    scheme: str, index: int, fin: bool, threshold: int, mark_first: bool = False
) -> bool:
    """Whether the `index`-th (1-based) packet of a flow leaves the ITM with TOS 0x10.

    The paper's rule: SHORT while the flow has sent at most `threshold` packets,
    and a FIN is always SHORT.  qos_mod and qos_ctrl leave the first packet as
    the sender made it (the senders here send TOS 0) unless `mark_first`; the
    nftables rule set counts it like conntrack does.
    """
    if scheme in UNMARKED:
        return False
    if index == 1 and scheme in FIRST_AS_SENT and not mark_first:
        return False
    return index <= threshold or fin


def mismatches(scheme: str, flags: bytes, threshold: int, mark_first: bool = False) -> int:
    """Packets of one flow whose mark differs from the rule.

    `flags` holds one byte per packet in the order seen: bit 0 the mark (TOS
    0x10), bit 1 FIN.
    """
    return len(mismatched(scheme, flags, threshold, mark_first))


def mismatched(scheme: str, flags: bytes, threshold: int, mark_first: bool = False) -> list[int]:
    """The 1-based positions of the packets of one flow whose mark differs from the rule."""
    return [
        i
        for i, f in enumerate(flags, 1)
        if bool(f & 1) != expected_mark(scheme, i, bool(f & 2), threshold, mark_first)
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def completed(row: Sequence[float]) -> bool:
    """The flow delivered all its bytes and got the server's answer."""
    return row[SECONDS] > 0 and row[SENT] >= row[SIZE]


def summary(run: dict[str, Any]) -> dict[str, float]:
    """One run's figures: short-flow mean and p99 completion (ms), long goodput, marks.

    ``short_*`` are over completed short flows (at most 20 full segments);
    ``long_mbps`` is the mean per-flow goodput of the long flows that got an
    answer (a flow cut at the deadline counts the bytes it sent over its time);
    ``agreement`` is the fraction of packets marked as the scheme's rule says
    (nan when no packet was checked).
    """
    rows = run["flows"]
    short = [r for r in rows if is_short(r[SIZE])]
    long = [r for r in rows if not is_short(r[SIZE])]
    short_ms = [1000 * r[SECONDS] for r in short if completed(r)]
    long_mbps = [r[SENT] * 8 / r[SECONDS] / 1e6 for r in long if r[SECONDS] > 0]
    packets = sum(r[PACKETS] for r in rows)
    checked = run.get("checked", True)
    return {
        "short_mean": statistics.fmean(short_ms) if short_ms else math.nan,
        "short_p99": percentile(short_ms, 99),
        "short_done": len(short_ms) / len(short) if short else math.nan,
        # a lost SYN costs a 1 s retransmission timeout: its signature
        "short_1s": sum(ms >= 1000 for ms in short_ms) / len(short_ms) if short_ms else math.nan,
        "long_mbps": statistics.fmean(long_mbps) if long_mbps else math.nan,
        "long_done": sum(completed(r) for r in long) / len(long) if long else math.nan,
        "utilisation": float(run.get("utilisation", math.nan)),
        "cpu_idle": float(run.get("cpu_idle", math.nan)),
        "marked": sum(r[MARKED] for r in rows) / packets if packets else math.nan,
        "agreement": (
            1 - sum(r[MISMATCHES] for r in rows) / packets if packets and checked else math.nan
        ),
        "flows": float(len(rows)),
        "slip_max": float(run.get("slip_max", math.nan)),
    }


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, lowest and highest of the values that are numbers (nan, nan, nan for none)."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return math.nan, math.nan, math.nan
    return statistics.fmean(xs), min(xs), max(xs)


def paired_short_diff(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], *, resamples: int = 2000
) -> tuple[float, float, float, int]:
    """Mean difference (ms) of short-flow completion times, scheme `a` minus `b`.

    `a` and `b` are runs of the same traces (same seeds, in the same order), so
    flow i of one is flow i of the other: the differences are paired.  Returns
    (mean, low, high of a 95% bootstrap interval, pairs); an interval holding 0
    means the two cannot be told apart on these data.
    """
    diffs = []
    for ra, rb in zip(a, b, strict=True):
        for fa, fb in zip(ra["flows"], rb["flows"], strict=True):
            if is_short(fa[SIZE]) and completed(fa) and completed(fb):
                diffs.append(1000 * (fa[SECONDS] - fb[SECONDS]))
    if not diffs:
        return math.nan, math.nan, math.nan, 0
    rng = random.Random(7)
    n = len(diffs)
    means = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(resamples))
    return statistics.fmean(diffs), percentile(means, 2.5), percentile(means, 97.5), n


def short_ms(row: Sequence[Any]) -> float | None:
    """A short flow's completion time in ms, None for a long or unfinished flow."""
    return 1000 * row[SECONDS] if is_short(row[SIZE]) and completed(row) else None


def long_mbps(row: Sequence[Any]) -> float | None:
    """A long flow's goodput in Mbit/s (as `summary` counts it), None for a short or failed one."""
    if is_short(row[SIZE]) or row[SECONDS] <= 0:
        return None
    return float(row[SENT] * 8 / row[SECONDS] / 1e6)


def paired_ratio(
    a: Sequence[dict[str, Any]],
    b: Sequence[dict[str, Any]],
    value: Any,
    *,
    resamples: int = 2000,
) -> tuple[float, float, float, int, list[float]]:
    """The ratio of the mean of `value` over flows, runs `a` over runs `b`, paired.

    `a` and `b` are runs of the same traces in the same seed order, so flow i of
    one is flow i of the other; a flow counts when `value` (a function of a row,
    None to leave it out) has a value in both.  Returns (ratio, low, high of a
    95% bootstrap interval that resamples the pairs within each seed, pairs,
    the ratio of each seed).
    """
    seeds = []
    for ra, rb in zip(a, b, strict=True):
        pairs = [
            (va, vb)
            for fa, fb in zip(ra["flows"], rb["flows"], strict=True)
            if (va := value(fa)) is not None and (vb := value(fb)) is not None
        ]
        if pairs:
            seeds.append(pairs)
    if not seeds:
        return math.nan, math.nan, math.nan, 0, []

    def ratio(groups: Sequence[Sequence[tuple[float, float]]]) -> float:
        den = sum(vb for g in groups for _, vb in g)
        return sum(va for g in groups for va, _ in g) / den if den else math.nan

    rng = random.Random(7)
    boot = sorted(ratio([rng.choices(g, k=len(g)) for g in seeds]) for _ in range(resamples))
    return (
        ratio(seeds),
        percentile(boot, 2.5),
        percentile(boot, 97.5),
        sum(len(g) for g in seeds),
        [ratio([g]) for g in seeds],
    )


def reordering(run: dict[str, Any]) -> dict[str, float]:
    """The receiver's view of one run: flows with a packet out of order, packets out of
    order and resent (fractions of the packets that arrived), the median position of a
    flow's first out-of-order packet; the same for the core's own share (``core_*``);
    packets out of order as sent and as they entered the core (``sent``, ``entry``);
    nan for a run without these captures."""
    rows = [r for r in run["flows"] if len(r) > CORE_FIRST]
    if not rows:
        return dict.fromkeys(
            ("flows", "packets", "resent", "first", "core_flows", "core_packets", "core_first",
             "sent", "entry"),
            math.nan,
        )  # fmt: skip
    arrived = sum(r[RX_PACKETS] for r in rows)
    sources = len(rows[0]) > ENTRY_OUT_OF_ORDER  # the sender's and entry counts recorded

    def share(col: int) -> float:
        return sum(r[col] for r in rows) / arrived if arrived else math.nan

    return {
        "flows": sum(r[OUT_OF_ORDER] > 0 for r in rows) / len(rows),
        "packets": share(OUT_OF_ORDER),
        "resent": share(RESENT),
        "first": percentile([r[FIRST_OUT_OF_ORDER] for r in rows if r[FIRST_OUT_OF_ORDER]], 50),
        "core_flows": sum(r[CORE_OUT_OF_ORDER] > 0 for r in rows) / len(rows),
        "core_packets": share(CORE_OUT_OF_ORDER),
        "core_first": percentile([r[CORE_FIRST] for r in rows if r[CORE_FIRST]], 50),
        "sent": share(SENT_OUT_OF_ORDER) if sources else math.nan,
        "entry": share(ENTRY_OUT_OF_ORDER) if sources else math.nan,
    }


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_stats",
            "it is a part of the mice-elephants experiment;"
            " run python -m bench.mice_elephants (see its --help)",
        )
    )
