"""Every `--json` output of itmtool has the shape docs/itmtool.md documents.

The documented examples are read from the `<!-- json: NAME -->` blocks of the
doc; an output matches when it has the same keys at every level and values of
the same kinds (a documented null admits anything, a list is checked against
its first documented element).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from itmtool import build, buildmods, cli, dkms, kmod, new
from itmtool import status as status_mod
from itmtool.matrix import ROOT
from libitm.control import ItmNotLoaded
from libitm.pcap import PcapWriter
from tests.support.fake_dkms import K61, K612, FakeDkms
from tests.support.fake_itm_control import FakeControl, FakeItm
from tests.support.fake_kmod_machine import FakeMachine

DOC = ROOT / "docs" / "itmtool.md"


def documented(name: str) -> Any:
    """The JSON block under `<!-- json: name -->` in docs/itmtool.md."""
    m = re.search(rf"<!-- json: {re.escape(name)} -->\s*```json\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"docs/itmtool.md documents no `{name}` JSON"
    return json.loads(m.group(1))


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def same_shape(doc: Any, real: Any, where: str = "$") -> list[str]:
    """Differences between the documented and the real shape (empty when they agree)."""
    if doc is None:
        return []
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{where}: expected an object, got {_kind(real)}"]
        if set(doc) != set(real):
            return [f"{where}: keys {sorted(real)} instead of {sorted(doc)}"]
        return [p for k in doc for p in same_shape(doc[k], real[k], f"{where}.{k}")]
    if isinstance(doc, list):
        if not isinstance(real, list):
            return [f"{where}: expected a list, got {_kind(real)}"]
        if not doc:
            return []
        return [p for i, r in enumerate(real) for p in same_shape(doc[0], r, f"{where}[{i}]")]
    if real is not None and _kind(doc) != _kind(real):
        return [f"{where}: {_kind(real)} instead of {_kind(doc)}"]
    return []


def test_the_shape_checker_sees_differences() -> None:
    assert same_shape({"a": [1]}, {"a": [2, 3]}) == []
    assert same_shape({"a": 1}, {"a": "x"}) == ["$.a: str instead of number"]
    assert same_shape({"a": 1}, {"b": 1})
    assert same_shape({"a": None}, {"a": [1]}) == []


def _out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def _fake_sysfs(root: Path) -> Path:
    """A /sys/module with count_dns publishing two counters and a stray file."""
    stats = root / "count_dns" / "stats"
    stats.mkdir(parents=True)
    (stats / "flows").write_text("12\n")
    (stats / "short_packets").write_text("610\n")
    (stats / "broken").write_text("n/a\n")
    return root


def test_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    monkeypatch.setattr(status_mod, "SYS_MODULE", _fake_sysfs(tmp_path))
    assert cli.main(["status", "--json"]) == 0
    real, doc = _out(capsys), documented("status")
    # module_stats is keyed by module name: compare the rest, then its values
    assert same_shape(doc, {**real, "module_stats": doc["module_stats"]}) == []
    assert real["module_stats"] == {"count_dns": {"flows": 12, "short_packets": 610}}
    assert all(isinstance(v, int) for c in doc["module_stats"].values() for v in c.values())


def test_status_table_shows_module_counters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    monkeypatch.setattr(status_mod, "SYS_MODULE", _fake_sysfs(tmp_path))
    assert cli.main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "count_dns counters: flows 12  short_packets 610"


def test_status_without_module_counters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    monkeypatch.setattr(status_mod, "SYS_MODULE", tmp_path)
    assert cli.main(["status", "--json"]) == 0
    assert _out(capsys)["module_stats"] == {}


def test_status_when_nothing_is_loaded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_loaded() -> None:
        raise ItmNotLoaded(2, "itm_mod is not loaded (...): load it with `itmtool load itm_mod`")

    monkeypatch.setattr(cli, "ItmControl", not_loaded)
    assert cli.main(["status", "--json"]) == 3
    real = _out(capsys)
    assert real == documented("status-not-loaded")
    assert cli.main(["status"]) == 3
    err = capsys.readouterr().err
    assert "itm_mod is not loaded" in err and "Traceback" not in err


def test_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moddir = tmp_path / "src"
    (moddir / "kernel" / "itm_mod").mkdir(parents=True)
    (moddir / "kernel" / "itm_mod" / "itm_mod.ko").write_bytes(b"")

    def fake_build(kernel: object) -> buildmods.BuildResult:
        return buildmods.BuildResult("6.12.0-x", moddir, "  CC [M]  main.o\n", 0)

    monkeypatch.setattr(buildmods, "build", fake_build)
    monkeypatch.setattr(build, "check_headers", lambda k: tmp_path)
    assert cli.main(["build", "--kernel", "6.12", "--json"]) == 0
    real = _out(capsys)
    assert same_shape(documented("build"), real) == []
    assert real["modules"] == ["kernel/itm_mod/itm_mod.ko"] and real["ok"] is True


def test_load_and_unload(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = FakeMachine(tmp_path)
    monkeypatch.setattr(kmod, "Host", lambda: machine.host())
    monkeypatch.setattr(kmod, "_default_control", lambda: FakeControl(FakeItm().apps()))
    assert cli.main(["load", "--deps", "count_udp", "priority=1", "--json"]) == 0
    assert same_shape(documented("load"), _out(capsys)) == []
    assert cli.main(["unload", "--all", "itm_mod", "--json"]) == 0
    real = _out(capsys)
    assert same_shape(documented("unload"), real) == []
    assert [a["label"] for a in real["unregistered"]] == ["dns"]


def test_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["new", "user", "web", "--dir", str(tmp_path / "web"), "--json"]) == 0
    assert same_shape(documented("new"), _out(capsys)) == []


def test_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new.render_user(new.AppSpec("slow_web", "post", new.parse_interest(["proto=udp"])), tmp_path)
    l4 = struct.pack("!HHHH", 1000, 53, 8, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, b"\n\0\0\1", b"\n\0\0\2")
    with (tmp_path / "in.pcap").open("wb") as f:
        PcapWriter(f).write_packet(1.0, ip + l4)
    assert (
        cli.main(
            ["run", str(tmp_path / "slow_web.py"), "--pcap", str(tmp_path / "in.pcap"), "--json"]
        )
        == 0
    )
    real = _out(capsys)
    doc = documented("run")
    doc["backend_counters"] = None  # depends on the backend
    assert same_shape(doc, real) == []


def test_dkms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeDkms(tmp_path)
    env = fake.env(tmp_path, [])
    monkeypatch.setattr(dkms, "Env", lambda say: env)
    assert cli.main(["dkms", "status", "--json"]) == 5
    assert _out(capsys)["added"] is False
    for k in (K61, K612):
        assert cli.main(["dkms", "install", "--kernel", k, "--json"]) == 0
        real = _out(capsys)
        assert same_shape(documented("dkms-install"), real) == []
        # itm_mod, itm_queue, qos_mod, sch_rio, itm_route
        assert [m["vermagic"].split()[0] for m in real["modules"]] == [k] * 5
    assert cli.main(["dkms", "status", "--json"]) == 0
    real = _out(capsys)
    assert same_shape(documented("dkms-status"), real) == []
    assert [r["kernel"] for r in real["kernels"]] == [K61, K612]
    assert cli.main(["dkms", "remove", "--json"]) == 0
    real = _out(capsys)
    assert same_shape(documented("dkms-remove"), real) == []
    assert real["removed"] == [K61, K612] and real["source_removed"] is True
