"""The WireGuard data path of a :class:`~itmroute.daemon.Router`: a stock kernel carries it.

With ``datapath: wireguard`` the daemon captures nothing and needs none of our
modules: the kernel's own WireGuard device carries the packets to the overlay
prefixes, end to end between the source ITM and the destination ITM, and the
daemon steers it. Every ITM of the overlay runs this data path.

* **Device.** One WireGuard device, :data:`DEVICE`, listening on ``wg_port``,
  its own packets marked with the daemon's mark. Its private key, its peers'
  public keys and their preshared key are derived from the overlay key
  (:mod:`itmroute.wgkeys`). Its peers are the destination ITMs; a peer's
  allowed IPs are the prefixes it serves (those it may send from, and those
  sent to it). An ITM thus accepts WireGuard traffic only from the ITMs its own
  configuration names as destinations: the overlay is configured both ways.
* **Steering.** A table of this process's own (:mod:`itmroute.nftsession`)
  marks packets to the destination prefixes (not the daemon's own, nor
  WireGuard's) with :func:`steer_mark`; a policy rule sends marked packets to a
  routing table that routes the prefixes into the device. When the daemon
  ends, however it ends, that table goes with it and packets take the plain
  route (fail-open); a clean exit also removes the device, rules and routes.
* **Paths.** The path a destination ITM's packets take is its peer's endpoint:
  the ITM itself (``address:wg_port``) for the direct path, or a relay's
  forwarding port for it (:func:`itmroute.wgkeys.forward_port`). A switch is
  one endpoint change; WireGuard's session does not depend on the endpoint.
  WireGuard moves a peer's endpoint to wherever its last packet came from, so
  every poll sets the endpoint of each peer back to the path chosen here when
  it moved.
* **Relays.** A relay forwards the outer UDP datagrams: its table DNATs a
  forwarding port to the destination ITM's WireGuard port and masquerades the
  source, and conntrack takes the answers back. It learns a destination
  when it relays a probe to it (:meth:`WireguardPath.forward`), and relays
  no probe whose destination it cannot forward to (forwarding off, a port
  taken by another destination), so that no sender picks a path that would
  drop its packets. The relay needs no key.
* **What the path tables are fed.** Each poll reads the peers' byte counters:
  bytes out (beyond a keepalive) are activity (``note_out``), bytes in are
  ``note_in``. There is no itmRoute header on this path, so no receipts and
  no notices: the path in use is watched by probes alone.

What it does not do (docs/itmroute.md): a relay does not take one off the
inner TTL (it forwards the outer datagram); WireGuard copies the inner ECN
bits to the outer header but not the DSCP; a forged datagram is dropped by
WireGuard without being counted (it counts only what fails after
decryption, ``rx_errors``).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import wgkeys
from .config import Config, ConfigError, Destination
from .kernelpath import DatapathError
from .nftsession import NftError, OwnedTable
from .paths import DestState

log = logging.getLogger("itmroute")

#: the WireGuard device of the data path (one per network namespace)
DEVICE = "itmroute0"
#: the nftables table of the daemon (family inet, ``flags owner``)
TABLE = "itmroute"
#: the policy rules' priority (before the main table's 32766)
RULE_PRIORITY = 7177
#: seconds without a byte from a peer after which an endpoint that WireGuard took
#: from the peer's packets through a relay's NAT is not trusted any more (the
#: relay's conntrack forgets an unanswered UDP mapping after 30 s)
ROAM_QUIET = 25.0
#: bytes of WireGuard's keepalive (header and tag, no payload): a peer's
#: counter growing by less than the smallest data packet is not traffic
MIN_DATA_BYTES = 64

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def steer_mark(cfg: Config) -> int:
    """The firewall mark (and routing table) of packets steered into the device."""
    return 0x10000 | cfg.mark


def device_address(cfg: Config) -> str:
    """The IPv4 address the device carries: the ITM's overlay address, or in an
    overlay of IPv6 ITMs one of IPv4's link-local addresses (169.254.1.0 -
    169.254.254.255, RFC 3927) picked by the ITM's address. It is never a
    packet's source: the route that chose the source was the plain one."""
    if cfg.address.version == 4:
        return str(cfg.address)
    h = int.from_bytes(hashlib.blake2s(cfg.address.packed, digest_size=2).digest(), "big")
    return f"169.254.{1 + h % 254}.{h >> 8}"


