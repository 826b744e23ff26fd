"""The command-line contract of itmtool and the examples, as a user meets it.

Every case runs the real command as a subprocess (``python -m itmtool.cli ...``,
``python examples/....py ...``) with bad files and bad arguments and checks
what a user sees: the documented exit code, one ``itmtool: CMD: message`` line
(at most a hint line more; argparse's usage for bad arguments), never a
traceback, and no partial or temporary output left behind. The non-root half is
tests/host/test_cli_contract_host.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from itmtool import cli
from libitm.pcap import PcapWriter

ROOT = Path(__file__).resolve().parents[2]
ITMTOOL = [sys.executable, "-m", "itmtool.cli"]
EXAMPLES = ROOT / "examples"
#: how long a case may take before the test gives up on it (not an assertion on time)
LIMIT = 60


def _udp(dport: int, tos: int = 0) -> bytes:
    l4 = struct.pack("!HHHH", 40000, dport, 12, 0) + b"ping"
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    return struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), 1, 0, 64, 17, 0, a, b) + l4


def _tcp(dport: int) -> bytes:
    l4 = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 0x50, 0x18, 1024, 0, 0) + b"data"
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, 6, 0, a, b) + l4


def write_trace(path: Path, n: int = 8) -> Path:
    """A raw-IP pcap of ``n`` packets: UDP to 23, 445, 80 and TCP to 80, in turn."""
    with path.open("wb") as f:
        w = PcapWriter(f)
        kinds = [_udp(23), _udp(445), _udp(80), _tcp(80)]
        for i in range(n):
            w.write_packet(1.0 + i * 0.01, kinds[i % 4])
    return path


APPS = {
    "good.py": """
from libitm import Application, Hook, Interest, Verdict

class Mark(Application):
    label = "mark"
    hook = Hook.POST_ROUTING
    interest = Interest(protocol="udp")
    def class_func(self, pkt):
        return 1
    def process_func(self, where, cls, pkt):
        pkt.tos = 0x10
        return Verdict.ACCEPT
""",
    "import_error.py": "import os\nimport no_such_module_anywhere\n",
    "syntax_error.py": "x = 1\ndef broken(:\n    pass\n",
    "raises.py": "x = 1\ny = {}['missing']\n",
    "exits.py": "import sys\nsys.exit(3)\n",
    "apps_raises.py": "def apps():\n    raise RuntimeError('no apps today')\n",
    "main_raises.py": "def main(argv):\n    raise ValueError('bad main')\n",
    "no_apps.py": "X = 1\n",
    "bad_hook.py": """
from libitm import ItmInfo
def apps():
    info = ItmInfo("x")
    info.hook = "sideways"
    return [info]
""",
    "notes.txt": "not python\n",
    "apps_int.py": "def apps():\n    return 42\n",
    "apps_empty.py": "def apps():\n    return []\n",
    "main_no_argv.py": "def main():\n    return 0\n",
    "needs_args.py": """
from libitm import Application
class Needs(Application):
    def __init__(self, threshold):
        super().__init__()
