"""A model of sch_rio's decisions on a stalled queue, for the VM test's synthetic trace.

The RED arithmetic is include/net/red.h's, in integers: with ``wlog`` 0 the
average is the queue length the arriving packet sees; between the thresholds a
packet is dropped when ``(qavg - min) * count >= qR``, where ``qR`` is drawn
uniformly as ``random_u32 // (max_P // (max - min))`` after every drop (and
when ``count`` starts); at or above max it is a forced drop.  "In" packets are
judged by the "in" profile against the "in" packets queued, "out" packets by
the "out" profile against all packets queued (Clark and Fang's RIO).  The
first packet accepted leaves at once (the stalled parent's first token), the
others stay.  Simulating many runs gives the distribution of the early-drop
counts that the kernel's one run must fall in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """One RED profile as sent to the kernel (max_p as a fraction of 2^32)."""

    min: int
    max: int
    max_p: int

    @property
    def max_p_delta(self) -> int:
        """red_set_parms's max_P / (qth_max - qth_min), at least 1."""
        return max(self.max_p // max(self.max - self.min, 1), 1)


@dataclass
class Counts:
    """What the kernel's xstats count for one trace."""

    in_enqueued: int = 0
    out_enqueued: int = 0
    in_early: int = 0
    out_early: int = 0
    in_forced: int = 0
    out_forced: int = 0


class _Red:
    def __init__(self, prof: Profile, rng: random.Random) -> None:
        self.prof, self.rng = prof, rng
        self.qcount, self.qR = -1, 0

    def _random(self) -> int:
        return self.rng.getrandbits(32) // self.prof.max_p_delta

    def action(self, qavg: int) -> str:
        """red_action: "accept", "early" or "forced"."""
        if qavg < self.prof.min:
            self.qcount = -1
            return "accept"
        if qavg >= self.prof.max:
            self.qcount = -1
            return "forced"
        self.qcount += 1
        if self.qcount:
            if (qavg - self.prof.min) * self.qcount >= self.qR:
                self.qcount = 0
                self.qR = self._random()
                return "early"
        else:
            self.qR = self._random()
        return "accept"


def run(trace: list[bool], inp: Profile, out: Profile, rng: random.Random) -> Counts:
    """The counts of one trace (True: an "in" packet) through a stalled RIO queue."""
    red_in, red_out = _Red(inp, rng), _Red(out, rng)
    qlen = in_qlen = 0
    sent_first = False
    c = Counts()
    for is_in in trace:
        verdict = red_in.action(in_qlen) if is_in else red_out.action(qlen)
        key = "in" if is_in else "out"
        if verdict != "accept":
            setattr(c, f"{key}_{verdict}", getattr(c, f"{key}_{verdict}") + 1)
            continue
        setattr(c, f"{key}_enqueued", getattr(c, f"{key}_enqueued") + 1)
        if not sent_first:
            sent_first = True  # dequeued at once: the queue stays empty
            continue
        qlen += 1
        in_qlen += is_in
    return c


def distribution(
    trace: list[bool], inp: Profile, out: Profile, rounds: int, samples: int, seed: int = 1
) -> list[Counts]:
    """`samples` sums of `rounds` runs of the trace."""
    rng = random.Random(seed)
    sums = []
    for _ in range(samples):
        total = Counts()
        for _ in range(rounds):
            one = run(trace, inp, out, rng)
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(one, name))
        sums.append(total)
    return sums


def interval(values: list[int], tail: float) -> tuple[int, int]:
    """The [tail, 1 - tail] quantiles of `values`."""
    ordered = sorted(values)
    lo = ordered[int(tail * (len(ordered) - 1))]
    hi = ordered[int((1 - tail) * (len(ordered) - 1))]
    return lo, hi
