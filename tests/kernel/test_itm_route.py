"""itm_route, itmRoute's kernel data path, driven over its netlink family alone
(no daemon): the overlay of itmroute/lab.py with one relay,

::

    [A] 10.77.100.1 --- R1 --- [D] 10.77.200.1      (the direct A--D link drops all)

A's route to D's prefix and D's route to A's prefix go through R1, so every
packet between the overlay addresses crosses A's kernel tunnel, R1's kernel
relay and D's kernel delivery, and back. The datagrams are the daemon's own
(itmroute/wire.py, itmroute/auth.py): a DATA sealed in Python is taken by the
kernel, forged and replayed ones are dropped and counted.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from itmlab import netns
from itmroute import auth, wire
from itmroute.lab import (
    A_OVERLAY,
    D_OVERLAY,
    Overlay,
    load_stock_modules,
    overlay,
    tcp_transfer,
)
from libitm.control.route import ItmRouteClient, ItmRouteError, RouteSpec
from tests.kernel import kit
from tests.support import forked

PORT = 7177
MARK = 0x17E0
MTU = 1434
A_NET = ipaddress.ip_network("10.77.100.0/24")
D_NET = ipaddress.ip_network("10.77.200.0/24")
R1_A = ipaddress.ip_address("10.77.1.2")  # R1 as A sees it
R1_D = ipaddress.ip_address("10.77.11.1")  # R1 as D sees it


@pytest.fixture
def ov() -> Iterator[Overlay]:
    """The overlay with one relay, itm_mod and itm_route loaded and attached."""
    load_stock_modules()
    with kit.modules():
        kit.insmod("itm_route")
        try:
            with overlay("itmr", 1) as o:
                for ns in (o.a, o.d, *o.relays):
                    kit.itm_attach(ns)
                # the direct link drops what A and D send on it (after itm_route,
                # which runs at LOCAL_OUT before the filter table)
                for ns, dev in ((o.a, "d"), (o.d, "a")):
                    kit.sh("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-o", dev,
                           "-j", "DROP")  # fmt: skip
                yield o
        finally:
            kit.rmmod("itm_route")


def _client(ns: str) -> ItmRouteClient:
    with netns(ns):
        return ItmRouteClient()


def _configure(ov: Overlay) -> dict[str, ItmRouteClient]:
    key = bytes.fromhex(ov.key)
    cl = {"a": _client(ov.a), "r1": _client(ov.relays[0]), "d": _client(ov.d)}
    addrs = {"a": A_OVERLAY, "r1": str(R1_A), "d": D_OVERLAY}
    for node, c in cl.items():
        c.config(addr=ipaddress.ip_address(addrs[node]), port=PORT, key=key, mtu=MTU, mark=MARK)
    cl["a"].route_set(RouteSpec(D_NET, ipaddress.ip_address(D_OVERLAY), R1_A, tag=1))
    cl["d"].route_set(RouteSpec(A_NET, ipaddress.ip_address(A_OVERLAY), R1_D, tag=1))
    return cl


def _ping(
    ns: str, dst: str, count: int = 5, size: int = 56, df: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
         "-s", str(size), *(["-M", "do"] if df else []), "-I", A_OVERLAY, dst],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_configuration_belongs_to_one_socket_and_goes_with_it(ov: Overlay) -> None:
    key = bytes.fromhex(ov.key)
    a = ipaddress.ip_address(A_OVERLAY)
    owner = _client(ov.a)
    other = _client(ov.a)
    try:
        with pytest.raises(ItmRouteError) as bad:
            owner.config(addr=a, port=PORT, key=key[:8], mtu=MTU, mark=MARK)
        assert bad.value.code == errno.EINVAL and "16 to 32" in str(bad.value)
        with pytest.raises(ItmRouteError) as none:
            owner.route_set(RouteSpec(D_NET, ipaddress.ip_address(D_OVERLAY)))
        assert none.value.code == errno.ENOENT
        with pytest.raises(ItmRouteError) as nomark:
            # mark 0 is every unmarked packet: the data path took them all for the daemon's
            owner.config(addr=a, port=PORT, key=key, mtu=MTU, mark=0)
        assert nomark.value.code == errno.EINVAL and "1..0xffff" in str(nomark.value)
        owner.config(addr=a, port=PORT, key=key, mtu=MTU, mark=MARK)
        # a path's addresses are the overlay's (found by a sweep in UML: a 16-byte via
        # on an IPv4 overlay was accepted and its first 4 bytes used)
        for target, via, said in (
            (ipaddress.ip_address(D_OVERLAY), ipaddress.ip_address("fdfd::1"), "first 4 bytes"),
            (ipaddress.ip_address("0.0.0.0"), None, "must not be zero"),
        ):
            with pytest.raises(ItmRouteError) as wrong:
                owner.route_set(RouteSpec(D_NET, target, via, tag=1))
            assert wrong.value.code == errno.EINVAL and said in str(wrong.value)
        with pytest.raises(ItmRouteError) as busy:
            other.config(addr=a, port=PORT, key=key, mtu=MTU, mark=MARK)
        assert busy.value.code == errno.EBUSY and "another socket" in str(busy.value)
        owner.route_set(RouteSpec(D_NET, ipaddress.ip_address(D_OVERLAY), R1_A, tag=1))
        with pytest.raises(ItmRouteError) as busy2:
            other.route_del(D_NET)
        assert busy2.value.code == errno.EBUSY
        state, routes = other.get()  # anyone may read
        assert state is not None and state.port == PORT and state.mtu == MTU
        assert [(r.prefix, r.via, r.tag) for r in routes] == [(D_NET, R1_A, 1)]
    finally:
        owner.close()
    # the owner's socket closed: everything went with it
    assert kit.wait_until(lambda: other.get() == (None, []), 5)
    other.close()


def test_packets_cross_tunnel_relay_and_delivery_in_the_kernel(ov: Overlay) -> None:
    cl = _configure(ov)
    try:
        # outside every route's prefix: not tunnelled
        other = subprocess.run(
            ["ip", "netns", "exec", ov.a, "ping", "-q", "-c", "3", "-i", "0.2", "-W", "2",
             str(R1_A)], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert other.returncode == 0, other.stdout + other.stderr
        assert _stat(cl["a"], "tunnelled") == 0 and _stat(cl["a"], "direct") == 0
        ping = _ping(ov.a, D_OVERLAY, count=10)
        assert ping.returncode == 0, ping.stdout + _counters(cl)
        assert " 0% packet loss" in ping.stdout
        # D's answer (TTL 64) reaches A one hop older: R1's hop, taken off at A
        one = subprocess.run(
            ["ip", "netns", "exec", ov.a, "ping", "-c", "1", "-W", "2", "-I", A_OVERLAY,
             D_OVERLAY], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert one.returncode == 0 and "ttl=63" in one.stdout, one.stdout
        sa, ra = cl["a"].get()
        sr, _ = cl["r1"].get()
        sd, rd = cl["d"].get()
        assert sa is not None and sr is not None and sd is not None
        assert sa.stats["tunnelled"] >= 10 and sa.stats["decapsulated"] >= 10, sa.stats
        assert sr.stats["relayed"] >= 20, sr.stats
        assert sd.stats["decapsulated"] >= 10 and sd.stats["tunnelled"] >= 10, sd.stats
        for s in (sa, sr, sd):
            assert s.stats["auth_failed"] == s.stats["replayed"] == s.stats["bad"] == 0
        # D heard A's data through R1 (the relay's address on D's side), on A's path 1
        (d_route,) = rd
        assert d_route.peer_via == R1_D and d_route.peer_tag == 1
        assert d_route.peer_packets >= 10 and d_route.peer_age is not None
        (a_route,) = ra
        assert a_route.out_age is not None and a_route.out_age < 5
        assert a_route.tunnelled >= 10
        # TCP through the tunnel: GSO buffers cut into segments, the SYN's MSS
        # clamped to the tunnel, every byte intact
        sent, got, err = tcp_transfer(ov, 1_000_000, 5400, lambda: None)
        assert err is None and sent == got
        assert _stat(cl["a"], "mss_clamped") >= 1
        # a DF packet above the tunnel MTU: "fragmentation needed" with it
        big = _ping(ov.a, D_OVERLAY, count=1, size=MTU, df=True)
        assert big.returncode != 0
        assert _stat(cl["a"], "too_big") >= 1
    finally:
        for c in cl.values():
            c.close()


def _datagram(sealer: auth.Sealer, target: str, inner: bytes, relayed: bool = True) -> bytes:
    """DATA for ``target`` as its sender seals it to go through a relay."""
    body = wire.data_body(socket.inet_aton(target), 1, None, inner)
    return sealer.seal(wire.DATA | (wire.RELAYED if relayed else 0), body)


def _echo_request(src: str, dst: str, ident: int) -> bytes:
    """An ICMP echo request, IPv4 header included (checksums right)."""

    def csum(b: bytes) -> int:
        s = sum(int.from_bytes(b[i : i + 2], "big") for i in range(0, len(b), 2))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    icmp = bytearray(b"\x08\x00\x00\x00" + ident.to_bytes(2, "big") + b"\x00\x01" + b"x" * 16)
    icmp[2:4] = csum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(20)
    ip[0], ip[8], ip[9] = 0x45, 64, 1
    ip[2:4] = (20 + len(icmp)).to_bytes(2, "big")
    ip[12:16], ip[16:20] = socket.inet_aton(src), socket.inet_aton(dst)
    ip[10:12] = csum(bytes(ip)).to_bytes(2, "big")
    return bytes(ip + icmp)


def test_python_sealed_data_is_taken_forged_and_replayed_are_counted(ov: Overlay) -> None:
    cl = _configure(ov)
    x = ov.add_intruder()
    kit.sh("ip", "-n", x, "route", "add", "10.77.0.0/16", "via", "10.77.50.2")
    try:
        inner = _echo_request(A_OVERLAY, D_OVERLAY, 77)
        good = _datagram(auth.Sealer(bytes.fromhex(ov.key), socket.inet_aton(A_OVERLAY)),
                         D_OVERLAY, inner)  # fmt: skip
        forged = _datagram(auth.Sealer(b"k" * 32, socket.inet_aton(A_OVERLAY)), D_OVERLAY, inner)
        # sealed right, but not marked to be relayed: R1 does not send it on
        a_sealer = auth.Sealer(bytes.fromhex(ov.key), socket.inet_aton(A_OVERLAY))
        unasked = _datagram(a_sealer, D_OVERLAY, _echo_request(A_OVERLAY, D_OVERLAY, 78), False)
        with netns(x):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(good, (str(R1_A), PORT))
            s.sendto(good, (str(R1_A), PORT))  # the same datagram again
            s.sendto(forged, (str(R1_A), PORT))
            s.sendto(unasked, (str(R1_A), PORT))
            junk = wire.header(wire.DATA, socket.inet_aton(A_OVERLAY), 1) + bytes(80)
            s.sendto(junk, (str(R1_A), PORT))  # no MAC that holds
        # the Python-sealed request reached D, D's answer came back to A through R1
        assert kit.wait_until(lambda: _stat(cl["a"], "decapsulated") >= 1, 5), _counters(cl)
        sr, _ = cl["r1"].get()
        assert sr is not None
        # relayed: the request and D's answer, not the request's replay
        assert sr.stats["relayed"] == 2, sr.stats
        assert sr.stats["replayed"] == 1 and sr.stats["auth_failed"] == 2, sr.stats
        assert sr.stats["bad"] == 1, sr.stats
        assert _stat(cl["d"], "decapsulated") == 1
    finally:
        for c in cl.values():
            c.close()


def test_a_new_key_takes_effect_at_once(ov: Overlay) -> None:
    """The relay keeps each sender's key once derived; a new overlay key replaces
    them: data sealed with the old key fails from then on, with the new one passes."""
    cl = _configure(ov)
    x = ov.add_intruder()
    kit.sh("ip", "-n", x, "route", "add", "10.77.0.0/16", "via", "10.77.50.2")
    old, new = bytes.fromhex(ov.key), bytes(range(32))
    a = socket.inet_aton(A_OVERLAY)
    inner = _echo_request(A_OVERLAY, D_OVERLAY, 78)
    try:
        with netns(x):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(_datagram(auth.Sealer(old, a), D_OVERLAY, inner), (str(R1_A), PORT))
            # the request and D's answer
            assert kit.wait_until(lambda: _stat(cl["r1"], "relayed") == 2, 15), _counters(cl)
            for c, addr in ((cl["r1"], str(R1_A)), (cl["d"], D_OVERLAY)):
                c.config(addr=ipaddress.ip_address(addr), port=PORT, key=new, mtu=MTU, mark=MARK)
            before = _stat(cl["r1"], "relayed")
            s.sendto(_datagram(auth.Sealer(old, a), D_OVERLAY, inner), (str(R1_A), PORT))
            assert kit.wait_until(lambda: _stat(cl["r1"], "auth_failed") == 1, 15), _counters(cl)
            s.sendto(_datagram(auth.Sealer(new, a), D_OVERLAY, inner), (str(R1_A), PORT))
            # relayed (and D's answer with it: D has the new key too)
            assert kit.wait_until(lambda: _stat(cl["r1"], "relayed") >= before + 1, 15), _counters(
                cl
            )
            assert _stat(cl["r1"], "auth_failed") == 1
    finally:
        for c in cl.values():
            c.close()


def _counters(cl: dict[str, ItmRouteClient]) -> str:
    """Every node's counters and routes, for a failure message."""
    return "\n".join(f"{node}: {c.get()}" for node, c in cl.items())


