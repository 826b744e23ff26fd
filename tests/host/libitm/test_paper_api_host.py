"""The paper-shaped qos_ctrl (Figures 8-11 in libitm's paper names) on the nfqueue backend.

tests/support/paper_app.py runs in the router of a client -- router --
server topology; the parity trace (tests/support/qos_trace.py) crosses
it, and every packet must arrive once with the TOS the figures' rule gives
it: IPv4 packet 1 of a direction as sent, 2..22 and the FIN with 0x10, later
ones without; IPv6 (outside the paper's interest) untouched.
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
from tests.support.paper_app import figures_tos
from tests.support.qos_trace import replay, trace

pytestmark = pytest.mark.root


def test_paper_shaped_app_on_nfqueue_marks_as_the_figures_say(tmp_path: Path) -> None:
    ready, events = tmp_path / "ready", tmp_path / "events"
    with lab.topology() as t:
        pkts = trace(t.client4, t.server4, t.client6, t.server6)
        app = subprocess.Popen(
            ["ip", "netns", "exec", t.router, PY, "-m", "tests.support.paper_app",
             "--backend", "nfqueue", "--ready", str(ready), "--events", str(events)],
            cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            end = time.monotonic() + 15
            while time.monotonic() < end and not ready.exists():
                assert app.poll() is None, app.communicate()[1]
                time.sleep(0.05)
            assert ready.exists(), "the application did not start"
            live = replay(t, pkts)
        finally:
            app.send_signal(signal.SIGTERM)
            _, err = app.communicate(timeout=15)
        assert app.returncode == 0, err
        assert "'errors': 0" in err and "'dropped': 0" in err, err
    missing = [(p.flow, p.n) for p, seen in zip(pkts, live, strict=True) if len(seen) != 1]
    assert not missing, f"packets that did not arrive exactly once: {missing[:10]}"
    for p, seen in zip(pkts, live, strict=True):
        want = figures_tos(p.n, p.n == p.total and p.total > 1, p.tos, p.data[0] >> 4 == 4)
        assert seen[0] == want, (
            f"flow {p.flow} packet {p.n}/{p.total}: {seen[0]:#x}, want {want:#x}"
        )
    lines = dict(line.split(" ", 1) for line in events.read_text().splitlines())
    assert lines["where"] == "POST_ROUTING"
    assert lines["ticks"].split()[0] != "0" and "'paper'" in lines["ticks"]
