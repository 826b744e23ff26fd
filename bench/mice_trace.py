"""The mice-elephants workload: TCP transfers with Pareto sizes and Poisson arrivals.

Pure logic, no I/O: a trace is a seeded list of (start time, size) pairs, so
every scheme of the experiment replays exactly the same arrivals.

Sizes follow a *bounded* Pareto distribution (shape ``alpha``, smallest
``low`` bytes, largest ``high`` bytes): heavy-tailed as Web transfers are, but
bounded so that one run finishes in bounded time.  The arrival rate is set so
that the offered load (mean size x rate) is ``load`` x the bottleneck's rate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: TCP payload of a full-sized segment on the experiment's veths
MSS = 1448


@dataclass(frozen=True)
class Sizes:
    """A bounded Pareto distribution of transfer sizes in bytes."""

    alpha: float = 1.2
    low: int = 8_000
    high: int = 2_000_000

    def mean(self) -> float:
        """The distribution's mean in bytes (closed form of the bounded Pareto)."""
        a, lo, hi = self.alpha, float(self.low), float(self.high)
        ratio = (lo / hi) ** a
        if a == 1.0:
            raise ValueError("alpha must not be 1")
        return float((lo**a / (1 - ratio)) * (a / (a - 1)) * (lo ** (1 - a) - hi ** (1 - a)))

    def draw(self, rng: random.Random) -> int:
        """One size, by inverting the bounded Pareto's distribution function."""
        a, lo, hi = self.alpha, float(self.low), float(self.high)
        u = rng.random()
        x = float(lo / (1 - u * (1 - (lo / hi) ** a)) ** (1 / a))
        return max(self.low, min(self.high, round(x)))


@dataclass(frozen=True)
class Flow:
    """One transfer of the trace: when it starts (seconds from the run's start), how big."""

    start: float
    size: int


def arrival_rate(load: float, rate_bps: float, sizes: Sizes) -> float:
    """Flows per second that offer `load` x `rate_bps` on average."""
    return load * rate_bps / 8 / sizes.mean()


def trace(seed: int, load: float, rate_bps: float, window: float, sizes: Sizes) -> list[Flow]:
    """Poisson arrivals over `window` seconds at the rate that offers `load`, seeded.

    The same (seed, load, rate, window, sizes) always gives the same trace.
    """
    rng = random.Random(f"mice-elephants/{seed}/{load}")
    lam = arrival_rate(load, rate_bps, sizes)
    flows: list[Flow] = []
    t = rng.expovariate(lam)
    while t < window:
        flows.append(Flow(round(t, 6), sizes.draw(rng)))
        t += rng.expovariate(lam)
    return flows


def offered_load(flows: list[Flow], rate_bps: float, window: float) -> float:
    """The load the trace really offers: its bytes over what the bottleneck carries in `window`."""
    return sum(f.size for f in flows) * 8 / (rate_bps * window)


def segments(size: int) -> int:
    """Full-sized data segments a transfer of `size` bytes needs."""
    return -(-size // MSS)


def is_short(size: int, threshold: int = 20) -> bool:
    """A transfer whose data fits in `threshold` segments: a mouse by the paper's rule."""
    return segments(size) <= threshold


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_trace",
            "it is a part of the mice-elephants experiment;"
            " run python -m bench.mice_elephants (see its --help)",
        )
    )
