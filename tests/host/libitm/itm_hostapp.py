#!/usr/bin/env python3
"""A configurable libitm application for the host tests (run inside a test namespace).

It records, per packet, the callbacks it went through (JSON lines in --events),
and can return a class from the destination port, drop, rewrite the TOS, raise
in a chosen callback, and tick a timer. It touches --ready once its rules are in.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, TimerHandle, Verdict


def main() -> int:
    """Parse the options, register the application, run."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="hostapp")
    ap.add_argument("--hook", default="ip_in")
    ap.add_argument("--interest", default="{}", help="JSON kwargs for Interest")
    ap.add_argument(
        "--class-base", type=int, default=None, help="class = dport - base (else class 1)"
    )
    ap.add_argument("--verdict", default="accept", choices=["accept", "drop"])
    ap.add_argument("--tos", type=lambda s: int(s, 0), default=None)
    ap.add_argument("--raise-in", default=None)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--timer", type=float, default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--events", default=None)
    ap.add_argument("--ready", default=None)
    ap.add_argument("--counters", default=None)
    ap.add_argument("--queue-base", type=int, default=4100)
    ap.add_argument("--gso", action="store_true", help="set NFQA_CFG_F_GSO")
    ap.add_argument("--mark", type=lambda s: int(s, 0), default=None)
    ap.add_argument("--queue-maxlen", type=int, default=4096)
    ap.add_argument("--pause", type=float, default=0.0, help="seconds not reading after start")
    ap.add_argument(
        "--swap-when",
        type=Path,
        default=None,
        help="once this file exists, unregister the app and register 'late' (drops --swap-dport)",
    )
    ap.add_argument("--swap-dport", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    events: IO[str] | None = None
    if args.events:
        events = open(args.events, "a", buffering=1)  # noqa: SIM115 - closed in finally
    current: list[str] = []

    def emit(**rec: object) -> None:
        if events is not None:
            events.write(json.dumps(rec) + "\n")

    def step(name: str) -> None:
        current.append(name)
        if args.raise_in == name:
            raise RuntimeError(f"test exception in {name}")

    def class_func(where: Hook, pkt: Packet) -> int:
        current.clear()
        step("class")
        if args.class_base is None:
            return 1
        base: int = args.class_base
        return (pkt.dport or 0) - base

    def log_func(where: Hook, cls: int, pkt: Packet) -> None:
        step("log")

    def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
        step("process")
        if args.tos is not None:
            pkt.tos = args.tos
        if args.mark is not None:
            pkt.mark = args.mark
        return Verdict.DROP if args.verdict == "drop" else Verdict.ACCEPT

    def update_func(where: Hook, cls: int, pkt: Packet) -> None:
        step("update")

    def control_func(where: Hook, cls: int, pkt: Packet) -> None:
        step("control")
        # the hook point as the callbacks are given it (where first, as in the paper)
        emit(
            kind="packet",
            dport=pkt.dport,
            proto=pkt.proto,
            cls=cls,
            calls=list(current),
            where=where.name.lower(),
            length=pkt.length,
            truncated=pkt.truncated,
        )

    info = ItmInfo(
        args.label,
        Interest(**json.loads(args.interest)),
        class_func,
        log_func,
        process_func,
        update_func,
        control_func,
        needs_payload=args.tos is not None,
    )
    loop = ItmLoop(
        "nfqueue",
        strict=args.strict,
        queue_base=args.queue_base,
        gso=args.gso,
        queue_maxlen=args.queue_maxlen,
    )
    loop.register_hook(args.hook, info)
    if args.timer:
        loop.register_timer(lambda: emit(kind="timer", t=time.monotonic()), args.timer)
    if args.swap_when:
        swap_timer: list[TimerHandle] = []

        def swap() -> None:
            if not args.swap_when.exists():
                return
            loop.unregister_timer(swap_timer[0])
            loop.unregister_hook(info)
            late = ItmInfo(
                "late",
                Interest(protocol="udp", dport=args.swap_dport),
                class_func=lambda w, p: 1,
                process_func=lambda w, c, p: Verdict.DROP,
            )
            loop.register_hook(args.hook, late)
            emit(kind="swapped")

        swap_timer.append(loop.register_timer(swap, 0.05))
    code = 0
    try:
        loop.start()
        if args.ready:
            Path(args.ready).write_text("ready\n")
        if args.pause:
            time.sleep(args.pause)
        loop.run(duration=args.duration)
    except RuntimeError as e:
        print(f"stopped: {e}", file=sys.stderr)
        code = 3
    finally:
        if args.counters:
            Path(args.counters).write_text(json.dumps(loop.counters()))
        if events is not None:
            events.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
