"""The paper's qos_ctrl as a reader of the paper writes it in Python (Figures 8-11).

Only the paper's names: ``itm_info``, ``itm_register_hook(IP_POST_ROUTE, ...)``,
``itm_register_timer(fn, jiffies)`` with ``fn(data)``, callbacks with ``where``
first, ``return NF_ACCEPT``, a label assigned after construction. The
figures' counting: a new connection's entry starts at ``pkt_cnt = 0`` and is
counted after classification, so with THRESHOLD 20 packets 2..22 of each
direction (and every FIN) are SHORT and packet 1 goes as sent
(:func:`figures_tos`). IPv4 only, as in the paper.

Shared by the tiers: the unit tier runs it offline, the host tier on nfqueue,
the VM tier on the kernel backend::

    python -m tests.support.paper_app --backend nfqueue --ready FILE [--events FILE]

runs it until SIGTERM; FILE appears once it is registered. ``--events`` gets
one line per timer tick and the set of ``where`` values seen, at exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import libitm
from libitm import IP_POST_ROUTE, NF_ACCEPT, Hook, Interest, Packet, TimerHandle, itm_info

THRESHOLD = 20
SHORT = 1
LONG = 2
LOWDELAY = 0x10
#: the timer's period, in jiffies (libitm.HZ per second): 0.1 s
TIMER_JIFFIES = 10


def figures_tos(n: int, fin: bool, tos: int, v4: bool = True, threshold: int = THRESHOLD) -> int:
    """The TOS Figures 9-11 give the n-th packet (1-based) of a direction-flow."""
    if not v4 or n == 1:
        return tos  # not of interest; class 0: the entry is created, nothing marked
    if n - 2 <= threshold or fin:  # pkt_cnt is n - 2 when packet n is classified
        return tos | LOWDELAY
    return tos & ~LOWDELAY & 0xFF


class PaperQos:
    """The figures' callbacks and their connection table."""

    def __init__(self, threshold: int = THRESHOLD) -> None:
        self.threshold = threshold
        self.conns: dict[tuple[bytes, bytes, int, int], int] = {}
        self.where: set[Hook] = set()
        self.ticks: list[object] = []

    @staticmethod
    def conn(pkt: Packet) -> tuple[bytes, bytes, int, int]:
        """One direction of a connection."""
        return (pkt.src.packed, pkt.dst.packed, pkt.sport or 0, pkt.dport or 0)

    # Figure 9
    def qos_class(self, where: Hook, pkt: Packet) -> int:
        """0 for a new connection, SHORT while pkt_cnt <= THRESHOLD or on FIN, else LONG."""
        self.where.add(where)
        pkt_cnt = self.conns.get(self.conn(pkt))
        if pkt_cnt is None:
            return 0
        if pkt_cnt <= self.threshold or pkt.fin:
            return SHORT
        return LONG

    # Figure 10
    def qos_log(self, where: Hook, cls: int, pkt: Packet) -> None:
        """A new connection gets its entry (pkt_cnt 0), a known one is counted."""
        self.where.add(where)
        if cls == 0:
            self.conns[self.conn(pkt)] = 0
        else:
            self.conns[self.conn(pkt)] += 1

    # Figure 11
    def qos_process(self, where: Hook, cls: int, pkt: Packet) -> int:
        """Set (SHORT) or clear (LONG) Minimize-Delay; the checksum follows."""
        self.where.add(where)
        if cls == SHORT:
            pkt.tos = pkt.tos | LOWDELAY
        else:
            pkt.tos = pkt.tos & ~LOWDELAY & 0xFF
        return NF_ACCEPT

    def expire(self, data: object) -> None:
        """The timer function, the paper's ``fn(data)``."""
        self.ticks.append(data)


def register(app: PaperQos) -> tuple[itm_info, TimerHandle]:
    """Figure 8, on libitm's default loop."""
    data = itm_info("qos_ctrl")
    data.label = "paper_qos"
    data.interest = Interest(family=4, protocol="tcp")
    data.class_func = app.qos_class
    data.log_func = app.qos_log
    data.process_func = app.qos_process
    data.update_func = None
    data.control_func = None
    data.needs_payload = True  # libitm: it modifies packets (docs/libitm.md)
    libitm.itm_register_hook(IP_POST_ROUTE, data)
    timer = libitm.itm_register_timer(app.expire, TIMER_JIFFIES, "paper")
    return data, timer


def main(argv: list[str] | None = None) -> int:
    """Register the application and run it until SIGTERM."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", required=True, choices=["kernel", "nfqueue"])
    ap.add_argument("--ready", required=True, type=Path)
    ap.add_argument("--events", type=Path)
    ap.add_argument("--threshold", type=int, default=THRESHOLD)
    args = ap.parse_args(argv)
    app = PaperQos(args.threshold)
    data, _ = register(app)
    loop = libitm.get_loop()
    loop.set_backend(args.backend)
    try:
        loop.start()
        args.ready.write_text("ready\n")
        loop.run()  # SIGTERM ends it with SystemExit
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        loop.close()
        if args.events is not None:
            where = " ".join(sorted(h.name for h in app.where))
            args.events.write_text(f"where {where}\nticks {len(app.ticks)} {set(app.ticks)}\n")
    print(f"{data.label}: {data.counters.as_dict()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
