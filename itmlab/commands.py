"""The lab's command runner: one place that runs a command and reports its failure."""

from __future__ import annotations

import subprocess


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
