"""Polling until something holds, for tests on every tier."""

from __future__ import annotations

import time


def wait_until(pred: object, timeout: float = 5.0, step: float = 0.05) -> bool:
    """Poll a callable until it is true or the time is up."""
    assert callable(pred)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
