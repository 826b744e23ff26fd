"""A small network lab: namespaces, a client--router--server topology and traffic.

Used by `make demo`, the VM tests and the benchmarks.  Everything here runs as
root; traffic goes only between the namespaces it creates.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> str:
    """Run a command; return its stdout; raise with its stderr when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the block (this thread) in network namespace `name`."""
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{name}", "rb") as ns:
        if _libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({name})")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns(back)")


@dataclass
class Topology:
    """client -- router -- server, IPv4 and IPv6, in three fresh namespaces.

    ::

        [client] c0 ---- r0 [router] r1 ---- s0 [server]
          10.77.1.2    10.77.1.1  10.77.2.1    10.77.2.2
          fd77:1::2    fd77:1::1  fd77:2::1    fd77:2::2
    """

    client: str
    router: str
    server: str
    client4: str = "10.77.1.2"
    router4: str = "10.77.1.1"
    server4: str = "10.77.2.2"
    client6: str = "fd77:1::2"
    router6: str = "fd77:1::1"
    server6: str = "fd77:2::2"


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """Create the three-namespace topology; remove it afterwards, also on failure."""
    tag = secrets.token_hex(3)
    t = Topology(f"itmc-{tag}", f"itmr-{tag}", f"itms-{tag}")
    names = (t.client, t.router, t.server)
    try:
        for n in names:
            sh("ip", "netns", "add", n)
        sh(
            "ip",
            "link",
            "add",
            "c0",
            "netns",
            t.client,
            "type",
            "veth",
            "peer",
            "r0",
            "netns",
            t.router,
        )
        sh(
            "ip",
            "link",
            "add",
            "s0",
            "netns",
            t.server,
            "type",
            "veth",
            "peer",
            "r1",
            "netns",
            t.router,
        )
        cmds = {
            t.client: [
                "addr add 10.77.1.2/24 dev c0",
                "addr add fd77:1::2/64 dev c0 nodad",
                "link set c0 up",
                "link set lo up",
                "route add default via 10.77.1.1",
                "route add default via fd77:1::1",
            ],
            t.router: [
                "addr add 10.77.1.1/24 dev r0",
                "addr add 10.77.2.1/24 dev r1",
                "addr add fd77:1::1/64 dev r0 nodad",
                "addr add fd77:2::1/64 dev r1 nodad",
                "link set r0 up",
                "link set r1 up",
                "link set lo up",
            ],
            t.server: [
                "addr add 10.77.2.2/24 dev s0",
                "addr add fd77:2::2/64 dev s0 nodad",
                "link set s0 up",
                "link set lo up",
                "route add default via 10.77.2.1",
                "route add default via fd77:2::1",
            ],
        }
        for ns, lines in cmds.items():
            proc = subprocess.run(
                ["ip", "-n", ns, "-batch", "-"],
                input="\n".join(lines) + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                raise RuntimeError(f"ip -batch in {ns}: {proc.stderr}")
        sh(
            "ip",
            "netns",
            "exec",
            t.router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        )
        yield t
    finally:
        for n in names:
            sh("ip", "netns", "del", n, check=False)


def udp(
    t: Topology,
    count: int,
    dport: int,
    *,
    v6: bool = False,
    sport: int = 0,
    size: int = 64,
    wait: float = 1.0,
) -> int:
    """Send `count` datagrams client -> server; return how many arrived."""
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    dst = t.server6 if v6 else t.server4
    with netns(t.server):
        rx = socket.socket(fam, socket.SOCK_DGRAM)
    with netns(t.client):
        tx = socket.socket(fam, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("", dport))
        rx.settimeout(wait)
        if sport:
            tx.bind(("", sport))
        payload = b"x" * size
        for _ in range(count):
            tx.sendto(payload, (dst, dport))
        got = 0
        with contextlib.suppress(TimeoutError):
            while got < count:
                rx.recv(65536)
                got += 1
        return got


def tcp(
    t: Topology, nbytes: int, port: int, *, v6: bool = False, timeout: float = 30.0
) -> tuple[str, str]:
    """Send `nbytes` random bytes client -> server over TCP.

    Returns (sha256 sent, sha256 received); the received digest is "" when the
    transfer did not complete.
    """
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    dst = t.server6 if v6 else t.server4
    data = secrets.token_bytes(nbytes)
    with netns(t.server):
        srv = socket.socket(fam, socket.SOCK_STREAM)
    with netns(t.client):
        cli = socket.socket(fam, socket.SOCK_STREAM)
    received = hashlib.sha256()
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(timeout)
                while chunk := conn.recv(65536):
                    received.update(chunk)
                done.set()

    with srv, cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("", port))
        srv.listen(1)
        srv.settimeout(timeout)
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        cli.settimeout(timeout)
        with contextlib.suppress(OSError):
            cli.connect((dst, port))
            cli.sendall(data)
            cli.shutdown(socket.SHUT_WR)
        th.join(timeout)
    return hashlib.sha256(data).hexdigest(), received.hexdigest() if done.is_set() else ""


def ping(ns: str, dst: str, count: int = 1) -> bool:
    """ping from a namespace; True when every echo came back."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-q", "-c", str(count), "-i", "0.2", "-W", "2", dst],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0
