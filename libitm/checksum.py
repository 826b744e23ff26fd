"""Internet checksums: from scratch (RFC 1071) and incremental (RFC 1624)."""

from __future__ import annotations


def ones_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The 16-bit one's-complement sum of ``data`` (odd length padded with a zero byte).

    Adding 16-bit words with end-around carry is the same as taking the whole
    buffer as one big number modulo 0xffff (since 0x10000 = 1 mod 0xffff), except
    that a non-zero sum that is a multiple of 0xffff reads 0xffff.
    """
    b = bytes(data)
    if len(b) % 2:
        b += b"\0"
    n = int.from_bytes(b, "big") + start
    if n == 0:
        return 0
    r = n % 0xFFFF
    return r if r else 0xFFFF


def checksum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The Internet checksum (complement of :func:`ones_sum`) of ``data``."""
    return ~ones_sum(data, start) & 0xFFFF


def adjust(
    csum: int, old: bytes | bytearray | memoryview, new: bytes | bytearray | memoryview
) -> int:
    """Update checksum ``csum`` after the 16-bit-aligned words ``old`` became ``new``.

    RFC 1624 equation 3: ``HC' = ~(~HC + ~m + m')`` summed over every changed word.
    ``old`` and ``new`` must have the same even length and start at an even offset
    of the checksummed data.
    """
    if len(old) != len(new) or len(old) % 2:
        raise ValueError("checksum adjust needs equal, even-length old and new words")
    s = ~csum & 0xFFFF
    ob = bytes(old)
    nb = bytes(new)
    for i in range(0, len(ob), 2):
        m = (ob[i] << 8) | ob[i + 1]
        m2 = (nb[i] << 8) | nb[i + 1]
        s += (~m & 0xFFFF) + m2
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def adjust16(csum: int, old: int, new: int) -> int:
    """:func:`adjust` for one 16-bit word given as integers (no buffers)."""
    s = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
