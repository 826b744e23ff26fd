"""libitm's nfqueue backend on the running kernel, with real traffic between namespaces.

Every test builds its own pair of namespaces (``net`` fixture), runs the
application in a child process inside one of them, and removes everything
afterwards. Rules are only ever installed inside the test namespaces.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from libitm import Packet
from libitm.pcap import PcapReader, ip_offset
from tests.support.netns_pair import PY, NetPair, RoutedPair, read_events
from tests.support.packets import ROOT_DIR, verify

pytestmark = pytest.mark.root

UDP = '{"protocol": "udp", "dport": [5000, 5009]}'


def _jumps(rules: str, builtin: str, chain: str) -> int:
    """How many jumps from ``builtin`` to ``chain`` (each carries its owner's comment)."""
    return sum(
        ln.split(" ", 1)[1].startswith(f"-A {builtin} -m comment --comment")
        and ln.endswith(f"-j {chain}")
        for ln in rules.splitlines()
    )


def _recv_result(p: object) -> dict[str, object]:
    import subprocess

    assert isinstance(p, subprocess.Popen)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_callbacks_order_class0_and_interest(net: NetPair, tmp_path: Path) -> None:
    ev = tmp_path / "events"
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "ip_in",
        "--interest",
        UDP,
        "--class-base",
        "5000",
        "--events",
        str(ev),
        "--duration",
        "20",
    )
    for port in (5000, 5001, 6000):
        r = net.receiver(net.b, "udp-recv", str(port), "5", "3")
        net.net(net.a, "udp-send", net.ip_b, str(port), "3")
        assert _recv_result(r)["received"] == 3, f"port {port} did not get its datagrams"
    app.signal(signal.SIGTERM)
    code, err = app.wait()
    assert code != 0 or "Traceback" not in err
    events = [e for e in read_events(ev) if e["kind"] == "packet"]
    by_port: dict[int, list[object]] = {}
    for e in events:
        by_port.setdefault(int(str(e["dport"])), []).append(e["calls"])
    assert sorted(by_port) == [5000, 5001], "interest filtering failed (port 6000 seen?)"
    assert by_port[5000] == [["class", "log", "update", "control"]] * 3  # class 0: no process
    assert by_port[5001] == [["class", "log", "process", "update", "control"]] * 3
    assert net.rules(net.b) == ""


def test_drop_verdict(net: NetPair, tmp_path: Path) -> None:
    counters = tmp_path / "counters.json"
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "ip_in",
        "--interest",
        '{"protocol": "udp", "dport": 5002}',
        "--verdict",
        "drop",
        "--counters",
        str(counters),
        "--duration",
        "20",
    )
    r = net.receiver(net.b, "udp-recv", "5002", "1.5", "5")
    net.net(net.a, "udp-send", net.ip_b, "5002", "5")
    assert _recv_result(r)["received"] == 0, "dropped datagrams reached the receiver"
    r = net.receiver(net.b, "udp-recv", "5003", "5", "5")
    net.net(net.a, "udp-send", net.ip_b, "5003", "5")
    assert _recv_result(r)["received"] == 5, "traffic outside the interest was affected"
    app.signal(signal.SIGTERM)
    app.wait()
    c = json.loads(counters.read_text())
    assert c["apps"]["hostapp"]["dropped"] == 5
    assert c["backend"]["dropped"] == 5
    assert net.rules(net.b) == ""


