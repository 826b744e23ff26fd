"""Reading the attributes of a generic netlink message built by a test, byte by byte."""

from __future__ import annotations

import struct


def attrs(data: bytes, start: int = 20) -> dict[int, bytes]:
    """The attributes from offset ``start`` (20: after the netlink and genetlink
    headers): type (with its flags) -> payload."""
    out = {}
    pos = start
    while pos + 4 <= len(data):
        alen, atype = struct.unpack_from("=HH", data, pos)
        out[atype] = data[pos + 4 : pos + alen]
        pos += (alen + 3) & ~3
    return out
