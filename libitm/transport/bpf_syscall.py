"""The bpf(2) system call, as far as observers' ring copies need it.

Three commands: create a ring buffer map, load a ``BPF_PROG_TYPE_NETFILTER``
program, and attach it to a netfilter hook of the caller's network namespace
with a BPF link. Each returns a file descriptor; closing the link's (or the
process ending, also by SIGKILL) detaches the program, so nothing is left
behind. The values are the kernel's uapi (include/uapi/linux/bpf.h).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import Final

#: ``bpf()``'s number per machine (arch/*/entry/syscalls)
_SYS_BPF: Final = {"x86_64": 321, "aarch64": 280}
CMD_MAP_CREATE: Final = 0
CMD_PROG_LOAD: Final = 5
CMD_PROG_GET_NEXT_ID: Final = 11
CMD_PROG_GET_FD_BY_ID: Final = 13
CMD_OBJ_GET_INFO_BY_FD: Final = 15
CMD_LINK_CREATE: Final = 28
#: ``sizeof(struct bpf_prog_info)`` and where its ``name`` is
_PROG_INFO_SIZE: Final = 232
_PROG_INFO_NAME: Final = 64
MAP_TYPE_ARRAY: Final = 2
MAP_TYPE_RINGBUF: Final = 27
#: an array map that the process may mmap (``BPF_F_MMAPABLE``)
MAP_F_MMAPABLE: Final = 1 << 10
PROG_TYPE_NETFILTER: Final = 32
ATTACH_NETFILTER: Final = 45
#: ``sizeof(union bpf_attr)`` of the kernels this was written against; the
#: kernel accepts a shorter one whose tail it does not know as long as it is 0
ATTR_SIZE: Final = 152
_LOG_SIZE: Final = 1 << 16


class BpfError(OSError):
    """A bpf() command failed; ``errno`` says why, ``log`` holds the verifier's
    log when a program was refused."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.log = log


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once, with errno kept for ``ctypes.get_errno``."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _syscall_number() -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(errno.ENOSYS, f"bpf() on {platform.machine()}")
    return nr


def bpf(cmd: int, attr: bytes | bytearray, what: str) -> int:
    """Run bpf command ``cmd`` with ``attr`` (at most :data:`ATTR_SIZE` bytes);
    its result (a file descriptor for the commands that make one)."""
    return _call(cmd, attr, what)[0]


def _call(cmd: int, attr: bytes | bytearray, what: str) -> tuple[int, bytes]:
    """bpf() and the attribute as the kernel left it (some commands answer in it)."""
    buf = ctypes.create_string_buffer(bytes(attr), ATTR_SIZE)
    ret = libc().syscall(_syscall_number(), ctypes.c_int(cmd), buf, ctypes.c_uint(ATTR_SIZE))
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(ret), buf.raw


def ringbuf(size: int) -> int:
    """A ring buffer map of ``size`` bytes (a power of two, whole pages)."""
    attr = struct.pack("<IIIII", MAP_TYPE_RINGBUF, 0, 0, size, 0)
    return bpf(CMD_MAP_CREATE, attr, "creating a BPF ring buffer")


def counter(count: int = 1) -> int:
    """An array map of ``count`` 64-bit counters that the process may map
    (``BPF_F_MMAPABLE``) to read them without a system call."""
    attr = struct.pack("<IIIII", MAP_TYPE_ARRAY, 4, 8, count, MAP_F_MMAPABLE)
    return bpf(CMD_MAP_CREATE, attr, "creating a BPF counter array")


def load_netfilter(insns: bytes, name: str) -> int:
    """Load ``insns`` as a netfilter program named ``name`` (at most 15 bytes).

    On a refusal the program is loaded once more with the verifier's log on, and
    the :class:`BpfError` carries that log."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    logbuf = ctypes.create_string_buffer(_LOG_SIZE)

    def attr(log_level: int) -> bytearray:
        a = bytearray(ATTR_SIZE)
        struct.pack_into(
            "<IIQQIIQ",
            a,
            0,
            PROG_TYPE_NETFILTER,
            len(insns) // 8,
            ctypes.addressof(code),
            ctypes.addressof(lic),
            log_level,
            _LOG_SIZE if log_level else 0,
            ctypes.addressof(logbuf) if log_level else 0,
        )
        a[48:64] = name.encode()[:15].ljust(16, b"\0")  # prog_name
        struct.pack_into("<I", a, 68, ATTACH_NETFILTER)  # expected_attach_type
        return a

    try:
        return bpf(CMD_PROG_LOAD, attr(0), "loading a BPF netfilter program")
    except BpfError as e:
        if e.errno != errno.EACCES and e.errno != errno.EINVAL:
            raise
        try:
            return bpf(CMD_PROG_LOAD, attr(1), "loading a BPF netfilter program")
        except BpfError as again:
            again.log = logbuf.value.decode(errors="replace")
            raise again from None


def netfilter_link(prog: int, pf: int, hooknum: int, priority: int) -> int:
    """Attach program ``prog`` at netfilter hook ``hooknum`` of protocol family
    ``pf`` (NFPROTO_IPV4 2, NFPROTO_IPV6 10) in the caller's network namespace,
    at ``priority``; the link's descriptor."""
    a = bytearray(ATTR_SIZE)
    struct.pack_into("<IIII", a, 0, prog, 0, ATTACH_NETFILTER, 0)
    struct.pack_into("<IIiI", a, 16, pf, hooknum, priority, 0)
    return bpf(CMD_LINK_CREATE, a, "attaching a BPF program to a netfilter hook")


def program_names() -> list[str]:
    """The names of every BPF program loaded now (all namespaces; needs root)."""
    names: list[str] = []
    pid = 0
    while True:
        try:
            _, out = _call(CMD_PROG_GET_NEXT_ID, struct.pack("<I", pid), "listing BPF programs")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return names
            raise
        (pid,) = struct.unpack_from("<I", out, 4)  # next_id
        try:
            fd = bpf(CMD_PROG_GET_FD_BY_ID, struct.pack("<I", pid), "opening a BPF program")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                continue  # gone meanwhile
            raise
        try:
            info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
            attr = struct.pack("<IIQ", fd, _PROG_INFO_SIZE, ctypes.addressof(info))
            bpf(CMD_OBJ_GET_INFO_BY_FD, attr, "reading a BPF program's info")
            raw = info.raw[_PROG_INFO_NAME : _PROG_INFO_NAME + 16]
            names.append(raw.split(b"\0", 1)[0].decode(errors="replace"))
        finally:
            os.close(fd)
