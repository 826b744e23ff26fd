"""itmtool's command line for the subcommands of issue 6: help, usage errors, vm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from itmtool import build, buildmods, cli, guestrun, vm
from itmtool.errors import ToolError
from itmtool.matrix import Kernel, read_matrix

SUBCOMMANDS = (
    "build",
    "load",
    "unload",
    "run",
    "new",
    "vm",
    "dkms",
    "status",
    "enable",
    "disable",
    "priority",
    "netns",
)


def test_help_on_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([sub, "--help"])
        assert exc.value.code == 0
        assert f"usage: itmtool {sub}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert all(sub in top for sub in SUBCOMMANDS)


@pytest.mark.parametrize(
    "argv",
    [
        ["load"],
        ["unload"],
        ["run"],
        ["run", "x.py", "--backend", "carrier-pigeon"],
        ["new"],
        ["new", "driver", "x"],
        ["new", "kernel"],
        ["new", "kernel", "x", "--priority", "high"],
        ["vm", "--timeout", "soon"],
        ["build", "--frobnicate"],
        ["dkms", "--kernel"],
        ["dkms", "reinstall"],
        ["dkms", "status", "--kernel"],
    ],
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    """argparse's exit, or main()'s code for a usage error found after parsing."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code  # type: ignore[assignment]
    assert rc == 2


def test_build_without_headers_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["build", "--kernel", "5.99.0-nothere"])
    assert rc == 6
    err = capsys.readouterr().err
    assert "no kernel headers for 5.99.0-nothere" in err
    assert "linux-headers-5.99.0-nothere" in err and "--kernel 6.12" in err


def test_kernel_resolution() -> None:
    matrix = read_matrix()
    assert build.resolve_kernel("6.1", matrix) is matrix[0]
    other = build.resolve_kernel("5.10.0-9-amd64", matrix)
    assert other.release == "5.10.0-9-amd64"
    assert other.build_dir == Path("/lib/modules/5.10.0-9-amd64/build")


def test_vm_boots_the_kernel_with_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(kernel: Kernel, script: str, **kw: Any) -> guestrun.VmResult:
        calls.append({"kernel": kernel, "script": script, **kw})
        return guestrun.VmResult(7, "")

    monkeypatch.setattr(vm, "run", fake_run)
    monkeypatch.setattr(Kernel, "vmlinuz", property(lambda self: tmp_path))
    monkeypatch.setattr(buildmods, "BUILD_ROOT", tmp_path / "build")
    assert cli.main(["vm", "--kernel", "6.1", "--no-build", "--", "itmtool", "status"]) == 7
    (call,) = calls
    assert call["kernel"].name == "6.1"
    assert call["stream"] is True
    assert "itmtool status\n" in call["script"]
    assert 'itmtool() { python -m itmtool.cli "$@"; }' in call["script"]
    assert call["env"]["ITM_MODDIR"].endswith("/src")
    assert cli.main(["vm", "--kernel", "6.1", "--no-build"]) == 7
    assert "itmtool load itm_mod && itmtool status" in calls[1]["script"]
    assert cli.main(["vm", "--kernel", "6.1", "--no-build", "--", "uname -r; ls"]) == 7
    assert "uname -r; ls\n" in calls[2]["script"]
    assert [c["console"] for c in calls] == [False] * 3
    assert cli.main(["vm", "--kernel", "6.1", "--no-build", "--console", "--", "true"]) == 7
    assert calls[3]["console"] is True


def test_vm_without_the_kernel_image(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Kernel, "vmlinuz", property(lambda self: Path("/nonexistent")))
    assert cli.main(["vm", "--kernel", "6.1"]) == 6
    assert "no kernel image" in capsys.readouterr().err


def test_tool_error_text() -> None:
    err = ToolError("it broke", hint="do this", code=1)
    assert str(err) == "it broke\ndo this"
