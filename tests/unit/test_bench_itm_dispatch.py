"""bench/itm_dispatch.py's table and where --write puts it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import itm_dispatch, vmbench


def _doc(fastest: dict[str, float] | None) -> dict[str, object]:
    median = dict.fromkeys(itm_dispatch.CONFIGS, 50.0)
    median["floor"], median["bare nf hook"] = 2.0, 12.0
    doc: dict[str, object] = {
        "kernel": "6.12.118",
        "iterations": 100_000,
        "repeats": 30,
        "ns_per_packet": median,
    }
    if fastest is not None:
        doc["fastest"] = fastest
    return doc


def test_ratios_come_from_the_fastest_round_with_the_median_beside() -> None:
    fastest = dict.fromkeys(itm_dispatch.CONFIGS, 30.0)
    fastest["floor"], fastest["bare nf hook"] = 1.0, 11.0
    text = itm_dispatch.table(_doc(fastest))
    assert "fastest round" in text
    assert "| bare nf hook | 11.0 | 12.0 | 10.0 | 1.00x |" in text
    assert "| itm_mod, 1 app | 30.0 | 50.0 | 29.0 | 2.90x |" in text


def test_a_result_without_fastest_rounds_uses_the_median() -> None:
    text = itm_dispatch.table(_doc(None))
    assert "| itm_mod, 1 app | 50.0 | 50.0 | 48.0 | 4.80x |" in text


@pytest.mark.parametrize(
    ("kernel", "section", "absent"),
    [("uml", "itm_dispatch_uml", "QEMU TCG"), ("6.12", "itm_dispatch", "User-Mode Linux")],
)
def test_write_keeps_native_and_emulated_figures_apart(
    kernel: str, section: str, absent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    monkeypatch.setattr(vmbench, "DOC", doc)
    monkeypatch.setattr(vmbench, "tables_per_kernel", lambda *a: ["TABLE"])
    args = argparse.Namespace(kernel=kernel, iterations=100_000, repeats=30, write=True)
    assert itm_dispatch.host(args) == 0
    text = doc.read_text()
    assert f"<!-- {section}:begin -->" in text and "TABLE" in text
    assert f"--kernel {kernel} --iterations 100000 --repeats 30 --write" in text
    assert absent not in text
