#!/usr/bin/env python3
"""Service rate of the nfqueue backend: queue N packets while nobody reads, time the drain.

    sudo .venv/bin/python tests/host/libitm/measure_drain.py [-n 20000] [--app accept]

Builds a namespace pair (removed afterwards), registers an application at
ip_out for UDP to port 9 in the sender namespace, binds the queue and installs
the rule but does not read; a sender writes N 64-byte (IP length) UDP datagrams,
which wait in the kernel queue; then the loop drains them and the time from the
first to the last verdict gives packets per second. Not a test: a measurement.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE))

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict  # noqa: E402


def queue_total(queue: int) -> int:
    """Packets waiting in ``queue`` (/proc/net/netfilter/nfnetlink_queue)."""
    for line in Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines():
        f = line.split()
        if int(f[0]) == queue:
            return int(f[2])
    return 0


def make_info(kind: str) -> ItmInfo:
    """The application measured."""
    interest = Interest(protocol="udp", dport=9)
    if kind == "accept":
        return ItmInfo("drain", interest)
    if kind == "callbacks":

        def cls(p: Packet) -> int:
            return 1

        def proc(w: Hook, c: int, p: Packet) -> Verdict:
            return Verdict.ACCEPT

        return ItmInfo("drain", interest, class_func=cls, process_func=proc)
    if kind == "tos":

        def settos(w: Hook, c: int, p: Packet) -> None:
            p.tos = 0x10

        return ItmInfo(
            "drain", interest, class_func=lambda p: 1, process_func=settos, needs_payload=True
        )
    raise SystemExit(f"unknown app {kind}")


def inner(n: int, kind: str, sender_ns: str, dst: str) -> None:
    """Runs inside the receiving namespace; the sender runs in ``sender_ns``."""
    loop = ItmLoop("nfqueue", queue_maxlen=n * 2, rcvbuf=256 << 20, batch=512)
    loop.register_hook(Hook.PRE_ROUTING, make_info(kind))
    loop.start()
    be = loop.backend
    q = be.queues[Hook.PRE_ROUTING]  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            sender_ns,
            sys.executable,
            __file__,
            "--send",
            "-n",
            str(n),
            "--dst",
            dst,
        ],
        check=True,
        timeout=120,
    )
    t_send = time.perf_counter() - t0
    deadline = time.monotonic() + 5
    while queue_total(q) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    queued = queue_total(q)
    handled = 0
    t0 = time.perf_counter()
    while handled < queued:
        got = be.process()
        if got == 0 and queue_total(q) == 0:
            break
        handled += got
    dt = time.perf_counter() - t0
    c = be.counters()
    loop.close()
    print(
        json.dumps(
            {
                "app": kind,
                "sent": n,
                "queued": queued,
                "handled": handled,
                "seconds": round(dt, 4),
                "pps": round(handled / dt) if dt else None,
                "us_per_packet": round(dt / max(handled, 1) * 1e6, 2),
                "send_seconds": round(t_send, 3),
                "sends": c["sends"],
                "batch_msgs": c["batch_msgs"],
                "verdict_msgs": c["verdict_msgs"],
                "recvs": c["recvs"],
                "enobufs": c["enobufs"],
            }
        )
    )


def send(n: int, dst: str) -> None:
    """Send ``n`` UDP datagrams of 64 bytes (IP length) to port 9."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * (64 - 28)
    for _ in range(n):
        s.sendto(payload, (dst, 9))


def outer(n: int, apps: list[str]) -> None:
    """Build the namespaces, run inner() in one, clean up."""
    from itm_hostlib import NetPair

    pair = NetPair()
    try:
        pair.create()
        for kind in apps:
            out = pair.run(
                pair.b,
                sys.executable,
                __file__,
                "--inner",
                "-n",
                str(n),
                "--app",
                kind,
                "--sender-ns",
                pair.a,
                "--dst",
                pair.ip_b,
                timeout=300,
            )
            print(out.strip())
    finally:
        pair.destroy()


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument(
        "--app",
        action="append",
        default=None,
        help="accept (no callbacks), callbacks (class+process), tos (rewrite)",
    )
    ap.add_argument("--inner", action="store_true")
    ap.add_argument("--send", action="store_true")
    ap.add_argument("--sender-ns", default="")
    ap.add_argument("--dst", default="")
    a = ap.parse_args()
    apps = a.app or ["accept", "callbacks", "tos"]
    if a.send:
        send(a.n, a.dst)
    elif a.inner:
        inner(a.n, apps[0], a.sender_ns, a.dst)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        outer(a.n, apps)


if __name__ == "__main__":
    main()
