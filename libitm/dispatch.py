"""Run the applications registered at a hook on one packet (shared by every backend)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .epoch import bump
from .hooks import Hook
from .info import ItmInfo
from .interest_match import Matcher, matcher
from .packet import Packet, PacketError
from .verdict import Verdict

log = logging.getLogger("libitm")

#: results of :meth:`Dispatcher.run`
ACCEPTED = 0
MODIFIED = 1
DROPPED = 2
_ACCEPT = Verdict.ACCEPT
_DROP = Verdict.DROP

_FULL_LOGS = 10  # errors logged with a traceback per application, then 1 in _EVERY
_EVERY = 1000


def class_of(got: object) -> int:
    """The class a ``class_func`` returned that is not a plain ``int``: ``None`` is
    class 0, an ``int`` subclass its value; a ``bool`` or anything else raises
    :class:`TypeError`."""
    if got is None:
        return 0
    if isinstance(got, int) and not isinstance(got, bool):
        return got
    raise TypeError(f"class_func returned {got!r}; expected an int")


@dataclass
class Outcome:
    """The result for one packet: the verdict, whether it was changed, the classes seen."""

    verdict: Verdict
    modified: bool
    classes: list[tuple[str, int]]


class Dispatcher:
    """Holds the registrations per hook in priority order and runs them."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._by_hook: dict[Hook, list[ItmInfo]] = {h: [] for h in Hook}
        self._seq: dict[int, int] = {}
        #: each registration's interest test (see :mod:`libitm.interest_match`)
        self._match: dict[int, Matcher] = {}
        self._next = 0
        self.malformed = 0

    def add(self, where: Hook, info: ItmInfo) -> None:
        """Add a registration at ``where`` (kept sorted by priority, then FIFO)."""
        self._seq[id(info)] = self._next
        self._match[id(info)] = matcher(info.interest)
        self._next += 1
        apps = self._by_hook[where]
        apps.append(info)
        apps.sort(key=lambda i: (i.priority, self._seq[id(i)]))
        bump()

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
        return list(self._by_hook[where])

    def hooks(self) -> list[Hook]:
        """The hooks that have at least one registration."""
        return [h for h, apps in self._by_hook.items() if apps]

    def dispatch(self, where: Hook, pkt: Packet, prefiltered: bool = False) -> Outcome:
        """Run every interested, enabled application at ``where`` on ``pkt``.

        ``prefiltered`` (the backend's rules match the interest) changes nothing:
        each application's interest is checked on every packet, whatever rules
        put the packet in the queue (another process's, or a dead one's).
        """
        classes: list[tuple[str, int]] = []
        code = self._dispatch(where, pkt, prefiltered, classes)
        if code == DROPPED:
            return Outcome(Verdict.DROP, False, classes)
        return Outcome(Verdict.ACCEPT, code == MODIFIED, classes)

    def run(self, where: Hook, pkt: Packet, prefiltered: bool = False) -> int:
        """:meth:`dispatch` for the packet path: ``ACCEPTED``, ``MODIFIED`` or ``DROPPED``.

        The same callbacks, counters and error handling, without building an
        :class:`Outcome` (the classes seen are not collected).
        """
        return self._dispatch(where, pkt, prefiltered, None)

    def _dispatch(
        self, where: Hook, pkt: Packet, prefiltered: bool, classes: list[tuple[str, int]] | None
    ) -> int:
        match = self._match
        for info in self._by_hook[where]:
            if not info.enabled:
                continue
            try:
                if not (match.get(id(info)) or info.interest.matches)(pkt):
                    continue
            except PacketError:
                self.malformed += 1
                pkt.restore()
                return ACCEPTED
            drop, cls = self._run_app(where, info, pkt)
            if classes is not None:
                classes.append((info.label, cls))
            if drop:
                pkt.restore()
                return DROPPED
        if pkt.modified:
            try:
                pkt.finalize()
            except PacketError as e:
                log.error("cannot finalize modified packet, accepting it unchanged: %s", e)
                pkt.restore()
        return MODIFIED if pkt.modified else ACCEPTED

    def _run_app(self, where: Hook, info: ItmInfo, pkt: Packet) -> tuple[bool, int]:
        """Run the five callbacks of ``info``; ``(dropped, class)``."""
        c = info.counters
        c.packets += 1
        was_modified = pkt.modified
        cls = 0
        stage = "class_func"
        try:
            f = info.wf_class_func
            if f is not None:
                got = f(where, pkt)
                cls = got if got.__class__ is int else class_of(got)
            # no class_func: class 0, as in itm_mod (process_func is then not called)
            g = info.wf_log_func
            if g is not None:
                stage = "log_func"
                g(where, cls, pkt)
            drop = False
            if cls != 0:
                c.classified += 1
                p = info.wf_process_func
                if p is not None:
                    stage = "process_func"
                    v = p(where, cls, pkt)
                    if v is not None and v is not _ACCEPT:
                        drop = v is _DROP or Verdict.coerce(v) == _DROP
            u = info.wf_update_func
            if u is not None:
                stage = "update_func"
                u(where, cls, pkt)
            u = info.wf_control_func
            if u is not None:
                stage = "control_func"
                u(where, cls, pkt)
        except Exception as e:
            self._failed(info, pkt, stage, e)
            return False, cls
        if drop:
            c.dropped += 1
        else:
            c.accepted += 1
            if pkt.modified and not was_modified:
                c.modified += 1
        return drop, cls

    def _failed(self, info: ItmInfo, pkt: Packet, stage: str, e: Exception) -> None:
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
        c.accepted += 1

    def run_solo(self, where: Hook, info: ItmInfo, pkt: Packet) -> int:
        """:meth:`run` for a hook whose only application is ``info``: the same
        interest check, callbacks, counters and error handling in one call.
        """
        if not info.enabled:
            return ACCEPTED
        try:
            if not (self._match.get(id(info)) or info.interest.matches)(pkt):
                return ACCEPTED
        except PacketError:
            self.malformed += 1
            return ACCEPTED
        c = info.counters
        c.packets += 1
        cls = 0
        stage = "class_func"
        try:
            f = info.wf_class_func
            if f is not None:
                got = f(where, pkt)
                cls = got if got.__class__ is int else class_of(got)
            g = info.wf_log_func
            if g is not None:
                stage = "log_func"
                g(where, cls, pkt)
            drop = False
            if cls != 0:
                c.classified += 1
                p = info.wf_process_func
                if p is not None:
                    stage = "process_func"
                    v = p(where, cls, pkt)
                    if v is not None and v is not _ACCEPT:
                        drop = v is _DROP or Verdict.coerce(v) == _DROP
            u = info.wf_update_func
            if u is not None:
                stage = "update_func"
                u(where, cls, pkt)
            u = info.wf_control_func
            if u is not None:
                stage = "control_func"
                u(where, cls, pkt)
        except Exception as e:
            self._failed(info, pkt, stage, e)
            return ACCEPTED
        if drop:
            c.dropped += 1
            pkt.restore()
            return DROPPED
        c.accepted += 1
        if not pkt.modified:
            return ACCEPTED
        c.modified += 1
        if not pkt.csum_not_ready:
            return MODIFIED  # finalize() has nothing to do
        try:
            pkt.finalize()
        except PacketError as e:
            log.error("cannot finalize modified packet, accepting it unchanged: %s", e)
            pkt.restore()
            return ACCEPTED
        return MODIFIED
