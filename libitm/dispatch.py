"""Run the applications registered at a hook on one packet (shared by every backend).

The paper's five-callback rule is written once, in :func:`app_step`: a closure
built per application that checks its interest, calls its callbacks in order,
keeps its counters and handles its errors. :meth:`Dispatcher.runner` puts a
hook's steps together (one application: its step alone, which also finishes
the packet) and caches the result until the configuration changes
(:mod:`libitm.epoch`); every backend's packet path calls that runner.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .epoch import EPOCH, bump
from .hooks import Hook
from .info import ItmInfo
from .interest_match import Matcher, matcher
from .packet import Packet, PacketError
from .verdict import Verdict

log = logging.getLogger("libitm")

#: results of a runner (:meth:`Dispatcher.runner`)
ACCEPTED = 0
MODIFIED = 1
DROPPED = 2
#: a step met a malformed packet: the hook accepts it unchanged
_MALFORMED = 3
_ACCEPT = Verdict.ACCEPT
_DROP = Verdict.DROP

_FULL_LOGS = 10  # errors logged with a traceback per application, then 1 in _EVERY
_EVERY = 1000

#: collects (label, class) of the applications that saw a packet, or None
Classes = list[tuple[str, int]] | None
#: one application's step: the packet, where to note its class
Step = Callable[[Packet, Classes], int]
#: a hook's applications on one packet: ACCEPTED, MODIFIED or DROPPED
Runner = Callable[..., int]


def class_of(got: object) -> int:
    """The class a ``class_func`` returned that is not a plain ``int``: ``None`` is
    class 0, an ``int`` subclass its value; a ``bool`` or anything else raises
    :class:`TypeError`."""
    if got is None:
        return 0
    if isinstance(got, int) and not isinstance(got, bool):
        return got
    raise TypeError(f"class_func returned {got!r}; expected an int")


def finish(pkt: Packet) -> int:
    """``MODIFIED`` with the packet's checksums finished, or ``ACCEPTED`` (unchanged,
    also when a change cannot be finished: it is then undone)."""
    if not pkt.modified:
        return ACCEPTED
    if not pkt.csum_not_ready:
        return MODIFIED  # finalize() has nothing to do
    try:
        pkt.finalize()
    except PacketError as e:
        log.error("cannot finalize modified packet, accepting it unchanged: %s", e)
        pkt.restore()
        return ACCEPTED
    return MODIFIED


@dataclass
class Outcome:
    """The result for one packet: the verdict, whether it was changed, the classes seen."""

    verdict: Verdict
    modified: bool
    classes: list[tuple[str, int]]


def app_step(where: Hook, info: ItmInfo, wanted: Matcher, disp: Dispatcher, last: bool) -> Step:
    """The five-callback rule for application ``info`` at ``where``, as one closure.

    The step checks the interest (``wanted``), then calls ``class_func``,
    ``log_func``, ``process_func`` (only for a class other than 0), ``update_func``
    and ``control_func``, counts, and on an exception undoes the packet's changes
    and accepts it (:meth:`Dispatcher.failed`). It returns ``DROPPED`` (the
    packet restored) or, when it is the ``last`` step at the hook,
    :func:`finish`'s result; otherwise ``ACCEPTED``. A malformed packet gives
    ``ACCEPTED`` when ``last``, else an internal code that stops the hook.
    """
    c = info.counters
    label = info.label
    cf = info.wf_class_func
    lf = info.wf_log_func
    pf = info.wf_process_func
    uf = info.wf_update_func
    kf = info.wf_control_func
    failed = disp.failed
    coerce = Verdict.coerce

    def step(pkt: Packet, classes: Classes = None) -> int:
        try:
            if not wanted(pkt):
                return ACCEPTED  # (a step that is not last leaves finishing to the chain)
        except PacketError:
            disp.malformed += 1
            pkt.restore()
            return ACCEPTED if last else _MALFORMED
        c.packets += 1
        was_modified = pkt.modified
        cls = 0
        stage = "class_func"
        drop = False
        try:
            # no class_func: class 0, as in itm_mod (process_func is then not called)
            if cf is not None:
                got = cf(where, pkt)
                cls = got if got.__class__ is int else class_of(got)
            if lf is not None:
                stage = "log_func"
                lf(where, cls, pkt)
            if cls != 0:
                c.classified += 1
                if pf is not None:
                    stage = "process_func"
                    v = pf(where, cls, pkt)
                    if v is not None and v is not _ACCEPT:
                        drop = v is _DROP or coerce(v) == _DROP
            if uf is not None:
                stage = "update_func"
                uf(where, cls, pkt)
            if kf is not None:
                stage = "control_func"
                kf(where, cls, pkt)
        except Exception as e:
            failed(info, pkt, stage, e)
            if classes is not None:
                classes.append((label, cls))
            return ACCEPTED
        if classes is not None:
            classes.append((label, cls))
        if drop:
            c.dropped += 1
            pkt.restore()
            return DROPPED
        if pkt.modified:
            if pf is None and not was_modified:
                # an observer's change: live backends give observers copies, whose
                # changes reach nothing; here too (offline, nfqueue with workers)
                pkt.restore()
                observer_changed(info)
                return ACCEPTED
            if not was_modified:
                c.modified += 1
            if last:
                return finish(pkt)
        return ACCEPTED

    return step


#: the observers already told that their changes are undone
_TOLD: weakref.WeakSet[ItmInfo] = weakref.WeakSet()


def observer_changed(info: ItmInfo) -> None:
    """Say once per application that an observer's change was undone."""
    if info not in _TOLD:
        _TOLD.add(info)
        log.warning(
            "app %s has no process_func (an observer, fed copies of the packets): "
            "its changes to packets are undone, as they reach nothing live",
            info.label,
        )


