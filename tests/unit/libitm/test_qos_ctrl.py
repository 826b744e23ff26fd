"""examples/qos_ctrl.py (the paper's qos_mod) on generated traces of several flow sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from libitm import ItmLoop, Packet
from tests.support.packets import ROOT_DIR, read_pcap, tcp, verify, write_pcap
from tests.support.qos_trace import FLOWS, expected_tos, offline_tos, trace, write_trace

sys.path.insert(0, str(ROOT_DIR / "examples"))
from qos_ctrl import QosCtrl


def make_trace(path: Path) -> list[tuple[int, int, int, int]]:
    """The parity trace as a pcap; (flow, n, total, tos) per packet in trace order."""
    pkts = trace()
    write_trace(path, pkts)
    return [(p.flow, p.n, p.total, p.tos) for p in pkts]


def test_offline_parity_trace_follows_the_rule(tmp_path: Path) -> None:
    """The trace the host and VM tiers replay: offline, every packet gets the rule's TOS."""
    pkts = trace()
    tos = offline_tos(pkts, tmp_path)
    assert [expected_tos(p.n, p.total, p.tos, 20) for p in pkts] == tos
    assert len({p.key for p in pkts}) == len(pkts)  # each packet identifiable on the wire


@pytest.mark.parametrize("threshold", [20, 1])
def test_mark_first_marks_the_first_packet_too(tmp_path: Path, threshold: int) -> None:
    """``mark_first`` (qos_mod's parameter of that name): packet 1 is SHORT, the rest as before."""
    pkts = trace()
    tos = offline_tos(pkts, tmp_path, threshold, mark_first=True)
    want = [expected_tos(p.n, p.total, p.tos, threshold, mark_first=True) for p in pkts]
    assert tos == want
    assert want != [expected_tos(p.n, p.total, p.tos, threshold, mark_first=False) for p in pkts]
    # the default is mark_first, as qos_mod's
    assert offline_tos(pkts, tmp_path, threshold) == tos
    assert offline_tos(pkts, tmp_path, threshold, mark_first=False) != tos


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
    assert first and not any(ln.endswith(" no 0") for ln in first)  # classified: mark_first
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


@pytest.mark.parametrize("threshold", [20, 3])
def test_figures_counts_as_the_papers_figures(tmp_path: Path, threshold: int) -> None:
    """``--figures``: Figures 9-10's counting, packet 1 as sent, SHORT up to packet T+2,
    whatever ``mark_first`` says; plain ``threshold`` marks up to packet T."""
    from tests.support.paper_app import figures_tos

    pkts = trace()
    src, out = tmp_path / "trace.pcap", tmp_path / "marked.pcap"
    write_trace(src, pkts)
    loop = ItmLoop("offline", pcap=src, out=out)
    loop.register_app(QosCtrl(threshold, mark_first=True, figures=True))
    loop.run()
    got = [Packet(bytearray(raw)).tos for _, raw in read_pcap(out)[1]]
    fin = [p.n == p.total and p.total > 1 for p in pkts]
    want = [figures_tos(p.n, f, p.tos, threshold=threshold) for p, f in zip(pkts, fin, strict=True)]
    assert got == want, "IPv6 flows too: qos_ctrl marks both families"
    assert want != [expected_tos(p.n, p.total, p.tos, threshold) for p in pkts]
    assert [
        expected_tos(p.n, p.total, p.tos, threshold + 2, mark_first=False) for p in pkts
    ] == want


def test_help_says_how_threshold_counts() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT_DIR / "examples" / "qos_ctrl.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flat = " ".join(out.split())
    assert "n <= threshold" in flat and "2..T+2" in flat and "--figures" in flat
