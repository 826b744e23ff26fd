"""A configurable libitm application for the itm_queue VM tests (kernel backend).

Run in a namespace (``ip netns exec NS python -m tests.kernel.itmq_app ...``)
with one ``--app`` per application, in the style of itm_test_app's ``apps=``::

    --app label=u,hook=fwd,prio=10,proto=udp,dport=5000,class=3,verdict=accept
    --app label=t,hook=fwd,proto=tcp,class=1,verdict=tos:0x10
    --app label=d,hook=fwd,proto=udp,dport=5001,class=1,verdict=drop,drop_dport=5001

Keys: label, hook (pre|in|fwd|out|post), prio, family (4|6), proto, src, dst,
sport and dport (port or lo-hi), class, verdict (accept | drop | tos:N),
drop_dport (drop only packets to this port, accept the others).  ``--timer
SECONDS`` registers a timer.  Every callback call is appended to ``--events``
as a line ``label callback class``, every timer tick as ``timer tick 0``;
``--ready`` is written once the applications are registered and their queues
bound.  SIGTERM ends the run cleanly.
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
from pathlib import Path
from typing import IO

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict

HOOKS = {"pre": "pre_routing", "in": "ip_in", "fwd": "ip_forward", "out": "ip_out"}
HOOKS["post"] = "post_routing"


def _ports(v: str) -> int | tuple[int, int]:
    lo, _, hi = v.partition("-")
    return (int(lo), int(hi)) if hi else int(lo)


def make_app(spec: str, log: IO[str]) -> tuple[str, ItmInfo]:
    """An ItmInfo from a ``key=value,...`` description; returns (hook, info)."""
    kv = dict(item.split("=", 1) for item in spec.split(","))
    label = kv["label"]
    cls = int(kv.get("class", "1"))
    verdict = kv.get("verdict", "accept")
    drop_dport = int(kv["drop_dport"]) if "drop_dport" in kv else None
    interest = Interest(
        family=int(kv["family"]) if "family" in kv else None,
        protocol=kv.get("proto"),
        src=kv.get("src"),
        dst=kv.get("dst"),
        sport=_ports(kv["sport"]) if "sport" in kv else None,
        dport=_ports(kv["dport"]) if "dport" in kv else None,
    )

    def record(cb: str, c: int) -> None:
        log.write(f"{label} {cb} {c}\n")
        log.flush()

    def class_func(where: Hook, pkt: Packet) -> int:
        record("class", cls)
        return cls

    def log_func(where: Hook, c: int, pkt: Packet) -> None:
        record("log", c)

    def process_func(where: Hook, c: int, pkt: Packet) -> Verdict:
        record("process", c)
        if verdict == "drop" and (drop_dport is None or pkt.dport == drop_dport):
            return Verdict.DROP
        if verdict.startswith("tos:"):
            pkt.tos = int(verdict[4:], 0)
        return Verdict.ACCEPT

    def update_func(where: Hook, c: int, pkt: Packet) -> None:
        record("update", c)

    def control_func(where: Hook, c: int, pkt: Packet) -> None:
        record("control", c)

    info = ItmInfo(
        label,
        interest,
        class_func,
        log_func,
        process_func,
        update_func,
        control_func,
        priority=int(kv.get("prio", "0")),
        needs_payload=verdict.startswith("tos:"),
    )
    return HOOKS[kv.get("hook", "fwd")], info


def main(argv: list[str] | None = None) -> int:
    """Register the applications on the kernel backend and run until SIGTERM."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", action="append", default=[])
    ap.add_argument("--events", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--timer", type=float)
    ap.add_argument("--backend", default="kernel")
    args = ap.parse_args(argv)
    # a start that hangs shows where (the test prints this process's stderr)
    faulthandler.dump_traceback_later(240, exit=False)
    with open(args.events, "a", buffering=1) as log:
        loop = ItmLoop(args.backend)
        for spec in args.app:
            hook, info = make_app(spec, log)
            loop.register_hook(hook, info)
        if args.timer:

            def tick() -> None:
                log.write("timer tick 0\n")
                log.flush()

            loop.register_timer(tick, args.timer)
        loop.start()
        faulthandler.cancel_dump_traceback_later()
        # written whole, then renamed: the test polls for the file and reads it at once
        ready = Path(args.ready)
        partial = ready.with_name(ready.name + ".part")
        partial.write_text(
            " ".join(str(q) for q in getattr(loop.backend, "app_queues", {}).values())
        )
        partial.rename(ready)
        loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