@pytest.mark.parametrize(("family", "gso"), [(4, False), (6, False), (4, True)])
def test_modified_tos_on_the_wire_payload_intact(
    net: NetPair, tmp_path: Path, family: int, gso: bool
) -> None:
    """TOS rewritten on every packet of a 2 MB TCP stream; bytes and checksums intact.

    With ``gso`` the kernel hands over unsegmented packets whose TCP checksum is
    not finished (CHECKSUM_PARTIAL); libitm must complete it or the receiver
    drops the rewritten packets and the stream stalls. They reach the
    application whole: larger than 4 KiB (python-netfilterqueue's buffer cuts
    them there) and never truncated.
    """
    dst = net.ip_b if family == 4 else net.ip6_b
    counters = tmp_path / "counters.json"
    ev = tmp_path / "events"
    extra = ["--gso"] if gso else []
    app = net.app(
        net.a,
        tmp_path,
        "--hook",
        "post_routing",
        "--interest",
        json.dumps({"protocol": "tcp", "dport": 5004, "family": family}),
        "--tos",
        "0x10",
        "--counters",
        str(counters),
        "--duration",
        "60",
        "--events",
        str(ev),
        *extra,
    )
    cap = tmp_path / "cap.pcap"
    c = net.receiver(net.b, "capture", "vb", "30", str(cap), "400")
    r = net.receiver(net.b, "tcp-recv", "5004", "30")
    sent = net.net(net.a, "tcp-send", dst, "5004", str(2_000_000))
    got = _recv_result(r)
    assert got["bytes"] == 2_000_000 and got["sha256"] == sent["sha256"]
    time.sleep(0.3)
    c.terminate()
    c.wait(5)
    app.signal(signal.SIGTERM)
    app.wait()
    n_data = 0
    with open(cap, "rb") as f:
        reader = PcapReader(f)
        for rec in reader:
            off = ip_offset(reader.linktype, rec.data)
            if off is None:
                continue
            p = Packet(bytearray(rec.data[off:]))
            if p.version != family or p.dport != 5004:
                continue
            assert p.tos == 0x10, f"packet to 5004 without the new TOS: {p.tos:#x}"
            ip = rec.data[off : off + p.length]
            # With GSO the kernel segments the returned packet itself and veth carries
            # the segments with CHECKSUM_PARTIAL (the checksum field holds only the
            # pseudo-header sum), so only the stream's integrity proves them right.
            if not gso:
                assert verify(bytes(ip)), "a rewritten packet has a bad checksum on the wire"
            n_data += 1
    assert n_data >= (20 if gso else 100)
    cnt = json.loads(counters.read_text())
    assert cnt["backend"]["modified"] >= n_data
    seen = [e for e in read_events(ev) if e["kind"] == "packet"]
    assert seen and not [e for e in seen if e["truncated"]], "a packet reached the app cut"
    biggest = max(int(str(e["length"])) for e in seen)
    if gso:
        assert biggest > 4096, f"no GSO packet above 4 KiB reached the app (largest {biggest})"
    else:
        assert biggest <= 1500, f"a {biggest}-byte packet on a 1500-byte link without GSO"


def test_timer_ticks(net: NetPair, tmp_path: Path) -> None:
    ev = tmp_path / "events"
    app = net.app(
        net.a,
        tmp_path,
        "--hook",
        "ip_out",
        "--timer",
        "0.2",
        "--events",
        str(ev),
        "--duration",
        "1.3",
    )
    code, err = app.wait()
    assert code == 0, err
    ticks = [float(str(e["t"])) for e in read_events(ev) if e["kind"] == "timer"]
    assert 4 <= len(ticks) <= 7, ticks
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(0.1 < g < 0.6 for g in gaps), gaps
    assert net.rules(net.a) == ""


def test_rules_present_while_running_removed_on_normal_exit(net: NetPair, tmp_path: Path) -> None:
    app = net.app(
        net.a,
        tmp_path,
        "--label",
        "exitclean",
        "--hook",
        "ip_out",
        "--interest",
        '{"protocol": "udp"}',
        "--duration",
        "1.5",
    )
    rules = net.rules(net.a)
    assert "-N ITM-exitclean" in rules and _jumps(rules, "OUTPUT", "ITM-exitclean") == 2
    assert "--queue-bypass" in rules
    assert f'--comment "itm owner={app.proc.pid} ' in rules, "every rule names its owner"
    code, err = app.wait()
    assert code == 0, err
    assert net.rules(net.a) == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_rules_removed_on_signal(net: NetPair, tmp_path: Path, sig: signal.Signals) -> None:
    app = net.app(net.a, tmp_path, "--label", "sig", "--hook", "post_routing", "--duration", "60")
    assert "ITM-sig" in net.rules(net.a)
    app.signal(sig)
    app.wait()
    assert net.rules(net.a) == ""


