"""Where the kernel benchmarks' --write puts their figures: native (User-Mode Linux)
and emulated (QEMU TCG) runs each in a section of their own, saying which they are,
also when one command (``--kernel all``) ran both."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from bench import (
    itm_dispatch,
    itmroute_kernel,
    libitm_kernel_queue,
    libitm_queue,
    qos_cost,
    vmbench,
)

#: each benchmark: (module, its emulated section, its native section)
BENCHES = [
    (itm_dispatch, "itm_dispatch", "itm_dispatch_uml"),
    (qos_cost, "qos_cost", "qos_cost_uml"),
    (itmroute_kernel, "itmroute_kernel", "itmroute_kernel_uml"),
    (libitm_kernel_queue, "libitm_kernel_queue", "libitm_kernel_queue_uml"),
]
KERNELS = [
    SimpleNamespace(name="6.1", is_uml=False),
    SimpleNamespace(name="6.12", is_uml=False),
    SimpleNamespace(name="uml", is_uml=True),
]


def between(text: str, name: str) -> str:
    """The section ``name`` of the page (empty when it is not there)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text:
        return ""
    return text.split(begin, 1)[1].split(end, 1)[0]


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty page, and kernels that answer without a VM: each result names its kernel."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    monkeypatch.setattr(vmbench, "DOC", doc)

    def chosen(name: str) -> list[Any]:
        return [k for k in KERNELS if name in ("all", k.name)]

    monkeypatch.setattr(vmbench, "kernels", chosen)
    monkeypatch.setattr(vmbench, "run_in_vm", lambda k, bench, args: {"kernel": k.name})
    monkeypatch.setattr(libitm_queue, "build", lambda *a, **k: None)
    monkeypatch.setattr(libitm_queue, "missing", lambda consumers: [])  # the extras
    return doc


@pytest.mark.parametrize(("bench", "emulated", "native"), BENCHES)
@pytest.mark.parametrize("kernel", ["all", "6.12", "uml"])
def test_write_keeps_native_and_emulated_figures_apart(
    bench: ModuleType,
    emulated: str,
    native: str,
    kernel: str,
    page: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench, "table", lambda doc: f"TABLE of {doc['kernel']}")
    args = argparse.Namespace(kernel=kernel, iterations=20_000, repeats=25, write=True)
    assert bench.host(args) == 0
    text = page.read_text()
    qemu, uml = between(text, emulated), between(text, native)
    # each table in its tier's section, none in the other
    assert ("TABLE of 6.12" in qemu) == (kernel != "uml")
    assert ("TABLE of 6.1\n" in qemu) == (kernel == "all")
    assert ("TABLE of uml" in uml) == (kernel != "6.12")
    assert "TABLE of uml" not in qemu and "TABLE of 6.1" not in uml
    # each section says what it measured, and with which command
    assert "TCG" not in uml and "natively" not in qemu and "native" not in qemu
    for section in (s for s in (qemu, uml) if s):
        assert f"--kernel {kernel}" in section


def test_without_write_the_page_is_left_alone(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(itm_dispatch, "table", lambda doc: "TABLE")
    args = argparse.Namespace(kernel="all", iterations=5, repeats=3, write=False)
    assert itm_dispatch.host(args) == 0
    assert page.read_text() == "# Benchmarks\n"


def test_a_kernel_without_a_result_fails_the_run(
    page: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(k: Any, bench: str, args: str) -> dict[str, Any]:
        raise RuntimeError(f"{k.name}: no result")

    monkeypatch.setattr(vmbench, "run_in_vm", broken)
    args = argparse.Namespace(kernel="all", iterations=5, repeats=3, write=True)
    assert itm_dispatch.host(args) == 1
    assert "6.1: no result" in capsys.readouterr().err
    assert page.read_text() == "# Benchmarks\n"
