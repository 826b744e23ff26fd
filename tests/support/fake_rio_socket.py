"""pyroute2's NetlinkSocket as libitm.control.rio uses it, without a kernel: it
keeps the RTM_NEWQDISC messages it is sent and answers a qdisc dump from bytes
(shared by the sch_rio unit tests)."""

from __future__ import annotations

from typing import Any, ClassVar

from libitm.control import rio


class FakeRioSocket:
    """Records what is sent (``sent``); answers RTM_GETQDISC with ``dump``."""

    sent: ClassVar[list[Any]] = []
    dump: ClassVar[list[bytes]] = []

    def __init__(self, **_: Any) -> None:
        self.marshal = type("Marshal", (), {"msg_map": {}})()

    def bind(self) -> None:
        """Nothing to bind."""

    def close(self) -> None:
        """Nothing to close."""

    def nlm_request(self, msg: Any, msg_type: int, msg_flags: int) -> list[Any]:
        """A change is kept; a dump is answered from ``dump``, decoded."""
        if msg_type == rio.RTM_NEWQDISC:
            self.sent.append(msg)
            return []
        assert msg_type == rio.RTM_GETQDISC
        out = []
        for data in self.dump:
            reply = rio.rio_tcmsg(data)
            reply.decode()
            out.append(reply)
        return out
