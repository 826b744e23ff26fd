"""Reading a running itmroute daemon's state file from a test, and waiting on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until


def state(path: Path) -> dict[str, Any]:
    """The daemon's table as it last wrote it; {} before the first write (or a torn read)."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except (OSError, ValueError):
        return {}


def current(path: Path) -> str | None:
    """The path in use for the first destination (``direct``, ``r1``, ...), or None."""
    st = state(path)
    return st["destinations"][0]["current"] if st.get("destinations") else None


def wait(pred: Callable[[], object], timeout: float) -> bool:
    """Whether ``pred()`` became true within ``timeout`` seconds (polled every 0.1 s)."""
    return wait_until(pred, timeout, 0.1)
