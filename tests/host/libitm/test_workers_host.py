"""The nfqueue backend with workers=2: two processes, a flow stays on one, a dead one
comes back while its queue lets packets pass, nothing is left behind.

The sender in namespace ``a`` uses 16 source addresses: ``--queue-balance``
spreads by a hash of the addresses, so one address pair always lands on one
worker (and 16 land on both, but for a chance of 2 in 65,536).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.support.netns_pair import PY, NetPair
from tests.support.packets import ROOT_DIR

SOURCES = 16
PER_SOURCE = 6  # datagrams, from two sockets (source ports) per address

APP = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT_DIR)!r})
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop

out = Path(sys.argv[1])
ready = []

def class_func(where, pkt):
    with open(out / f"seen-{{os.getpid()}}", "a") as f:
        f.write(f"{{pkt.src}} {{pkt.sport}}\\n")
    return 1

def tick():
    if not ready:
        (out / f"ready-{{os.getpid()}}").touch()
        ready.append(1)

loop = ItmLoop("nfqueue", workers=2)
loop.register_hook("ip_in", ItmInfo("wk", Interest(protocol="udp", dport=5009),
                                    class_func=class_func))
loop.register_timer(tick, 0.05)
loop.run(duration=float(sys.argv[2]))
print(json.dumps(loop.counters()["apps"]["wk"]), flush=True)
"""

SEND = f"""
import socket, sys
dst, sources = sys.argv[1], sys.argv[2:]
for src in sources:
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        for i in range({PER_SOURCE // 2}):
            s.sendto(b"w" * 32, (dst, 5009))
        s.close()
"""


def _sources(net: NetPair) -> list[str]:
    """Add SOURCES addresses to ``a``'s link; returns them."""
    prefix = net.ip_a.rsplit(".", 1)[0]
    addrs = [f"{prefix}.{10 + i}" for i in range(SOURCES)]
    for addr in addrs:
        net.run(net.a, "ip", "addr", "add", f"{addr}/24", "dev", "va")
    return addrs


def _ready_pids(out: Path, n: int, timeout: float = 20) -> set[int]:
    """Wait until ``n`` workers have ticked; their pids."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = {int(p.name.split("-")[1]) for p in out.glob("ready-*")}
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"workers not ready: {sorted(out.glob('ready-*'))}")


def _start(net: NetPair, tmp_path: Path, duration: float) -> tuple[object, Path]:
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "app.py"
    script.write_text(APP)
    p = net.popen(net.b, PY, str(script), str(out), str(duration))
    return p, out


def _running(
    net: NetPair, tmp_path: Path, duration: float
) -> tuple[list[str], object, Path, set[int]]:
    """The sources, the application started with two workers, its output
    directory, and its workers' pids once both run."""
    sources = _sources(net)
    p, out = _start(net, tmp_path, duration)
    return sources, p, out, _ready_pids(out, 2)


def _finish(p: object) -> dict[str, int]:
    import subprocess

    assert isinstance(p, subprocess.Popen)
    stdout, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    # its one application is an observer: queued with workers, and told so once
    assert err.count("app wk has no process_func (an observer), but with workers=2") == 1, err
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_traffic_a_flow_stays_on_one_and_counts_add_up(
    net: NetPair, tmp_path: Path
) -> None:
    sources, p, out, workers = _running(net, tmp_path, duration=6.0)
    assert "--queue-balance" in net.rules(net.b)
    net.run(net.a, PY, "-c", SEND, net.ip_b, *sources)
    counters = _finish(p)

    seen = {int(f.name.split("-")[1]): f.read_text().split("\n")[:-1] for f in out.glob("seen-*")}
    assert set(seen) == workers, "both workers handled packets, and only they"
    by_source: dict[str, set[int]] = {}
    for pid, lines in seen.items():
        for line in lines:
            by_source.setdefault(line.split()[0], set()).add(pid)
    assert sorted(by_source) == sorted(sources)
    assert all(len(pids) == 1 for pids in by_source.values()), by_source
    total = SOURCES * PER_SOURCE
    assert sum(len(lines) for lines in seen.values()) == total
    # the supervisor prints the sum of what its workers counted
    assert (counters["packets"], counters["accepted"], counters["errors"]) == (total, total, 0)
    assert net.rules(net.b) == ""
    assert not any(_alive(pid) for pid in workers)


def test_a_killed_worker_is_restarted_and_its_queue_passes_packets_meanwhile(
    net: NetPair, tmp_path: Path
) -> None:
    sources, p, out, workers = _running(net, tmp_path, duration=8.0)
    time.sleep(1.2)  # older than the restart delay of a worker that dies at once
    victim = min(workers)
    rx = net.receiver(net.b, "udp-recv", "5009", "5", str(SOURCES * PER_SOURCE))
    os.kill(victim, signal.SIGKILL)
    net.run(net.a, PY, "-c", SEND, net.ip_b, *sources)
    received = json.loads(rx.communicate(timeout=30)[0].strip().splitlines()[-1])
    assert received["received"] == SOURCES * PER_SOURCE, "no packet lost while it was gone"
    restarted = _ready_pids(out, 3) - workers
    assert len(restarted) == 1 and victim not in restarted
    _finish(p)
    assert net.rules(net.b) == ""
    assert not any(_alive(pid) for pid in workers | restarted)
