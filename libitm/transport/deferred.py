"""Datagrams that arrived while a transport waited for a config acknowledgement.

A transport that sends a configuration request (bind a queue or an NFLOG
group, set a copy mode) reads its socket until the kernel acknowledges it;
the packets (or observers' copies) that the kernel sends meanwhile are read
with the answer. They must not run there: the request may come from inside an
application's callback (``register_hook`` in a callback, also a timer's or a
reader's), and running them would call callbacks inside that callback, send a
batch verdict that accepts the packet still in its callbacks, and reuse the
receive buffer under the packet loop. :class:`Deferred` keeps them, in arrival
order, for the transport's next ``process()``, which runs them before
reading anything newer; an eventfd stays readable while any wait, so that a
loop polling the transport comes back for them even if nothing else arrives.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import socket
import time

from . import codec as nfq

#: how long a configuration request waits for the kernel's answer
ACK_WAIT = 2.0


class Deferred:
    """Datagrams kept for later, oldest first, and the eventfd that says so."""

    def __init__(self) -> None:
        """Nothing kept; the eventfd is made on first use."""
        #: (datagram padded to whole 32-bit words, its length): the packet loops
        #: test this deque's truthiness, cheaper than a method call
        self.kept: collections.deque[tuple[bytearray, int]] = collections.deque()
        self._fd = -1
        self._pid = 0

    def __len__(self) -> int:
        """How many datagrams are kept."""
        return len(self.kept)

    def fileno(self) -> int:
        """The eventfd, readable while datagrams are kept (made on first use, and
        anew in a forked child, which must not share its parent's)."""
        pid = os.getpid()
        if self._fd < 0 or self._pid != pid:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)  # the child's copy of the parent's
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._pid = pid
            if self.kept:
                os.eventfd_write(self._fd, 1)
        return self._fd

    def keep(self, data: bytes | bytearray | memoryview) -> None:
        """Keep a copy of datagram ``data`` and make the eventfd readable."""
        buf = bytearray(data)
        n = len(buf)
        buf += bytes(-n % 4)  # the packet loop reads it as 32-bit words
        self.kept.append((buf, n))
        os.eventfd_write(self.fileno(), 1)

    def take(self) -> tuple[bytearray, int]:
        """The oldest datagram kept and its length (:class:`IndexError` when none);
        the eventfd stops being readable with the last one."""
        item = self.kept.popleft()
        if not self.kept and self._fd >= 0 and self._pid == os.getpid():
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._fd)
        return item

    def close(self) -> None:
        """Forget what is kept and close the eventfd."""
        self.kept.clear()
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1


def await_ack(
    sock: socket.socket, msg: bytes, buf: bytearray, kept: Deferred, packet_type: int
) -> int | None:
    """Send configuration request ``msg`` on ``sock`` and read, into ``buf`` (not the
    packet loop's), until the kernel answers it: its errno (0: done), or None
    after :data:`ACK_WAIT` seconds without an answer. A datagram read meanwhile
    that carries messages of ``packet_type`` (queued packets, observers' copies)
    goes to ``kept`` whole, to run after the request, never inside it."""
    seq = nfq.NLMSGHDR.unpack_from(msg, 0)[3]
    sock.send(msg)
    end = time.monotonic() + ACK_WAIT
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            n = sock.recv_into(buf)
        except BlockingIOError:
            continue
        result: int | None = None
        packets = False
        for mtype, _, off, length in nfq.messages(buf, n):
            if mtype == nfq.NLMSG_ERROR:
                err, eseq = nfq.decode_error(buf, off, length)
                if eseq == seq:
                    result = err
            elif mtype == packet_type:
                packets = True
        if packets:
            kept.keep(memoryview(buf)[:n])
        if result is not None:
            return result
    return None
