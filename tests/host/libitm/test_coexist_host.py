"""Many libitm applications on one machine: several processes in one namespace,
the same label twice, a process killed with -9, rules that are not the
application's own, `itmtool status` and `itmtool cleanup`, nothing left behind.

Every test runs its applications (tests/host/libitm/itm_hostapp.py) in the
namespaces of the ``net`` fixture and sends real UDP from ``a`` to ``b``::

    [ a ] va ---- vb [ b: the applications, at ip_in or pre_routing ]
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.netns_pair import HERE, App, NetPair, read_events, sh

pytestmark = pytest.mark.root

ITMTOOL = str(HERE.parents[2] / ".venv" / "bin" / "itmtool")


def _udp(port: int) -> str:
    return json.dumps({"protocol": "udp", "dport": port})


def _start(
    net: NetPair, tmp: Path, label: str, interest: str, *extra: str, hook: str = "ip_in"
) -> tuple[App, Path]:
    """An application in ``b`` that records every packet it sees; (app, its events file)."""
    events = tmp / f"{label}-{len(net.procs)}.jsonl"
    app = net.app(
        net.b,
        tmp,
        "--label",
        label,
        "--hook",
        hook,
        "--interest",
        interest,
        "--events",
        str(events),
        "--duration",
        "60",
        *extra,
    )
    return app, events


def _send(net: NetPair, port: int, count: int, timeout: str = "3") -> int:
    """Send ``count`` datagrams from a to b:port; how many arrived."""
    r = net.receiver(net.b, "udp-recv", str(port), timeout, str(count))
    net.net(net.a, "udp-send", net.ip_b, str(port), str(count))
    out, err = r.communicate(timeout=30)
    assert r.returncode == 0, err
    return int(json.loads(out.strip().splitlines()[-1])["received"])


def _seen(events: Path) -> list[tuple[int, int]]:
    """(protocol, destination port) of each packet the application saw."""
    return [(int(e["proto"]), int(e["dport"])) for e in read_events(events)]


def _queues(rules: str) -> dict[str, set[int]]:
    """The queue numbers each ITM chain's rules send to."""
    out: dict[str, set[int]] = {}
    for m in re.finditer(r"-A (ITM-\S+) .*--queue-num (\d+)", rules):
        out.setdefault(m.group(1), set()).add(int(m.group(2)))
    return out


def _stop(*apps: App) -> list[str]:
    """SIGTERM each application (libitm removes its rules); their stderr."""
    for app in apps:
        app.signal(signal.SIGTERM)
    errs = []
    for app in apps:
        _, err = app.wait()
        assert "Traceback" not in err, err
        errs.append(err)
    return errs


def _nothing_left(net: NetPair) -> None:
    """No ITM rule and no nft table in ``b`` (the fresh namespace had none)."""
    assert net.rules(net.b) == ""
    tables = sh("ip", "netns", "exec", net.b, "nft", "list", "tables").stdout
    assert tables.strip() == "", f"tables left behind: {tables}"


def _itmtool(net: NetPair, *args: str) -> subprocess.CompletedProcess[str]:
    res: subprocess.CompletedProcess[str] = sh(
        "ip", "netns", "exec", net.b, ITMTOOL, *args, check=False
    )
    return res


def test_three_processes_share_a_namespace(net: NetPair, tmp_path: Path) -> None:
    """Three processes, two hooks, one namespace: each binds its own queue and sees
    exactly its own packets; on exit nothing is left, not even the mangle table."""
    one, ev1 = _start(net, tmp_path, "c1", _udp(5031))
    two, ev2 = _start(net, tmp_path, "c2", _udp(5032))
    three, ev3 = _start(net, tmp_path, "c3", _udp(5033), hook="pre_routing")
    queues = _queues(net.rules(net.b))
    assert set(queues) == {"ITM-c1", "ITM-c2", "ITM-c3"}
    assert len(set().union(*queues.values())) == 3, f"one queue each: {queues}"
    for port in (5031, 5032, 5033):
        assert _send(net, port, 3) == 3
    _stop(one, two, three)
    assert _seen(ev1) == [(17, 5031)] * 3
    assert _seen(ev2) == [(17, 5032)] * 3
    assert _seen(ev3) == [(17, 5033)] * 3
    _nothing_left(net)


def test_a_queue_held_by_another_socket_is_skipped_not_a_permission_error(
    net: NetPair, tmp_path: Path
) -> None:
    """Another program holds queue 4300 with no rule naming it: nfnetlink_queue
    answers EPERM, which for a process with CAP_NET_ADMIN means taken."""
    holder = net.receiver(net.b, "nfq-hold", "4300", "30")
    app, events = _start(net, tmp_path, "next", _udp(5035), "--queue-base", "4300")
    assert _queues(net.rules(net.b)) == {"ITM-next": {4301}}
    assert _send(net, 5035, 2) == 2
    _stop(app)
    holder.kill()
    holder.wait()
    assert _seen(events) == [(17, 5035)] * 2
    _nothing_left(net)


