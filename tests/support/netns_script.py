"""A Python program run in a network namespace for a test, with a scratch directory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from itmlab import stop

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def netns_script(
    ns: str, source: str, *args: str, prefix: str = "itm-script-"
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Run ``source`` (``python -c``) in ``ns`` with a fresh directory as its first
    argument, then ``args``; yields the process (stdout and stderr piped, text) and
    the directory. At the end a process still running is continued (it may be
    stopped) and ended with SIGTERM (SIGKILL after 30 s), and the directory goes."""
    out = Path(tempfile.mkdtemp(prefix=prefix))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", source, str(out), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            stop(proc, cont=True)
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
