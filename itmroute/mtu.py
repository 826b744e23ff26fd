"""The tunnel's MTU: TCP MSS clamping, ICMP "fragmentation needed" and ICMPv6
"packet too big".

They work on plain bytes of a packet (the daemon's own copy of a packet it
re-sends), so they are tested without a kernel.
"""

from __future__ import annotations

import struct
from typing import Final

from libitm.checksum import adjust16, checksum

_TCP: Final = 6
_OPT_MSS: Final = 2
_OPT_END: Final = 0
_OPT_NOP: Final = 1
IP_DF: Final = 0x4000


def tunnel_mtu(link_mtu: int, overhead: int) -> int:
    """The largest inner packet the tunnel carries over a link of ``link_mtu``."""
    return link_mtu - overhead


def dscp_byte(pkt: bytes | bytearray | memoryview) -> int:
    """The DSCP bits of an IPv4 TOS or IPv6 traffic class byte (ECN bits cleared)."""
    if pkt[0] >> 4 == 6:
        return ((pkt[0] & 0x0F) << 4 | pkt[1] >> 4) & 0xFC
    return pkt[1] & 0xFC


def dont_fragment(pkt: bytes | bytearray | memoryview) -> bool:
    """True when the IPv4 packet has DF set."""
    return bool(((pkt[6] << 8) | pkt[7]) & IP_DF)


def clamp_mss(pkt: bytearray, mss: int) -> bool:
    """Lower the MSS option of a TCP SYN (IPv4, or IPv6 with TCP right after the
    fixed header) to ``mss``; True if it changed.

    The TCP checksum is updated incrementally; packets that are not a SYN with
    an MSS option above ``mss`` are left alone.
    """
    if len(pkt) >= 40 and pkt[0] >> 4 == 6 and pkt[6] == _TCP:
        ihl = 40
    elif len(pkt) >= 20 and pkt[0] >> 4 == 4 and pkt[9] == _TCP:
        ihl = (pkt[0] & 0x0F) * 4
    else:
        return False
    if len(pkt) < ihl + 20 or not pkt[ihl + 13] & 0x02:
        return False
    doff = (pkt[ihl + 12] >> 4) * 4
    end = min(ihl + doff, len(pkt))
    i = ihl + 20
    while i < end:
        kind = pkt[i]
        if kind == _OPT_END:
            break
        if kind == _OPT_NOP:
            i += 1
            continue
        if i + 1 >= end or pkt[i + 1] < 2:
            break
        size = pkt[i + 1]
        if kind == _OPT_MSS and size == 4 and i + 4 <= end:
            old = (pkt[i + 2] << 8) | pkt[i + 3]
            if old <= mss:
                return False
            struct.pack_into(">H", pkt, i + 2, mss)
            csum_off = ihl + 16
            csum = (pkt[csum_off] << 8) | pkt[csum_off + 1]
            if (i - ihl) % 2 == 0:
                csum = adjust16(csum, old, mss)
            else:  # an odd offset: the word straddles the option's bytes differently
                return _fix_tcp_checksum(pkt, ihl)
            struct.pack_into(">H", pkt, csum_off, csum)
            return True
        i += size
    return False


def _fix_tcp_checksum(pkt: bytearray, ihl: int) -> bool:
    if pkt[0] >> 4 == 6:
        seg = pkt[40 : 40 + struct.unpack_from(">H", pkt, 4)[0]]
        seg[16:18] = b"\0\0"
        pseudo = bytes(pkt[8:40]) + struct.pack(">IxxxB", len(seg), _TCP)
        struct.pack_into(">H", pkt, ihl + 16, checksum(pseudo + bytes(seg)))
        return True
    total = min(struct.unpack_from(">H", pkt, 2)[0], len(pkt))
    seg = pkt[ihl:total]
    seg[16:18] = b"\0\0"
    pseudo = bytes(pkt[12:20]) + struct.pack(">BBH", 0, _TCP, len(seg))
    struct.pack_into(">H", pkt, ihl + 16, checksum(pseudo + bytes(seg)))
    return True