""",
}
#: an application file named like a package itmtool imports (in a directory of its
#: own: `python -m itmtool.cli` puts the working directory first on sys.path)
SHADOWING_APP = """
from libitm import Application, Hook
class Watch(Application):
    label = "watch"
    hook = Hook.IP_IN
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory with a good trace, damaged captures and application files."""
    write_trace(tmp_path / "in.pcap")
    (tmp_path / "empty.pcap").write_bytes(b"")
    good = (tmp_path / "in.pcap").read_bytes()
    (tmp_path / "trunc.pcap").write_bytes(good[:-7])
    (tmp_path / "text.pcap").write_text("hello\n")
    (tmp_path / "link147.pcap").write_bytes(
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147)
    )
    (tmp_path / "adir").mkdir()
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "libitm.py").write_text(SHADOWING_APP)
    (tmp_path / "binary.py").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    (tmp_path / "link.pcap").symlink_to(tmp_path / "in.pcap")
    for name, text in APPS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@dataclass
class Case:
    """One command line and what the user must see."""

    argv: list[str]
    code: int
    says: str = ""  # a fragment of stderr
    leaves: tuple[str, ...] = ()  # files (or DIR/) it creates; nothing else may appear
    example: str = ""  # run examples/<example> instead of itmtool


def _snapshot(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], cwd: Path, example: str = "") -> subprocess.CompletedProcess[str]:
    """Run itmtool (or an example) in ``cwd``."""
    cmd = [sys.executable, str(EXAMPLES / example)] if example else ITMTOOL
    return subprocess.run(
        cmd + argv, cwd=cwd, capture_output=True, text=True, timeout=LIMIT, check=False
    )


def check_contract(res: subprocess.CompletedProcess[str], case: Case) -> None:
    """Exit code, no traceback, the message on stderr in one line (+ hint or usage)."""
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == case.code, (res.returncode, res.stderr)
    assert case.says in res.stderr, res.stderr
    # itmtool's own errors are one line (+ hint); an example's argparse prints its usage
    if case.code != 0 and ".py: error:" not in res.stderr:
        lines = res.stderr.splitlines()
        prog = f"{case.example}: error:" if case.example else "itmtool:"
        assert 1 <= len(lines) <= 2 and lines[0].startswith(prog), res.stderr


RUN_BLOCKER = ["run", str(EXAMPLES / "port_blocker.py"), "--pcap", "in.pcap"]

CASES = {
    # status, enable, disable, priority, netns: their argument paths
    "status interval negative": Case(["status", "--watch", "--interval", "-1"], 2, "> 0"),
    "status interval zero": Case(["status", "--interval", "0"], 2, "> 0"),
    "status interval word": Case(["status", "--interval", "soon"], 2, "> 0"),
    "enable no label": Case(["enable"], 2, "label"),
    "disable two labels": Case(
        ["disable", "a", "b"], 2, "itmtool: disable: unrecognized arguments: b"
    ),
    # an argument no parser takes is named by its subcommand, with its --help
    "status extra": Case(["status", "--json", "x"], 2, "see 'itmtool status --help'"),
    "rio show extra": Case(
        ["rio", "show", "lo", "--x"], 2, "itmtool: rio: show: unrecognized arguments: --x"
    ),
    "option before the command": Case(["--x", "status"], 2, "see 'itmtool --help'"),
    "priority not a number": Case(["priority", "x", "high"], 2, "is not an integer"),
    "priority beyond s32": Case(["priority", "x", "99999999999"], 2, "is not an integer"),
    "netns maybe": Case(["netns", "maybe"], 2, "invalid choice"),
    "unknown command": Case(["frobnicate"], 2, "invalid choice"),
    # build, load, unload, vm, dkms, new: argument and error paths
    "build no headers": Case(["build", "--kernel", "9.9"], 6, "no kernel headers"),
    "build kernel missing": Case(["build", "--kernel"], 2, "expected one argument"),
    "build kernel empty": Case(["build", "--kernel", ""], 2, "is not a kernel"),
    # an empty $K must not widen `dkms remove` to every kernel
    "dkms remove kernel empty": Case(
        ["dkms", "remove", "--kernel", "", "--dry-run"], 2, "is not a kernel"
    ),
    "dkms install dry run no headers": Case(
        ["dkms", "install", "--dry-run", "--kernel", "9.9"], 6, "no kernel headers"
    ),
    "vm kernel empty": Case(["vm", "--kernel", " ", "--no-build"], 2, "is not a kernel"),
    "load no name": Case(["load"], 2, "required"),
    "unload no name": Case(["unload"], 2, "itmtool: unload: which module?"),
    "unload --all no name": Case(["unload", "--all"], 2, "unload itm_mod --all"),
    "vm negative timeout": Case(["vm", "--timeout", "-5"], 2, "> 0"),
    "vm zero cpus": Case(["vm", "--cpus", "0"], 2, "1..16"),
    "vm unknown kernel": Case(["vm", "--kernel", "9.9", "--no-build"], 6, "no kernel image"),
    "dkms bad action": Case(["dkms", "frob"], 2, "invalid choice"),
    "new bad name": Case(["new", "user", "1bad"], 2, "bad name"),
    "new bad kind": Case(["new", "module", "x"], 2, "invalid choice"),
    "new bad hook": Case(["new", "user", "x", "--hook", "bogus", "--dir", "n1"], 2, "hook"),
    "new negative timer": Case(["new", "user", "x", "--timer-ms", "-5"], 2, "--timer-ms -5"),
    "new dir is a file": Case(["new", "user", "x", "--dir", "in.pcap"], 2, "in.pcap"),
    "new empty label": Case(["new", "user", "x", "--label", "", "--dir", "n2"], 2, "bad --label"),
    "new": Case(["new", "user", "fresh", "--dir", "fresh"], 0, leaves=("fresh/",)),
    # run: application files
    "run missing file": Case(["run", "nope.py", "--pcap", "in.pcap"], 5, "no such application"),
    "run a directory": Case(["run", "adir", "--pcap", "in.pcap"], 2, "is a directory"),
    "run not python": Case(["run", "notes.txt", "--pcap", "in.pcap"], 2, "not a Python file"),
    "run import error": Case(
        ["run", "import_error.py", "--pcap", "in.pcap"],
        1,
        "import_error.py:2: ModuleNotFoundError: No module named 'no_such_module_anywhere'",
    ),
    "run syntax error": Case(
        ["run", "syntax_error.py", "--pcap", "in.pcap"], 1, "syntax_error.py:2: SyntaxError"
    ),
    "run raises at import": Case(
        ["run", "raises.py", "--pcap", "in.pcap"], 1, "raises.py:2: KeyError: 'missing'"
    ),
    "run exits at import": Case(["run", "exits.py", "--pcap", "in.pcap"], 1, "SystemExit(3)"),
    "run apps raises": Case(
        ["run", "apps_raises.py", "--pcap", "in.pcap"],
        1,
        "apps_raises.py:2: in apps(): RuntimeError: no apps today",
    ),
    "run main raises": Case(
        ["run", "main_raises.py", "--pcap", "in.pcap"], 1, "in main(): ValueError: bad main"
    ),
    "run no apps": Case(["run", "no_apps.py", "--pcap", "in.pcap"], 2, "has no applications"),
    "run apps returns an int": Case(
        ["run", "apps_int.py", "--pcap", "in.pcap"], 2, "apps_int.py: apps() returned 42"
    ),
    "run apps returns none": Case(
        ["run", "apps_empty.py", "--pcap", "in.pcap"], 2, "apps_empty.py: apps() returned []"
    ),
    "unload a path": Case(["unload", "../x"], 5, "unload takes a name, not a path"),
    "run main without argv": Case(
        ["run", "main_no_argv.py", "--pcap", "in.pcap"],
        1,
        "main_no_argv.py: in main(): TypeError: ",
    ),
    "run class needs arguments": Case(
        ["run", "needs_args.py", "--pcap", "in.pcap"], 1, "needs_args.py: building Needs(): "
    ),
    "run binary file": Case(["run", "binary.py", "--pcap", "in.pcap"], 1, "binary.py: "),
    "run a file named libitm.py": Case(["run", "apps/libitm.py", "--pcap", "in.pcap"], 0),
    "run unexpected": Case(
        ["run", "bad_hook.py", "--pcap", "in.pcap"], 1, "run with --debug for the traceback"
    ),
    "run args to apps": Case(["run", "good.py", "--pcap", "in.pcap", "--", "-x"], 2, "no argu"),
    "run negative duration": Case(["run", "good.py", "--duration", "-1"], 2, "> 0"),
    # run: --pcap
    "run pcap missing": Case(["run", "good.py", "--pcap", "nope.pcap"], 5, "nope.pcap"),
    "run pcap directory": Case(["run", "good.py", "--pcap", "adir"], 2, "adir: is a directory"),
    "run pcap empty": Case(["run", "good.py", "--pcap", "empty.pcap"], 1, "empty file"),
    "run pcap truncated": Case(
        ["run", "good.py", "--pcap", "trunc.pcap", "--out", "o.pcap"], 1, "truncated pcap file"
    ),
    "run pcap text": Case(["run", "good.py", "--pcap", "text.pcap"], 1, "not a pcap or pcapng"),
    "run pcap link type": Case(
        ["run", "good.py", "--pcap", "link147.pcap"], 1, "unsupported link type 147"
    ),
    "run offline no pcap": Case(["run", "good.py", "--backend", "offline"], 2, "needs --pcap"),
    "run out without offline": Case(
        ["run", "good.py", "--backend", "nfqueue", "--out", "o.pcap"], 2, "offline backend"
    ),
    # run: --out and --log
    "run out is input": Case(
        ["run", "good.py", "--pcap", "in.pcap", "--out", "in.pcap"], 2, "destroy the input"
    ),
    "run out is a link to input": Case(
        ["run", "good.py", "--pcap", "in.pcap", "--out", "link.pcap"], 2, "destroy the input"
    ),
    "run log is input": Case(
        ["run", "good.py", "--pcap", "link.pcap", "--log", "in.pcap"], 2, "destroy the input"
    ),
    "run out is log": Case(
        ["run", "good.py", "--pcap", "in.pcap", "--out", "o.pcap", "--log", "./o.pcap"],
        2,
        "same file",
    ),
    "run out is a directory": Case(
        ["run", "good.py", "--pcap", "in.pcap", "--out", "adir"], 2, "is a directory"
    ),
    "run out in no directory": Case(
        ["run", "good.py", "--pcap", "in.pcap", "--out", "no/such/o.pcap"], 5, "no such directory"
    ),
    "run ok": Case(
        ["run", "good.py", "--pcap", "in.pcap", "--out", "o.pcap", "--log", "v.log"],
        0,
        leaves=("o.pcap", "v.log"),
    ),
    "run through main": Case(
        [*RUN_BLOCKER, "--out", "o.pcap", "--", "--ports", "23,445"],
        0,
        "dropped 4 of 4",
        leaves=("o.pcap",),
    ),
    "run through main bad args": Case(
        [*RUN_BLOCKER, "--", "--ports", "x"],
        2,
        "--ports",
    ),
    # the examples, run directly
    "port_blocker list": Case(
        ["--ports", "23,445", "--pcap", "in.pcap", "--out", "o.pcap"],
        0,
        "dropped 4 of 4",
        ("o.pcap",),
        "port_blocker.py",
    ),
    "port_blocker range list": Case(
        ["--ports", "20-25,440-450", "--pcap", "in.pcap"], 0, "dropped 4", (), "port_blocker.py"
    ),
    "port_blocker bad port": Case(
        ["--ports", "23,http"], 2, "'http' is not a port", (), "port_blocker.py"
    ),
    "port_blocker port too big": Case(["--ports", "70000"], 2, "0..65535", (), "port_blocker.py"),
    "port_blocker workers offline": Case(
        ["--ports", "23", "--pcap", "in.pcap", "--workers", "2"],
        2,
        "--workers goes with a live backend",
        (),
        "port_blocker.py",
    ),
    "qos_ctrl queue base too big": Case(
        ["--backend", "nfqueue", "--queue-base", "99999999999"],
        2,
        "a queue number in 0..65535",
        (),
        "qos_ctrl.py",
    ),
    "port_blocker bad hook": Case(
        ["--ports", "23", "--hook", "side"], 2, "unknown hook", (), "port_blocker.py"
    ),
    "port_blocker out is input": Case(
        ["--ports", "23", "--pcap", "in.pcap", "--out", "link.pcap"],
        2,
        "destroy the input",
        (),
        "port_blocker.py",
    ),
    "port_blocker pcap missing": Case(
        ["--ports", "23", "--pcap", "nope.pcap"], 5, "nope.pcap", (), "port_blocker.py"
    ),
    "port_blocker pcap truncated": Case(
        ["--ports", "23", "--pcap", "trunc.pcap", "--out", "o.pcap"],
        1,
        "truncated",
        (),
        "port_blocker.py",
    ),
    "qos_ctrl threshold 0": Case(
        ["--threshold", "0", "--pcap", "in.pcap", "--out", "o.pcap"],
        0,
        '"short"',
        ("o.pcap",),
        "qos_ctrl.py",
    ),
    "qos_ctrl threshold negative": Case(["--threshold", "-1"], 2, ">= 0", (), "qos_ctrl.py"),
    "qos_ctrl bad src": Case(["--src", "10.0.0.x"], 2, "not an address", (), "qos_ctrl.py"),
    "qos_ctrl negative duration": Case(["--duration", "-2"], 2, "> 0", (), "qos_ctrl.py"),
    "qos_ctrl out without offline": Case(
        ["--backend", "nfqueue", "--log", "v.log"], 2, "offline backend", (), "qos_ctrl.py"
    ),
    "qos_ctrl out is input": Case(
        ["--pcap", "in.pcap", "--out", "in.pcap"], 2, "destroy the input", (), "qos_ctrl.py"
    ),
    "qos_ctrl pcap directory": Case(["--pcap", "adir"], 2, "is a directory", (), "qos_ctrl.py"),
    "qos_ctrl pcap empty": Case(
        ["--pcap", "empty.pcap", "--log", "v.log"], 1, "empty file", (), "qos_ctrl.py"
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cli_case(work: Path, name: str) -> None:
    case = CASES[name]
    before = _snapshot(work)
    res = run_cli(case.argv, work, case.example)
    check_contract(res, case)
    after = _snapshot(work)
    for path, digest in before.items():
        assert after.get(path) == digest, f"{path} changed"  # inputs stay as they were
    made = sorted(set(after) - set(before))  # no partial output, no temporary file
    files = [f for f in made if not any(d.endswith("/") and f.startswith(d) for d in case.leaves)]
    assert files == sorted(f for f in case.leaves if not f.endswith("/"))
    assert all(any(f.startswith(d) for f in made) for d in case.leaves)


def test_debug_shows_the_traceback(work: Path) -> None:
    res = run_cli(["--debug", "run", "bad_hook.py", "--pcap", "in.pcap"], work)
    assert res.returncode == 1
    assert "Traceback" in res.stderr
    assert res.stderr.splitlines()[-2].startswith("itmtool: run: unexpected error: ValueError")


def test_a_failed_run_leaves_the_previous_output(work: Path) -> None:
    (work / "o.pcap").write_bytes(b"previous result")
    res = run_cli(["run", "good.py", "--pcap", "trunc.pcap", "--out", "o.pcap"], work)
    check_contract(res, Case([], 1, "trunc.pcap: truncated pcap file"))
    assert (work / "o.pcap").read_bytes() == b"previous result"
    assert not [p for p in work.iterdir() if p.name.endswith(".part")]


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + LIMIT
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never got going"
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=LIMIT)
    assert "Traceback" not in err, err
    assert proc.returncode == 130, (proc.returncode, err)
    assert len(err.splitlines()) <= 1, err
    return out, err


SLOW_APP = """
import pathlib, time
from libitm import Application, Hook, Verdict

