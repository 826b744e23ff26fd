"""Where a new application's jump goes in its hook's built-in chain (nfqueue
backend): appended, or just before the first jump to one of the given chains
(a decider's before its process's observers', whose NFLOG rules a queued
packet would not reach). iptables answered from text."""

from __future__ import annotations

import subprocess

from libitm import Hook, Interest
from libitm.owners import Owner
from libitm.xtables import Xtables

FORWARD = """\
-P FORWARD ACCEPT
-A FORWARD -m comment --comment "itm owner=7 start=1 label=other" -j ITM-other
-A FORWARD -m comment --comment "itm owner=1 start=2 label=obs" -j ITM-obs
-A FORWARD -m comment --comment "itm owner=1 start=2 label=obs2" -j ITM-obs2
"""


class RecordingXtables(Xtables):
    """Records the commands; ``-S FORWARD`` answers :data:`FORWARD`."""

    def _exec(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(cmd)
        out = FORWARD if cmd[-2:] == ["-S", "FORWARD"] else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")


def _jump(xt: Xtables) -> list[str]:
    return xt.commands[-1][4:7]


def test_the_first_jump_to_a_named_chain_is_found_by_rule_number() -> None:
    xt = RecordingXtables()
    assert xt.jump_position(4, Hook.IP_FORWARD, {"ITM-obs2", "ITM-obs"}) == 2
    assert xt.jump_position(4, Hook.IP_FORWARD, {"ITM-obs2"}) == 3
    assert xt.jump_position(4, Hook.IP_FORWARD, {"ITM-none"}) is None


def test_a_decider_jump_goes_before_its_observers() -> None:
    xt = RecordingXtables()
    owner = Owner(1, 2, "dec")
    xt.install(4, "ITM-dec", Hook.IP_FORWARD, Interest(protocol="udp"), 4100, owner,
               before={"ITM-obs", "ITM-obs2"})  # fmt: skip
    assert _jump(xt) == ["-I", "FORWARD", "2"]
    assert xt.commands[-1][-2:] == ["-j", "ITM-dec"]


def test_without_observers_at_the_hook_the_jump_is_appended() -> None:
    xt = RecordingXtables()
    xt.install(4, "ITM-dec", Hook.IP_FORWARD, Interest(protocol="udp"), 4100, before={"ITM-x"})
    assert _jump(xt) == ["-A", "FORWARD", "-j"]
    xt.commands.clear()
    xt.install(4, "ITM-d2", Hook.IP_FORWARD, Interest(protocol="udp"), 4100)
    assert _jump(xt) == ["-A", "FORWARD", "-j"]
    assert not any("-S" in c for c in xt.commands), "nothing read when nothing to precede"
