"""itm_mod's packet path: callback order, class 0, NULL callbacks, interests,
priorities and verdicts, seen by real packets between namespaces."""

from __future__ import annotations

import subprocess

from libitm import Hook
from libitm.control import ItmControl
from tests.kernel import kit
from tests.kernel.kit import Topology

CALLBACKS = ["class", "log", "process", "update", "control"]


def _counters(label: str) -> dict[str, int]:
    with ItmControl() as ctl:
        return ctl.app(label).stats


def test_callbacks_in_the_papers_order(topo: Topology) -> None:
    with kit.modules(apps="label=a,hook=fwd,proto=udp,dport=5000,class=3"):
        kit.itm_attach(topo.router)
        kit.clear_events()
        assert kit.udp(topo, 1, 5000) == 1
        assert kit.events() == [("a", cb, 3) for cb in CALLBACKS]
        stats = _counters("a")
        assert stats["matched"] == 1 and stats["classified"] == 1 and stats["accept"] == 1


def test_class_zero_skips_process(topo: Topology) -> None:
    with kit.modules(apps="label=z,hook=fwd,proto=udp,dport=5000,class=0,verdict=drop"):
        kit.itm_attach(topo.router)
        kit.clear_events()
        # process_func would drop: with class 0 it must not run, so all arrive
        assert kit.udp(topo, 3, 5000) == 3
        assert [cb for _, cb, _ in kit.events()] == ["class", "log", "update", "control"] * 3
        stats = _counters("z")
        assert stats["classified"] == 0 and stats["drop"] == 0 and stats["accept"] == 3


def test_null_callbacks_are_allowed(topo: Topology) -> None:
    apps = (
        "label=n1,hook=fwd,proto=udp,dport=5000,null=class+update;"
        "label=n2,hook=fwd,proto=udp,dport=5000,class=2,null=log+process+control;"
        "label=n3,hook=fwd,proto=udp,dport=5000,null=class+log+process+update+control"
    )
    with kit.modules(apps=apps):
        kit.itm_attach(topo.router)
        kit.clear_events()
        assert kit.udp(topo, 1, 5000) == 1
        # n1 without class_func: class 0, so no process_func either
        assert kit.events() == [
            ("n1", "log", 0),
            ("n1", "control", 0),
            ("n2", "class", 2),
            ("n2", "update", 2),
        ]
        assert _counters("n3")["matched"] == 1


def test_interest_filtering_ipv4_and_ipv6(topo: Topology) -> None:
    apps = (
        "label=udp5000,hook=fwd,family=4,proto=udp,dport=5000;"
        "label=udp-range,hook=fwd,proto=udp,dport=5001-5003;"
        "label=v6only,hook=fwd,family=6,proto=udp;"
        "label=tcp,hook=fwd,proto=tcp,dport=6000;"
        "label=from-client,hook=fwd,family=4,src=10.77.1.0/24,dst=10.77.2.2/32;"
        "label=other-net,hook=fwd,family=4,src=10.99.0.0/16;"
        "label=sport,hook=fwd,proto=udp,sport=4444"
    )
    with kit.modules(apps=apps):
        kit.itm_attach(topo.router)
        assert kit.udp(topo, 5, 5000) == 5
        assert kit.udp(topo, 3, 5002) == 3
        assert kit.udp(topo, 2, 5004, sport=4444) == 2
        assert kit.udp(topo, 4, 5000, v6=True) == 4
        sent, got = kit.tcp(topo, 100_000, 6000)
        assert sent == got
        with ItmControl() as ctl:
            matched = {a.label: a.stats["matched"] for a in ctl.apps()}
        assert matched["udp5000"] == 5
        assert matched["udp-range"] == 3
        assert matched["v6only"] == 4
        assert matched["sport"] == 2
        assert matched["other-net"] == 0
        # every IPv4 packet client -> server: 5 + 3 + 2 UDP and the TCP data
        assert matched["from-client"] > 10
        assert matched["tcp"] > 2  # both directions' segments to/from port 6000
        # seen counts every packet of the application's family and protocol
        # at the hook, matched or not: the run lists are split by both, so an
        # IPv6 UDP application never sees an IPv4 or a TCP packet
        with ItmControl() as ctl:
            seen = {a.label: a.stats["seen"] for a in ctl.apps()}
        assert seen["other-net"] >= 5 + 3 + 2
        assert seen["v6only"] == 4


