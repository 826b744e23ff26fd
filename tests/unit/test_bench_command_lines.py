"""bench/'s command lines: a user's mistake is one line on stderr and exit 2, before
anything is built, booted or set up; a module that is not a command says what to run.

Nothing real may start even when a check is missing, so every test here runs
with a non-root uid and with subprocesses, VM runs and docs writes refused.
"""

from __future__ import annotations

import pkgutil
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import bench
from bench import (
    itm_dispatch,
    itmroute,
    itmroute_failover,
    itmroute_host,
    itmroute_kernel,
    libitm_kernel_queue,
    libitm_observer,
    libitm_packet_cost,
    libitm_queue,
    libitm_stream,
    libitm_workers,
    mice_elephants,
    qos_cost,
    queue_consumers,
    run_all,
    vmbench,
)
from itmtool import buildmods, vm

Main = Callable[[list[str] | None], int]


@pytest.fixture(autouse=True)
def nothing_real(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No root, no subprocess, no VM, no docs page: a test that gets that far fails."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a bad argument went on to real work: {args!r}")

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(vmbench, "run_in_vm", refuse)
    monkeypatch.setattr(vmbench, "write_section", refuse)
    monkeypatch.setattr(buildmods, "build", refuse)
    monkeypatch.setattr(vm, "run", refuse)
    monkeypatch.setattr(mice_elephants, "host", refuse)
    yield


def one_line_error(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line `main(argv)` prints on stderr as it exits 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, err
    assert out == "" and err.count("\n") == 1 and "usage" not in err, err
    return err


# 1. mice_elephants: loads, comparisons and seeds


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loads", "abc"], "argument --loads: must be offered loads in (0, 1]"),
        (["--loads", "5,-1"], "not '5,-1'"),
        (["--loads", "0.6,,0.8"], "argument --loads"),
        (["--compare", "prio@x"], "argument --compare: must be CORES@LOAD, e.g. prio,red@0.95"),
        (["--compare", "@0.9"], "not '@0.9'"),
        (["--compare", "red@0"], "not 'red@0'"),
        (["--seeds", "-1"], "argument --seeds: must be a whole number of at least 1, not '-1'"),
        (["--seeds", "0"], "not '0'"),
        (["--seed-list", "3,x"], "argument --seed-list: must be seeds"),
    ],
)
def test_mice_elephants_refuses_bad_values(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error(mice_elephants.main, argv, capsys)
    assert err.startswith("bench.mice_elephants: ") and message in err


def test_mice_elephants_reads_good_values() -> None:
    assert mice_elephants.load_list("0.6,0.95") == (0.6, 0.95)
    assert mice_elephants.load_list("1") == (1.0,)
    assert mice_elephants.comparison("prio,red@0.95") == (("prio", "red"), 0.95)
    assert mice_elephants.comparison("red") == (("red",), None)
    assert mice_elephants.seed_list("3,4") == (3, 4)


# 2. every count, repeats, iterations, packets and seconds option of every command

COUNTS: list[tuple[Main, list[str], str]] = [
    *[
        (main, [], option)
        for main in (
            itm_dispatch.main,
            itmroute_kernel.main,
            itmroute_failover.main,
            libitm_kernel_queue.main,
            qos_cost.main,
            itmroute.main,
        )
        for option in ("--iterations", "--repeats")
    ],
    (itmroute.main, [], "--ron-cuts"),
    (itmroute_host.main, [], "--cuts"),
    (itmroute_host.main, [], "--forged"),
    (libitm_queue.main, [], "-n"),
    (libitm_queue.main, [], "--repeats"),
    (libitm_stream.main, [], "--repeats"),
    (libitm_observer.main, [], "--repeats"),
    (libitm_observer.main, [], "--pings"),
    (libitm_workers.main, [], "--packets"),
    (libitm_workers.main, [], "--repeats"),
    (libitm_packet_cost.main, ["--one", libitm_packet_cost.VARIANTS[0]], "--passes"),
    (mice_elephants.main, [], "--seeds"),
    (queue_consumers.main, ["libitm", "accept", "--queue", "1"], "--maxlen"),
    (queue_consumers.main, ["libitm", "accept", "--queue", "1"], "--rcvbuf"),
]
SECONDS: list[tuple[Main, list[str], str]] = [
    (itmroute.main, [], "--flap-seconds"),
    (itmroute_host.main, [], "--idle-wait"),
    (libitm_queue.main, [], "--seconds"),
    (libitm_stream.main, [], "--seconds"),
]


@pytest.mark.parametrize("value", ["-1", "0", "x"])
@pytest.mark.parametrize(("main", "before", "option"), COUNTS)
def test_a_count_below_one_or_not_a_number_is_refused(
    main: Main, before: list[str], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error(main, [*before, option, value], capsys)
    assert f"argument {option}: must be a whole number of at least 1, not '{value}'" in err


@pytest.mark.parametrize("value", ["-1", "0", "x", "nan", "inf"])
@pytest.mark.parametrize(("main", "before", "option"), SECONDS)
def test_seconds_not_above_zero_are_refused(
    main: Main, before: list[str], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error(main, [*before, option, value], capsys)
    assert f"argument {option}: must be a number of seconds > 0, not '{value}'" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--queue", "70000"], "argument --queue: must be a queue number in 0..65535"),
        (["--queue", "1", "--port", "0"], "argument --port: must be a port in 1..65535"),
    ],
)
def test_queue_consumers_refuses_bad_queues_and_ports(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in one_line_error(queue_consumers.main, ["libitm", "accept", *argv], capsys)


def test_libitm_queue_refuses_an_unknown_implementation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = one_line_error(libitm_queue.main, ["--only", "libitm,nosuch"], capsys)
    assert "no implementation 'nosuch' (they are: libitm, netfilterqueue, c, c-batch)" in err


# 3. run_all --only


@pytest.mark.parametrize("only", ["nosuch", "itm_dispatch,nosuch"])
def test_run_all_names_an_unknown_benchmark(only: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(run_all.main, ["--only", only], capsys)
    assert err.startswith("bench.run_all: --only: no benchmark 'nosuch' (the benchmarks: ")
    assert all(b.name in err for b in run_all.BENCHMARKS)


# 4. python -m on every module of bench/: a command's --help, or what to run instead

MODULES = sorted(f"bench.{m.name}" for m in pkgutil.iter_modules(bench.__path__))
LIBRARIES = {
    "bench.cliargs",
    "bench.entry",
    "bench.vmbench",
    *(m for m in MODULES if m.startswith("bench.mice_") and m != "bench.mice_elephants"),
}


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", MODULES)
def test_python_m_says_what_to_do(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    out, err = capsys.readouterr()
    if module in LIBRARIES:
        assert exit_.value.code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"{module} is not a command: ") and "python -m bench." in err
    else:
        assert exit_.value.code == 0 and out.startswith(f"usage: python -m {module} "), out
