"""Nothing done in an unprivileged user namespace denies the host service or shows
it another namespace's applications (issue 15, "namespaces and privilege").

The attacker is a child process that dropped to uid 65534 and made a user and
network namespace of its own (what `unshare -Urn` does): it holds
CAP_NET_ADMIN over its own network namespace only, which is all itm_queue's
register command asks for.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import pytest

from libitm.control import itm_spec as M
from tests.kernel import kit
from tests.kernel.genl_raw import RawGenl, attr, string
from tests.kernel.itm_raw import app_labels, in_userns, register

BASE = 0x7000


@pytest.fixture
def itm_queue() -> Iterator[None]:
    """itm_mod and itm_queue (8 queue numbers per namespace) loaded."""
    with kit.modules(queue=("queue_count=8",)):
        try:
            yield
        finally:
            kit.rmmod("qos_mod")
            kit.rmmod("itm_test_app")


def test_container_label_cannot_block_insmod(itm_queue: None) -> None:
    """A container's application labelled qos_mod: insmod qos_mod still works."""

    def squat() -> tuple[dict[str, Any], object]:
        sock = RawGenl()
        first, _ = register(sock, "qos_mod")
        again, _ = register(sock, "qos_mod")
        return {"first": first, "again": again}, sock

    with in_userns(squat) as got:
        assert got == {"first": 0, "again": errno.EEXIST}, got
        kit.insmod("qos_mod")  # raised "File exists" before labels were per namespace
        with RawGenl() as host:
            assert app_labels(host).count("qos_mod") == 2
        # the host's own namespace still has one qos_mod
        with RawGenl() as host:
            assert register(host, "qos_mod")[0] == errno.EEXIST
    print("container registered qos_mod, then host insmod qos_mod: OK")


def test_container_cannot_take_host_queue_numbers(itm_queue: None) -> None:
    """A container that takes every queue number leaves the host's untouched."""

    def hoard() -> tuple[dict[str, Any], object]:
        sock = RawGenl()
        codes = [register(sock, f"hog{i}")[0] for i in range(9)]
        return {"codes": codes}, sock

    with in_userns(hoard) as got:
        assert got["codes"] == [0] * 8 + [errno.ENOSPC], got
        with RawGenl() as host:
            mine = [register(host, f"host{i}") for i in range(8)]
        assert mine == [(0, BASE + i) for i in range(8)], mine
    print(f"container: {got['codes']}; host then registered 8 apps on queues {BASE:#x}..")


def test_dumps_show_each_namespace_its_own(itm_queue: None) -> None:
    """A container sees its own and the kernel modules' applications; an
    unprivileged host user sees the host's; root in the host sees all."""
    kit.insmod("itm_test_app", "apps=label=kmod_app,hook=post,class=1")
    with RawGenl() as host:
        assert register(host, "host_app")[0] == 0

        def look() -> tuple[dict[str, Any], object]:
            sock = RawGenl()
            reg = register(sock, "ctr_app")[0]
            fam = sock.family(M.FAMILY_NAME)
            get_host = sock.request(fam, M.ITM_CMD_APP_GET, string(M.ITM_A_LABEL, "host_app"))[0]
            set_own = sock.request(
                fam,
                M.ITM_CMD_APP_SET,
                string(M.ITM_A_LABEL, "ctr_app") + attr(M.ITM_A_ENABLED, b"\0"),
            )[0]
            seen = app_labels(sock)
            return {"reg": reg, "seen": seen, "get_host": get_host, "set_own": set_own}, sock

        with in_userns(look) as ctr:
            assert ctr["reg"] == 0
            assert sorted(ctr["seen"]) == ["ctr_app", "kmod_app"], ctr
            assert ctr["get_host"] == errno.ENOENT
            assert ctr["set_own"] == errno.EPERM  # administration is the host's

            def peek() -> tuple[dict[str, Any], object]:
                with RawGenl() as s:
                    return {"seen": app_labels(s)}, None

            with in_userns(peek, unprivileged_only=True) as nobody:
                assert sorted(nobody["seen"]) == ["host_app", "kmod_app"]
            assert sorted(app_labels(host)) == ["ctr_app", "host_app", "kmod_app"]
    print(f"container sees {ctr['seen']}, nobody sees {nobody['seen']}")