class WgApi(Protocol):
    """What :class:`WireguardPath` needs of :class:`pyroute2.WireGuard`."""

    def set(
        self,
        interface: str,
        listen_port: int | None = None,
        fwmark: int | None = None,
        private_key: str | None = None,
        peer: dict[str, Any] | None = None,
    ) -> Any: ...

    def info(self, interface: str) -> Any: ...

    def close(self) -> None: ...


class LinkApi(Protocol):
    """What :class:`WireguardPath` needs of :class:`pyroute2.IPRoute`."""

    def link(self, command: str, **kwarg: Any) -> Any: ...

    def link_lookup(self, **kwarg: Any) -> list[int]: ...

    def addr(self, command: str, **kwarg: Any) -> Any: ...

    def rule(self, command: str, **kwarg: Any) -> Any: ...

    def route(self, command: str, **kwarg: Any) -> Any: ...

    def close(self) -> None: ...


class TableApi(Protocol):
    """What :class:`WireguardPath` needs of :class:`~itmroute.nftsession.OwnedTable`."""

    @property
    def alive(self) -> bool: ...

    def apply(self, commands: list[str]) -> None: ...

    def close(self) -> None: ...


@dataclass
class Peer:
    """One destination ITM: its WireGuard identity and where its packets go."""

    itm: Address
    state: DestState
    public: str
    prefixes: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    endpoint: tuple[str, int] | None = None  # last set
    rx: int = 0
    tx: int = 0
    handshake: float = 0.0  # seconds since the epoch, 0: never
    heard: float = -1e9  # when its bytes in last grew (the Router's clock)


def _sysctl(path: str) -> str | None:
    try:
        return Path("/proc/sys", path).read_text().strip()
    except OSError:
        return None


