"""The itmRoute header: tunnelled data, probes and their acknowledgements.

Every itmRoute datagram (UDP, port 7177 by default) is::

    0      2      3      4          8                    16         end-16     end
    +------+------+------+----------+--------------------+-- ... --+----------+
    | 'IR' | ver  | type | sender   | counter (u64)      | body    | MAC (16) |
    +------+------+------+----------+--------------------+-- ... --+----------+

    type: 1 DATA, 2 PROBE, 3 ACK (| 0x80: relayed, | 0x40: IPv6 addresses); version 2

With the 0x40 bit the ITM addresses (``sender``, and a probe's ``origin`` and
``target``) are IPv6, 16 bytes each, instead of IPv4 (4 bytes): an overlay
whose ITMs talk IPv6 to each other.

The MAC and the counter are :mod:`itmroute.auth`'s: a keyed BLAKE2s over
everything before it, and a per-sender counter against replays; ``sender``
is the overlay address of the daemon that sealed the datagram. DATA's body
is the whole inner IPv4 or IPv6 packet, untouched (its DSCP and ECN bits included).
PROBE and ACK carry ``seq`` (u32), ``origin`` (the probing ITM's overlay
address) and ``target`` (the destination ITM's overlay address). A neighbour
forwards a PROBE that is not for itself to the target once (and marks it
relayed); the target answers every PROBE with an ACK to whoever sent it; a
neighbour forwards an ACK that is not for itself to its origin once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = 0x4952  # "IR"
VERSION: Final = 2
DATA: Final = 1
PROBE: Final = 2
ACK: Final = 3
RELAYED: Final = 0x80
V6: Final = 0x40

_HEADERS = {4: struct.Struct(">HBB4sQ"), 16: struct.Struct(">HBB16sQ")}
_PROBE_BODIES = {4: struct.Struct(">I4s4s"), 16: struct.Struct(">I16s16s")}
_COMMON = struct.Struct(">HBB")

#: bytes of the header (magic, version, type, sender, counter) with IPv4 ITM addresses
HEADER_LEN: Final = _HEADERS[4].size
#: bytes of the MAC at the end
TAG_LEN: Final = 16
#: bytes a tunnelled packet grows by: outer IPv4 + UDP + header + MAC
TUNNEL_OVERHEAD: Final = 20 + 8 + HEADER_LEN + TAG_LEN
#: bytes of a PROBE or ACK datagram's payload
PROBE_LEN: Final = HEADER_LEN + _PROBE_BODIES[4].size + TAG_LEN


def header_len(addr_len: int) -> int:
    """Bytes of the header with ITM addresses of ``addr_len`` bytes (4 or 16)."""
    return _HEADERS[addr_len].size


def tunnel_overhead(addr_len: int) -> int:
    """Bytes a tunnelled packet grows by, outer IP header included, for ITM
    addresses of ``addr_len`` bytes (the outer header is IPv6 with them)."""
    return (20 if addr_len == 4 else 40) + 8 + header_len(addr_len) + TAG_LEN


def probe_len(addr_len: int) -> int:
    """Bytes of a PROBE or ACK datagram's payload for ITM addresses of ``addr_len`` bytes."""
    return header_len(addr_len) + _PROBE_BODIES[addr_len].size + TAG_LEN


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

    @property
    def type_byte(self) -> int:
        """The header's type: the kind, with :data:`RELAYED` when relayed (the
        sealer adds :data:`V6`)."""
        return self.kind | (RELAYED if self.relayed else 0)

    def body(self) -> bytes:
        """The body (between the header and the MAC)."""
        return _PROBE_BODIES[len(self.origin)].pack(self.seq & 0xFFFFFFFF, self.origin, self.target)


def header(type_byte: int, sender: bytes, counter: int) -> bytes:
    """The header of a datagram (:data:`V6` set for a 16-byte ``sender``)."""
    v6 = V6 if len(sender) == 16 else 0
    return _HEADERS[len(sender)].pack(MAGIC, VERSION, type_byte | v6, sender, counter)


def parse_header(data: bytes | bytearray | memoryview) -> tuple[int, bool, bytes, int]:
    """``(type, relayed, sender, counter)``; raises :class:`WireError` if it is not ours."""
    if len(data) < _COMMON.size:
        raise WireError("datagram shorter than the itmRoute header")
    magic, ver, kind = _COMMON.unpack_from(data, 0)
    if magic != MAGIC:
        raise WireError("not an itmRoute datagram (bad magic)")
    if ver != VERSION:
        raise WireError(f"itmRoute version {ver} not supported")
    base = kind & ~(RELAYED | V6)
    if base not in (DATA, PROBE, ACK):
        raise WireError(f"unknown itmRoute message type {base}")
    hdr = _HEADERS[16 if kind & V6 else 4]
    if len(data) < hdr.size:
        raise WireError("datagram shorter than the itmRoute header")
    _, _, _, sender, counter = hdr.unpack_from(data, 0)
    return base, bool(kind & RELAYED), sender, counter


def decode_probe(
    kind: int, relayed: bool, body: bytes | bytearray | memoryview, addr_len: int = 4
) -> Probe:
    """The PROBE or ACK of an opened datagram's type and body (ITM addresses of
    ``addr_len`` bytes: the sender's)."""
    if kind == DATA:
        raise WireError("a DATA datagram is not a probe")
    fmt = _PROBE_BODIES[addr_len]
    if len(body) != fmt.size:
        raise WireError("probe datagram of the wrong length")
    seq, origin, target = fmt.unpack_from(body, 0)
    return Probe(kind, seq, origin, target, relayed)


def inner_packet(body: bytes | bytearray | memoryview) -> memoryview:
    """The inner IPv4 or IPv6 packet of a DATA datagram's body (checked for a
    plausible header)."""
    inner = memoryview(body)
    version = inner[0] >> 4 if len(inner) else 0
    if not ((version == 4 and len(inner) >= 20) or (version == 6 and len(inner) >= 40)):
        raise WireError("the tunnelled packet is not IPv4 or IPv6")
    return inner


def is_overlay_datagram(proto: int, sport: int | None, dport: int | None, port: int) -> bool:
    """Whether a packet is itmRoute's own (UDP from or to the overlay ``port``): the
    daemons' probes, acknowledgements and tunnel datagrams are never a flow's traffic."""
    return proto == 17 and port in (sport, dport)
