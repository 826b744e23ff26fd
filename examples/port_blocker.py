#!/usr/bin/env python3
"""port_blocker — drop packets to some ports, with the function-style libitm API.

A minimal application: an interest (TCP and UDP to the given ports), a
``class_func`` that puts every packet of interest in class 1, a
``process_func`` that drops it, and a timer that reports the count.

    python examples/port_blocker.py --ports 23,445 --backend offline --pcap IN --out OUT
    sudo python examples/port_blocker.py --ports 23 --hook ip_in --duration 30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import libitm
from libitm import Hook, Interest, ItmInfo, Packet, Verdict


def make_blocker(port_lo: int, port_hi: int, label: str = "port_blocker") -> ItmInfo:
    """An ItmInfo that drops TCP and UDP packets to ports ``port_lo``..``port_hi``."""

    def class_func(where: Hook, pkt: Packet) -> int:
        return 1

    def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
        return Verdict.DROP

    return ItmInfo(
        label, Interest(dport=(port_lo, port_hi)), class_func=class_func, process_func=process_func
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description="drop TCP/UDP packets to a port range")
    ap.add_argument("--ports", required=True, help="PORT or LO-HI")
    ap.add_argument("--hook", default="ip_in")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--pcap")
    ap.add_argument("--out")
    ap.add_argument("--log")
    ap.add_argument("--duration", type=float)
    args = ap.parse_args(argv)
    lo, _, hi = args.ports.partition("-")
    info = make_blocker(int(lo), int(hi or lo))
    libitm.register_hook(args.hook, info)
    libitm.register_timer(lambda: print(f"dropped {info.counters.dropped}", flush=True), 5.0)
    options = {"pcap": args.pcap, "out": args.out, "log": args.log} if args.pcap else {}
    with contextlib.suppress(KeyboardInterrupt):
        libitm.run(backend=args.backend, duration=args.duration, **options)
    print(f"dropped {info.counters.dropped} of {info.counters.packets}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
