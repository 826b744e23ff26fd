"""Benchmark: libitm's kernel backend against its nfqueue backend and netfilterqueue, in a VM.

    .venv/bin/python -m bench.libitm_kernel_queue [--kernel 6.12|all] [--iterations N]
        [--repeats R] [--write]

The drain of bench/libitm_queue.py - its three namespaces, sender, consumers
and measurement: N 64-byte UDP datagrams queued while the consumer is stopped,
then the time and the consumer's CPU time until the queue is empty - inside a
VM booted on a kernel of the matrix, with itm_mod and itm_queue loaded, for:

* libitm on its kernel backend: the application registered with itm_mod
  through itm_queue, which queues the packets of its interest at ip_forward
  (NF_REPEAT verdicts, so that itm_mod goes on after it);
* libitm on the nfqueue backend: its own NFQUEUE rule, itm_mod idle;
* python-netfilterqueue 1.1.0 behind an NFQUEUE rule, the anchor;

accept-all and TOS rewrite, interleaved over R repeats (the order rotating),
median per consumer, ratios against netfilterqueue of the same repeat. QEMU
emulates the CPU (TCG): absolute rates are a small fraction of the host's and
only the ratios carry over. It needs `scripts/setup.sh bench` (netfilterqueue
in .venv, libnetfilter-queue-dev for the C programs the drain uses); about 4
minutes per kernel with the defaults (N=5000, R=3).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import entry, vmbench
from bench import libitm_queue as lq

CONSUMERS = tuple(
    lq.Consumer(f"{label}, {mode}", impl, mode)
    for mode in ("accept", "tos")
    for impl, label in (
        ("libitm-kernel", "libitm, kernel backend"),
        ("libitm", "libitm, nfqueue backend"),
        ("netfilterqueue", "netfilterqueue"),
    )
)
#: stock modules the drain's topology and rules need (the guest cannot autoload)
GUEST_MODULES = (
    "veth",
    "nfnetlink_queue",
    "nf_tables",
    "nft_compat",
    "nft_queue",
    "ip_tables",
    "iptable_mangle",
    "iptable_raw",
    "xt_NFQUEUE",
    "xt_tcpudp",
    "xt_mark",
)


def guest(moddir: Path, out: Path, n: int, repeats: int) -> int:
    """Inside the VM: itm_mod and itm_queue loaded, every consumer interleaved."""
    ko = vmbench.module_paths(moddir)
    for mod in GUEST_MODULES:  # some may be built in, or absent where nft is used
        subprocess.run(["modprobe", "-q", mod], check=False)
    lq.build(with_nfq=False)
    vmbench.sh("insmod", ko["itm_mod"])
    samples: dict[str, list[dict[str, Any]]] = {c.name: [] for c in CONSUMERS}
    try:
        vmbench.sh("insmod", ko["itm_queue"])
        topo = lq.Topology()
        try:
            topo.create()
            # itm_mod hooks a namespace once asked to (the forwarding one here)
            itmtool = str(Path(sys.executable).with_name("itmtool"))
            vmbench.sh("ip", "netns", "exec", topo.mid, itmtool, "netns", "on")
            for r in range(repeats):
                order = CONSUMERS[r % len(CONSUMERS) :] + CONSUMERS[: r % len(CONSUMERS)]
                for c in order:
                    d = lq.drain(topo, c, n)
                    samples[c.name].append(d)
                    print(
                        f"[{r + 1}/{repeats}] {c.name:34s} {d['cpu_pps'] / 1e3:6.2f} kpps per "
                        f"CPU-second (queued {d['queued']} of {d['sent']})",
                        flush=True,
                    )
        finally:
            topo.destroy()
    finally:
        vmbench.sh("rmmod", "itm_queue")
        vmbench.sh("rmmod", "itm_mod")
    doc = {"kernel": platform.release(), "n": n, "repeats": repeats, "samples": samples}
    out.write_text(json.dumps(doc, indent=2))
    return 0


def summary(doc: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per consumer: median CPU µs per packet, median ratio to netfilterqueue, queued."""
    s = doc["samples"]
    rows: dict[str, dict[str, float]] = {}
    for c in CONSUMERS:
        runs = s.get(c.name, [])
        anchor = s.get(f"netfilterqueue, {c.mode}", [])
        if not runs:
            continue
        ratios = [
            a["cpu_pps"] / b["cpu_pps"]
            for a, b in zip(runs, anchor, strict=False)
            if b["cpu_pps"] > 0
        ]
        rows[c.name] = {
            "us": statistics.median(1e6 / x["cpu_pps"] for x in runs if x["cpu_pps"] > 0),
            "ratio": statistics.median(ratios) if ratios else 0.0,
            "lo": min(ratios, default=0.0),
            "hi": max(ratios, default=0.0),
            "queued": min(x["queued"] for x in runs),
        }
    return rows


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of one kernel's results."""
    lines = [
        f"Kernel {doc['kernel']} ({doc['n']:,} packets queued per drain, {doc['repeats']} "
        "interleaved repeats, median):",
        "",
        "| consumer | CPU µs per packet (TCG) | ÷ netfilterqueue, per CPU-second | "
        "packets queued (fewest) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in summary(doc).items():
        lines.append(
            f"| {name} | {r['us']:.0f} | {r['ratio']:.2f}x ({r['lo']:.2f}-{r['hi']:.2f}) | "
            f"{r['queued']:.0f} |"
        )
    return "\n".join(lines)


def host(args: argparse.Namespace) -> int:
    """Build the modules, boot each kernel asked for, collect and print the results."""
    lack = lq.missing(())  # netfilterqueue (the anchor) and gcc; no C consumer here
    if lack:
        print(
            f"bench.libitm_kernel_queue: not installed here: {', '.join(lack)}; "
            "`sudo make bench-libitm` installs them (scripts/setup.sh bench)",
            file=sys.stderr,
        )
        return 1
    lq.build(with_nfq=False)  # the drain's C programs, before the guest needs them
    tiers = vmbench.tables_per_kernel(args, "libitm_kernel_queue", table)
    if tiers is None:
        return 1
    for native, tables in tiers.items() if args.write else ():
        where = (
            f"natively in User-Mode Linux (one CPU, on a {vmbench.cpu()} host)"
            if native
            else f"inside a VM (QEMU TCG, 2 vCPUs, on a {vmbench.cpu()} host)"
        )
        vmbench.write_section(
            "libitm_kernel_queue_uml" if native else "libitm_kernel_queue",
            "libitm's kernel backend, " + ("native (User-Mode Linux)" if native else "in a VM"),
            [
                f"The drain of the benchmark above {where} with itm_mod and itm_queue "
                "loaded: libitm on its kernel backend (registered through itm_queue; itm_mod "
                "queues the packets of its interest), on its nfqueue backend (its own NFQUEUE "
                "rule), and python-netfilterqueue, accept-all and TOS rewrite. Per consumer "
                "CPU-second; ratios against netfilterqueue of the same repeat."
                + ("" if native else " TCG inflates absolute times; the ratios carry over."),
                "",
                f"Command: `python -m bench.libitm_kernel_queue --kernel {args.kernel} --write` "
                f"— run {vmbench.today()}.",
                "",
                *[t + "\n" for t in tables],
            ],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    return vmbench.main("bench.libitm_kernel_queue", __doc__ or "", 5000, 3, guest, host, argv)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.libitm_kernel_queue"))
