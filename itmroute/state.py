"""The daemon's state file: who wrote it, and whether that process still runs.

The daemon records its pid, the process's start time (field 22 of
/proc/PID/stat, clock ticks after boot) and the boot id: a pid that the kernel
has given to another process since, or a file from before a reboot, is a dead
daemon, not a live one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


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
