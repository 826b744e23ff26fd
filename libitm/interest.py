"""An application's *interest*: which packets it wants to see."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .packet import Packet

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PortRange = tuple[int, int]

_PROTO_NAMES = {
    "tcp": 6,
    "udp": 17,
    "icmp": 1,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "icmp6": 58,
    "sctp": 132,
    "udplite": 136,
    "dccp": 33,
}
_PORT_PROTOS = frozenset({6, 17, 33, 132, 136})
_XT_PORT_PROTOS = frozenset({6, 17, 33, 132, 136})


@dataclass(frozen=True)
class Interest:
    """Which packets an application wants.

    Every field left at ``None`` matches anything.

    * ``family``: 4, 6, or None for both.
    * ``protocol``: a number or ``"tcp"``, ``"udp"``, ``"icmp"``, ... ``"icmp"``
      matches ICMPv6 in IPv6 packets.
    * ``src`` / ``dst``: an address with mask (``"10.0.0.0/8"``, an
      :mod:`ipaddress` network or a single address).
    * ``sport`` / ``dport``: a port (an int) or an inclusive ``(lo, hi)`` range
      (a tuple or list; a str or a set is refused). With no protocol they match
      TCP and UDP; a packet without ports never matches.

    Impossible combinations raise :class:`ValueError` when the interest is built,
    before anything is installed anywhere.
    """

    family: int | None = None
    protocol: int | str | None = None
    src: Network | str | None = None
    dst: Network | str | None = None
    sport: PortRange | int | None = None
    dport: PortRange | int | None = None

    def __post_init__(self) -> None:
        fam = self.family
        # an int (4.0 == 4 and True == 1: neither is a family)
        if fam is not None and (
            not isinstance(fam, int) or isinstance(fam, bool) or fam not in (4, 6)
        ):
            raise ValueError(f"interest family must be 4, 6 or None, not {fam!r}")
        proto = _protocol_number(self.protocol)
        src = _network("src", self.src)
        dst = _network("dst", self.dst)
        for name, net in (("src", src), ("dst", dst)):
            if net is None:
                continue
            if fam is None:
                fam = net.version
            elif net.version != fam:
                raise ValueError(
                    f"interest {name} {net} is an IPv{net.version} network but family is {fam}"
                )
        if proto == 58 and fam == 4:
            raise ValueError("ICMPv6 interest with family 4 can never match")
        if proto == 1 and fam == 6:
            proto = 58
        if proto == 58 and fam is None:
            fam = 6  # ICMPv6 exists only in IPv6
        sport = _ports("sport", self.sport)
        dport = _ports("dport", self.dport)
        if (sport or dport) and proto is not None and proto not in _PORT_PROTOS:
            raise ValueError(
                f"interest has ports but protocol {self.protocol!r} has no ports "
                "(use tcp, udp, sctp, dccp or udplite)"
            )
        object.__setattr__(self, "family", fam)
        object.__setattr__(self, "protocol", proto)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "sport", sport)
        object.__setattr__(self, "dport", dport)

    @property
    def proto_number(self) -> int | None:
        """The protocol number (None: any)."""
        p = self.protocol
        assert p is None or isinstance(p, int)
        return p

    def matches(self, pkt: Packet) -> bool:
        """True when ``pkt`` is of interest (raises :class:`~libitm.packet.PacketError`
        for bytes that are not an IP packet)."""
        v = pkt.version
        if self.family is not None and v != self.family:
            return False
        p = self.protocol
        if p is not None:
            want = 58 if (p == 1 and v == 6) else p
            if pkt.proto != want:
                return False
        if self.src is not None and pkt.src not in self.src:
            return False
        if self.dst is not None and pkt.dst not in self.dst:
            return False
        if self.sport is not None or self.dport is not None:
            if p is None and pkt.proto not in (6, 17):
                return False  # ports without a protocol: TCP or UDP (as the rules)
            sp = pkt.sport
            if sp is None:
                return False
            if self.sport is not None:
                lo, hi = self.sport  # type: ignore[misc]
                if not lo <= sp <= hi:
                    return False
            if self.dport is not None:
                dp = pkt.dport
                lo, hi = self.dport  # type: ignore[misc]
                if dp is None or not lo <= dp <= hi:
                    return False
        return True

    def whole_families(self) -> bool:
        """True when this interest takes every packet of its family (or both):
        nothing but ``family`` is set."""
        return (self.protocol, self.src, self.dst, self.sport, self.dport) == (None,) * 5

    def families(self) -> tuple[int, ...]:
        """The IP versions this interest can match."""
        return (self.family,) if self.family is not None else (4, 6)

    def xtables_matches(self, family: int) -> list[list[str]]:
        """iptables/ip6tables match arguments (one list per rule) for ``family``."""
        if family not in self.families():
            return []
        base: list[str] = []
        if self.src is not None:
            base += ["-s", str(self.src)]
        if self.dst is not None:
            base += ["-d", str(self.dst)]
        ports: list[str] = []
        if self.sport is not None:
            lo, hi = self.sport  # type: ignore[misc]
            ports += ["--sport", f"{lo}:{hi}"]
        if self.dport is not None:
            lo, hi = self.dport  # type: ignore[misc]
            ports += ["--dport", f"{lo}:{hi}"]
        p = self.proto_number
        if p is None:
            if not ports:
                return [base]
            return [["-p", name, *base, *ports] for name in ("tcp", "udp")]
        if p in (1, 58):
            return [["-p", "icmp" if family == 4 else "ipv6-icmp", *base]]
        if ports and p not in _XT_PORT_PROTOS:
            raise ValueError(f"protocol {p} has no ports")
        return [["-p", str(p), *base, *ports]]

    def __str__(self) -> str:
        parts = []
        for name in ("family", "protocol", "src", "dst"):
            val = getattr(self, name)
            if val is not None:
                parts.append(f"{name}={val}")
        for name in ("sport", "dport"):
            val = getattr(self, name)
            if val is not None:
                lo, hi = val
                parts.append(f"{name}={lo}" if lo == hi else f"{name}={lo}-{hi}")
        return "Interest(" + (", ".join(parts) or "all") + ")"


def _protocol_number(protocol: int | str | None) -> int | None:
    if protocol is None:
        return None
    if isinstance(protocol, bool):
        raise ValueError("interest protocol must be a number or a name, not a bool")
    if isinstance(protocol, str):
        key = protocol.strip().lower()
        if key in ("", "any", "all"):
            return None
        if key.isascii() and key.isdigit():  # ("²".isdigit() too, int() refuses it)
            protocol = int(key)
        elif key in _PROTO_NAMES:
            return _PROTO_NAMES[key]
        else:
            raise ValueError(
                f"interest protocol {protocol!r} is an unknown protocol; use a number or one of "
                + ", ".join(sorted(_PROTO_NAMES))
            )
    if not isinstance(protocol, int):
        raise ValueError(f"interest protocol must be a number or a name, not {protocol!r}")
    if not 0 <= protocol <= 255:
        raise ValueError(f"interest protocol must be in 0..255, not {protocol!r}")
    return protocol or None


def _network(name: str, value: Network | str | None) -> Network | None:
    if value is None:
        return None
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ipaddress.ip_network(value)
    if not isinstance(value, str):
        raise ValueError(f"interest {name} must be an address/mask string or network")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as e:
        raise ValueError(f"interest {name} {value!r} is not an address with mask: {e}") from None


def _ports(name: str, value: PortRange | int | None) -> PortRange | None:
    if value is None:
        return None
    what = f"interest {name} must be a port (an int) or a (lo, hi) range (a tuple or list)"
    if isinstance(value, bool):
        raise ValueError(f"{what}, not {value!r}")
    if isinstance(value, int):
        lo = hi = value
    elif isinstance(value, tuple | list) and len(value) == 2:
        # (a str, a set: "80" is not a range, nor is the unordered {1, 8})
        lo, hi = value
    else:
        raise ValueError(f"{what}, not {value!r}")
    for p in (lo, hi):
        if not isinstance(p, int) or isinstance(p, bool):
            raise ValueError(f"interest {name} port {p!r} is not an int")
        if not 0 <= p <= 65535:
            raise ValueError(f"interest {name} port {p!r} is out of range 0..65535")
    if lo > hi:
        raise ValueError(f"interest {name} range {lo}-{hi} is empty (lo > hi)")
    return (lo, hi)
