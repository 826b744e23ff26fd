"""Verdicts that ``process_func`` returns: netfilter's values (``NF_DROP`` 0, ``NF_ACCEPT`` 1).

They equal the uapi ``ITM_VERDICT_*`` and the kernel's ``NF_*`` values, so a
port of the paper's ``return NF_ACCEPT`` (1) accepts in libitm as in itm.h.
"""

from __future__ import annotations

import enum


class Verdict(enum.IntEnum):
    """What happens to a packet.

    ``ACCEPT`` lets it continue (with the application's changes, if it made any:
    "accept-modified" is automatic). ``DROP`` discards it; later applications at
    the same hook do not see it. The values are netfilter's; libitm has no
    ``STOLEN`` or ``QUEUE`` (a process cannot keep a packet).
    """

    DROP = 0
    ACCEPT = 1

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
            try:
                return cls(value)
            except ValueError:
                raise ValueError(
                    f"process_func returned {value}; libitm's verdicts are "
                    "NF_ACCEPT (1) and NF_DROP (0)"
                ) from None
        if isinstance(value, str):
            return cls[value.upper()]
        raise TypeError(f"process_func returned {value!r}; expected a Verdict")


#: netfilter's names of the two verdicts (``return NF_ACCEPT`` as in the paper)
NF_DROP = Verdict.DROP
NF_ACCEPT = Verdict.ACCEPT
