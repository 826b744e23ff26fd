"""A build replaces the previous one only when make succeeded; a failed or interrupted one keeps it.

`make` is a fake on PATH (a shell script that writes what kbuild would, or
fails), or, for Ctrl-C, a subprocess.run that is interrupted while the build
directory is half written.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from itmtool import build, buildmods
from itmtool.matrix import Kernel

FAKE_MAKE = """#!/bin/sh
# the fake kbuild: M=DIR gets a module and a Module.symvers naming DIR, or the build fails
for a in "$@"; do case $a in M=*) m=${a#M=} ;; esac; done
echo "  CC [M]  $m/kernel/itm_mod/main.o"
echo "$BUILD" > "$m/kernel/itm_mod/main.o"
if [ -n "$FAIL" ]; then
    echo "$m/kernel/itm_mod/main.c:1:1: error: $FAIL" >&2
    exit 2
fi
echo "$BUILD" > "$m/kernel/itm_mod/itm_mod.ko"
printf '0x1\\titm_register_hook\\t%s/kernel/itm_mod/itm_mod\\tEXPORT_SYMBOL_GPL\\t\\n' "$m" \\
    > "$m/Module.symvers"
"""


@dataclass(frozen=True)
class FakeKernel(Kernel):
    """A kernel whose headers directory is a temporary one."""

    headers: str = ""

    @property
    def release(self) -> str:
        return "6.12.0-fake"

    @property
    def build_dir(self) -> Path:
        return Path(self.headers)


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    make = bindir / "make"
    make.write_text(FAKE_MAKE)
    make.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    (tmp_path / "headers").mkdir()
    return FakeKernel("6.12", "", "", headers=str(tmp_path / "headers"))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != "src")


def _good_build(
    kernel: FakeKernel, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> buildmods.BuildResult:
    monkeypatch.setenv("BUILD", "build 1")
    res = buildmods.build(kernel, dest=dest)
    assert res.returncode == 0 and res.moddir == dest
    assert (dest / "kernel" / "itm_mod" / "itm_mod.ko").read_text() == "build 1\n"
    return res


def test_a_good_build_lands_in_place_naming_its_own_directory(
    tmp_path: Path, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "build" / "6.12.0-fake" / "src"
    res = _good_build(kernel, dest, monkeypatch)
    assert res.module("itm_mod") == dest / "kernel" / "itm_mod" / "itm_mod.ko"
    assert (dest / "kernel" / "itm_mod" / "main.c").exists()  # the sources were copied
    symvers = (dest / "Module.symvers").read_text()
    assert f"\t{dest}/kernel/itm_mod/itm_mod\t" in symvers
    assert f"CC [M]  {dest}/kernel/itm_mod/main.o" in res.log
    assert _leftovers(dest.parent) == []
    monkeypatch.setenv("BUILD", "build 2")  # a second good build replaces the first
    buildmods.build(kernel, dest=dest)
    assert (dest / "kernel" / "itm_mod" / "itm_mod.ko").read_text() == "build 2\n"
    assert _leftovers(dest.parent) == []


def test_a_failed_build_keeps_the_previous_good_one(
    tmp_path: Path, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "build" / "6.12.0-fake" / "src"
    _good_build(kernel, dest, monkeypatch)
    monkeypatch.setenv("BUILD", "build 2")
    monkeypatch.setenv("FAIL", "expected ';' before '}' token")
    res = buildmods.build(kernel, dest=dest)
    assert res.returncode == 2 and not res.ok
    assert any("error: expected ';'" in d for d in res.diagnostics)
    assert (dest / "kernel" / "itm_mod" / "itm_mod.ko").read_text() == "build 1\n"
    assert (dest / "kernel" / "itm_mod" / "main.o").read_text() == "build 1\n"
    assert _leftovers(dest.parent) == []


def test_an_interrupted_build_keeps_the_previous_good_one(
    tmp_path: Path, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "build" / "6.12.0-fake" / "src"
    _good_build(kernel, dest, monkeypatch)

    def interrupted(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        m = Path(next(a[2:] for a in cmd if a.startswith("M=")))
        (m / "kernel" / "itm_mod" / "itm_mod.ko").write_text("half written")
        raise KeyboardInterrupt  # Ctrl-C while make runs

    monkeypatch.setattr(subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        buildmods.build(kernel, dest=dest)
    monkeypatch.undo()
    assert (dest / "kernel" / "itm_mod" / "itm_mod.ko").read_text() == "build 1\n"
    assert _leftovers(dest.parent) == []


def test_itmtool_build_lists_no_modules_of_a_failed_build(
    tmp_path: Path, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buildmods, "BUILD_ROOT", tmp_path / "build")
    monkeypatch.setattr(build, "check_headers", lambda k: k.build_dir)
    monkeypatch.setenv("BUILD", "build 1")
    res, summary = build.build(kernel)
    assert res.ok and summary["modules"] == ["kernel/itm_mod/itm_mod.ko"]
    assert summary["moddir"] == str(tmp_path / "build" / "6.12.0-fake" / "src")
    monkeypatch.setenv("FAIL", "boom")
    res, summary = build.build(kernel)
    assert not summary["ok"] and summary["modules"] == []
    assert (res.moddir / "kernel" / "itm_mod" / "itm_mod.ko").read_text() == "build 1\n"
