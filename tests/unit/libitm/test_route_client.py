"""The itm_route client without the module: its requests byte by byte (what the C
side parses), GET's replies back into dataclasses, errors with the kernel's text."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Any, ClassVar

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from libitm.control import itm_route_spec as spec
from libitm.control import route
from libitm.control.client import ItmControlError
from libitm.control.route import (
    ItmRouteClient,
    ItmRouteError,
    ItmRouteNotLoaded,
    KernelState,
    RouteSpec,
    RouteState,
)
from libitm.genl import family_id
from tests.support.netlink_attrs import attrs as _attrs

NLA_F_NESTED = 1 << 15
A4 = ipaddress.ip_address("10.77.100.1")
NET4 = ipaddress.ip_network("10.77.200.0/24")
NET6 = ipaddress.ip_network("fd77:200::/48")


def _wire(msg: spec.itm_routemsg) -> bytes:
    msg.encode()
    return bytes(msg.data)


def test_config_request_layout() -> None:
    key = bytes(range(32))
    data = _wire(route.config_message(addr=A4, port=7177, key=key, mtu=1434, mark=0x17E0))
    assert data[16] == spec.ITMR_CMD_CONFIG and data[17] == spec.FAMILY_VERSION
    top = _attrs(data)
    assert struct.unpack("=H", top[spec.ITMR_A_PORT][:2])[0] == 7177
    assert struct.unpack("=I", top[spec.ITMR_A_MARK])[0] == 0x17E0
    assert top[spec.ITMR_A_KEY] == key
    assert top[spec.ITMR_A_ADDR] == A4.packed + bytes(12)  # IPv4 in the first 4 bytes
    assert top[spec.ITMR_A_FAMILY][:1] == bytes([socket.AF_INET])
    assert struct.unpack("=H", top[spec.ITMR_A_MTU][:2])[0] == 1434
    a6 = ipaddress.ip_address("fd77::1")
    top6 = _attrs(_wire(route.config_message(addr=a6, port=1, key=key, mtu=1390, mark=1)))
    assert top6[spec.ITMR_A_ADDR] == a6.packed
    assert top6[spec.ITMR_A_FAMILY][:1] == bytes([socket.AF_INET6])


def test_route_set_request_layout() -> None:
    via = ipaddress.ip_address("10.77.1.2")
    target = ipaddress.ip_address("10.77.200.1")
    data = _wire(route.route_set_message(RouteSpec(NET4, target, via, tag=2, receipt=1)))
    assert data[16] == spec.ITMR_CMD_ROUTE_SET
    top = _attrs(data)
    assert list(top) == [spec.ITMR_A_ROUTE | NLA_F_NESTED]  # strict validation wants the flag
    nest = _attrs(top[spec.ITMR_A_ROUTE | NLA_F_NESTED], 0)
    assert nest[spec.ITMR_A_ROUTE_FAMILY][:1] == bytes([socket.AF_INET])
    assert nest[spec.ITMR_A_ROUTE_PREFIX] == bytes([10, 77, 200, 0]) + bytes(12)
    assert nest[spec.ITMR_A_ROUTE_PREFIX_LEN][:1] == bytes([24])
    assert nest[spec.ITMR_A_ROUTE_VIA] == via.packed + bytes(12)
    assert nest[spec.ITMR_A_ROUTE_TARGET] == target.packed + bytes(12)
    assert nest[spec.ITMR_A_ROUTE_TAG][:1] == bytes([2])
    assert nest[spec.ITMR_A_ROUTE_RECEIPT][:1] == bytes([1])
    # direct: no via at all; no receipt: 255; an IPv6 prefix behind an IPv4 ITM
    direct = _attrs(_wire(route.route_set_message(RouteSpec(NET6, target))))
    nest = _attrs(direct[spec.ITMR_A_ROUTE | NLA_F_NESTED], 0)
    assert spec.ITMR_A_ROUTE_VIA not in nest
    assert nest[spec.ITMR_A_ROUTE_RECEIPT][:1] == bytes([255])
    assert nest[spec.ITMR_A_ROUTE_FAMILY][:1] == bytes([socket.AF_INET6])
    assert nest[spec.ITMR_A_ROUTE_PREFIX] == NET6.network_address.packed
    assert nest[spec.ITMR_A_ROUTE_PREFIX_LEN][:1] == bytes([48])


def test_route_del_and_bodiless_requests() -> None:
    top = _attrs(_wire(route.route_del_message(NET4)))
    nest = _attrs(top[spec.ITMR_A_ROUTE | NLA_F_NESTED], 0)
    assert set(nest) == {
        spec.ITMR_A_ROUTE_FAMILY,
        spec.ITMR_A_ROUTE_PREFIX,
        spec.ITMR_A_ROUTE_PREFIX_LEN,
    }


def _reply(attrs: list[list[Any]]) -> Any:
    """A reply as the kernel would send it, decoded as the socket decodes it."""
    msg = spec.itm_routemsg()
    msg["cmd"] = spec.ITMR_CMD_GET
    msg["version"] = spec.FAMILY_VERSION
    msg["attrs"] = attrs
    back = spec.itm_routemsg(_wire(msg))
    back.decode()
    return back


def _config_reply(family: int = socket.AF_INET, addr: bytes = A4.packed + bytes(12)) -> Any:
    stats = [[f"ITMR_A_STATS_{n.upper()}", i + 1] for i, n in enumerate(route.STAT_NAMES)]
    return _reply(
        [
            ["ITMR_A_PORT", 7177],
            ["ITMR_A_MARK", 0x17E0],
            ["ITMR_A_ADDR", addr],
            ["ITMR_A_FAMILY", family],
            ["ITMR_A_MTU", 1434],
            ["ITMR_A_PID", 4242],
            ["ITMR_A_STATS", {"attrs": stats}],
        ]
    )


def _route_reply(**kw: Any) -> Any:
    nest: dict[str, Any] = {
        "FAMILY": socket.AF_INET,
        "PREFIX": bytes([10, 77, 200, 0]) + bytes(12),
        "PREFIX_LEN": 24,
        "VIA": bytes([10, 77, 1, 2]) + bytes(12),
        "TARGET": bytes([10, 77, 200, 1]) + bytes(12),
        "TAG": 1,
        "RECEIPT": 255,
        "OUT_AGE": 20,
        "IN_AGE": spec.ITMR_NEVER,
        "PEER_AGE": 1500,
        "PEER_TAG": 3,
        "PEER_VIA": bytes(16),
        "HEARD_AGE": 7,
        "HEARD_RECEIPT": 2,
        "TUNNELLED": 2**40,
        "DIRECT": 5,
        "PEER_PACKETS": 9,
    }
    nest.update(kw)
    attrs = [[f"ITMR_A_ROUTE_{k}", v] for k, v in nest.items() if v is not None]
    return _reply([["ITMR_A_ROUTE", {"attrs": attrs}]])


def test_get_replies_become_dataclasses() -> None:
    state, routes = route.parse_dump([_config_reply(), _route_reply()])
    assert state == KernelState(
        port=7177,
        mark=0x17E0,
        addr=A4,
        family=socket.AF_INET,
        mtu=1434,
        pid=4242,
        stats={n: i + 1 for i, n in enumerate(route.STAT_NAMES)},
    )
    assert route.STAT_NAMES == (
        "tunnelled",
        "direct",
        "decapsulated",
        "relayed",
        "auth_failed",
        "replayed",
        "bad",
        "to_daemon",
        "too_big",
        "mss_clamped",
        "send_errors",
        "no_route",
    )
    (r,) = routes
    assert r == RouteState(
        prefix=NET4,
        target=ipaddress.ip_address("10.77.200.1"),
        via=ipaddress.ip_address("10.77.1.2"),
        tag=1,
        receipt=None,
        out_age=0.02,
        in_age=None,  # ITMR_NEVER
        peer_age=1.5,
        peer_tag=3,
        peer_via=None,  # zero: came direct
        heard_age=0.007,
        heard_receipt=2,
        tunnelled=2**40,
        direct=5,
        peer_packets=9,
    )
    assert r.spec() == RouteSpec(NET4, r.target, r.via, 1, None)  # type: ignore[arg-type]


def test_get_of_an_ipv6_overlay_and_of_an_unconfigured_namespace() -> None:
    a6 = ipaddress.ip_address("fd77::1")
    relay = ipaddress.ip_address("fd77::2")
    state, (r,) = route.parse_dump(
        [
            _config_reply(socket.AF_INET6, a6.packed),
            _route_reply(
                VIA=None,
                TARGET=a6.packed,
                PEER_VIA=relay.packed,
                FAMILY=socket.AF_INET6,
                PREFIX=NET6.network_address.packed,
                PREFIX_LEN=48,
                RECEIPT=0,
                HEARD_AGE=spec.ITMR_NEVER,
                HEARD_RECEIPT=255,
            ),
        ]
    )
    assert state is not None and state.addr == a6 and state.family == socket.AF_INET6
    assert (r.prefix, r.via, r.target, r.peer_via) == (NET6, None, a6, relay)
    assert (r.receipt, r.heard_age, r.heard_receipt) == (0, None, None)
    assert route.parse_dump([]) == (None, [])
    with pytest.raises(ItmRouteError, match="family 7"):
        route.parse_dump([_route_reply(FAMILY=7)])


class FakeGenl:
    """pyroute2's GenericNetlinkSocket as ItmRouteClient uses it."""

    bind_error: NetlinkError | None = None
    replies: ClassVar[list[Any]] = []
    error: NetlinkError | None = None
    sent: ClassVar[list[tuple[int, int]]] = []
    closed = 0

    def __init__(self, ext_ack: bool = False) -> None:
        assert ext_ack  # the kernel's messages are the errors' text
        self.prid = 0x1F

    def bind(self, name: str, cls: type) -> None:
        assert (name, cls) == ("itm_route", spec.itm_routemsg)
        if FakeGenl.bind_error is not None:
            raise FakeGenl.bind_error

    def nlm_request(self, msg: Any, msg_type: int, msg_flags: int) -> list[Any]:
        assert msg_type == self.prid
        FakeGenl.sent.append((msg["cmd"], msg_flags))
        if FakeGenl.error is not None:
            raise FakeGenl.error
        return list(FakeGenl.replies)

    def close(self) -> None:
        FakeGenl.closed += 1


