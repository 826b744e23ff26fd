"""A generated user application on the nfqueue backend, started with `itmtool run`.

As root, between network namespaces this test creates and removes (the lab's
client -- router -- server topology): `itmtool new user` writes an application
interested in UDP to port 5000, `itmtool run --backend nfqueue` runs it in the
router's namespace at ip_forward, real datagrams cross the router, and the
counters it prints when stopped show every one of them; its iptables rules
are gone afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import itmlab as lab
from itmtool import new


@pytest.fixture(autouse=True)
def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces, iptables, nfnetlink_queue)")


def _mangle(ns: str) -> str:
    return str(lab.sh("ip", "netns", "exec", ns, "iptables", "-w", "-t", "mangle", "-S"))


def _bound_queues(ns: str) -> str:
    """The nfqueues a process listens on in `ns` (rules can come before the binding)."""
    cat = ["ip", "netns", "exec", ns, "cat", "/proc/net/netfilter/nfnetlink_queue"]
    return subprocess.run(cat, capture_output=True, text=True, check=False).stdout.strip()


def test_generated_user_app_runs_on_nfqueue(tmp_path: Path) -> None:
    spec = new.AppSpec("udp_watch", "fwd", new.parse_interest(["proto=udp,dport=5000"]))
    new.render_user(spec, tmp_path / "udp_watch")
    app = tmp_path / "udp_watch" / "udp_watch.py"
    with lab.topology() as t:
        cmd = [
            "ip",
            "netns",
            "exec",
            t.router,
            sys.executable,
            "-m",
            "itmtool.cli",
            "run",
            str(app),
            "--backend",
            "nfqueue",
            "--duration",
            "60",
            "--json",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60  # a loaded machine starts Python slowly
            # started when the jump to its chain is in place (the chain and its rules
            # come first, the jump last) and its queue is bound
            while "-j ITM-udp_watch" not in _mangle(t.router) or not _bound_queues(t.router):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the application did not start"
                time.sleep(0.1)
            assert lab.udp(t, 25, 5000, wait=5.0) == 25  # counted and accepted
            assert lab.udp(t, 5, 6000, wait=5.0) == 5  # not of interest: not queued
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err  # Ctrl-C: the counters so far, exit 130
        doc = json.loads(out)
        assert doc["backend"] == "nfqueue" and doc["interrupted"] is True
        counters = doc["apps"]["udp_watch"]
        assert counters["packets"] == 25 and counters["accepted"] == 25
        assert "ITM-" not in _mangle(t.router)
