"""bench.itmroute_kernel's host half: ratios per repeat and the table it writes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bench import itmroute_kernel, vmbench

DOC: dict[str, Any] = {
    "kernel": "6.12.118",
    "seconds": 5,
    "repeats": 2,
    "load": "1.00 1.00 1.00",
    "samples": {
        "routed tcp": [1000.0, 800.0],
        "routed udp": [100.0, 0.0],  # a repeat whose anchor delivered nothing: no ratio
        "kernel tcp": [500.0, 200.0],
        "kernel udp": [50.0, 40.0],
        "wireguard tcp": [400.0, 400.0],
        "wireguard udp": [80.0, 10.0],
    },
}


def test_ratios_pair_the_repeats_and_skip_an_empty_anchor() -> None:
    assert itmroute_kernel.ratios(DOC, "tcp") == [0.5, 0.25]
    assert itmroute_kernel.ratios(DOC, "udp") == [0.5]
    assert itmroute_kernel.ratios(DOC, "tcp", "wireguard") == [0.4, 0.5]


def test_table_gives_median_and_range() -> None:
    text = itmroute_kernel.table(DOC)
    assert "| bulk TCP | 900 | kernel | 350 | 0.38x (0.25-0.50) |" in text
    assert "|  |  | wireguard | 400 | 0.45x (0.40-0.50) |" in text
    old = {**DOC, "samples": {k: v for k, v in DOC["samples"].items() if "wireguard" not in k}}
    assert "wireguard" not in itmroute_kernel.table(old)  # a run from before the mode
    assert "UDP flood" in text and "load average at the end 1.00 1.00 1.00" in text


@pytest.mark.parametrize(
    ("kernel", "section"), [("uml", "itmroute_kernel_uml"), ("6.12", "itmroute_kernel")]
)
def test_write_keeps_native_and_emulated_apart(
    kernel: str, section: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    monkeypatch.setattr(vmbench, "DOC", doc)
    monkeypatch.setattr(vmbench, "tables_per_kernel", lambda *a: {kernel == "uml": ["TABLE"]})
    args = argparse.Namespace(kernel=kernel, iterations=5, repeats=3, write=True)
    assert itmroute_kernel.host(args) == 0
    text = doc.read_text()
    assert f"<!-- {section}:begin -->" in text and "TABLE" in text
    assert f"--kernel {kernel}" in text and ("native" in text) == (kernel == "uml")
