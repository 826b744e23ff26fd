"""Observers on the kernel backend: an application without a process_func gets a
copy of each packet through nfnetlink_log, and the packet goes on at once.

::

    [client] c0 ---- r0 [router: itm_mod + itm_queue, the observer] r1 ---- s0 [server]
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from libitm import Hook, Interest
from libitm.control import ItmControl, ItmControlError
from libitm.control.queue import ItmQueueClient, register_message
from tests.kernel import kit
from tests.kernel.kit import Topology
from tests.support import forked
from tests.support.netns_script import netns_script

APP = """
import json, os, signal, sys
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop

out = Path(sys.argv[1])
payload = sys.argv[2:] == ["payload"]
ready = []

def class_func(where, pkt):
    with open(out / "seen", "a") as f:
        f.write(f"{pkt.src} {pkt.dport} {len(pkt.data)} {pkt.length}\\n")
    return 1

def tick():
    if not ready:
        (out / "ready").touch()
        ready.append(1)

loop = ItmLoop("kernel")
signal.signal(signal.SIGTERM, lambda *_: loop.stop())
loop.register_hook("ip_forward", ItmInfo("obs", Interest(protocol="udp", dport=5300),
                                         class_func=class_func, needs_payload=payload))
loop.register_timer(tick, 0.05)
loop.run()
print(json.dumps(loop.counters()), flush=True)
"""


@pytest.fixture(autouse=True)
def stock_modules(queue_stock_modules: None) -> None:
    """veth, nfnetlink_queue and nfnetlink_log, loaded by path (conftest)."""


def _apps() -> dict[str, dict[str, object]]:
    with ItmControl() as ctl:
        return {a.label: a.to_json() for a in ctl.apps()}


def _seen(out: Path) -> list[str]:
    path = out / "seen"
    return path.read_text().splitlines() if path.exists() else []


@contextlib.contextmanager
def _observer(router: str, *args: str) -> Iterator[tuple[forked.Child, Path]]:
    """The observer in ``router`` (``args``: "payload" for ``needs_payload``),
    ready; stopped (SIGTERM) at the end."""
    with netns_script(router, APP, *args, prefix="itmq-obs-") as (proc, out):
        if not kit.wait_until(lambda: (out / "ready").exists() or proc.poll() is not None, 120):
            raise AssertionError("the observer did not start")
        if proc.poll() is not None:
            raise AssertionError(f"the observer ended: {proc.communicate()}")
        yield proc, out


def test_an_observer_sees_a_copy_of_every_packet_and_holds_none(topo: Topology) -> None:
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with _observer(topo.router) as (proc, out):
            app = _apps()["obs"]
            assert app["type"] == "user" and app["queue_count"] == 1
            assert kit.udp(topo, 20, 5300, size=300) == 20
            assert kit.udp(topo, 5, 5301) == 5, "outside its interest: not copied"
            assert kit.wait_until(lambda: len(_seen(out)) >= 20, 10), _seen(out)
            seen = _seen(out)
            assert len(seen) == 20
            # the first copy_range (128) bytes of each 20 (IP) + 8 (UDP) + 300,
            # as a queue's copy: whole packets are for needs_payload (below)
            assert all(line.split()[1:] == ["5300", "128", "328"] for line in seen), seen[:3]
            stats = _apps()["obs"]["stats"]
            assert isinstance(stats, dict)
            assert (stats["matched"], stats["queue"]) == (20, 0), stats
            # stopped, it loses copies, never packets
            proc.send_signal(signal.SIGSTOP)
            try:
                assert kit.udp(topo, 30, 5300) == 30
                sent, got = kit.tcp(topo, 50_000, 6000)
                assert got == sent
            finally:
                proc.send_signal(signal.SIGCONT)
            assert kit.wait_until(lambda: len(_seen(out)) >= 50, 10), len(_seen(out))
            proc.send_signal(signal.SIGTERM)
            stdout, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            counters = json.loads(stdout.strip().splitlines()[-1])
            assert counters["backend"]["observer_copies"] == 50
            assert counters["apps"]["obs"]["packets"] == 50
        assert "obs" not in _apps()


def test_an_observer_with_needs_payload_gets_whole_packets(topo: Topology) -> None:
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with _observer(topo.router, "payload") as (_, out):
            assert kit.udp(topo, 5, 5300, size=300) == 5
            assert kit.wait_until(lambda: len(_seen(out)) >= 5, 10), _seen(out)
            seen = _seen(out)
            assert all(line.split()[1:] == ["5300", "328", "328"] for line in seen), seen


def test_kill_9_of_an_observer_drops_its_registration(topo: Topology) -> None:
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with _observer(topo.router) as (proc, _):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert kit.wait_until(lambda: "obs" not in _apps(), 10)
            assert kit.udp(topo, 5, 5300) == 5


def test_an_observer_registration_is_checked(topo: Topology) -> None:
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with kit.netns(topo.router):
            client = ItmQueueClient()
        with client:
            reg = client.register("obs-v6", Hook.IP_IN, 0, Interest(family=6), observer=True)
            assert reg.observer and reg.queue_count == 1
            msg = register_message("obs-bad", Hook.IP_IN, 0, Interest(), 2, observer=True)
            with pytest.raises(ItmControlError) as e:
                client.request(msg)
            assert e.value.code == errno.EINVAL and "observer" in str(e.value)
            msg = register_message("obs-bad", Hook.IP_IN, 0, Interest())
            msg["attrs"].append(["ITMQ_A_OBSERVER", 2])
            with pytest.raises(ItmControlError) as e:
                client.request(msg)
            assert e.value.code in (errno.EINVAL, errno.ERANGE) and str(e.value)
            assert "obs-bad" not in _apps()
        assert "obs-v6" not in _apps()
