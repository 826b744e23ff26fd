"""The sections that bench.libitm_workers, bench.libitm_stream and bench.libitm_observer
write into docs/benchmarks.md with --write: the table, the run's record, #18's goal
met or NOT met on either side of it, and the page around the section left as it was
(always on a copy of the page, never the real one)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import libitm_observer as lo
from bench import libitm_queue as lq
from bench import libitm_stream as ls
from bench import libitm_workers as lw
from bench import vmbench

RECORD = ls.RunRecord(
    "sudo .venv/bin/python -m bench.X --write",
    "2026-12-05",
    "abc1234",
    "AMD EPYC",
    "1.10 1.20 1.30",
    "2.10 2.20 2.30",
)


def drains(one_two: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """bench.libitm_workers' runs, W = 1 then W = 2 per repeat, at these pps."""
    runs = []
    for one, two in one_two:
        runs.append({"workers": 1, "queued": 65536, "per_queue": [65536], "pps": one})
        runs.append({"workers": 2, "queued": 100000, "per_queue": [40000, 60000], "pps": two})
    return runs


def goal_line(body: list[str]) -> str:
    (line,) = [ln for ln in body if ln.startswith("Goal (#18)")]
    return line


def test_workers_section_has_a_row_per_repeat_and_the_record() -> None:
    runs = drains([(200_000, 370_000), (250_000, 400_000), (100_000, 250_000)])
    result = lw.summary(runs, 100_000, 64)
    body = lw.section(runs, result, RECORD)
    text = "\n".join(body)
    rows = text.splitlines()
    assert "| 1 | 65,536 | 200.0 | 40,000 / 60,000 | 370.0 | 1.85x | 1.67x |" in rows
    assert "| 3 | 65,536 | 100.0 | 40,000 / 60,000 | 250.0 | 2.50x | 1.67x |" in rows
    # the per-repeat ratios 1.85, 1.60, 2.50: median 1.85; medians 200 and 370 kpps
    assert "| median (min-max) |  | 200.0 |  | 370.0 | 1.85x (1.60-2.50) |  |" in rows
    assert "`sudo .venv/bin/python -m bench.X --write`, 2026-12-05, commit abc1234" in text
    assert "load average 1.10 1.20 1.30 before, 2.10 2.20 2.30 after" in text
    assert "100,000 datagrams from 64 source addresses" in text


def test_workers_even_spread_takes_half_from_each_queue() -> None:
    by_queue = {9: ["a", "b", "c"], 8: ["x", "y", "z", "w"]}
    assert lw.pick_even(by_queue, 4) == ["x", "a", "y", "b"]
    assert lw.pick_even(by_queue, 6) == ["x", "a", "y", "b", "z", "c"]
    with pytest.raises(RuntimeError, match="split 4 / 3: too few for 8"):
        lw.pick_even(by_queue, 8)
    with pytest.raises(RuntimeError):
        lw.pick_even({1: ["a", "b"]}, 2)


def test_workers_odd_sources_are_refused_with_an_even_spread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert lw.main(["--sources", "3"]) == 2
    assert "--sources must be in 1..200 (even with --spread even)" in capsys.readouterr().err


def test_workers_section_shows_the_machines_own_scaling() -> None:
    runs = drains([(200_000, 370_000), (250_000, 400_000), (100_000, 250_000)])
    for two, m in zip(runs[1::2], (1.5, 2.0, 1.9), strict=True):
        two["machine_scaling"] = m
    result = lw.summary(runs, 100_000, 64)
    assert (result["machine_scaling"], result["machine_range"]) == (1.9, [1.5, 2.0])
    text = "\n".join(lw.section(runs, result, RECORD))
    assert "| 1 | 65,536 | 200.0 | 40,000 / 60,000 | 370.0 | 1.85x | 1.67x | 1.50x |" in text
    assert "| 1.85x (1.60-2.50) |  | 1.90x (1.50-2.00) |" in text
    assert "half of them hashed to each queue" in text
    assert "The machine itself scaled 1.90x in the same repeats (1.50-2.00): two " in text
    assert "workers reached 97% of that." in text


