"""Parity on the host: qos_ctrl on the nfqueue backend marks the trace as offline qos_ctrl does.

The trace (tests/support/qos_trace.py) is the one the VM tier sends
through kernel qos_mod: the same flows, the same addresses, packet for packet.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

import itmlab as lab
from tests.support.netns_pair import PY
from tests.support.packets import ROOT_DIR
from tests.support.qos_trace import check_parity, offline_tos, replay, trace

pytestmark = pytest.mark.root


def _rules(ns: str) -> str:
    out = []
    for tool in ("iptables", "ip6tables"):
        out.append(lab.sh("ip", "netns", "exec", ns, tool, "-w", "-t", "mangle", "-S"))
    return "\n".join(out)


def test_qos_ctrl_on_nfqueue_marks_the_parity_trace_like_offline(tmp_path: Path) -> None:
    with lab.topology() as t:
        pkts = trace(t.client4, t.server4, t.client6, t.server6)
        offline = offline_tos(pkts, tmp_path)
        app = subprocess.Popen(
            ["ip", "netns", "exec", t.router, PY, str(ROOT_DIR / "examples" / "qos_ctrl.py"),
             "--backend", "nfqueue", "--duration", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            end = time.monotonic() + 15
            while time.monotonic() < end and _rules(t.router).count("NFQUEUE") < 2:
                assert app.poll() is None, app.communicate()[1]
                time.sleep(0.05)
            assert _rules(t.router).count("NFQUEUE") >= 2, "qos_ctrl's v4 and v6 rules"
            live = replay(t, pkts)
        finally:
            app.send_signal(signal.SIGTERM)
            _, err = app.communicate(timeout=15)
        assert app.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), err
        assert "NFQUEUE" not in _rules(t.router)
        check_parity(live, offline, pkts)
