"""Hook points where an application sees packets (the paper's five)."""

from __future__ import annotations

import enum


class Hook(enum.IntEnum):
    """Where an application is registered; values match the uapi ``ITM_HOOK_*``."""

    PRE_ROUTING = 0
    IP_IN = 1
    IP_FORWARD = 2
    IP_OUT = 3
    POST_ROUTING = 4
    # the 2004 paper's names of the same points (aliases: Hook.IP_POST_ROUTE is
    # Hook.POST_ROUTING)
    PRE_ROUTE = 0
    IP_POST_ROUTE = 4

    @classmethod
    def parse(cls, where: Hook | str | int) -> Hook:
        """Accept a :class:`Hook`, its value, or a name such as ``"post_routing"``
        (case and ``-``/``_`` do not matter; the paper's ``IP_POST_ROUTE`` and
        ``PRE_ROUTE``, and iptables' chain names, are accepted too)."""
        if isinstance(where, Hook):
            return where
        if isinstance(where, str):
            key = where.strip().upper().replace("-", "_")
            aliases = {
                "PREROUTING": "PRE_ROUTING",
                "POSTROUTING": "POST_ROUTING",
                "INPUT": "IP_IN",
                "LOCAL_IN": "IP_IN",
                "FORWARD": "IP_FORWARD",
                "OUTPUT": "IP_OUT",
                "LOCAL_OUT": "IP_OUT",
            }
            key = aliases.get(key, key)
            try:
                return cls[key]
            except KeyError:
                names = ", ".join(h.name.lower() for h in cls)
                raise ValueError(f"unknown hook {where!r}; expected one of {names}") from None
        if isinstance(where, int) and not isinstance(where, bool):
            try:
                return cls(where)
            except ValueError:
                raise ValueError(f"unknown hook number {where}") from None
        raise TypeError(f"hook must be a Hook, str or int, not {type(where).__name__}")

    @property
    def xtables_chain(self) -> str:
        """The built-in iptables chain of this hook."""
        return _CHAINS[self]


_CHAINS = {
    Hook.PRE_ROUTING: "PREROUTING",
    Hook.IP_IN: "INPUT",
    Hook.IP_FORWARD: "FORWARD",
    Hook.IP_OUT: "OUTPUT",
    Hook.POST_ROUTING: "POSTROUTING",
}