@pytest.mark.parametrize(
    ("one_two", "verdict", "figures"),
    [
        ([(100_000, 180_000)], "**met**", "1.80x"),  # the goal itself is met
        ([(100_000, 179_000)], "**NOT met**", "1.79x"),
        ([(100_000, 190_000), (200_000, 300_000), (100_000, 185_000)], "**met**", "1.85x"),
        # each repeat's median ratio 1.90x, but the medians' 200/150 = 1.33x: not met
        ([(100_000, 200_000), (200_000, 200_000), (150_000, 285_000)], "**NOT met**", "1.90x"),
    ],
)
def test_workers_goal_is_judged_on_each_repeats_ratio(
    one_two: list[tuple[int, int]], verdict: str, figures: str
) -> None:
    runs = drains(one_two)
    line = goal_line(lw.section(runs, lw.summary(runs, 100_000, 64), RECORD))
    assert f"≥ 1.8x one worker's drain rate: {verdict} ({figures}," in line


def stream_samples(gso_mbps: float) -> dict[str, list[dict[str, Any]]]:
    """Two repeats of bench.libitm_stream at 10 and 20 Gbit/s without a queue."""
    return {
        "no queue": [{"mbps": 10000.0}, {"mbps": 20000.0}],
        "libitm, gso": [
            {"mbps": gso_mbps, "packets": 1000, "modified": 1000, "cpu_s": 0.1},
            {"mbps": 2 * gso_mbps, "packets": 1000, "modified": 1000, "cpu_s": 0.1},
        ],
        "libitm": [{"mbps": 1000.0, "packets": 9000}, {"mbps": 1000.0, "packets": 9000}],
        "netfilterqueue": [{"mbps": 500.0}, {"mbps": 500.0}],
    }


@pytest.mark.parametrize(
    ("gso_mbps", "verdict", "share"),
    [(5000.0, "**met**", "50%"), (4900.0, "**NOT met**", "49%"), (9000.0, "**met**", "90%")],
)
def test_stream_goal_is_half_the_no_queue_path(gso_mbps: float, verdict: str, share: str) -> None:
    body = ls.section(ls.summarize(stream_samples(gso_mbps)), RECORD)
    assert f"≥ 50% of the no-queue path: {verdict} ({share}," in goal_line(body)


def test_stream_section_has_the_table_and_the_anchors_beside() -> None:
    body = ls.section(ls.summarize(stream_samples(5000.0)), RECORD)
    text = "\n".join(body)
    assert "| libitm, gso | 7500 (5000-10000) | 50% (50%-50%) | 1000 | 1000 |" in text
    assert "| netfilterqueue | 500 (500-500) | 4% (2%-5%) |" in text
    assert RECORD.line() in body
    # the median gso stream is 7500 Mbit/s: 15x netfilterqueue's 500, 7.5x libitm's 1000
    assert "15.0x python-netfilterqueue, 7.5x libitm without GSO)." in goal_line(body)


def test_stream_without_a_gso_row_says_not_measured() -> None:
    samples = stream_samples(5000.0)
    del samples["libitm, gso"]
    assert "**NOT met** (not measured)" in goal_line(ls.section(ls.summarize(samples), RECORD))


def observer_samples(added_ms: float) -> dict[str, list[dict[str, Any]]]:
    """Three repeats of bench.libitm_observer on a 0.100 ms path, 10 pings each."""

    def run(ms: float, **extra: Any) -> dict[str, Any]:
        return {"rtts": [ms] * 10, "load_mbps": 10000.0, **extra}

    return {
        "no app": [run(0.100), run(0.100), run(0.100)],
        "observer": [run(0.100 + added_ms, observer_copies=50)] * 3,
        "decider": [run(4.0, packets=900)] * 3,
    }


@pytest.mark.parametrize(
    ("added_ms", "verdict", "share"),
    [(0.004, "**met**", "+4.0%"), (0.006, "**NOT met**", "+6.0%"), (-0.002, "**met**", "-2.0%")],
)
def test_observer_goal_is_five_percent_of_the_path_rtt(
    added_ms: float, verdict: str, share: str
) -> None:
    body = lo.section(lo.summarize(observer_samples(added_ms), 10), RECORD)
    assert f"≤ 5% of the path's RTT: {verdict} ({share}," in goal_line(body)


