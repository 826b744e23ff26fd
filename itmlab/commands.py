"""The lab's command runner: one place that runs a command and reports its failure."""

from __future__ import annotations

import signal
import subprocess
from typing import Protocol


class Stoppable(Protocol):
    """What :func:`stop` needs of a process: Popen's, or a test's forked child."""

    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...
    def communicate(self, timeout: float | None = None) -> tuple[str, str]: ...


def run(
    *args: str, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (text in and out, ``input`` on stdin); raise ``RuntimeError``
    with its stderr when it fails and ``check`` is set."""
    proc = subprocess.run(
        args, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def stop(
    proc: subprocess.Popen[str] | Stoppable,
    sig: int = signal.SIGTERM,
    *,
    timeout: float = 30,
    cont: bool = False,
) -> tuple[str, str]:
    """End ``proc``: send it ``sig`` (SIGCONT first with ``cont``: it may be stopped)
    unless it has ended, wait ``timeout`` s, SIGKILL it if it is still there; what
    was left of its stdout and stderr ("" for a stream that is not piped)."""
    if proc.poll() is None:
        if cont:
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""


def sh(*args: str, check: bool = True, timeout: float = 60) -> str:
    """:func:`run` and return its stdout."""
    return run(*args, check=check, timeout=timeout).stdout


def ip_batch(
    lines: list[str], ns: str | None = None, *, force: bool = False, check: bool = True
) -> None:
    """Run ``ip`` commands (in namespace ``ns``) with one ``ip -batch``: on an
    emulated CPU every process costs a few tenths of a second."""
    if not lines:
        return
    cmd = ["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"]
    run(*cmd, check=check, input="\n".join(lines) + "\n")
