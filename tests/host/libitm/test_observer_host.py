"""An application without a process_func is an observer: it gets copies (NFLOG) and
the packets never wait for it, even when its process is stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.netns_pair import PY, NetPair
from tests.support.packets import ROOT_DIR

APP = f"""
import json, signal, sys
sys.path.insert(0, {str(ROOT_DIR)!r})
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop, Verdict

seen = []
loop = ItmLoop("nfqueue", observer_batch=int(sys.argv[2]))
loop.register_hook("ip_in", ItmInfo(
    "watch", Interest(protocol="udp", dport=5009),
    class_func=lambda where, pkt: 1,
    log_func=lambda where, cls, pkt: seen.append(pkt.dport)))
loop.register_hook("ip_in", ItmInfo(
    "block", Interest(protocol="udp", dport=5010),
    class_func=lambda where, pkt: 1,
    process_func=lambda where, cls, pkt: Verdict.DROP))
signal.signal(signal.SIGTERM, lambda signum, frame: loop.stop())  # run() then returns
# ready once the loop runs (rules installed, sockets bound), not before run()
loop.register_timer(lambda: Path(sys.argv[1]).touch(), 0.05)
loop.run(duration=60)
print(json.dumps({{"seen": len(seen), "counters": loop.counters()}}), flush=True)
"""


def _start(net: NetPair, tmp_path: Path, batch: int = 1) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    ready = tmp_path / "ready"
    p = net.popen(net.b, PY, str(script), str(ready), str(batch))
    end = time.monotonic() + 15
    while not ready.exists() or "NFQUEUE" not in net.rules(net.b):
        assert p.poll() is None and time.monotonic() < end, p.stderr and p.stderr.read()
        time.sleep(0.05)
    return p, ready


def _received(net: NetPair, port: int, count: int) -> int:
    rx = net.receiver(net.b, "udp-recv", str(port), "3", str(count))
    net.net(net.a, "udp-send", net.ip_b, str(port), str(count))
    out, _ = rx.communicate(timeout=30)
    return int(json.loads(out.strip().splitlines()[-1])["received"])


@pytest.mark.parametrize("batch", [1, 64])
def test_an_observer_sees_copies_and_packets_pass_while_a_decider_drops(
    net: NetPair, tmp_path: Path, batch: int
) -> None:
    """Also with ``observer_batch``: 20 copies, fewer than a batch, come with the
    kernel's 10 ms flush."""
    p, _ = _start(net, tmp_path, batch)
    rules = net.rules(net.b)
    watch = [ln for ln in rules.splitlines() if "-A ITM-watch" in ln]
    assert watch and all("NFLOG" in ln and "NFQUEUE" not in ln for ln in watch), rules
    assert "NFQUEUE" in "".join(ln for ln in rules.splitlines() if "-A ITM-block" in ln)
    assert _received(net, 5009, 20) == 20
    assert _received(net, 5010, 5) == 0, "the decider of the same process still drops"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["seen"] == 20
    assert res["counters"]["apps"]["watch"]["packets"] == 20
    assert res["counters"]["backend"]["observer_copies"] == 20
    assert net.rules(net.b) == ""


def test_packets_do_not_wait_for_a_stopped_observer(net: NetPair, tmp_path: Path) -> None:
    p, _ = _start(net, tmp_path)
    os.kill(p.pid, signal.SIGSTOP)
    try:
        # were the packets queued, none would arrive while the process is stopped
        assert _received(net, 5009, 20) == 20
    finally:
        os.kill(p.pid, signal.SIGCONT)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["seen"] == 20, f"the copies waited for it: {res}"
