"""The itm and itm_queue requests the fuzz and privilege tests send over genl_raw,
and a child process that is root only in a user namespace of its own."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from libitm.control import itm_queue_spec as Q
from libitm.control import itm_spec as M
from tests.kernel.genl_raw import RawGenl, attr, parse_attrs, string

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_DUMPABLE = 4
NOBODY = 65534
_libc = ctypes.CDLL(None, use_errno=True)


def register(sock: RawGenl, label: str, hook: int = M.ITM_HOOK_POST_ROUTING) -> tuple[int, int]:
    """Register an itm_queue application: (errno or 0, queue number or -1)."""
    fam = sock.family(Q.FAMILY_NAME)
    payload = string(Q.ITMQ_A_LABEL, label) + attr(Q.ITMQ_A_HOOK, bytes([hook]))
    err, msgs = sock.request(fam, Q.ITMQ_CMD_REGISTER, payload)
    if err or not msgs:
        return err, -1
    (queue,) = struct.unpack("=H", parse_attrs(msgs[0][4:])[Q.ITMQ_A_QUEUE_NUM][:2])
    return 0, int(queue)


def dump_apps(sock: RawGenl) -> list[dict[int, bytes]]:
    """The top-level attributes of every application a dump shows this socket."""
    err, msgs = sock.request(sock.family(M.FAMILY_NAME), M.ITM_CMD_APP_GET, dump=True)
    if err:
        raise OSError(err, "itm application dump")
    return [parse_attrs(m[4:]) for m in msgs]


def _label(a: dict[int, bytes]) -> str:
    return a[M.ITM_A_LABEL].rstrip(b"\0").decode()


def app_labels(sock: RawGenl) -> list[str]:
    """The labels an itm application dump shows this socket, in order."""
    return [_label(a) for a in dump_apps(sock)]


def app_state(sock: RawGenl) -> list[tuple[str, int, int]]:
    """(label, priority, enabled) of every application the dump shows."""
    return [
        (_label(a), struct.unpack("=i", a[M.ITM_A_PRIORITY])[0], a[M.ITM_A_ENABLED][0])
        for a in dump_apps(sock)
    ]


def app_seen(sock: RawGenl) -> dict[str, int]:
    """Per label, the packets that reached the application (its "seen" counter)."""
    out = {}
    for a in dump_apps(sock):
        stats = parse_attrs(a[M.ITM_A_STATS])
        out[_label(a)] = int(struct.unpack("=Q", stats[M.ITM_A_STATS_SEEN])[0])
    return out


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def become_userns_root() -> None:
    """Drop to uid/gid 65534 with no capability, then enter a new user and
    network namespace where that uid is root (what `unshare -Urn` does)."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # /proc/self stays ours to write
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER | CLONE_NEWNET)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {NOBODY} 1")
    _write("/proc/self/gid_map", f"0 {NOBODY} 1")


Work = Callable[[], tuple[dict[str, Any], object]]


@contextlib.contextmanager
def in_userns(work: Work, *, unprivileged_only: bool = False) -> Iterator[dict[str, Any]]:
    """Run `work` in a forked child that is root in a user namespace of its own
    (or, with `unprivileged_only`, just uid 65534 in the initial namespaces).

    `work` returns (a JSON-able result, something to keep alive): the child
    keeps its sockets (and so its registrations) until the block ends.  The
    child reuses this process's imports: a new Python costs tens of seconds
    on the emulated CPU.
    """
    res_r, res_w = os.pipe()
    end_r, end_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(res_r)
            os.close(end_w)
            if unprivileged_only:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            else:
                become_userns_root()
            result, keep = work()
        except BaseException as exc:  # reported to the parent
            result, keep = {"error": repr(exc)}, None
        try:
            os.write(res_w, json.dumps(result).encode() + b"\n")
            os.read(end_r, 1)
        finally:
            del keep
            os._exit(0)
    os.close(res_w)
    os.close(end_r)
    try:
        with os.fdopen(res_r, "rb") as f:
            line = f.readline()
        result = json.loads(line) if line else {"error": "the child said nothing"}
        assert "error" not in result, f"child failed: {result['error']}"
        yield result
    finally:
        with contextlib.suppress(OSError):
            os.write(end_w, b"x")
        os.close(end_w)
        os.waitpid(pid, 0)
