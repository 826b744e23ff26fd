"""Generic netlink over a bare socket, for the fuzz tests: bytes in, errno out.

Nothing here knows the itm families beyond their numbers; the point is to send
what our own client (libitm.control, pyroute2) never would.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10

_HDR = struct.Struct("=IHHII")


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def nest(kind: int, *inner: bytes) -> bytes:
    """A nested attribute holding `inner`."""
    return attr(kind | NLA_F_NESTED, b"".join(inner))


def string(kind: int, text: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, text.encode() + b"\0")


def genl_msg(
    family: int, cmd: int, payload: bytes, *, seq: int, flags: int, version: int = 1
) -> bytes:
    """A whole netlink message: header, generic header, attributes."""
    body = struct.pack("=BBH", cmd, version, 0) + payload
    return _HDR.pack(16 + len(body), family, flags, seq, 0) + body


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Top-level attributes of a payload (type without flags -> value)."""
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        ln, kind = struct.unpack_from("=HH", data, off)
        if ln < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + ln]
        off += (ln + 3) & ~3
    return out


def _messages(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    off = 0
    while off + 16 <= len(buf):
        ln, kind, _, seq, _ = _HDR.unpack_from(buf, off)
        if ln < 16:
            return
        yield kind, seq, buf[off + 16 : off + ln]
        off += (ln + 3) & ~3


class RawGenl:
    """One NETLINK_GENERIC socket in the calling thread's network namespace."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.bind((0, 0))
        self.sock.settimeout(timeout)
        self.seq = 0

    def close(self) -> None:
        """Close the socket (what the kernel sees as NETLINK_URELEASE)."""
        self.sock.close()

    def __enter__(self) -> RawGenl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        """A fresh sequence number."""
        self.seq += 1
        return self.seq

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.send(data)

    def replies(self, seq: int) -> tuple[int, list[bytes]]:
        """Read until the ack, error or end of dump of `seq`: (errno or 0, payloads)."""
        got: list[bytes] = []
        while True:
            buf = self.sock.recv(1 << 16)
            for kind, mseq, body in _messages(buf):
                if mseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    return -struct.unpack_from("=i", body)[0], got
                if kind == NLMSG_DONE:
                    return 0, got
                got.append(body)

    def request(
        self, family: int, cmd: int, payload: bytes = b"", *, dump: bool = False, version: int = 1
    ) -> tuple[int, list[bytes]]:
        """Send one request with an ack asked for; (errno or 0, reply payloads)."""
        seq = self.next_seq()
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
        self.send_raw(genl_msg(family, cmd, payload, seq=seq, flags=flags, version=version))
        return self.replies(seq)

    def family(self, name: str) -> int:
        """The id of a generic netlink family; OSError(ENOENT) when it is not there."""
        err, msgs = self.request(
            GENL_ID_CTRL, CTRL_CMD_GETFAMILY, string(CTRL_ATTR_FAMILY_NAME, name)
        )
        if err:
            raise OSError(err, f"genl family {name}")
        fid = parse_attrs(msgs[0][4:])[CTRL_ATTR_FAMILY_ID]
        return int(struct.unpack("=H", fid)[0])


def errname(code: int) -> str:
    """ "EPERM" for 1, "OK" for 0."""
    return errno.errorcode.get(code, str(code)) if code else "OK"
