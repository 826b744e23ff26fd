"""`itmtool status`, `enable`, `disable` and `priority` against the live itm_mod."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.kernel import kit
from tests.kernel.kit import Topology

STAT_KEYS = {
    "seen",
    "matched",
    "classified",
    "accept",
    "drop",
    "stolen",
    "queue",
    "bytes",
    "time_ns",
}
APP_KEYS = {
    "label",
    "type",
    "hook",
    "priority",
    "enabled",
    "pid",
    "owner",
    "queue_num",
    "queue_count",
    "order",
    "interest",
    "stats",
}


itmtool = kit.itmtool


def itmtool_command(*args: str) -> subprocess.CompletedProcess[str]:
    """`itmtool ARGS` as a user runs it: a new process through the console entry point."""
    cmd = [sys.executable, "-m", "itmtool.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_status_when_nothing_is_loaded() -> None:
    res = itmtool_command("status")
    assert res.returncode == 3
    assert "itm_mod is not loaded" in res.stderr
    res = itmtool("status", "--json")
    assert res.returncode == 3
    assert json.loads(res.stdout) == {
        "itm_mod": "not loaded",
        "netns_active": False,
        "apps": [],
        "nfqueue_apps": [],
        "rio_qdiscs": [],
    }


def test_status_shows_live_counters_in_run_order(topo: Topology) -> None:
    apps = (
        "label=b-second,hook=fwd,prio=7,proto=udp,dport=5000;"
        "label=a-first,hook=fwd,prio=3,family=4,proto=udp,dst=10.77.2.0/24;"
        "label=outbound,hook=out,proto=icmp,class=0"
    )
    with kit.modules(apps=apps):
        kit.itm_attach(topo.router)
        assert kit.udp(topo, 7, 5000) == 7
        res = itmtool("status", "--json", ns=topo.router)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["itm_mod"] == "loaded" and doc["netns_active"] is True
        assert [a["label"] for a in doc["apps"]] == ["a-first", "b-second", "outbound"]
        for app in doc["apps"]:
            assert set(app) == APP_KEYS
            assert set(app["stats"]) == STAT_KEYS
            assert app["type"] == "kernel" and app["owner"] == "itm_test_app"
        first = doc["apps"][0]
        assert first["hook"] == "ip_forward" and first["priority"] == 3
        assert first["interest"]["dst"] == "10.77.2.0/24"
        assert first["stats"]["matched"] == 7 and first["stats"]["accept"] == 7

        table = itmtool("status", ns=topo.router)
        assert table.returncode == 0
        lines = table.stdout.splitlines()
        assert "hooks active" in lines[0]
        assert lines[1].split()[:2] == ["HOOK", "LABEL"]
        assert [ln.split()[1] for ln in lines[2:]] == ["a-first", "b-second", "outbound"]
        assert lines[2].split()[3] == "itm_test_app"  # OWNER
        assert lines[2].split()[7] == "7"  # MATCHED


def test_enable_disable_priority_from_the_command_line(topo: Topology) -> None:
    with kit.modules(apps="label=wall,hook=fwd,proto=udp,dport=5000,verdict=drop"):
        kit.itm_attach(topo.router)
        assert kit.udp(topo, 3, 5000) == 0
        assert itmtool("disable", "wall").returncode == 0
        assert kit.udp(topo, 3, 5000) == 3
        assert itmtool("enable", "wall").returncode == 0
        assert kit.udp(topo, 3, 5000) == 0
        assert itmtool("priority", "wall", "-5").returncode == 0
        doc = json.loads(itmtool("status", "--json").stdout)
        assert doc["apps"][0]["priority"] == -5
        missing = itmtool("enable", "nobody")
        assert missing.returncode == 5
        assert "no application with this label" in missing.stderr
        bad = itmtool("priority", "wall", "high")
        assert bad.returncode == 2