def test_same_label_twice_is_refused_and_the_first_keeps_working(
    net: NetPair, tmp_path: Path
) -> None:
    first, events = _start(net, tmp_path, "twin", _udp(5041))
    second = net.app(net.b, tmp_path, "--label", "twin", "--interest", _udp(5042), wait_ready=False)
    code, err = second.wait()
    assert code == 3
    assert f"label 'twin' is in use by process {first.proc.pid}" in err
    rules = net.rules(net.b)
    assert f"owner={first.proc.pid} " in rules and f"owner={second.proc.pid} " not in rules
    assert _send(net, 5041, 4) == 4
    _stop(first)
    assert _seen(events) == [(17, 5041)] * 4, "the first instance still captures"
    _nothing_left(net)


def test_a_killed_owner_never_feeds_a_new_application(net: NetPair, tmp_path: Path) -> None:
    """kill -9 leaves rules that send every UDP packet to a queue; the next
    application (a dropper for one port) removes them before binding, sees only
    its port, and the rest of the traffic flows."""
    wide, _ = _start(net, tmp_path, "wide", '{"protocol": "udp"}')
    wide.signal(signal.SIGKILL)
    wide.wait()
    assert "ITM-wide" in net.rules(net.b), "SIGKILL cannot remove rules"
    assert _send(net, 5052, 3) == 3, "fail-open: nobody listens on the dead one's queue"
    narrow, events = _start(net, tmp_path, "narrow", _udp(5051), "--verdict", "drop")
    assert "ITM-wide" not in net.rules(net.b), "the dead owner's rules go before a queue is bound"
    assert _send(net, 5052, 5) == 5, "outside the dropper's interest"
    assert _send(net, 5051, 3, timeout="1.5") == 0, "inside it: dropped"
    (err,) = _stop(narrow)
    assert f"removed ITM-wide (iptables) of process {wide.proc.pid}, which is gone" in err
    assert _seen(events) == [(17, 5051)] * 3
    _nothing_left(net)


def test_a_foreign_rule_to_the_queue_does_not_widen_the_interest(
    net: NetPair, tmp_path: Path
) -> None:
    """Whatever the rules say: a rule of someone else's that sends all UDP to the
    application's queue brings it no packet outside its interest."""
    app, events = _start(net, tmp_path, "own", _udp(5061), "--verdict", "drop")
    (queue,) = _queues(net.rules(net.b))["ITM-own"]
    foreign = ["-t", "mangle", "-I", "INPUT", "-p", "udp", "-j", "NFQUEUE"]
    foreign += ["--queue-num", str(queue), "--queue-bypass"]
    sh("ip", "netns", "exec", net.b, "iptables", "-w", *foreign)
    try:
        assert _send(net, 5062, 4) == 4
        assert _send(net, 5061, 2, timeout="1.5") == 0
    finally:
        sh(
            "ip",
            "netns",
            "exec",
            net.b,
            "iptables",
            "-w",
            *[("-D" if a == "-I" else a) for a in foreign],
        )
    _stop(app)
    assert _seen(events) == [(17, 5061)] * 2
    _nothing_left(net)


def test_status_lists_and_cleanup_removes_what_the_dead_left(net: NetPair, tmp_path: Path) -> None:
    live, _ = _start(net, tmp_path, "alive", _udp(5071))
    dead, _ = _start(net, tmp_path, "dead", _udp(5072), hook="pre_routing")
    dead.signal(signal.SIGKILL)
    dead.wait()

    res = _itmtool(net, "status", "--json")
    assert res.returncode == 3, "itm_mod is not loaded on this kernel: exit 3 stays"
    listed = {a["label"]: a for a in json.loads(res.stdout)["nfqueue_apps"]}
    assert set(listed) == {"alive", "dead"}
    assert listed["alive"]["pid"] == live.proc.pid and listed["alive"]["alive"] is True
    assert listed["alive"]["hook"] == "ip_in" and listed["alive"]["interest"] == "udp dport 5071"
    assert listed["alive"]["families"] == [4, 6] and isinstance(listed["alive"]["queue"], int)
    assert listed["dead"]["pid"] == dead.proc.pid and listed["dead"]["alive"] is False
    assert listed["dead"]["hook"] == "pre_routing"
    text = _itmtool(net, "status")
    assert text.returncode == 3 and "itm_mod" in text.stderr
    # QUEUE, then COPIES ("-": a decider's chain queues, it copies nothing)
    assert re.search(rf"alive\s+ip_in\s+\d+\s+-\s+{live.proc.pid}\s+yes", text.stdout), text.stdout
    assert re.search(rf"dead\s+pre_routing\s+\d+\s+-\s+{dead.proc.pid}\s+NO", text.stdout)
    assert "itmtool cleanup" in text.stdout

    dry = _itmtool(net, "cleanup", "--dry-run")
    assert dry.returncode == 0 and "would remove ITM-dead" in dry.stdout
    assert "ITM-dead" in net.rules(net.b)
    res = _itmtool(net, "cleanup", "--json")
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)
    assert sorted((r["chain"], r["family"]) for r in done["removed"]) == [
        ("ITM-dead", 4),
        ("ITM-dead", 6),
    ]
    assert {k["label"] for k in done["kept"]} == {"alive"}
    rules = net.rules(net.b)
    assert "ITM-dead" not in rules and "ITM-alive" in rules
    assert "nothing left over" in _itmtool(net, "cleanup").stdout
    _stop(live)
    _nothing_left(net)
