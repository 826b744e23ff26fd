"""Where the kernel benchmarks' --write puts their figures: native (User-Mode Linux)
and emulated (QEMU TCG) runs each in a section of their own, saying which they are."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest

from bench import itm_dispatch, qos_cost, vmbench


@pytest.mark.parametrize(
    ("bench", "kernel", "section", "absent"),
    [
        (itm_dispatch, "uml", "itm_dispatch_uml", "TCG"),
        (itm_dispatch, "6.12", "itm_dispatch", "natively"),
        (qos_cost, "uml", "qos_cost_uml", "TCG"),
        (qos_cost, "6.12", "qos_cost", "natively"),
    ],
)
def test_write_keeps_native_and_emulated_figures_apart(
    bench: ModuleType,
    kernel: str,
    section: str,
    absent: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    monkeypatch.setattr(vmbench, "DOC", doc)
    monkeypatch.setattr(vmbench, "tables_per_kernel", lambda *a: ["TABLE"])
    args = argparse.Namespace(kernel=kernel, iterations=20_000, repeats=25, write=True)
    assert bench.host(args) == 0
    text = doc.read_text()
    assert f"<!-- {section}:begin -->" in text and "TABLE" in text
    assert f"--kernel {kernel}" in text and "load average" in text
    assert absent not in text
