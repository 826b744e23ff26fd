"""A network namespace of a host test's own, removed afterwards whatever happens."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import pytest

from itmlab import sh


def require_root(what: str) -> None:
    """Fail (never skip) a host test run without root; ``what`` says what needs it."""
    if os.geteuid() != 0:
        pytest.fail(f"this test needs root ({what})")


@contextlib.contextmanager
def scratch_ns(prefix: str, before_delete: Callable[[str], object] | None = None) -> Iterator[str]:
    """Namespace ``<prefix>-<pid>`` with ``lo`` up; ``before_delete(name)`` runs
    before it is deleted (e.g. a cleanup command a user would run)."""
    name = f"{prefix}-{os.getpid()}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        if before_delete is not None:
            before_delete(name)
        sh("ip", "netns", "del", name, check=False)
