"""A client of the itm_route generic netlink family (spec/itm_route.yaml) over pyroute2.

itm_route is the kernel data path of itmRoute: it tunnels the packets to the
overlay prefixes, relays other ITMs' DATA and delivers what is meant for this
ITM, with the same datagrams (itmroute/wire.py) and MAC (itmroute/auth.py) as
the daemon. The daemon steers it:

* :meth:`ItmRouteClient.config` configures the caller's network namespace
  (overlay address, UDP port, key, tunnel MTU, firewall mark); the socket
  that did it owns the namespace's data path until it unconfigures it or
  closes (the daemon exits, even by SIGKILL): the routes then go and packets
  go direct;
* :meth:`ItmRouteClient.route_set` / :meth:`ItmRouteClient.route_del` set the
  path of one overlay prefix (direct, or through a relay);
* :meth:`ItmRouteClient.get` reads the configuration, the counters and, per
  route, when packets last went to and came from the prefix, what the peer
  ITM's DATA said (its path tag, the relay, the receipt).

::

    with ItmRouteClient() as kp:
        kp.config(addr=ip_address("10.77.100.1"), port=7177, key=key, mtu=1434, mark=0x17E0)
        kp.route_set(RouteSpec(ip_network("10.77.200.0/24"), ip_address("10.77.200.1"),
                               via=ip_address("10.77.1.2"), tag=1))
        state, routes = kp.get()
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from libitm.control import itm_route_spec as spec
from libitm.control.client import ItmControlError
from libitm.control.closing import ClosingClient

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: DATA's receipt byte that acknowledges nothing
NO_RECEIPT = 255

NOT_LOADED = (
    "the itm_route module is not loaded (no 'itm_route' generic netlink family): "
    "load it with `itmtool load itm_route`"
)

#: the namespace counters, in the spec's order (``auth-failed`` -> ``auth_failed``)
STAT_NAMES: tuple[str, ...] = tuple(
    n.removeprefix("ITMR_A_STATS_").lower() for n in spec.ITMR_A_STATS_NAMES[1:] if "PAD" not in n
)


class ItmRouteError(ItmControlError):
    """itm_route refused a request: ``code`` is the errno, the message the kernel's
    extack text (for EBUSY it names the pid that owns the namespace's data path)."""


class ItmRouteNotLoaded(ItmRouteError):
    """The itm_route module is not loaded: its netlink family does not exist."""


def _family(addr: IPAddress | IPNetwork) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _pad16(packed: bytes) -> bytes:
    """An address as the family's 16-byte attribute (IPv4 in the first 4 bytes)."""
    return packed + bytes(16 - len(packed))


def _addr(raw: bytes | None, family: int) -> IPAddress | None:
    """A 16-byte address attribute of ``family``; None when absent or all zero."""
    if not raw or not any(raw):
        return None
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(bytes(raw[:4]))
    return ipaddress.IPv6Address(bytes(raw[:16]))


def _age(ms: int | None) -> float | None:
    """An age attribute (milliseconds; ITMR_NEVER or absent: never) in seconds."""
    if ms is None or ms == spec.ITMR_NEVER:
        return None
    return ms / 1000.0


def _receipt(value: int | None) -> int | None:
    return None if value is None or value == NO_RECEIPT else int(value)


@dataclass(frozen=True)
class RouteSpec:
    """The path of one overlay prefix: direct (``via`` None) or through the relay at
    ``via`` (its overlay address), towards ``target``, the overlay address of the
    ITM that serves the prefix. ``tag`` is the number of the path (DATA's tag),
    ``receipt`` the receipt byte the tunnelled DATA carries (None: none)."""

    prefix: IPNetwork
    target: IPAddress
    via: IPAddress | None = None
    tag: int = 0
    receipt: int | None = None

    def attrs(self) -> list[list[Any]]:
        """The attributes of the ``route`` nest of ITMR_CMD_ROUTE_SET."""
        attrs: list[list[Any]] = [
            ["ITMR_A_ROUTE_FAMILY", _family(self.prefix)],
            ["ITMR_A_ROUTE_PREFIX", _pad16(self.prefix.network_address.packed)],
            ["ITMR_A_ROUTE_PREFIX_LEN", self.prefix.prefixlen],
            ["ITMR_A_ROUTE_TARGET", _pad16(self.target.packed)],
            ["ITMR_A_ROUTE_TAG", self.tag],
            ["ITMR_A_ROUTE_RECEIPT", NO_RECEIPT if self.receipt is None else self.receipt],
        ]
        if self.via is not None:
            attrs.insert(3, ["ITMR_A_ROUTE_VIA", _pad16(self.via.packed)])
        return attrs


@dataclass(frozen=True)
class KernelState:
    """The namespace's configuration (without its key) and counters, as GET reports them."""

    port: int
    mark: int
    addr: IPAddress | None
    #: socket.AF_INET or AF_INET6: the overlay addresses' family
    family: int
    #: the tunnel MTU (the largest inner packet tunnelled)
    mtu: int
    #: the process that configured the namespace
    pid: int
    #: :data:`STAT_NAMES` -> count
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteState:
    """One route as GET reports it: its path, and what the kernel saw on it.

    Ages are in seconds before the GET (None: never): ``out_age`` since the last
    packet to the prefix, ``in_age`` since the last one from it, ``peer_age``
    since the last DATA delivered here whose inner source is in the prefix
    (sent on the peer's path ``peer_tag``, through the relay ``peer_via``, or
    direct when None), ``heard_age`` since the last receipt in such DATA
    (``heard_receipt``: the tag of our path it vouches for).
    """

    prefix: IPNetwork
    target: IPAddress | None
    via: IPAddress | None
    tag: int
    receipt: int | None
    out_age: float | None = None
    in_age: float | None = None
    peer_age: float | None = None
    peer_tag: int | None = None
    peer_via: IPAddress | None = None
    heard_age: float | None = None
    heard_receipt: int | None = None
    #: packets to the prefix sent through the tunnel / let go direct
    tunnelled: int = 0
    direct: int = 0
    #: tunnelled packets from the prefix delivered here
    peer_packets: int = 0

    def spec(self) -> RouteSpec | None:
        """The :class:`RouteSpec` the route was set with (None without a target)."""
        if self.target is None:
            return None
        return RouteSpec(self.prefix, self.target, self.via, self.tag, self.receipt)


def config_message(
    *, addr: IPAddress, port: int, key: bytes, mtu: int, mark: int, family: int | None = None
) -> spec.itm_routemsg:
    """The ITMR_CMD_CONFIG request (``family``: of the overlay, by default ``addr``'s)."""
    return _message(
        spec.ITMR_CMD_CONFIG,
        [
            ["ITMR_A_PORT", port],
            ["ITMR_A_MARK", mark],
            ["ITMR_A_KEY", bytes(key)],
            ["ITMR_A_ADDR", _pad16(addr.packed)],
            ["ITMR_A_FAMILY", _family(addr) if family is None else family],
            ["ITMR_A_MTU", mtu],
        ],
    )


def route_set_message(route: RouteSpec) -> spec.itm_routemsg:
    """The ITMR_CMD_ROUTE_SET request for one route."""
    return _message(spec.ITMR_CMD_ROUTE_SET, [["ITMR_A_ROUTE", {"attrs": route.attrs()}]])


def route_del_message(prefix: IPNetwork) -> spec.itm_routemsg:
    """The ITMR_CMD_ROUTE_DEL request for the route of ``prefix``."""
    nest = [
        ["ITMR_A_ROUTE_FAMILY", _family(prefix)],
        ["ITMR_A_ROUTE_PREFIX", _pad16(prefix.network_address.packed)],
        ["ITMR_A_ROUTE_PREFIX_LEN", prefix.prefixlen],
    ]
    return _message(spec.ITMR_CMD_ROUTE_DEL, [["ITMR_A_ROUTE", {"attrs": nest}]])


def _message(cmd: int, attrs: list[list[Any]]) -> spec.itm_routemsg:
    msg = spec.itm_routemsg()
    msg["cmd"] = cmd
    msg["version"] = spec.FAMILY_VERSION
    msg["attrs"] = attrs
    return msg


def parse_kernel_state(msg: Any) -> KernelState:
    """The :class:`KernelState` in GET's first reply."""
    nest = msg.get_attr("ITMR_A_STATS")
    stats = {
        name: int((nest.get_attr(f"ITMR_A_STATS_{name.upper()}") if nest is not None else 0) or 0)
        for name in STAT_NAMES
    }
    family = int(msg.get_attr("ITMR_A_FAMILY") or socket.AF_INET)
    return KernelState(
        port=int(msg.get_attr("ITMR_A_PORT") or 0),
        mark=int(msg.get_attr("ITMR_A_MARK") or 0),
        addr=_addr(msg.get_attr("ITMR_A_ADDR"), family),
        family=family,
        mtu=int(msg.get_attr("ITMR_A_MTU") or 0),
        pid=int(msg.get_attr("ITMR_A_PID") or 0),
        stats=stats,
    )


def parse_route(nest: Any, overlay_family: int) -> RouteState:
    """A :class:`RouteState` from a ``route`` nest of GET (``overlay_family``: the
    family of the via, target and peer-via addresses)."""

    def get(name: str) -> Any:
        return nest.get_attr(f"ITMR_A_ROUTE_{name}")

    family = int(get("FAMILY") or 0)
    raw = bytes(get("PREFIX") or b"")
    if family == socket.AF_INET:
        prefix: IPNetwork = ipaddress.IPv4Network((raw[:4], int(get("PREFIX_LEN") or 0)))
    elif family == socket.AF_INET6:
        prefix = ipaddress.IPv6Network((raw[:16], int(get("PREFIX_LEN") or 0)))
    else:
        raise ItmRouteError(errno.EPROTO, f"itm_route reported a route of family {family}")
    return RouteState(
        prefix=prefix,
        target=_addr(get("TARGET"), overlay_family),
        via=_addr(get("VIA"), overlay_family),
        tag=int(get("TAG") or 0),
        receipt=_receipt(get("RECEIPT")),
        out_age=_age(get("OUT_AGE")),
        in_age=_age(get("IN_AGE")),
        peer_age=_age(get("PEER_AGE")),
        peer_tag=get("PEER_TAG"),
        peer_via=_addr(get("PEER_VIA"), overlay_family),
        heard_age=_age(get("HEARD_AGE")),
        heard_receipt=_receipt(get("HEARD_RECEIPT")),
        tunnelled=int(get("TUNNELLED") or 0),
        direct=int(get("DIRECT") or 0),
        peer_packets=int(get("PEER_PACKETS") or 0),
    )


def parse_dump(msgs: list[Any]) -> tuple[KernelState | None, list[RouteState]]:
    """GET's replies: the configuration (None when the namespace is not configured)
    and the routes."""
    state: KernelState | None = None
    nests = []
    for m in msgs:
        nest = m.get_attr("ITMR_A_ROUTE")
        if nest is not None:
            nests.append(nest)
        elif m.get_attr("ITMR_A_PORT") is not None:
            state = parse_kernel_state(m)
    family = state.family if state is not None else socket.AF_INET
    return state, [parse_route(n, family) for n in nests]


def _error(err: NetlinkError) -> ItmRouteError:
    text = err.args[1] if len(err.args) > 1 and err.args[1] else os.strerror(err.code)
    return ItmRouteError(err.code, str(text))


class ItmRouteClient(ClosingClient):
    """A socket of the itm_route family in the caller's network namespace.

    The configuration made on it (:meth:`config`) and its routes belong to it:
    closing it (or the process ending, even by SIGKILL) removes them, and the
    packets then go direct. Admin commands need CAP_NET_ADMIN; :meth:`get`
    does not. Errors are :class:`ItmRouteError` with the kernel's message;
    :class:`ItmRouteNotLoaded` when the module is not loaded.
    """

    def __init__(self) -> None:
        """Open the socket and find the family (:class:`ItmRouteNotLoaded` when it
        does not exist)."""
        self._sock = GenericNetlinkSocket(ext_ack=True)
        try:
            self._sock.bind(spec.FAMILY_NAME, spec.itm_routemsg)
        except NetlinkError as err:
            self._sock.close()
            if err.code in (errno.ENOENT, errno.ENOTSUP):
                raise ItmRouteNotLoaded(err.code, NOT_LOADED) from None
            raise _error(err) from None

    def close(self) -> None:
        """Close the socket (the kernel drops the configuration and routes made on it)."""
        self._sock.close()

    def request(self, msg: spec.itm_routemsg, dump: bool = False) -> list[Any]:
        """Send one command; returns the replies (:class:`ItmRouteError` with the
        kernel's extack message on an error)."""
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        try:
            return list(self._sock.nlm_request(msg, msg_type=self._sock.prid, msg_flags=flags))
        except NetlinkError as err:
            raise _error(err) from None

    def config(
        self,
        *,
        addr: IPAddress,
        port: int,
        key: bytes,
        mtu: int,
        mark: int,
        family: int | None = None,
    ) -> None:
        """Configure this namespace's data path; this socket owns it from now on.

        ``addr``: this ITM's overlay address; ``port``: the overlay's UDP port;
        ``key``: the overlay key (16..32 bytes); ``mtu``: the tunnel MTU (the
        largest inner packet tunnelled); ``mark``: the firewall mark of the
        daemon's packets (never tunnelled, set on what itm_route sends);
        ``family``: of the overlay addresses (by default ``addr``'s). Again from
        the owner: replaces the configuration, keeps the routes. EBUSY when
        another socket owns the namespace (the message names its pid).
        """
        self.request(
            config_message(addr=addr, port=port, key=key, mtu=mtu, mark=mark, family=family)
        )

    def route_set(self, route: RouteSpec) -> None:
        """Add or replace the route of ``route.prefix`` (its runtime state is kept).

        ENOENT when the namespace is not configured, ENOSPC above
        ``ITMR_MAX_ROUTES`` routes, EBUSY when this socket is not the owner.
        """
        self.request(route_set_message(route))

    def route_del(self, prefix: IPNetwork | str) -> None:
        """Remove the route of ``prefix`` (ENOENT when there is none)."""
        net = ipaddress.ip_network(prefix) if isinstance(prefix, str) else prefix
        self.request(route_del_message(net))

    def get(self) -> tuple[KernelState | None, list[RouteState]]:
        """The namespace's configuration and counters (None when not configured)
        and its routes."""
        return parse_dump(self.request(_message(spec.ITMR_CMD_GET, []), dump=True))

    def unconfig(self) -> None:
        """Remove the configuration and every route (the owner only): packets go direct."""
        self.request(_message(spec.ITMR_CMD_UNCONFIG, []))


__all__ = [
    "NO_RECEIPT",
    "STAT_NAMES",
    "ItmRouteClient",
    "ItmRouteError",
    "ItmRouteNotLoaded",
    "KernelState",
    "RouteSpec",
    "RouteState",
    "parse_dump",
]
