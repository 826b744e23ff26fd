"""An emulated overlay in network namespaces, for the tests and the benchmark.

::

                 +---- R1 ----+
                 +---- R2 ----+
     [A] 10.77.100.1 ...     [D] 10.77.200.1      (overlay addresses, on lo)
                 +---- Rn ----+
     [A] -------- direct -------- [D]

    A--D    A dev d   10.77.0.1/30     D dev a    10.77.0.2/30
    A--Ri   A dev ri  10.77.i.1/30     Ri dev a   10.77.i.2/30
    Ri--D   Ri dev d  10.77.1i.1/30    D dev ri   10.77.1i.2/30   (1i = 10 + i)

A and D each run an itmroute daemon serving the other's /24; the relays run
one with no destinations. Link delay and loss are netem qdiscs on both ends
of a link (so a link of delay ``d`` adds ``2 d`` to a round trip); a cut
black-holes a relay with iptables DROP rules in its namespace. Everything
runs as root and traffic stays between the namespaces created here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from itmlab import Lab, kmods, netns, run

from .config import DEFAULT_PORT, Config, ProbeSettings, parse_config
from .daemon import Router

#: the stock modules the overlay needs, by path under /lib/modules/RELEASE
STOCK_MODULES = (
    "kernel/net/netfilter/nfnetlink",
    "kernel/net/netfilter/nfnetlink_queue",
    "kernel/drivers/net/veth",
    "kernel/net/sched/sch_netem",
)
A_OVERLAY = "10.77.100.1"
A_OVERLAY6 = "fd77:100::1"
D_OVERLAY6 = "fd77:200::1"


def _batch(cmd: list[str], lines: list[str]) -> None:
    """Run ``cmd`` (an ``ip``/``tc`` ``-batch -``, ``iptables-restore``) on ``lines``."""
    run(*cmd, input="\n".join(lines) + "\n")


#: the kernel's own modules of the WireGuard data path (device, relays' NAT)
WIREGUARD_MODULES = ("wireguard", "nft_chain_nat", "nft_nat", "nft_masq")


def load_wireguard_modules() -> None:
    """insmod WireGuard and nftables' NAT, with what they need, by path, where
    they are modules (Debian's kernels); nothing where they are built in (ours)."""
    for name in WIREGUARD_MODULES:
        with contextlib.suppress(RuntimeError):  # the step that needs it says so
            kmods.insmod_named(name)


def load_stock_modules() -> None:
    """insmod veth, nfnetlink_queue and netem by path when they are not built in.

    In the VM the guest reads the host's module index through 9p, and modprobe
    fails when the host rewrites it meanwhile; a path needs no index. On a
    kernel without them as modules (this machine's) nothing is done.
    """
    kmods.insmod_stock(*STOCK_MODULES)


D_OVERLAY = "10.77.200.1"


def _link_addrs(link: str) -> tuple[str, str]:
    """The two ends' addresses of a link: ``d`` (A--D), ``r<i>a``, ``r<i>d``."""
    if link == "d":
        return "10.77.0.1", "10.77.0.2"
    i = int(link[1:-1])
    if link.endswith("a"):
        return f"10.77.{i}.1", f"10.77.{i}.2"
    return f"10.77.{10 + i}.1", f"10.77.{10 + i}.2"


class Overlay:
    """A, relays R1..Rn and D in namespaces ``<prefix>-a``, ``-r1``.., ``-d``."""

    def __init__(
        self,
        prefix: str,
        relays: int = 4,
        ipv6: bool = False,
        outer: int = 4,
        datapath: str | None = None,
    ) -> None:
        """Name the namespaces; :meth:`create` builds them (with IPv6 addresses, routes
        and overlay prefixes beside the IPv4 ones when ``ipv6``; with ``outer`` 6
        the daemons talk to each other over IPv6 too: their own addresses, the
        tunnel and the probes). ``datapath`` goes into every daemon's
        configuration (None: the daemon's default, ``auto``)."""
        self.prefix = prefix
        self.datapath = datapath
        self.n = relays
        self.ipv6 = ipv6 or outer == 6
        self.outer = outer
        self.a = f"{prefix}-a"
        self.d = f"{prefix}-d"
        self.relays = [f"{prefix}-r{i}" for i in range(1, relays + 1)]
        self._threads: list[tuple[Router, threading.Thread]] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._cuts: set[int] = set()
        self._lab = Lab()
        for ns in (self.a, self.d, *self.relays):
            self._lab.ns(ns, exact=True)
        self.key = secrets.token_hex(32)  # the overlay's shared key (every daemon's)

    # ------------------------------------------------------------ topology
    def links(self) -> list[tuple[str, str, str, str, str]]:
        """``(link, ns1, dev1, ns2, dev2)`` of every link."""
        out = [("d", self.a, "d", self.d, "a")]
        for i, r in enumerate(self.relays, 1):
            out.append((f"r{i}a", self.a, f"r{i}", r, "a"))
            out.append((f"r{i}d", r, "d", self.d, f"r{i}"))
        return out

    def create(self) -> None:
        """Namespaces, veth links, addresses, routes; rp_filter off.

        A few ``ip -batch`` runs and in-process sysctl writes: a command costs
        a second or more in a loaded emulated guest.
        """
        lab = self._lab
        for ns in lab.names:
            for key in ("all", "default"):
                lab.sysctl(ns, f"net/ipv4/conf/{key}/rp_filter", "0")
        for link, ns1, dev1, ns2, dev2 in self.links():
            a1, a2 = _link_addrs(link)
            v6 = self._v6_link(link) if self.ipv6 else None
            lab.link(
                ns1, dev1, ns2, dev2,
                [f"{a1}/30", *([f"{v6}1/64"] if v6 else [])],
                [f"{a2}/30", *([f"{v6}2/64"] if v6 else [])],
            )  # fmt: skip
            for ns, dev in ((ns1, dev1), (ns2, dev2)):
                lab.sysctl(ns, f"net/ipv4/conf/{dev}/rp_filter", "0")
        lab.ip(
            self.a,
            f"addr add {A_OVERLAY}/32 dev lo",
            f"route add 10.77.200.0/24 via 10.77.0.2 src {A_OVERLAY}",
        )
        lab.ip(
            self.d,
            f"addr add {D_OVERLAY}/32 dev lo",
            f"route add 10.77.100.0/24 via 10.77.0.1 src {D_OVERLAY}",
        )
        if self.datapath == "wireguard":  # the relays forward the outer datagrams
            for r in self.relays:
                lab.sysctl(r, "net/ipv4/ip_forward", "1")
                lab.sysctl(r, "net/ipv6/conf/all/forwarding", "1")
        for i, r in enumerate(self.relays, 1):
            lab.ip(
                r,
                f"route add 10.77.200.0/24 via 10.77.{10 + i}.2",
                f"route add 10.77.100.0/24 via 10.77.{i}.1",
            )
        if self.ipv6:
            self._add_ipv6()
        lab.create()

    def add_intruder(self) -> str:
        """A namespace ``<prefix>-x`` linked to relay 1 only (x dev r1 10.77.50.1/30,
        R1 dev x 10.77.50.2/30): it can reach R1's port and nothing else. Returns it."""
        ns, r1 = self.intruder, self.relays[0]
        _batch(["ip", "-batch", "-"], [
            f"netns add {ns}",
            f"link add name r1 netns {ns} type veth peer name x netns {r1}",
        ])  # fmt: skip
        _batch(["ip", "-n", ns, "-batch", "-"], [
            "link set dev lo up", "addr add 10.77.50.1/30 dev r1", "link set dev r1 up",
        ])  # fmt: skip
        _batch(
            ["ip", "-n", r1, "-batch", "-"], ["addr add 10.77.50.2/30 dev x", "link set dev x up"]
        )
        return ns

    def sniff_from_a(
        self, count: int, poke: Callable[[], object], timeout: float = 5.0
    ) -> list[bytes]:
        """Up to ``count`` itmRoute datagrams (UDP payloads) that A sent to relay 1, read
        off R1's link as anyone on it could; ``poke()`` (e.g. a ping that keeps A
        probing) runs while it waits."""
        with netns(self.relays[0]):
            sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        got: list[bytes] = []
        port = DEFAULT_PORT.to_bytes(2, "big")
        with sniff:
            sniff.bind(("a", 0))
            sniff.settimeout(0.2)
            end = time.monotonic() + timeout
            while len(got) < count and time.monotonic() < end:
                poke()
                try:
                    ip = sniff.recv(65535)
                except TimeoutError:
                    continue
                ihl = (ip[0] & 15) * 4
                if (
                    ip[9] == 17
                    and ip[12:16] == bytes([10, 77, 1, 1])
                    and ip[ihl + 2 : ihl + 4] == port
                ):
                    got.append(ip[ihl + 8 :])
        return got

    @property
    def intruder(self) -> str:
        """The namespace :meth:`add_intruder` creates."""
        return f"{self.prefix}-x"

    def _v6_link(self, link: str) -> str:
        """The IPv6 /64 of a link (its ends are ::1 and ::2): fd77:ff:: (A--D),
        fd77:a<i>:: (A--Ri), fd77:d<i>:: (Ri--D)."""
        if link == "d":
            return "fd77:ff::"
        return f"fd77:{link[-1]}{link[1:-1]}::"

    def _add_ipv6(self) -> None:
        """IPv6 beside IPv4 (link addresses come with the links, see :meth:`_v6_link`):
        overlay addresses A_OVERLAY6 and D_OVERLAY6 on lo (the kernel refuses them as
        a route's source: bind to them) and the routes between the prefixes."""
        lab = self._lab
        lab.ip(self.a, f"addr add {A_OVERLAY6}/128 dev lo",
               "route add fd77:200::/64 via fd77:ff::2")  # fmt: skip
        lab.ip(self.d, f"addr add {D_OVERLAY6}/128 dev lo",
               "route add fd77:100::/64 via fd77:ff::1")  # fmt: skip
        for i, r in enumerate(self.relays, 1):
            lab.ip(r, f"route add fd77:200::/64 via fd77:d{i}::2",
                   f"route add fd77:100::/64 via fd77:a{i}::1")  # fmt: skip

    def destroy(self) -> None:
        """Stop every daemon, delete every namespace (also after a failure)."""
        self.stop_daemons()
        self._lab.destroy()
        if Path("/run/netns", self.intruder).exists():
            _batch(["ip", "-force", "-batch", "-"], [f"netns del {self.intruder}"])

    def _ends(self, relay: int) -> list[tuple[str, str, int]]:
        """``(namespace, device, share of the round trip)`` of every link end of a path;
        the first is A's."""
        if relay == 0:
            return [(self.a, "d", 2), (self.d, "a", 2)]
        r = self.relays[relay - 1]
        return [(self.a, f"r{relay}", 4), (r, "a", 4), (r, "d", 4), (self.d, f"r{relay}", 4)]

    def set_paths(self, paths: dict[int, tuple[float, float, float]]) -> None:
        """netem for several paths at once: relay (0: direct) -> (rtt ms, loss %, jitter ms).

        The round trip is split evenly over the path's link ends; the loss is
        applied once, leaving A; the jitter (normal) on every end.
        """
        lines: dict[str, list[str]] = {}
        for relay, (rtt, loss, jitter) in paths.items():
            for i, (ns, dev, share) in enumerate(self._ends(relay)):
                args = f"delay {rtt / share:.3f}ms"
                if jitter:
                    args += f" {jitter}ms distribution normal"
                if loss and i == 0:
                    args += f" loss {loss}%"
                lines.setdefault(ns, []).append(
                    f"qdisc replace dev {dev} root netem {args} limit 10000"
                )
        for ns, batch in lines.items():
            _batch(["tc", "-n", ns, "-batch", "-"], batch)

    def set_path(
        self, relay: int, rtt_ms: float, loss: float = 0.0, jitter_ms: float = 0.0
    ) -> None:
        """Make the path through relay ``relay`` (0: direct) have round trip ``rtt_ms``."""
        self.set_paths({relay: (rtt_ms, loss, jitter_ms)})

    def cut(self, relay: int, on: bool = True) -> None:
        """Black-hole relay ``relay`` (every packet in and out dropped), or heal it."""
        if on == (relay in self._cuts):
            return
        op = "-I" if on else "-D"
        rules = ["*filter", *(f"{op} {chain} -j DROP" for chain in ("INPUT", "OUTPUT", "FORWARD"))]
        rules.append("COMMIT")  # FORWARD: what a relay forwards (the WireGuard data path)
        _batch(["ip", "netns", "exec", self.relays[relay - 1], "iptables-restore", "-n"], rules)
        (self._cuts.add if on else self._cuts.discard)(relay)

    # ------------------------------------------------------------ daemons
    def config(self, node: str, probe: ProbeSettings | None = None) -> dict[str, object]:
        """The YAML document of node ``a``, ``d`` or ``r<i>``."""
        doc: dict[str, object] = {"name": f"{self.prefix}-{node}"}
        if self.outer == 6:
            doc.update(self._config6(node))
        elif node == "a":
            doc["address"] = A_OVERLAY
            doc["neighbours"] = {f"r{i}": f"10.77.{i}.2" for i in range(1, self.n + 1)}
            doc["destinations"] = [{"prefix": "10.77.200.0/24", "itm": D_OVERLAY}] + (
                [{"prefix": "fd77:200::/64", "itm": D_OVERLAY}] if self.ipv6 else []
            )
        elif node == "d":
            doc["address"] = D_OVERLAY
            doc["neighbours"] = {f"r{i}": f"10.77.{10 + i}.1" for i in range(1, self.n + 1)}
            doc["destinations"] = [{"prefix": "10.77.100.0/24", "itm": A_OVERLAY}] + (
                [{"prefix": "fd77:100::/64", "itm": A_OVERLAY}] if self.ipv6 else []
            )
        else:
            doc["address"] = f"10.77.{int(node[1:])}.2"
        if probe is not None:
            doc["probe"] = dataclasses.asdict(probe)
        doc["backend"] = "nfqueue"
        if self.datapath is not None:
            doc["datapath"] = self.datapath
        doc["key"] = self.key
        return doc

    def _config6(self, node: str) -> dict[str, object]:
        """The addresses of node ``a``, ``d`` or ``r<i>`` in an overlay of IPv6 ITMs."""
        if node.startswith("r"):
            return {"address": f"fd77:a{int(node[1:])}::2"}
        mine, theirs = ("100", "200") if node == "a" else ("200", "100")
        other = D_OVERLAY6 if node == "a" else A_OVERLAY6
        link = "a{}::2" if node == "a" else "d{}::1"
        return {
            "address": f"fd77:{mine}::1",
            "neighbours": {f"r{i}": "fd77:" + link.format(i) for i in range(1, self.n + 1)},
            "destinations": [
                {"prefix": f"10.77.{theirs}.0/24", "itm": other},
                {"prefix": f"fd77:{theirs}::/64", "itm": other},
            ],
        }

    def ns_of(self, node: str) -> str:
        """The namespace of node ``a``, ``d`` or ``r<i>``."""
        if node in ("a", "d"):
            return self.a if node == "a" else self.d
        return self.relays[int(node[1:]) - 1]

    def start_threads(self, nodes: list[str], probe: ProbeSettings | None = None) -> None:
        """Run the daemons of ``nodes`` in threads of this process (each in its namespace)."""
        for node in nodes:
            cfg = parse_config(self.config(node, probe))
            ns = (
                self.a if node == "a" else self.d if node == "d" else self.relays[int(node[1:]) - 1]
            )
            ready = threading.Event()
            box: list[Router] = []
            errors: list[BaseException] = []

            def body(
                cfg: Config = cfg,
                ns: str = ns,
                ready: threading.Event = ready,
                box: list[Router] = box,
                errors: list[BaseException] = errors,
            ) -> None:
                try:
                    with netns(ns):
                        router = Router(cfg, backend_options={"queue_base": 4300})
                        router.start()
                        box.append(router)
                        ready.set()
                        router.run()
                except BaseException as e:  # reported to the starter
                    errors.append(e)
                    ready.set()

            th = threading.Thread(target=body, name=f"itmroute-{node}", daemon=True)
            th.start()
            ready.wait(180)  # its capture rules take minutes in a loaded TCG guest
            if errors or not box:
                raise RuntimeError(f"itmroute {node} did not start: {errors}")
            self._threads.append((box[0], th))

    def router(self, node_ns: str) -> Router:
        """The in-process daemon running in namespace ``node_ns``."""
        for r, th in self._threads:
            if th.name == f"itmroute-{node_ns}":
                return r
        raise KeyError(node_ns)

    def start_process(
        self, node: str, workdir: Path, probe: ProbeSettings | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Run ``itmroute run`` for ``node`` as its own process; returns it and its state file."""
        ns = self.ns_of(node)
        conf = workdir / f"{node}.yaml"
        conf.write_text(yaml.safe_dump(self.config(node, probe)))
        state = workdir / f"{node}.json"
        state.unlink(missing_ok=True)
        log = (workdir / f"{node}.log").open("ab")
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "itmroute",
                "run",
                "-c",
                str(conf),
                "--state",
                str(state),
            ],
            stdout=log,
            stderr=log,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        log.close()
        self._procs.append(proc)
        return proc, state

    def stop_daemons(self) -> None:
        """Stop the threads and the processes started here."""
        for r, _ in self._threads:
            r.stop()
        for _, th in self._threads:
            th.join(10)
        self._threads.clear()
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._procs.clear()


@contextlib.contextmanager
def overlay(
    prefix: str, relays: int = 4, ipv6: bool = False, outer: int = 4, datapath: str | None = None
) -> Iterator[Overlay]:
    """An :class:`Overlay`, removed afterwards whatever happens."""
    ov = Overlay(prefix, relays, ipv6, outer, datapath)
    try:
        ov.create()
        yield ov
    finally:
        ov.destroy()


# ---------------------------------------------------------------- traffic
class CutLater(threading.Thread):
    """Cut a relay after ``delay`` s, off the sender's thread (a command can take
    seconds in a loaded guest, and the stream must go on meanwhile).

    The cut takes effect somewhere between :attr:`began` (the command started)
    and :attr:`done` (it returned), which can be a few tenths of a second apart
    on a loaded machine: measure the outage from the stream itself
    (:meth:`SeqStream.outage`), not from either.
    """

    def __init__(self, ov: Overlay, relay: int, delay: float) -> None:
        super().__init__(daemon=True)
        self.ov, self.relay, self.delay = ov, relay, delay
        self.began = 0.0
        self.done = 0.0
        self.start()

    def run(self) -> None:
        time.sleep(self.delay)
        self.began = time.monotonic()
        self.ov.cut(self.relay)
        self.done = time.monotonic()  # the rules are in place from here


class SeqStream:
    """A UDP stream A -> D of sequence-numbered datagrams at ``rate`` per second."""

    def __init__(self, ov: Overlay, rate: float = 100.0, port: int = 5300) -> None:
        """Open both sockets (in their namespaces); :meth:`run` sends."""
        with netns(ov.d):
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rx.bind((D_OVERLAY, port))
        with netns(ov.a):
            self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.settimeout(0.2)
        self.rate = rate
        self.port = port
        self.arrivals: list[tuple[int, float]] = []
        self.sent = 0
        self.sent_at: list[float] = []  # monotonic send time of each sequence number
        self.ended = 0.0
        self._stop = threading.Event()
        self._rx_thread = threading.Thread(target=self._receive, daemon=True)
        self._rx_thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.rx.recv(2048)
            except (TimeoutError, OSError):
                continue
            if len(data) >= 4:
                self.arrivals.append((struct.unpack_from(">I", data)[0], time.monotonic()))

    def run(self, seconds: float, during: Callable[[float], None] | None = None) -> None:
        """Send for ``seconds``; ``during(elapsed)`` is called between datagrams."""
        start = time.monotonic()
        period = 1.0 / self.rate
        while True:
            t = time.monotonic() - start
            if t >= seconds:
                break
            self.sent_at.append(time.monotonic())
            with contextlib.suppress(OSError):
                self.tx.sendto(struct.pack(">I", self.sent) + b"s" * 60, (D_OVERLAY, self.port))
            self.sent += 1
            if during is not None:
                during(t)
            time.sleep(max(0.0, start + self.sent * period - time.monotonic()))
        self.ended = time.monotonic()

    #: a stream has recovered when one of the datagrams sent in this last part of
    #: the sending (s) arrived: a failover that never came loses all of it, while a
    #: loaded guest's relay, moving between paths of similar delay at the very end,
    #: can lose the last tenth of a second of a stream that recovered long before
    RECOVERED_TAIL = 1.0

    def recovered(self) -> bool:
        """Whether a datagram sent in the last :attr:`RECOVERED_TAIL` s of sending
        arrived."""
        if not self.arrivals or not self.sent_at:
            return False
        top = min(max(seq for seq, _ in self.arrivals), len(self.sent_at) - 1)
        return self.sent_at[top] >= self.sent_at[-1] - self.RECOVERED_TAIL

    def largest_gap(self, after: float = 0.0) -> float:
        """The longest time between consecutive arrivals (after monotonic time ``after``).

        A stream that has not recovered by the end of sending (:meth:`recovered`)
        has an infinite gap: the end of sending is not an arrival.
        """
        times = sorted(t for _, t in self.arrivals if t >= after)
        if not times or not self.recovered():
            return float("inf")
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    def outage(self, after: float) -> float:
        """The outage as the stream saw it: from the sending of the first datagram lost
        (of those sent after monotonic time ``after``) to the arrival of the first one
        sent later that arrived, on the new path; 0 when none was lost, infinite
        when nothing arrived after the loss."""
        got = {seq for seq, _ in self.arrivals}
        first_lost = next(
            (seq for seq, t in enumerate(self.sent_at) if t >= after and seq not in got), None
        )
        if first_lost is None:
            return 0.0
        later = [t for seq, t in self.arrivals if seq > first_lost]
        return min(later) - self.sent_at[first_lost] if later else float("inf")

    def summary(self, after: float = 0.0) -> str:
        """What the stream saw, for a failure message: how many were sent and
        arrived, the highest sequence number that arrived and when the last arrival
        came, from the end of sending (arrivals after monotonic ``after``)."""
        late = [t for _, t in self.arrivals if t >= after]
        top = max((seq for seq, _ in self.arrivals), default=-1)
        last = f"{max(late) - self.ended:+.2f} s after the end of sending" if late else "none"
        return (
            f"sent {self.sent}, arrived {len(self.arrivals)}, highest seq {top}, "
            f"{len(late)} arrived after the mark, last {last}"
        )

    def transit(self, last: int = 20) -> float:
        """The longest time from sending to arrival among the last ``last``
        arrivals (0 when none arrived or the send times are unknown)."""
        return max(
            (t - self.sent_at[seq] for seq, t in self.arrivals[-last:] if seq < len(self.sent_at)),
            default=0.0,
        )

    def close(self, drain: float = 5.0) -> None:
        """Stop receiving once the last datagram sent arrived, or nothing arrived for
        1.5 s (or twice the longest transit of the last arrivals, if longer), at most
        ``drain`` s after the end of sending (a loaded guest can hold the last
        datagrams for seconds: its probes saw round trips of 2-3 s), then close the
        sockets."""
        deadline = time.monotonic() + drain
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if any(seq == self.sent - 1 for seq, _ in self.arrivals[-20:]):
                break
            if len(self.arrivals) != seen:
                seen, quiet_since = len(self.arrivals), time.monotonic()
            elif time.monotonic() - quiet_since >= max(1.5, 2 * self.transit()):
                break
            time.sleep(0.1)
        self._stop.set()
        self._rx_thread.join(2)
        self.rx.close()
        self.tx.close()


def stream_across_cut(
    ov: Overlay, relay: int, port: int, seconds: float = 8.0, delay: float = 1.5
) -> tuple[SeqStream, float, str]:
    """A 100 datagram/s stream A -> D for ``seconds`` while relay ``relay`` is cut
    ``delay`` s in (it stays cut); returns the stream, its largest gap from a second
    before the cut, and its summary from the cut (for a failure message)."""
    stream = SeqStream(ov, rate=100, port=port)
    cutter = CutLater(ov, relay, delay)
    try:
        stream.run(seconds)
    finally:
        stream.close()
        cutter.join()
    return stream, stream.largest_gap(after=cutter.done - 1.0), stream.summary(cutter.done)


def tcp_transfer(
    ov: Overlay, nbytes: int, port: int, during: Callable[[], None], timeout: float = 60.0
) -> tuple[str, str, str | None]:
    """TCP A -> D of ``nbytes`` random bytes; ``during()`` runs a third of the way in.

    Returns (sha256 sent, sha256 received, the client's error or None).
    """
    data = secrets.token_bytes(nbytes)
    with netns(ov.d):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with netns(ov.a):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    received = hashlib.sha256()
    error: list[str] = []

    def serve() -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(timeout)
                while chunk := conn.recv(65536):
                    received.update(chunk)
        except OSError as e:
            error.append(f"server: {e}")

    with srv, cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((D_OVERLAY, port))
        srv.listen(1)
        srv.settimeout(timeout)
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        cli.settimeout(timeout)
        try:
            cli.connect((D_OVERLAY, port))
            third = nbytes // 3
            cli.sendall(data[:third])
            during()
            cli.sendall(data[third:])
            cli.shutdown(socket.SHUT_WR)
        except OSError as e:
            error.append(f"client: {e}")
        th.join(timeout)
    return hashlib.sha256(data).hexdigest(), received.hexdigest(), "; ".join(error) or None
