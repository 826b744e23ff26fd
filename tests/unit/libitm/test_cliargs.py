"""libitm.cliargs: the one implementation of the command lines' option types
(itmtool, itmroute, the examples and bench/, which re-exports them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

import bench.cliargs
from libitm import cliargs
from libitm.hooks import Hook

#: (type, accepted text, value)
ACCEPTED: list[tuple[Callable[[str], Any], str, Any]] = [
    (cliargs.count, "0", 0),
    (cliargs.count, "12", 12),
    (cliargs.positive, "1", 1),
    (cliargs.positive, "100000", 100_000),
    (cliargs.queue_num, "0", 0),
    (cliargs.queue_num, "65535", 65535),
    (cliargs.port, "1", 1),
    (cliargs.port, "65535", 65535),
    (cliargs.workers, "1", 1),
    (cliargs.workers, "64", 64),
    (cliargs.vcpus, "16", 16),
    (cliargs.seconds, "0.5", 0.5),
    (cliargs.hook, "post_routing", Hook.POST_ROUTING),
]

#: (type, refused text, the whole message)
REFUSED: list[tuple[Callable[[str], Any], str, str]] = [
    (cliargs.count, "-1", "must be an integer >= 0, not '-1'"),
    (cliargs.count, "x", "must be an integer >= 0, not 'x'"),
    (cliargs.positive, "0", "must be a whole number of at least 1, not '0'"),
    (cliargs.positive, "1.5", "must be a whole number of at least 1, not '1.5'"),
    (cliargs.queue_num, "-1", "must be a queue number in 0..65535, not '-1'"),
    (cliargs.queue_num, "65536", "must be a queue number in 0..65535, not '65536'"),
    (cliargs.port, "0", "must be a port in 1..65535, not '0'"),
    (cliargs.port, "65536", "must be a port in 1..65535, not '65536'"),
    (cliargs.port, "http", "must be a port in 1..65535, not 'http'"),
    (cliargs.workers, "65", "must be a number of workers in 1..64, not '65'"),
    (cliargs.workers, "0", "must be a number of workers in 1..64, not '0'"),
    (cliargs.vcpus, "17", "must be a number of vCPUs in 1..16, not '17'"),
    (cliargs.seconds, "0", "must be a number of seconds > 0, not '0'"),
    (cliargs.seconds, "inf", "must be a number of seconds > 0, not 'inf'"),
    (cliargs.seconds, "nan", "must be a number of seconds > 0, not 'nan'"),
]


@pytest.mark.parametrize(("kind", "text", "value"), ACCEPTED)
def test_accepted_values(kind: Callable[[str], Any], text: str, value: Any) -> None:
    assert kind(text) == value


@pytest.mark.parametrize(("kind", "text", "said"), REFUSED)
def test_refusals_name_the_value(kind: Callable[[str], Any], text: str, said: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        kind(text)
    assert str(exc.value) == said


def test_bench_uses_libitm_s_types_not_copies() -> None:
    for name in ("port", "positive", "queue_num", "seconds"):
        assert getattr(bench.cliargs, name) is getattr(cliargs, name), name
    assert set(bench.cliargs.__all__) - set(cliargs.__all__) == {"OneLineParser", "parser"}


def test_every_public_type_is_exported() -> None:
    public = {
        n
        for n, v in vars(cliargs).items()
        if callable(v) and not n.startswith("_") and v.__module__ == cliargs.__name__
    }
    assert public == set(cliargs.__all__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SystemExit(f"{self.prog}: {message}")


def _tool() -> argparse.ArgumentParser:
    """``tool [--v] {show [--json], rio {show DEV}}``."""
    ap = _Parser(prog="tool")
    ap.add_argument("--v", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("show").add_argument("--json", action="store_true")
    rio = sub.add_parser("rio").add_subparsers(dest="rio_cmd", required=True)
    rio.add_parser("show").add_argument("dev")
    return ap


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["show", "x"], "tool show: unrecognized arguments: x"),
        (["show", "--json", "--x", "y"], "tool show: unrecognized arguments: --x y"),
        (["rio", "show", "lo", "--x"], "tool rio show: unrecognized arguments: --x"),
        (["--x", "show"], "tool: unrecognized arguments: --x"),
    ],
)
def test_parse_names_the_subcommand_that_got_an_unknown_argument(
    argv: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        cliargs.parse(_tool(), argv)
    assert str(exc.value) == said


def test_parse_is_parse_args_otherwise() -> None:
    args = cliargs.parse(_tool(), ["--v", "rio", "show", "lo"])
    assert (args.v, args.cmd, args.rio_cmd, args.dev) == (True, "rio", "show", "lo")
