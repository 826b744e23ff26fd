"""How libitm remembers that it created the mangle table (iptables-nft), so that
the last of its rules takes the table with it: a comment on the table, kept by
the kernel; a file in /run/libitm only where nft cannot comment a table."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from libitm import xtables
from libitm.xtables import TABLE_COMMENT, Xtables


class NftTables(Xtables):
    """iptables-nft with the nft tables of one namespace held in a dict (the
    listing's text by (family word, name)); ``comments`` False: an nft that cannot
    comment a table."""

    def __init__(self, comments: bool = True) -> None:
        super().__init__()
        self.tables: dict[tuple[str, str], str] = {}
        self.comments = comments

    def _exec(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(cmd)
        rc, out = 0, ""
        if cmd[1:2] == ["-V"]:
            out = "iptables v1.8.9 (nf_tables)"
        elif cmd[0] == "nft" and cmd[1] in ("list", "create", "delete"):
            key = (cmd[3], cmd[4])
            if cmd[1] == "list":
                rc, out = (0, self.tables[key]) if key in self.tables else (1, "")
            elif cmd[1] == "delete":
                rc = 0 if self.tables.pop(key, None) is not None else 1
            elif key in self.tables or ("comment" in cmd and not self.comments):
                rc = 1
            else:
                body = f'\tcomment "{TABLE_COMMENT}"\n' if "comment" in cmd else ""
                self.tables[key] = f"table {key[0]} {key[1]} {{\n{body}}}\n"
        return subprocess.CompletedProcess(cmd, rc, out, "")

    def made_by_iptables(self, family: str = "ip") -> None:
        """The table as iptables-nft makes it, without libitm: a base chain."""
        self.tables[(family, "mangle")] = (
            f"table {family} mangle {{\n\tchain PREROUTING {{\n"
            "\t\ttype filter hook prerouting priority mangle; policy accept;\n\t}\n}\n"
        )


@pytest.fixture(autouse=True)
def _markers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(xtables, "MARKER_DIR", tmp_path / "run")  # never the machine's
    monkeypatch.setattr(xtables, "_UNNOTED", set())


def test_a_table_libitm_creates_carries_its_comment_and_goes_when_empty() -> None:
    xt = NftTables()
    xt.note_table(4)
    assert f'comment "{TABLE_COMMENT}"' in xt.tables[("ip", "mangle")]
    assert not xtables.table_marker(4).exists(), "no file needed"
    xt.tables[("ip", "mangle")] += "\tchain ITM-x {\n\t\tcounter\n\t}\n"  # a rule of ours
    assert not xt.drop_table_if_ours(4), "not empty"
    xt.tables[("ip", "mangle")] = xt.tables[("ip", "mangle")].replace(
        "\tchain ITM-x {\n\t\tcounter\n\t}\n", ""
    )
    assert xt.drop_table_if_ours(4)
    assert ("ip", "mangle") not in xt.tables


def test_a_table_that_was_there_before_stays() -> None:
    xt = NftTables()
    xt.made_by_iptables()
    xt.note_table(4)
    assert not any(c[1:2] == ["create"] for c in xt.commands), "nothing noted"
    assert not xt.drop_table_if_ours(4)
    assert ("ip", "mangle") in xt.tables


def test_without_table_comments_a_file_is_the_note(caplog: pytest.LogCaptureFixture) -> None:
    xt = NftTables(comments=False)
    with caplog.at_level(logging.WARNING, logger="libitm"):
        xt.note_table(6)
    assert xtables.table_marker(6).read_text() == "created by libitm\n"
    assert not caplog.records
    xt.made_by_iptables("ip6")  # iptables makes it, uncommented
    assert xt.drop_table_if_ours(6)
    assert not xtables.table_marker(6).exists()


def test_without_comments_or_a_writable_directory_it_is_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(xtables, "MARKER_DIR", blocked / "libitm")  # a file is in the way
    xt = NftTables(comments=False)
    with caplog.at_level(logging.WARNING, logger="libitm"):
        xt.note_table(4)
    assert any("cannot note in" in r.getMessage() for r in caplog.records)
