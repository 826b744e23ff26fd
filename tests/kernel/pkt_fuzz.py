"""Malformed and unusual IPv4/IPv6 packets for the packet fuzz test, from a seeded RNG.

`catalogue()` holds the cases issue 15 names (bad IHL and lengths, IP options,
fragments including a first one too short for the TCP header and overlapping
ones, TCP data offsets and every flag combination, IPv6 extension header
chains with a fragment header, ICMP errors quoting TCP); `noise()` is the
storm of random bytes.  Every packet is an L3 packet: the test puts an
Ethernet header in front.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator

from libitm.checksum import checksum

TCP, ICMP, ICMP6, FRAG6, HOP6, DST6, ROUTE6, NONE6 = 6, 1, 58, 44, 0, 60, 43, 59
ETH_IP, ETH_IP6 = 0x0800, 0x86DD
Case = tuple[str, int, bytes]  # (kind, ethertype, packet)


def ip4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    opts: bytes = b"",
    ihl: int | None = None,
    tot_len: int | None = None,
    frag: int = 0,
    ident: int = 0x4D2,
) -> bytes:
    """An IPv4 packet with a correct header checksum over whatever was asked for."""
    opts += b"\0" * (-len(opts) % 4)
    hl = ihl if ihl is not None else 5 + len(opts) // 4
    total = tot_len if tot_len is not None else 20 + len(opts) + len(payload)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | (hl & 0xF),
        0,
        total & 0xFFFF,
        ident,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr += opts
    csum = checksum(hdr[: max(20, min(len(hdr), hl * 4))])
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def tcp(sport: int, dport: int, flags: int, *, doff: int = 5, extra: bytes = b"") -> bytes:
    """A TCP header (checksum left 0: the router does not check it) and `extra`."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, doff << 4, flags, 512, 0, 0) + extra