def test_observer_goal_needs_the_medians_too() -> None:
    """Two of three paired repeats within the goal (+4%), but the medians of the
    cases' RTTs (0.300 against 0.100 ms) far apart: not met."""

    def run(ms: float) -> dict[str, Any]:
        return {"rtts": [ms] * 10, "load_mbps": 10000.0, "observer_copies": 50}

    samples = observer_samples(0.004)
    samples["no app"] = [run(0.100), run(0.100), run(0.300)]
    samples["observer"] = [run(0.104), run(0.300), run(0.312)]
    line = goal_line(lo.section(lo.summarize(samples, 10), RECORD))
    assert "≤ 5% of the path's RTT: **NOT met** (+4.0%," in line, line


def test_observer_section_has_the_table() -> None:
    body = lo.section(lo.summarize(observer_samples(0.006), 10), RECORD)
    text = "\n".join(body)
    assert "| observer | 0.106 (0.106-0.106) | 0.106 | +0.006 | +6.0% (+6.0% to +6.0%) |" in text
    assert "| decider | 4.000 (4.000-4.000) |" in text and "| 0 / 900 |" in text
    assert "+6 µs on a 100 µs path" in goal_line(body)


SECTIONS = [
    (lw.SECTION, lw.TITLE),
    (ls.SECTION, ls.TITLE),
    (lo.SECTION, lo.TITLE),
]


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of docs/benchmarks.md that vmbench.write_section writes instead."""
    doc = tmp_path / "benchmarks.md"
    shutil.copy(vmbench.DOC, doc)
    monkeypatch.setattr(vmbench, "DOC", doc)
    return doc


def between(text: str, name: str) -> str:
    """The section ``name`` of the page, markers included."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    return begin + text.split(begin, 1)[1].split(end, 1)[0] + end


@pytest.mark.parametrize(("name", "title"), SECTIONS)
def test_the_page_has_the_section_under_its_old_heading(name: str, title: str) -> None:
    text = vmbench.DOC.read_text()
    assert between(text, name).splitlines()[1] == f"## {title}"
    assert text.count(f"## {title}\n") == 1  # links to the heading still work
    # the runs by hand stay after the generated part, outside it
    assert text.split(f"<!-- {name}:end -->", 1)[1].startswith("\n\n### Earlier runs, by hand")


@pytest.mark.parametrize(("name", "title"), SECTIONS)
def test_write_section_replaces_only_the_section(page: Path, name: str, title: str) -> None:
    before = page.read_text()
    old = between(before, name)
    body = ["a table", "", "Goal (#18): **met**", ""]
    for _ in range(2):  # rewriting it replaces it again, no second copy
        vmbench.write_section(name, title, body)
        after = page.read_text()
        new = between(after, name)
        assert new.splitlines() == [
            f"<!-- {name}:begin -->",
            f"## {title}",
            "",
            *body,
            f"<!-- {name}:end -->",
        ]
        assert after.replace(new, old) == before


