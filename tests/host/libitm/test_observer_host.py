"""An application without a process_func is an observer: it gets copies (NFLOG) and
the packets never wait for it, even when its process is stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from libitm import Hook
from tests.support.netns_pair import PY, NetPair
from tests.support.packets import ROOT_DIR

ITMTOOL = str(ROOT_DIR / ".venv" / "bin" / "itmtool")

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


def _stopped(p: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGTERM the application; the JSON line it printed on its way out."""
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


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
    res = _stopped(p)
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
    res = _stopped(p)
    assert res["seen"] == 20, f"the copies waited for it: {res}"


RING_APP = f"""
import json, signal, sys
sys.path.insert(0, {str(ROOT_DIR)!r})
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop, Verdict

seen = {{}}

def log_func(where, cls, pkt):
    if pkt.proto == 17:
        seen[pkt.dport] = seen.get(pkt.dport, 0) + 1

loop = ItmLoop("nfqueue", observer_copies=sys.argv[2])
suffix = sys.argv[3] if len(sys.argv) > 3 else ""
loop.register_hook("ip_in", ItmInfo(
    "watch" + suffix, Interest(family=4), class_func=lambda where, pkt: 1, log_func=log_func))
loop.register_hook("ip_in", ItmInfo(
    "block" + suffix, Interest(protocol="udp", dport=5010),
    class_func=lambda where, pkt: 1,
    process_func=lambda where, cls, pkt: Verdict.DROP))
signal.signal(signal.SIGTERM, lambda signum, frame: loop.stop())
loop.register_timer(lambda: Path(sys.argv[1]).touch(), 0.05)
loop.run(duration=60)
print(json.dumps({{"seen": seen, "counters": loop.counters()}}), flush=True)
"""


def _start_ring(
    net: NetPair, tmp_path: Path, copies: str, suffix: str = ""
) -> subprocess.Popen[str]:
    script = tmp_path / "ring_app.py"
    script.write_text(RING_APP)
    ready = tmp_path / f"ready{suffix}"
    p = net.popen(net.b, PY, str(script), str(ready), copies, suffix)
    end = time.monotonic() + 15
    while not ready.exists() or f"ITM-block{suffix}" not in net.rules(net.b):
        assert p.poll() is None and time.monotonic() < end, p.stderr and p.stderr.read()
        time.sleep(0.05)
    return p


@pytest.mark.parametrize("copies", ["ring", "nflog"])
def test_an_observer_of_every_packet_sees_each_once_beside_a_decider(
    net: NetPair, tmp_path: Path, copies: str
) -> None:
    """With the ring, no rule copies or jumps: the observer's chain only records
    its owner; a packet the decider queues is not run through the observer a
    second time. The same counts with NFLOG copies."""
    p = _start_ring(net, tmp_path, copies)
    rules = net.rules(net.b)
    watch = [ln for ln in rules.splitlines() if "ITM-watch" in ln]
    if copies == "ring":
        added = [ln for ln in watch if " -A " in ln]
        assert added and all("-A ITM-watch" in ln and "RETURN" in ln for ln in added), rules
        assert "itm-ring-copies INPUT" in rules
    else:
        assert any("-j ITM-watch" in ln for ln in watch) and "NFLOG" in rules, rules
    status = subprocess.run(
        ["ip", "netns", "exec", net.b, ITMTOOL, "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    listed = {a["label"]: a for a in json.loads(status.stdout)["nfqueue_apps"]}
    assert listed["watch"]["copies"] == copies and listed["watch"]["hook"] == "ip_in"
    assert listed["watch"]["interest"] == "all" and listed["block"]["copies"] is None
    assert _received(net, 5009, 20) == 20
    assert _received(net, 5010, 5) == 0, "the decider drops"
    res = _stopped(p)
    assert res["seen"] == {"5009": 20, "5010": 5}, res
    backend = res["counters"]["backend"]
    assert (backend["ring_copies"] > 0) == (copies == "ring"), backend
    assert backend["ring_lost"] == 0, backend
    assert net.rules(net.b) == ""


def test_a_ring_observer_killed_leaves_no_program_and_never_held_a_packet(
    net: NetPair, tmp_path: Path
) -> None:
    from libitm.transport.bpf_syscall import program_names
    from libitm.transport.ring import program_name

    p = _start_ring(net, tmp_path, "ring")
    mine = program_name(4, Hook.IP_IN, p.pid)
    assert mine in program_names()
    os.kill(p.pid, signal.SIGSTOP)
    try:
        assert _received(net, 5009, 20) == 20, "copies never hold a packet"
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
    end = time.monotonic() + 10
    while mine in program_names():
        assert time.monotonic() < end, "the kernel kept the program of a dead process"
        time.sleep(0.1)
    assert _received(net, 5009, 20) == 20


def test_two_processes_with_ring_observers_at_one_hook_each_get_every_copy(
    net: NetPair, tmp_path: Path
) -> None:
    """netfilter takes one BPF program per priority at a hook: the second process
    attaches at the next free one instead of failing (or falling back)."""
    first = _start_ring(net, tmp_path, "ring", "1")
    second = _start_ring(net, tmp_path, "ring", "2")
    assert _received(net, 5009, 20) == 20
    for p in (first, second):
        res = _stopped(p)
        assert res["seen"] == {"5009": 20}, res
        assert res["counters"]["backend"]["ring_copies"] >= 20
    assert net.rules(net.b) == ""
