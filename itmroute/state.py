"""The daemon's state file: who wrote it, whether that process still runs, and
whether a file is one at all.

The daemon records its pid, the process's start time (field 22 of
/proc/PID/stat, clock ticks after boot) and the boot id: a pid that the kernel
has given to another process since, or a file from before a reboot, is a dead
daemon, not a live one. :func:`load` reads a state file and refuses anything
that is not what the daemon writes (`NotAStateFile`): ``itmroute show`` prints
only what it can read, ``itmroute run`` replaces only a state file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

#: larger than any state file the daemon writes (20 decisions per destination)
MAX_BYTES = 64 << 20


class NotAStateFile(Exception):
    """The file is there, but it is not what the daemon writes (`why` says how)."""

    def __init__(self, path: str | Path, why: str, *, directory: bool = False) -> None:
        self.path, self.why, self.directory = Path(path), why, directory
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.directory:
            return f"{self.path} is a directory, not an itmroute state file"
        return f"{self.path} is not an itmroute state file ({self.why})"


_TYPES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "null": ("null", lambda v: v is None),
}
# the fields `itmroute show` prints, as the daemon writes them ("?": may be absent,
# as in a file of an earlier daemon); pid, start time and boot are daemon_alive's
_TOP = {
    "name": "string",
    "address": "string",
    "tunnel_mtu": "integer",
    "counters": "object",
    "?kernel": "object|null",
    "destinations": "list",
}
_DEST = {
    "prefix": "string",
    "dest": "string",
    "active": "boolean",
    "current": "string",
    "switches": "integer",
    "probes_sent": "integer",
    "paths": "list",
    "decisions": "list",
}
_PATH = {
    "name": "string",
    "via": "string|null",
    "rtt_ms": "number|null",
    "loss": "number",
    "alive": "boolean",
    "?heard": "integer",
}
_DECISION = {"line": "string"}


def _kind(v: object) -> str:
    """What `v` is, for a message: 'a list', 'null', ..."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, float):
        return "a number"
    for said, fits in _TYPES.values():
        if fits(v):
            return said
    return type(v).__name__


def _fields(doc: object, where: str, spec: dict[str, str]) -> str | None:
    """Why `doc` (at `where`) is not an object with the fields of `spec`; None when it is."""
    if not isinstance(doc, dict):
        return f"{where} is {_kind(doc)}, not an object"
    for key, want in spec.items():
        name = key.lstrip("?")
        at = f"{where}.{name}" if where else name
        if name not in doc:
            if key.startswith("?"):
                continue
            return f"no {at}"
        kinds = want.split("|")
        if not any(_TYPES[k][1](doc[name]) for k in kinds):
            return f"{at} is {_kind(doc[name])}, not " + " or ".join(_TYPES[k][0] for k in kinds)
    return None


def problem(doc: object) -> str | None:
    """Why the JSON document `doc` is not a state file the daemon wrote; None when it is."""
    if not isinstance(doc, dict):
        return f"{_kind(doc)}, not a JSON object"
    why = _fields(doc, "", _TOP)
    if why is not None:
        return why
    for section in ("counters", "kernel"):
        for key, value in (doc.get(section) or {}).items():
            if not _TYPES["integer"][1](value):
                return f"{section}.{key} is {_kind(value)}, not an integer"
    for i, d in enumerate(doc["destinations"], 1):
        where = f"destinations[{i}]"
        why = _fields(d, where, _DEST)
        for j, p in enumerate(d["paths"] if why is None else []):
            why = why or _fields(p, f"{where}.paths[{j + 1}]", _PATH)
        for j, dec in enumerate(d["decisions"] if why is None else []):
            why = why or _fields(dec, f"{where}.decisions[{j + 1}]", _DECISION)
        if why is not None:
            return why
    return None


def load(path: str | Path) -> dict[str, Any]:
    """The state file at `path`, checked: `NotAStateFile` when it is a directory, not a
    regular file, not JSON or not what the daemon writes; `OSError` when it cannot be
    read (`FileNotFoundError`: there is none)."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise NotAStateFile(path, "a directory", directory=True)
    if not stat.S_ISREG(st.st_mode):
        raise NotAStateFile(path, "not a regular file")
    if st.st_size > MAX_BYTES:
        raise NotAStateFile(path, f"{st.st_size} bytes")
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    try:
        doc = json.loads(data.decode())
    except UnicodeDecodeError:
        raise NotAStateFile(path, "not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise NotAStateFile(path, f"not JSON: {e}") from None
    why = problem(doc)
    if why is not None:
        raise NotAStateFile(path, why)
    return dict(doc)


def process_start_time(pid: int) -> int | None:
    """Field 22 (starttime) of /proc/PID/stat; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command (field 2) is in parentheses and may hold spaces and ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22; fields[0] is field 3


def boot_id() -> str:
    """This boot's id ('' when unknown)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def identity() -> dict[str, Any]:
    """What the daemon writes about itself into its state file."""
    pid = os.getpid()
    return {"pid": pid, "start_time": process_start_time(pid), "boot_id": boot_id()}


def daemon_alive(state: dict[str, Any]) -> tuple[bool, str]:
    """(True, '') when the process that wrote `state` runs; else (False, why)."""
    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False, "the state file names no pid"
    booted = state.get("boot_id")
    if booted and boot_id() and booted != boot_id():
        return False, f"pid {pid} ran before the last reboot"
    started = process_start_time(pid)
    if started is None:
        return False, f"pid {pid} gone"
    recorded = state.get("start_time")
    if isinstance(recorded, int) and recorded != started:
        return False, f"pid {pid} gone, the pid now belongs to another process"
    return True, ""
