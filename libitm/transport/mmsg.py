"""Many datagrams per system call: ``recvmmsg(2)`` through ctypes.

Python's socket module has no ``recvmmsg``, and a netlink socket hands out one
message per ``recv``: draining a queue of nfnetlink_queue packets with
``recv_into`` costs one system call (and one trip through the socket module)
per packet.  :class:`MultiReceiver` reads up to ``slots`` datagrams with one
``recvmmsg`` call into fixed slots of one preallocated buffer, so that the
caller can walk them as offsets into ``buf``, without copies or allocations.

Used by the nfqueue backend (and any backend reading nfnetlink_queue); falls
back to ``None`` from :func:`open_receiver` where libc or ``recvmmsg`` is not
available, and the caller then uses ``recv_into``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
from typing import Final

MSG_DONTWAIT: Final = 0x40
MSG_TRUNC: Final = 0x20


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


_MMSG_SIZE: Final = ctypes.sizeof(_Mmsghdr)
_LEN_OFF: Final = _Mmsghdr.msg_len.offset
_FLAGS_OFF: Final = _Msghdr.msg_flags.offset

_recvmmsg_fn: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]


def _libc_recvmmsg() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    global _recvmmsg_fn
    if _recvmmsg_fn is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fn = libc.recvmmsg
        except (OSError, AttributeError):
            return None
        fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
        fn.restype = ctypes.c_int
        _recvmmsg_fn = fn
    return _recvmmsg_fn


class MultiReceiver:
    """``slots`` receive slots of ``slot_size`` bytes each in one buffer ``buf``.

    After ``n = recv()``, datagram ``i < n`` is ``buf[s : s + length(i)]`` where
    ``s = starts(lengths(n))[i]``; ``truncated(i)`` says whether it was cut to the slot
    size. Offsets and sizes are multiples of 8, so every datagram starts
    8-aligned.

    With ``dense`` smaller than ``slot_size``, a slot is two pieces: its first
    ``dense`` bytes lie in a dense area at the start of ``buf`` (slot ``i`` at
    ``i * dense``), the rest in an overflow area after it. A datagram that fits
    in ``dense`` bytes - every packet of an ordinary MTU when whole packets are
    copied - is read where it landed, and the receiver's working set is the
    dense area, not ``slots * slot_size`` bytes (64 slots of 65 KiB: 4 MiB that
    every packet would walk through); :meth:`starts` moves the first piece of a
    longer one in front of its overflow piece, so that it is contiguous too.
    """

    def __init__(self, fd: int, slots: int, slot_size: int, dense: int | None = None) -> None:
        fn = _libc_recvmmsg()
        if fn is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available")
        if slots < 1 or slot_size < 64:
            raise ValueError("need at least one slot of at least 64 bytes")
        self._fn = fn
        self.fd = fd
        self.slots = slots
        self.slot_size = size = (slot_size + 7) & ~7
        d = size if dense is None or dense >= size else max(64, (dense + 7) & ~7)
        self.dense = d
        split = d < size
        #: where the overflow area starts (0: no overflow area, slots are whole)
        self.overflow = slots * d if split else 0
        self.buf = bytearray(slots * d + (slots * size if split else 0))
        self._cbuf = (ctypes.c_char * len(self.buf)).from_buffer(self.buf)
        per = 2 if split else 1
        self._iov = (_Iovec * (slots * per))()
        self._hdrs = bytearray(_MMSG_SIZE * slots)
        self._chdrs = (_Mmsghdr * slots).from_buffer(self._hdrs)
        base = ctypes.addressof(self._cbuf)
        for i in range(slots):
            iov = self._iov[i * per]
            iov.iov_base = base + i * d
            iov.iov_len = d
            if split:
                # the overflow piece of slot i leaves room for its first piece in front
                tail = self._iov[i * per + 1]
                tail.iov_base = base + self.overflow + i * size + d
                tail.iov_len = size - d
            h = self._chdrs[i].msg_hdr
            h.msg_iov = ctypes.addressof(iov)
            h.msg_iovlen = per
        self._starts = [i * d for i in range(slots)]
        self._hdr_addr = ctypes.addressof(self._chdrs)
        hv = memoryview(self._hdrs).cast("I")
        self._hv = hv
        self._len_idx = _LEN_OFF // 4
        self._stride = _MMSG_SIZE // 4
        self._flags_idx = _FLAGS_OFF // 4

    def recv(self, limit: int | None = None) -> int:
        """Read up to ``limit`` (default ``slots``) datagrams without blocking.

        Returns how many arrived (0 when none is waiting). Raises ``OSError``
        for errors other than EAGAIN (``ENOBUFS`` included: the caller counts it)
        and retries on EINTR.
        """
        vlen = self.slots if limit is None or limit > self.slots else limit
        while True:
            n: int = self._fn(self.fd, self._hdr_addr, vlen, MSG_DONTWAIT, None)
            if n >= 0:
                return n
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))

    def length(self, i: int) -> int:
        """Bytes received into slot ``i`` by the last :meth:`recv`."""
        return int(self._hv[i * self._stride + self._len_idx])

    def lengths(self, n: int) -> list[int]:
        """The lengths of the first ``n`` slots."""
        hv, st, li = self._hv, self._stride, self._len_idx
        return [hv[i * st + li] for i in range(n)]

    def starts(self, lengths: list[int]) -> list[int]:
        """Where each datagram starts in ``buf``, given the first ``n`` slots'
        ``lengths`` (from :meth:`lengths`); a datagram longer than ``dense`` is made
        contiguous in the overflow area first. The list may be shared: do not
        change it."""
        d = self.dense
        n = len(lengths)
        if not self.overflow or not n or max(lengths) <= d:
            return self._starts
        st = list(self._starts)
        buf, size, ov = self.buf, self.slot_size, self.overflow
        for i in range(n):
            if lengths[i] > d:
                at = ov + i * size
                buf[at : at + d] = buf[i * d : i * d + d]
                st[i] = at
        return st

    def truncated(self, i: int) -> bool:
        """True when datagram ``i`` was longer than its slot (MSG_TRUNC)."""
        return bool(self._hv[i * self._stride + self._flags_idx] & MSG_TRUNC)

    def close(self) -> None:
        """Release the buffer exports (the receiver cannot be used afterwards)."""
        self._hv.release()
        del self._chdrs
        del self._cbuf


def open_receiver(
    sock: socket.socket, slots: int, slot_size: int, dense: int | None = None
) -> MultiReceiver | None:
    """A :class:`MultiReceiver` on ``sock``, or None where recvmmsg cannot be used."""
    try:
        return MultiReceiver(sock.fileno(), slots, slot_size, dense)
    except OSError:
        return None