def test_priority_order_and_fifo_ties(topo: Topology) -> None:
    apps = (
        "label=late,hook=fwd,prio=20,proto=udp,null=log+update+control;"
        "label=first-tie,hook=fwd,prio=10,proto=udp,null=log+update+control;"
        "label=second-tie,hook=fwd,prio=10,proto=udp,null=log+update+control"
    )
    with kit.modules(apps=apps):
        kit.itm_attach(topo.router)
        kit.clear_events()
        assert kit.udp(topo, 1, 5000) == 1
        order = [label for label, cb, _ in kit.events() if cb == "class"]
        assert order == ["first-tie", "second-tie", "late"]
        with ItmControl() as ctl:
            assert [a.label for a in ctl.apps()] == ["first-tie", "second-tie", "late"]


def test_drop_drops_and_accept_passes_bytes_intact(topo: Topology) -> None:
    apps = (
        "label=dropper,hook=fwd,proto=udp,dport=5000,verdict=drop;"
        "label=after-drop,hook=fwd,prio=5,proto=udp,dport=5000;"
        "label=passer,hook=fwd,proto=tcp,verdict=accept"
    )
    with kit.modules(apps=apps):
        kit.itm_attach(topo.router)
        assert kit.udp(topo, 10, 5000) == 0
        assert kit.udp(topo, 10, 5001) == 10
        sent, got = kit.tcp(topo, 1_000_000, 6000)
        assert got == sent
        with ItmControl() as ctl:
            assert ctl.app("dropper").stats["drop"] == 10
            # a dropped packet reaches no later application
            assert ctl.app("after-drop").stats["matched"] == 0
            assert ctl.app("passer").stats["accept"] > 0


def test_stolen_packets_do_not_arrive_and_end_the_callbacks(topo: Topology) -> None:
    with kit.modules(apps="label=thief,hook=pre,proto=udp,dport=5000,verdict=stolen"):
        kit.itm_attach(topo.router)
        kit.clear_events()
        assert kit.udp(topo, 4, 5000) == 0
        assert [cb for _, cb, _ in kit.events()] == ["class", "log", "process"] * 4
        assert _counters("thief")["stolen"] == 4


def test_every_hook_point(topo: Topology) -> None:
    apps = ";".join(
        f"label={h},hook={h},family=4,proto=icmp,null=process"
        for h in ("pre", "in", "fwd", "out", "post")
    )
    with kit.modules(apps=apps):
        kit.itm_attach(topo.router)
        assert kit.ping(topo.client, topo.router4, 2)  # to the router: pre, in / out, post
        assert kit.ping(topo.client, topo.server4, 3)  # through it: pre, fwd, post
        with ItmControl() as ctl:
            m = {a.label: a.stats["matched"] for a in ctl.apps()}
        assert m == {"pre": 2 + 2 * 3, "in": 2, "out": 2, "fwd": 2 * 3, "post": 2 + 2 * 3}


def test_only_attached_namespaces_are_hooked(topo: Topology) -> None:
    with kit.modules(itm_params=("init_netns=0",), apps="label=fw,hook=fwd,proto=udp"):
        assert kit.udp(topo, 3, 5000) == 3
        assert _counters("fw")["seen"] == 0
        kit.itm_attach(topo.router)
        with kit.netns(topo.router), ItmControl() as ctl:
            assert ctl.netns_active()
        assert kit.udp(topo, 3, 5000) == 3
        assert _counters("fw")["matched"] == 3
        kit.itm_attach(topo.router, active=False)
        assert kit.udp(topo, 3, 5000) == 3
        assert _counters("fw")["matched"] == 3


