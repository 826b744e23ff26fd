"""bench.libitm_queue on a machine without its extras (python-netfilterqueue,
libnetfilter_queue's headers): one line naming them and how to install them,
exit 1, where it ended in gcc's traceback."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from bench import libitm_kernel_queue as lkq
from bench import libitm_queue as lq


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "netfilterqueue" else real(name, *a),
    )
    monkeypatch.setattr(lq, "NFQ_HEADER", tmp_path / "none.h")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(lq, "build", lambda *a: pytest.fail("built without its requirements"))


def test_what_is_missing_is_named_for_the_consumers_chosen(bare: None) -> None:
    assert lq.missing(lq.CONSUMERS) == [
        "python-netfilterqueue (the anchor)",
        f"libnetfilter_queue's headers ({lq.NFQ_HEADER})",
    ]
    no_c = tuple(c for c in lq.CONSUMERS if not c.impl.startswith("c"))
    assert lq.missing(no_c) == ["python-netfilterqueue (the anchor)"]


def test_the_benchmarks_say_so_in_one_line(bare: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert lq.main(["--drain-only", "--quick"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "sudo make bench-libitm" in err[0], err
    assert err[0].startswith("bench.libitm_queue: not installed here: python-netfilterqueue")
    assert lkq.main(["--kernel", "uml"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("bench.libitm_kernel_queue: not installed"), err
