"""Make the checkout importable (libitm, examples) without installing it; the
socket pair that stands in for a netlink socket."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A datagram socket pair (1 MiB buffers, ``b`` non-blocking) standing in for a
    netlink socket: what the kernel would send goes in at ``a``, a transport reads
    ``b`` (recvmmsg works on any datagram socket), what it sends comes out at ``a``."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()
