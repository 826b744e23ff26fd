"""``itmroute``'s bad input: configuration fields, daemon names, stale state files,
a closed output pipe and bad arguments give one line and the documented exit code,
never a traceback (no root, no daemon)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from itmroute import cli, state
from itmroute.cli import main
from itmroute.config import Config, ConfigError, load_config

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
    (
        BASE + "datapath: bogus\n",
        "datapath",
        "'bogus' is not one of auto, kernel, wireguard, python",
    ),
    (BASE + "datapath: 1\n", "datapath", "1 is not one of auto, kernel, wireguard, python"),
    (BASE + "wg_port: 62000\n", "wg_port", "not an integer in 1..61439"),
    (BASE + "wg_port: x\n", "wg_port", "'x' is not an integer in 1..61439"),
    (BASE + "wg_port: 5000\n", "wg_port", "5000..9096 (the WireGuard port and the relays'"),
    (BASE + "wg_port: 7177\n", "wg_port", "7177..11273 (the WireGuard port"),
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
    assert cfg.wg_port == 65535 - 1 - 4096  # the WireGuard ports below, where above has none
    assert load_config_text(tmp_path, BASE + "wg_port: 61439\n").wg_port == 61439
    assert load_config_text(tmp_path, BASE).wg_port == 7178


def load_config_text(tmp_path: Path, text: str) -> Config:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    return load_config(f)


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


def _dest(**extra: Any) -> dict[str, Any]:
    """A destination as the daemon writes it."""
    path = {"name": "direct", "via": None, "rtt_ms": 2.5, "loss": 0.0, "alive": True, "heard": 0}
    return {
        "prefix": "10.77.200.0/24",
        "dest": "10.77.200.1",
        "active": True,
        "current": "direct",
        "switches": 0,
        "probes_sent": 3,
        "paths": [path, {**path, "name": "r1", "via": "10.77.1.2", "rtt_ms": None}],
        "decisions": [{"t": 1.0, "new": "direct", "reason": "start", "line": "start"}],
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
    dest = _dest(decisions=decisions)
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
        (
            ["run", "-c", "x", "--duration", "-1"],
            "argument --duration: must be a number of seconds > 0, not '-1'",
        ),
        (
            ["run", "-c", "x", "--duration", "soon"],
            "argument --duration: must be a number of seconds > 0, not 'soon'",
        ),
        (["show", "--colour"], "itmroute show: unrecognized arguments: --colour"),
        (["show", "--colour"], "(see itmroute show --help)"),
        (["--colour", "show"], "itmroute: unrecognized arguments: --colour"),
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


def test_a_missing_or_unreadable_configuration_has_itmtool_s_codes(tmp_path: Path) -> None:
    """No such file: 5, permission denied: 4, a directory: 2 (as itmtool and the
    examples, libitm.files.describe_error's lines), one line."""
    cfg = tmp_path / "a.yaml"
    cfg.write_text("address: 10.0.0.1\n")
    cfg.chmod(0)
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    for argv, code, said in (
        (["run", "-c", "/nonexistent/a.yaml"], 5, "/nonexistent/a.yaml: No such file"),
        (["show", "-c", "/nonexistent/a.yaml"], 5, "/nonexistent/a.yaml: No such file"),
        (["run", "-c", str(tmp_path)], 2, f"{tmp_path}: Is a directory"),
        (["run", "-c", str(cfg)], 4, f"permission denied: {cfg}"),
    ):
        cmd = [sys.executable, "-m", "itmroute", *argv]
        if code == 4 and os.geteuid() == 0:
            tmp_path.chmod(0o755)
            cmd = drop + cmd
        res = subprocess.run(
            cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[3]
        )
        assert res.returncode == code, res.stderr
        assert len(res.stderr.splitlines()) == 1 and said in res.stderr, res.stderr


def _cannot_read(monkeypatch: pytest.MonkeyPatch, err: OSError) -> None:
    """Make every read of a configuration file raise `err` (a copy naming the file)."""

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        raise type(err)(err.errno, err.strerror, str(self))

    monkeypatch.setattr(Path, "read_text", read_text)


#: (what the path is, the OSError a read meets or None for the real one, exit, the line)
UNREADABLE: list[tuple[str, OSError | None, int, str]] = [
    ("missing", None, 5, "itmroute: {f}: No such file or directory"),
    ("directory", None, 2, "itmroute: {f}: Is a directory"),
    (
        "mode 0",
        PermissionError(errno.EACCES, "Permission denied"),
        4,
        "itmroute: permission denied: {f}",
    ),
    ("eio", OSError(errno.EIO, "Input/output error"), 1, "itmroute: {f}: Input/output error"),
]


@pytest.mark.parametrize(
    ("what", "err", "code", "said"), UNREADABLE, ids=[u[0] for u in UNREADABLE]
)
@pytest.mark.parametrize("cmd", ["run", "show"])
def test_a_configuration_that_cannot_be_read_is_describe_error_s_line(
    cmd: str,
    what: str,
    err: OSError | None,
    code: int,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The line and exit code itmtool gives for the same failure (describe_error):
    5 no such file, 2 a directory, 4 permission denied, 1 another I/O error. As
    root a file of mode 0 is read all the same: a read that meets EACCES stands
    for it (the real one is test_an_unreadable_configuration_without_privilege)."""
    f = tmp_path / ("a.d" if what == "directory" else "a.yaml")
    if what == "directory":
        f.mkdir()
    elif what != "missing":
        f.write_text(BASE)
    if err is not None:
        _cannot_read(monkeypatch, err)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert exc.value.code == code
    assert main([cmd, "-c", str(f)]) == code
    assert capsys.readouterr().err == said.format(f=f) + "\n"


def test_a_read_error_without_a_file_name_is_given_the_configuration_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(BASE)

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert (str(exc.value), exc.value.code) == (f"permission denied: {f}", 4)


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


# ------------------------------------------------- state files it must not touch
def _tree(root: Path) -> dict[str, bytes | str]:
    """Every name under `root` with its content (a directory's as 'dir', a link's target)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = p.read_bytes()
        else:
            out[rel] = "special"
    return out


class _NoRouter:
    """Stands for the daemon: the refusals come before it is built."""

    built: ClassVar[list[Path]] = []

    def __init__(self, cfg: Any, *, state_file: Path, **kw: Any) -> None:
        _NoRouter.built.append(state_file)
        raise OSError("the daemon was built")


@pytest.fixture
def no_router(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    from itmroute import daemon

    _NoRouter.built = []
    monkeypatch.setattr(daemon, "Router", _NoRouter)
    return _NoRouter.built


def _refusals(tmp: Path) -> list[tuple[list[str], int, str]]:
    """(--state argument, exit code, what the line says) of every path ``run`` refuses."""
    (tmp / "victim.yaml").write_text("my: precious\n")
    (tmp / "victim.tmp").write_text("unrelated\n")
    (tmp / "other.json").write_text('{"colour": "red"}\n')
    (tmp / "list.json").write_text(json.dumps({**_state(1), "counters": []}))
    (tmp / "adir").mkdir()
    (tmp / "link.json").symlink_to(tmp / "victim.yaml")
    (tmp / "hard.yaml").hardlink_to(tmp / "a.yaml")
    os.mkfifo(tmp / "fifo")
    (tmp / "plain").write_text("x")
    c = str(tmp / "a.yaml")
    return [
        ([c], 2, f"--state {c} is the configuration file; refusing to overwrite it"),
        ([str(tmp / "hard.yaml")], 2, "hard.yaml is the configuration file"),
        (
            [str(tmp / "victim.yaml")],
            2,
            "victim.yaml is not an itmroute state file (not JSON: Expecting value",
        ),
        ([str(tmp / "other.json")], 2, "other.json is not an itmroute state file (no name)"),
        ([str(tmp / "list.json")], 2, "(counters is a list, not an object); refusing to"),
        ([str(tmp / "adir")], 2, f"--state {tmp / 'adir'} is a directory, not a state file"),
        ([str(tmp / "link.json")], 2, "link.json is a symbolic link, not an itmroute state"),
        ([str(tmp / "fifo")], 2, "fifo is not an itmroute state file (not a regular file)"),
        ([str(tmp / "no" / "such" / "s.json")], 5, f": no such directory {tmp / 'no' / 'such'}"),
        ([str(tmp / "plain" / "s.json")], 5, f": {tmp / 'plain'} is not a directory"),
    ]


def test_run_refuses_a_state_path_it_must_not_replace_or_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_router: list[Path]
) -> None:
    """`run --state cfg.yaml` (or any file that is not a state file, a directory, a
    missing directory) used to overwrite it and delete it at exit, with a ``.tmp``
    beside it: now one line, exit 2 (5: no such directory), nothing touched."""
    (tmp_path / "a.yaml").write_text(BASE)
    cases = _refusals(tmp_path)
    before = _tree(tmp_path)
    for argv, code, said in cases:
        rc = main(["run", "-c", str(tmp_path / "a.yaml"), "--state", *argv, "--duration", "1"])
        err = capsys.readouterr().err
        assert rc == code, (argv, err)
        assert len(err.splitlines()) == 1 and err.startswith("itmroute: --state "), err
        assert said in err, err
    assert no_router == []  # refused before the daemon opened anything
    assert _tree(tmp_path) == before  # victim.yaml, victim.tmp, no/such not created


def test_run_replaces_a_state_file_of_a_daemon_that_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_router: list[Path]
) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    stale = tmp_path / "a.json"
    stale.write_text(json.dumps(_state(_dead_pid(), destinations=[_dest()])))
    assert main(["run", "-c", str(tmp_path / "a.yaml"), "--state", str(stale)]) == 1
    assert no_router == [stale]  # past the checks: the daemon was started with it
    # the default directory is still created (and what is in it checked)
    run_dir = tmp_path / "run" / "itmroute"
    monkeypatch.setattr(cli, "STATE_DIR", run_dir)
    assert main(["run", "-c", str(tmp_path / "a.yaml")]) == 1
    assert run_dir.is_dir() and no_router[-1] == run_dir / "itmroute.json"
    (run_dir / "itmroute.json").mkdir()
    assert main(["run", "-c", str(tmp_path / "a.yaml")]) == 2
    assert len(no_router) == 2


#: (the state file, what `show` must say after 'is not an itmroute state file')
BAD_STATES: list[tuple[Any, str]] = [
    ({"counters": []}, "(counters is a list, not an object)"),
    ({"counters": {"tunnelled": "x"}}, "(counters.tunnelled is a string, not an integer)"),
    ({"destinations": {}}, "(destinations is an object, not a list)"),
    ({"destinations": [1]}, "(destinations[1] is an integer, not an object)"),
    ({"destinations": [_dest(paths=[{"name": "direct"}])]}, "(no destinations[1].paths[1].via)"),
    ({"destinations": [_dest(paths=[{"name": None}])]}, "paths[1].name is null, not a string)"),
    ({"destinations": [_dest(decisions=[{}])]}, "(no destinations[1].decisions[1].line)"),
    ({"destinations": [_dest(active="yes")]}, "active is a string, not true or false)"),
    ({"tunnel_mtu": None}, "(tunnel_mtu is null, not an integer)"),
    ({"kernel": []}, "(kernel is a list, not an object or null)"),
    ({"name": 5}, "(name is an integer, not a string)"),
]


@pytest.mark.parametrize(("changed", "said"), BAD_STATES, ids=[s for _, s in BAD_STATES])
def test_show_of_a_file_that_is_not_a_state_file(
    changed: dict[str, Any], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file of a running process (this one) with a field the daemon never
    writes: one line and exit 2 (was AttributeError, exit 1, or '(TypeError(...)
    missing)', exit 3)."""
    f = tmp_path / "a.json"
    f.write_text(json.dumps({**_state(os.getpid(), destinations=[_dest()]), **changed}))
    for extra in ([], ["--json"]):
        assert main(["show", "--state", str(f), *extra]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.endswith(f"{said}\n"), err
        assert err.startswith(f"itmroute: {f} is not an itmroute state file (")
        assert len(err.splitlines()) == 1


def test_show_of_a_directory_or_a_file_that_is_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    assert main(["show", "--state", str(d)]) == 2
    assert capsys.readouterr().err == (
        f"itmroute: {d} is a directory, not an itmroute state file\n"
    )
    f = tmp_path / "a.yaml"
    for text, said in (
        (BASE, "not JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[1, 2]", "a list, not a JSON object"),
        ("[" * 100_000, "not JSON: maximum recursion depth exceeded"),
    ):
        f.write_text(text)
        assert main(["show", "--state", str(f)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"itmroute: {f} is not an itmroute state file ({said}"), err
        assert len(err.splitlines()) == 1
    f.write_bytes(b'{"name": "\xff"}')
    assert main(["show", "--state", str(f)]) == 2
    assert "(not UTF-8 text)" in capsys.readouterr().err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # not opened: no wait for a writer
    assert main(["show", "--state", str(fifo)]) == 2
    assert "(not a regular file)" in capsys.readouterr().err
    # no file at all is still 'not running', exit 3
    assert main(["show", "--state", str(tmp_path / "none.json")]) == 3
    assert "No such file or directory); is the daemon running?" in capsys.readouterr().err
