"""``itmroute``'s bad input: configuration fields, daemon names, stale state files,
a closed output pipe and bad arguments give one line and the documented exit code,
never a traceback (no root, no daemon)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from itmroute import cli, state
from itmroute.cli import main
from itmroute.config import ConfigError, load_config

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
BASE = f"address: 10.77.100.1\nkey: '{KEY}'\n"

#: (YAML, the key the line must name, what it must say)
BAD_CONFIGS = [
    (BASE + "backend: bogus\n", "backend", "'bogus' is not one of auto, kernel, nfqueue"),
    (BASE + "backend: offline\n", "backend", "not one of"),
    (BASE + "port: '7177'\n", "port", "'7177' is not an integer in 1..65535"),
    (BASE + "port: abc\n", "port", "'abc' is not an integer"),
    (BASE + "port: true\n", "port", "True is not an integer"),
    (BASE + "port: 70000\n", "port", "70000 is not an integer in 1..65535"),
    (BASE + "port: 7177.5\n", "port", "7177.5 is not an integer"),
    (BASE + "mtu: big\n", "mtu", "'big' is not an integer in 576..65535"),
    (BASE + "mark: 0x10000\n", "mark", "65536 is not an integer in 1..65535"),
    (BASE + "mark: 0\n", "mark", "0 is not an integer"),
    (BASE + "name: ../../etc/x\n", "name", "'../../etc/x' is not a daemon name"),
    (BASE + "name: a/b\n", "name", "'a/b' is not a daemon name"),
    (BASE + "name: .hidden\n", "name", "'.hidden' is not a daemon name"),
    (BASE + "name: ''\n", "name", "'' is not a daemon name"),
    (BASE + "name: 12\n", "name", "12 is not a daemon name"),
    (BASE + f"name: {'x' * 65}\n", "name", "is not a daemon name"),
    ("address: 10.0.0.1.5\n", "address", "'10.0.0.1.5' is not an IPv4 or IPv6 address"),
    ("address: 167772161\n", "address", "167772161 is not an IPv4 or IPv6 address"),
    (BASE + "neighbours: {r1: 'fd00::1'}\n", "neighbours.r1", "not an IPv4 address (like this"),
    ("name: a\n", "address", "is required"),
    (BASE + "neighbours: r1\n", "neighbours", "a mapping name: address"),
    (BASE + "neighbours: {r1: nope}\n", "neighbours.r1", "'nope' is not an IPv4 address"),
    (BASE + "neighbours: {'a/b': 10.0.0.2}\n", "neighbours.a/b", "not a neighbour name"),
    (BASE + "neighbours: {direct: 10.0.0.2}\n", "neighbours.direct", "'direct' names"),
    (BASE + "destinations: 10.0.0.0/8\n", "destinations", "a list of"),
    (BASE + "destinations: [{prefix: 10.0.0.0/8, colour: 1}]\n", "destinations[1]", "colour"),
    (BASE + "destinations: [{prefix: bogus}]\n", "destinations[1].prefix", "destination 1"),
    (BASE + "destinations: [{prefix: 10.0.0.0/8, itm: x}]\n", "destinations[1].itm", "'x'"),
    (BASE + "probe: {active_interval: fast}\n", "probe.active_interval", "'fast' is not a number"),
    (BASE + "probe: {active_interval: -1}\n", "probe.active_interval", "-1 is out of range"),
    (BASE + "probe: {active_interval: 0}\n", "probe.active_interval", "above 0"),
    (BASE + "probe: {dead_after: 0}\n", "probe.dead_after", "0 is not an integer in 1.."),
    (BASE + "probe: {race: 1}\n", "probe.race", "1 is not true or false"),
    (BASE + "probe: {rtt_alpha: 2}\n", "probe.rtt_alpha", "out of range (0..1)"),
    (BASE + "probe: {preset: nope}\n", "probe.preset", "unknown probe preset"),
    (BASE + "probe: 5\n", "probe", "a preset name"),
    (BASE + "probe: fast\n", "probe", "unknown probe preset"),
    (BASE + "probe: {speed: 1}\n", "probe", "unknown settings speed"),
    (BASE + "colour: red\n", "colour", "unknown keys: colour"),
    ("address: 10.0.0.1\n", "key", "required: the overlay's shared key"),
    ("address: 10.0.0.1\nkey: secretsecret\n", "key", "not hex (12 characters"),
    ("address: 10.0.0.1\nkey: 0011aabb\n", "key", "4 bytes; 16..32 bytes"),
    (f"address: 10.0.0.1\nkey: '{'ab' * 40}'\n", "key", "40 bytes; 16..32 bytes"),
    (f"address: 10.0.0.1\nkey: '{'ab' * 65}'\n", "key", "65 bytes; 16..32 bytes"),
    (BASE + "datapath: bogus\n", "datapath", "'bogus' is not one of auto, kernel, python"),
    (BASE + "datapath: 1\n", "datapath", "1 is not one of auto, kernel, python"),
]


@pytest.mark.parametrize(
    ("text", "key", "said"), BAD_CONFIGS, ids=[c[0].splitlines()[-1] for c in BAD_CONFIGS]
)
def test_bad_config_fields_name_file_and_key(
    text: str, key: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert str(exc.value).startswith(f"{f}:{key}: "), exc.value
    assert said in str(exc.value)
    assert "secretsecret" not in str(exc.value)  # a bad key is not repeated
    for cmd in (["run", "-c", str(f)], ["show", "-c", str(f)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err == f"itmroute: {exc.value}\n"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "empty, expected a mapping"),
        ("- a\n- b\n", "a list, expected a mapping"),
        ("address: [\n", ":2: not YAML"),
    ],
)
def test_files_that_are_not_configurations(text: str, said: str, tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_config(f)
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.yaml")


def test_a_binary_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a.yaml"
    f.write_bytes(b"name: x\n\x9d\xff\x00")
    for cmd in (["run", "-c", str(f)], ["show", "-c", str(f)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err == f"itmroute: {f}: not a text file (byte 8 is not UTF-8)\n", err


def test_accepted_edges(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(
        BASE + "name: lab-1_a.x\nport: 65535\nmtu: 576\nmark: 0xffff\nbackend: nfqueue\n"
        "probe: {active_interval: 0.01, retry_interval: 0, race: false, rtt_alpha: 1}\n"
        "datapath: kernel\n"
    )
    cfg = load_config(f)
    assert cfg.datapath == "kernel"
    assert (cfg.name, cfg.port, cfg.mtu, cfg.mark, cfg.backend) == (
        "lab-1_a.x",
        65535,
        576,
        0xFFFF,
        "nfqueue",
    )
    assert cfg.probe.active_interval == 0.01 and cfg.probe.race is False
    assert cfg.key == bytes.fromhex(KEY) and KEY not in repr(cfg)  # never printed


def test_a_name_cannot_walk_out_of_the_state_directory() -> None:
    assert cli.state_path("a") == cli.STATE_DIR / "a.json"
    for name in ("../../etc/x", "..", "a/b", "", ".x"):
        with pytest.raises(ConfigError, match="not a daemon name"):
            cli.state_path(name)


def _state(pid: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "a",
        "address": "10.77.100.1",
        "pid": pid,
        "tunnel_mtu": 1468,
        "counters": {"tunnelled": 0},
        "destinations": [],
        **extra,
    }


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_show_of_a_dead_daemon_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a.json"
    pid = _dead_pid()
    f.write_text(json.dumps(_state(pid, start_time=12345)))
    for extra in ([], ["--json"]):
        assert main(["show", "--state", str(f), *extra]) == 3
        out, err = capsys.readouterr()
        assert out == ""
        assert err == f"itmroute: a is not running (pid {pid} gone); {f} is what it left\n"


def test_show_of_a_reused_pid_or_an_earlier_boot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "a.json"
    me = state.identity()
    assert isinstance(me["start_time"], int) and me["boot_id"]
    f.write_text(json.dumps(_state(os.getpid(), start_time=me["start_time"] + 1)))
    assert main(["show", "--state", str(f)]) == 3
    assert "the pid now belongs to another process" in capsys.readouterr().err
    f.write_text(json.dumps(_state(os.getpid(), start_time=me["start_time"], boot_id="x")))
    assert main(["show", "--state", str(f)]) == 3
    assert "before the last reboot" in capsys.readouterr().err
    f.write_text(json.dumps({**_state(os.getpid()), **me}))
    assert main(["show", "--state", str(f)]) == 0
    assert capsys.readouterr().out.startswith("itmroute a (10.77.100.1)")
    f.write_text(json.dumps({**_state(os.getpid()), **me, "pid": "x"}))
    assert main(["show", "--state", str(f)]) == 3
    assert "names no pid" in capsys.readouterr().err


def test_process_start_time_reads_field_22() -> None:
    stat = Path("/proc/self/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    assert state.process_start_time(os.getpid()) == int(fields[19])
    assert state.process_start_time(_dead_pid()) is None


def test_show_json_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """`itmroute show --json | head -c 1`: the reader goes away with most unread."""
    f = tmp_path / "a.json"
    decisions = [{"t": i, "new": "r1", "reason": "better", "line": "x" * 100} for i in range(3000)]
    dest = {"prefix": "10.77.200.0/24", "decisions": decisions}
    f.write_text(json.dumps(_state(1, destinations=[dest])))  # pid 1 runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "itmroute", "show", "--state", str(f), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"{"
    proc.stdout.close()  # far more than a pipe's buffer is still to come
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert err == ""


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "the following arguments are required: cmd"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["run"], "the following arguments are required: -c/--config"),
        (["run", "-c", "x", "--backend", "offline"], "argument --backend: invalid choice"),
        (["run", "-c", "x", "--datapath", "ebpf"], "argument --datapath: invalid choice"),
        (["run", "-c", "x", "--duration", "-1"], "'-1' is not a duration above 0"),
        (["run", "-c", "x", "--duration", "soon"], "'soon' is not a number of seconds"),
        (["show", "--colour"], "unrecognized arguments: --colour"),
        (["run", "-c", "/nonexistent/a.yaml"], "/nonexistent/a.yaml: No such file"),
    ],
)
def test_bad_arguments_one_line(argv: list[str], said: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "itmroute", *argv], capture_output=True, text=True, check=False
    )
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert said in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_unexpected_errors_show_a_traceback_only_with_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "a.json"
    f.write_text(json.dumps(_state(1)))

    def broken(state: dict[str, Any]) -> str:
        raise RuntimeError("formatter broke")

    monkeypatch.setattr(cli, "format_table", broken)
    assert main(["show", "--state", str(f)]) == 1
    assert capsys.readouterr().err == (
        "itmroute: RuntimeError: formatter broke (--debug shows where)\n"
    )
    with pytest.raises(RuntimeError, match="formatter broke"):
        main(["--debug", "show", "--state", str(f)])


def test_genkey_prints_a_key_the_configuration_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["genkey"]) == 0
    key = capsys.readouterr().out.strip()
    f = tmp_path / "a.yaml"
    f.write_text(f"address: 10.0.0.1\nkey: '{key}'\n")
    assert load_config(f).key == bytes.fromhex(key) and len(key) == 64
    assert main(["genkey"]) == 0
    assert capsys.readouterr().out.strip() != key
