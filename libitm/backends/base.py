"""What every backend provides to :class:`libitm.loop.ItmLoop`."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from ..hooks import Hook
from ..info import ItmInfo

if TYPE_CHECKING:
    from ..loop import ItmLoop


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (module not loaded, not root, ...)."""


class Backend(abc.ABC):
    """A source of packets and a sink for verdicts.

    ``live`` backends are driven by the loop (``fileno``/``process``); the
    offline backend drives the loop itself through :meth:`run_offline`.
    """

    name: str = "?"
    live: bool = True

    @abc.abstractmethod
    def start(self, loop: ItmLoop) -> None:
        """Open sockets and install the registrations already known to ``loop``."""

    @abc.abstractmethod
    def install(self, where: Hook, info: ItmInfo) -> None:
        """Start delivering the packets of ``info``'s interest at ``where``."""

    @abc.abstractmethod
    def uninstall(self, info: ItmInfo) -> None:
        """Stop delivering packets for ``info``."""

    def fileno(self) -> int:
        """A file descriptor that becomes readable when packets wait."""
        raise BackendUnavailable(f"the {self.name} backend has no file descriptor")

    def process(self) -> int:
        """Handle every packet waiting now, without blocking; return how many."""
        return 0

    def run_offline(self, loop: ItmLoop) -> None:
        """Drive the loop from a recorded source (offline backends only)."""
        raise BackendUnavailable(f"the {self.name} backend is live")

    @abc.abstractmethod
    def now(self) -> float:
        """The backend's clock in seconds (monotonic, or trace time offline)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove everything installed and release resources (idempotent)."""

    def counters(self) -> dict[str, int]:
        """Backend-level counters."""
        return {}


class LabelInUse(BackendUnavailable):
    """Another live process runs an application with the same label here.

    ``label`` is the label, ``pid`` the process that holds it (its rules stay).
    """

    def __init__(self, label: str, pid: int) -> None:
        super().__init__(
            f"label {label!r} is in use by process {pid} in this network namespace "
            "(stop it, or choose another label)"
        )
        self.label = label
        self.pid = pid
