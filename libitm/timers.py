"""Periodic timers (the paper's ``itm_register_timer``) on the loop's clock."""

from __future__ import annotations

import functools
import heapq
import inspect
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("libitm")

#: jiffies per second for the paper's ``itm_register_timer(fn, timeout)``: user
#: space's clock tick (USER_HZ, ``sysconf(_SC_CLK_TCK)``), which is also the HZ
#: of the paper's Linux 2.4 on x86. ``timeout / HZ`` is the period in seconds.
HZ = 100


def jiffies_to_seconds(jiffies: int) -> float:
    """The period of ``jiffies`` ticks of :data:`HZ`, in seconds."""
    if isinstance(jiffies, bool) or not isinstance(jiffies, int) or jiffies < 1:
        raise ValueError(f"timer timeout must be a positive number of jiffies, not {jiffies!r}")
    return jiffies / HZ


def with_data(fn: Callable[..., object], data: object) -> Callable[[], object]:
    """``fn`` as the timer calls it: ``fn(data)`` when ``fn`` requires one positional
    argument (the paper's timer function), else ``fn()``."""
    if not callable(fn):
        raise TypeError("timer function must be callable")
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return fn
    required = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return functools.partial(fn, data) if len(required) == 1 else fn


@dataclass(eq=False)
class TimerHandle:
    """A registered timer; pass it to ``unregister_timer``."""

    fn: Callable[[], object]
    interval: float
    deadline: float = 0.0
    active: bool = True
    fired: int = 0
    errors: int = 0
    _armed: bool = field(default=False, repr=False)


class TimerQueue:
    """A heap of periodic timers.

    ``catch_up``: fire once for every period that elapsed (offline replay, where
    time jumps with the trace) instead of skipping missed periods (live).
    """

    def __init__(self, catch_up: bool = False, strict: bool = False) -> None:
        self.catch_up = catch_up
        self.strict = strict
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._count = itertools.count()
        self._pending: list[TimerHandle] = []

    def add(self, fn: Callable[[], object], interval: float, now: float | None) -> TimerHandle:
        """Register ``fn`` every ``interval`` seconds; ``now`` None: arm at :meth:`start`."""
        if not callable(fn):
            raise TypeError("timer function must be callable")
        if not isinstance(interval, int | float) or not interval > 0:
            raise ValueError(
                f"timer interval must be a positive number of seconds, not {interval!r}"
            )
        h = TimerHandle(fn, float(interval))
        if now is None:
            self._pending.append(h)
        else:
            self._arm(h, now)
        return h

    def start(self, now: float) -> None:
        """Arm the timers registered before the clock started."""
        for h in self._pending:
            if h.active:
                self._arm(h, now)
        self._pending.clear()

    def remove(self, h: TimerHandle) -> None:
        """Stop a timer (lazily removed from the heap)."""
        h.active = False

    def next_deadline(self) -> float | None:
        """When the next active timer is due."""
        while self._heap and not self._heap[0][2].active:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: float, set_clock: Callable[[float], None] | None = None) -> int:
        """Fire every timer due at ``now``; returns how many fired."""
        fired = 0
        while self._heap and self._heap[0][0] <= now:
            deadline, _, h = heapq.heappop(self._heap)
            if not h.active:
                continue
            if set_clock is not None:
                set_clock(deadline)
            h.fired += 1
            fired += 1
            try:
                h.fn()
            except Exception:
                h.errors += 1
                if self.strict:
                    raise
                log.exception("timer %r raised; it keeps running", h.fn)
            if h.active:
                nxt = deadline + h.interval
                if not self.catch_up and nxt <= now:
                    nxt = now + h.interval
                h.deadline = nxt
                heapq.heappush(self._heap, (nxt, next(self._count), h))
        return fired

    def _arm(self, h: TimerHandle, now: float) -> None:
        h.deadline = now + h.interval
        h._armed = True
        heapq.heappush(self._heap, (h.deadline, next(self._count), h))
