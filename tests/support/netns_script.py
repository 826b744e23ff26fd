"""A Python program run in a network namespace for a test, with a scratch directory."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from itmlab import stop
from tests.support import forked

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def netns_script(
    ns: str, source: str, *args: str, prefix: str = "itm-script-"
) -> Iterator[tuple[forked.Child, Path]]:
    """Run ``source`` (as ``python -c`` would) in ``ns`` with a fresh directory as
    its first argument, then ``args``; yields the process (stdout and stderr
    piped) and the directory. The process is a fork of this one
    (tests/support/forked.py: a new Python takes seconds in the emulated
    guests). At the end a process still running is continued (it may be
    stopped) and ended with SIGTERM (SIGKILL after 30 s), and the directory goes."""
    out = Path(tempfile.mkdtemp(prefix=prefix))
    proc = forked.start(forked.python_source(source), ["-c", str(out), *args], ns=ns, cwd=str(ROOT))
    try:
        yield proc, out
    finally:
        stop(proc, cont=True)
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
