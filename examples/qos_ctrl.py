#!/usr/bin/env python3
"""qos_ctrl — the paper's qos_mod (size-aware differentiation) written with libitm.

Per TCP flow direction (source and destination address and port) the
application counts packets. The first packet of an unseen flow is classified
like the rest (qos_mod's ``mark_first``, on by default as there: the paper's
"first few packets of a new flow are given a low-delay service");
``--no-mark-first`` only logs it (class 0, sent as is: the literal reading of
Figures 9-10, where ``log_func`` creates the entry). After that, while the flow's count is
at most ``threshold`` or the packet carries FIN, the flow is SHORT and the
packet gets the Minimize-Delay TOS bit (0x10) set; otherwise it is LONG and the
bit is cleared. The precedence bits and the two ECN bits are kept; for IPv6 the
traffic class is treated the same way. Registered at post_routing.

    python examples/qos_ctrl.py --backend offline --pcap IN.pcap --out OUT.pcap
    python examples/qos_ctrl.py --backend nfqueue --duration 60        # as root
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from libitm import Application, Hook, Interest, ItmLoop, Packet, Verdict, cliargs
from libitm.files import check_offline_paths, describe_error

MIN_DELAY = 0x10
SHORT = 1
LONG = 2

FlowKey = tuple[bytes, bytes, int, int]


class QosCtrl(Application):
    """Size-aware differentiation: SHORT flows get Minimize-Delay, LONG flows lose it."""

    label = "qos_ctrl"
    hook = Hook.POST_ROUTING
    needs_payload = True  # it modifies packets: nfqueue must hand over whole packets

    def __init__(
        self,
        threshold: int = 20,
        idle_timeout: float = 120.0,
        interest: Interest | None = None,
        *,
        mark_first: bool = True,
        figures: bool = False,
    ) -> None:
        """``threshold``: packet n of a flow direction (n from 1, this packet
        included) is SHORT while n <= threshold (packet 1 too with
        ``mark_first``, the default: else class 0, sent as is; 0: every classified packet is
        LONG except FINs, as qos_mod's parameter); ``figures``: count as
        Figures 9-10 do (packet 1 class 0, then SHORT while the packets counted
        after it are at most threshold: packets 2..threshold+2)."""
        if threshold < 0:
            raise ValueError("threshold must be 0 or more")
        self.threshold = threshold
        self.figures = figures
        self.mark_first = mark_first and not figures
        #: the last packet number that is SHORT
        self.short_upto = threshold + 2 if figures else threshold
        self.idle_timeout = idle_timeout
        self.interest = interest or Interest(protocol="tcp")
        self.flows: dict[FlowKey, int] = {}
        self.last_seen: dict[FlowKey, float] = {}
        self.now = 0.0
        self.marked_short = 0
        self.marked_long = 0

    @staticmethod
    def key(pkt: Packet) -> FlowKey:
        """One entry per direction: (src, dst, sport, dport)."""
        return (pkt.src.packed, pkt.dst.packed, pkt.sport or 0, pkt.dport or 0)

    def class_func(self, where: Hook, pkt: Packet) -> int:
        """0 for an unseen flow (SHORT with ``mark_first``), else SHORT or LONG
        by this packet's number."""
        count = self.flows.get(self.key(pkt))
        if count is None:
            if not self.mark_first:
                return 0
            count = 0  # packet 1 is classified: SHORT, or LONG with threshold 0
        if count + 1 <= self.short_upto or pkt.fin:
            return SHORT
        return LONG

    def log_func(self, where: Hook, cls: int, pkt: Packet) -> None:
        """The first packet of a flow creates its entry (count 1; with
        ``mark_first`` count 0, and ``update_func`` counts it)."""
        if cls == 0:
            self.flows[self.key(pkt)] = 1
        elif self.mark_first:
            self.flows.setdefault(self.key(pkt), 0)

    def process_func(self, where: Hook, cls: int, pkt: Packet) -> Verdict:
        """Set (SHORT) or clear (LONG) the Minimize-Delay bit; keep every other bit."""
        if cls == SHORT:
            pkt.tos = pkt.tos | MIN_DELAY
            self.marked_short += 1
        else:
            pkt.tos = pkt.tos & ~MIN_DELAY & 0xFF
            self.marked_long += 1
        return Verdict.ACCEPT

    def update_func(self, where: Hook, cls: int, pkt: Packet) -> None:
        """Count the packet in its flow."""
        if cls != 0:
            k = self.key(pkt)
            self.flows[k] = self.flows.get(k, 0) + 1

    def control_func(self, where: Hook, cls: int, pkt: Packet) -> None:
        """Remember when the flow was last seen (for expiry)."""
        self.last_seen[self.key(pkt)] = self.now

    def expire(self) -> None:
        """Timer: forget flows idle for longer than ``idle_timeout``."""
        self.now += self.tick
        dead = [k for k, t in self.last_seen.items() if self.now - t > self.idle_timeout]
        for k in dead:
            self.flows.pop(k, None)
            self.last_seen.pop(k, None)

    tick = 5.0

    def timers(self) -> list[tuple[Callable[[], object], float]]:
        """Expire idle flows every ``tick`` seconds."""
        return [(self.expire, self.tick)]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Exit codes (itmtool's): 0 done; 1 the run failed (e.g. a damaged capture);
    2 bad arguments, or --out/--log naming the input; 4 permission denied (a
    live backend as non-root, a file); 5 no such file; 6 the backend cannot run
    here; 130 Ctrl-C (the counters are still printed).
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--backend", default="auto", choices=["auto", "kernel", "nfqueue", "offline"])
    ap.add_argument("--pcap", help="input trace, pcap or pcapng (offline backend)")
    ap.add_argument("--out", help="result trace (offline backend; written whole or not at all)")
    ap.add_argument("--log", help="verdict log (offline backend)")
    ap.add_argument(
        "--threshold",
        type=cliargs.count,
        default=20,
        help="packet n of a flow direction is SHORT while n <= threshold, n counting from 1"
        " (packet 1 too unless --no-mark-first; 0: all LONG but FINs, as qos_mod); default 20."
        " The paper figures' THRESHOLD T marks packets 2..T+2: --figures --threshold T",
    )
    ap.add_argument(
        "--figures",
        action="store_true",
        help="count as Figures 9-10 do: packet 1 unmarked, then SHORT up to packet threshold+2",
    )
    ap.add_argument(
        "--mark-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mark a flow's first packet (the SYN) too (default; --no-mark-first: class 0,"
        " sent as is, as Figures 9-10 read literally)",
    )
    ap.add_argument("--duration", type=cliargs.seconds, help="seconds to run (live backends)")
    ap.add_argument(
        "--queue-base", type=cliargs.queue_num, default=None, help="first nfqueue number to try"
    )
    ap.add_argument("--dst", help="only flows to this address/mask")
    ap.add_argument("--src", help="only flows from this address/mask")
    ap.add_argument("--strict", action="store_true", help="stop on a callback exception")
    args = ap.parse_args(argv)

    options: dict[str, object] = {}
    if args.backend == "offline" or (args.backend == "auto" and args.pcap):
        if not args.pcap:
            ap.error("the offline backend needs --pcap")
        options = {"pcap": args.pcap, "out": args.out, "log": args.log}
        backend = "offline"
    else:
        if args.pcap or args.out or args.log:
            ap.error(f"--pcap/--out/--log go with the offline backend, not {args.backend}")
        backend = args.backend
        if args.queue_base is not None:
            options["queue_base"] = args.queue_base
    try:
        interest = Interest(protocol="tcp", src=args.src, dst=args.dst)
    except ValueError as err:
        ap.error(str(err))
    app = QosCtrl(
        args.threshold, interest=interest, mark_first=args.mark_first, figures=args.figures
    )
    loop = ItmLoop(backend, strict=args.strict, **options)
    loop.register_app(app)
    rc = 0
    try:
        if backend == "offline":
            check_offline_paths(args.pcap, args.out, args.log)
        loop.run(duration=args.duration)
    except KeyboardInterrupt:
        rc = 130
    except Exception as err:
        described = describe_error(err)
        if described is None:
            raise
        print(f"{ap.prog}: error: {described[0]}", file=sys.stderr)
        return described[1]
    counters = loop.counters()
    counters["qos"] = {"flows": len(app.flows), "short": app.marked_short, "long": app.marked_long}
    print(json.dumps(counters), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
