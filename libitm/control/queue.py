"""A client of the itm_queue generic netlink family (spec/itm_queue.yaml) over pyroute2.

itm_queue registers user-space applications with itm_mod: a registration
(label, hook, priority, interest) made on a socket is answered with the
nfqueue number itm_mod will queue the application's packets to, and lasts
until it is unregistered or the socket is closed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from libitm.control import itm_queue_spec as spec
from libitm.control.client import ItmControlError, ItmNotLoaded
from libitm.control.closing import ClosingClient
from libitm.hooks import Hook
from libitm.interest import Interest

NOT_LOADED = (
    "itm_queue is not loaded (load it with itmtool load itm_queue, or use --backend nfqueue)"
)

_PORT_PROTOS = frozenset({6, 17, 33, 132, 136})


@dataclass(frozen=True)
class KernelInterest:
    """An :class:`~libitm.interest.Interest` in itm_mod's terms.

    ``exact`` is False when the kernel interest is wider than the libitm one
    (ports without a protocol also match SCTP/DCCP/UDP-Lite; ``"icmp"`` with
    no family matches ICMP and ICMPv6, which one kernel interest cannot say):
    the application must then check the interest again in user space.
    """

    attrs: tuple[tuple[str, Any], ...]
    exact: bool


def _net_bytes(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[bytes, bytes]:
    addr = net.network_address.packed
    mask = net.netmask.packed
    pad = b"\0" * (16 - len(addr))
    return addr + pad, mask + pad


def kernel_interest(interest: Interest) -> KernelInterest:
    """Translate a libitm interest into the attributes of an itm_queue registration."""
    fam = interest.family
    proto = interest.proto_number
    exact = True
    if proto == 1 and fam is None:
        proto = None  # ICMP or ICMPv6: take everything, filter in user space
        exact = False
    if proto is None and (interest.sport is not None or interest.dport is not None):
        exact = False  # libitm: TCP or UDP; kernel: any protocol with ports
    attrs: list[tuple[str, Any]] = [
        (
            "ITMQ_A_INTEREST_FAMILY",
            {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}[fam],
        ),
        ("ITMQ_A_INTEREST_PROTOCOL", proto or 0),
    ]
    for key, net in (("S", interest.src), ("D", interest.dst)):
        if net is not None:
            assert isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network))
            addr, mask = _net_bytes(net)
            attrs.append((f"ITMQ_A_INTEREST_{key}ADDR", addr))
            attrs.append((f"ITMQ_A_INTEREST_{key}MASK", mask))
    for key, rng in (("SPORT", interest.sport), ("DPORT", interest.dport)):
        if rng is not None:
            lo, hi = rng  # type: ignore[misc]
            attrs.append((f"ITMQ_A_INTEREST_{key}_MIN", lo))
            attrs.append((f"ITMQ_A_INTEREST_{key}_MAX", hi))
    return KernelInterest(tuple(attrs), exact)


def register_message(
    label: str,
    hook: Hook | int,
    priority: int,
    interest: Interest | KernelInterest,
    queue_count: int = 1,
    observer: bool = False,
) -> spec.itm_queuemsg:
    """The ITMQ_CMD_REGISTER request for one application (``queue_count`` > 1: that
    many consecutive queues, one per worker, over which itm_mod spreads the flows;
    ``observer``: copies through nfnetlink_log, group ``queue_num``, instead)."""
    kin = interest if isinstance(interest, KernelInterest) else kernel_interest(interest)
    msg = spec.itm_queuemsg()
    msg["cmd"] = spec.ITMQ_CMD_REGISTER
    msg["version"] = spec.FAMILY_VERSION
    msg["attrs"] = [
        ["ITMQ_A_LABEL", label],
        ["ITMQ_A_HOOK", int(hook)],
        ["ITMQ_A_PRIORITY", int(priority)],
        ["ITMQ_A_INTEREST", {"attrs": [list(a) for a in kin.attrs]}],
    ]
    if queue_count != 1:
        msg["attrs"].append(["ITMQ_A_QUEUE_COUNT", int(queue_count)])
    if observer:
        msg["attrs"].append(["ITMQ_A_OBSERVER", 1])
    return msg


def unregister_message(label: str) -> spec.itm_queuemsg:
    """The ITMQ_CMD_UNREGISTER request for one application."""
    msg = spec.itm_queuemsg()
    msg["cmd"] = spec.ITMQ_CMD_UNREGISTER
    msg["version"] = spec.FAMILY_VERSION
    msg["attrs"] = [["ITMQ_A_LABEL", label]]
    return msg


@dataclass(frozen=True)
class Registration:
    """What itm_queue answered to a registration."""

    label: str
    hook: Hook
    priority: int
    queue_num: int
    pid: int
    #: queues from ``queue_num`` on (one per worker)
    queue_count: int = 1
    #: copies through nfnetlink_log, group ``queue_num``, instead of a queue
    observer: bool = False

    @property
    def queues(self) -> range:
        """Every queue number of the registration."""
        return range(self.queue_num, self.queue_num + self.queue_count)


def parse_register_reply(msg: Any) -> Registration:
    """The :class:`Registration` in an ITMQ_CMD_REGISTER reply."""
    queue = msg.get_attr("ITMQ_A_QUEUE_NUM")
    if queue is None:
        raise ItmControlError(errno.EPROTO, "itm_queue's reply has no queue number")
    return Registration(
        label=msg.get_attr("ITMQ_A_LABEL") or "",
        hook=Hook(msg.get_attr("ITMQ_A_HOOK") or 0),
        priority=msg.get_attr("ITMQ_A_PRIORITY") or 0,
        queue_num=int(queue),
        pid=msg.get_attr("ITMQ_A_PID") or 0,
        queue_count=msg.get_attr("ITMQ_A_QUEUE_COUNT") or 1,
        observer=bool(msg.get_attr("ITMQ_A_OBSERVER")),
    )


class ItmQueueClient(ClosingClient):
    """A socket of the itm_queue family; the registrations made on it belong to it.

    Closing it (or the process ending, even by SIGKILL) removes them.
    """

    def __init__(self) -> None:
        self._forgotten = False
        self._sock = GenericNetlinkSocket(ext_ack=True)
        try:
            self._sock.bind(spec.FAMILY_NAME, spec.itm_queuemsg)
        except NetlinkError as err:
            self._sock.close()
            if err.code in (errno.ENOENT, errno.ENOTSUP):
                raise ItmNotLoaded(err.code, NOT_LOADED) from None
            raise ItmControlError(err.code, str(err)) from None

    def close(self) -> None:
        """Close the socket (the kernel drops every registration made on it)."""
        if not self._forgotten:
            self._sock.close()

    def forget_in_child(self) -> None:
        """In a forked child: let go of this process's copy of the socket, so that the
        registrations go when the parent closes its own, and leave the parent's alone.

        pyroute2's :meth:`close` cannot do this after a fork: it removes the socket
        from its event loop's epoll set, which the child shares with the parent, and
        the parent then waits for its replies forever. The descriptor is pointed at
        /dev/null instead (its number stays taken, so no new socket reuses it), and
        this object does nothing more.
        """
        if self._forgotten:
            return
        self._forgotten = True
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.dup2(null, self._sock.fileno())
        finally:
            os.close(null)

    def request(self, msg: spec.itm_queuemsg) -> list[Any]:
        """Send one command; returns the replies. Errors carry the kernel's extack text."""
        try:
            return list(
                self._sock.nlm_request(
                    msg, msg_type=self._sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK
                )
            )
        except NetlinkError as err:
            text = err.args[1] if len(err.args) > 1 else str(err)
            raise ItmControlError(err.code, str(text)) from None

    def register(
        self,
        label: str,
        hook: Hook | int,
        priority: int,
        interest: Interest | KernelInterest,
        queue_count: int = 1,
        observer: bool = False,
    ) -> Registration:
        """Register an application; returns its queue numbers, or an observer's log
        group (needs CAP_NET_ADMIN)."""
        msg = register_message(label, hook, priority, interest, queue_count, observer)
        replies = [r for r in self.request(msg) if r.get_attr("ITMQ_A_QUEUE_NUM") is not None]
        if not replies:
            raise ItmControlError(errno.EPROTO, "itm_queue did not answer the registration")
        return parse_register_reply(replies[0])

    def unregister(self, label: str) -> None:
        """Remove an application registered on this socket."""
        self.request(unregister_message(label))
