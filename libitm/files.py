"""The files of an offline run: checked before anything is opened, outputs written whole.

Used by the offline backend, ``itmtool run`` and the examples, so that each
refuses the same things the same way:

* :func:`check_offline_paths` — the input trace exists, is a readable file; an
  output (``out``, ``log``) is not the input (after resolving symlinks), not the
  other output, not a directory, and its directory exists and is writable.
* :func:`atomic_output` (:func:`atomic_text_output`) — an output file appears
  only complete: it is written to a temporary file beside the target and
  renamed over it at the end
  (``os.replace``); on an error or Ctrl-C the temporary file is removed and a
  previous target is left as it was. An output that is a character device or a
  FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written into as it
  goes, never replaced; a block device or a socket is refused.
* :func:`describe_error` — the one-line message and exit code (itmtool's, see
  docs/itmtool.md) of the errors a run can meet: these files, the capture, a
  backend that cannot run here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, BinaryIO

from .pcap import PcapError

StrPath = str | os.PathLike[str]

#: exit codes shared with itmtool (tools/itmtool/errors.py, docs/itmtool.md)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PERM = 4
EXIT_NOT_FOUND = 5
EXIT_UNSUPPORTED = 6


class PathConflict(ValueError):
    """Two of a run's files are one file: writing one would destroy the other."""


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_input(path: StrPath) -> None:
    """Raise the OSError a read of ``path`` would meet, without reading it."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(errno.ENOENT, "no such file", p)
    if os.path.isdir(p):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a capture file", p)
    with open(p, "rb"):
        pass


def _is_stream(target: str) -> bool:
    """True when ``target`` exists and is a character device or a FIFO: written
    into, not replaced (see the module doc)."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_output(path: StrPath) -> None:
    """Raise the OSError that creating ``path`` (by :func:`atomic_output`) would meet."""
    p = os.path.realpath(os.fspath(path))
    if os.path.isdir(p):
        raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
    if _is_stream(p):
        if not os.access(p, os.W_OK):
            raise PermissionError(errno.EACCES, "cannot write to this device", os.fspath(path))
        return
    if os.path.exists(p) and not stat.S_ISREG(os.stat(p).st_mode):
        raise PathConflict(
            f"the output {os.fspath(path)} is neither a regular file nor a character device "
            "or FIFO (a block device or a socket): refusing to replace it; choose a file"
        )
    parent = os.path.dirname(p)
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, "no such directory", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot create files in this directory", parent)


def check_offline_paths(
    pcap: StrPath, out: StrPath | None = None, log: StrPath | None = None
) -> None:
    """Check an offline run's files (see the module doc) before any is opened.

    Raises :class:`PathConflict` for an output that names the input or the
    other output, else the ``OSError`` (``FileNotFoundError``,
    ``PermissionError``, ``IsADirectoryError``) that opening them would raise.
    """
    src = os.fspath(pcap)
    outputs = [(name, os.fspath(p)) for name, p in (("out", out), ("log", log)) if p is not None]
    for name, p in outputs:
        if _same_file(p, src):
            raise PathConflict(
                f"the {name} file {p} is the input trace {src}: writing it would destroy "
                "the input; choose another file"
            )
    if len(outputs) == 2 and _same_file(outputs[0][1], outputs[1][1]):
        raise PathConflict(f"the out and log files are the same file ({outputs[0][1]})")
    check_input(src)
    for _, p in outputs:
        check_output(p)


def _mode_for(target: str) -> int:
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def _temp_beside(path: StrPath) -> Iterator[tuple[int, str, str]]:
    target = os.path.realpath(os.fspath(path))
    if _is_stream(target):  # a device or a pipe: written into, never replaced
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        yield fd, target, target
        return
    directory, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    try:
        os.fchmod(fd, _mode_for(target))
        yield fd, tmp, target
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: StrPath) -> Iterator[BinaryIO]:
    """Write ``path`` whole or not at all (see the module doc); yields the open binary file."""
    with _temp_beside(path) as (fd, _, _), os.fdopen(fd, "wb") as f:
        yield f


@contextlib.contextmanager
def atomic_text_output(path: StrPath) -> Iterator[IO[str]]:
    """:func:`atomic_output` for UTF-8 text."""
    with _temp_beside(path) as (fd, _, _), os.fdopen(fd, "w", encoding="utf-8") as f:
        yield f


def describe_error(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an error a run reports to a person, else None.

    Exit codes: 2 conflicting or wrong kind of path (a directory), 4 permission
    denied (a file; a live backend without root), 5 no such file or directory,
    6 a backend that cannot run here, 1 a label in use by a live process, a
    capture that cannot be read or another I/O error. None: not one of these
    (a bug, to be shown as such).
    """
    from .backends.base import BackendUnavailable, LabelInUse

    if isinstance(exc, LabelInUse):
        return str(exc), EXIT_FAILED
    if isinstance(exc, BackendUnavailable):
        perm = "root" in str(exc) or "CAP_NET_ADMIN" in str(exc)
        return str(exc), EXIT_PERM if perm else EXIT_UNSUPPORTED
    if isinstance(exc, PathConflict):
        return str(exc), EXIT_USAGE
    if isinstance(exc, PcapError):
        return str(exc), EXIT_FAILED
    if not isinstance(exc, OSError):
        return None
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    what = exc.strerror or str(exc)
    text = f"{where}: {what}" if where else what
    if isinstance(exc, PermissionError):
        if not where:
            return what, EXIT_PERM
        plain = what.lower() in ("permission denied", "operation not permitted")
        return f"permission denied: {where}" if plain else f"permission denied: {text}", EXIT_PERM
    if isinstance(exc, FileNotFoundError):
        return text, EXIT_NOT_FOUND
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return text, EXIT_USAGE
    return text, EXIT_FAILED
