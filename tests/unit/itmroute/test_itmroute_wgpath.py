"""The WireGuard data path's glue with fake WireGuard, rtnetlink and nftables
(no root, no WireGuard): keys derived the same way on every ITM, the device
and its peers, endpoints set only when a path changes (or WireGuard moved one
to another path), what the counters feed the path tables, the relays'
forwarding and its refusals, errors, the Router and ``itmroute show``."""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from itmroute import wgkeys, wgpath
from itmroute.cli import format_table
from itmroute.config import Config, ConfigError, parse_config
from itmroute.kernelpath import DatapathError
from itmroute.nftsession import NftError, _first_error
from itmroute.paths import DestState
from itmroute.wgpath import DEVICE, WireguardPath
from tests.support.itmroute_offline import DOC as BASE_DOC
from tests.support.itmroute_offline import KEY, Clock, OfflineRouter, path_tables

DOC: dict[str, Any] = {**BASE_DOC, "datapath": "wireguard"}
D1 = ipaddress.ip_address("10.77.200.1")
D2 = ipaddress.ip_address("10.78.0.1")


def config(**extra: Any) -> Config:
    return parse_config({**DOC, **extra})


def pub(cfg: Config, addr: str) -> str:
    return wgkeys.b64(wgkeys.public_key(wgkeys.private_key(cfg.key, socket.inet_aton(addr))))


# ------------------------------------------------------------------ fakes
class Attrs(dict[str, Any]):
    """A pyroute2 message: ``get_attr`` of its keys."""

    def get_attr(self, name: str) -> Any:
        return self.get(name)


class FakeWg:
    def __init__(self) -> None:
        self.sets: list[dict[str, Any]] = []
        self.peers: dict[str, Attrs] = {}
        self.closed = False
        self.fail: Exception | None = None

    def set(self, interface: str, **kw: Any) -> None:
        assert interface == DEVICE
        if self.fail is not None:
            raise self.fail
        self.sets.append({k: v for k, v in kw.items() if v is not None})

    def info(self, interface: str) -> list[Attrs]:
        return [Attrs(WGDEVICE_A_PEERS=list(self.peers.values()))]

    def report(self, key: str, endpoint: tuple[str, int], rx: int, tx: int) -> None:
        self.peers[key] = Attrs(
            WGPEER_A_PUBLIC_KEY=key.encode(),
            WGPEER_A_ENDPOINT={"addr": endpoint[0], "port": endpoint[1]},
            WGPEER_A_RX_BYTES=rx,
            WGPEER_A_TX_BYTES=tx,
            WGPEER_A_LAST_HANDSHAKE_TIME={"tv_sec": 1, "tv_nsec": 0},
        )

    def endpoints(self) -> list[tuple[str, tuple[str, int]]]:
        out = []
        for s in self.sets:
            p = s.get("peer")
            if p is not None and "endpoint_addr" in p:
                out.append((p["public_key"], (p["endpoint_addr"], p["endpoint_port"])))
        self.sets.clear()
        return out

    def close(self) -> None:
        self.closed = True


