"""What every netlink client of libitm.control shares: it is used in a ``with`` block."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosingClient:
    """A client whose socket :meth:`close` releases; ``with client:`` closes it at the end."""

    def close(self) -> None:
        """Close the client's socket."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