def ip6(src: str, dst: str, nxt: int, payload: bytes, *, plen: int | None = None) -> bytes:
    """An IPv6 packet (payload length as asked, default the true one)."""
    n = len(payload) if plen is None else plen
    return (
        struct.pack("!IHBB", 0x60000000, n & 0xFFFF, nxt, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def ext6(nxt: int, body_len: int = 6) -> bytes:
    """An options-style IPv6 extension header (hop-by-hop, destination) of PadN."""
    units = (body_len + 2) // 8 - 1
    return bytes([nxt, units, 1, body_len - 2]) + b"\0" * (body_len - 2)


def frag6(nxt: int, offset: int, more: bool, ident: int = 7) -> bytes:
    """An IPv6 fragment header."""
    return struct.pack("!BBHI", nxt, 0, (offset << 3) | int(more), ident)


def chain6(depth: int, frag_at: int, final: bytes, offset: int = 0) -> tuple[int, bytes]:
    """`depth` extension headers (hop-by-hop first, a fragment header at `frag_at`),
    then TCP `final`: (first next-header value, bytes)."""
    kinds = [HOP6] + [DST6] * (depth - 1)
    kinds[min(frag_at, depth - 1)] = FRAG6
    out = b""
    for i, kind in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else TCP
        out += frag6(nxt, offset, False) if kind == FRAG6 else ext6(nxt)
    return kinds[0], out + final


IP_OPTIONS = (
    b"\x01\x01\x01\x01",  # NOPs
    b"\x00",  # end of list
    b"\x07\x27\x04" + b"\0" * 36,  # record route, room for 9
    b"\x44\x28\x05\x00" + b"\0" * 36,  # timestamp
    b"\x83\x07\x04" + bytes([10, 77, 2, 2]),  # loose source route
    b"\x89\x07\x04" + bytes([10, 77, 2, 2]),  # strict source route
    b"\x94\x04\x00\x00",  # router alert
    b"\x07\x00",  # record route of length 0
    b"\x07\x01",  # length 1
    b"\x44\x02\x05",  # timestamp too short
    b"\x83\xff\x04",  # length past the header
    b"\x07\x27\xff" + b"\0" * 36,  # pointer past the end
)


def catalogue(rng: random.Random, c4: str, d4: str, c6: str, d6: str) -> Iterator[Case]:
    """The named cases, from client addresses to destination `d4` / `d6`."""
    sp = rng.randrange(20000, 60000)
    seg = tcp(sp, 7, 0x02)
    for ihl in range(16):
        if ihl != 5:
            yield "ipv4 bad ihl", ETH_IP, ip4(c4, d4, TCP, seg, ihl=ihl)
    for total in (0, 19, 20, 39, 41, 100, 1500, 65535):
        yield "ipv4 bad length", ETH_IP, ip4(c4, d4, TCP, seg, tot_len=total)
    for opts in IP_OPTIONS:
        yield "ipv4 options", ETH_IP, ip4(c4, d4, TCP, seg, opts=opts)
    full = tcp(sp, 7, 0x18, extra=bytes(40))
    mf = 0x2000
    frags = (
        (0 | mf, full[:8]),  # first fragment, too short for the TCP header
        (0 | mf, b""),
        (1 | mf, full[8:16]),  # middle
        (2, full[16:]),  # last
        (0 | mf, full[:24]),  # overlapping with the next
        (1 | mf, full[8:40]),
        (3, full[24:]),
        (8189, bytes(64)),  # reassembles past 65535
        (0, full[:8]),  # unfragmented yet too short
    )
    for dst in (d4, c4.rsplit(".", 1)[0] + ".1"):  # through the router, and to it
        ident = rng.randrange(1 << 16)
        for off, data in frags:
            yield "ipv4 fragments", ETH_IP, ip4(c4, dst, TCP, data, frag=off, ident=ident)
    for doff in range(16):
        for extra in (b"", bytes(40)):
            seg = tcp(sp, 7, 0x10, doff=doff, extra=extra)
            yield "tcp data offset", ETH_IP, ip4(c4, d4, TCP, seg)
    for flags in range(256):
        yield "tcp flags", ETH_IP, ip4(c4, d4, TCP, tcp(sp + 1, 7, flags))
    inner = ip4(d4, c4, TCP, tcp(7, sp, 0x12))
    for typ, code in ((3, 3), (3, 4), (11, 0), (12, 0)):
        for quoted in (inner, inner[:28], inner[:20], bytes([0x4F]) + inner[1:28], b""):
            icmp = struct.pack("!BBHI", typ, code, 0, 1500 if code == 4 else 0) + quoted
            icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
            yield "icmp error quoting tcp", ETH_IP, ip4(c4, d4, ICMP, icmp)
    seg6 = tcp(sp, 7, 0x02)
    for depth in (2, 8, 9, 12, 20):
        for frag_at in (1, depth // 2, depth - 1):
            first, body = chain6(depth, frag_at, seg6)
            yield "ipv6 extension chain", ETH_IP6, ip6(c6, d6, first, body)
            yield "ipv6 chain cut short", ETH_IP6, ip6(c6, d6, first, body[: len(body) // 2])
            yield "ipv6 payload length lies", ETH_IP6, ip6(c6, d6, first, body, plen=len(body) + 40)
    # fragment header with a first fragment too short for TCP, then the rest
    yield "ipv6 fragments", ETH_IP6, ip6(c6, d6, FRAG6, frag6(TCP, 0, True) + full[:8])
    yield "ipv6 fragments", ETH_IP6, ip6(c6, d6, FRAG6, frag6(TCP, 1, False) + full[8:])
    yield "ipv6 fragments", ETH_IP6, ip6(c6, d6, FRAG6, frag6(TCP, 0, False, 9) + full[:4])
    route = bytes([TCP, 2, 0, 1, 0, 0, 0, 0]) + bytes(16)  # type 0, one address left
    yield "ipv6 routing header", ETH_IP6, ip6(c6, d6, ROUTE6, route + seg6)
    yield "ipv6 no next header", ETH_IP6, ip6(c6, d6, NONE6, b"")
    inner6 = ip6(d6, c6, TCP, tcp(7, sp, 0x12))
    for quoted in (inner6, inner6[:48], inner6[:40], inner6[:10]):
        unreach = bytes([1, 4, 0, 0, 0, 0, 0, 0])  # port unreachable
        yield "icmpv6 error quoting tcp", ETH_IP6, ip6(c6, d6, ICMP6, unreach + quoted)


def noise(rng: random.Random, c4: str, d4: str) -> Case:
    """One packet of the random storm: random bytes, often behind a sound IPv4 header."""
    body = rng.randbytes(rng.choice((0, 1, 8, 20, 40, 64, 300, 1400)))
    pick = rng.randrange(4)
    if pick == 0:
        return "random ipv4 payload", ETH_IP, ip4(c4, d4, rng.randrange(256), body)
    if pick == 1:
        return "random after version 4", ETH_IP, bytes([0x40 | rng.randrange(16)]) + body
    if pick == 2:
        return "random after version 6", ETH_IP6, bytes([0x60]) + body
    return "random bytes", rng.choice((ETH_IP, ETH_IP6)), body