class FakeLinks:
    def __init__(self, leftover: bool = False) -> None:
        self.devices: dict[str, int] = {DEVICE: 9} if leftover else {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.rules: list[dict[str, Any]] = [{"family": socket.AF_INET}] if leftover else []
        self.closed = False
        self.add_error: Exception | None = None

    def link(self, command: str, **kw: Any) -> Any:
        self.calls.append(("link", command, kw))
        if command == "add":
            if self.add_error is not None:
                raise self.add_error
            self.devices[kw["ifname"]] = 7
        elif command == "del":
            self.devices = {n: i for n, i in self.devices.items() if i != kw["index"]}
        elif command == "get":
            return [Attrs(IFLA_STATS64={"rx_errors": 3})]
        return None

    def link_lookup(self, **kw: Any) -> list[int]:
        i = self.devices.get(kw["ifname"])
        return [] if i is None else [i]

    def addr(self, command: str, **kw: Any) -> None:
        self.calls.append(("addr", command, kw))

    def rule(self, command: str, **kw: Any) -> None:
        self.calls.append(("rule", command, kw))
        if command == "add":
            self.rules.append(kw)
        elif command == "del":
            mine = [r for r in self.rules if r["family"] == kw["family"]]
            if not mine:
                raise OSError(errno.ENOENT, "No such file or directory")
            self.rules.remove(mine[0])

    def route(self, command: str, **kw: Any) -> None:
        self.calls.append(("route", command, kw))

    def close(self) -> None:
        self.closed = True


class FakeTable:
    def __init__(self, family: str, name: str, fail: NftError | None = None) -> None:
        if fail is not None:
            raise fail
        assert (family, name) == ("inet", "itmroute")
        self.applied: list[str] = []
        self.closed = False
        self.refuse: str | None = None
        self.alive = True

    def apply(self, commands: list[str]) -> None:
        if self.refuse is not None:
            raise NftError(self.refuse)
        self.applied.extend(commands)

    def close(self) -> None:
        self.closed = True


class Lab:
    """A WireguardPath on fakes."""

    def __init__(self, cfg: Config | None = None, *, leftover: bool = False, forward: str = "1"):
        self.cfg = cfg or config()
        self.wg = FakeWg()
        self.links = FakeLinks(leftover)
        self.tables: list[FakeTable] = []
        self.table_error: NftError | None = None
        self.sysctls: list[str] = []
        self.forward = forward
        self.dests = path_tables(self.cfg)
        self.clock = Clock()

        def table(family: str, name: str) -> FakeTable:
            t = FakeTable(family, name, self.table_error)
            self.tables.append(t)
            return t

        def sysctl(path: str) -> str:
            self.sysctls.append(path)
            return self.forward

        self.options: dict[str, Any] = {
            "wg": lambda: self.wg,
            "links": lambda: self.links,
            "table": table,
            "sysctl": sysctl,
        }
        self.path = WireguardPath(self.cfg, self.dests, self.clock, **self.options)

    @property
    def st(self) -> DestState:
        return self.dests[0][1]


# ------------------------------------------------------------------ keys
def test_every_itm_derives_the_same_keys_and_ports() -> None:
    key = bytes.fromhex(KEY)
    a, d = socket.inet_aton("10.77.100.1"), socket.inet_aton("10.77.200.1")
    pa = wgkeys.private_key(key, a)
    assert pa == wgkeys.private_key(key, a) != wgkeys.private_key(key, d)
    assert pa != wgkeys.private_key(bytes(32), a)  # another overlay, other keys
    expected = X25519PrivateKey.from_private_bytes(pa).public_key().public_bytes_raw()
    assert wgkeys.public_key(pa) == expected and len(expected) == 32
    assert wgkeys.preshared_key(key) != wgkeys.preshared_key(bytes(32))
    port = wgkeys.forward_port(7178, d)
    assert port == wgkeys.forward_port(7178, d) and 7179 <= port <= 7178 + wgkeys.FORWARD_PORTS
    ports = {wgkeys.forward_port(7178, bytes([10, 0, i // 256, i % 256])) for i in range(4096)}
    assert min(ports) == 7179 and max(ports) == 7178 + 4096  # the whole range is used
    v6 = ipaddress.ip_address("fd77:200::1").packed
    assert 7179 <= wgkeys.forward_port(7178, v6) <= 7178 + 4096
    # pinned: an ITM built from another version of this code computes the same
    assert wgkeys.forward_port(7178, d) == wgkeys.forward_port(7178, bytes(d))
    assert wgkeys.b64(bytes(32)) == "A" * 43 + "="


# ------------------------------------------------------------------ start, close
def test_start_makes_the_device_its_peers_routes_and_steering() -> None:
    lab = Lab()
    lab.path.start()
    links, wg, cfg = lab.links, lab.wg, lab.cfg
    assert ("link", "add", {"ifname": DEVICE, "kind": "wireguard"}) in links.calls
    assert ("addr", "add", {"index": 7, "address": "10.77.100.1", "prefixlen": 32}) in links.calls
    dev = wg.sets[0]
    assert dev["listen_port"] == 7178 and dev["fwmark"] == cfg.mark
    assert dev["private_key"] == wgkeys.b64(wgkeys.private_key(cfg.key, cfg.address.packed))
    peers = {s["peer"]["public_key"]: s["peer"] for s in wg.sets[1:]}
    p1 = peers[pub(cfg, "10.77.200.1")]
    assert p1["allowed_ips"] == ["10.77.200.0/24", "fd77:200::/48"]  # both prefixes, one peer
    assert (p1["endpoint_addr"], p1["endpoint_port"]) == ("10.77.200.1", 7178)  # direct
    assert p1["preshared_key"] == wgkeys.b64(wgkeys.preshared_key(cfg.key))
    assert peers[pub(cfg, "10.78.0.1")]["allowed_ips"] == ["10.78.0.0/16"]
    mark = 0x10000 | cfg.mark
    rules = [kw for what, cmd, kw in links.calls if what == "rule" and cmd == "add"]
    assert {r["family"] for r in rules} == {socket.AF_INET, socket.AF_INET6}
    assert all(r["fwmark"] == mark and r["table"] == mark for r in rules)
    routes = [kw["dst"] for what, cmd, kw in links.calls if what == "route"]
    assert routes == ["10.77.200.0/24", "fd77:200::/48", "10.78.0.0/16"]
    nft = lab.tables[0].applied
    assert "add element inet itmroute dst4 { 10.77.200.0/24, 10.78.0.0/16 }" in nft
    assert "add element inet itmroute dst6 { fd77:200::/48 }" in nft
    assert any(f"meta mark != {cfg.mark:#x} ip daddr @dst4" in c for c in nft)
    assert any("masquerade" in c and "7179-11274" in c for c in nft)
    lab.path.close()
    assert links.devices == {} and links.rules == [] and links.closed
    assert lab.tables[0].closed and wg.closed


def test_the_device_has_an_ipv4_address_in_every_overlay() -> None:
    assert wgpath.device_address(config()) == "10.77.100.1"
    six = {"neighbours": {}, "destinations": [{"prefix": "10.9.0.0/16", "itm": "fd77:9::1"}]}
    v6 = [wgpath.device_address(config(**six, address=f"fd77::{i:x}")) for i in range(1, 300)]
    link_local = ipaddress.IPv4Network("169.254.0.0/16")
    assert all(ipaddress.IPv4Address(a) in link_local for a in v6)
    assert not any(a.startswith(("169.254.0.", "169.254.255.")) for a in v6)  # RFC 3927
    assert len(set(v6)) > 250  # spread


def test_a_relay_without_destinations_makes_no_device() -> None:
    lab = Lab(parse_config({"address": "10.77.1.2", "datapath": "wireguard", "key": KEY}))
    lab.path.start()
    assert not any(what == "link" and cmd == "add" for what, cmd, _ in lab.links.calls)
    assert lab.wg.sets == [] and any("fwd4" in c for c in lab.tables[0].applied)
    lab.path.poll()  # nothing to read
    assert lab.path.push(100.0) == 0
    lab.path.close()


def test_what_a_killed_daemon_left_is_removed_first(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(leftover=True)
    with caplog.at_level(logging.INFO, logger="itmroute"):
        lab.path.start()
    assert ("link", "del", {"index": 9}) in lab.links.calls
    assert f"removing {DEVICE}, left by an earlier itmroute daemon" in caplog.text
    assert len(lab.links.rules) == 2  # the stale one gone, ours (IPv4, IPv6) in place
    lab.path.close()


def test_another_daemons_table_is_one_line_and_nothing_is_touched() -> None:
    lab = Lab()
    lab.table_error = NftError(
        "table inet itmroute: Error: Could not process rule: Operation not permitted"
    )
    with pytest.raises(DatapathError, match="belongs to another process") as e:
        lab.path.start()
    assert "\n" not in str(e.value)
    assert lab.links.calls == [] and lab.wg.sets == []


def test_a_kernel_without_wireguard_is_a_configuration_error_and_all_is_undone() -> None:
    lab = Lab()
    lab.links.add_error = OSError(errno.EOPNOTSUPP, "Operation not supported")
    with pytest.raises(ConfigError, match="this kernel has no WireGuard") as e:
        lab.path.start()
    assert e.value.code == 2
    assert lab.tables[0].closed and lab.links.closed
    other = Lab()
    other.links.add_error = OSError(errno.EPERM, "Operation not permitted")
    with pytest.raises(DatapathError, match="cannot create device itmroute0: Operation not"):
        other.path.start()
    assert other.tables[0].closed


def test_a_refused_route_is_one_line_and_all_is_undone() -> None:
    lab = Lab()

    def refuse(command: str, **kw: Any) -> None:
        raise OSError(errno.EEXIST, "File exists")

    lab.links.route = refuse  # type: ignore[method-assign]
    with pytest.raises(DatapathError, match=r"^WireGuard data path: File exists$"):
        lab.path.start()
    assert lab.links.devices == {} and lab.links.rules == [] and lab.tables[0].closed


def test_nested_prefixes_make_one_interval() -> None:
    lab = Lab(
        config(
            destinations=[
                {"prefix": "10.0.0.0/8", "itm": "10.77.200.1"},
                {"prefix": "10.1.0.0/16", "itm": "10.78.0.1"},
            ]
        )
    )
    lab.path.start()
    assert "add element inet itmroute dst4 { 10.0.0.0/8, 10.1.0.0/16 }" in lab.tables[0].applied
    assert any(
        "dst4 { type ipv4_addr; flags interval; auto-merge; }" in c for c in lab.tables[0].applied
    )
    lab.path.close()


def test_refused_steering_rules_are_undone() -> None:
    lab = Lab()
    orig = lab.options["table"]

    def refusing(family: str, name: str) -> FakeTable:
        t: FakeTable = orig(family, name)
        t.refuse = "Error: Could not process rule: No such file or directory"
        return t

    lab.path = WireguardPath(lab.cfg, lab.dests, lab.clock, **{**lab.options, "table": refusing})
    with pytest.raises(DatapathError, match="steering rules: Error: Could not process"):
        lab.path.start()
    assert lab.links.devices == {} and lab.links.rules == [] and lab.tables[0].closed


# ------------------------------------------------------------------ endpoints
def test_an_endpoint_is_set_only_when_the_path_changes() -> None:
    lab = Lab()
    lab.path.start()
    lab.wg.sets.clear()
    assert lab.path.push(100.0) == 0  # direct, as set at start
    lab.st.current = "r1"
    assert lab.path.push(100.0) == 1
    port = wgkeys.forward_port(7178, D1.packed)
    assert lab.wg.endpoints() == [(pub(lab.cfg, "10.77.200.1"), ("10.77.1.2", port))]
    assert lab.path.push(100.1) == 0
    lab.st.current = "direct"
    lab.path.push(100.2)
    assert lab.wg.endpoints() == [(pub(lab.cfg, "10.77.200.1"), ("10.77.200.1", 7178))]
    lab.path.close()


def test_an_endpoint_that_wireguard_moved_to_another_path_is_set_back() -> None:
    lab = Lab()
    lab.path.start()
    lab.st.current = "r1"
    lab.path.push(100.0)
    lab.wg.sets.clear()
    key = pub(lab.cfg, "10.77.200.1")
    # the answers come back through r1's NAT from another port: the same path
    lab.wg.report(key, ("10.77.1.2", 7178), 100, 0)
    lab.path.poll()
    assert lab.path.push(100.1) == 0 and lab.path.stats["endpoint_moved"] == 0
    # ... while the peer talks: once it was quiet for ROAM_QUIET, the NAT's
    # mapping may be gone, ours is set back
    lab.clock.t += wgpath.ROAM_QUIET + 1
    lab.path.poll()
    assert lab.path.push(lab.clock.t) == 1 and lab.path.stats["endpoint_moved"] == 1
    lab.wg.sets.clear()
    lab.wg.report(key, ("10.77.1.2", 7178), 200, 0)  # it talks again, through the NAT
    lab.path.poll()
    assert lab.path.push(lab.clock.t) == 0
    # the peer's packets came by r2: set ours back
    lab.wg.report(key, ("10.77.2.2", 7178), 300, 0)
    lab.path.poll()
    assert lab.path.push(lab.clock.t) == 1 and lab.path.stats["endpoint_moved"] == 2
    assert lab.wg.endpoints()[0][1][0] == "10.77.1.2"
    lab.path.close()


def test_a_refused_endpoint_is_logged_and_set_again(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab()
    lab.path.start()
    lab.st.current = "r2"
    lab.wg.fail = OSError(errno.ENODEV, "No such device")
    with caplog.at_level(logging.WARNING, logger="itmroute"):
        assert lab.path.push(100.0) == 0
    assert "WireGuard endpoint of 10.77.200.1 failed" in caplog.text
    lab.wg.fail = None
    assert lab.path.push(100.1) == 1
    lab.path.close()


# ------------------------------------------------------------------ counters in
def test_bytes_out_and_in_feed_the_path_table_but_keepalives_do_not() -> None:
    lab = Lab()
    lab.path.start()
    key = pub(lab.cfg, "10.77.200.1")
    lab.wg.report(key, ("10.77.200.1", 7178), 0, 32)  # a keepalive out
    lab.path.poll()
    assert not lab.st.active and lab.st.last_out < 0
    lab.clock.t = 101.0
    lab.wg.report(key, ("10.77.200.1", 7178), 0, 32 + 1500)
    lab.path.poll()
    assert lab.st.active and lab.st.last_out == 101.0 and lab.st.last_in < 0
    lab.clock.t = 102.0
    lab.wg.report(key, ("10.77.200.1", 7178), 200, 1532)
    lab.path.poll()
    assert lab.st.last_in == 102.0 and lab.st.last_out == 101.0
    snap = lab.path.snapshot()["wireguard"]
    assert snap["rx_errors"] == 3
    assert snap["peers"]["10.77.200.1"]["tx_bytes"] == 1532
    assert snap["peers"]["10.77.200.1"]["endpoint"] == "10.77.200.1:7178"
    lab.path.close()


# ------------------------------------------------------------------ relaying
def test_a_relay_forwards_what_it_relays_probes_for() -> None:
    lab = Lab()
    lab.path.start()
    port = wgkeys.forward_port(7178, D1.packed)
    assert lab.path.forward(D1.packed) and lab.path.forward(D1.packed)  # once
    element = f"add element inet itmroute fwd4 {{ {port} : 10.77.200.1 . 7178 }}"
    assert lab.tables[0].applied.count(element) == 1
    assert lab.sysctls == ["net/ipv4/ip_forward"]
    v6 = ipaddress.ip_address("fd77:200::1")
    assert lab.path.forward(v6.packed)
    assert lab.sysctls[-1] == "net/ipv6/conf/all/forwarding"
    assert lab.path.snapshot()["wireguard"]["forwarding"][str(port)] == "10.77.200.1"
    lab.path.close()


def test_a_relay_refuses_what_it_cannot_forward(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(forward="0")
    lab.path.start()
    with caplog.at_level(logging.WARNING, logger="itmroute"):
        assert not lab.path.forward(D1.packed) and not lab.path.forward(D1.packed)
    assert caplog.text.count("net.ipv4.ip_forward is not 1") == 1  # said once
    lab.path.close()
    # two destinations on one port: the first keeps it
    lab = Lab()
    lab.path.start()
    port = wgkeys.forward_port(7178, D1.packed)
    other = next(
        bytes([10, 9, i // 256, i % 256])
        for i in range(65536)
        if wgkeys.forward_port(7178, bytes([10, 9, i // 256, i % 256])) == port
    )
    assert lab.path.forward(D1.packed) and not lab.path.forward(other)
    assert lab.path.forwarding == {port: D1}
    lab.tables[0].refuse = "Error: Could not process rule: No buffer space available"
    assert not lab.path.forward(D2.packed)
    lab.path.close()


def test_a_steering_table_whose_nft_died_is_made_again(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab()
    lab.path.start()
    assert lab.path.forward(D1.packed)
    lab.tables[0].alive = False  # someone killed nft -i: packets go plain meanwhile
    with caplog.at_level(logging.WARNING, logger="itmroute"):
        lab.path.poll()
    assert "the steering table went with its nft; making it again" in caplog.text
    assert len(lab.tables) == 2 and lab.tables[0].closed
    again = lab.tables[1].applied
    assert any("dst4" in c for c in again) and any(
        c.startswith("add element inet itmroute fwd4") for c in again
    )
    assert lab.path.stats["table_restored"] == 1 and lab.path.forwarding
    lab.tables[1].alive = False
    lab.clock.t += 1.0
    lab.table_error = NftError("cannot run nft: No such file or directory")
    with caplog.at_level(logging.WARNING, logger="itmroute"):
        lab.path.poll()  # logged, tried again at the next poll
    assert "steering table failed" in caplog.text
    lab.table_error = None
    lab.path.poll()  # not within a second of the last try
    assert lab.path.stats["table_restored"] == 1
    lab.clock.t += 1.0
    lab.path.poll()
    assert lab.path.stats["table_restored"] == 2
    lab.path.close()


# ------------------------------------------------------------------ the Router
def test_a_router_on_the_wireguard_path_steers_relays_and_shows_it() -> None:
    lab = Lab()
    r = OfflineRouter(lab.cfg, clock=lab.clock, wg_options=lab.options)
    try:
        assert r.datapath == "wireguard" and r.loop.applications == []  # no capture
        assert r.wg is not None and r.wg.dests is r.dests  # the Router's path tables
        st = r.dest_for(D1.packed)
        assert st is not None
        assert len(lab.wg.endpoints()) == 2  # both peers direct at start
        st.current = "r1"
        r.tick()
        port = wgkeys.forward_port(7178, D1.packed)
        assert lab.wg.endpoints() == [(pub(lab.cfg, "10.77.200.1"), ("10.77.1.2", port))]
        snap = json.loads(json.dumps(r.snapshot()))
        text = format_table(snap)
        assert "data path: wireguard" in text
        assert f"peer 10.77.200.1: endpoint 10.77.1.2:{port}" in text
        assert "forged datagrams are dropped uncounted" in text
    finally:
        r.close()
    assert lab.tables[0].closed and lab.links.devices == {}


def test_a_relay_router_relays_only_probes_it_can_forward() -> None:
    from itmroute import wire

    cfg = parse_config({"address": "10.77.1.2", "datapath": "wireguard", "key": KEY})
    lab = Lab(cfg, forward="0")
    r = OfflineRouter(cfg, clock=lab.clock, wg_options=lab.options)
    try:
        probe = wire.Probe(wire.PROBE, 1, socket.inet_aton("10.77.100.1"), D1.packed)
        r._on_probe(probe, ("10.77.100.1", 7177))
        assert r.counters["probes_refused"] == 1 and r.counters["probes_relayed"] == 0
        lab.forward = "1"
        r._on_probe(probe, ("10.77.100.1", 7177))
        assert r.counters["probes_relayed"] == 1
    finally:
        r.close()


def test_nfts_error_is_one_line_naming_the_command() -> None:
    err = (
        b"Error: unknown chain hook\n"
        b"add chain inet t bad { type filter hook nosuch priority 0; }\n"
        b"                                         ^^^^^^\n"
    )
    assert _first_error(err) == (
        "Error: unknown chain hook (in: add chain inet t bad { type filter hook nosuch"
        " priority 0; })"
    )
    assert _first_error(b"") == "nft -i failed"
    assert wgpath.steer_mark(config()) == 0x10000 | config().mark
