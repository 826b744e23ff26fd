"""itm_mod's netns-hooks bit mask (spec/itm.yaml: bit family * 5 + hook) read as
the (family, Hook) pairs ItmControl.netns_hooks() gives."""

from __future__ import annotations

from libitm import Hook
from libitm.control import itm_spec as spec
from libitm.control.client import hooks_of_mask


def test_each_bit_is_one_family_and_hook() -> None:
    got = [hooks_of_mask(1 << bit) for bit in range(10)]
    want = [{(fam, hook)} for fam in ("ipv4", "ipv6") for hook in Hook]
    assert got == want


def test_a_mask_of_several_and_none() -> None:
    mask = 1 << 2 | 1 << 4 | 1 << 9  # IPv4 forward and post-routing, IPv6 post-routing
    assert hooks_of_mask(mask) == {
        ("ipv4", Hook.IP_FORWARD),
        ("ipv4", Hook.POST_ROUTING),
        ("ipv6", Hook.POST_ROUTING),
    }
    assert hooks_of_mask(0) == set()
    assert hooks_of_mask(1 << 10) == set()  # no such hook point: not invented


def test_the_attribute_is_in_the_generated_spec() -> None:
    assert spec.ITM_A_NETNS_HOOKS > spec.ITM_A_NETNS_ACTIVE