class Slow(Application):
    label = "slow"
    hook = Hook.IP_IN
    def class_func(self, pkt):
        pathlib.Path("started").touch()
        time.sleep(0.01)
        return 1
    def process_func(self, where, cls, pkt):
        return Verdict.ACCEPT
"""


def test_ctrl_c_during_an_offline_run_exits_130_and_keeps_the_old_output(work: Path) -> None:
    write_trace(work / "long.pcap", 10_000)
    (work / "slow.py").write_text(SLOW_APP)
    (work / "o.pcap").write_bytes(b"previous result")
    argv = ["run", "slow.py", "--pcap", "long.pcap", "--out", "o.pcap", "--log", "v.log"]
    proc = subprocess.Popen(ITMTOOL + argv, cwd=work, text=True, stdout=-1, stderr=-1)
    _wait_for((work / "started").exists, proc)
    out, _ = _interrupt(proc)
    assert "slow" in out  # the counters so far
    assert (work / "o.pcap").read_bytes() == b"previous result"
    assert sorted(p.name for p in work.iterdir() if p.name[0] in ".ov") == ["o.pcap"]


def test_ctrl_c_while_an_application_file_imports_exits_130(work: Path) -> None:
    app = "import pathlib, time\npathlib.Path('started').touch()\ntime.sleep(60)\n"
    (work / "sleepy.py").write_text(app)
    proc = subprocess.Popen(
        [*ITMTOOL, "run", "sleepy.py", "--pcap", "in.pcap", "--out", "o.pcap"],
        cwd=work,
        text=True,
        stdout=-1,
        stderr=-1,
    )
    _wait_for((work / "started").exists, proc)
    _interrupt(proc)
    assert not (work / "o.pcap").exists()


def test_ctrl_c_stops_an_example_with_130_and_no_partial_output(work: Path) -> None:
    write_trace(work / "long.pcap", 200_000)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "qos_ctrl.py"), "--pcap", "long.pcap", "--out", "o.pcap"],
        cwd=work,
        text=True,
        stdout=-1,
        stderr=-1,
    )
    _wait_for(lambda: any(p.name.endswith(".part") for p in work.iterdir()), proc)
    _, err = _interrupt(proc)
    assert '"qos"' in err  # the counters so far
    assert not [p for p in work.iterdir() if p.name.startswith(".o.pcap") or p.name == "o.pcap"]


def _watch(work: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [*ITMTOOL, "status", "--watch", "--interval", "0.05", *extra]
    return subprocess.Popen(argv, cwd=work, text=True, stdout=-1, stderr=-1)


def test_status_watch_json_is_one_document_per_line_and_ctrl_c_exits_130(work: Path) -> None:
    proc = _watch(work, "--json")
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    _interrupt(proc)
    for line in lines:
        assert "\033" not in line
        doc = json.loads(line)
        assert doc["itm_mod"] in ("loaded", "not loaded") and isinstance(doc["apps"], list)


def test_status_watch_into_a_closed_pipe_exits_141_quietly(work: Path) -> None:
    proc = _watch(work, "--json")
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    proc.wait(timeout=LIMIT)
    err = proc.stderr.read()
    assert proc.returncode == cli.EXIT_BROKEN_PIPE, err
    assert err == ""


COMMANDS = {
    "status": (["status"], "_cmd_status"),
    "enable": (["enable", "x"], "_cmd_set"),
    "disable": (["disable", "x"], "_cmd_set"),
    "priority": (["priority", "x", "3"], "_cmd_set"),
    "netns": (["netns"], "_cmd_netns"),
    "build": (["build"], "_cmd_build"),
    "load": (["load", "itm_mod"], "_cmd_load"),
    "unload": (["unload", "itm_mod"], "_cmd_unload"),
    "run": (["run", "x.py"], "_cmd_run"),
    "new": (["new", "user", "x"], "_cmd_new"),
    "vm": (["vm"], "_cmd_vm"),
    "dkms": (["dkms"], "_cmd_dkms"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_maps_ctrl_c_to_130(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, func = COMMANDS[name]

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, func, interrupted)
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "itmtool: interrupted\n"


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (PermissionError(13, "Permission denied", "/var/x"), 4, "permission denied: /var/x"),
        (FileNotFoundError(2, "No such file or directory", "/x"), 5, "/x: No such file"),
        (OSError(28, "No space left on device", "/d"), 1, "/d: No space left"),
        (RuntimeError("boom"), 1, "unexpected error: RuntimeError: boom"),
    ],
)
def test_errors_out_of_any_subcommand_are_one_line_with_their_code(
    exc: Exception,
    code: int,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fails(args: object) -> int:
        raise exc

    monkeypatch.setattr(cli, "_cmd_new", fails)
    assert cli.main(["new", "user", "x"]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"itmtool: new: {says}") and "Traceback" not in err
    assert len(err.splitlines()) <= 2


def test_exit_codes_agree_with_libitm() -> None:
    from libitm import files

    assert (files.EXIT_FAILED, files.EXIT_USAGE, files.EXIT_PERM) == (
        cli.EXIT_FAILED,
        cli.EXIT_USAGE,
        cli.EXIT_PERM,
    )
    assert (files.EXIT_NOT_FOUND, files.EXIT_UNSUPPORTED) == (
        cli.EXIT_NOT_FOUND,
        cli.EXIT_UNSUPPORTED,
    )
    assert os.EX_OK == cli.EXIT_OK
