"""A small client of the itm generic netlink family (spec/itm.yaml) over pyroute2."""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from libitm.control import itm_spec as spec
from libitm.control.closing import ClosingClient
from libitm.hooks import Hook

STAT_NAMES = (
    "seen",
    "matched",
    "classified",
    "accept",
    "drop",
    "stolen",
    "queue",
    "bytes",
    "time_ns",
)


FAMILIES = ("ipv4", "ipv6")


def hooks_of_mask(mask: int) -> set[tuple[str, Hook]]:
    """The ``(family, hook)`` pairs of itm_mod's ``netns-hooks`` bit mask (bit
    family * 5 + hook, spec/itm.yaml)."""
    n = len(Hook)  # ITM_NUM_HOOKS (the aliases are not counted)
    return {
        (fam, Hook(h))
        for f, fam in enumerate(FAMILIES)
        for h in range(n)
        if mask >> (f * n + h) & 1
    }


class ItmControlError(Exception):
    """A request was refused; `code` is the errno, the message is the kernel's extack."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ItmNotLoaded(ItmControlError):
    """itm_mod is not loaded: its netlink family does not exist."""


@dataclass
class App:
    """One registered application as itm_mod reports it."""

    label: str
    type: str
    hook: str
    priority: int
    enabled: bool
    pid: int
    owner: str
    queue_num: int
    order: int
    interest: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    #: queues from ``queue_num`` on that its flows are spread over (its workers)
    queue_count: int = 1

    def to_json(self) -> dict[str, Any]:
        """A plain dict for `--json` output (the documented shape)."""
        return {
            "label": self.label,
            "type": self.type,
            "hook": self.hook,
            "priority": self.priority,
            "enabled": self.enabled,
            "pid": self.pid,
            "owner": self.owner,
            "queue_num": self.queue_num,
            "queue_count": self.queue_count,
            "order": self.order,
            "interest": self.interest,
            "stats": self.stats,
        }


def _addr(raw: bytes, family: int) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def _prefixlen(raw: bytes) -> int:
    return sum(bin(b).count("1") for b in raw)


def _interest(nest: Any) -> dict[str, Any]:
    fam = nest.get_attr("ITM_A_INTEREST_FAMILY") or 0
    out: dict[str, Any] = {
        "family": {0: "any", socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}.get(fam, str(fam)),
        "protocol": nest.get_attr("ITM_A_INTEREST_PROTOCOL") or 0,
        "src": None,
        "dst": None,
        "sport": None,
        "dport": None,
    }
    if fam in (socket.AF_INET, socket.AF_INET6):
        for key, a, m in (("src", "SADDR", "SMASK"), ("dst", "DADDR", "DMASK")):
            addr = nest.get_attr(f"ITM_A_INTEREST_{a}")
            mask = nest.get_attr(f"ITM_A_INTEREST_{m}")
            plen = _prefixlen(mask)
            if plen:
                out[key] = f"{_addr(addr, fam)}/{plen}"
    for key in ("sport", "dport"):
        lo = nest.get_attr(f"ITM_A_INTEREST_{key.upper()}_MIN") or 0
        hi = nest.get_attr(f"ITM_A_INTEREST_{key.upper()}_MAX") or 0
        if hi:
            out[key] = [lo, hi]
    return out


def _app(msg: Any) -> App:
    stats_nest = msg.get_attr("ITM_A_STATS")
    stats = {
        name: int(stats_nest.get_attr(f"ITM_A_STATS_{name.upper()}") or 0) for name in STAT_NAMES
    }
    return App(
        label=msg.get_attr("ITM_A_LABEL"),
        type=spec.ITM_TYPE_NAMES[msg.get_attr("ITM_A_TYPE")],
        hook=spec.ITM_HOOK_NAMES[msg.get_attr("ITM_A_HOOK")],
        priority=msg.get_attr("ITM_A_PRIORITY"),
        enabled=bool(msg.get_attr("ITM_A_ENABLED")),
        pid=msg.get_attr("ITM_A_PID"),
        owner=msg.get_attr("ITM_A_OWNER") or "",
        queue_num=msg.get_attr("ITM_A_QUEUE_NUM"),
        order=msg.get_attr("ITM_A_ORDER"),
        interest=_interest(msg.get_attr("ITM_A_INTEREST")),
        stats=stats,
        queue_count=msg.get_attr("ITM_A_QUEUE_COUNT") or 1,
    )


def run_order_key(app: App) -> tuple[int, int, int]:
    """Sort key giving the order in which itm_mod runs applications."""
    return (spec.ITM_HOOK_NAMES.index(app.hook), app.priority, app.order)


class ItmControl(ClosingClient):
    """A connection to itm_mod's netlink family in the caller's network namespace."""

    def __init__(self) -> None:
        self._sock = GenericNetlinkSocket(ext_ack=True)
        try:
            self._sock.bind(spec.FAMILY_NAME, spec.itmmsg)
        except NetlinkError as err:
            self._sock.close()
            if err.code in (errno.ENOENT, errno.ENOTSUP):
                raise ItmNotLoaded(
                    err.code,
                    "itm_mod is not loaded (no 'itm' generic netlink family): "
                    "load it with `itmtool load itm_mod`, or use `itmtool vm` on a "
                    "machine whose kernel cannot load modules",
                ) from None
            raise ItmControlError(err.code, str(err)) from None

    def close(self) -> None:
        """Close the netlink socket."""
        self._sock.close()

    def request(self, cmd: int, attrs: list[tuple[str, Any]], dump: bool = False) -> list[Any]:
        """Send one command with raw attributes; returns the reply messages.

        Raises `ItmControlError` with the kernel's extack message on an error.
        """
        msg = spec.itmmsg()
        msg["cmd"] = cmd
        msg["version"] = spec.FAMILY_VERSION
        msg["attrs"] = [list(a) for a in attrs]
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        try:
            return list(self._sock.nlm_request(msg, msg_type=self._sock.prid, msg_flags=flags))
        except NetlinkError as err:
            text = err.args[1] if len(err.args) > 1 else str(err)
            raise ItmControlError(err.code, str(text)) from None

    def apps(self) -> list[App]:
        """Every registered application, in run order per hook."""
        apps = [_app(m) for m in self.request(spec.ITM_CMD_APP_GET, [], dump=True)]
        return sorted(apps, key=run_order_key)

    def app(self, label: str) -> App:
        """One application by label (ENOENT when there is none)."""
        (reply,) = self.request(spec.ITM_CMD_APP_GET, [("ITM_A_LABEL", label)])
        return _app(reply)

    def set_app(
        self, label: str, *, enabled: bool | None = None, priority: int | None = None
    ) -> None:
        """Enable/disable an application or change its priority (needs CAP_NET_ADMIN)."""
        attrs: list[tuple[str, Any]] = [("ITM_A_LABEL", label)]
        if enabled is not None:
            attrs.append(("ITM_A_ENABLED", int(enabled)))
        if priority is not None:
            attrs.append(("ITM_A_PRIORITY", priority))
        self.request(spec.ITM_CMD_APP_SET, attrs)

    def netns_active(self) -> bool:
        """Whether itm_mod's hooks run in this network namespace."""
        (reply,) = self.request(spec.ITM_CMD_NETNS_GET, [])
        return bool(reply.get_attr("ITM_A_NETNS_ACTIVE"))

    def netns_hooks(self) -> set[tuple[str, Hook]]:
        """The netfilter hooks itm_mod has registered in this network namespace, as
        ``(family, hook)`` pairs (family ``"ipv4"`` or ``"ipv6"``): only where an
        active namespace has an application that wants the packets. Empty from an
        itm_mod without the attribute (before 2026-12-07)."""
        (reply,) = self.request(spec.ITM_CMD_NETNS_GET, [])
        return hooks_of_mask(reply.get_attr("ITM_A_NETNS_HOOKS") or 0)

    def set_netns_active(self, active: bool) -> None:
        """Attach itm_mod's hooks to this network namespace, or detach them."""
        self.request(spec.ITM_CMD_NETNS_SET, [("ITM_A_NETNS_ACTIVE", int(active))])
