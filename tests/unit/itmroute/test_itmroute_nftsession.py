"""Which ``nft`` the WireGuard data path's owned table runs: a daemon started as a
service user (CAP_NET_ADMIN, a PATH without /usr/sbin) still finds it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from itmroute.nftsession import NftError, OwnedTable
from libitm import xtables


def test_nft_outside_path_is_found_in_sbin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    ran = tmp_path / "ran"
    nft = sbin / "nft"
    # says where it ran and exits at once: the table cannot be made, which names it
    nft.write_text(f'#!/bin/sh\necho "$0 $*" > {ran}\n')
    nft.chmod(nft.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(xtables, "SBIN_PATH", str(sbin))
    with pytest.raises(NftError, match="table inet itmt-test"):
        OwnedTable("inet", "itmt-test", timeout=5.0)
    assert ran.read_text().split() == [str(nft), "-i"]


def test_no_nft_anywhere_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(xtables, "SBIN_PATH", str(tmp_path / "sbin"))
    with pytest.raises(NftError, match="cannot run nft: No such file or directory"):
        OwnedTable("inet", "itmt-test", timeout=5.0)
