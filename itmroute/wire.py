"""The itmRoute header: tunnelled data, probes and their acknowledgements.

Every itmRoute datagram (UDP, port 7177 by default) is::

    0      2      3      4          8                    16         end-16     end
    +------+------+------+----------+--------------------+-- ... --+----------+
    | 'IR' | ver  | type | sender   | counter (u64)      | body    | MAC (16) |
    +------+------+------+----------+--------------------+-- ... --+----------+

    type: 1 DATA, 2 PROBE, 3 ACK, 4 NOTICE (| 0x80: relayed, | 0x40: IPv6 addresses);
    version 4 (3 had relays re-seal DATA; 2 had a keyed BLAKE2s MAC)

With the 0x40 bit the ITM addresses (``sender``, and a probe's ``origin`` and
``target``) are IPv6, 16 bytes each, instead of IPv4 (4 bytes): an overlay
whose ITMs talk IPv6 to each other.

The MAC and the counter are :mod:`itmroute.auth`'s: Poly1305 over everything
before it (a ChaCha20-Poly1305 tag under the sender's key, the counter its
nonce), and a per-sender counter against replays; ``sender``
is the overlay address of the daemon that sealed the datagram. DATA's body
is ``target`` (the overlay address of the ITM that delivers the packet),
``tag`` (u8: the number of the sender's path the datagram takes), ``receipt``
(u8: the tag of the last DATA the sender received from the target's traffic
within its detection interval, 255 none), then the whole inner IPv4 or IPv6
packet, untouched (its DSCP and ECN bits included). The sender sets the
relayed bit on DATA it sends through a relay; the relay checks the MAC and the
counter and sends the datagram on to its target once, as it came (the
sender's MAC: the relay writes nothing the MAC covers, and checks that the
inner packet has a hop left); the target checks the same MAC, takes the
relay's hop off the inner TTL or hop limit of relayed DATA and delivers the
inner packet. The receipt is the target's heartbeat for the path in use
(BFD's demand mode: the traffic is the probe).

NOTICE carries ``target`` (the ITM whose data it is about), ``origin`` (the
ITM that received it), ``tag`` (u8, the target's path) and ``silence`` (u16,
milliseconds): 0 is a receipt sent on its own (no DATA went back to carry
one), above 0 says that data sent on that path stopped arriving that long
ago. A neighbour forwards a NOTICE not for itself to its target once.
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
VERSION: Final = 4
DATA: Final = 1
PROBE: Final = 2
ACK: Final = 3
NOTICE: Final = 4
RELAYED: Final = 0x80
V6: Final = 0x40

_HEADERS = {4: struct.Struct(">HBB4sQ"), 16: struct.Struct(">HBB16sQ")}
_PROBE_BODIES = {4: struct.Struct(">I4s4s"), 16: struct.Struct(">I16s16s")}
_DATA_HEADS = {4: struct.Struct(">4sBB"), 16: struct.Struct(">16sBB")}
_NOTICES = {4: struct.Struct(">4s4sBH"), 16: struct.Struct(">16s16sBH")}
#: the receipt byte of a DATA datagram that acknowledges nothing
NO_RECEIPT: Final = 0xFF
_COMMON = struct.Struct(">HBB")

#: bytes of the header (magic, version, type, sender, counter) with IPv4 ITM addresses
HEADER_LEN: Final = _HEADERS[4].size
#: bytes of the MAC at the end
TAG_LEN: Final = 16
#: bytes a tunnelled packet grows by: outer IPv4 + UDP + header + target, tag, receipt + MAC
TUNNEL_OVERHEAD: Final = 20 + 8 + HEADER_LEN + _DATA_HEADS[4].size + TAG_LEN
#: bytes of a PROBE or ACK datagram's payload
PROBE_LEN: Final = HEADER_LEN + _PROBE_BODIES[4].size + TAG_LEN


def header_len(addr_len: int) -> int:
    """Bytes of the header with ITM addresses of ``addr_len`` bytes (4 or 16)."""
    return _HEADERS[addr_len].size


def tunnel_overhead(addr_len: int) -> int:
    """Bytes a tunnelled packet grows by, outer IP header included, for ITM
    addresses of ``addr_len`` bytes (the outer header is IPv6 with them)."""
    outer = (20 if addr_len == 4 else 40) + 8
    return outer + header_len(addr_len) + data_head_len(addr_len) + TAG_LEN


def data_head_len(addr_len: int) -> int:
    """Bytes of a DATA body before the inner packet (target, tag, receipt)."""
    return _DATA_HEADS[addr_len].size


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
    if base not in (DATA, PROBE, ACK, NOTICE):
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
    if kind not in (PROBE, ACK):
        raise WireError("not a probe nor an acknowledgement")
    fmt = _PROBE_BODIES[addr_len]
    if len(body) != fmt.size:
        raise WireError("probe datagram of the wrong length")
    seq, origin, target = fmt.unpack_from(body, 0)
    return Probe(kind, seq, origin, target, relayed)


@dataclass(frozen=True)
class Notice:
    """What ``origin`` tells ``target`` about the data it sent on path ``tag``: a
    receipt (``silence`` 0) or that it stopped arriving ``silence`` seconds ago."""

    target: bytes
    origin: bytes
    tag: int
    silence: float
    relayed: bool = False

    @property
    def type_byte(self) -> int:
        """The header's type (the sealer adds :data:`V6`)."""
        return NOTICE | (RELAYED if self.relayed else 0)

    def body(self) -> bytes:
        """The body (between the header and the MAC)."""
        ms = min(0xFFFF, max(0, round(self.silence * 1000)))
        return _NOTICES[len(self.target)].pack(self.target, self.origin, self.tag, ms)


def decode_notice(relayed: bool, body: bytes | bytearray | memoryview, addr_len: int = 4) -> Notice:
    """The :class:`Notice` of an opened NOTICE datagram's body."""
    fmt = _NOTICES[addr_len]
    if len(body) != fmt.size:
        raise WireError("notice datagram of the wrong length")
    target, origin, tag, ms = fmt.unpack_from(body, 0)
    return Notice(target, origin, tag, ms / 1000, relayed)


@dataclass(frozen=True)
class Data:
    """A DATA datagram's body: where it goes, the sender's path, its receipt."""

    target: bytes
    tag: int
    receipt: int | None
    inner: memoryview

    def body(self, inner: bytes | bytearray | memoryview | None = None) -> bytes:
        """The body again (with ``inner`` instead of the packet it carried)."""
        packet = self.inner if inner is None else inner
        return data_body(self.target, self.tag, self.receipt, packet)


def data_body(
    target: bytes, tag: int, receipt: int | None, inner: bytes | bytearray | memoryview
) -> bytes:
    """The body of a DATA datagram carrying ``inner`` to the ITM ``target``."""
    rcpt = NO_RECEIPT if receipt is None else receipt
    return _DATA_HEADS[len(target)].pack(target, tag, rcpt) + bytes(inner)


def decode_data(body: bytes | bytearray | memoryview, addr_len: int = 4) -> Data:
    """The :class:`Data` of a DATA datagram's body (ITM addresses of ``addr_len``
    bytes: the sender's); the inner packet is checked for a plausible header."""
    head = _DATA_HEADS[addr_len]
    view = memoryview(body)
    if len(view) < head.size:
        raise WireError("DATA datagram shorter than its target")
    target, tag, rcpt = head.unpack_from(view, 0)
    receipt = None if rcpt == NO_RECEIPT else rcpt
    return Data(target, tag, receipt, inner_packet(view[head.size :]))


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
