"""examples/qos_ctrl.py (the paper's qos_mod) on generated traces of several flow sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from itm_testlib import ROOT_DIR, read_pcap, tcp, verify, write_pcap

from libitm import ItmLoop, Packet

sys.path.insert(0, str(ROOT_DIR / "examples"))
from qos_ctrl import QosCtrl

FIN_ACK = 0x11
# (src, dst, sport, dport, packets, initial TOS): precedence and ECN bits must survive
FLOWS = [
    ("10.0.0.1", "10.0.0.9", 40001, 80, 1, 0x00),
    ("10.0.0.1", "10.0.0.9", 40002, 80, 5, 0xA2),
    ("10.0.0.2", "10.0.0.9", 40003, 443, 20, 0x01),
    ("10.0.0.3", "10.0.0.9", 40004, 443, 21, 0x10),
    ("10.0.0.4", "10.0.0.9", 40005, 22, 60, 0xE3),
    ("10.0.0.9", "10.0.0.4", 22, 40005, 30, 0x00),  # reverse direction: its own entry
    ("fd00::1", "fd00::9", 40006, 80, 45, 0x22),
]


def expected_tos(n: int, total: int, tos: int, threshold: int) -> int:
    fin = n == total and total > 1
    if n == 1:
        return tos
    if n <= threshold or fin:
        return tos | 0x10
    return tos & ~0x10 & 0xFF


def make_trace(path: Path) -> list[tuple[int, int, int, int]]:
    """Interleave the flows; return (flow, n, total, tos) per packet in trace order."""
    order: list[tuple[int, int]] = []
    longest = max(f[4] for f in FLOWS)
    for n in range(1, longest + 1):
        for i, f in enumerate(FLOWS):
            if n <= f[4]:
                order.append((i, n))
    pkts = []
    meta = []
    for k, (i, n) in enumerate(order):
        src, dst, sp, dp, total, tos = FLOWS[i]
        flags = FIN_ACK if n == total and total > 1 else 0x18
        pkts.append(
            (2000.0 + k * 0.001, tcp(src, dst, sp, dp, b"p" * (n % 7), flags=flags, tos=tos))
        )
        meta.append((i, n, total, tos))
    write_pcap(path, pkts)
    return meta


@pytest.mark.parametrize("threshold", [20, 3])
def test_marking(tmp_path: Path, threshold: int) -> None:
    src = tmp_path / "flows.pcap"
    out = tmp_path / "marked.pcap"
    meta = make_trace(src)
    app = QosCtrl(threshold)
    loop = ItmLoop("offline", pcap=src, out=out)
    loop.register_app(app)
    loop.run()
    _, frames = read_pcap(out)
    assert len(frames) == len(meta)
    for (i, n, total, tos), (_, raw) in zip(meta, frames, strict=True):
        p = Packet(raw)
        want = expected_tos(n, total, tos, threshold)
        assert p.tos == want, f"flow {i} packet {n}/{total}: tos {p.tos:#x} != {want:#x}"
        assert verify(raw)
    assert len(app.flows) == len(FLOWS)
    assert app.flows[QosCtrl.key(Packet(frames[0][1]))] == 1


def test_command_line(tmp_path: Path) -> None:
    src = tmp_path / "flows.pcap"
    out = tmp_path / "marked.pcap"
    log = tmp_path / "v.log"
    meta = make_trace(src)
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT_DIR / "examples" / "qos_ctrl.py"),
            "--backend",
            "offline",
            "--pcap",
            str(src),
            "--out",
            str(out),
            "--log",
            str(log),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == len(meta)
    first = [ln for ln, m in zip(lines, meta, strict=True) if m[1] == 1]
    assert all(ln.endswith(" no 0") for ln in first)
    _, frames = read_pcap(out)
    assert len(frames) == len(meta)
    assert '"short"' in res.stderr


def test_port_blocker_example(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    out = tmp_path / "out.pcap"
    write_pcap(
        src,
        [
            (1.0, tcp("10.0.0.1", "10.0.0.2", 1, 23)),
            (2.0, tcp("10.0.0.1", "10.0.0.2", 1, 22)),
            (3.0, tcp("10.0.0.1", "10.0.0.2", 1, 25)),
        ],
    )
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT_DIR / "examples" / "port_blocker.py"),
            "--ports",
            "23-25",
            "--backend",
            "offline",
            "--pcap",
            str(src),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "dropped 2 of 2" in res.stderr
    _, frames = read_pcap(out)
    assert [Packet(f).dport for _, f in frames] == [22]