@pytest.fixture
def genl(monkeypatch: pytest.MonkeyPatch) -> type[FakeGenl]:
    monkeypatch.setattr(route, "GenericNetlinkSocket", FakeGenl)
    FakeGenl.bind_error, FakeGenl.error, FakeGenl.replies = None, None, []
    FakeGenl.sent, FakeGenl.closed = [], 0
    return FakeGenl


def test_the_client_sends_each_command_with_its_flags(genl: type[FakeGenl]) -> None:
    from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST

    target = ipaddress.ip_address("10.77.200.1")
    with ItmRouteClient() as kp:
        kp.config(addr=A4, port=7177, key=bytes(16), mtu=1434, mark=1)
        kp.route_set(RouteSpec(NET4, target))
        kp.route_del("10.77.200.0/24")
        genl.replies = [_config_reply(), _route_reply()]
        state, routes = kp.get()
        kp.unconfig()
    assert state is not None and state.pid == 4242 and routes[0].prefix == NET4
    do = NLM_F_REQUEST | NLM_F_ACK
    assert genl.sent == [
        (spec.ITMR_CMD_CONFIG, do),
        (spec.ITMR_CMD_ROUTE_SET, do),
        (spec.ITMR_CMD_ROUTE_DEL, do),
        (spec.ITMR_CMD_GET, NLM_F_REQUEST | NLM_F_DUMP),
        (spec.ITMR_CMD_UNCONFIG, do),
    ]
    assert genl.closed == 1


