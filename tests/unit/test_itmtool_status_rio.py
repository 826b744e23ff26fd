"""`itmtool status` shows the rio qdiscs of a qdisc dump: parsed from netlink bytes.

The dump is a list of RTM_NEWQDISC messages as the kernel sends them (encoded
here, then decoded by libitm.control.rio's own parser behind a fake socket):
one rio qdisc with its options, generic stats and xstats, and a qdisc of
another kind that status must leave out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from itmtool import cli
from itmtool import status as status_mod
from libitm.control import ItmNotLoaded, rio
from tests.support.fake_itm_control import FakeItm
from tests.support.fake_rio_socket import FakeRioSocket

XSTATS = [2370, 3923, 1, 64, 2, 17, 5, 3, 7, 12, 4, 9]
SCELL_LOG, STAB = rio.idle_damping(9, 1000, 4_000_000)
#: the kernel dumps every option, the idle damping's cell included
CFG = rio.RioConfig(
    limit=200,
    in_profile=rio.RedProfile(30, 90, 0.02),
    out_profile=rio.RedProfile(15, 45, 0.1),
    ecn=True,
    scell_log=SCELL_LOG,
    stab=STAB,
)


#: as `itmtool rio set --no-dscp --no-bandwidth` leaves a qdisc: no DSCP, no table
#: dumped, scell_log back to its default
PLAIN = rio.RioConfig(limit=300, scell_log=10)


def _wire(kind: str, handle: int, parent: int, cfg: rio.RioConfig = CFG) -> bytes:
    msg = rio.rio_tcmsg()
    msg["index"] = 1  # lo: a device every machine has
    msg["handle"] = handle
    msg["parent"] = parent
    attrs: list[tuple[str, Any]] = [("TCA_KIND", kind)]
    if kind == "rio":
        attrs += [
            ("TCA_OPTIONS", {"attrs": rio.encode_options(cfg)}),
            ("TCA_STATS", {"bytes": 9184060, "packets": 6212, "drop": 81, "qlen": 9}),
            ("TCA_XSTATS", rio.XSTATS.pack(*XSTATS)),
        ]
    else:
        attrs.append(("TCA_STATS", {"bytes": 10, "packets": 1}))
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


@pytest.fixture
def dump(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    monkeypatch.setattr(rio, "NetlinkSocket", FakeRioSocket)
    FakeRioSocket.dump = [_wire("tbf", 0x10000, rio.TC_H_ROOT), _wire("rio", 0x100000, 0x10001)]
    return FakeRioSocket.dump


def test_status_json_has_each_rio_qdisc_with_its_counters(
    dump: list[bytes], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    assert cli.main(["status", "--json"]) == 0
    [q] = json.loads(capsys.readouterr().out)["rio_qdiscs"]
    assert (q["dev"], q["handle"], q["parent"]) == ("lo", "10:0", "1:1")
    assert q["config"]["in_profile"] == {"min": 30, "max": 90, "max_p": pytest.approx(0.02)}
    assert q["config"]["limit"] == 200 and q["config"]["ecn"] is True
    assert q["config"]["idle_table"] is True and q["config"]["dscp"] is None
    assert q["xstats"] == dict(zip(rio.XSTATS_FIELDS, XSTATS, strict=True))
    assert q["counters"]["packets"] == 6212 and q["counters"]["drop"] == 81


def test_status_text_shows_the_rio_counters(
    dump: list[bytes], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    rio_part = out[out.index("rio qdiscs (sch_rio)") :].splitlines()
    assert rio_part[1] == (
        "rio 10:0 dev lo parent 1:1: limit 200p wlog 9 in=TOS 0x10 ecn "
        f"idle-table scell_log {SCELL_LOG}"
    )
    assert "enqueued 2370 early 1 forced 2" in rio_part[2]
    assert "enqueued 3923 early 64 forced 17" in rio_part[3]
    assert rio_part[4].strip() == (
        "sent 6212 pkt 9184060 bytes, dropped 81, ecn marked 5, full 3, queued 9 (4 in)"
    )


def test_status_shows_a_dscp_and_a_table_and_their_absence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `itmtool rio set` changed (--dscp, --bandwidth) and cleared (--no-dscp,
    --no-bandwidth) shows in status and rio show, text and --json."""
    monkeypatch.setattr(rio, "NetlinkSocket", FakeRioSocket)
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    marked = rio.RioConfig(dscp=18, scell_log=SCELL_LOG, stab=STAB)
    monkeypatch.setattr(
        FakeRioSocket,
        "dump",
        [_wire("rio", 0x10000, rio.TC_H_ROOT, marked), _wire("rio", 0x20000, 0x10001, PLAIN)],
    )
    assert cli.main(["status", "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)["rio_qdiscs"]
    assert (first["config"]["dscp"], first["config"]["idle_table"]) == (18, True)
    assert (second["config"]["dscp"], second["config"]["idle_table"]) == (None, False)
    assert cli.main(["rio", "show", "--json"]) == 0
    assert [q["config"]["idle_table"] for q in json.loads(capsys.readouterr().out)] == [True, False]
    assert cli.main(["rio", "show"]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if line.startswith("rio ")]
    assert heads == [
        "rio 1:0 dev lo parent root: limit 1000p wlog 9 in=DSCP 18 "
        f"idle-table scell_log {SCELL_LOG}",
        "rio 2:0 dev lo parent 1:1: limit 300p wlog 9 in=TOS 0x10",
    ]


def test_status_shows_rio_without_itm_mod(
    dump: list[bytes], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_loaded() -> None:
        raise ItmNotLoaded(2, "itm_mod is not loaded (...)")

    monkeypatch.setattr(cli, "ItmControl", not_loaded)
    monkeypatch.setattr(status_mod, "nfqueue_apps", lambda xt=None: [])
    assert cli.main(["status", "--json"]) == 3
    assert [q["handle"] for q in json.loads(capsys.readouterr().out)["rio_qdiscs"]] == ["10:0"]
    assert cli.main(["status"]) == 3
    assert capsys.readouterr().out.startswith("rio qdiscs (sch_rio) in this network namespace:\n")


def test_status_without_rio_qdiscs_or_a_readable_dump(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Refused(FakeRioSocket):
        def nlm_request(self, msg: Any, msg_type: int, msg_flags: int) -> list[Any]:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(rio, "NetlinkSocket", Refused)
    monkeypatch.setattr(cli, "ItmControl", FakeItm)
    assert cli.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rio_qdiscs"] == []
    assert cli.main(["status"]) == 0
    assert "rio" not in capsys.readouterr().out
