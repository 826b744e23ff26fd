"""Verdicts that ``process_func`` returns; values match the uapi ``ITM_VERDICT_*``."""

from __future__ import annotations

import enum


class Verdict(enum.IntEnum):
    """What happens to a packet.

    ``ACCEPT`` lets it continue (with the application's changes, if it made any:
    "accept-modified" is automatic). ``DROP`` discards it; later applications at
    the same hook do not see it.
    """

    ACCEPT = 0
    DROP = 1

    @classmethod
    def coerce(cls, value: object) -> Verdict:
        """Turn a process_func return value into a verdict (``None`` means accept)."""
        if value is None:
            return cls.ACCEPT
        if isinstance(value, Verdict):
            return value
        if isinstance(value, bool):
            raise TypeError("process_func returned a bool; return Verdict.ACCEPT or Verdict.DROP")
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, str):
            return cls[value.upper()]
        raise TypeError(f"process_func returned {value!r}; expected a Verdict")
