"""The itmRoute daemon: libitm capture, the UDP tunnel, probes, the path tables.

One :class:`Router` per ITM. It owns

* a UDP socket (the tunnel and the probes, port ``config.port``),
* raw IPv4 and IPv6 sockets (``IP_HDRINCL``) that send on the packets
  tunnelled to this ITM, the packets it re-injects after clamping their MSS,
  and ICMP errors; an ICMPv6 socket for ICMPv6 errors (packet too big, time
  exceeded),
* on the Python data path, when the ITM serves destinations, a libitm loop
  with two applications: one at ``ip_out`` that takes every packet to an
  overlay prefix (and tunnels it, or lets it go direct), one at ``ip_in`` that
  notes packets coming back;
* on the kernel data path (``datapath``: the itm_route module), no capture:
  a :class:`~itmroute.kernelpath.KernelPath` sets the kernel's routes and
  reads what it saw; the loop runs the UDP socket and the tick only.

Every socket carries the firewall mark ``config.mark``; the capture application
ignores marked packets, so the daemon never captures its own. If the daemon
dies, libitm's queue bypass (or the kernel, when the socket that configured
itm_route closes) lets the packets go direct (fail-open).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict

from . import auth, hop, kernelpath, mtu, state, wgpath, wire
from .config import Config, Destination
from .paths import DIRECT, Decision, DestState, PathState

log = logging.getLogger("itmroute")

SO_MARK = 36
ICMP6_FILTER = 1  # <netinet/icmp6.h>: which ICMPv6 types a raw socket receives
SOL_RAW = 255
ICMP_FILTER = 1  # <linux/icmp.h>: which ICMP types (0..31) a raw socket receives
_TICK = 0.02


def _text(addr: bytes) -> str:
    """An IPv4 or IPv6 address, 4 or 16 bytes, as text."""
    return str(ipaddress.ip_address(addr))


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells a file written apart from one that took its place (inode numbers
    are reused at once: the size and modification time too)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def path_tables(cfg: Config) -> list[tuple[Destination, DestState]]:
    """Each served prefix with its path table: one table per destination ITM, shared
    by the prefixes it serves (an IPv4 and an IPv6 prefix behind the same ITM take
    the same paths)."""
    neighbours = {n: str(a) for n, a in cfg.neighbours.items()}
    by_itm: dict[bytes, DestState] = {}
    for d in cfg.destinations:
        if d.itm.packed not in by_itm:
            by_itm[d.itm.packed] = DestState.make(str(d.itm), neighbours, cfg.probe)
    return [(d, by_itm[d.itm.packed]) for d in cfg.destinations]


class Router:
    """One ITM's itmRoute: relay for its neighbours, source for its destinations."""

    def __init__(
        self,
        cfg: Config,
        *,
        backend: str | None = None,
        state_file: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        backend_options: dict[str, Any] | None = None,
        datapath: str | None = None,
        kernel_client: Callable[[], kernelpath.RouteClient] | None = None,
        wg_options: dict[str, Any] | None = None,
    ) -> None:
        """Open the sockets and the data path (``datapath`` overrides the
        configuration's; ``kernel_client`` opens the itm_route client and
        ``wg_options`` are :class:`~itmroute.wgpath.WireguardPath`'s, for
        tests); the libitm loop starts with :meth:`run` (or :meth:`start`)."""
        self.cfg = cfg
        self.clock = clock
        self.me = cfg.address.packed  # 4 bytes, or 16 in an overlay of IPv6 ITMs
        self.v6 = len(self.me) == 16
        self.state_file = Path(state_file) if state_file else None
        self.tunnel_mtu = mtu.tunnel_mtu(cfg.mtu, wire.tunnel_overhead(len(self.me)))
        self.mss = self.tunnel_mtu - 40
        self.dests = path_tables(cfg)
        self._by_itm: dict[bytes, DestState] = {d.itm.packed: st for d, st in self.dests}
        self._by_dst: dict[bytes, DestState | None] = {}
        self._itm_of = {st.name: itm for itm, st in self._by_itm.items()}
        self._itm_text = {name: _text(itm) for name, itm in self._itm_of.items()}
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "tunnelled",
                "direct",
                "decapsulated",
                "data_relayed",
                "probes_sent",
                "probes_relayed",
                "probes_refused",
                "acks_sent",
                "acks_relayed",
                "acks_received",
                "notices_sent",
                "notices_relayed",
                "notices_received",
                "probe_bytes_sent",
                "frag_needed",
                "mss_clamped",
                "send_errors",
                "bad_datagrams",
                "auth_failed",
                "replayed",
                "ttl_exceeded",
                "too_big_direct",
                "packet_too_big",
            ),
            0,
        )
        self.sealer = auth.Sealer(cfg.key, self.me)
        # the kernel data path when asked for (or auto and itm_route is loaded):
        # told before anything is opened (a missing module is a configuration error)
        setting = datapath or cfg.datapath
        client = None
        if setting != "wireguard":
            client = kernelpath.choose(setting, connect=kernel_client)
        self.kernel: kernelpath.KernelPath | None = None
        self.wg: wgpath.WireguardPath | None = None
        try:
            self._open_sockets()
        except BaseException:
            if client is not None:
                client.close()
            raise
        if client is not None:
            self.kernel = kernelpath.KernelPath(client, cfg, self.dests, self.tunnel_mtu, clock)
            try:
                self.kernel.start()  # CONFIG, a direct route per prefix (EBUSY: another daemon)
            except BaseException:
                self._close_sockets()
                raise
        elif setting == "wireguard":
            self.wg = wgpath.WireguardPath(cfg, self.dests, clock, **dict(wg_options or {}))
            try:
                self.wg.start()  # device, peers, routes, steering (another daemon's: exit 1)
            except BaseException:
                self._close_sockets()
                raise
            log.info("data path: wireguard (the kernel's WireGuard carries the tunnelled packets)")
        self._tos = 0
        # one loop for the libitm applications, the UDP socket and the tick (its
        # backend starts only when there are applications: with destinations, on
        # the Python data path)
        self.loop = ItmLoop(backend or cfg.backend, **dict(backend_options or {}))
        if self.dests and self.kernel is None and self.wg is None:
            self._register()
        self.loop.add_reader(self.udp.fileno(), self.handle_datagrams)
        self.loop.register_timer(self.tick, _TICK)
        self._forget = False
        self._started = False
        self._next_state = 0.0
        self._written: tuple[int, ...] | None = None  # _identity of the last state file
        self._write_failed: int | None = None  # the errno of the last failed write (said once)
        self._identity = state.identity()  # pid, start time, boot: `itmroute show` checks them
        self._error_logs = 0

    def _open_sockets(self) -> None:
        """The UDP socket (bound to the overlay port), raw and ICMP sockets, all marked."""
        cfg = self.cfg
        self.udp = socket.socket(socket.AF_INET6 if self.v6 else socket.AF_INET, socket.SOCK_DGRAM)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        # IPv6's IPPROTO_RAW socket takes whole packets, header included, too
        self.raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        # ICMPv6 errors: the kernel picks the source address and fills the checksum
        self.icmp6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        # ICMP errors of a daemon without an IPv4 overlay address (its kernel picks one)
        self.icmp4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            self.icmp6.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)  # read none
            self.icmp4.setsockopt(SOL_RAW, ICMP_FILTER, b"\xff" * 4)
            for s in (self.udp, self.raw, self.raw6, self.icmp6, self.icmp4):
                s.setsockopt(socket.SOL_SOCKET, SO_MARK, cfg.mark)
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.udp.bind(("::" if self.v6 else "0.0.0.0", cfg.port))
            self.udp.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise

    @property
    def datapath(self) -> str:
        """Who carries the tunnelled packets: ``kernel`` (itm_route), ``wireguard``
        (the kernel's WireGuard) or ``python``."""
        if self.wg is not None:
            return "wireguard"
        return "python" if self.kernel is None else "kernel"

    # ------------------------------------------------------------ libitm apps
    def _register(self) -> None:
        for i, (d, _) in enumerate(self.dests):
            out = ItmInfo(
                f"itmroute-out{i}",
                Interest(family=d.prefix.version, dst=str(d.prefix)),
                class_func=self._classify_out,
                process_func=self._process_out,
                needs_payload=True,
            )
            inbound = ItmInfo(
                f"itmroute-in{i}",
                Interest(family=d.prefix.version, src=str(d.prefix)),
                class_func=self._classify_in,
            )
            self.loop.register_hook(Hook.IP_OUT, out)
            self.loop.register_hook(Hook.IP_IN, inbound)

    def dest_for(self, dst: bytes) -> DestState | None:
        """The destination whose prefix holds ``dst`` (longest prefix)."""
        try:
            return self._by_dst[dst]
        except KeyError:
            pass
        addr = ipaddress.ip_address(dst)
        found: tuple[int, DestState] | None = None
        for d, st in self.dests:
            if (
                addr.version == d.prefix.version
                and addr in d.prefix
                and (found is None or d.prefix.prefixlen > found[0])
            ):
                found = (d.prefix.prefixlen, st)
        st_found = found[1] if found else None
        if len(self._by_dst) < 65536:
            self._by_dst[dst] = st_found
        return st_found

    def _classify_out(self, where: Hook, pkt: Packet) -> int:
        if pkt.mark & 0xFFFF == self.cfg.mark or pkt.version not in (4, 6):
            return 0
        return 1

    def _classify_in(self, where: Hook, pkt: Packet) -> int:
        if wire.is_overlay_datagram(pkt.proto, pkt.sport, pkt.dport, self.cfg.port):
            return 0  # a probe acknowledgement is not the flow's return traffic
        st = self.dest_for(pkt.src.packed)
        if st is not None:
            st.note_in(self.clock())
        return 0

    def _process_out(self, where: Hook, cls: int, pkt: Packet) -> Verdict:
        data = pkt.data
        st = self.dest_for(pkt.dst.packed)
        if st is None:
            return Verdict.ACCEPT
        now = self.clock()
        st.note_out(now)
        path = st.current_path
        clamped: bytearray | None = None
        if pkt.syn and pkt.proto == 6:
            clamped = bytearray(data)
            if mtu.clamp_mss(clamped, self.mss if pkt.version == 4 else self.mss - 20):
                self.counters["mss_clamped"] += 1
            else:
                clamped = None
        if path.via is None:
            self.counters["direct"] += 1
            if clamped is None:
                return Verdict.ACCEPT
            return Verdict.DROP if self._send_raw(clamped) else Verdict.ACCEPT
        inner = clamped if clamped is not None else data
        if len(inner) > self.tunnel_mtu:
            if pkt.version == 6:
                ptb = mtu.packet_too_big(inner, self.tunnel_mtu)
                if self.tunnel_mtu < mtu.IPV6_MIN_MTU or ptb is None:
                    self.counters["too_big_direct"] += 1  # no MTU an IPv6 host may take
                    return Verdict.ACCEPT
                self.counters["packet_too_big"] += 1
                self._send_icmp6(ptb, inner)
                return Verdict.DROP
            if mtu.dont_fragment(inner):
                self.counters["frag_needed"] += 1
                # from this ITM, or (an ITM with only an IPv6 address) from the destination
                src = bytes(inner[16:20]) if self.v6 else self.me
                self._send_raw(mtu.frag_needed(inner, self.tunnel_mtu, src))
                return Verdict.DROP
            self.counters["direct"] += 1  # too big for the tunnel, may fragment: direct
            return Verdict.ACCEPT
        self._set_tos(inner)
        body = wire.data_body(self._itm_of[st.name], st.tag(path), st.receipt(now), inner)
        try:
            msg = self.sealer.seal(wire.DATA | self._relayed_bit(st.name, path), body)
            self.udp.sendto(msg, (path.via, self.cfg.port))
        except OSError as e:
            self._send_error("tunnel to " + path.name, e)
            return Verdict.ACCEPT  # fail open: the packet goes direct
        self.counters["tunnelled"] += 1
        return Verdict.DROP  # stolen: it travels in the tunnel

    def _set_tos(self, inner: bytes | bytearray | memoryview) -> None:
        """The outer header takes the inner packet's DSCP."""
        tos = mtu.dscp_byte(inner)
        if tos != self._tos:
            with contextlib.suppress(OSError):
                if self.v6:
                    self.udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
                else:
                    self.udp.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
            self._tos = tos

    # ------------------------------------------------------------ sockets
    def _send_raw(self, pkt: bytes | bytearray | memoryview) -> bool:
        v6 = pkt[0] >> 4 == 6
        dst = (
            socket.inet_ntop(socket.AF_INET6, bytes(pkt[24:40]))
            if v6
            else socket.inet_ntoa(bytes(pkt[16:20]))
        )
        try:
            (self.raw6 if v6 else self.raw).sendto(pkt, (dst, 0))
            return True
        except OSError as e:
            self._send_error("raw send to " + dst, e)
            return False

    def _send_icmp6(self, msg: bytes, about: bytes | bytearray | memoryview) -> None:
        """Send an ICMPv6 error to the source of the IPv6 packet ``about``."""
        self._send_icmp(self.icmp6, msg, socket.inet_ntop(socket.AF_INET6, bytes(about[8:24])))

    def _send_icmp(self, sock: socket.socket, msg: bytes, dst: str) -> None:
        """Send an ICMP or ICMPv6 message on ``sock`` (its kernel adds the IP header)."""
        try:
            sock.sendto(msg, (dst, 0))
        except OSError as e:
            self._send_error("ICMP error to " + dst, e)

    def _send_error(self, what: str, e: OSError) -> None:
        self.counters["send_errors"] += 1
        self._error_logs += 1
        if self._error_logs <= 10 or self._error_logs % 1000 == 0:
            log.warning("%s failed: %s (%d errors)", what, e.strerror, self._error_logs)

    def _sendto(self, data: bytes, addr: tuple[Any, ...]) -> bool:
        try:
            self.udp.sendto(data, addr)
            return True
        except OSError as e:
            if e.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED):
                self._send_error("send to " + addr[0], e)
            return False

    def handle_datagrams(self) -> int:
        """Read every waiting datagram: tunnelled data, probes, acknowledgements."""
        n = 0
        c = self.counters
        while True:
            try:
                data, addr = self.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return n
            except OSError:  # an ICMP error of an earlier send (port unreachable...)
                continue
            n += 1
            try:
                kind, relayed, sender, body = self.sealer.open(data, addr[0])
                if len(sender) != len(self.me):
                    raise wire.WireError("an ITM of the other address family")
                if kind == wire.DATA:
                    self._on_data(wire.decode_data(body, len(sender)), relayed, addr, data)
                    continue
                if kind == wire.NOTICE:
                    self._on_notice(wire.decode_notice(relayed, body, len(sender)))
                    continue
                probe = wire.decode_probe(kind, relayed, body, len(sender))
            except wire.WireError:
                c["bad_datagrams"] += 1
                continue
            except auth.AuthError as e:
                c[e.counter] += 1  # forged, damaged or replayed: dropped, counted
                continue
            self._on_probe(probe, addr)

    def _on_data(
        self, data: wire.Data, relayed: bool, src: tuple[Any, ...], datagram: bytes
    ) -> None:
        """Deliver a tunnelled packet meant for this ITM (one hop older when it came
        through a relay: a router's TTL rule for the relay's hop); send a datagram
        for another ITM on to it once, as it came (its sender's MAC)."""
        if data.target == self.me:
            if relayed:
                pkt = bytearray(data.inner)
                if not hop.decrement_ttl(pkt):  # the relay checked that it may
                    raise wire.WireError("relayed DATA without a hop left")
                data = wire.Data(data.target, data.tag, data.receipt, memoryview(pkt))
            self._deliver(data, src[0] if relayed else None)
            return
        if not relayed:
            raise wire.WireError("DATA for another ITM not sent to be relayed")
        if hop.hops_left(data.inner) <= 1:
            pkt = bytearray(data.inner)
            self.counters["ttl_exceeded"] += 1
            err = hop.time_exceeded(pkt, self.me)
            if err is not None:
                self._send_raw(err)
            elif (msg := hop.time_exceeded_message(pkt)) is not None:
                self._send_icmp(self.icmp4, msg, socket.inet_ntoa(bytes(pkt[12:16])))
            err6 = hop.time_exceeded6(pkt)
            if err6 is not None:
                self._send_icmp6(err6, pkt)
            return
        self._set_tos(data.inner)
        if self._sendto(datagram, (_text(data.target), self.cfg.port)):
            self.counters["data_relayed"] += 1

    def _relayed_bit(self, name: str, path: PathState) -> int:
        """``wire.RELAYED`` for DATA to destination ``name`` sent on ``path`` when
        the path's first hop is a relay, not the destination ITM itself."""
        return 0 if path.via == self._itm_text[name] else wire.RELAYED

    def _deliver(self, data: wire.Data, via: str | None) -> None:
        """Send the inner packet on from here; the datagram is the peer ITM's sign
        that our data reaches it (its receipt) and the path its data took."""
        inner = data.inner
        src = bytes(inner[12:16] if inner[0] >> 4 == 4 else inner[8:24])
        st = self.dest_for(src)
        if st is not None:
            now = self.clock()
            st.note_peer_data(data.tag, now, via)
            if data.receipt is not None:
                st.note_heard(data.receipt, now)
        if self._send_raw(inner):
            self.counters["decapsulated"] += 1

    def _on_notice(self, notice: wire.Notice) -> None:
        """Take a notice about our data; send one for another ITM on to it once."""
        if notice.target == self.me:
            st = self._by_itm.get(notice.origin)
            if st is not None:
                self.counters["notices_received"] += 1
                if st.on_notice(notice.tag, notice.silence, self.clock()) is not None:
                    log.debug("notice from %s: tag %d %.3f s", st.name, notice.tag, notice.silence)
            return
        if notice.relayed:
            raise wire.WireError("relayed NOTICE for another ITM")
        fwd = wire.Notice(notice.target, notice.origin, notice.tag, notice.silence, True)
        if self._sendto(self.sealer.seal(fwd.type_byte, fwd.body()), self._port_of(notice.target)):
            self.counters["notices_relayed"] += 1

    def _port_of(self, itm: bytes) -> tuple[str, int]:
        return (_text(itm), self.cfg.port)

    def _watch_peers(self, now: float) -> None:
        """Tell the ITMs whose data we receive that it still comes (a receipt, by
        the relay it came through) or that it stopped (over every path)."""
        for st in self._by_itm.values():
            owed = st.peer_watch(now)
            if owed is None:
                continue
            stopped, tag, silence = owed
            itm = self._itm_of[st.name]
            notice = wire.Notice(itm, self.me, tag, silence)
            msg = self.sealer.seal(notice.type_byte, notice.body())
            if stopped:
                ways = [self._port_of(itm)] + [(p.via, self.cfg.port) for p in st.paths if p.via]
            else:
                ways = [(st.peer_via, self.cfg.port) if st.peer_via else self._port_of(itm)]
            for way in ways:
                if self._sendto(msg, way):
                    self.counters["notices_sent"] += 1

    def _send_probe(self, probe: wire.Probe, addr: tuple[Any, ...]) -> bool:
        return self._sendto(self.sealer.seal(probe.type_byte, probe.body()), addr)

    def _on_probe(self, probe: wire.Probe, src: tuple[Any, ...]) -> None:
        """Answer a probe for this ITM, take an answer to its own, relay the others once."""
        c = self.counters
        if probe.kind == wire.PROBE:
            if probe.target == self.me:
                ack = wire.Probe(wire.ACK, probe.seq, probe.origin, probe.target)
                if self._send_probe(ack, src):
                    c["acks_sent"] += 1
            elif not probe.relayed:
                if self.wg is not None and not self.wg.forward(probe.target):
                    # a path through us would drop the sender's WireGuard packets
                    c["probes_refused"] += 1
                    return
                fwd = wire.Probe(wire.PROBE, probe.seq, probe.origin, probe.target, True)
                if self._send_probe(fwd, (_text(probe.target), self.cfg.port)):
                    c["probes_relayed"] += 1
        elif probe.origin == self.me:
            st = self._by_itm.get(probe.target)
            if st is not None and st.on_ack(probe.seq, self.clock()) is not None:
                c["acks_received"] += 1
        elif not probe.relayed:
            fwd = wire.Probe(wire.ACK, probe.seq, probe.origin, probe.target, True)
            if self._send_probe(fwd, (_text(probe.origin), self.cfg.port)):
                c["acks_relayed"] += 1

    # ------------------------------------------------------------ timers
    def forget(self) -> None:
        """Make every destination idle at the next tick (its next packet starts afresh)."""
        self._forget = True

    def tick(self) -> list[Decision]:
        """Expire probes, decide, send the probes that are due; returns the decisions.

        On the kernel data path, what the kernel saw comes in first and the
        routes whose path or receipt changed go out last."""
        if self.kernel is not None:
            self.kernel.poll()
        if self.wg is not None:
            self.wg.poll()
        now = self.clock()
        decisions = []
        if self._forget:
            self._forget = False
            for st in self._by_itm.values():
                st.active = False
                st.current = DIRECT
                st.in_flight.clear()
        self.handle_datagrams()  # what waits is older than the tick: take it first
        self._watch_peers(now)
        for itm, st in self._by_itm.items():
            st.expire(now)
            dec = st.evaluate(now)
            if dec is not None:
                decisions.append(dec)
                log.info("%s", dec.line())
            target = _text(itm)
            for seq, p in st.due_probes(now):
                probe = wire.Probe(wire.PROBE, seq, self.me, itm)
                if self._send_probe(probe, (p.via or target, self.cfg.port)):
                    self.counters["probes_sent"] += 1
                    self.counters["probe_bytes_sent"] += wire.probe_len(len(itm)) + (
                        48 if self.v6 else 28
                    )
        if self.kernel is not None:
            self.kernel.push(now)
        if self.wg is not None:
            self.wg.push(now)
        if self.state_file is not None and now >= self._next_state:
            self._next_state = now + 1.0
            self.write_state()
        return decisions

    def snapshot(self) -> dict[str, Any]:
        """Everything ``itmroute show`` prints."""
        now = self.clock()
        return {
            "name": self.cfg.name,
            "address": str(self.cfg.address),
            **self._identity,
            "tunnel_mtu": self.tunnel_mtu,
            "datapath": self.datapath,
            **(self.kernel.snapshot() if self.kernel is not None else {}),
            **(self.wg.snapshot() if self.wg is not None else {}),
            "counters": dict(self.counters),
            "destinations": [{"prefix": str(d.prefix), **st.snapshot(now)} for d, st in self.dests],
        }

    def write_state(self) -> None:
        """Write the snapshot to the state file whole: into a new hidden file beside it
        (``.NAME.PID-RANDOM.tmp``, created exclusively: never a file of someone else's),
        then renamed over it; the new file is removed when any of it fails, and the
        failure is logged once until its cause changes or a write succeeds. The
        directory must exist (``itmroute run`` checks it, or creates the default one)."""
        assert self.state_file is not None
        target = self.state_file
        tmp = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        created = done = False
        try:
            data = json.dumps(self.snapshot(), indent=1).encode()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            created = True
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                written = os.fstat(f.fileno())
            os.replace(tmp, target)
            done = True
            self._written = _identity(written)
            if self._write_failed is not None:
                log.info("%s is written again", target)
                self._write_failed = None
        except OSError as e:
            # once per cause, not once a second
            if e.errno != self._write_failed:
                log.warning("cannot write %s: %s", target, e)
                self._write_failed = e.errno
        finally:
            if created and not done:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    # ------------------------------------------------------------ running
    def start(self) -> None:
        """Install the capture (libitm rules or registration)."""
        if not self._started:
            self._started = True
            self.loop.start()
            for d, _ in self.dests:
                log.info("serving %s (itm %s), tunnel mtu %d", d.prefix, d.itm, self.tunnel_mtu)

    def stop(self) -> None:
        """Ask :meth:`run` to return (from another thread or a signal handler)."""
        self.loop.stop()

    def run(self, duration: float | None = None) -> None:
        """Serve until :meth:`stop`, ``duration`` seconds, or SIGINT/SIGTERM."""
        try:
            self.start()
            self.tick()
            self.loop.run(duration)
        finally:
            self.close()

    def remove_state(self) -> None:
        """Remove the state file: a stopped daemon has no table. Only the file this
        daemon wrote last is removed, not one that took its place (nor one it never
        wrote: a state file left by a daemon before it stays, for ``show``)."""
        assert self.state_file is not None
        if self._written is None:
            return
        try:
            st = os.lstat(self.state_file)
            if _identity(st) != self._written:
                log.warning("not removing %s: another file took its place", self.state_file)
                return
            self.state_file.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove %s: %s", self.state_file, e)

    def close(self) -> None:
        """Remove the capture rules or the kernel's configuration, close the sockets,
        remove the state file."""
        try:
            try:
                self.loop.close()
            finally:
                if self.kernel is not None:
                    self.kernel.close()
                if self.wg is not None:
                    self.wg.close()
        finally:
            if self.state_file is not None:
                self.remove_state()
            self._close_sockets()

    def _close_sockets(self) -> None:
        for s in (self.udp, self.raw, self.raw6, self.icmp6, self.icmp4):
            s.close()
