"""A fast test of an :class:`~libitm.interest.Interest` for the packet path.

:func:`matcher` returns a function with exactly the answers of
:meth:`Interest.matches`, that reads the common case - an IPv4 header without
options - straight from the packet's bytes, and hands every other packet
(IPv6, IPv4 options, short or malformed bytes) to :meth:`Interest.matches`.
libitm checks each application's interest on every packet with it, whatever
kernel rules put the packet in the queue.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interest import Interest
    from .packet import Packet

Matcher = Callable[["Packet"], bool]
#: the fields of the first 24 bytes of an IPv4 packet without options that a
#: test may read, in order: (name, offset, struct code) - version and header
#: length, total length, flags and fragment offset, protocol, source,
#: destination, and the first two 16-bit words after the header (the ports)
_FIELDS = (
    ("v", 0, "B"),
    ("tot", 2, "H"),
    ("frag", 6, "H"),
    ("p", 9, "B"),
    ("s", 12, "I"),
    ("d", 16, "I"),
    ("sp", 20, "H"),
    ("dp", 22, "H"),
)
_HEAD_LEN = 24


def _layout(used: set[str]) -> tuple[struct.Struct, list[str]]:
    """A struct reading only the fields named in ``used`` (skipping the others:
    each value read is an object made per packet), and their names in order."""
    fmt, names, at = "!", [], 0
    for name, off, code in _FIELDS:
        if name in used:
            fmt += "x" * (off - at) + code
            names.append(name)
            at = off + struct.calcsize("!" + code)
    return struct.Struct(fmt), names


def _net4(net: object) -> tuple[int, int] | None:
    """(address, mask) of an IPv4 network as integers (None: no test)."""
    if net is None:
        return None
    # an IPv6 network makes the interest's family 6: matcher() never gets here
    assert isinstance(net, ipaddress.IPv4Network)
    return int(net.network_address), int(net.netmask)


@functools.lru_cache(maxsize=512)
def matcher(interest: Interest) -> Matcher:
    """A function ``f(pkt) -> bool`` equal to ``interest.matches`` (may raise
    :class:`~libitm.packet.PacketError` as it does); made once per interest."""
    slow = interest.matches
    fam = interest.family
    proto = interest.proto_number
    sport = interest.sport
    dport = interest.dport
    if fam == 6:
        return slow
    src = _net4(interest.src)
    dst = _net4(interest.dst)
    if fam is None and proto is None and src is None and dst is None and not (sport or dport):
        return slow  # version check only
    ports = sport is not None or dport is not None
    tests: list[str] = []
    used = {"v"}  # the fields the tests read (the version always)
    if proto is not None or ports:
        used.add("p")
        tests.append(f"p == {proto:d}" if proto is not None else "(p == 6 or p == 17)")
    for name, net in (("s", src), ("d", dst)):
        if net is not None:
            addr, netmask = net
            if netmask:  # a /0 network matches every address: no test
                used.add(name)
                tests.append(f"{name} & {netmask:d} == {addr:d}")
    if ports:
        used |= {"frag", "tot"}
        tests.append("not frag & 0x1FFF")  # not a later fragment
        tests.append(f"tot >= {_HEAD_LEN}")  # 4 bytes of transport header
        for name, rng in (("sp", sport), ("dp", dport)):
            if rng is not None:
                lo, hi = rng  # type: ignore[misc]
                used.add(name)
                tests.append(f"{name} == {lo:d}" if lo == hi else f"{lo:d} <= {name} <= {hi:d}")
    # One function per interest, of integer comparisons on the fields of one
    # unpack that reads only what the tests use: a generic closure testing
    # each field costs 2-3 times as much, and reading all eight fields (two
    # of them addresses, a new int object each) about 1,000 instructions more.
    head, names = _layout(used)
    source = (
        "def match(pkt):\n"
        f"    if pkt._len < {_HEAD_LEN}:\n"
        "        return slow(pkt)\n"
        f"    {', '.join(names)}{',' if len(names) == 1 else ''} = unpack(pkt._buf)\n"
        "    if v != 0x45:\n"
        "        return slow(pkt)\n"
        f"    return {' and '.join(tests) or 'True'}\n"
    )
    scope: dict[str, object] = {"slow": slow, "unpack": head.unpack_from}
    exec(compile(source, f"<interest {interest}>", "exec"), scope)
    fn: Matcher = scope["match"]  # type: ignore[assignment]
    return fn
