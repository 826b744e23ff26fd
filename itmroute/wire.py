"""The itmRoute header: tunnelled data, probes and their acknowledgements.

Every itmRoute datagram (UDP, port 7177 by default) starts with::

    0      2      3      4
    +------+------+------+
    | 'IR' | ver  | type |          type: 1 DATA, 2 PROBE, 3 ACK (| 0x80: relayed)
    +------+------+------+

DATA is followed by the whole inner IPv4 packet, untouched (its DSCP and ECN
bits included). PROBE and ACK carry ``seq`` (u32), ``origin`` (the probing
ITM's overlay address) and ``target`` (the destination ITM's overlay address):
16 bytes in all. A neighbour forwards a PROBE that is not for itself to the
target once (and marks it relayed); the target answers every PROBE with an ACK
to whoever sent it; a neighbour forwards an ACK that is not for itself to its
origin once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = 0x4952  # "IR"
VERSION: Final = 1
DATA: Final = 1
PROBE: Final = 2
ACK: Final = 3
RELAYED: Final = 0x80

_COMMON = struct.Struct(">HBB")
_PROBE = struct.Struct(">HBBI4s4s")

#: bytes of the DATA header
DATA_HEADER_LEN: Final = _COMMON.size
#: bytes a tunnelled packet grows by: outer IPv4 + UDP + the DATA header
TUNNEL_OVERHEAD: Final = 20 + 8 + DATA_HEADER_LEN
#: bytes of a PROBE or ACK datagram's payload
PROBE_LEN: Final = _PROBE.size

DATA_HEADER: Final = _COMMON.pack(MAGIC, VERSION, DATA)


class WireError(ValueError):
    """A datagram that is not a valid itmRoute message."""


@dataclass(frozen=True)
class Probe:
    """A PROBE or ACK: ``kind`` is :data:`PROBE` or :data:`ACK`."""

    kind: int
    seq: int
    origin: bytes
    target: bytes
    relayed: bool = False

    def encode(self) -> bytes:
        """The datagram payload."""
        kind = self.kind | (RELAYED if self.relayed else 0)
        return _PROBE.pack(MAGIC, VERSION, kind, self.seq & 0xFFFFFFFF, self.origin, self.target)


def encapsulate(inner: bytes | bytearray | memoryview) -> bytes:
    """A DATA datagram carrying ``inner``."""
    return DATA_HEADER + bytes(inner)


def message_type(data: bytes | bytearray | memoryview) -> tuple[int, bool]:
    """``(type, relayed)`` of a datagram; raises :class:`WireError` if it is not ours."""
    if len(data) < DATA_HEADER_LEN:
        raise WireError("datagram shorter than the itmRoute header")
    magic, ver, kind = _COMMON.unpack_from(data, 0)
    if magic != MAGIC:
        raise WireError("not an itmRoute datagram (bad magic)")
    if ver != VERSION:
        raise WireError(f"itmRoute version {ver} not supported")
    base = kind & ~RELAYED
    if base not in (DATA, PROBE, ACK):
        raise WireError(f"unknown itmRoute message type {base}")
    return base, bool(kind & RELAYED)


def decode_probe(data: bytes | bytearray | memoryview) -> Probe:
    """Parse a PROBE or ACK datagram."""
    kind, relayed = message_type(data)
    if kind == DATA:
        raise WireError("a DATA datagram is not a probe")
    if len(data) < PROBE_LEN:
        raise WireError("probe datagram too short")
    _, _, _, seq, origin, target = _PROBE.unpack_from(data, 0)
    return Probe(kind, seq, origin, target, relayed)


def inner_packet(data: bytes | bytearray | memoryview) -> memoryview:
    """The inner IPv4 packet of a DATA datagram (checked for a plausible header)."""
    kind, _ = message_type(data)
    if kind != DATA:
        raise WireError("not a DATA datagram")
    inner = memoryview(data)[DATA_HEADER_LEN:]
    if len(inner) < 20 or inner[0] >> 4 != 4:
        raise WireError("the tunnelled packet is not IPv4")
    return inner


def is_overlay_datagram(proto: int, sport: int | None, dport: int | None, port: int) -> bool:
    """Whether a packet is itmRoute's own (UDP from or to the overlay ``port``): the
    daemons' probes, acknowledgements and tunnel datagrams are never a flow's traffic."""
    return proto == 17 and port in (sport, dport)