def test_errors_carry_the_errno_and_the_kernels_message(genl: type[FakeGenl]) -> None:
    kp = ItmRouteClient()
    genl.error = NetlinkError(errno.EBUSY, "itm_route: pid 4242 owns this namespace's data path")
    with pytest.raises(ItmRouteError) as exc:
        kp.config(addr=A4, port=7177, key=bytes(16), mtu=1434, mark=1)
    assert exc.value.code == errno.EBUSY and "pid 4242" in str(exc.value)
    assert isinstance(exc.value, ItmControlError)  # itmtool's handlers catch it too
    genl.error = NetlinkError(errno.ENOSPC)  # no extack: the errno's text
    with pytest.raises(ItmRouteError, match="No space left on device"):
        kp.route_set(RouteSpec(NET4, A4))
    kp.close()


def test_a_missing_family_is_not_loaded(genl: type[FakeGenl]) -> None:
    genl.bind_error = NetlinkError(errno.ENOENT, "No such file or directory")
    with pytest.raises(ItmRouteNotLoaded, match="itmtool load itm_route") as exc:
        ItmRouteClient()
    assert exc.value.code == errno.ENOENT and genl.closed == 1
    genl.bind_error = NetlinkError(errno.EPERM, "")
    with pytest.raises(ItmRouteError) as err:
        ItmRouteClient()
    assert not isinstance(err.value, ItmRouteNotLoaded) and err.value.code == errno.EPERM


def test_without_the_module_the_real_socket_says_not_loaded() -> None:
    if family_id(spec.FAMILY_NAME) is not None:
        pytest.skip("the itm_route module is loaded here")
    with pytest.raises(ItmRouteNotLoaded):
        ItmRouteClient()
