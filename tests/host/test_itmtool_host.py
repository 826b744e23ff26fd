"""itmtool on this machine's own kernel, which has no itm_mod (it cannot load modules)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def itmtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "itmtool.cli", *args], capture_output=True, text=True, check=False
    )


def test_status_without_itm_mod_says_how_to_get_it() -> None:
    assert not Path("/sys/module/itm_mod").exists()
    res = itmtool("status")
    assert res.returncode == 3
    assert "itm_mod is not loaded" in res.stderr and "itmtool vm" in res.stderr
    doc = json.loads(itmtool("status", "--json").stdout)
    assert doc == {
        "itm_mod": "not loaded",
        "netns_active": False,
        "apps": [],
        "nfqueue_apps": [],
        "rio_qdiscs": [],
    }


def test_changes_without_itm_mod_fail_cleanly() -> None:
    for args in (("enable", "x"), ("disable", "x"), ("priority", "x", "3"), ("netns", "on")):
        res = itmtool(*args)
        assert res.returncode == 3, args
        assert "Traceback" not in res.stderr
