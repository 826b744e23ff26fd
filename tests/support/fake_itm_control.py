"""Stand-ins for libitm.control.ItmControl, the itm_mod control client, without a
kernel (shared by itmtool's status, kmod and JSON unit tests)."""

from __future__ import annotations

from typing import Any

from libitm.control.client import STAT_NAMES, App

__all__ = ["DNS_INTEREST", "FakeControl", "FakeItm"]

#: an interest as the control client reports it: UDP to port 53 of 10.0.0.0/8
DNS_INTEREST: dict[str, Any] = {
    "family": "ipv4",
    "protocol": 17,
    "src": None,
    "dst": "10.0.0.0/8",
    "sport": None,
    "dport": [53, 53],
}


class FakeItm:
    """Stands for ItmControl (as ``itmtool status`` uses it) with itm_mod loaded and one
    application, ``dns`` of ``count_dns``, every counter at 5."""

    def __init__(self) -> None:
        stats = dict.fromkeys(STAT_NAMES, 5)
        interest = dict(DNS_INTEREST)
        self._apps = [
            App("dns", "kernel", "ip_forward", 0, True, 0, "count_dns", 0, 1, interest, stats)
        ]

    def __enter__(self) -> FakeItm:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def apps(self) -> list[App]:
        """The one registered application."""
        return self._apps

    def netns_active(self) -> bool:
        """itm_mod is attached to this namespace."""
        return True


class FakeControl:
    """Stands for libitm.control.ItmControl as itmtool.kmod uses it: the given applications."""

    def __init__(self, apps: list[App]) -> None:
        self._apps = apps

    def apps(self) -> list[Any]:
        """The applications it was made with."""
        return list(self._apps)

    def close(self) -> None:
        """Nothing to close."""