def _nft_hooks(ns: str) -> set[tuple[str, str]]:
    """(family, hook) of every netfilter hook of itm_mod in namespace `ns`, as
    `nft list hooks` (nfnetlink_hook) shows them."""
    out = kit.sh("ip", "netns", "exec", ns, "nft", "list", "hooks")
    found, family, hook = set(), "", ""
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["family"]:
            family = words[1]
        elif words[:1] == ["hook"]:
            hook = words[1]
        elif "itm_nf_hook" in line:
            found.add((family, hook))
    return found


def _nft_lists_hooks(ns: str) -> bool:
    """Whether `nft list hooks` works here: it shows a base chain made for the probe
    (without nfnetlink_hook, nft prints nothing and exits 0)."""
    table = "table inet itm_probe {\n chain c {\n type filter hook prerouting priority 0;\n }\n}\n"
    in_ns = ["ip", "netns", "exec", ns, "nft"]
    subprocess.run([*in_ns, "-f", "-"], input=table, text=True, check=True)
    try:
        out = subprocess.run(
            [*in_ns, "list", "hooks"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.returncode == 0 and "prerouting" in out.stdout
    finally:
        kit.sh(*in_ns, "delete", "table", "inet", "itm_probe", check=False)


#: nft's names of itm_mod's families and hooks, to compare the two views
_NFT_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}
_NFT_HOOK = {
    Hook.PRE_ROUTING: "prerouting",
    Hook.IP_IN: "input",
    Hook.IP_FORWARD: "forward",
    Hook.IP_OUT: "output",
    Hook.POST_ROUTING: "postrouting",
}


def _itm_hooks(ns: str, nft: bool) -> set[tuple[str, str]]:
    """(family, hook) of itm_mod's netfilter hooks in `ns` as itm_mod reports them
    (netns-get), in nft's words; where `nft list hooks` works (nfnetlink_hook:
    Debian's 6.12, not 6.1) the kernel's own list must say the same."""
    with kit.netns(ns), ItmControl() as ctl:
        mine = {(_NFT_FAMILY[fam], _NFT_HOOK[hook]) for fam, hook in ctl.netns_hooks()}
    if nft:
        assert _nft_hooks(ns) == mine, (_nft_hooks(ns), mine)
    return mine


def test_hooks_exist_only_where_an_application_wants_them(topo: Topology) -> None:
    """No application at a hook point: no netfilter hook there, nothing to pay. An
    IPv4 application at forward: IPv4 forward only; one for both families at
    post-routing: IPv4 and IPv6 post-routing. The hooks go with the namespace's
    activation and with the applications."""
    kit.sh("modprobe", "nfnetlink_hook", check=False)  # a module on Debian's 6.12
    # Debian's 6.1 has no nfnetlink_hook (nft lists no hook): itm_mod's own report
    nft = _nft_lists_hooks(topo.router)
    with kit.modules():
        kit.itm_attach(topo.router)
        assert _itm_hooks(topo.router, nft) == set()
    apps = "label=v4,hook=fwd,family=4,proto=udp;label=any,hook=post,proto=tcp"
    with kit.modules(apps=apps):
        assert _itm_hooks(topo.router, nft) == set()  # not active in this namespace yet
        kit.itm_attach(topo.router)
        assert _itm_hooks(topo.router, nft) == {
            ("ip", "forward"),
            ("ip", "postrouting"),
            ("ip6", "postrouting"),
        }
        assert kit.udp(topo, 2, 5000) == 2
        assert _counters("v4")["matched"] == 2
        kit.itm_attach(topo.router, active=False)
        assert _itm_hooks(topo.router, nft) == set()
        kit.itm_attach(topo.router)
    if nft:  # unloaded with the applications (and itm_mod: nobody left to ask)
        assert _nft_hooks(topo.router) == set()