def accept_all(pkt: Packet, classes: Classes = None) -> int:
    """The runner of a hook without an enabled application."""
    return ACCEPTED


def _chain(steps: list[Step]) -> Runner:
    """The runner of a hook with several applications: their steps in order."""

    def run(pkt: Packet, classes: Classes = None) -> int:
        for step in steps:
            r = step(pkt, classes)
            if r == DROPPED:
                return DROPPED
            if r == _MALFORMED:
                return ACCEPTED
        return finish(pkt)

    return run


_RunnerKey = tuple[Hook, "bool | None", frozenset[int], "frozenset[int] | None"]


class Dispatcher:
    """Holds the registrations per hook in priority order and runs them."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._by_hook: dict[Hook, list[ItmInfo]] = {h: [] for h in Hook}
        self._seq: dict[int, int] = {}
        #: each registration's interest test (see :mod:`libitm.interest_match`)
        self._match: dict[int, Matcher] = {}
        self._runners: dict[_RunnerKey, tuple[int, Runner]] = {}
        self._next = 0
        self.malformed = 0

    def add(self, where: Hook, info: ItmInfo) -> None:
        """Add a registration at ``where`` (run by priority, then FIFO)."""
        self._seq[id(info)] = self._next
        self._match[id(info)] = matcher(info.interest)
        self._next += 1
        self._by_hook[where].append(info)
        self._ordered(where)
        bump()

    def _ordered(self, where: Hook) -> list[ItmInfo]:
        """``where``'s registrations, sorted (in place) by their current priority,
        ties in registration order: a priority may change while registered, which
        moves the epoch, so the runner built for the next packet sorts again."""
        apps = self._by_hook[where]
        seq = self._seq
        apps.sort(key=lambda i: (i.priority, seq[id(i)]))
        return apps

    def remove(self, info: ItmInfo) -> None:
        """Remove a registration."""
        for apps in self._by_hook.values():
            if info in apps:
                apps.remove(info)
        self._seq.pop(id(info), None)
        self._match.pop(id(info), None)
        bump()

    def apps(self, where: Hook) -> list[ItmInfo]:
        """The registrations at ``where`` in the order they run."""
        return list(self._ordered(where))

    def hooks(self) -> list[Hook]:
        """The hooks that have at least one registration."""
        return [h for h, apps in self._by_hook.items() if apps]

    def runner(
        self,
        where: Hook,
        observers: bool | None = None,
        *,
        skip: frozenset[int] = frozenset(),
        only: frozenset[int] | None = None,
    ) -> Runner:
        """The callable that runs ``where``'s enabled applications on a packet:
        ``runner(pkt)`` returns ``ACCEPTED``, ``MODIFIED`` (changed, checksums
        finished) or ``DROPPED`` (changes undone); ``runner(pkt, classes)`` also
        appends ``(label, class)`` per application that saw the packet.

        ``observers`` True: only the applications without a ``process_func``
        (observers, fed copies); False: only those with one; None: all.
        ``skip``: the ``id()`` of registrations left out; ``only``: if given, the
        ``id()`` of the only ones that may run (a backend feeding some observers
        from elsewhere). Built once per configuration epoch: a caller that keeps it asks again
        when :data:`libitm.epoch.EPOCH` moves.
        """
        epoch = EPOCH[0]
        key = (where, observers, skip, only)
        cached = self._runners.get(key)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        apps = [
            i
            for i in self._ordered(where)
            if i.enabled
            and (observers is None or (i.process_func is None) == observers)
            and id(i) not in skip
            and (only is None or id(i) in only)
        ]
        run: Runner
        if not apps:
            run = accept_all
        else:
            steps = [
                app_step(
                    where,
                    i,
                    self._match.get(id(i)) or i.interest.matches,
                    self,
                    last=len(apps) == 1,
                )
                for i in apps
            ]
            run = steps[0] if len(steps) == 1 else _chain(steps)
        self._runners[key] = (epoch, run)
        return run

    def dispatch(self, where: Hook, pkt: Packet) -> Outcome:
        """Run every interested, enabled application at ``where`` on ``pkt``.

        Each application's interest is checked on every packet, whatever rules
        put the packet in the queue (another process's, or a dead one's).
        """
        classes: list[tuple[str, int]] = []
        code = self.runner(where)(pkt, classes)
        if code == DROPPED:
            return Outcome(Verdict.DROP, False, classes)
        return Outcome(Verdict.ACCEPT, code == MODIFIED, classes)

    def run(self, where: Hook, pkt: Packet) -> int:
        """:meth:`dispatch` for the packet path: ``ACCEPTED``, ``MODIFIED`` or ``DROPPED``."""
        return self.runner(where)(pkt)

    def failed(self, info: ItmInfo, pkt: Packet, stage: str, e: Exception) -> None:
        """A callback raised ``e``: count, undo the packet's changes, log (or re-raise)."""
        c = info.counters
        c.errors += 1
        pkt.restore()
        if self.strict:
            raise e
        if c.errors <= _FULL_LOGS:
            log.error(
                "app %s: %s raised %s; packet accepted unchanged",
                info.label,
                stage,
                type(e).__name__,
                exc_info=e,
            )
        elif c.errors % _EVERY == 0:
            log.error(
                "app %s: %d callback errors so far (latest in %s: %r)",
                info.label,
                c.errors,
                stage,
                e,
            )
