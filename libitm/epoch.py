"""The configuration epoch: a counter bumped by every change the packet path caches.

A backend's packet loop looks up a hook's applications and their callbacks once
and keeps them while the epoch stays the same (one list read per packet). What
bumps it: an application added to or removed from a dispatcher, an attribute of
an :class:`~libitm.ItmInfo` set (callbacks, ``enabled``, interest, ...), and a
backend that starts checking a hook's interest in Python again.
"""

from __future__ import annotations

#: ``EPOCH[0]`` is the current epoch (a list, so that loops can hold it locally).
EPOCH: list[int] = [0]


def bump() -> None:
    """Tell every packet loop that what it cached may be stale."""
    EPOCH[0] += 1