def frag_needed(pkt: bytes | bytearray | memoryview, mtu: int, src: bytes, ttl: int = 64) -> bytes:
    """The IPv4 ICMP "fragmentation needed" (type 3 code 4) for ``pkt``, from ``src``.

    It goes to the packet's source, carries the next-hop MTU ``mtu`` and the
    packet's IP header plus its first 8 bytes of payload (RFC 792, RFC 1191).
    """
    return icmp_error(pkt, 3, 4, mtu, src, ttl)


def icmp_message(pkt: bytes | bytearray | memoryview, kind: int, code: int, word: int) -> bytes:
    """The ICMP part of an IPv4 ICMP error about ``pkt`` (checksum included): for
    :func:`icmp_error`, or to send on an ICMP socket whose kernel adds the IP
    header from an address of its own."""
    ihl = (pkt[0] & 0x0F) * 4
    icmp = bytearray(struct.pack(">BBHHH", kind, code, 0, 0, word) + bytes(pkt[: ihl + 8]))
    struct.pack_into(">H", icmp, 2, checksum(icmp))
    return bytes(icmp)


def icmp_error(
    pkt: bytes | bytearray | memoryview, kind: int, code: int, word: int, src: bytes, ttl: int = 64
) -> bytes:
    """An IPv4 ICMP error of ``kind``/``code`` about ``pkt``, from ``src`` to its source:
    ``word`` is the low 16 bits of the second header word (the MTU of type 3 code 4),
    then the packet's IP header and first 8 bytes of payload (RFC 792)."""
    icmp = icmp_message(pkt, kind, code, word)
    total = 20 + len(icmp)
    hdr = bytearray(
        struct.pack(">BBHHHBBH4s4s", 0x45, 0xC0, total, 0, 0, ttl, 1, 0, src, bytes(pkt[12:16]))
    )
    struct.pack_into(">H", hdr, 10, checksum(hdr))
    return bytes(hdr + icmp)


#: ICMPv6 types (RFC 4443) the daemon sends
ICMP6_PACKET_TOO_BIG: Final = 2
ICMP6_TIME_EXCEEDED: Final = 3
#: the smallest MTU an IPv6 link has: an ICMPv6 error fits in it (RFC 4443 2.4 c)
IPV6_MIN_MTU: Final = 1280
_ICMPV6: Final = 58


def icmp6_error(
    pkt: bytes | bytearray | memoryview, kind: int, code: int, word: int
) -> bytes | None:
    """The ICMPv6 error message ``kind``/``code`` about the IPv6 packet ``pkt``
    (without the IPv6 header: it is sent on an ICMPv6 socket, the kernel picks
    the source, fills in the checksum and sends it to the packet's source).

    ``word`` is the 32-bit field after the checksum (the MTU of "packet too
    big"); then as much of the packet as keeps the error within 1280 bytes.
    None when no error may be sent (RFC 4443 2.4 e): about an ICMPv6 error
    message, or from an unspecified or multicast source.
    """
    if len(pkt) < 40 or pkt[0] >> 4 != 6:
        return None
    src = bytes(pkt[8:24])
    if src == bytes(16) or src[0] == 0xFF:
        return None
    if pkt[6] == _ICMPV6 and len(pkt) > 40 and pkt[40] < 128:
        return None  # an error about an error
    quoted = bytes(pkt[: IPV6_MIN_MTU - 40 - 8])
    return struct.pack(">BBHI", kind, code, 0, word) + quoted


def packet_too_big(pkt: bytes | bytearray | memoryview, mtu: int) -> bytes | None:
    """The ICMPv6 "packet too big" (type 2 code 0) telling ``pkt``'s source the MTU."""
    return icmp6_error(pkt, ICMP6_PACKET_TOO_BIG, 0, mtu)
