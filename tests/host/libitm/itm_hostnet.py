#!/usr/bin/env python3
"""Traffic and capture helpers for the host tests (run inside a test namespace).

    udp-send DST PORT COUNT [SIZE]      send COUNT datagrams
    udp-recv PORT TIMEOUT [COUNT]       print {"received": n} when COUNT arrived or on timeout
    tcp-send DST PORT NBYTES            send a seeded random stream, print its sha256
    tcp-recv PORT TIMEOUT               print {"bytes": n, "sha256": ...} of one connection
    capture IFACE TIMEOUT OUT COUNT     AF_PACKET capture of IP frames to a pcap
    nfq-hold QUEUE TIMEOUT              bind an nfnetlink queue (no rule) and hold it

Receivers print "ready" on stdout once bound.
"""

from __future__ import annotations

import hashlib
import json
import random
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from libitm.pcap import LINKTYPE_ETHERNET, PcapWriter
from libitm.transport import codec as nfq

ETH_P_ALL = 0x0003


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def udp_send(dst: str, port: int, count: int, size: int = 64) -> None:
    s = socket.socket(_family(dst), socket.SOCK_DGRAM)
    for i in range(count):
        s.sendto(i.to_bytes(4, "big") + b"u" * max(0, size - 4), (dst, port))
    print(json.dumps({"sent": count}))


def udp_recv(port: int, timeout: float, count: int = 1 << 30) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    print("ready", flush=True)
    n = 0
    end = time.monotonic() + timeout
    while n < count:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if r:
            s.recv(65536)
            n += 1
    print(json.dumps({"received": n}), flush=True)


def _stream(nbytes: int) -> bytes:
    return random.Random(nbytes).randbytes(nbytes)


def tcp_send(dst: str, port: int, nbytes: int) -> None:
    data = _stream(nbytes)
    with socket.create_connection((dst, port), timeout=20) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    print(json.dumps({"bytes": nbytes, "sha256": hashlib.sha256(data).hexdigest()}))


def tcp_recv(port: int, timeout: float) -> None:
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", port))
    ls.listen(1)
    ls.settimeout(timeout)
    print("ready", flush=True)
    conn, _ = ls.accept()
    conn.settimeout(timeout)
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    conn.close()
    print(json.dumps({"bytes": n, "sha256": h.hexdigest()}), flush=True)


def capture(iface: str, timeout: float, out: str, count: int) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    print("ready", flush=True)
    end = time.monotonic() + timeout
    n = 0
    with open(out, "wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        while n < count:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([s], [], [], left)
            if not r:
                continue
            frame, addr = s.recvfrom(1 << 16)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            w.write_packet(time.time(), frame)
            n += 1
            f.flush()
    print(json.dumps({"captured": n}), flush=True)


def nfq_hold(queue: int, timeout: float) -> None:
    """Bind ``queue`` as another program would, without any rule; print the bind's errno."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfq.NETLINK_NETFILTER)
    s.bind((0, 0))
    s.send(nfq.config_cmd(queue, nfq.NFQNL_CFG_CMD_BIND, seq=1))
    n = s.recv_into(buf := bytearray(4096))
    err = next(
        (nfq.decode_error(buf, off, ln)[0] for t, _, off, ln in nfq.messages(buf, n)
         if t == nfq.NLMSG_ERROR),
        -1,
    )  # fmt: skip
    if err:
        raise SystemExit(f"binding queue {queue} failed: errno {err}")
    print("ready", flush=True)
    time.sleep(timeout)


def main() -> None:
    cmd, *a = sys.argv[1:]
    if cmd == "udp-send":
        udp_send(a[0], int(a[1]), int(a[2]), *(int(x) for x in a[3:]))
    elif cmd == "udp-recv":
        udp_recv(int(a[0]), float(a[1]), *(int(x) for x in a[2:]))
    elif cmd == "tcp-send":
        tcp_send(a[0], int(a[1]), int(a[2]))
    elif cmd == "tcp-recv":
        tcp_recv(int(a[0]), float(a[1]))
    elif cmd == "capture":
        capture(a[0], float(a[1]), a[2], int(a[3]))
    elif cmd == "nfq-hold":
        nfq_hold(int(a[0]), float(a[1]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
