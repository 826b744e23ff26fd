#!/usr/bin/env python3
"""port_blocker — drop packets to some ports, with the function-style libitm API.

A minimal application: an interest (TCP and UDP to the given ports), a
``class_func`` that puts every packet of interest in class 1, a
``process_func`` that drops it, and a timer that reports the count.

    python examples/port_blocker.py --ports 23,445 --backend offline --pcap IN --out OUT
    sudo python examples/port_blocker.py --ports 23 --hook ip_in --duration 30
    sudo itmtool run --workers 2 examples/port_blocker.py -- --ports 23
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import libitm
from libitm import Hook, Interest, ItmInfo, Packet, Verdict, cliargs
from libitm.files import check_offline_paths, describe_error


def make_blocker(port_lo: int, port_hi: int, label: str = "port_blocker") -> ItmInfo:
    """An ItmInfo that drops TCP and UDP packets to ports ``port_lo``..``port_hi``."""

    def class_func(where: Hook, pkt: Packet) -> int:
        return 1

    def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
        return Verdict.DROP

    return ItmInfo(
        label, Interest(dport=(port_lo, port_hi)), class_func=class_func, process_func=process_func
    )


def port_ranges(text: str) -> list[tuple[int, int]]:
    """argparse type: ``PORT``, ``LO-HI`` or a comma-separated list of them (``23,445``)."""
    ranges = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            rng = (int(lo), int(hi) if sep else int(lo))
        except ValueError:
            rng = (-1, -1)
        if not (0 <= rng[0] <= rng[1] <= 65535):
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a port or LO-HI range in 0..65535 "
                "(give PORT, LO-HI or a comma-separated list: 23,445)"
            )
        ranges.append(rng)
    return ranges


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Exit codes (itmtool's): 0 done; 1 the run failed (e.g. a damaged capture);
    2 bad arguments, or --out/--log naming the input; 4 permission denied (a
    live backend as non-root, a file); 5 no such file; 6 the backend cannot run
    here; 130 Ctrl-C.
    """
    ap = argparse.ArgumentParser(description="drop TCP/UDP packets to some ports")
    ap.add_argument(
        "--ports", required=True, type=port_ranges, help="PORT, LO-HI, or a list: 23,445,8000-8080"
    )
    ap.add_argument(
        "--hook", default="ip_in", type=cliargs.hook, help="where to drop (default ip_in)"
    )
    ap.add_argument("--backend", default="auto", choices=["auto", "kernel", "nfqueue", "offline"])
    ap.add_argument("--pcap", help="input trace, pcap or pcapng (offline backend)")
    ap.add_argument("--out", help="result trace (offline backend; written whole or not at all)")
    ap.add_argument("--log", help="verdict log (offline backend)")
    ap.add_argument("--duration", type=cliargs.seconds, help="seconds to run (live backends)")
    ap.add_argument(
        "--workers",
        type=cliargs.workers,
        default=1,
        help="processes, each with its own queue; a flow stays on one (live backends)",
    )
    args = ap.parse_args(argv)
    offline = args.backend == "offline" or (args.backend == "auto" and args.pcap)
    if offline and not args.pcap:
        ap.error("the offline backend needs --pcap")
    if not offline and (args.out or args.log):
        ap.error(f"--out/--log go with the offline backend, not {args.backend}")
    if offline and args.workers > 1:
        ap.error("--workers goes with a live backend (kernel or nfqueue), not offline")
    ranges: list[tuple[int, int]] = args.ports
    infos = [
        make_blocker(lo, hi, "port_blocker" if len(ranges) == 1 else f"port_blocker_{lo}")
        for lo, hi in ranges
    ]
    for info in infos:
        libitm.register_hook(args.hook, info)

    def dropped() -> int:
        return sum(i.counters.dropped for i in infos)

    libitm.register_timer(lambda: print(f"dropped {dropped()}", flush=True), 5.0)
    options: dict[str, Any] = {}
    if offline:
        options = {"pcap": args.pcap, "out": args.out, "log": args.log}
    elif args.workers > 1:
        options = {"workers": args.workers}  # each worker's counters come back at the end
    rc = 0
    try:
        if offline:
            check_offline_paths(args.pcap, args.out, args.log)
        libitm.run(backend=args.backend, duration=args.duration, **options)
    except KeyboardInterrupt:
        rc = 130
    except Exception as err:
        described = describe_error(err)
        if described is None:
            raise
        print(f"{ap.prog}: error: {described[0]}", file=sys.stderr)
        return described[1]
    seen = sum(i.counters.packets for i in infos)
    print(f"dropped {dropped()} of {seen}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
