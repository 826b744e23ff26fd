"""itmRoute's daemons as a service user: ``nobody`` with CAP_NET_ADMIN and
CAP_NET_RAW (systemd's ``AmbientCapabilities=``), a PATH without /usr/sbin and a
state file in a directory of its own, on the lab's overlay with the direct link
black-holed, so that A's packets must be tunnelled through a relay.

A stream crosses the overlay, ``itmroute show`` (nobody, no capability) reads
the table, Ctrl-C leaves none of A's capture rules; without the capabilities
``run`` is refused in one line with exit 4 and touches nothing. The kernel data
path and the WireGuard one were tried the same way in the VM (docs/itmroute.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from itmlab import ping, sh
from itmroute.cli import EXIT_SIGINT, NEEDS_ROOT
from itmroute.lab import D_OVERLAY, Overlay, SeqStream, overlay
from libitm.files import EXIT_PERM
from tests.support import as_nobody
from tests.support.itmroute_state import current, state, wait

CAPS = ("net_admin", "net_raw")
NODES = ("d", "r1", "r2", "a")


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory nobody may write (state files, logs), root's configurations in it."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces) to drop to nobody")
    d = Path(tempfile.mkdtemp(prefix="itmroute-service-"))
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab(work: Path) -> Iterator[Overlay]:
    with overlay(f"itms{os.getpid() % 10000}", 2) as ov:
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):  # black-hole the direct link
            sh("ip", "netns", "exec", ov.d, "iptables", "-w", "-I", chain, flag, "a", "-j", "DROP")
        yield ov


def _start(
    ov: Overlay,
    node: str,
    work: Path,
    python: str,
    env: dict[str, str],
    caps: tuple[str, ...],
    state: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``itmroute run`` of ``node`` as nobody with ``caps``, its log in work/NODE.log."""
    conf = work / f"{node}.yaml"
    conf.write_text(yaml.safe_dump(ov.config(node)))
    conf.chmod(0o644)
    state = state or work / f"{node}.json"
    daemon = ["itmroute", "run", "-c", str(conf), "--state", str(state)]
    with (work / f"{node}.log").open("wb") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", ov.ns_of(node), *as_nobody.drop(caps), python, "-m", *daemon],
            stdout=log,
            stderr=log,
            env=env,
            cwd="/",
        )


def test_daemons_of_a_service_user_tunnel_and_leave_no_rule(lab: Overlay, work: Path) -> None:
    env = as_nobody.environment(work)  # PATH=/usr/bin:/bin, as a service user's
    python = as_nobody.interpreter(env)
    procs = {node: _start(lab, node, work, python, env, CAPS) for node in NODES}
    try:
        states = [work / f"{n}.json" for n in NODES]
        assert wait(lambda: all(p.exists() for p in states), 60), {
            n: (work / f"{n}.log").read_text()[-1500:] for n in NODES
        }
        ping(lab.a, D_OVERLAY, 1)  # the first echo starts the probing
        assert wait(lambda: str(current(work / "a.json")).startswith("r"), 15), state(
            work / "a.json"
        )
        stream = SeqStream(lab, rate=100, port=5310)
        try:
            stream.run(1.0)
        finally:
            stream.close()
        assert len(stream.arrivals) == stream.sent, (work / "a.log").read_text()[-2000:]
        show = subprocess.run(
            [*as_nobody.drop(), python, "-m", "itmroute", "show", "--state", str(work / "a.json")],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
        )
        assert show.returncode == 0, show.stderr
        assert "tunnelled=" in show.stdout and "tunnelled=0 " not in show.stdout, show.stdout
        procs["a"].send_signal(signal.SIGINT)
        assert procs["a"].wait(30) == EXIT_SIGINT, (work / "a.log").read_text()[-2000:]
        for tool in ("iptables", "ip6tables"):
            mangle = sh("ip", "netns", "exec", lab.a, tool, "-w", "-t", "mangle", "-S")
            assert "ITM" not in mangle, mangle
        assert "Traceback" not in (work / "a.log").read_text()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_without_the_capabilities_run_is_one_line_and_exit_4(lab: Overlay, work: Path) -> None:
    env = as_nobody.environment(work)
    python = as_nobody.interpreter(env)
    proc = _start(lab, "a", work, python, env, ())
    assert proc.wait(60) == EXIT_PERM
    err = (work / "a.log").read_text()
    errors = [ln for ln in err.splitlines() if ln.startswith("itmroute:")]
    assert len(errors) == 1 and errors[0].startswith(f"itmroute: {NEEDS_ROOT}"), err
    assert "Traceback" not in err
    assert not (work / "a.json").exists()
    mangle = sh("ip", "netns", "exec", lab.a, "iptables", "-w", "-t", "mangle", "-S")
    assert "ITM" not in mangle, mangle


def test_a_state_directory_it_cannot_write_is_refused_before_it_starts(
    lab: Overlay, work: Path
) -> None:
    env = as_nobody.environment(work)
    python = as_nobody.interpreter(env)
    closed = work / "closed"
    closed.mkdir(mode=0o755)  # root's
    proc = _start(lab, "a", work, python, env, CAPS, state=closed / "a.json")
    assert proc.wait(60) == EXIT_PERM
    err = (work / "a.log").read_text()
    errors = [ln for ln in err.splitlines() if ln.startswith("itmroute:")]
    assert len(errors) == 1 and f"permission denied: cannot write in {closed}" in errors[0], err
    assert list(closed.iterdir()) == []
    mangle = sh("ip", "netns", "exec", lab.a, "iptables", "-w", "-t", "mangle", "-S")
    assert "ITM" not in mangle, mangle
