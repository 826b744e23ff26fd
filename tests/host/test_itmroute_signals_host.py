"""``itmroute run`` stops cleanly: Ctrl-C exits 130, SIGTERM 0, and neither leaves a
capture rule or the state file behind; after ``kill -9`` the state file stays and
``itmroute show`` says the daemon is not running (exit 3).

The daemon runs in a network namespace of its own (nfqueue backend, one served
prefix, no traffic: it installs its rules and writes its table, nothing else).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from itmlab import sh
from tests.support.host_ns import require_root, scratch_ns

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _require_root() -> None:
    require_root("network namespaces, iptables, nfnetlink_queue")


def _cleanup(name: str) -> None:
    # a daemon killed with -9 left its rules and libitm's note of the nft table it
    # created: what any user would run, before the namespace goes
    sh("ip", "netns", "exec", name, sys.executable, "-m", "itmtool.cli", "cleanup",
       check=False)  # fmt: skip


@pytest.fixture
def ns() -> Iterator[str]:
    with scratch_ns("irsig", _cleanup) as name:
        yield name


def rules(ns: str) -> str:
    """The ITM- lines of the namespace's mangle table."""
    out = sh("ip", "netns", "exec", ns, "iptables-save", "-t", "mangle")
    return "\n".join(line for line in out.splitlines() if "ITM-" in line)


def start(ns: str, work: Path) -> tuple[subprocess.Popen[str], Path]:
    conf = work / "a.yaml"
    conf.write_text(
        "name: sig-a\naddress: 10.77.100.1\nport: 7199\nbackend: nfqueue\n"
        f"key: '{secrets.token_hex(16)}'\n"
        "destinations: [{prefix: 10.99.0.0/24, itm: 10.99.0.1}]\n"
    )
    st = work / "a.json"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "itmroute", "run", "-c", str(conf),
         "--state", str(st)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    end = time.monotonic() + 30
    while not st.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.1)
    if not st.exists():
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no state file: {err[-2000:]}")
    return proc, st


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_signal_stops_it_and_leaves_nothing(ns: str, sig: int, code: int, tmp_path: Path) -> None:
    work = tmp_path
    proc, st = start(ns, work)
    try:
        assert "ITM-" in rules(ns)
        assert json.loads(st.read_text())["pid"] == proc.pid
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert rules(ns) == ""
    assert sorted(p.name for p in work.iterdir()) == ["a.yaml"]


def test_show_after_kill_9_says_not_running(ns: str, tmp_path: Path) -> None:
    work = tmp_path
    proc, st = start(ns, work)
    proc.kill()
    proc.wait()
    res = subprocess.run(
        [sys.executable, "-m", "itmroute", "show", "--state", str(st)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert f"sig-a is not running (pid {proc.pid} gone)" in res.stderr
    assert res.stdout == ""
