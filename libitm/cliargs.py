"""argparse types shared by the command lines: itmtool, itmroute, the examples and
bench/ (which adds only its one-line parser, :mod:`bench.cliargs`).

Each raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
one-line usage error (exit 2) naming the option and the value.
"""

from __future__ import annotations

import argparse
import math

from .hooks import Hook

__all__ = [
    "count",
    "hook",
    "parse",
    "port",
    "positive",
    "queue_num",
    "seconds",
    "vcpus",
    "workers",
]


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


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that arguments no parser takes are
    reported by the subcommand's parser that got them (``itmtool status: ...``,
    with its ``--help``), not by the top level's; by the top level's when they
    come before the subcommand."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        by = parser
        cmd = _subcommand(parser, args)
        if cmd is not None:
            name, sub = cmd
            at = argv.index(name) if name in argv else len(argv)
            if not set(unknown) & set(argv[:at]):
                by = sub
        by.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subcommand(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[str, argparse.ArgumentParser] | None:
    """The first subcommand's name in ``args`` and the parser of the deepest
    subcommand chosen (``rio show``'s for ``itmtool rio show``), or None."""
    first: str | None = None
    chosen = parser
    while True:
        subs = [a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if not subs or name not in subs[0].choices:
            return None if first is None else (first, chosen)
        first = name if first is None else first
        chosen = subs[0].choices[name]
