"""Run the applications registered at a hook on one packet (shared by every backend)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .hooks import Hook
from .info import ItmInfo
from .packet import Packet, PacketError
from .verdict import Verdict

log = logging.getLogger("libitm")

_FULL_LOGS = 10  # errors logged with a traceback per application, then 1 in _EVERY
_EVERY = 1000


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
        self._next = 0
        self.malformed = 0

    def add(self, where: Hook, info: ItmInfo) -> None:
        """Add a registration at ``where`` (kept sorted by priority, then FIFO)."""
        self._seq[id(info)] = self._next
        self._next += 1
        apps = self._by_hook[where]
        apps.append(info)
        apps.sort(key=lambda i: (i.priority, self._seq[id(i)]))

    def remove(self, info: ItmInfo) -> None:
        """Remove a registration."""
        for apps in self._by_hook.values():
            if info in apps:
                apps.remove(info)
        self._seq.pop(id(info), None)

    def apps(self, where: Hook) -> list[ItmInfo]:
        """The registrations at ``where`` in the order they run."""
        return list(self._by_hook[where])

    def hooks(self) -> list[Hook]:
        """The hooks that have at least one registration."""
        return [h for h, apps in self._by_hook.items() if apps]

    def dispatch(self, where: Hook, pkt: Packet, prefiltered: bool = False) -> Outcome:
        """Run every interested, enabled application at ``where`` on ``pkt``.

        ``prefiltered``: the backend delivered only packets of the interest (its
        kernel rules match it exactly); with a single application at the hook the
        interest is then not checked again in Python.
        """
        classes: list[tuple[str, int]] = []
        apps = self._by_hook[where]
        skip_match = prefiltered and len(apps) == 1
        for info in apps:
            if not info.enabled:
                continue
            if not skip_match:
                try:
                    if not info.interest.matches(pkt):
                        continue
                except PacketError:
                    self.malformed += 1
                    pkt.restore()
                    return Outcome(Verdict.ACCEPT, False, classes)
            verdict, cls = self._run_app(where, info, pkt)
            classes.append((info.label, cls))
            if verdict == Verdict.DROP:
                pkt.restore()
                return Outcome(Verdict.DROP, False, classes)
        if pkt.modified:
            try:
                pkt.finalize()
            except PacketError as e:
                log.error("cannot finalize modified packet, accepting it unchanged: %s", e)
                pkt.restore()
        return Outcome(Verdict.ACCEPT, pkt.modified, classes)

    def _run_app(self, where: Hook, info: ItmInfo, pkt: Packet) -> tuple[Verdict, int]:
        c = info.counters
        c.packets += 1
        was_modified = pkt.modified
        cls = 0
        stage = "class_func"
        try:
            if info.class_func is not None:
                got = info.class_func(pkt)
                if got is None:
                    cls = 0
                elif isinstance(got, int) and not isinstance(got, bool):
                    cls = got
                else:
                    raise TypeError(f"class_func returned {got!r}; expected an int")
            # no class_func: class 0, as in itm_mod (process_func is then not called)
            stage = "log_func"
            if info.log_func is not None:
                info.log_func(cls, pkt)
            verdict = Verdict.ACCEPT
            if cls != 0:
                c.classified += 1
                stage = "process_func"
                if info.process_func is not None:
                    verdict = Verdict.coerce(info.process_func(where, cls, pkt))
            stage = "update_func"
            if info.update_func is not None:
                info.update_func(cls, pkt)
            stage = "control_func"
            if info.control_func is not None:
                info.control_func(cls, pkt)
        except Exception as e:
            c.errors += 1
            pkt.restore()
            if self.strict:
                raise
            if c.errors <= _FULL_LOGS:
                log.exception(
                    "app %s: %s raised %s; packet accepted unchanged",
                    info.label,
                    stage,
                    type(e).__name__,
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
            return Verdict.ACCEPT, cls
        if verdict == Verdict.DROP:
            c.dropped += 1
        else:
            c.accepted += 1
            if pkt.modified and not was_modified:
                c.modified += 1
        return verdict, cls
