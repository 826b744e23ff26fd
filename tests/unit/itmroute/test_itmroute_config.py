"""itmRoute's configuration file and its command line (no root, no daemon)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itmroute import ProbeSettings, load_config
from itmroute.cli import format_table, main
from itmroute.config import ConfigError, parse_config

GOOD = """
name: a
address: 10.77.100.1
neighbours: {r1: 10.77.1.2, r2: 10.77.2.2}
destinations:
  - prefix: 10.77.200.0/24
    itm: 10.77.200.1
  - prefix: 10.78.0.0/16
probe: {preset: itmroute, active_interval: 0.5}
key: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'
"""

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def test_a_full_configuration(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(GOOD)
    cfg = load_config(f)
    assert str(cfg.address) == "10.77.100.1" and cfg.port == 7177 and cfg.mtu == 1500
    assert {k: str(v) for k, v in cfg.neighbours.items()} == {"r1": "10.77.1.2", "r2": "10.77.2.2"}
    assert [str(d.itm) for d in cfg.destinations] == ["10.77.200.1", "10.78.0.0"]
    assert cfg.probe.active_interval == 0.5 and cfg.probe.idle_interval == 2.0


def test_presets_and_a_list_of_neighbours() -> None:
    cfg = parse_config(
        {"address": "10.0.0.1", "neighbours": ["10.0.1.2"], "probe": "ron", "key": KEY}
    )
    assert list(cfg.neighbours) == ["n1"]
    assert cfg.probe == ProbeSettings.preset("ron")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "address"),
        ({"address": "nope"}, "not an IPv4 or IPv6 address"),
        ({"address": "fd00::1", "destinations": [{"prefix": "10.0.0.0/8"}]}, "needs the IPv6"),
        (
            {"address": "fd00::1", "destinations": [{"prefix": "fd01::/64", "itm": "10.0.0.1"}]},
            "not an IPv6 address",
        ),
        ({"address": "10.0.0.1", "colour": 1}, "unknown keys: colour$"),
        # a misspelt key names the one it probably is
        (
            {"address": "10.0.0.1", "neighbors": {"r1": "10.0.0.2"}},
            r"neighbors: unknown keys: neighbors \(did you mean neighbours\?\)",
        ),
        (
            {"address": "10.0.0.1", "probe": {"active_intervall": 1, "speed": 2}},
            r"unknown settings active_intervall \(did you mean active_interval\?\), speed$",
        ),
        (
            {"address": "10.0.0.1", "destinations": [{"prefx": "10.9.0.0/16"}]},
            r"unknown keys: prefx \(did you mean prefix\?\) \(a destination has prefix, itm\)",
        ),
        ({"address": "10.0.0.1", "neighbours": {"direct": "10.0.0.2"}}, "'direct'"),
        ({"address": "10.0.0.1", "destinations": [{"itm": "10.0.0.2"}]}, "needs a prefix"),
        ({"address": "10.0.0.1", "destinations": [{"prefix": "10.0.0.1/8"}]}, "host bits"),
        ({"address": "10.0.0.1", "probe": "fast"}, "unknown probe preset"),
        ({"address": "10.0.0.1", "probe": {"speed": 1}}, "unknown settings speed"),
        ({"address": "10.0.0.1", "port": 0}, "port"),
        ({"address": "10.0.0.1", "mtu": 100}, "mtu"),
        ({"address": "10.0.0.1"}, r"key: required: .* itmroute genkey"),
        ({"address": "10.0.0.1", "key": "abc"}, r"key: not hex \(3 characters"),
        ({"address": "10.0.0.1", "key": "00" * 8}, "key: 8 bytes; 16..32 bytes"),
        ({"address": "10.0.0.1", "key": 1234}, "key: a string of 32..64 hex digits, not a int"),
    ],
)
def test_bad_configurations_say_why(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc)


STATE = {
    "name": "a",
    "address": "10.77.100.1",
    "pid": 1,
    "tunnel_mtu": 1440,
    "datapath": "python",
    "counters": {"tunnelled": 3, "auth_failed": 4, "replayed": 2},
    "destinations": [
        {
            "prefix": "10.77.200.0/24",
            "dest": "10.77.200.1",
            "active": True,
            "current": "r1",
            "switches": 1,
            "probes_sent": 10,
            "idle_for": 0.1,
            "paths": [
                {"name": "direct", "via": None, "rtt_ms": 40.0, "loss": 0.0, "alive": True},
                {
                    "name": "r1",
                    "via": "10.77.1.2",
                    "rtt_ms": 20.5,
                    "loss": 0.1,
                    "alive": True,
                    "heard": 7,
                },
                {"name": "r2", "via": "10.77.2.2", "rtt_ms": None, "loss": 0.0, "alive": False},
            ],
            "activated": 5.0,
            "decisions": [
                {
                    "t": 5.6,
                    "new": "r1",
                    "reason": "start",
                    "line": "10.77.200.1: direct -> r1 (start) direct=40.0ms/0% r1=20.5ms/0%",
                }
            ],
        }
    ],
}


def test_show_prints_the_path_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a.json"
    f.write_text(json.dumps(STATE))
    assert main(["show", "--state", str(f)]) == 0
    out = capsys.readouterr().out
    assert out == format_table(STATE) + "\n"
    lines = out.splitlines()
    r1 = next(line for line in lines if line.strip().startswith("r1"))
    assert r1.split() == ["r1", "10.77.1.2", "20.5", "10.0", "yes", "7", "*"]
    assert any("direct -> r1 (start)" in line for line in lines)
    assert "data path: python (every tunnelled packet crosses this daemon)" in lines
    assert any("dropped: 4 failed the check, 2 replayed or stale" in line for line in lines)
    assert main(["show", "--state", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == STATE


def test_show_without_a_daemon_and_run_with_a_bad_config(tmp_path: Path) -> None:
    assert main(["show", "--state", str(tmp_path / "none.json")]) == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("address: 300.1.1.1\n")
    assert main(["run", "-c", str(bad)]) == 2