def test_stream_write_puts_the_run_into_its_section(
    page: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NoPath:
        def __init__(self, prefix: str) -> None:
            pass

        def create(self) -> None:
            pass

        resolve = destroy = create

    samples = stream_samples(5000.0)
    monkeypatch.setattr(ls, "StreamPath", NoPath)
    monkeypatch.setattr(ls, "ready", lambda name: True)
    monkeypatch.setattr(ls, "one", lambda path, case, s: samples[case].pop(0))
    before = page.read_text()
    assert ls.main(["--repeats", "2", "--write"]) == 0
    section = between(page.read_text(), ls.SECTION)
    assert "`sudo .venv/bin/python -m bench.libitm_stream --repeats 2 --write`" in section
    assert "| libitm, gso | 7500 (5000-10000) | 50% (50%-50%) |" in section
    assert "**met** (50%," in section
    assert section.split("\n| case |")[0] not in before
    assert "| libitm, gso | 7500 (5000-10000)" in capsys.readouterr().out  # printed as before


def test_workers_write_puts_the_run_into_its_section(
    page: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NoTopology:
        ip_src = "10.0.0.1"
        src = "src"

        def create(self) -> None:
            pass

        destroy = create

    runs = drains([(100_000, 150_000), (100_000, 160_000)])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(lq, "Topology", NoTopology)
    monkeypatch.setattr(lw, "ip_batch", lambda lines, ns: None)
    monkeypatch.setattr(lw, "drain", lambda topo, sources, w, n: runs.pop(0))
    assert lw.main(["--repeats", "2", "--sources", "3", "--spread", "hash", "--write"]) == 0
    section = between(page.read_text(), lw.SECTION)
    assert "bench.libitm_workers --repeats 2 --sources 3 --spread hash --write`" in section
    assert "as `--queue-balance`'s address hash spreads them" in section
    assert "| 2 | 65,536 | 100.0 | 40,000 / 60,000 | 160.0 | 1.60x | 1.67x |" in section
    assert "**NOT met** (1.55x," in section
    out = capsys.readouterr().out.splitlines()
    assert '"ratio_of_repeats": 1.55' in out[-1] and '"loadavg_after"' in out[-1]


@pytest.mark.parametrize("write", [True, False])
def test_observer_writes_its_section_only_with_write(
    page: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], write: bool
) -> None:
    samples = observer_samples(0.006)
    samples["observer, batched"] = list(samples["observer"])
    samples["observer, NFLOG"] = list(samples["observer"])
    monkeypatch.setattr(ls, "StreamPath", lambda prefix: SimpleNamespace(
        create=lambda: None, resolve=lambda: None, destroy=lambda: None))  # fmt: skip
    monkeypatch.setattr(lo, "ready", lambda name: True)
    monkeypatch.setattr(lo, "one", lambda path, case, n, backend: samples[case].pop(0))
    before = page.read_text()
    argv = ["--repeats", "3", "--pings", "10"] + (["--write"] if write else [])
    assert lo.main(argv) == 0
    assert "| observer | 0.106 (0.106-0.106) |" in capsys.readouterr().out  # printed as before
    if not write:
        assert page.read_text() == before
        return
    section = between(page.read_text(), lo.SECTION)
    assert "bench.libitm_observer --repeats 3 --pings 10 --write`" in section
    assert "| observer, batched | 0.106 (0.106-0.106) |" in section
    assert "| observer, NFLOG | 0.106 (0.106-0.106) |" in section
    assert "a BPF program at the hook" in section
    assert "**NOT met** (+6.0%," in section


def test_observer_on_the_kernel_backend_writes_a_section_of_its_own(
    page: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = observer_samples(0.003)
    samples["observer, batched"] = list(samples["observer"])
    samples["observer, NFLOG"] = list(samples["observer"])
    monkeypatch.setattr(ls, "StreamPath", lambda prefix: SimpleNamespace(
        create=lambda: None, resolve=lambda: None, destroy=lambda: None))  # fmt: skip
    monkeypatch.setattr(lo, "ready", lambda name: True)
    backends: list[str] = []

    def one(path: object, case: str, n: int, backend: str) -> dict[str, Any]:
        backends.append(backend)
        return samples[case].pop(0)

    monkeypatch.setattr(lo, "one", one)
    # itm_queue not loaded: a one-line error, nothing run or written
    monkeypatch.setattr(lo, "kernel_ready", lambda: False)
    before = page.read_text()
    assert lo.main(["--backend", "kernel", "--repeats", "3", "--pings", "10", "--write"]) == 2
    assert page.read_text() == before and backends == []
    monkeypatch.setattr(lo, "kernel_ready", lambda: True)
    assert lo.main(["--backend", "kernel", "--repeats", "3", "--pings", "10", "--write"]) == 0
    assert set(backends) == {"kernel"}
    section = between(page.read_text(), lo.KERNEL_SECTION)
    assert "Backend: kernel." in section and "nf_log_packet()" in section
    assert "**met** (+3.0%," in section
    assert between(page.read_text(), lo.SECTION) == between(before, lo.SECTION)


@pytest.mark.parametrize("argv", [["app", "observer", "bogus"], ["app", "x"], ["app"]])
def test_observer_app_refuses_a_bad_kind_or_backend(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert lo.main(argv) == 2
    assert "usage: python -m bench.libitm_observer app" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("main", "argv"),
    [
        (lw.main, ["--repeats", "0"]),
        (lw.main, ["--packets", "many"]),
        (ls.main, ["--repeats", "-1", "--write"]),
        (lo.main, ["--pings", "0", "--write"]),
    ],
)
def test_a_count_below_one_is_a_one_line_error(
    main: Callable[[list[str] | None], int],
    argv: list[str],
    page: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = page.read_text()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"must be a whole number of at least 1, not '{argv[1]}'" in capsys.readouterr().err
    assert page.read_text() == before
