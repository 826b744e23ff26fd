"""The path table of one destination: probes, smoothed RTT and loss, the choice.

Pure logic over a clock passed in, so that every rule is tested with a fake
clock: :class:`DestState` says which paths to probe now (:meth:`due_probes`),
takes the acknowledgements (:meth:`on_ack`), turns overdue probes into losses
(:meth:`expire`) and decides (:meth:`evaluate`).

* Score of a path: ``srtt * (1 + loss_weight * max(0, loss - loss_floor))``,
  with ``srtt`` and ``loss`` exponentially smoothed; a path without an answer
  yet, or abandoned, has no score. A path whose last answer looks clearly
  better than the path in use is probed as often as that one for ``hot_time``,
  so that its smoothed RTT catches up quickly; three samples in a row all 15%
  off the smoothed RTT replace it with their median (the path changed).
* Start-up: for ``startup_time`` after the first packet every path is probed
  every ``startup_interval``; then the best score is taken outright.
* Hysteresis: a better path is adopted only when its score beats the current
  one by ``margin`` and ``min_gain`` at ``confirm`` consecutive evaluations.
* Watch of the path in use (BFD's demand mode): the destination ITM's own
  tunnelled datagrams carry a receipt naming the path our data last reached
  it by (:meth:`DestState.note_heard`); when it sends us nothing, it watches
  our data itself and sends a receipt every ``receipt_interval`` (which vouches
  for the path) and a notice when the data stops (:meth:`DestState.on_notice`:
  the path is probed at once and left unless it answers). While receipts come
  or a receipt vouches, the path in use is probed only every two
  ``idle_interval`` to refresh its RTT; once it has been silent for
  ``detect_interval`` (a slow one-way flow: always) every ``detect_interval``.
  All this only while packets go out (within ``quiet_after``): a pause has
  nothing to fail over, the path in use is then probed every ``idle_interval``
  like the others. The receiving side's half is :meth:`DestState.note_peer_data`,
  :meth:`DestState.receipt` and :meth:`DestState.peer_watch`.
* Abandonment: ``dead_after`` consecutive losses on the path in use switch at
  once to the best live path (the direct path when none is). The first loss on
  the path in use, or traffic going out with nothing coming back for
  ``stall_after`` (but less than ``stall_window``: a flow that never answers is
  not a stall), races probes over every path at once; stall races back off
  (``stall_holdoff`` doubling up to ``stall_max``) until the path in use loses
  a probe.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from .config import ProbeSettings

DIRECT = "direct"


@dataclass
class PathState:
    """One way to the destination: ``via`` None is the direct path."""

    name: str
    via: str | None
    srtt: float | None = None
    rttvar: float = 0.0
    losses_in_row: int = 0
    down: bool = False  # the path in use went quiet for the detection time
    acks: int = 0
    lost: int = 0
    sent: int = 0
    last_ack: float = 0.0
    last_heard: float = -1e9  # the destination's receipt of data sent on this path
    vouched_until: float = -1e9  # the destination watches our data on it until then
    suspect_at: float = -1e9  # a stop notice came: down unless a probe sent since is answered
    heard: int = 0
    last_sent: float = -1e9
    last_rtt: float | None = None
    next_probe: float = 0.0
    hot_until: float = -1e9  # probed like the path in use until then (a likely better path)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=3))
    outcomes: deque[bool] = field(default_factory=deque)  # the last probes: True = lost

    def timeout(self, s: ProbeSettings) -> float:
        """How long a probe on this path may stay unanswered."""
        if self.srtt is None:
            return s.first_timeout
        return max(s.min_timeout, 2 * self.srtt + 4 * self.rttvar)

    def alive(self, s: ProbeSettings) -> bool:
        """Answered at least once, not abandoned, not detected down."""
        return self.srtt is not None and self.losses_in_row < s.dead_after and not self.down

    @property
    def loss(self) -> float:
        """The share of the last probes (up to ``loss_window``) that were lost."""
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    def note_outcome(self, lost: bool, s: ProbeSettings) -> None:
        """Count one probe's fate into the loss window."""
        self.outcomes.append(lost)
        while len(self.outcomes) > s.loss_window:
            self.outcomes.popleft()

    def score(self, s: ProbeSettings) -> float | None:
        """Lower is better; None when the path is not usable."""
        if not self.alive(s):
            return None
        assert self.srtt is not None
        return self.srtt * self.penalty(s)

    def penalty(self, s: ProbeSettings) -> float:
        """The loss factor of the score: ``1 + loss_weight * max(0, loss - loss_floor)``,
        the loss counted without the window's first ``loss_forgive`` losses."""
        if not self.outcomes:
            return 1.0
        counted = max(0, sum(self.outcomes) - s.loss_forgive) / len(self.outcomes)
        return 1 + s.loss_weight * max(0.0, counted - s.loss_floor)

    def reset(self) -> None:
        """Forget the measurements (the destination went idle)."""
        self.srtt = None
        self.rttvar = 0.0
        self.losses_in_row = 0
        self.down = False
        self.last_rtt = None
        self.last_ack = 0.0
        self.last_heard = -1e9
        self.vouched_until = -1e9
        self.suspect_at = -1e9
        self.hot_until = -1e9
        self.recent.clear()
        self.outcomes.clear()


