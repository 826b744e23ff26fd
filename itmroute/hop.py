"""A relay's hop, the way a router makes it: the inner packet's TTL (IPv4) or
hop limit (IPv6) goes down by one (taken off where the packet leaves the
tunnel, at the target ITM: the relay sends the sealed datagram on as it came,
and checks only that a hop is left); a packet that reaches a relay with 1 or 0
left is not sent on, and its source gets a "time exceeded" (IPv4: ICMP type 11 code 0,
from the relay's overlay address, or, a relay of IPv6 ITMs, on an ICMP socket
from the IPv4 address its kernel picks; IPv6: ICMPv6 type 3 code 0, sent on an
ICMPv6 socket from the address the relay's kernel picks towards the source).

Works on the daemon's own copy of the packet (plain bytes), so it is tested
without a kernel.
"""

from __future__ import annotations

import struct

from libitm.checksum import adjust16

from .mtu import ICMP6_TIME_EXCEEDED, icmp6_error, icmp_error, icmp_message

TIME_EXCEEDED = 11


def hops_left(pkt: bytes | bytearray | memoryview) -> int:
    """The packet's TTL (IPv4) or hop limit (IPv6)."""
    return pkt[8] if pkt[0] >> 4 == 4 else pkt[7]


def decrement_ttl(pkt: bytearray) -> bool:
    """Take one off the packet's TTL / hop limit (IPv4 checksum updated incrementally).

    False, the packet unchanged, when it must not be sent on (1 or 0 left).
    """
    version = pkt[0] >> 4
    if hops_left(pkt) <= 1:
        return False
    if version == 4:
        old = (pkt[8] << 8) | pkt[9]
        pkt[8] -= 1
        csum = struct.unpack_from(">H", pkt, 10)[0]
        struct.pack_into(">H", pkt, 10, adjust16(csum, old, old - 0x100))
    else:
        pkt[7] -= 1
    return True


def time_exceeded(pkt: bytes | bytearray | memoryview, src: bytes) -> bytes | None:
    """The ICMP "time exceeded in transit" for an IPv4 packet, from ``src``; None for
    IPv6, or when ``src`` is not an IPv4 address (not answered)."""
    if pkt[0] >> 4 != 4 or len(src) != 4:
        return None
    return icmp_error(pkt, TIME_EXCEEDED, 0, 0, src)


def time_exceeded_message(pkt: bytes | bytearray | memoryview) -> bytes | None:
    """The ICMP part of "time exceeded in transit" for an IPv4 packet (to send on an
    ICMP socket); None for IPv6."""
    if pkt[0] >> 4 != 4:
        return None
    return icmp_message(pkt, TIME_EXCEEDED, 0, 0)


def time_exceeded6(pkt: bytes | bytearray | memoryview) -> bytes | None:
    """The ICMPv6 "hop limit exceeded in transit" for an IPv6 packet (the message
    without its IPv6 header: see :func:`itmroute.mtu.icmp6_error`); None for
    IPv4, or when no error may be sent."""
    if pkt[0] >> 4 != 6:
        return None
    return icmp6_error(pkt, ICMP6_TIME_EXCEEDED, 0, 0)