def _stat(client: ItmRouteClient, name: str) -> int:
    """One counter of the client's namespace (0 when it is not configured)."""
    state, _ = client.get()
    return state.stats[name] if state is not None else 0


def _owner(a: str, key: str, d: str, relay: str) -> None:
    """itm_route's configuration owner, run in a child of its own (forked.start)."""
    c = ItmRouteClient()
    c.config(addr=ipaddress.ip_address(a), port=PORT, key=bytes.fromhex(key), mtu=MTU, mark=MARK)
    c.route_set(RouteSpec(D_NET, ipaddress.ip_address(d), ipaddress.ip_address(relay), tag=1))
    print("ready", flush=True)
    time.sleep(600)


def test_no_route_to_the_relay_or_kill_9_of_the_owner_sends_packets_direct(
    ov: Overlay,
) -> None:
    """The tunnel fails open: a relay A cannot reach, then an owner killed with -9."""
    for ns in (ov.a, ov.d):
        kit.sh("ip", "netns", "exec", ns, "iptables", "-F", "OUTPUT")
    with netns(ov.a), ItmRouteClient() as owner:
        owner.config(addr=ipaddress.ip_address(A_OVERLAY), port=PORT,
                     key=bytes.fromhex(ov.key), mtu=MTU, mark=MARK)  # fmt: skip
        nowhere = ipaddress.ip_address("10.99.0.1")  # A has no route there
        owner.route_set(RouteSpec(D_NET, ipaddress.ip_address(D_OVERLAY), nowhere, tag=1))
        ping = _ping(ov.a, D_OVERLAY, count=3)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        state, routes = owner.get()
        assert state is not None, "the owner is alive"
        assert state.stats["no_route"] >= 3 and state.stats["tunnelled"] == 0, state
        assert state.stats["send_errors"] == 0 and routes[0].direct >= 3, routes
    # a process of its own, forked: a new Python takes a minute on the debug kernel
    proc = forked.start(
        lambda: _owner(A_OVERLAY, ov.key, D_OVERLAY, str(R1_A)), ["owner"], ns=ov.a, stderr=None
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with netns(ov.a), ItmRouteClient() as watch:
            assert watch.get()[0] is not None
            proc.kill()
            proc.wait(10)
            assert kit.wait_until(lambda: watch.get() == (None, []), 5)
        # R1 has no itm_route configuration: only the direct path can carry this
        ping = _ping(ov.a, D_OVERLAY, count=3)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_an_overlay_of_ipv6_itms_carries_ipv4_and_ipv6_packets() -> None:
    """Outer IPv6 (the ITMs' addresses, UDP over IPv6 with its checksum), inner IPv4
    and IPv6: both pings cross A's tunnel, R1's relay and D's delivery, and back."""
    a6, d6 = ipaddress.ip_address("fd77:100::1"), ipaddress.ip_address("fd77:200::1")
    r1_a6, r1_d6 = ipaddress.ip_address("fd77:a1::2"), ipaddress.ip_address("fd77:d1::1")
    a_net6, d_net6 = ipaddress.ip_network("fd77:100::/64"), ipaddress.ip_network("fd77:200::/64")
    load_stock_modules()
    with kit.modules():
        kit.insmod("itm_route")
        try:
            with overlay("itmr6", 1, outer=6) as ov:
                for ns in (ov.a, ov.d, *ov.relays):
                    kit.itm_attach(ns)
                for ns, dev in ((ov.a, "d"), (ov.d, "a")):
                    for tool in ("iptables", "ip6tables"):
                        kit.sh("ip", "netns", "exec", ns, tool, "-A", "OUTPUT", "-o", dev,
                               "-j", "DROP")  # fmt: skip
                key = bytes.fromhex(ov.key)
                cl = {"a": _client(ov.a), "r1": _client(ov.relays[0]), "d": _client(ov.d)}
                try:
                    for node, me in (("a", a6), ("r1", r1_a6), ("d", d6)):
                        cl[node].config(addr=me, port=PORT, key=key, mtu=MTU, mark=MARK)
                    for net in (D_NET, d_net6):
                        cl["a"].route_set(RouteSpec(net, d6, r1_a6, tag=1))
                    for net in (A_NET, a_net6):
                        cl["d"].route_set(RouteSpec(net, a6, r1_d6, tag=1))
                    ping4 = _ping(ov.a, D_OVERLAY, count=3)
                    assert ping4.returncode == 0, ping4.stdout + _counters(cl)
                    ping6 = subprocess.run(
                        ["ip", "netns", "exec", ov.a, "ping", "-6", "-q", "-c", "3", "-i", "0.2",
                         "-W", "2", "-I", str(a6), str(d6)],
                        capture_output=True, text=True, timeout=60, check=False,
                    )  # fmt: skip
                    assert ping6.returncode == 0, ping6.stdout + _counters(cl)
                    assert _stat(cl["a"], "tunnelled") >= 6 and _stat(cl["r1"], "relayed") >= 12
                    assert _stat(cl["d"], "decapsulated") >= 6
                finally:
                    for c in cl.values():
                        c.close()
        finally:
            kit.rmmod("itm_route")
