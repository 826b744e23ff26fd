"""What libitm's rule handling does for a process that holds CAP_NET_ADMIN without
being root: iptables and nft found outside a user's PATH, and the table it cannot
note said once."""

from __future__ import annotations

import logging
import stat
import subprocess
from pathlib import Path

import pytest

from libitm import xtables
from libitm.xtables import Xtables, command_path, unnoted_table


def _tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text('#!/bin/sh\necho from-sbin "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_command_not_on_path_is_found_in_sbin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sbin = tmp_path / "sbin"
    tool = _tool(sbin, "itm-fake-iptables")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(xtables, "SBIN_PATH", str(sbin))
    assert command_path("itm-fake-iptables") == str(tool)
    # on PATH, or a path: unchanged; found nowhere: unchanged (the error names it)
    monkeypatch.setenv("PATH", str(sbin))
    assert command_path("itm-fake-iptables") == "itm-fake-iptables"
    assert command_path("/usr/sbin/x") == "/usr/sbin/x"
    assert command_path("itm-no-such-tool") == "itm-no-such-tool"


def test_xtables_runs_the_sbin_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sbin = tmp_path / "sbin"
    _tool(sbin, "itm-fake-iptables")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(xtables, "SBIN_PATH", str(sbin))
    xt = Xtables(iptables="itm-fake-iptables")
    res: subprocess.CompletedProcess[str] = xt._exec(["itm-fake-iptables", "-S"])
    assert res.stdout == "from-sbin -S\n"
    assert xt.commands == [["itm-fake-iptables", "-S"]]  # as asked, for the record


def test_a_table_that_cannot_be_noted_is_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(xtables, "_UNNOTED", set())
    monkeypatch.setattr(xtables, "in_user_namespace", lambda: False)
    err = PermissionError(13, "Permission denied")
    with caplog.at_level(logging.WARNING, logger="libitm"):
        unnoted_table(4, "mangle", err)
        unnoted_table(4, "mangle", err)
        unnoted_table(6, "mangle", err)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "IPv4 mangle table (Permission denied)" in lines[0]
    assert "RuntimeDirectory=libitm" in lines[0]
    assert "IPv6" in lines[1]


def test_in_a_user_namespace_of_its_own_the_table_is_only_noted_at_info(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(xtables, "_UNNOTED", set())
    monkeypatch.setattr(xtables, "in_user_namespace", lambda: True)
    with caplog.at_level(logging.INFO, logger="libitm"):
        unnoted_table(4, "mangle", PermissionError(13, "Permission denied"))
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "goes with its network namespace" in caplog.records[0].getMessage()


def test_in_user_namespace_reads_the_uid_map(tmp_path: Path) -> None:
    m = tmp_path / "uid_map"
    m.write_text("         0          0 4294967295\n")
    assert not xtables.in_user_namespace(m)
    m.write_text("         0      65534          1\n")
    assert xtables.in_user_namespace(m)
    assert not xtables.in_user_namespace(tmp_path / "missing")
