"""The Python consumers of bench/libitm_queue.py: libitm and python-netfilterqueue.

    python -m bench.queue_consumers libitm|libitm-kernel|netfilterqueue accept|tos --queue Q
        [--port P] [--proto udp|tcp] [--gso]

Each binds a queue, prints ``READY`` once packets can arrive, answers every
packet (accept, or rewrite the IPv4 TOS byte and accept the modified packet)
until SIGTERM, then prints one JSON line with its counters.

* libitm: the ordinary per-packet callback API — an ``ItmInfo`` at ``ip_forward``
  with a ``class_func`` (class 1) and a ``process_func`` that returns ACCEPT or
  sets ``pkt.tos`` (the setter fixes the checksum); libitm installs its own
  rule for the interest (UDP to the port) and binds the first free queue from
  ``--queue``. ``libitm-kernel``: the same on the kernel backend (itm_mod and
  itm_queue loaded): registered through itm_queue, which assigns the queue.
  ``--proto tcp``: the interest is TCP to the port; ``--gso``: the nfqueue
  backend's ``gso`` option (unsegmented packets, checksums finished by libitm).
* netfilterqueue 1.1.0: ``NetfilterQueue.bind`` with a callback that calls
  ``pkt.accept()``, or rewrites byte 1 of ``get_payload()``, fixes the header
  checksum and calls ``set_payload`` then ``accept()``; the benchmark installs
  the NFQUEUE rule.
"""

from __future__ import annotations

import json
import signal
import sys
import types
from typing import Any

from bench import cliargs

NEW_TOS = 0x28


def _fix_tos(data: bytes, tos: int) -> bytes:
    """``data`` (an IPv4 packet) with the TOS byte set and the header checksum recomputed."""
    b = bytearray(data)
    b[1] = tos
    b[10] = b[11] = 0
    ihl = (b[0] & 0x0F) * 4
    s = 0
    for i in range(0, ihl, 2):
        s += (b[i] << 8) | b[i + 1]
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    c = ~s & 0xFFFF
    b[10] = c >> 8
    b[11] = c & 0xFF
    return bytes(b)


def run_libitm(
    mode: str,
    queue: int,
    port: int,
    maxlen: int,
    rcvbuf: int,
    profile: str,
    backend: str = "nfqueue",
    proto: str = "udp",
    gso: bool = False,
) -> None:
    """The libitm consumer (see the module docstring), on the nfqueue or kernel backend."""
    from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict

    def class_func(where: Hook, pkt: Packet) -> int:
        return 1

    if mode == "tos":

        def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
            pkt.tos = NEW_TOS
            return Verdict.ACCEPT

    else:

        def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
            return Verdict.ACCEPT

    info = ItmInfo(
        "bench",
        Interest(family=4, protocol=proto, dport=port),
        class_func=class_func,
        process_func=process_func,
        needs_payload=mode == "tos",
    )
    if backend == "kernel":  # itm_mod queues the interest's packets; fail-open always
        loop = ItmLoop("kernel", queue_maxlen=maxlen, rcvbuf=rcvbuf)
    else:
        loop = ItmLoop(
            "nfqueue",
            queue_base=queue,
            queue_maxlen=maxlen,
            rcvbuf=rcvbuf,
            fail_open=False,
            gso=gso,
        )
    loop.register_hook(Hook.IP_FORWARD, info)
    loop.start()
    be: Any = loop.backend
    bound = be.app_queues["bench"] if backend == "kernel" else be.queues[Hook.IP_FORWARD]
    print("READY", bound, flush=True)
    prof: Any = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        loop.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        c = loop.counters()
        loop.close()
        be = c["backend"]
        print(
            json.dumps(
                {
                    "packets": be["packets"],
                    "modified": be["modified"],
                    "enobufs": be["enobufs"],
                    "socket_drops": be["socket_drops"],
                    "sends": be["sends"],
                    "recvs": be["recvs"],
                }
            ),
            flush=True,
        )


def run_netfilterqueue(mode: str, queue: int, maxlen: int, rcvbuf: int) -> None:
    """The python-netfilterqueue consumer (see the module docstring)."""
    from netfilterqueue import NetfilterQueue

    count = [0, 0]

    if mode == "tos":

        def cb(pkt: Any) -> None:
            count[0] += 1
            data = pkt.get_payload()
            if data[1] != NEW_TOS:
                pkt.set_payload(_fix_tos(data, NEW_TOS))
                count[1] += 1
            pkt.accept()

    else:

        def cb(pkt: Any) -> None:
            count[0] += 1
            pkt.accept()

    nfq = NetfilterQueue()
    nfq.bind(queue, cb, max_len=maxlen, sock_len=rcvbuf // 2)

    def on_term(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    print("READY", queue, flush=True)
    try:
        nfq.run()
    except KeyboardInterrupt:
        pass
    finally:
        nfq.unbind()
        print(json.dumps({"packets": count[0], "modified": count[1]}), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = cliargs.parser("bench.queue_consumers", __doc__)
    ap.add_argument("impl", choices=("libitm", "libitm-kernel", "netfilterqueue"))
    ap.add_argument("mode", choices=("accept", "tos"))
    ap.add_argument("--queue", type=cliargs.queue_num, required=True)
    ap.add_argument("--port", type=cliargs.port, default=9)
    ap.add_argument("--maxlen", type=cliargs.positive, default=4096)
    ap.add_argument("--rcvbuf", type=cliargs.positive, default=64 << 20)
    ap.add_argument("--profile", default="", help="libitm: write cProfile stats here")
    ap.add_argument("--proto", choices=("udp", "tcp"), default="udp", help="libitm's interest")
    ap.add_argument("--gso", action="store_true", help="libitm nfqueue: unsegmented packets")
    a = ap.parse_args(argv)
    if a.impl.startswith("libitm"):
        backend = "kernel" if a.impl == "libitm-kernel" else "nfqueue"
        run_libitm(a.mode, a.queue, a.port, a.maxlen, a.rcvbuf, a.profile, backend, a.proto, a.gso)
    else:
        run_netfilterqueue(a.mode, a.queue, a.maxlen, a.rcvbuf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