def test_exception_non_strict_keeps_running(net: NetPair, tmp_path: Path) -> None:
    counters = tmp_path / "c.json"
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "ip_in",
        "--interest",
        UDP,
        "--raise-in",
        "process",
        "--verdict",
        "drop",
        "--counters",
        str(counters),
        "--duration",
        "20",
    )
    r = net.receiver(net.b, "udp-recv", "5005", "5", "4")
    net.net(net.a, "udp-send", net.ip_b, "5005", "4")
    assert _recv_result(r)["received"] == 4, "a raising app must accept packets unchanged"
    assert app.proc.poll() is None, "the app must keep running after an exception"
    app.signal(signal.SIGTERM)
    _, err = app.wait()
    assert "app hostapp: process_func raised RuntimeError" in err
    assert json.loads(counters.read_text())["apps"]["hostapp"]["errors"] == 4
    assert net.rules(net.b) == ""


def test_exception_strict_stops_and_cleans(net: NetPair, tmp_path: Path) -> None:
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "ip_in",
        "--interest",
        UDP,
        "--raise-in",
        "log",
        "--strict",
        "--duration",
        "20",
    )
    r = net.receiver(net.b, "udp-recv", "5006", "3", "2")
    net.net(net.a, "udp-send", net.ip_b, "5006", "2")
    code, err = app.wait()
    assert code == 3 and "test exception in log" in err
    assert net.rules(net.b) == ""
    # the failing packet was accepted, and with the rules gone the rest flows too
    assert _recv_result(r)["received"] == 2


def test_sigkill_traffic_keeps_flowing_and_restart_cleans(net: NetPair, tmp_path: Path) -> None:
    app = net.app(
        net.b,
        tmp_path,
        "--label",
        "killed",
        "--hook",
        "ip_in",
        "--interest",
        UDP,
        "--duration",
        "60",
    )
    app.signal(signal.SIGKILL)
    app.wait()
    stale = net.rules(net.b)
    assert "ITM-killed" in stale, "SIGKILL cannot remove rules; the test expects them stale"
    t0 = time.monotonic()
    r = net.receiver(net.b, "udp-recv", "5007", "1", "5")
    net.net(net.a, "udp-send", net.ip_b, "5007", "5")
    assert _recv_result(r)["received"] == 5, "killed app black-holed its traffic"
    assert time.monotonic() - t0 < 5
    again = net.app(
        net.b,
        tmp_path,
        "--label",
        "killed",
        "--hook",
        "ip_in",
        "--interest",
        UDP,
        "--duration",
        "60",
    )
    rules = net.rules(net.b)
    assert _jumps(rules, "INPUT", "ITM-killed") == 2  # v4 + v6, not doubled
    assert f"owner={app.proc.pid} " not in rules, "the dead owner's rules are gone"
    again.signal(signal.SIGTERM)
    _, err = again.wait()
    assert f"left by process {app.proc.pid}, which is gone" in err
    assert net.rules(net.b) == ""


