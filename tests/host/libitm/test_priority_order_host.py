"""A decider and an observer of one process with overlapping interests at
ip_forward (nfqueue backend): the observer sees every packet of its interest
once, the decider decides every packet of its own, and on each packet they run
in priority order (ties: registration order), whichever registered first, also
after their priorities are swapped while the loop runs.

::

    [ a ] --udp--> [ r: dec (udp dport 5020-5029, sets TOS 0x10) ] --> [ b ]
                        obs (every udp datagram)

An observer after the decider sees the decider's TOS (as on the kernel
backend); one before it sees the packet as it came. Port 5030 is the
observer's alone (its NFLOG copies).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.netns_pair import PY, RoutedPair
from tests.support.packets import ROOT_DIR

COUNT = 15  # datagrams per port (and per phase)

APP = f"""
import json, signal, sys
sys.path.insert(0, {str(ROOT_DIR)!r})
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop, Verdict

ready, order, dec_prio, obs_prio = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
events = []

def seq(pkt):
    return int.from_bytes(bytes(pkt.payload[:4]), "big")

def decide(where, cls, pkt):
    events.append(["dec", pkt.dport, seq(pkt), pkt.tos])
    pkt.tos = 0x10
    return Verdict.ACCEPT

def watch(where, cls, pkt):
    events.append(["obs", pkt.dport, seq(pkt), pkt.tos])

dec = ItmInfo("dec", Interest(protocol="udp", dport=(5020, 5029)), class_func=lambda w, p: 1,
              process_func=decide, priority=dec_prio, needs_payload=True)
obs = ItmInfo("obs", Interest(protocol="udp"), class_func=lambda w, p: 1, log_func=watch,
              priority=obs_prio)
loop = ItmLoop("nfqueue")
for info in ((dec, obs) if order == "dec-first" else (obs, dec)):
    loop.register_hook("ip_forward", info)

def swap(signum, frame):
    dec.priority, obs.priority = obs.priority, dec.priority
    Path(ready + ".swapped").touch()

signal.signal(signal.SIGUSR1, swap)
signal.signal(signal.SIGTERM, lambda signum, frame: loop.stop())
# ready once the loop runs (its queue bound): a datagram before that would pass
# the decider's fail-open queue unseen
loop.register_timer(lambda: Path(ready).touch(), 0.05)
loop.run(duration=90)
print(json.dumps({{"events": events, "counters": loop.counters()}}), flush=True)
"""


def _wait_for(path: Path, p: subprocess.Popen[str], timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if p.poll() is not None:
            raise AssertionError(f"the app ended: {p.communicate()[1]}")
        assert time.monotonic() < end, f"{path.name} did not appear"
        time.sleep(0.02)


def _send(routed: RoutedPair, port: int) -> int:
    """COUNT datagrams from a to b through r; how many arrived."""
    rx = routed.receiver(routed.b, "udp-recv", str(port), "5", str(COUNT))
    routed.net(routed.a, "udp-send", routed.ip_b, str(port), str(COUNT))
    out, _ = rx.communicate(timeout=30)
    return int(json.loads(out.strip().splitlines()[-1])["received"])


def _check_order(events: list[list[int | str]], port: int, first: str) -> None:
    """Each datagram to ``port``: the observer saw it once, the decider decided it
    once, ``first`` ran first, and an observer after the decider saw its TOS."""
    for s in range(COUNT):
        mine = [e for e in events if e[1] == port and e[2] == s]
        assert sorted(str(e[0]) for e in mine) == ["dec", "obs"], (port, s, mine)
        assert mine[0][0] == first, f"datagram {s} to {port}: {mine} (expected {first} first)"
        tos_seen_by_obs = next(e[3] for e in mine if e[0] == "obs")
        assert tos_seen_by_obs == (0x10 if first == "dec" else 0), mine


@pytest.mark.parametrize("order", ["dec-first", "obs-first"])
@pytest.mark.parametrize("lower", ["dec", "obs"], ids=["decider-runs-first", "observer-runs-first"])
def test_a_decider_and_an_observer_run_in_priority_order_on_every_packet(
    routed: RoutedPair, tmp_path: Path, order: str, lower: str
) -> None:
    dec_prio, obs_prio = (1, 2) if lower == "dec" else (2, 1)
    script = tmp_path / "app.py"
    script.write_text(APP)
    ready = tmp_path / "ready"
    p = routed.popen(routed.r, PY, str(script), str(ready), order, str(dec_prio), str(obs_prio))
    _wait_for(ready, p)

    assert _send(routed, 5020) == COUNT, "the decider accepts everything"
    assert _send(routed, 5030) == COUNT, "the observer's own datagrams pass"
    p.send_signal(signal.SIGUSR1)  # swap the priorities while the loop runs
    _wait_for(Path(str(ready) + ".swapped"), p)
    assert _send(routed, 5021) == COUNT

    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    events = res["events"]
    other = "obs" if lower == "dec" else "dec"
    _check_order(events, 5020, lower)
    _check_order(events, 5021, other)
    copies = [e for e in events if e[1] == 5030]
    assert sorted(int(e[2]) for e in copies) == list(range(COUNT))
    assert all(e[0] == "obs" for e in copies)
    apps = res["counters"]["apps"]
    assert apps["obs"]["packets"] == 3 * COUNT
    assert apps["dec"]["packets"] == 2 * COUNT
    assert routed.rules(routed.r) == ""
