"""`itmtool unload sch_rio` refused by rmmod: the rio qdiscs that hold the module, named.

rmmod only says "Module sch_rio is in use"; every rio qdisc holds a reference.
`itmtool.rio.unload_refused` turns that into the list of the rio qdiscs of the
caller's namespace and the command that deletes them (read from a qdisc dump
in netlink bytes here, behind a fake socket), or says that none is here.
"""

from __future__ import annotations

from typing import Any

import pytest

from itmtool import rio as rio_cli
from itmtool.errors import EXIT_FAILED
from libitm.control import rio
from tests.support.fake_rio_socket import FakeRioSocket


def _status(dev: str, handle: str, parent: str) -> rio.RioStatus:
    return rio.RioStatus(dev, handle, parent, rio.RioConfig(), {}, {})


def _wire(handle: int, parent: int) -> bytes:
    msg = rio.rio_tcmsg()
    msg["index"] = 1  # lo
    msg["handle"] = handle
    msg["parent"] = parent
    cfg = rio.RioConfig(scell_log=10)  # the kernel dumps every option
    msg["attrs"] = [("TCA_KIND", "rio"), ("TCA_OPTIONS", {"attrs": rio.encode_options(cfg)})]
    msg.encode()
    return bytes(msg.data)


def test_the_qdiscs_that_hold_sch_rio_are_named_with_the_way_out() -> None:
    err = rio_cli.unload_refused(
        lambda: [_status("eth1", "1:0", "root"), _status("l2", "10:0", "1:1")]
    )
    assert err.code == EXIT_FAILED
    assert err.message.splitlines() == [
        "sch_rio is in use",
        "rio qdiscs in this network namespace:",
        "  rio 1:0 dev eth1 parent root",
        "  rio 10:0 dev l2 parent 1:1",
    ]
    assert "`itmtool rio del eth1`" in err.hint


def test_a_child_qdisc_is_deleted_with_its_parent() -> None:
    err = rio_cli.unload_refused(lambda: [_status("l2", "10:0", "1:1")])
    assert "`itmtool rio del l2 --parent 1:1`" in err.hint


def test_none_here_points_at_other_namespaces() -> None:
    err = rio_cli.unload_refused(lambda: [])
    assert err.message == "sch_rio is in use, but by no rio qdisc of this network namespace"
    assert "ip netns exec NS itmtool rio del DEV" in err.hint


def test_by_default_the_kernels_qdisc_dump_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rio, "NetlinkSocket", FakeRioSocket)
    monkeypatch.setattr(FakeRioSocket, "dump", [_wire(0x20000, 0x10001)])
    err = rio_cli.unload_refused()
    assert err.message.splitlines()[2:] == ["  rio 2:0 dev lo parent 1:1"]


def test_an_unreadable_dump_is_no_qdisc(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(**_: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(rio, "NetlinkSocket", refused)
    assert "by no rio qdisc" in rio_cli.unload_refused().message
