"""`itmtool run`: user-space applications started offline on a pcap (no root)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from itmtool import cli, new
from itmtool.matrix import ROOT
from libitm.pcap import PcapReader, PcapWriter


def _udp(dport: int, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    l4 = struct.pack("!HHHH", 40000, dport, 12, 0) + b"ping"
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, 17, 0, a, b) + l4


def _trace(path: Path, ports: list[int]) -> Path:
    with path.open("wb") as f:
        w = PcapWriter(f)
        for i, port in enumerate(ports):
            w.write_packet(1.0 + i, _udp(port))
    return path


def test_run_a_generated_application_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = new.AppSpec("dns_count", "post", new.parse_interest(["proto=udp,dport=53"]))
    new.render_user(spec, tmp_path / "app")
    pcap = _trace(tmp_path / "in.pcap", [53, 53, 80, 53])
    out = tmp_path / "out.pcap"
    rc = cli.main(
        [
            "run",
            str(tmp_path / "app" / "dns_count.py"),
            "--pcap",
            str(pcap),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "apps" and doc["backend"] == "offline"
    assert doc["apps"]["dns_count"]["packets"] == 3
    assert doc["apps"]["dns_count"]["accepted"] == 3
    with out.open("rb") as f:
        assert len(list(PcapReader(f))) == 4
    rc = cli.main(["run", str(tmp_path / "app" / "dns_count.py"), "--pcap", str(pcap)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "backend offline"
    assert lines[1].split()[:2] == ["LABEL", "PACKETS"]
    assert lines[2].split()[:2] == ["dns_count", "3"]


def test_run_an_application_class_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/qos_ctrl.py defines an Application subclass and no apps()."""
    pcap = _trace(tmp_path / "in.pcap", [53, 80])
    rc = cli.main(["run", str(ROOT / "examples" / "qos_ctrl.py"), "--pcap", str(pcap), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["apps"]) == ["qos_ctrl"]


def test_run_a_file_through_its_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/port_blocker.py has only main(argv): itmtool passes the options on."""
    pcap = _trace(tmp_path / "in.pcap", [23, 80, 23])
    out = tmp_path / "out.pcap"
    rc = cli.main(
        [
            "run",
            str(ROOT / "examples" / "port_blocker.py"),
            "--pcap",
            str(pcap),
            "--out",
            str(out),
            "--json",
            "--",
            "--ports",
            "23",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out[captured.out.index("{") :])
    assert doc["mode"] == "main" and doc["exit"] == 0
    assert doc["argv"][:4] == ["--backend", "offline", "--pcap", str(pcap)]
    assert doc["argv"][-2:] == ["--ports", "23"]  # what followed --, too
    with out.open("rb") as f:
        assert len(list(PcapReader(f))) == 1  # both port-23 packets dropped


def test_a_main_that_rejects_an_argument_is_named_and_workers_get_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse in a file's main() names the file, not itmtool; a main() without
    --workers is told that itmtool passed it (`itmtool run --workers 2 APP.py`)."""
    app = tmp_path / "narrow.py"
    app.write_text(
        "import argparse\n"
        "def main(argv):\n"
        "    ap = argparse.ArgumentParser()\n"
        "    ap.add_argument('--backend')\n"
        "    ap.parse_args(argv)\n"
        "    return 0\n"
    )
    rc = cli.main(["run", str(app), "--backend", "nfqueue", "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 2  # main()'s exit code is itmtool's
    assert "narrow.py: error: unrecognized arguments: --workers 2" in err, err
    assert "itmtool: error" not in err
    assert "hint: itmtool passed --workers 2 to narrow.py's main()" in err
    assert "Traceback" not in err


def test_port_blocker_takes_workers_on_a_live_backend_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples import port_blocker

    pcap = _trace(tmp_path / "in.pcap", [23])
    with pytest.raises(SystemExit) as exited:
        port_blocker.main(["--ports", "23", "--pcap", str(pcap), "--workers", "2"])
    assert exited.value.code == 2
    assert "--workers goes with a live backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        port_blocker.main(["--ports", "23", "--workers", "0"])
    assert "workers" in capsys.readouterr().err


def test_run_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(tmp_path / "missing.py")]) == 5
    assert "no such application file" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    pcap = str(_trace(tmp_path / "x.pcap", [7]))  # the trace is checked before the file
    assert cli.main(["run", str(empty), "--backend", "offline", "--pcap", pcap]) == 2
    assert "has no applications" in capsys.readouterr().err
    assert cli.main(["run", str(empty), "--backend", "offline"]) == 2
    assert "needs --pcap" in capsys.readouterr().err
    assert cli.main(["run", str(empty), "--backend", "nfqueue", "--out", "o.pcap"]) == 2
    assert "offline backend" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--workers", "2", "--pcap", "IN"],
            "--workers goes with a live backend (kernel or nfqueue), not offline",
        ),
        (
            ["--workers", "2", "--backend", "offline", "--pcap", "IN"],
            "--workers goes with a live backend",
        ),
        (["--workers", "0"], "must be a number of workers in 1..64, not '0'"),
        (["--workers", "many"], "must be a number of workers in 1..64, not 'many'"),
    ],
)
def test_run_workers_is_refused_where_it_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    app = tmp_path / "app.py"
    app.write_text("def apps():\n    return []\n")
    argv = [a.replace("IN", str(_trace(tmp_path / "in.pcap", [53]))) for a in argv]
    try:
        rc = cli.main(["run", str(app), *argv])
    except SystemExit as e:  # argparse's usage error
        rc = int(e.code or 0)
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3


def test_the_summary_says_how_many_observer_copies_the_ring_lost() -> None:
    from itmtool import run as run_mod

    cols = ("packets", "classified", "accepted", "dropped", "modified", "errors")
    summary = {
        "file": "a.py",
        "mode": "apps",
        "backend": "nfqueue",
        "apps": {"watch": dict.fromkeys(cols, 0)},
        "backend_counters": {"ring_lost": 0},
    }
    assert "lost" not in run_mod.table(summary)
    summary["backend_counters"] = {"ring_lost": 75}
    assert run_mod.table(summary).splitlines()[-1].startswith("observer copies lost: 75 ")
