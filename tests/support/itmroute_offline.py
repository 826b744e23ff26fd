"""A :class:`~itmroute.daemon.Router` without sockets of its own, for unit tests
of its data paths (no root): its sockets record what they send."""

from __future__ import annotations

import socket
from typing import Any, cast

from itmroute.daemon import Router, path_tables

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#: an ITM A with two relays and three prefixes behind two destination ITMs
DOC: dict[str, Any] = {
    "name": "a",
    "address": "10.77.100.1",
    "neighbours": {"r1": "10.77.1.2", "r2": "10.77.2.2"},
    "destinations": [
        {"prefix": "10.77.200.0/24", "itm": "10.77.200.1"},
        {"prefix": "fd77:200::/48", "itm": "10.77.200.1"},  # same ITM: one path table
        {"prefix": "10.78.0.0/16", "itm": "10.78.0.1"},
    ],
    "key": KEY,
}


class Clock:
    """A clock the test moves (``t``)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeSock:
    """A socket that sends nothing anywhere: records sends, has a descriptor to select on."""

    def __init__(self) -> None:
        self.pair = socket.socketpair()
        self.sent: list[tuple[bytes, Any]] = []
        #: datagrams and their sources, received one by one, then "would block"
        self.inbox: list[tuple[bytes, Any]] = []

    def fileno(self) -> int:
        return self.pair[0].fileno()

    def recvfrom(self, n: int) -> tuple[bytes, Any]:
        if self.inbox:
            return self.inbox.pop(0)
        raise BlockingIOError

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent.append((bytes(data), addr))
        return len(data)

    def setsockopt(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        for s in self.pair:
            s.close()


class OfflineRouter(Router):
    """A Router whose sockets are fakes (no root)."""

    opened = 0

    def _open_sockets(self) -> None:
        OfflineRouter.opened += 1
        socks = [cast(socket.socket, FakeSock()) for _ in range(5)]
        self.udp, self.raw, self.raw6, self.icmp6, self.icmp4 = socks


__all__ = ["DOC", "KEY", "Clock", "FakeSock", "OfflineRouter", "path_tables"]