@dataclass(frozen=True)
class Decision:
    """A change of path (or the first choice), with the table that made it."""

    time: float
    dest: str
    old: str
    new: str
    reason: str
    table: tuple[tuple[str, float | None, float, int], ...]  # name, srtt, loss, losses in row

    def line(self) -> str:
        """One log line: the change and every path's RTT and loss."""
        cells = " ".join(
            f"{n}={'-' if r is None else f'{r * 1000:.1f}ms'}/{loss * 100:.0f}%"
            + (f"/x{row}" if row else "")
            for n, r, loss, row in self.table
        )
        return f"{self.dest}: {self.old} -> {self.new} ({self.reason}) {cells}"


@dataclass
class DestState:
    """Paths, probes in flight and the current choice for one destination ITM."""

    name: str
    settings: ProbeSettings
    paths: list[PathState]
    current: str = DIRECT
    current_since: float = 0.0
    active: bool = False
    activated: float = 0.0
    started: bool = False  # the start-up choice has been made
    last_out: float = -1e9
    sending_since: float = -1e9  # the first packet after a pause of quiet_after
    last_in: float = -1e9
    race_until: float = -1e9
    last_race: float = -1e9
    stall_holdoff: float = 0.0
    next_eval: float = 0.0
    candidate: str | None = None
    confirmed: int = 0
    switches: int = 0
    probes_sent: int = 0
    in_flight: dict[int, tuple[str, float]] = field(default_factory=dict)
    peer_tag: int = -1  # the path tag of the last data from this ITM's traffic...
    peer_at: float = -1e9  # ... and when it arrived (what our receipts say)
    peer_gap: float = 0.0  # the usual time between its arrivals (0: unknown)
    peer_via: str | None = None  # the relay it came through
    peer_stopped: bool = True  # its silence was reported (or it is too slow to watch)
    receipt_out: float = -1e9  # when we last sent it a receipt
    decisions: deque[Decision] = field(default_factory=lambda: deque(maxlen=50))
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def make(cls, name: str, neighbours: dict[str, str], settings: ProbeSettings) -> DestState:
        """The direct path and one path through each neighbour."""
        paths = [PathState(DIRECT, None)] + [PathState(n, a) for n, a in neighbours.items()]
        return cls(name, settings, paths)

    # ------------------------------------------------------------ lookups
    def path(self, name: str) -> PathState:
        """The path called ``name``."""
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def current_path(self) -> PathState:
        """The path packets take now."""
        return self.path(self.current)

    def table(self) -> tuple[tuple[str, float | None, float, int], ...]:
        """``(name, srtt, loss, losses in a row)`` of every path."""
        return tuple((p.name, p.srtt, p.loss, p.losses_in_row) for p in self.paths)

    # ------------------------------------------------------------ traffic
    def note_out(self, now: float) -> None:
        """A packet for this destination left; the first one starts probing."""
        if now - self.last_out > self.settings.quiet_after:
            self.sending_since = now
        self.last_out = now
        if not self.active:
            self.active = True
            self.activated = now
            self.started = False
            self.current = DIRECT
            self.in_flight.clear()
            for p in self.paths:
                p.reset()
                p.next_probe = now

    def note_in(self, now: float) -> None:
        """A packet from this destination arrived."""
        self.last_in = now

    def sending(self, now: float) -> bool:
        """Packets went out within ``quiet_after``: the path in use is watched closely."""
        return now - self.last_out <= self.settings.quiet_after

    def note_heard(self, tag: int, now: float, vouch: float = 0.0) -> PathState | None:
        """The destination ITM says, in an authenticated datagram, that our data
        sent on path number ``tag`` reached it within the last ``detect_interval``:
        that path is alive as surely as if a probe had been answered (the BFD way,
        the traffic is the probe); with ``vouch``, that it watches our data for
        that long and will say when it stops. Returns the path (None for an
        unknown tag)."""
        if not 0 <= tag < len(self.paths):
            return None
        p = self.paths[tag]
        p.last_heard = max(p.last_heard, now)  # a receipt reported late moves nothing back
        p.vouched_until = max(p.vouched_until, now + vouch)
        p.heard += 1
        return p

    def on_notice(self, tag: int, silence: float, now: float) -> PathState | None:
        """A NOTICE from the destination ITM about our data on path ``tag``: a
        receipt (``silence`` 0), or that it stopped arriving ``silence`` ago. If
        we kept sending on the path in use since, long enough for the data to
        have arrived, the path is probed at once (a race): it is down unless that
        probe is answered within ``max(notice_confirm, 2*srtt + 4*rttvar)`` (a
        relay that only stalled is not left). Returns the path it suspects (or
        heard)."""
        s = self.settings
        if not 0 <= tag < len(self.paths):
            return None
        if silence <= 0:
            return self.note_heard(tag, now, 1.5 * s.receipt_interval)
        p = self.paths[tag]
        p.vouched_until = now
        stopped = now - silence
        if (
            p.name == self.current
            and self.started
            and not p.down
            and self.sending(now)
            and self.current_since < stopped
            and self.sending_since < stopped
            and self.last_out > stopped + (p.srtt or 0.0)
        ):
            p.suspect_at = now
            self.start_race(now)
            return p
        return None

    def note_peer_data(
        self, tag: int, now: float, via: str | None = None, packets: int = 1
    ) -> None:
        """Data from this destination's ITM arrived, sent on its path ``tag``
        (through the relay at ``via``): ``packets`` datagrams since the last call,
        the last of them at ``now``.

        The daemon's own data path calls it once per datagram; the kernel data
        path's poll reports how many arrived since the previous poll and when
        the last did: the usual gap is then the time since the previous last
        arrival spread over those packets, not the polling period."""
        packets = max(1, packets)
        span = now - self.peer_at
        if span > self.settings.quiet_after:
            self.peer_gap = 0.0  # a new run of data: its pace is not known yet
        else:
            gap = span / packets
            if self.peer_gap == 0.0:
                self.peer_gap = gap
            else:
                # the smoothing of ``packets`` arrivals one gap apart each
                self.peer_gap += (1 - 0.8**packets) * (gap - self.peer_gap)
        self.peer_tag, self.peer_at, self.peer_via = tag, now, via
        self.peer_stopped = False

    def receipt_due(self, now: float) -> int | None:
        """The receipt our data to this ITM carries now (nothing recorded): the tag
        of the path its last data arrived on, when that was within
        ``detect_interval``."""
        if self.peer_tag >= 0 and now - self.peer_at <= self.settings.detect_interval:
            return self.peer_tag
        return None

    def receipt(self, now: float) -> int | None:
        """The path tag to acknowledge in the datagram we send this ITM now (see
        :meth:`receipt_due`); a receipt given is recorded (:meth:`note_receipt_sent`)."""
        tag = self.receipt_due(now)
        if tag is not None:
            self.note_receipt_sent(now)
        return tag

    def note_receipt_sent(self, now: float) -> None:
        """Our data carried a receipt to this ITM at ``now``: no receipt of its own
        (a NOTICE) is owed for ``receipt_interval``."""
        self.receipt_out = max(self.receipt_out, now)

    def peer_watch(self, now: float) -> tuple[bool, int, float] | None:
        """What we owe this ITM about its data now, as ``(stopped, tag, silence)``:
        a receipt on its own every ``receipt_interval`` while its data comes at
        least every ``watch_gap`` and nothing of ours carried one, and once, when
        that data stops for ``watch_factor`` times its usual gap (at least
        ``watch_min``), that it stopped."""
        s = self.settings
        if self.peer_stopped or self.peer_tag < 0:
            return None
        silence = now - self.peer_at
        watching = 0.0 < self.peer_gap <= s.watch_gap
        if watching and silence > max(s.watch_factor * self.peer_gap, s.watch_min):
            self.peer_stopped = True
            return True, self.peer_tag, silence
        if silence > s.quiet_after:
            self.peer_stopped = True  # it slowed down and stopped: nothing to tell
            return None
        if watching and now - self.receipt_out >= s.receipt_interval:
            self.receipt_out = now
            return False, self.peer_tag, 0.0
        return None

    def tag(self, p: PathState) -> int:
        """The number of path ``p`` in the table (what receipts name)."""
        return self.paths.index(p)

    # ------------------------------------------------------------ probing
    def _interval(self, p: PathState, now: float) -> float:
        s = self.settings
        if now < self.race_until:
            return s.race_interval
        if not self.started:
            return s.startup_interval
        if p.losses_in_row and s.retry_interval:
            return s.retry_interval
        if p.name == self.current:
            # heard from through the traffic itself: only a slow refresh of the RTT
            heard = now - p.last_heard < s.detect_interval or now < p.vouched_until
            if heard:
                # only to keep its RTT fresh, but as fresh as a rival's while one is hot
                rival = any(now < q.hot_until for q in self.paths if q is not p)
                return s.active_interval if rival else 2 * s.idle_interval
            return s.detect_interval if self.sending(now) else s.idle_interval
        if now < p.hot_until:
            return s.active_interval
        return s.idle_interval

    def due_probes(self, now: float) -> list[tuple[int, PathState]]:
        """The probes to send now: ``(seq, path)``; each is recorded as in flight."""
        if not self.active:
            return []
        out = []
        for p in self.paths:
            due = p.next_probe
            if p.name == self.current and self.started and self.sending(now):
                # the path in use is probed once it has been silent for an interval
                alive_at = max(p.last_heard, min(p.vouched_until, now))
                due = min(due, max(p.last_sent, alive_at) + self.settings.detect_interval)
            if now >= due:
                seq = next(self._seq) & 0xFFFFFFFF
                self.in_flight[seq] = (p.name, now)
                p.sent += 1
                p.last_sent = now
                p.next_probe = now + self._interval(p, now)
                out.append((seq, p))
        self.probes_sent += len(out)
        return out

    def on_ack(self, seq: int, now: float) -> PathState | None:
        """An acknowledgement arrived; returns its path (None if unknown or late)."""
        entry = self.in_flight.pop(seq, None)
        if entry is None:
            return None
        name, sent = entry
        p = self.path(name)
        rtt = max(now - sent, 1e-6)
        s = self.settings
        p.recent.append(rtt)
        if p.srtt is None:
            p.srtt, p.rttvar = rtt, rtt / 2
        else:
            p.rttvar += s.rtt_alpha * (abs(p.srtt - rtt) - p.rttvar)
            p.srtt += s.rtt_alpha * (rtt - p.srtt)
            lo, hi = min(p.recent), max(p.recent)
            if len(p.recent) == p.recent.maxlen and (
                hi < p.srtt * (1 - s.margin) or lo > p.srtt * (1 + s.margin)
            ):
                # the last samples all lie well off the average: the path changed
                p.srtt = sorted(p.recent)[len(p.recent) // 2]
        if p.losses_in_row >= s.dead_after or p.down:
            # back from an outage: the outage made it dead, it is not a loss rate
            for _ in range(p.losses_in_row):
                if p.outcomes and p.outcomes[-1]:
                    p.outcomes.pop()
        p.note_outcome(False, s)
        if sent >= p.suspect_at:
            p.suspect_at = -1e9  # answered since the stop notice: it only stalled
        p.losses_in_row = 0
        p.down = False
        p.last_rtt = rtt
        p.acks += 1
        p.last_ack = now
        return p

    def expire(self, now: float) -> list[PathState]:
        """Count overdue probes as lost; returns the paths that lost one."""
        lost = []
        s = self.settings
        for seq, (name, sent) in list(self.in_flight.items()):
            p = self.path(name)
            if now - sent > p.timeout(s):
                del self.in_flight[seq]
                p.note_outcome(True, s)
                p.losses_in_row += 1
                p.lost += 1
                lost.append(p)
                if s.retry_interval and p.losses_in_row < s.dead_after:
                    p.next_probe = min(p.next_probe, now + s.retry_interval)
        if lost and s.race and any(p.name == self.current for p in lost):
            self.stall_holdoff = 0.0
            self.start_race(now)
        self._detect(now)
        return lost

    def _detect(self, now: float) -> None:
        """BFD-like watch of the path in use: no acknowledgement nor receipt for
        1.5 ``detect_interval`` (and ``2 * rttvar``) races the paths, none for
        ``detect_miss`` intervals (and ``2 * rttvar``), and not for the path's
        own probe timeout either, declares the path down: a slow or jittery
        path is not left for answers that are only late. When the last sign of
        life was a receipt, the first probe left only an interval later: its
        round trip is added."""
        s = self.settings
        p = self.current_path
        if not self.started or p.srtt is None or p.down or not self.sending(now):
            return  # nothing goes out: nothing to fail over
        if p.suspect_at > 0 and now - p.suspect_at > max(
            s.notice_confirm, 2 * p.srtt + 4 * p.rttvar
        ):
            p.down = True  # the destination said our data stopped; no answer since
            p.suspect_at = -1e9
            return
        alive_at = max(p.last_ack, p.last_heard, min(p.vouched_until, now))
        quiet = now - max(alive_at, self.current_since, self.sending_since)
        slack = 2 * p.rttvar + (p.srtt if p.last_heard > p.last_ack else 0.0)
        if quiet > max(s.detect_miss * s.detect_interval + slack, p.timeout(s)):
            p.down = True
        elif quiet > 1.5 * s.detect_interval + slack and s.race and self.last_race < alive_at:
            self.stall_holdoff = 0.0
            self.start_race(now)

    def start_race(self, now: float) -> None:
        """Probe every path at once, and again every ``race_interval`` for a while."""
        self.race_until = now + self.settings.race_time
        self.last_race = now
        for p in self.paths:
            p.next_probe = now

    # ------------------------------------------------------------ choosing
    def best(self) -> tuple[PathState | None, float | None]:
        """The live path with the lowest score (None when no path is alive)."""
        best: PathState | None = None
        best_score: float | None = None
        for p in self.paths:
            sc = p.score(self.settings)
            if sc is not None and (best_score is None or sc < best_score):
                best, best_score = p, sc
        return best, best_score

    def evaluate(self, now: float) -> Decision | None:
        """Go idle, race, or change the path; returns the decision when the path changed."""
        s = self.settings
        if not self.active:
            return None
        if now - self.last_out > s.idle_after:
            self.active = False
            self.in_flight.clear()
            return self._switch(now, DIRECT, "idle") if self.current != DIRECT else None
        if (
            s.race
            and self.started
            and self.last_in > self.activated
            and max(s.stall_after, 3 * (self.current_path.srtt or 0))
            < self.last_out - self.last_in
            < s.stall_window
            and now - self.last_out < s.stall_after
            and now - self.last_race > self.stall_holdoff
        ):
            # a stall whose race finds the path in use healthy is the application's
            # silence: wait twice as long before the next one
            self.stall_holdoff = min(2 * max(self.stall_holdoff, s.stall_holdoff), s.stall_max)
            self.start_race(now)
        best, best_score = self.best()
        if not self.started:
            if now - self.activated < s.startup_time:
                return None
            if best is None and now - self.activated < s.startup_time + s.first_timeout:
                return None
            self.started = True
            return self._switch(now, best.name if best else DIRECT, "start", always=True)
        cur = self.current_path
        if not cur.alive(s):
            target = best.name if best is not None else DIRECT
            if target != self.current:
                return self._switch(now, target, "abandon")
            return None
        cur_score = cur.score(s)
        assert cur_score is not None
        self._heat(now, cur, cur_score)
        if (
            best is not None
            and best_score is not None
            and best.name != self.current
            and best_score < cur_score * (1 - s.margin)
            and cur_score - best_score >= s.min_gain
        ):
            if self.candidate == best.name:
                self.confirmed += 1
            else:
                self.candidate, self.confirmed = best.name, 1
            if self.confirmed >= s.confirm:
                return self._switch(now, best.name, "better")
        else:
            self.candidate, self.confirmed = None, 0
        return None

    def _heat(self, now: float, cur: PathState, cur_score: float) -> None:
        """Probe often (one at a time) the path whose last answer looks clearly better."""
        s = self.settings
        if any(now < p.hot_until for p in self.paths):
            return
        pick: tuple[float, PathState] | None = None
        for p in self.paths:
            if p is cur or p.last_rtt is None or not p.alive(s):
                continue
            quick = p.last_rtt * p.penalty(s)
            clearly = quick < cur_score * (1 - s.margin) and cur_score - quick >= s.min_gain
            if clearly and (pick is None or quick < pick[0]):
                pick = (quick, p)
        if pick is not None:
            pick[1].hot_until = now + s.hot_time
            pick[1].next_probe = min(pick[1].next_probe, now + s.active_interval)
            # the path in use is measured as often meanwhile: one old sample of it
            # must not make the rival look better
            cur.next_probe = min(cur.next_probe, now + s.active_interval)

    def _switch(self, now: float, new: str, reason: str, always: bool = False) -> Decision | None:
        old = self.current
        self.candidate, self.confirmed = None, 0
        if new == old and not always:
            return None
        if new != old:
            self.switches += 1
        self.current = new
        self.current_since = now
        path = self.path(new)
        path.next_probe = min(path.next_probe, now)  # watched closely from now on
        d = Decision(now, self.name, old, new, reason, self.table())
        self.decisions.append(d)
        return d

    def snapshot(self, now: float) -> dict[str, object]:
        """The table as plain data (for ``itmroute show``)."""
        return {
            "dest": self.name,
            "active": self.active,
            "current": self.current,
            "switches": self.switches,
            "probes_sent": self.probes_sent,
            "idle_for": round(now - self.last_out, 3) if self.last_out > 0 else None,
            "paths": [
                {
                    "name": p.name,
                    "via": p.via,
                    "rtt_ms": None if p.srtt is None else round(p.srtt * 1000, 3),
                    "loss": round(p.loss, 4),
                    "losses_in_row": p.losses_in_row,
                    "alive": p.alive(self.settings),
                    "sent": p.sent,
                    "acks": p.acks,
                    "heard": p.heard,
                }
                for p in self.paths
            ],
            "activated": self.activated,
            "decisions": [
                {"t": d.time, "new": d.new, "reason": d.reason, "line": d.line()}
                for d in list(self.decisions)[-20:]
            ],
        }
