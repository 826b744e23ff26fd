"""The ``kernel`` backend: register through the itm_queue kernel module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..genl import family_id
from ..hooks import Hook
from ..info import ItmInfo
from .base import Backend, BackendUnavailable

if TYPE_CHECKING:
    from ..loop import ItmLoop

NOT_LOADED = (
    "itm_queue is not loaded (load it with itmtool load itm_queue, or use --backend nfqueue)"
)


class KernelBackend(Backend):
    """Registers applications with itm_mod through itm_queue's generic netlink family.

    itm_queue assigns each application a queue number and itm_mod queues the
    packets of interest to it; the packets then travel over nfnetlink_queue
    exactly as in the nfqueue backend, but without xtables rules.
    """

    name = "kernel"

    def __init__(self, **options: Any) -> None:
        self.options = options
        try:
            fid = family_id("itm_queue")
        except OSError as e:
            raise BackendUnavailable(f"{NOT_LOADED}: {e}") from e
        if fid is None:
            raise BackendUnavailable(NOT_LOADED)
        self.family_id = fid
        raise BackendUnavailable(
            "itm_queue is loaded, but this libitm does not speak its registration "
            "protocol yet; use --backend nfqueue"
        )

    def start(self, loop: ItmLoop) -> None:  # pragma: no cover - unreachable for now
        raise BackendUnavailable(NOT_LOADED)

    def install(self, where: Hook, info: ItmInfo) -> None:  # pragma: no cover
        raise BackendUnavailable(NOT_LOADED)

    def uninstall(self, info: ItmInfo) -> None:  # pragma: no cover
        raise BackendUnavailable(NOT_LOADED)

    def now(self) -> float:  # pragma: no cover
        raise BackendUnavailable(NOT_LOADED)

    def close(self) -> None:  # pragma: no cover
        pass
