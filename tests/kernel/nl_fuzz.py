"""Random and malformed generic netlink messages for the itm families, from a seeded RNG.

`Fuzzer.message()` returns the bytes of one message: mostly a well-formed
header around attributes of every kind the policies do not expect (wrong
lengths, nested where scalar, strings without NUL, labels far past
ITM_LABEL_MAX, types past the last), sometimes damaged as a whole (cut short,
lengths that lie, bytes flipped).  `send_and_drain()` sends it and reads every
reply the kernel queued, counting error codes.
"""

from __future__ import annotations

import collections
import random
import struct
from dataclasses import dataclass, field

from tests.kernel.genl_raw import (
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RawGenl,
    attr,
    errname,
    genl_msg,
)

#: lengths that sit on and around every boundary of the policies (u8, u16,
#: s32, in6_addr, ITM_LABEL_MAX)
EDGE_LENGTHS = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 64, 255, 1000)


@dataclass
class FamilyShape:
    """What the fuzzer knows of a family: its id, commands and attribute counts."""

    fid: int
    max_cmd: int
    max_attr: int
    nested: tuple[int, ...]
    labels: tuple[str, ...]


@dataclass
class Tally:
    """What was sent and what came back."""

    sent: int = 0
    replies: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)

    def line(self) -> str:
        """One line for the test's output."""
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.codes.items()))
        return f"{self.sent} messages sent, {self.replies} replies; codes: {codes}"


class Fuzzer:
    """Messages from a seeded RNG (the test prints the seed to replay a failure)."""

    def __init__(self, seed: int, families: list[FamilyShape]) -> None:
        self.rng = random.Random(seed)
        self.families = families

    def _value(self, fam: FamilyShape, kind: int, depth: int) -> bytes:
        r = self.rng
        pick = r.randrange(8)
        if pick == 0:
            return b""
        if pick == 1:  # a string without its NUL, or a label far too long
            return r.choice(fam.labels).encode() + b"x" * r.choice((0, 1, 32, 300))
        if pick == 2:
            return r.choice(fam.labels).encode() + b"\0"
        if pick == 3 and depth < 3:  # nested, wherever it lands
            return b"".join(self._attr(fam, depth + 1) for _ in range(r.randrange(4)))
        if pick == 4:
            return b"a" * r.choice((31, 32, 33, 64, 4000)) + b"\0"
        return r.randbytes(r.choice(EDGE_LENGTHS))

    def _attr(self, fam: FamilyShape, depth: int = 0) -> bytes:
        r = self.rng
        kind = r.randrange(fam.max_attr + 4) if r.random() < 0.9 else r.randrange(1 << 14)
        if kind in fam.nested or r.random() < 0.1:
            kind |= NLA_F_NESTED
        raw = attr(kind, self._value(fam, kind, depth))
        if r.random() < 0.05:  # a length that lies
            raw = struct.pack("=H", r.choice((0, 1, 3, 4, 5, 0xFFFF))) + raw[2:]
        return raw

    def message(self, seq: int) -> tuple[bytes, bool]:
        """One message and whether the kernel must answer it (an ack asked, headers sound)."""
        r = self.rng
        fam = r.choice(self.families)
        cmd = r.randrange(fam.max_cmd + 3) if r.random() < 0.9 else r.randrange(256)
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if r.random() < 0.3 else 0)
        if r.random() < 0.05:
            flags = r.randrange(1 << 16) | NLM_F_REQUEST
        version = 1 if r.random() < 0.9 else r.randrange(256)
        payload = b"".join(self._attr(fam) for _ in range(r.randrange(7)))
        msg = genl_msg(fam.fid, cmd, payload, seq=seq, flags=flags, version=version)
        damage = r.random()
        if damage < 0.05:  # cut anywhere, even inside the headers
            return msg[: r.randrange(len(msg))], False
        if damage < 0.08:  # a header that claims more than was sent
            return struct.pack("=I", len(msg) + r.randrange(1, 64)) + msg[4:], False
        if damage < 0.12:  # a few bytes flipped past the netlink header
            buf = bytearray(msg)
            for _ in range(r.randrange(1, 4)):
                if len(buf) > 16:
                    buf[r.randrange(16, len(buf))] = r.randrange(256)
            return bytes(buf), False
        return msg, flags & NLM_F_ACK != 0 and not flags & ~(NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP)


def drain(sock: RawGenl, tally: Tally) -> None:
    """Read every reply queued on the socket (a dump goes on as we read).

    The kernel handles a request inside send(), and makes the next part of a
    dump inside the recv() that takes the previous one: what is not queued
    when recv() would block is not coming.
    """
    sock.sock.settimeout(0)  # a timeout would make recv() wait first
    while True:
        try:
            buf = sock.sock.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            return
        except OSError as exc:  # ENOBUFS: the kernel dropped replies we read too late
            tally.codes[f"recv:{exc.errno}"] += 1
            continue
        off = 0
        while off + 16 <= len(buf):
            ln, kind = struct.unpack_from("=IH", buf, off)
            tally.replies += 1
            if kind == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", buf, off + 16)
                tally.codes[errname(-err)] += 1
            elif kind == NLMSG_DONE:
                tally.codes["DONE"] += 1
            off += max((ln + 3) & ~3, 16)


def send_and_drain(sock: RawGenl, data: bytes, tally: Tally) -> None:
    """Send one message (the kernel may refuse it outright) and read its replies."""
    tally.sent += 1
    try:
        sock.send_raw(data)
    except OSError as exc:
        tally.codes[f"send:{errname(exc.errno or 0)}"] += 1
    drain(sock, tally)
