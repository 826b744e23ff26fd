"""A tiny generic-netlink probe: does a family (for example ``itm_queue``) exist?"""

from __future__ import annotations

import errno
import socket
import struct

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLM_F_REQUEST = 1
NLMSG_ERROR = 2

_NLMSGHDR = struct.Struct("=IHHII")


def family_id(name: str, timeout: float = 1.0) -> int | None:
    """The id of generic netlink family ``name``, or None when it is not registered."""
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), CTRL_ATTR_FAMILY_NAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr
    msg = _NLMSGHDR.pack(16 + len(body), GENL_ID_CTRL, NLM_F_REQUEST, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as s:
        s.settimeout(timeout)
        s.bind((0, 0))
        s.send(msg)
        data = s.recv(65536)
    if len(data) < 16:
        raise OSError("short reply from the generic netlink controller")
    _, mtype, _, _, _ = _NLMSGHDR.unpack_from(data, 0)
    if mtype == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        if -err == errno.ENOENT:
            return None
        raise OSError(-err, f"generic netlink lookup of {name!r} failed")
    pos = 20
    while pos + 4 <= len(data):
        alen, atype = struct.unpack_from("=HH", data, pos)
        if alen < 4:
            break
        if atype & 0x3FFF == CTRL_ATTR_FAMILY_ID:
            (fid,) = struct.unpack_from("=H", data, pos + 4)
            return int(fid)
        pos += (alen + 3) & ~3
    raise OSError("generic netlink controller reply has no family id")
