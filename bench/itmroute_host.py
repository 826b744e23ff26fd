"""Benchmark: itmRoute on this machine's kernel (no VM, no netem): the issue's figures
that need no link delays.

The overlay of itmroute/lab.py with 4 relays, every daemon in threads of this
process (the sender and the receiver too: one GIL), and:

- routed: the same namespaces without itmRoute (no daemon, the direct A--D
  link): a UDP flood (datagrams/s delivered) and a bulk TCP transfer (Mbit/s);
- then the direct link black-holed and the daemons started, so that A and D
  talk through a relay: the same UDP flood and TCP transfer through it;
- failover: ``--cuts`` cuts of the relay in use during a 100 packet/s stream
  going on 4 s past each cut: the largest gap between arrivals, and the time
  from the sending of the first datagram the cut lost to the arrival of the
  first one delivered on the new path;
- where each cut's gap went: the last arrival to the end of the cut command, to
  A's decision to leave the path, to the first arrival on the new path, and the
  sender's own longest pause;
- probe bytes per active destination with 4 relays (iptables counters, ``u32``
  on the message type: A's probes, their acknowledgements, D's notices to A)
  for a one-way and a two-way (echoed) 20 packet/s flow, every probe, ack and
  notice on A's links, and after ``--idle-wait`` s idle;
- injection: an intruder namespace on R1's link sends ``--forged`` DATA
  datagrams and as many probes sealed with a wrong key, as many in the old
  unauthenticated format, and replays A's datagrams sniffed off R1's link:
  datagrams delivered at D, and R1's counters.

    .venv/bin/python -m bench.itmroute_host [--cuts 20] [--json FILE]

takes about 4 minutes; the figures depend on the machine's load (printed).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import cliargs, entry, vmbench
from bench.itmroute import Bench, cuts, overhead, percentile, udp_flood
from itmlab import netns, ping, sh
from itmroute import ProbeSettings, auth, wire
from itmroute.lab import D_OVERLAY, Overlay, overlay, tcp_transfer


def tcp_rate(ov: Overlay, nbytes: int, port: int) -> dict[str, Any]:
    """A bulk TCP transfer A -> D: Mbit/s and whether it arrived intact."""
    t0 = time.monotonic()
    sent, got, err = tcp_transfer(ov, nbytes, port, lambda: None)
    dt = time.monotonic() - t0
    return {"bytes": nbytes, "seconds": dt, "mbit_s": nbytes * 8 / dt / 1e6,
            "intact": sent == got and err is None}  # fmt: skip


def injection(ov: Overlay, forged: int) -> dict[str, Any]:
    """Forged and replayed datagrams at R1 from the intruder: delivered, counted."""
    r1 = ov.router("r1")
    captured = ov.sniff_from_a(10, lambda: ping(ov.a, D_OVERLAY, 1))
    before = dict(r1.counters)
    inner = bytes.fromhex("4500002000004000401100000a4d3201") + bytes([10, 77, 200, 1])
    inner += bytes.fromhex("1f401f40000c0000") + b"evil"  # UDP to D's port 8000
    bad = auth.Sealer(os.urandom(32), bytes([10, 77, 100, 1]))
    probe = wire.Probe(wire.PROBE, 1, bytes([10, 77, 100, 1]), bytes([10, 77, 200, 1]))
    sends = (
        [bad.seal(wire.DATA, inner) for _ in range(forged)]
        + [bad.seal(wire.PROBE, probe.body()) for _ in range(forged)]
        + [b"IR\x01\x01" + inner for _ in range(forged)]
        + [c for c in captured for _ in range(forged // max(1, len(captured)))]
    )
    with netns(ov.d):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns(ov.intruder):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    delivered = 0
    with rx, tx:
        rx.bind((D_OVERLAY, 8000))
        rx.setblocking(False)
        for i, msg in enumerate(sends):
            tx.sendto(msg, ("10.77.50.2", 7177))
            if i % 50 == 0:
                time.sleep(0.01)
        time.sleep(1.0)
        while True:
            try:
                rx.recv(100)
                delivered += 1
            except BlockingIOError:
                break
    after = r1.counters
    counted = {k: after[k] - before[k] for k in ("auth_failed", "bad_datagrams", "replayed")}
    return {"sent": len(sends), "replays_sent": len(sends) - 3 * forged,
            "delivered": delivered, "counted": counted}  # fmt: skip


def run(n_cuts: int, idle_wait: float, forged: int) -> dict[str, Any]:
    """Every measurement, in one overlay."""
    doc: dict[str, Any] = {"kernel": os.uname().release, "load_before": vmbench.loadavg()}
    with overlay(f"itmbh{os.getpid()}", 4) as ov:
        ov.add_intruder()
        doc["routed"] = {"udp": udp_flood(ov), "tcp": tcp_rate(ov, 50_000_000, 6600)}
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):  # black-hole the direct link
            sh("ip", "netns", "exec", ov.d, "iptables", "-w", "-I", chain, flag, "a", "-j", "DROP")
        b = Bench(ov, ProbeSettings())
        b.start()
        try:
            ping(ov.a, D_OVERLAY, 1)
            relay = b.a.dests[0][1]
            end = time.monotonic() + 10
            while not relay.current.startswith("r") and time.monotonic() < end:
                ping(ov.a, D_OVERLAY, 1)
            doc["relay"] = {"udp": udp_flood(ov), "tcp": tcp_rate(ov, 5_000_000, 6601)}
            doc["failover"] = cuts(b, n_cuts, 4.0)
            doc["overhead"] = overhead(b, 30.0, idle_wait, netem=False, idle_s=10.0)
            doc["injection"] = injection(ov, forged)
        finally:
            ov.stop_daemons()
    doc["load_after"] = vmbench.loadavg()
    return doc


def table(doc: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    fo, ov, inj = doc["failover"], doc["overhead"], doc["injection"]
    one, two = ov["one_way"], ov["two_way"]
    r, t = doc["routed"], doc["relay"]
    finite = [g for g in fo["gaps"] if g != float("inf")]
    counted = ", ".join(f"{k} {v}" for k, v in inj["counted"].items())
    return "\n".join([
        f"Kernel {doc['kernel']} (this machine, no VM), load {doc['load_before']} before,"
        f" {doc['load_after']} after:",
        "",
        "| figure | measured |",
        "|---|---|",
        f"| relay cuts | {fo['cuts']} ({fo['cuts'] - len(finite)} never recovered) |",
        f"| largest gap in a 100 packet/s stream, median / p95 / worst | {fo['median']:.2f} /"
        f" {fo['p95']:.2f} / {max(fo['gaps']):.2f} s |",
        f"| first datagram lost to the first delivered on the new path, median / p95 / worst |"
        f" {fo['outage_median']:.2f} / {fo['outage_p95']:.2f} / {max(fo['outages']):.2f} s |",
        f"| probe bytes per active destination, 4 relays, two-way 20 packet/s flow (A's probes,"
        f" their acks, D's notices to A) | {two['own_bytes_per_s']:.0f} B/s |",
        f"| ... one-way 20 packet/s flow | {one['own_bytes_per_s']:.0f} B/s |",
        f"| every probe, ack and notice on A's links (A's and D's tables), two-way / one-way |"
        f" {two['all_bytes_per_s']:.0f} / {one['all_bytes_per_s']:.0f} B/s |",
        f"| DATA bytes for target, path tag and receipt, two-way (20 packets/s each way) |"
        f" {two['data_head_bytes_per_s']:.0f} B/s |",
        f"| ... after {ov['idle_wait']:.0f} s idle | {ov['idle_bytes_per_s_after']:.0f} B/s |",
        *phase_rows(fo["phases"]),
        f"| forged DATA, probes, old-format datagrams and replays sent to a relay |"
        f" {inj['sent']} ({inj['replays_sent']} replays) |",
        f"| ... delivered at D | {inj['delivered']} |",
        f"| ... counted at the relay | {counted} |",
        f"| UDP flood, datagrams/s delivered: routed / through a relay | "
        f"{r['udp']['delivered_per_s']:.0f} / {t['udp']['delivered_per_s']:.0f}"
        f" ({t['udp']['delivered_per_s'] / r['udp']['delivered_per_s']:.3f}x) |",
        f"| bulk TCP, Mbit/s: routed / through a relay | {r['tcp']['mbit_s']:.0f} /"
        f" {t['tcp']['mbit_s']:.1f} ({t['tcp']['mbit_s'] / r['tcp']['mbit_s']:.3f}x) |",
    ])  # fmt: skip


def phase_rows(phases: list[dict[str, Any]]) -> list[str]:
    """Where the cuts' gaps went: median / p95 / worst of each phase."""
    rows = []
    for key, label in (
        ("last_arrival_to_cut_done", "gap phase: last arrival to the cut command's end"),
        ("cut_done_to_decision", "... to A's decision to leave the path"),
        ("decision_to_first_arrival", "... to the first arrival on the new path"),
        ("sender_pause", "longest pause of the 100 packet/s sender itself"),
    ):
        xs = [p[key] for p in phases if p.get(key) is not None]
        if xs:
            rows.append(
                f"| {label}, median / p95 / worst | {statistics.median(xs):.3f} /"
                f" {percentile(xs, 0.95):.3f} / {max(xs):.3f} s |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = cliargs.parser("bench.itmroute_host", __doc__)
    ap.add_argument("--cuts", type=cliargs.positive, default=20)
    ap.add_argument("--idle-wait", type=cliargs.seconds, default=65.0)
    ap.add_argument("--forged", type=cliargs.positive, default=500)
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.itmroute_host: needs root (namespaces, iptables)", file=sys.stderr)
        return 1
    doc = run(args.cuts, args.idle_wait, args.forged)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    print(table(doc))
    print("gaps:", [round(g, 3) for g in doc["failover"]["gaps"]])
    print("outages:", [round(g, 3) for g in doc["failover"]["outages"]])
    for i, ph in enumerate(doc["failover"]["phases"]):
        print(f"cut {i}:", {k: v for k, v in ph.items() if k != "decisions"}, *ph["decisions"])
    return 0


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.itmroute_host"))
