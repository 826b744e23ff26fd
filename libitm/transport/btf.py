"""Where a kernel structure's fields are, read from the running kernel's BTF.

A BPF program that reads ``struct sk_buff`` needs the byte offsets of this
kernel's build; the kernel describes its own types in ``/sys/kernel/btf/vmlinux``
(Documentation/bpf/btf.rst). :func:`member_offsets` walks that description for
one structure, looking into its anonymous unions and structures as C does.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import Final

VMLINUX: Final = Path("/sys/kernel/btf/vmlinux")
_MAGIC: Final = 0xEB9F
_STRUCT, _UNION = 4, 5
#: kinds that name another type in their ``size/type`` word (typedef, volatile,
#: const, restrict, type tag)
_REFS: Final = frozenset({8, 9, 10, 11, 18})
#: bytes that follow a type's 12-byte header, by kind (per member where vlen counts)
_FIXED: Final = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_ITEM: Final = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


class BtfError(ValueError):
    """The BTF could not be read, or lacks what was asked for."""


def member_offsets(
    struct_name: str, fields: Collection[str], data: bytes | None = None
) -> dict[str, int]:
    """The byte offset of each of ``fields`` in ``struct struct_name``.

    ``data``: a BTF blob (default: the running kernel's). Raises
    :class:`BtfError` when the blob is malformed or a field is missing."""
    if data is None:
        try:
            data = VMLINUX.read_bytes()
        except OSError as e:
            raise BtfError(f"the kernel's BTF ({VMLINUX}): {e.strerror}") from None
    try:
        types, strings = _parse(data)
    except struct.error:
        raise BtfError("BTF ends inside a type") from None

    def name(off: int) -> str:
        end = strings.find(b"\0", off)
        return strings[off : end if end >= 0 else len(strings)].decode(errors="replace")

    found: dict[str, int] = {}

    def walk(tid: int, base: int, depth: int) -> None:
        members = types[tid][3]
        for mname, mtype, mbits in members:
            nm = name(mname) if mname else ""
            if nm:
                if nm in fields and nm not in found:
                    found[nm] = (base + mbits) // 8
                continue
            t = _resolve(types, mtype)
            if 0 < t < len(types) and types[t][0] in (_STRUCT, _UNION) and depth < 16:
                walk(t, base + mbits, depth + 1)

    for tid in range(1, len(types)):
        kind, noff, _, _ = types[tid]
        if kind == _STRUCT and noff and name(noff) == struct_name:
            walk(tid, 0, 0)
            break
    else:
        raise BtfError(f"the kernel's BTF has no struct {struct_name}")
    missing = sorted(set(fields) - set(found))
    if missing:
        raise BtfError(f"struct {struct_name} has no field {', '.join(missing)}")
    return found


_Type = tuple[int, int, int, list[tuple[int, int, int]]]


def _parse(data: bytes) -> tuple[list[_Type], bytes]:
    """The types (index = type id; 0 is void) and the string section."""
    if len(data) < 24:
        raise BtfError("BTF too short")
    magic, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data, 0
    )
    if magic != _MAGIC:
        raise BtfError("not BTF (or not this machine's byte order)")
    start, end = hdr_len + type_off, hdr_len + type_off + type_len
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    if end > len(data) or len(strings) != str_len:
        raise BtfError("BTF sections run past its end")
    types: list[_Type] = [(0, 0, 0, [])]
    pos = start
    while pos < end:
        name_off, info, size = struct.unpack_from("<III", data, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += 12
        members: list[tuple[int, int, int]] = []
        if kind in (_STRUCT, _UNION):
            for i in range(vlen):
                mn, mt, mo = struct.unpack_from("<III", data, pos + 12 * i)
                members.append((mn, mt, mo & 0xFFFFFF if kflag else mo))
        types.append((kind, name_off, size, members))
        pos += _FIXED.get(kind, 0) + _PER_ITEM.get(kind, 0) * vlen
    return types, strings


def _resolve(types: list[_Type], tid: int) -> int:
    """``tid`` with typedefs and qualifiers taken off."""
    for _ in range(32):
        if not 0 < tid < len(types) or types[tid][0] not in _REFS:
            break
        tid = types[tid][2]
    return tid