def test_qos_ctrl_example_on_nfqueue(net: NetPair, tmp_path: Path) -> None:
    ready_rules = None
    p = net.popen(
        net.a,
        PY,
        str(ROOT_DIR / "examples" / "qos_ctrl.py"),
        "--backend",
        "nfqueue",
        "--duration",
        "60",
        "--dst",
        net.ip_b,
    )
    end = time.monotonic() + 15
    while time.monotonic() < end:
        ready_rules = net.rules(net.a)
        if "NFQUEUE" in ready_rules:
            break
        time.sleep(0.05)
    assert ready_rules and "ITM-qos_ctrl" in ready_rules
    cap = tmp_path / "cap.pcap"
    c = net.receiver(net.b, "capture", "vb", "20", str(cap), "200")
    r = net.receiver(net.b, "tcp-recv", "5008", "20")
    sent = net.net(net.a, "tcp-send", net.ip_b, "5008", str(100_000))
    assert _recv_result(r)["sha256"] == sent["sha256"]
    time.sleep(0.3)
    c.terminate()
    c.wait(5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=15)
    tos: list[tuple[int, bool]] = []
    with open(cap, "rb") as f:
        reader = PcapReader(f)
        for rec in reader:
            off = ip_offset(reader.linktype, rec.data)
            if off is None:
                continue
            pk = Packet(bytearray(rec.data[off:]))
            if pk.dport == 5008:
                tos.append((pk.tos, pk.fin))
    assert len(tos) > 25, err
    # the SYN too: qos_ctrl marks the first packet by default (mark_first)
    assert all(t == 0x10 for t, _ in tos[:20]), tos[:20]
    assert all(t == (0x10 if fin else 0) for t, fin in tos[20:]), tos[20:]
    assert net.rules(net.a) == ""


def test_not_root_message_is_clear() -> None:
    """The conftest fails (not skips) without root; here we only check we are root."""
    import os

    assert os.geteuid() == 0
    assert sys.executable


def test_asyncio_integration(net: NetPair, tmp_path: Path) -> None:
    """fileno()/handle_events() inside an asyncio loop (run in the receiving namespace)."""
    script = tmp_path / "aio.py"
    script.write_text(f"""
import asyncio, json, sys
sys.path.insert(0, {str(ROOT_DIR)!r})
from libitm import Interest, ItmInfo, ItmLoop, Verdict

async def main():
    loop = ItmLoop("nfqueue")
    seen = []
    ticks = []
    loop.register_hook("ip_in", ItmInfo("aio", Interest(protocol="udp", dport=5009),
                                        class_func=lambda p: 1,
                                        process_func=lambda w, c, p: Verdict.DROP,
                                        log_func=lambda c, p: seen.append(p.dport)))
    loop.register_timer(lambda: ticks.append(1), 0.1)
    detach = loop.attach_asyncio(asyncio.get_running_loop())
    print("ready", flush=True)
    await asyncio.sleep(2.0)
    detach()
    print(json.dumps({{"seen": len(seen), "ticks": len(ticks)}}), flush=True)

asyncio.run(main())
""")
    p = net.popen(net.b, PY, str(script))
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    r = net.receiver(net.b, "udp-recv", "5009", "1", "3")
    net.net(net.a, "udp-send", net.ip_b, "5009", "3")
    assert _recv_result(r)["received"] == 0
    out, err = p.communicate(timeout=15)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["seen"] == 3, err
    assert 10 <= res["ticks"] <= 21
    assert net.rules(net.b) == ""


def test_mark_is_returned_with_the_verdict(net: NetPair, tmp_path: Path) -> None:
    """A mark set in process_func at pre_routing is seen by a filter rule at INPUT."""
    net.run(
        net.b,
        "iptables",
        "-w",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        "5010",
        "-m",
        "mark",
        "--mark",
        "0x2a",
        "-j",
        "ACCEPT",
    )
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "pre_routing",
        "--interest",
        '{"protocol": "udp", "dport": 5010}',
        "--mark",
        "0x2a",
        "--duration",
        "20",
    )
    r = net.receiver(net.b, "udp-recv", "5010", "5", "4")
    net.net(net.a, "udp-send", net.ip_b, "5010", "4")
    assert _recv_result(r)["received"] == 4
    app.signal(signal.SIGTERM)
    app.wait()
    out = net.run(net.b, "iptables", "-w", "-nvxL", "INPUT")
    counts = [ln.split()[0] for ln in out.splitlines() if "mark match 0x2a" in ln]
    assert counts == ["4"], out


