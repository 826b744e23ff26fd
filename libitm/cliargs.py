"""argparse types shared by the command lines: itmtool, itmroute, the examples and
bench/ (which adds only its one-line parser, :mod:`bench.cliargs`).

Each raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
one-line usage error (exit 2) naming the option and the value.
"""

from __future__ import annotations

import argparse
import math

from .hooks import Hook

__all__ = ["count", "hook", "port", "positive", "queue_num", "seconds", "vcpus", "workers"]


def _integer(text: str, low: int, high: int | None, what: str) -> int:
    """An integer in `low`..`high` (no upper bound when `high` is None); else the
    error ``must be <what>, not '<text>'``."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def count(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0, None, "an integer >= 0")


def positive(text: str) -> int:
    """A whole number of at least 1 (a count, repeats, iterations, packets)."""
    return _integer(text, 1, None, "a whole number of at least 1")


def queue_num(text: str) -> int:
    """An nfqueue number, 0..65535 (a 16-bit field of the NFQUEUE target)."""
    return _integer(text, 0, 0xFFFF, "a queue number in 0..65535")


def port(text: str) -> int:
    """A TCP or UDP port, 1..65535."""
    return _integer(text, 1, 65535, "a port in 1..65535")


def workers(text: str) -> int:
    """A number of worker processes, 1..64."""
    return _integer(text, 1, 64, "a number of workers in 1..64")


def vcpus(text: str) -> int:
    """A number of virtual CPUs, 1..16."""
    return _integer(text, 1, 16, "a number of vCPUs in 1..16")


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
