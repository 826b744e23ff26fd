"""The offline backend on pcaps the tests write themselves."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import libitm
from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict
from tests.support.packets import read_pcap, tcp, udp, verify, write_pcap


def _trace(tmp_path: Path, ethernet: bool = False) -> Path:
    pkts = [
        (1000.0, udp("10.0.0.1", "10.0.0.2", 1, 7000, b"a")),
        (1000.4, udp("10.0.0.1", "10.0.0.2", 1, 7001, b"bb")),
        (1001.0, tcp("10.0.0.1", "10.0.0.2", 5, 80, b"ccc")),
        (1003.2, udp("fd00::1", "fd00::2", 1, 7002, b"dddd")),
        (1003.3, udp("10.0.0.1", "10.0.0.2", 1, 7003, b"e")),
    ]
    p = tmp_path / "in.pcap"
    write_pcap(p, pkts, ethernet=ethernet)
    return p


def _app() -> ItmInfo:
    def class_func(pkt: Packet) -> int:
        return (pkt.dport or 0) - 7000

    def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
        if cls == 1:
            return Verdict.DROP
        pkt.tos = 0x10
        return Verdict.ACCEPT

    return ItmInfo(
        "off", Interest(protocol="udp"), class_func=class_func, process_func=process_func
    )


@pytest.mark.parametrize("ethernet", [False, True])
def test_replay_writes_result_and_log(tmp_path: Path, ethernet: bool) -> None:
    src = _trace(tmp_path, ethernet)
    out = tmp_path / "out.pcap"
    log = tmp_path / "verdicts.log"
    loop = ItmLoop("offline", pcap=src, out=out, log=log)
    loop.register_hook("post_routing", _app())
    loop.run()
    assert log.read_text().splitlines() == [
        "0 accept no 0",
        "1 drop no 1",
        "2 accept no -",
        "3 accept yes 2",
        "4 accept yes 3",
    ]
    linktype, frames = read_pcap(out)
    assert linktype == (1 if ethernet else 101)
    _, orig = read_pcap(src)
    assert [ts for ts, _ in frames] == [orig[i][0] for i in (0, 2, 3, 4)]
    off = 14 if ethernet else 0
    assert frames[0][1] == orig[0][1] and frames[1][1] == orig[2][1]
    for (_, frame), (_, before) in zip(frames[2:], orig[3:], strict=True):
        ip = frame[off:]
        if ip[0] >> 4 == 4:
            ip = ip[: (ip[2] << 8) | ip[3]]
        p = Packet(ip)
        assert p.tos == 0x10 and verify(bytes(ip))
        assert frame[:off] == before[:off] and len(frame) == len(before)
    c = loop.counters()["backend"]
    assert (c["packets"], c["dropped"], c["modified"]) == (5, 1, 2)


def test_timers_follow_trace_time(tmp_path: Path) -> None:
    src = _trace(tmp_path)
    loop = ItmLoop("offline", pcap=src)
    fired: list[float] = []
    seen: list[float] = []
    loop.register_hook(Hook.IP_IN, ItmInfo("t", log_func=lambda c, p: seen.append(loop.now())))
    h = loop.register_timer(lambda: fired.append(loop.now()), 1.0)
    loop.run()
    # trace spans 1000.0 .. 1003.3: periods at 1001, 1002, 1003 (1001 fires before packet 2)
    assert fired == [1001.0, 1002.0, 1003.0]
    assert seen[0] == 1000.0 and seen[-1] == pytest.approx(1003.3)
    assert h.fired == 3


def test_unregistered_timer_does_not_fire(tmp_path: Path) -> None:
    loop = ItmLoop("offline", pcap=_trace(tmp_path))
    fired: list[int] = []
    h = loop.register_timer(lambda: fired.append(1), 0.5)
    loop.unregister_timer(h)
    loop.run()
    assert fired == []


def test_non_ip_and_snapped_frames_pass(tmp_path: Path) -> None:
    p = tmp_path / "mixed.pcap"
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    big = udp("10.0.0.1", "10.0.0.2", 1, 7005, b"x" * 200)
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    with open(p, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 96, 1))
        f.write(struct.pack("<IIII", 1, 0, len(arp), len(arp)) + arp)
        frame = (eth + big)[:96]
        f.write(struct.pack("<IIII", 2, 0, len(frame), len(eth + big)) + frame)
    out = tmp_path / "o.pcap"
    loop = ItmLoop("offline", pcap=p, out=out)
    errors: list[str] = []

    def pf(w: Hook, c: int, pkt: Packet) -> None:
        try:
            pkt.tos = 4
        except libitm.PacketTruncatedError as e:
            errors.append(str(e))
            raise

    info = ItmInfo("snap", class_func=lambda p: 1, process_func=pf)
    loop.register_hook("ip_forward", info)
    loop.run()
    _, frames = read_pcap(out)
    assert frames[0][1] == arp and frames[1][1] == frame
    assert len(errors) == 1 and info.counters.errors == 1
    assert loop.counters()["backend"]["not_ip"] == 1


def test_module_level_api_and_application(tmp_path: Path) -> None:
    class Count(libitm.Application):
        label = "count"
        hook = Hook.PRE_ROUTING

        def __init__(self) -> None:
            self.n = 0

        def log_func(self, cls: int, pkt: Packet) -> None:
            self.n += 1

    app = Count()
    libitm.register_hook(app.hook, app)
    libitm.run(backend="offline", pcap=_trace(tmp_path))
    assert app.n == 5


def test_strict_stops(tmp_path: Path) -> None:
    def boom(p: Packet) -> int:
        raise KeyError("boom")

    loop = ItmLoop("offline", strict=True, pcap=_trace(tmp_path))
    loop.register_hook("ip_in", ItmInfo("boom", class_func=boom))
    with pytest.raises(KeyError):
        loop.run()


def test_registration_errors() -> None:
    loop = ItmLoop("offline", pcap="/nonexistent")
    info = ItmInfo("dup")
    loop.register_hook("ip_in", info)
    with pytest.raises(ValueError, match="already registered"):
        loop.register_hook("ip_out", info)
    with pytest.raises(ValueError, match="already registered"):
        loop.register_hook("ip_out", ItmInfo("dup"))
    loop.unregister_hook(info)
    with pytest.raises(ValueError, match="not registered"):
        loop.unregister_hook(info)
    with pytest.raises(ValueError, match="positive"):
        loop.register_timer(lambda: None, 0)


def test_bad_pcap(tmp_path: Path) -> None:
    p = tmp_path / "bad.pcap"
    p.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    loop = ItmLoop("offline", pcap=p)
    loop.register_hook("ip_in", ItmInfo("x"))
    with pytest.raises(ValueError, match="pcapng"):
        loop.run()
