"""Traffic between the lab's namespaces: UDP and TCP transfers, ping, timed flows."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import socket
import threading
import time

from .commands import run
from .netns import netns
from .topology import Topology

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
    _, sent, got = tcp_transfer(t, nbytes, port, v6=v6, timeout=timeout)
    return sent, got


def tcp_transfer(
    t: Topology,
    nbytes: int,
    port: int,
    *,
    tos: int = 0,
    v6: bool = False,
    timeout: float = 30.0,
) -> tuple[int, str, str]:
    """Send `nbytes` random bytes client -> server with the client's TOS (traffic
    class) set to `tos`.

    Returns (client port, sha256 sent, sha256 received); the received digest is
    "" when the transfer did not complete.  Returns after both ends closed.
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
        if tos:
            if v6:
                cli.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
            else:
                cli.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        cli.settimeout(timeout)
        cport = 0
        with contextlib.suppress(OSError):
            cli.connect((dst, port))
            cport = cli.getsockname()[1]
            cli.sendall(data)
            cli.shutdown(socket.SHUT_WR)
            # wait for the server's FIN so that both directions are complete
            while cli.recv(4096):
                pass
        th.join(timeout)
    return cport, hashlib.sha256(data).hexdigest(), received.hexdigest() if done.is_set() else ""


def ping(ns: str, dst: str, count: int = 1) -> bool:
    """ping from a namespace; True when every echo came back."""
    proc = run(
        "ip", "netns", "exec", ns, "ping", "-q", "-c", str(count), "-i", "0.2", "-W", "2", dst,
        check=False,
    )  # fmt: skip
    return proc.returncode == 0


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