class WireguardPath:
    """Steers the kernel's WireGuard for one Router: peers, endpoints, relaying."""

    def __init__(
        self,
        cfg: Config,
        dests: list[tuple[Destination, DestState]],
        clock: Callable[[], float],
        *,
        wg: Callable[[], WgApi] | None = None,
        links: Callable[[], LinkApi] | None = None,
        table: Callable[[str, str], TableApi] | None = None,
        sysctl: Callable[[str], str | None] = _sysctl,
    ) -> None:
        """``dests``: the Router's served prefixes and their path tables (one per
        destination ITM); ``wg``, ``links``, ``table`` open pyroute2's WireGuard
        and IPRoute sockets and the owned nftables table (tests give fakes).
        Nothing is changed before :meth:`start`."""
        self.cfg = cfg
        self.clock = clock
        self.mark = steer_mark(cfg)
        self.wg_port = cfg.wg_port
        self._open_wg = wg or _pyroute2_wg
        self._open_links = links or _pyroute2_links
        self._open_table = table or OwnedTable
        self._sysctl = sysctl
        self.peers: dict[str, Peer] = {}
        for d, st in dests:
            key = wgkeys.b64(wgkeys.public_key(wgkeys.private_key(cfg.key, d.itm.packed)))
            peer = self.peers.get(key)
            if peer is None:
                peer = self.peers[key] = Peer(d.itm, st, key, [])
            peer.prefixes.append(d.prefix)
        self.dests = dests
        #: forwarding port -> the destination ITM a relay forwards it to
        self.forwarding: dict[int, Address] = {}
        self._refused: set[Address] = set()
        self.stats: dict[str, int] = dict.fromkeys(
            ("endpoint_sets", "endpoint_moved", "rx_errors", "table_restored"), 0
        )
        self.errors = 0
        self._wg: WgApi | None = None
        self._links: LinkApi | None = None
        self._table: TableApi | None = None
        self._index: int | None = None
        self._started = False
        self._retry_at = 0.0

    # ------------------------------------------------------------ start, stop
    def start(self) -> None:
        """Take the namespace's table (another daemon's: :class:`DatapathError`),
        clear what a killed predecessor left, create the device and its peers,
        route the prefixes into it and start steering. On an error everything
        made so far is removed."""
        try:
            try:
                self._table = self._open_table("inet", TABLE)
            except NftError as e:
                raise DatapathError(_describe_table(e)) from None
            self._links = self._open_links()
            try:
                self._clear()
                if self.peers:  # a relay with no destinations only forwards
                    self._make_device()
                    self._route()
            except _nl_errors() as e:
                raise DatapathError(f"WireGuard data path: {_strerror(e)}") from None
            self._steer()
        except BaseException:
            self.close()
            raise
        self._started = True

    def _make_device(self) -> None:
        links = self._links
        assert links is not None
        try:
            links.link("add", ifname=DEVICE, kind="wireguard")
        except _nl_errors() as e:
            if getattr(e, "code", getattr(e, "errno", None)) == errno.EOPNOTSUPP:
                raise ConfigError(
                    "datapath: wireguard, but this kernel has no WireGuard (it cannot create a"
                    " wireguard device): load it with `modprobe wireguard`, or use datapath"
                    " auto or python"
                ) from None
            raise DatapathError(
                f"WireGuard data path: cannot create device {DEVICE}: {_strerror(e)}"
            ) from None
        idx = links.link_lookup(ifname=DEVICE)
        if not idx:
            raise DatapathError(f"WireGuard data path: device {DEVICE} vanished")
        self._index = idx[0]
        cfg = self.cfg
        # IPv4's reverse-path check drops whatever comes in on a device without
        # an IPv4 address unless rp_filter is off everywhere (systemd makes it
        # loose): the device carries an IPv4 address, and is loose itself (a
        # strict check against the main table would drop its packets)
        links.addr("add", index=self._index, address=device_address(cfg), prefixlen=32)
        try:
            Path(f"/proc/sys/net/ipv4/conf/{DEVICE}/rp_filter").write_text("2")
        except OSError as e:
            log.debug("rp_filter of %s: %s", DEVICE, e)
        self._wg = self._open_wg()
        private = wgkeys.private_key(cfg.key, cfg.address.packed)
        try:
            self._wg.set(
                DEVICE,
                private_key=wgkeys.b64(private),
                listen_port=self.wg_port,
                fwmark=cfg.mark,
            )
            psk = wgkeys.b64(wgkeys.preshared_key(cfg.key))
            for peer in self.peers.values():
                endpoint = self._endpoint(peer)
                self._wg.set(
                    DEVICE,
                    peer={
                        "public_key": peer.public,
                        "preshared_key": psk,
                        "endpoint_addr": endpoint[0],
                        "endpoint_port": endpoint[1],
                        "replace_allowed_ips": True,
                        "allowed_ips": [str(p) for p in peer.prefixes],
                    },
                )
                peer.endpoint = endpoint
        except _nl_errors() as e:
            raise DatapathError(
                f"WireGuard data path: configuring {DEVICE}: {_strerror(e)}"
            ) from None
        mtu = cfg.mtu - (60 if cfg.address.version == 4 else 80)
        links.link("set", index=self._index, mtu=mtu, state="up")

    def _route(self) -> None:
        links = self._links
        assert links is not None and self._index is not None
        families = {p.version for peer in self.peers.values() for p in peer.prefixes}
        for version in sorted(families):
            family = socket.AF_INET if version == 4 else socket.AF_INET6
            links.rule("add", **self._rule(family))
        for peer in self.peers.values():
            for p in peer.prefixes:
                family = socket.AF_INET if p.version == 4 else socket.AF_INET6
                links.route("add", family=family, dst=str(p), oif=self._index, table=self.mark)

    def _steer(self) -> None:
        """The table's sets, marking chains and the relays' forwarding maps."""
        assert self._table is not None
        cfg = self.cfg
        t = f"inet {TABLE}"
        v4 = [str(p) for peer in self.peers.values() for p in peer.prefixes if p.version == 4]
        v6 = [str(p) for peer in self.peers.values() for p in peer.prefixes if p.version == 6]
        lo, hi = self.wg_port + 1, self.wg_port + wgkeys.FORWARD_PORTS
        ours, steer = f"meta mark != {cfg.mark:#x}", f"meta mark set {self.mark:#x}"
        cmds = [
            # nested prefixes (10.0.0.0/8 behind one ITM, 10.1.0.0/16 behind
            # another) are one interval here: the routes tell them apart
            f"add set {t} dst4 {{ type ipv4_addr; flags interval; auto-merge; }}",
            f"add set {t} dst6 {{ type ipv6_addr; flags interval; auto-merge; }}",
            *([f"add element {t} dst4 {{ {', '.join(v4)} }}"] if v4 else []),
            *([f"add element {t} dst6 {{ {', '.join(v6)} }}"] if v6 else []),
            # local packets (not the daemon's, not WireGuard's): rerouted when the
            # mark changes (a chain of type route)
            f"add chain {t} out {{ type route hook output priority mangle; }}",
            f"add rule {t} out {ours} ip daddr @dst4 {steer}",
            f"add rule {t} out {ours} ip6 daddr @dst6 {steer}",
            # forwarded packets: marked before they are routed
            f"add chain {t} pre {{ type filter hook prerouting priority mangle; }}",
            f"add rule {t} pre iifname != {DEVICE} ip daddr @dst4 {steer}",
            f"add rule {t} pre iifname != {DEVICE} ip6 daddr @dst6 {steer}",
            # relaying: a forwarding port to the destination's WireGuard port
            f"add map {t} fwd4 {{ type inet_service : ipv4_addr . inet_service; }}",
            f"add map {t} fwd6 {{ type inet_service : ipv6_addr . inet_service; }}",
            f"add chain {t} fwd_in {{ type nat hook prerouting priority dstnat; }}",
            f"add rule {t} fwd_in meta nfproto ipv4 udp dport {lo}-{hi}"
            " dnat ip to udp dport map @fwd4",
            f"add rule {t} fwd_in meta nfproto ipv6 udp dport {lo}-{hi}"
            " dnat ip6 to udp dport map @fwd6",
            f"add chain {t} fwd_out {{ type nat hook postrouting priority srcnat; }}",
            f"add rule {t} fwd_out meta l4proto udp ct status dnat"
            f" ct original proto-dst {lo}-{hi} masquerade",
        ]
        try:
            self._table.apply(cmds)
        except NftError as e:
            raise DatapathError(f"WireGuard data path: steering rules: {e}") from None

    def _clear(self) -> None:
        """Remove a device, rules and routes that a killed daemon left (the table
        is ours now: no other daemon runs this data path here)."""
        links = self._links
        assert links is not None
        if self._remove_device(links):
            log.info("removing %s, left by an earlier itmroute daemon", DEVICE)
        self._clear_rules(links)

    @staticmethod
    def _remove_device(links: LinkApi) -> bool:
        """Delete the device (its routes go with it); whether there was one."""
        found = links.link_lookup(ifname=DEVICE)
        for idx in found:
            links.link("del", index=idx)
        return bool(found)

    def close(self) -> None:
        """Remove the device, rules and routes and end the table (packets go plain)."""
        self._started = False
        links, self._links = self._links, None
        if links is not None:
            try:
                if self._index is not None:
                    self._remove_device(links)
                self._index = None
                self._clear_rules(links)
            except _nl_errors() as e:
                log.warning("WireGuard data path: cleaning up: %s", _strerror(e))
            finally:
                links.close()
        wg, self._wg = self._wg, None
        if wg is not None:
            wg.close()
        table, self._table = self._table, None
        if table is not None:
            table.close()

    def _clear_rules(self, links: LinkApi) -> None:
        """Remove our policy rules (each family's, however many a crash left)."""
        for family in (socket.AF_INET, socket.AF_INET6):
            for _ in range(100):
                try:
                    links.rule("del", **self._rule(family))
                except _nl_errors():
                    break

    def _rule(self, family: int) -> dict[str, int]:
        """Our policy rule of ``family``: steered packets to the device's table."""
        return {
            "family": family,
            "fwmark": self.mark,
            "fwmask": 0xFFFFFFFF,
            "table": self.mark,
            "priority": RULE_PRIORITY,
        }

    # ------------------------------------------------------------ relaying
    def forward(self, target: bytes) -> bool:
        """Make this ITM relay WireGuard traffic to ``target`` (4 or 16 bytes);
        whether it does. Refused (and said once in the log): forwarding off,
        the port taken by another destination, ``nft`` refusing."""
        addr = ipaddress.ip_address(target)
        port = wgkeys.forward_port(self.wg_port, target)
        have = self.forwarding.get(port)
        if have is not None:
            if have == addr:
                return True
            self._refuse(addr, f"its forwarding port {port} is {have}'s")
            return False
        if self._table is None:
            return False
        knob = "ipv4/ip_forward" if addr.version == 4 else "ipv6/conf/all/forwarding"
        if self._sysctl(f"net/{knob}") != "1":
            self._refuse(addr, f"net.{knob.replace('/', '.')} is not 1")
            return False
        fam = "fwd4" if addr.version == 4 else "fwd6"
        try:
            self._table.apply(
                [f"add element inet {TABLE} {fam} {{ {port} : {addr} . {self.wg_port} }}"]
            )
        except NftError as e:
            self._refuse(addr, str(e))
            return False
        self.forwarding[port] = addr
        log.info("relaying WireGuard to %s on port %d", addr, port)
        return True

    def _refuse(self, addr: Address, why: str) -> None:
        if addr not in self._refused:
            self._refused.add(addr)
            log.warning("not relaying to %s on the WireGuard data path: %s", addr, why)

    # ------------------------------------------------------------ endpoints
    def _endpoint(self, peer: Peer) -> tuple[str, int]:
        via = peer.state.current_path.via
        if via is None:
            return (str(peer.itm), self.wg_port)
        return (via, wgkeys.forward_port(self.wg_port, peer.itm.packed))

    def push(self, now: float) -> int:
        """Set the endpoint of every peer whose path changed (or that WireGuard
        moved); returns how many were set."""
        if self._wg is None:
            return 0
        n = 0
        for peer in self.peers.values():
            want = self._endpoint(peer)
            if peer.endpoint == want:
                continue
            try:
                self._wg.set(
                    DEVICE,
                    peer={
                        "public_key": peer.public,
                        "update_only": True,
                        "endpoint_addr": want[0],
                        "endpoint_port": want[1],
                    },
                )
            except _nl_errors() as e:
                self._trouble(f"endpoint of {peer.itm}", e)
                continue
            peer.endpoint = want
            n += 1
        self.stats["endpoint_sets"] += n
        return n

    # ------------------------------------------------------------ what came in
    def poll(self) -> None:
        """Read the peers' counters and endpoints and feed each path table; put the
        steering table back if its ``nft`` died under the daemon."""
        lost = self._started and (self._table is None or not self._table.alive)
        if lost and self.clock() >= self._retry_at:  # not an nft per tick while it fails
            self._retry_at = self.clock() + 1.0
            self._restore_table()
        if self._wg is None:
            return
        now = self.clock()
        try:
            msgs = list(self._wg.info(DEVICE))
        except _nl_errors() as e:
            self._trouble("reading the device", e)
            return
        for public, endpoint, rx, tx, handshake in _peers(msgs):
            peer = self.peers.get(public)
            if peer is None:
                continue
            if tx - peer.tx >= MIN_DATA_BYTES:
                peer.state.note_out(now)
            if rx != peer.rx:
                peer.heard = now
            if rx - peer.rx >= MIN_DATA_BYTES:
                peer.state.note_in(now)
            peer.tx, peer.rx, peer.handshake = tx, rx, handshake
            if endpoint is None or peer.endpoint is None or endpoint == peer.endpoint:
                continue
            # WireGuard took the peer's last source. Another ITM: another path than
            # ours, set ours back at the push. The same relay's other port (its NAT
            # shows the peer's answers so) is the same path while the peer talks,
            # but its mapping expires with the relay's conntrack entry: ours back
            # once the peer has been quiet for ROAM_QUIET
            if endpoint[0] != peer.endpoint[0] or now - peer.heard > ROAM_QUIET:
                self.stats["endpoint_moved"] += 1
                peer.endpoint = None

    def _rx_errors(self) -> int | None:
        """The device's ``rx_errors`` (read through netlink: /sys/class/net is the
        namespace of whoever mounted it, not this thread's)."""
        if self._links is None or self._index is None:
            return None
        bad: tuple[type[Exception], ...] = (*_nl_errors(), ValueError, KeyError, TypeError)
        try:
            (msg,) = self._links.link("get", index=self._index)
            stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
            return int(stats["rx_errors"]) if stats is not None else None
        except bad:
            return None

    def _restore_table(self) -> None:
        """The table went with its ``nft -i`` (someone killed it): packets went plain
        meanwhile. Make it again, with what this relay forwarded."""
        old, self._table = self._table, None
        if old is not None:
            old.close()
        log.warning("WireGuard data path: the steering table went with its nft; making it again")
        try:
            self._table = self._open_table("inet", TABLE)
            self._steer()
        except (NftError, DatapathError) as e:
            if self._table is not None:
                self._table.close()
                self._table = None
            self._trouble("steering table", e)
            return
        forwarded, self.forwarding = self.forwarding, {}
        for addr in forwarded.values():
            self.forward(addr.packed)
        self.stats["table_restored"] += 1

    def _trouble(self, what: str, e: Exception) -> None:
        self.errors += 1
        if self.errors <= 10 or self.errors % 1000 == 0:
            log.warning("WireGuard %s failed: %s (%d errors)", what, e, self.errors)

    # ------------------------------------------------------------ show
    def snapshot(self) -> dict[str, Any]:
        """The device's peers and the relay's forwarding, for ``itmroute show`` (the
        device's ``rx_errors`` read now: only ``show`` needs it, not each tick)."""
        errors = self._rx_errors()
        if errors is not None:
            self.stats["rx_errors"] = errors
        wall = time.time()
        return {
            "wireguard": {
                "device": DEVICE,
                "port": self.wg_port,
                "peers": {
                    str(p.itm): {
                        "endpoint": f"{p.endpoint[0]}:{p.endpoint[1]}" if p.endpoint else None,
                        "rx_bytes": p.rx,
                        "tx_bytes": p.tx,
                        "handshake_age": round(wall - p.handshake, 1) if p.handshake else None,
                    }
                    for p in self.peers.values()
                },
                "forwarding": {str(port): str(a) for port, a in sorted(self.forwarding.items())},
                **self.stats,
            }
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _peers(msgs: list[Any]) -> list[tuple[str, tuple[str, int] | None, int, int, float]]:
    """``(public key, endpoint, rx bytes, tx bytes, last handshake)`` of every peer
    in pyroute2's answer to WireGuard's GET_DEVICE (a dump: one or more messages)."""
    out = []
    for msg in msgs:
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or []:
            public = peer.get_attr("WGPEER_A_PUBLIC_KEY")
            if public is None:
                continue
            ep = peer.get_attr("WGPEER_A_ENDPOINT")
            endpoint = None
            if ep is not None and ep.get("addr") not in (None, "0.0.0.0", "::"):
                endpoint = (str(ipaddress.ip_address(ep["addr"])), int(ep["port"]))
            hs = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            handshake = float(hs["tv_sec"]) + hs["tv_nsec"] / 1e9 if hs is not None else 0.0
            out.append(
                (
                    _text(public),
                    endpoint,
                    int(peer.get_attr("WGPEER_A_RX_BYTES") or 0),
                    int(peer.get_attr("WGPEER_A_TX_BYTES") or 0),
                    handshake,
                )
            )
    return out


def _describe_table(e: NftError) -> str:
    text = str(e)
    if "Operation not permitted" in text or "Device or resource busy" in text or "exists" in text:
        return (
            f"WireGuard data path: nftables table inet {TABLE} belongs to another process"
            " (another itmroute daemon runs the WireGuard data path in this network namespace;"
            " stop it, or run this one with another data path)"
        )
    return f"WireGuard data path: {text}"


def _nl_errors() -> tuple[type[Exception], ...]:
    """What a netlink request raises: pyroute2's NetlinkError (not an OSError),
    imported only when the WireGuard data path runs."""
    from pyroute2.netlink.exceptions import NetlinkError

    return (OSError, NetlinkError)


def _strerror(e: Exception) -> str:
    code = getattr(e, "code", None)  # NetlinkError's errno
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return getattr(e, "strerror", None) or str(e)


def _pyroute2_wg() -> WgApi:
    from pyroute2 import WireGuard

    return WireGuard()  # type: ignore[no-any-return]


def _pyroute2_links() -> LinkApi:
    from pyroute2 import IPRoute

    return IPRoute()  # type: ignore[no-any-return]