def test_full_queue_fails_open(net: NetPair, tmp_path: Path) -> None:
    """With the app not reading and its queue (maxlen 10) full, packets pass anyway."""
    counters = tmp_path / "c.json"
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "ip_in",
        "--interest",
        '{"protocol": "udp", "dport": 5011}',
        "--verdict",
        "drop",
        "--queue-maxlen",
        "10",
        "--pause",
        "4",
        "--counters",
        str(counters),
        "--duration",
        "1",
    )
    r = net.receiver(net.b, "udp-recv", "5011", "2", "100")
    net.net(net.a, "udp-send", net.ip_b, "5011", "30")
    # 10 wait in the queue (and are dropped by the app later); 20 passed at once
    assert _recv_result(r)["received"] == 20
    code, err = app.wait()
    assert code == 0, err
    assert json.loads(counters.read_text())["backend"]["dropped"] == 10
    assert net.rules(net.b) == ""


def test_ip_forward_on_a_router(routed: RoutedPair, tmp_path: Path) -> None:
    """An app at ip_forward in the router drops one port and sees forwarded packets only."""
    ev = tmp_path / "events"
    app = routed.app(
        routed.r,
        tmp_path,
        "--hook",
        "ip_forward",
        "--interest",
        UDP,
        "--class-base",
        "5000",
        "--verdict",
        "drop",
        "--events",
        str(ev),
        "--duration",
        "20",
    )
    assert _jumps(routed.rules(routed.r), "FORWARD", "ITM-hostapp") == 2
    r = routed.receiver(routed.b, "udp-recv", "5001", "1.5", "3")
    routed.net(routed.a, "udp-send", routed.ip_b, "5001", "3")
    assert _recv_result(r)["received"] == 0, "forwarded packets were not dropped"
    r = routed.receiver(routed.b, "udp-recv", "5000", "5", "3")  # class 0: no process_func
    routed.net(routed.a, "udp-send", routed.ip_b, "5000", "3")
    assert _recv_result(r)["received"] == 3
    # traffic to the router itself is local (ip_in), not forwarded: the app never sees it
    routed.net(routed.a, "udp-send", routed.gw_a, "5002", "2")
    time.sleep(0.3)
    app.signal(signal.SIGTERM)
    app.wait()
    events = [e for e in read_events(ev) if e["kind"] == "packet"]
    assert sorted(int(str(e["dport"])) for e in events) == [5000] * 3 + [5001] * 3
    assert all(e["where"] == "ip_forward" for e in events)
    assert routed.rules(routed.r) == ""


def test_register_and_unregister_while_running(net: NetPair, tmp_path: Path) -> None:
    """unregister_hook removes the app's rules at once; a new register_hook installs its own."""
    ev = tmp_path / "events"
    app = net.app(
        net.b,
        tmp_path,
        "--hook",
        "ip_in",
        "--interest",
        '{"protocol": "udp", "dport": 5012}',
        "--verdict",
        "drop",
        "--swap-when",
        str(tmp_path / "swap"),
        "--swap-dport",
        "5013",
        "--events",
        str(ev),
        "--duration",
        "30",
    )
    r = net.receiver(net.b, "udp-recv", "5012", "0.5", "2")
    net.net(net.a, "udp-send", net.ip_b, "5012", "2")
    assert _recv_result(r)["received"] == 0
    (tmp_path / "swap").touch()  # the app swaps its registrations now
    end = time.monotonic() + 10
    while "ITM-late" not in net.rules(net.b) and time.monotonic() < end:
        time.sleep(0.05)
    rules = net.rules(net.b)
    assert "ITM-late" in rules and "ITM-hostapp" not in rules
    r = net.receiver(net.b, "udp-recv", "5012", "5", "2")
    net.net(net.a, "udp-send", net.ip_b, "5012", "2")
    assert _recv_result(r)["received"] == 2, "the unregistered app still drops"
    r = net.receiver(net.b, "udp-recv", "5013", "1", "2")
    net.net(net.a, "udp-send", net.ip_b, "5013", "2")
    assert _recv_result(r)["received"] == 0, "the app registered at run time does not drop"
    app.signal(signal.SIGTERM)
    app.wait()
    assert [e["kind"] for e in read_events(ev)].count("swapped") == 1
    assert net.rules(net.b) == ""
