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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
        # one `ip` for the namespaces and the veths: on the VM tier's emulated
        # CPU every process costs a few tenths of a second
        _ip_batch(
            [f"netns add {n}" for n in names]
            + [
                f"link add c0 netns {t.client} type veth peer r0 netns {t.router}",
                f"link add s0 netns {t.server} type veth peer r1 netns {t.router}",
            ]
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
            _ip_batch(lines, ns)
        with netns(t.router):  # /proc/sys/net is the opening thread's namespace's
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
            Path("/proc/sys/net/ipv6/conf/all/forwarding").write_text("1\n")
        yield t
    finally:
        # -force: on past a namespace that was never made
        _ip_batch([f"netns del {n}" for n in names], force=True, check=False)


def _ip_batch(
    lines: list[str], ns: str | None = None, *, force: bool = False, check: bool = True
) -> None:
    """Run `ip` commands (in namespace `ns`) with one `ip -batch`."""
    cmd = ["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"]
    proc = subprocess.run(
        cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False
    )
    if check and proc.returncode:
        raise RuntimeError(f"ip -batch{' in ' + ns if ns else ''}: {proc.stderr.strip()}")


#: seconds udp() waits for the first IPv6 datagram (neighbour discovery)
V6_FIRST_WAIT = 5.0


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
        # IPv6 neighbour discovery on a loaded emulated machine can hold the
        # first datagrams for over a second; v4 has ARP warmed by earlier traffic
        # and tests that expect nothing to arrive (drops) keep the short wait
        rx.settimeout(max(wait, V6_FIRST_WAIT) if v6 else wait)
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
                rx.settimeout(wait)
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


@dataclass
class Chain:
    """A line of namespaces, each linked to the next by a veth pair.

    Link ``i`` joins ``names[i]`` and ``names[i+1]`` on 10.78.<i+1>.0/24: the left
    end is .1, the right end .2; interfaces are named ``l<i>`` (left end) and
    ``r<i>`` (right end).  Every namespace routes everything else towards the
    far ends, so the first and the last can talk through the middle ones.
    """

    names: list[str]

    def addr(self, index: int) -> str:
        """The address of namespace `index` (on its link towards the left, or right for 0)."""
        return "10.78.1.1" if index == 0 else f"10.78.{index}.2"

    def dev_out(self, index: int) -> str:
        """The interface of namespace `index` towards the next one."""
        return f"l{index}"


@contextlib.contextmanager
def chain(roles: list[str]) -> Iterator[Chain]:
    """Create a chain of namespaces named after `roles`; remove them afterwards."""
    tag = secrets.token_hex(3)
    c = Chain([f"itm{role[:3]}-{tag}" for role in roles])
    try:
        for n in c.names:
            sh("ip", "netns", "add", n)
        last = len(c.names) - 1
        for i in range(last):
            left, right = c.names[i], c.names[i + 1]
            sh(
                "ip",
                "link",
                "add",
                f"l{i}",
                "netns",
                left,
                "type",
                "veth",
                "peer",
                f"r{i}",
                "netns",
                right,
            )
        for i, ns in enumerate(c.names):
            lines = ["link set lo up"]
            if i < last:
                lines += [f"addr add 10.78.{i + 1}.1/24 dev l{i}", f"link set l{i} up"]
            if i > 0:
                lines += [f"addr add 10.78.{i}.2/24 dev r{i - 1}", f"link set r{i - 1} up"]
            # routes to the subnets beyond the neighbours
            for j in range(1, last + 1):
                if j < i:
                    lines.append(f"route add 10.78.{j}.0/24 via 10.78.{i}.1")
                elif j > i + 1:
                    lines.append(f"route add 10.78.{j}.0/24 via 10.78.{i + 1}.2")
            proc = subprocess.run(
                ["ip", "-n", ns, "-batch", "-"],
                input="\n".join(lines) + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                raise RuntimeError(f"ip -batch in {ns}: {proc.stderr}")
            if 0 < i < last:
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield c
    finally:
        for n in c.names:
            sh("ip", "netns", "del", n, check=False)


class FlowServer:
    """A TCP server in a namespace: reads each connection to its end, answers one byte."""

    def __init__(self, ns: str, port: int) -> None:
        with netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", port))
        self.sock.listen(64)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(60)
            while conn.recv(262144):
                pass
            conn.sendall(b"!")

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def timed_flow(
    ns: str,
    dst: str,
    port: int,
    nbytes: int,
    *,
    timeout: float = 60.0,
    deadline: float | None = None,
) -> tuple[float, int, int]:
    """Send `nbytes` (or until `deadline`, a time.monotonic() value) and wait for the answer.

    Returns (seconds from connect to answer, bytes sent, the client's source port);
    seconds is negative when the flow did not complete.
    """
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    chunk = b"z" * 65536
    sent = 0
    with s:
        s.settimeout(timeout)
        start = time.monotonic()
        try:
            s.connect((dst, port))
            sport = s.getsockname()[1]
            while sent < nbytes and (deadline is None or time.monotonic() < deadline):
                n = s.send(chunk[: min(len(chunk), nbytes - sent)])
                sent += n
            s.shutdown(socket.SHUT_WR)
            if s.recv(1) != b"!":
                return -1.0, sent, sport
        except OSError:
            return -1.0, sent, 0
        return time.monotonic() - start, sent, sport
