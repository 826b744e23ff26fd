"""An nftables table that lives exactly as long as the process that made it.

nftables can tie a table to the netlink socket that created it (``flags
owner``, Linux 5.12): nobody else may change it, and the kernel removes it
when that socket closes, however its process ended (``kill -9`` included). The
``nft`` tool keeps its socket open in interactive mode (``nft -i``), so an
:class:`OwnedTable` runs one ``nft -i`` as a child and writes its commands to
it: when the daemon dies, the child reads end-of-file, exits, and the table
goes with it. That is how the WireGuard data path fails open: its steering
rules vanish with the daemon and packets take the plain route again.

Each :meth:`OwnedTable.apply` ends with a ``list chain`` of an empty chain
kept for the purpose: its output on stdout says that ``nft`` has read
everything before it, and whatever ``nft`` wrote on stderr by then is the
error of one of those commands.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Iterable

from libitm.xtables import command_path

#: the empty chain whose listing marks the end of a batch's output
SYNC_CHAIN = "sync"
#: seconds of silence after an error that end the wait for the listing
QUIET = 0.5


class NftError(Exception):
    """``nft`` refused a command or could not run (the message says which, in one line)."""


class OwnedTable:
    """One ``nft -i`` holding table ``family name`` with ``flags owner``."""

    def __init__(
        self, family: str, name: str, *, timeout: float = 10.0, nft: str | None = None
    ) -> None:
        """Start ``nft -i`` and create the table; :class:`NftError` when it cannot
        (``nft`` missing, a kernel without ``flags owner``, the table owned by
        another process: the message names it). ``nft`` by default is looked for
        on PATH, then in the sbin directories (a service user's PATH has none)."""
        if nft is None:
            nft = command_path("nft")
        self.family = family
        self.name = name
        self.timeout = timeout
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [nft, "-i"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # out of the terminal's process group: a Ctrl-C is the daemon's to
                # handle; nft ends when the daemon closes its stdin, or dies
                start_new_session=True,
            )
        except OSError as e:
            raise NftError(f"cannot run {nft}: {e.strerror or e}") from None
        try:
            self.apply(
                [
                    f"add table {family} {name} {{ flags owner; }}",
                    f"add chain {family} {name} {SYNC_CHAIN}",
                ]
            )
        except NftError as e:
            self.close()
            raise NftError(f"table {family} {name}: {e}") from None

    @property
    def alive(self) -> bool:
        """Whether ``nft`` still runs (the table exists while it does)."""
        return self._proc is not None and self._proc.poll() is None

    def apply(self, commands: Iterable[str]) -> None:
        """Run ``commands`` (one per line, nft syntax) and wait until ``nft`` has
        read them all; :class:`NftError` with ``nft``'s first error line and
        the command it refers to."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise NftError("nft -i is not running (the table is gone)")
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        lines = [c.strip() for c in commands]
        if any("\n" in c for c in lines):
            raise NftError("one command per line")
        lines.append(f"list chain {self.family} {self.name} {SYNC_CHAIN}")
        try:
            proc.stdin.write(("\n".join(lines) + "\n").encode())
            proc.stdin.flush()
        except OSError as e:
            raise NftError(f"nft -i: {e.strerror or e}") from None
        out, err = self._read(proc, b"}\n}\n")
        if err:
            raise NftError(_first_error(err))
        if out is None:
            raise NftError(f"nft -i did not answer within {self.timeout:g} s")

    def _read(self, proc: subprocess.Popen[bytes], end: bytes) -> tuple[bytes | None, bytes]:
        """What ``nft`` wrote on stdout up to ``end`` (None: it exited, timed out, or
        the listing itself failed) and on stderr. After an error the wait ends
        once ``nft`` has been quiet for :data:`QUIET` s: the listing fails too
        when the table could not be made."""
        assert proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        out, err = b"", b""
        deadline = time.monotonic() + self.timeout
        while not out.endswith(end):
            now = time.monotonic()
            left = (min(deadline, now + QUIET) if err else deadline) - now
            ready = select.select([out_fd, err_fd], [], [], left)[0] if left > 0 else []
            if not ready:
                return None, err
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:  # nft exited
                    return None, err + self._drain(proc.stderr)
                if fd == out_fd:
                    out += chunk
                else:
                    err += chunk
        return out, err + self._drain(proc.stderr)

    @staticmethod
    def _drain(f: object) -> bytes:
        """What is waiting on ``f`` now, without blocking."""
        fd = f.fileno()  # type: ignore[attr-defined]
        data = b""
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        """End ``nft -i``: the kernel removes the table with its socket."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        try:
            proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _first_error(err: bytes) -> str:
    """``nft``'s error in one line: ``Error: ...`` and the command it quotes."""
    lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return "nft -i failed"
    first = lines[0]
    if first.startswith("Error:") and len(lines) > 1 and not lines[1].lstrip().startswith("^"):
        return f"{first} (in: {lines[1].strip()})"
    return first
