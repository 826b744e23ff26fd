"""The tunnel's MTU: TCP MSS clamping and ICMP "fragmentation needed".

Both work on plain bytes of an IPv4 packet (the daemon's own copy of a packet it
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


def icmp_error(
    pkt: bytes | bytearray | memoryview, kind: int, code: int, word: int, src: bytes, ttl: int = 64
) -> bytes:
    """An IPv4 ICMP error of ``kind``/``code`` about ``pkt``, from ``src`` to its source:
    ``word`` is the low 16 bits of the second header word (the MTU of type 3 code 4),
    then the packet's IP header and first 8 bytes of payload (RFC 792)."""
    ihl = (pkt[0] & 0x0F) * 4
    quoted = bytes(pkt[: ihl + 8])
    icmp = bytearray(struct.pack(">BBHHH", kind, code, 0, 0, word) + quoted)
    struct.pack_into(">H", icmp, 2, checksum(icmp))
    total = 20 + len(icmp)
    hdr = bytearray(
        struct.pack(">BBHHHBBH4s4s", 0x45, 0xC0, total, 0, 0, ttl, 1, 0, src, bytes(pkt[12:16]))
    )
    struct.pack_into(">H", hdr, 10, checksum(hdr))
    return bytes(hdr + icmp)
