"""Interest validation (before anything is installed) and matching."""

from __future__ import annotations

import ipaddress

import pytest

from libitm import Hook, Interest, ItmInfo, Packet
from tests.support.packets import icmp_echo, tcp, udp


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": 6, "src": "10.0.0.0/8"}, "IPv4 network but family is 6"),
        ({"family": 4, "dst": "fd00::/8"}, "IPv6 network but family is 4"),
        ({"src": "10.0.0.0/8", "dst": "fd00::/8"}, "family"),
        ({"protocol": "icmp", "dport": 80}, "has no ports"),
        ({"protocol": 47, "sport": (1, 2)}, "has no ports"),
        ({"protocol": "tcp", "dport": (90, 80)}, "lo > hi"),
        ({"protocol": "udp", "sport": 70000}, "out of range"),
        ({"protocol": "udp", "sport": (-1, 5)}, "out of range"),
        ({"protocol": "bogus"}, "unknown protocol"),
        ({"protocol": 300}, "0..255"),
        ({"family": 5}, "family must be"),
        ({"src": "10.0.0.300/8"}, "not an address"),
        ({"protocol": "icmpv6", "family": 4}, "never match"),
        ({"dport": "80"}, "port"),
    ],
)
def test_impossible_interests_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Interest(**kwargs)  # type: ignore[arg-type]


def test_normalisation() -> None:
    i = Interest(protocol="TCP", src="10.1.2.3/8", dport=80)
    assert i.protocol == 6 and i.family == 4
    assert i.src == ipaddress.ip_network("10.0.0.0/8")
    assert i.dport == (80, 80) and i.sport is None
    assert Interest(protocol="icmp", family=6).protocol == 58
    assert Interest(protocol=0).protocol is None
    assert "dport=80" in str(i)


def test_matching() -> None:
    web = Interest(protocol="tcp", dst="10.0.0.0/24", dport=(80, 443))
    assert web.matches(Packet(tcp("10.9.9.9", "10.0.0.5", 5555, 80)))
    assert web.matches(Packet(tcp("10.9.9.9", "10.0.0.5", 5555, 443)))
    assert not web.matches(Packet(tcp("10.9.9.9", "10.0.0.5", 5555, 444)))
    assert not web.matches(Packet(tcp("10.9.9.9", "10.0.1.5", 5555, 80)))
    assert not web.matches(Packet(udp("10.9.9.9", "10.0.0.5", 5555, 80)))
    assert not web.matches(Packet(tcp("fd00::1", "fd00::2", 5555, 80)))
    anyport = Interest(dport=53)
    assert anyport.matches(Packet(udp("10.0.0.1", "10.0.0.2", 1, 53)))
    assert anyport.matches(Packet(tcp("fd00::1", "fd00::2", 1, 53)))
    assert not anyport.matches(Packet(icmp_echo("10.0.0.1", "10.0.0.2")))
    icmp = Interest(protocol="icmp")
    assert icmp.matches(Packet(icmp_echo("10.0.0.1", "10.0.0.2")))
    assert icmp.matches(Packet(icmp_echo("fd00::1", "fd00::2")))
    assert Interest().matches(Packet(udp("fd00::1", "fd00::2", 1, 2)))


def test_xtables_matches() -> None:
    i = Interest(protocol="tcp", src="10.0.0.0/8", dport=(80, 90))
    assert i.xtables_matches(4) == [["-p", "6", "-s", "10.0.0.0/8", "--dport", "80:90"]]
    assert i.xtables_matches(6) == []
    both = Interest(sport=5)
    assert both.families() == (4, 6)
    assert [m[1] for m in both.xtables_matches(6)] == ["tcp", "udp"]
    assert Interest(protocol="icmp").xtables_matches(6) == [["-p", "ipv6-icmp"]]
    assert Interest().xtables_matches(4) == [[]]


def test_itminfo_validation() -> None:
    with pytest.raises(ValueError, match="label"):
        ItmInfo("bad label!")
    with pytest.raises(ValueError, match="label"):
        ItmInfo("x" * 32)
    with pytest.raises(TypeError):
        ItmInfo("ok", class_func=42)  # type: ignore[arg-type]


def test_hook_names() -> None:
    assert Hook.parse("post_routing") is Hook.POST_ROUTING
    assert Hook.parse("ip_in") is Hook.IP_IN
    assert Hook.parse("PREROUTING") is Hook.PRE_ROUTING
    assert Hook.parse(2) is Hook.IP_FORWARD
    assert Hook.IP_OUT.xtables_chain == "OUTPUT"
    with pytest.raises(ValueError, match="unknown hook"):
        Hook.parse("sideways")


def test_icmpv6_implies_family_6() -> None:
    i = Interest(protocol="icmpv6")
    assert i.family == 6 and i.families() == (6,)
    assert i.xtables_matches(6) == [["-p", "ipv6-icmp"]]
    assert not i.matches(Packet(icmp_echo("10.0.0.1", "10.0.0.2")))


def test_python_matching_agrees_with_rules_for_single_apps() -> None:
    """The nfqueue fast path trusts the rules for a lone app: check the two agree on
    every family/protocol combination the rules can express."""
    pkts = [
        Packet(tcp("10.0.0.1", "10.0.0.2", 1, 80)),
        Packet(udp("10.0.0.1", "10.0.0.2", 1, 80)),
        Packet(icmp_echo("10.0.0.1", "10.0.0.2")),
        Packet(tcp("fd00::1", "fd00::2", 1, 80)),
        Packet(udp("fd00::1", "fd00::2", 1, 80)),
        Packet(icmp_echo("fd00::1", "fd00::2")),
    ]
    names = {1: "icmp", 6: "6", 17: "17", 58: "ipv6-icmp"}
    for fam in (None, 4, 6):
        for proto in (None, "tcp", "udp", "icmp", "icmpv6"):
            try:
                i = Interest(family=fam, protocol=proto)
            except ValueError:
                continue
            for p in pkts:
                rules = i.xtables_matches(p.version)
                by_rule = any(not r or r[1] == names.get(p.proto, str(p.proto)) for r in rules)
                assert by_rule == i.matches(p), (fam, proto, p)
