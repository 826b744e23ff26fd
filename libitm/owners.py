"""Who installed a rule: the owner mark libitm puts on every rule, and liveness.

Every rule libitm installs carries ``-m comment --comment "itm owner=PID
start=TICKS label=LABEL"``: the owning process, its start time (field 22 of
``/proc/PID/stat``, clock ticks since boot, so that a recycled pid is not taken
for the owner) and the application's label. An owner is alive when
``/proc/PID/stat`` exists and shows the same start time.

The pid is read in the pid namespace of the reader: processes that share a
network namespace but not a pid namespace see each other as dead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: the start of every owner comment
TAG = "itm owner="
_COMMENT = re.compile(r"itm owner=(\d+) start=(\d+) label=(.*)")  # fullmatch
_CAP_NET_ADMIN = 12
PROC = Path("/proc")


@dataclass(frozen=True)
class Owner:
    """The process that installed a rule, and the application's label."""

    pid: int
    start: int
    label: str

    def comment(self) -> str:
        """The ``--comment`` text that records this owner (at most 255 bytes)."""
        text = f"{TAG}{self.pid} start={self.start} label={self.label}"
        return text.encode()[:255].decode(errors="ignore")

    def alive(self, proc: Path | None = None) -> bool:
        """True while the process runs (same pid, same start time)."""
        return start_time(self.pid, proc) == self.start

    def same_process(self, other: Owner) -> bool:
        """True when both name the same process."""
        return self.pid == other.pid and self.start == other.start


def parse_comment(text: str) -> Owner | None:
    """The owner recorded in a rule's comment (None: not an owner comment)."""
    m = _COMMENT.fullmatch(text.strip())
    if m is None:
        return None
    return Owner(int(m.group(1)), int(m.group(2)), m.group(3))


def start_time(pid: int, proc: Path | None = None) -> int | None:
    """Process ``pid``'s start time in clock ticks since boot (None: no such process)."""
    root = PROC if proc is None else proc
    try:
        stat = (root / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22: starttime (rest starts at field 3)
    except (IndexError, ValueError):
        return None


def this_process(label: str, proc: Path | None = None) -> Owner:
    """The owner mark of the calling process for ``label``."""
    pid = os.getpid()
    return Owner(pid, start_time(pid, proc) or 0, label)


def has_cap_net_admin(proc: Path | None = None) -> bool:
    """True when the calling process has CAP_NET_ADMIN in its effective set."""
    root = PROC if proc is None else proc
    try:
        text = (root / "self" / "status").read_text()
    except OSError:
        return os.geteuid() == 0
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    return os.geteuid() == 0
