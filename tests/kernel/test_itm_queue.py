"""itm_queue and libitm's kernel backend: user-space applications registered with
itm_mod, seen by real packets between namespaces.

::

    [client] c0 ---- r0 [router: itm_mod + itm_queue, the libitm app] r1 ---- s0 [server]

The applications run in a child process in the router namespace
(tests/kernel/itmq_app.py) and log every callback to a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libitm import Hook, Interest
from libitm.control import ItmControl, ItmControlError
from libitm.control import itm_queue_spec as qspec
from libitm.control.queue import ItmQueueClient, register_message
from tests.kernel import kit
from tests.kernel import qos_kit as q
from tests.kernel.kit import Topology
from tests.support import forked, qos_trace
from tests.support.netns_script import netns_script

ROOT = Path(__file__).resolve().parents[2]
CALLBACKS = ["class", "log", "process", "update", "control"]


@pytest.fixture(autouse=True)
def stock_modules(queue_stock_modules: None) -> None:
    """veth and nfnetlink_queue, loaded by path (conftest's queue_stock_modules)."""


@dataclass
class UserApp:
    """A running tests/kernel/itmq_app.py process."""

    proc: forked.Child
    events_path: Path
    queues: list[int]

    def events(self) -> list[tuple[str, str, int]]:
        """The callbacks the applications ran, in order."""
        out = []
        for line in self.events_path.read_text().splitlines():
            label, cb, cls = line.split()
            out.append((label, cb, int(cls)))
        return out

    def clear(self) -> None:
        """Forget the events so far."""
        self.events_path.write_text("")


def _bound_queues(ns: str) -> set[int]:
    with kit.netns(ns):
        text = Path("/proc/thread-self/net/netfilter/nfnetlink_queue").read_text()
    return {int(line.split()[0]) for line in text.splitlines() if line.strip()}


@contextlib.contextmanager
def user_app(
    ns: str, *apps: str, timer: float | None = None, cmd: list[str] | None = None
) -> Iterator[UserApp]:
    """Run itmq_app (or `cmd`) in namespace `ns` until the end of the block."""
    tmp = Path(tempfile.mkdtemp(prefix="itmq-"))
    events, ready = tmp / "events", tmp / "ready"
    events.write_text("")
    if cmd is None:
        cmd = [sys.executable, "-m", "tests.kernel.itmq_app", "--events", str(events)]
        cmd += ["--ready", str(ready)]
        for a in apps:
            cmd += ["--app", a]
        if timer:
            cmd += ["--timer", str(timer)]
    # a fork of this process (tests/support/forked.py): a new Python takes seconds here
    target, argv = forked.python_command(cmd)
    proc = forked.start(target, argv, ns=ns, cwd=str(ROOT), stdout=None)
    try:
        app = UserApp(proc, events, [])
        if cmd[2:3] == ["tests.kernel.itmq_app"]:
            if not kit.wait_until(lambda: ready.exists() or proc.poll() is not None, 300):
                proc.kill()
            if not ready.exists():
                _, err = proc.communicate(timeout=10)
                raise AssertionError("the application did not start:\n" + err)
            app.queues = [int(x) for x in ready.read_text().split()]
        yield app
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def _apps() -> dict[str, dict[str, int]]:
    with ItmControl() as ctl:
        return {a.label: a.stats for a in ctl.apps()}


def _udp_tos(t: Topology, count: int, dport: int, size: int = 200) -> list[tuple[int, bytes]]:
    """Send UDP client -> server; return (TOS as received, payload) of what arrived."""
    with kit.netns(t.server):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with kit.netns(t.client):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out: list[tuple[int, bytes]] = []
    with rx, tx:
        rx.bind(("", dport))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        rx.settimeout(2.0)
        payloads = [secrets.token_bytes(size) for _ in range(count)]
        for p in payloads:
            tx.sendto(p, (t.server4, dport))
        with contextlib.suppress(TimeoutError):
            while len(out) < count:
                data, anc, _, _ = rx.recvmsg(65536, 64)
                tos = next(c[2][0] for c in anc if c[1] == socket.IP_TOS)
                out.append((tos, data))
        assert all(d in payloads for _, d in out), "a payload was damaged"
    return out


ORDER_LABELS = ("k-ord1", "u-ord2", "k-ord3", "u-ord4")


def _priority_order(ua: UserApp, topo: Topology) -> None:
    """k-first (kernel, 0), u-second (user, 10), k-middle (kernel, 20), u-last (user, 30)."""
    with ItmControl() as ctl:
        order = [(a.label, a.type) for a in ctl.apps() if a.label in ORDER_LABELS]
    assert order == [
        ("k-ord1", "kernel"),
        ("u-ord2", "user"),
        ("k-ord3", "kernel"),
        ("u-ord4", "user"),
    ]
    kit.clear_events()
    ua.clear()
    assert kit.udp(topo, 1, 5020) == 1
    # each application once, in priority order across kernel and user space
    assert kit.events() == [("k-ord1", cb, 1) for cb in CALLBACKS] + [
        ("k-ord3", cb, 1) for cb in CALLBACKS
    ]
    # (the application's timer ticks in the same log: left out here)
    assert [e for e in ua.events() if e[0] != "timer"] == [
        ("u-ord2", cb, 1) for cb in CALLBACKS
    ] + [("u-ord4", cb, 1) for cb in CALLBACKS]
    # a user drop ends the packet: the applications after it never see it
    kit.clear_events()
    ua.clear()
    assert kit.udp(topo, 1, 5021) == 0
    assert [lb for lb, cb, _ in kit.events() if cb == "class"] == ["k-ord1"]
    assert [lb for lb, cb, _ in ua.events() if cb == "class"] == ["u-ord2"]
    st = _apps()
    assert st["k-ord3"]["matched"] == 1 and st["u-ord4"]["matched"] == 1
    assert st["k-ord1"]["matched"] == 2 and st["u-ord2"]["queue"] == 2


KERNEL_ORDER_APPS = (
    "label=k-ord1,hook=fwd,prio=0,proto=udp,dport=5020-5021,class=1;"
    "label=k-ord3,hook=fwd,prio=20,proto=udp,dport=5020-5021,class=1"
)


def test_user_apps_through_itm_queue(topo: Topology) -> None:
    """The five callbacks, class 0, drop, TOS rewrite, interest, timers, and the
    priority order of kernel and user applications at one hook."""
    apps = (
        "label=u-ord2,hook=fwd,prio=10,proto=udp,dport=5020-5021,verdict=drop,drop_dport=5021",
        "label=u-ord4,hook=fwd,prio=30,proto=udp,dport=5020-5021",
        "label=u-order,hook=fwd,proto=udp,dport=5000,class=3",
        "label=u-class0,hook=fwd,proto=udp,dport=5001,class=0,verdict=drop",
        "label=u-drop,hook=fwd,proto=udp,dport=5002,verdict=drop",
        "label=u-tos,hook=fwd,proto=udp,dport=5003,verdict=tos:0x10",
        "label=u-tcp,hook=fwd,proto=tcp,dport=6000,verdict=tos:0x10",
        "label=u-filter,hook=fwd,family=4,proto=udp,dport=5010-5011,src=10.77.1.0/24",
    )
    with kit.modules(apps=KERNEL_ORDER_APPS, queue=()):
        kit.itm_attach(topo.router)
        with user_app(topo.router, *apps, timer=0.3) as ua:
            assert len(set(ua.queues)) == len(apps)
            _priority_order(ua, topo)
            with ItmControl() as ctl:
                mine = {a.label: a for a in ctl.apps() if a.type == "user"}
            assert set(mine) == {a.split(",")[0][6:] for a in apps}
            assert all(a.pid == ua.proc.pid for a in mine.values())
            assert sorted(a.queue_num for a in mine.values()) == sorted(ua.queues)
            # the paper's order, once per packet
            ua.clear()
            assert kit.udp(topo, 1, 5000) == 1
            assert [e for e in ua.events() if e[0] == "u-order"] == [
                ("u-order", cb, 3) for cb in CALLBACKS
            ]
            # class 0: process_func (which would drop) is not called
            assert kit.udp(topo, 2, 5001) == 2
            assert [cb for lb, cb, _ in ua.events() if lb == "u-class0"] == [
                "class", "log", "update", "control"
            ] * 2  # fmt: skip
            # drop
            assert kit.udp(topo, 3, 5002) == 0
            # a modified verdict: the TOS on the wire, the payload intact
            got = _udp_tos(topo, 3, 5003)
            assert [tos for tos, _ in got] == [0x10] * 3
            sent, recv = kit.tcp(topo, 200_000, 6000)
            assert recv == sent, "TCP payload damaged through a modifying user app"
            # interest filtering happens in the kernel: only the matching packets come up
            assert kit.udp(topo, 2, 5010) == 2
            assert kit.udp(topo, 2, 5012) == 2
            assert kit.udp(topo, 2, 5011, v6=True) == 2
            filt = [e for e in ua.events() if e[0] == "u-filter" and e[1] == "class"]
            assert len(filt) == 2
            stats = _apps()
            assert stats["u-filter"]["matched"] == 2 and stats["u-filter"]["queue"] == 2
            assert stats["u-drop"]["queue"] == 3
            assert stats["u-tcp"]["matched"] > 10
            # timers tick in the application's loop
            assert kit.wait_until(lambda: sum(1 for e in ua.events() if e[0] == "timer") >= 2, 5)
    assert not kit.loaded("itm_queue")


def test_kill_9_keeps_traffic_flowing_and_drops_the_registration(topo: Topology) -> None:
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with user_app(topo.router, "label=u-blackhole,hook=fwd,proto=udp,verdict=drop") as ua:
            assert kit.udp(topo, 3, 5000) == 0
            # `ip netns exec` execs the program: the pid is the application's
            os.kill(ua.proc.pid, signal.SIGKILL)
            ua.proc.wait(10)
            assert kit.wait_until(lambda: "u-blackhole" not in _apps(), 10)
            assert kit.udp(topo, 5, 5000) == 5
            sent, got = kit.tcp(topo, 100_000, 6000)
            assert got == sent


def _register(client: ItmQueueClient, label: str, **attrs: object) -> int:
    return client.register(label, Hook.IP_FORWARD, 0, Interest(protocol="udp")).queue_num


def test_registration_rules_and_fail_open(topo: Topology) -> None:
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with kit.netns(topo.router):
            client = ItmQueueClient()
        with client:
            # registered but nobody bound its queue: the packets pass (and are counted)
            qnum = _register(client, "u-nolistener")
            assert qnum >= qspec.ITMQ_QUEUE_DEFAULT_BASE
            assert kit.udp(topo, 4, 5000) == 4
            assert _apps()["u-nolistener"]["queue"] == 4
            # the same label twice
            with pytest.raises(ItmControlError) as e:
                _register(client, "u-nolistener")
            assert e.value.code == errno.EEXIST and "registered already" in str(e.value)
            # malformed registrations: refused with a reason
            bad = [
                ([["ITMQ_A_HOOK", 2]], "label is required"),
                ([["ITMQ_A_LABEL", "x"]], "hook"),
                ([["ITMQ_A_LABEL", "x"], ["ITMQ_A_HOOK", 7]], ""),
                ([["ITMQ_A_LABEL", "bad label"], ["ITMQ_A_HOOK", 2]], "letters, digits"),
                ([["ITMQ_A_LABEL", "x"], ["ITMQ_A_HOOK", 2], ["ITMQ_A_QUEUE_NUM", 5]], ""),
            ]
            nests = [
                ([["ITMQ_A_INTEREST_FAMILY", 99]], "family must be"),
                ([["ITMQ_A_INTEREST_DADDR", bytes(16)]], "addresses need a family"),
                (
                    [["ITMQ_A_INTEREST_FAMILY", 2], ["ITMQ_A_INTEREST_DADDR", b"\x01" * 16]],
                    "IPv4",
                ),
                (
                    [["ITMQ_A_INTEREST_PROTOCOL", 1], ["ITMQ_A_INTEREST_DPORT_MAX", 80]],
                    "ports need",
                ),
                (
                    [["ITMQ_A_INTEREST_SPORT_MIN", 9], ["ITMQ_A_INTEREST_SPORT_MAX", 8]],
                    "sport-min",
                ),
                ([["ITMQ_A_INTEREST_SADDR", b"\x01\x02"]], ""),
            ]
            for n, text in nests:
                bad.append(
                    (
                        [
                            ["ITMQ_A_LABEL", "x"],
                            ["ITMQ_A_HOOK", 2],
                            ["ITMQ_A_INTEREST", {"attrs": n}],
                        ],
                        text,
                    )
                )
            for attrs, text in bad:
                msg = register_message("x", Hook.IP_FORWARD, 0, Interest())
                msg["attrs"] = attrs
                with pytest.raises(ItmControlError) as e:
                    client.request(msg)
                # range checks of the policy say ERANGE, everything else EINVAL
                assert e.value.code in (errno.EINVAL, errno.ERANGE), (attrs, e.value)
                assert str(e.value), (attrs, "no extack message")
                assert text in str(e.value), (attrs, str(e.value))
            assert "x" not in _apps()
            # a lower port alone: up to the last port (not "min above max")
            msg = register_message("lo", Hook.IP_FORWARD, 0, Interest())
            msg["attrs"] = [
                ["ITMQ_A_LABEL", "lo"],
                ["ITMQ_A_HOOK", 2],
                ["ITMQ_A_INTEREST", {"attrs": [["ITMQ_A_INTEREST_PROTOCOL", 17],
                                               ["ITMQ_A_INTEREST_DPORT_MIN", 1024]]}],
            ]  # fmt: skip
            client.request(msg)
            with ItmControl() as ctl:
                (lo,) = [a for a in ctl.apps() if a.label == "lo"]
            assert lo.interest["dport"] == [1024, 65535], lo.interest
            client.unregister("lo")
            # unregister: only what this socket registered
            with kit.netns(topo.router), ItmQueueClient() as other:
                with pytest.raises(ItmControlError) as e:
                    other.unregister("u-nolistener")
                assert e.value.code == errno.ENOENT
            client.unregister("u-nolistener")
            assert "u-nolistener" not in _apps()

            # without CAP_NET_ADMIN: EPERM
            def register_without_caps() -> int:
                try:
                    ItmQueueClient().register("u-nocap", Hook.IP_IN, 0, Interest())
                except ItmControlError as e:
                    return 0 if e.code == errno.EPERM else 3
                return 4

            with kit.netns(topo.router):
                assert kit.as_nobody(register_without_caps) == 0
            assert "u-nocap" not in _apps()
            # a live registration when itm_queue goes: unloaded cleanly, traffic flows
            _register(client, "u-live")
            kit.rmmod("itm_queue")
            assert "u-live" not in _apps()
            assert kit.udp(topo, 3, 5000) == 3


def test_qos_ctrl_marks_like_qos_mod(topo: Topology) -> None:
    """Parity: examples/qos_ctrl.py on the kernel backend marks what qos_mod marks.

    The parity trace (qos_trace.py: TCP flows of 1 to 60 packets, both
    directions, IPv4 and IPv6, precedence and ECN bits set), which the host tier
    sends through qos_ctrl on nfqueue and the unit tier runs offline: every
    packet must leave exactly as offline qos_ctrl marked it, under qos_mod and
    under qos_ctrl alike.  (qos_mod on real TCP is test_qos_mod.py's; real TCP
    through a modifying user application is test_user_apps_through_itm_queue's.)
    """
    pkts = qos_trace.trace(topo.client4, topo.server4, topo.client6, topo.server6)
    with tempfile.TemporaryDirectory() as tmp:
        offline = qos_trace.offline_tos(pkts, Path(tmp))
    q.offloads_off(topo)
    with q.qos_loaded():
        kit.itm_attach(topo.router)
        kernel_trace = qos_trace.replay(topo, pkts)
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        cmd = [sys.executable, "examples/qos_ctrl.py", "--backend", "kernel"]
        with user_app(topo.router, cmd=cmd) as ua:
            assert kit.wait_until(lambda: "qos_ctrl" in _apps(), 300), "qos_ctrl did not start"
            with ItmControl() as ctl:
                app = ctl.app("qos_ctrl")
            assert (app.type, app.hook) == ("user", "post_routing")
            assert kit.wait_until(lambda: app.queue_num in _bound_queues(topo.router), 10)
            user_trace = qos_trace.replay(topo, pkts)
            assert ua.proc.poll() is None
    qos_trace.check_parity(kernel_trace, offline, pkts)  # qos_mod
    qos_trace.check_parity(user_trace, offline, pkts)  # qos_ctrl, kernel backend


def _priority(label: str) -> int:
    with ItmControl() as ctl:
        return ctl.app(label).priority


PRIORITY_APP = """
import sys
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop

out = Path(sys.argv[1])
loop = ItmLoop("kernel")
info = ItmInfo("prio", Interest(protocol="udp", dport=5302), class_func=lambda w, p: 1,
               process_func=lambda w, c, p: 1, priority=0)
loop.register_hook("ip_forward", info)

def change():
    if (out / "go").exists() and not (out / "done").exists():
        try:
            info.priority = 7
            info.enabled = False
            result = "ok"
        except RuntimeError as e:
            result = str(e)
        # written whole, then renamed: the test never reads a half-written file
        (out / "done.tmp").write_text(result)
        (out / "done.tmp").rename(out / "done")

loop.register_timer(lambda: (out / "ready").touch(), 0.05)
loop.register_timer(change, 0.05)
loop.run()
"""


def test_priority_and_enabled_set_in_the_program_reach_itm_mod(
    topo: Topology,
) -> None:
    """ItmInfo.priority = N and .enabled = False on the kernel backend are itm_mod's
    app-set: the run list of every process and kernel application sees the new
    order at once, and a switched-off application's packets stay in the kernel."""
    with kit.modules(queue=()):
        kit.itm_attach(topo.router)
        with netns_script(topo.router, PRIORITY_APP, prefix="itmq-prio-") as (proc, out):
            assert kit.wait_until(lambda: (out / "ready").exists() or proc.poll() is not None, 120)
            assert proc.poll() is None, proc.communicate()
            assert _priority("prio") == 0
            (out / "go").touch()
            assert kit.wait_until(lambda: (out / "done").exists(), 20)
            assert (out / "done").read_text() == "ok"
            with ItmControl() as ctl:
                app = ctl.app("prio")
            assert app.priority == 7 and not app.enabled
            # switched off in itm_mod: its packets pass without a trip to the process
            assert kit.udp(topo, 5, 5302) == 5
            with ItmControl() as ctl:
                assert ctl.app("prio").stats["queue"] == app.stats["queue"]
        assert "prio" not in _apps()
