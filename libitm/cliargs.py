"""argparse types shared by libitm's command lines (itmtool, itmroute, the examples).

Each raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
one-line usage error (exit 2) naming the option and the value.
"""

from __future__ import annotations

import argparse
import math

from .hooks import Hook

__all__ = ["count", "hook", "queue_num", "seconds", "workers"]


def count(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}")
    return value


def queue_num(text: str) -> int:
    """An nfqueue number, 0..65535 (a 16-bit field of the NFQUEUE target)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"must be a queue number in 0..65535, not {text!r}")
    return value


def _number_of(text: str, what: str, most: int) -> int:
    """An integer in 1..`most`; the error names `what` it counts."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"must be a number of {what} in 1..{most}, not {text!r}")
    return value


def workers(text: str) -> int:
    """A number of worker processes, 1..64."""
    return _number_of(text, "workers", 64)


def vcpus(text: str) -> int:
    """A number of virtual CPUs, 1..16."""
    return _number_of(text, "vCPUs", 16)


def seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def hook(text: str) -> Hook:
    """A hook name (ip_in, post_routing, pre, ...), as :meth:`Hook.parse` reads it."""
    try:
        return Hook.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
