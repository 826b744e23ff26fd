"""Benchmark: qos_mod's per-packet cost against the rule sets that do the same job.

In a VM booted on a kernel of the matrix, a driver module (kernel/bench/
itm_bench_drive.c, file ``forward_tcp``) pushes TCP segments of 200 flows
through the three IPv4 hooks a forwarded packet meets (pre-routing, forward,
post-routing) with bottom halves disabled, and times the loop.  Each
configuration marks (or not) the same packets with the paper's rule —
Minimize-Delay (TOS 0x10) while a flow has sent at most 20 packets, cleared
after — and the result is its time per packet minus that of no marking at all:

- ``no marking``: nothing hooked (the floor);
- ``conntrack only``: connection tracking switched on by one nft rule that
  only counts invalid packets (what the two rule sets below pay before they
  mark anything);
- ``nftables ct rule set``: ``ct original packets le 20`` / ``gt 20`` with
  ``ip dscp set`` and a FIN rule, counters on (as iptables always has);
- ``iptables connbytes`` and ``iptables-legacy connbytes``: the
  ``connbytes --connbytes-mode packets`` + ``TOS --set-tos 0x10/0x10`` pair of
  tests/kernel/test_qos_mod.py, through iptables-nft and through the legacy
  x_tables;
- ``qos marking, bare nf hook``: the anchor: qos_mod's own flow table and
  marking (the same source files) in a hand-written netfilter hook at IPv4
  post-routing, without itm_mod (kernel/bench/itm_bench_qosnf_main.c);
- ``qos_mod``: itm_mod + qos_mod, no connection tracking;
- ``qos_mod + conntrack``: qos_mod on a router that tracks connections anyway.

Each run uses flows nobody has seen (fresh source ports), so every scheme
classifies the first 20 packets of each flow short and the rest long. The
guest half checks that each scheme marked what it should (its counters) before
the figure counts. Configurations are interleaved over many short runs
(20,000 packets, 100 per flow); the fastest run of each is reported (a vCPU
that the host preempts only ever adds time, so the minimum is the least
disturbed figure), with the median beside it.

    .venv/bin/python -m bench.qos_cost [--kernel 6.12|all] [--write]

takes about four minutes per kernel (the boot included) and prints a table;
with --write it also updates its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import entry, vmbench

FWD_FILE = vmbench.RUN_FILE_DIR / "forward_tcp"
THRESHOLD = 20
FLOWS = 200
#: runs with flows of their own that the source ports 10000..65535 allow
MAX_RUNS = (65536 - 10000) // FLOWS
FLOOR = "no marking"
CONNTRACK = "conntrack only"
NFT = "nftables ct rule set"
IPT = "iptables connbytes"
IPT_LEGACY = "iptables-legacy connbytes"
QOS_NF = "qos marking, bare nf hook"
QOS = "qos_mod"
QOS_CT = "qos_mod + conntrack"
CONFIGS = (FLOOR, CONNTRACK, NFT, IPT, IPT_LEGACY, QOS_NF, QOS, QOS_CT)
QOSNF_MARKED = Path("/sys/module/itm_bench_qosnf/parameters/marked")

GUEST_MODULES = (
    "nf_conntrack",
    "nf_tables",
    "nft_ct",
    "ip_tables",
    "iptable_mangle",
    "xt_conntrack",
    "xt_connbytes",
    "xt_tcpudp",
    "xt_DSCP",
    "nft_compat",
)
CT_TABLE = """table ip qosbench_ct {
  chain post {
    type filter hook postrouting priority mangle; policy accept;
    ct state invalid counter
  }
}
"""


def nft_table(threshold: int, name: str = "qosbench") -> str:
    """The nftables rule set that marks the paper's rule (DSCP 4 is TOS 0x10 for TOS-0 senders)."""
    rules = [
        f"meta l4proto tcp ct direction {d} ct {d} packets {op} {threshold} counter ip dscp set {v}"
        for d in ("original", "reply")
        for op, v in (("le", 4), ("gt", 0))
    ]
    rules.append("meta l4proto tcp tcp flags & fin == fin counter ip dscp set 4")
    body = "".join(f"    {r}\n" for r in rules)
    return (
        f"table ip {name} {{\n  chain post {{\n"
        "    type filter hook postrouting priority mangle; policy accept;\n"
        f"{body}  }}\n}}\n"
    )


NFT_TABLE = nft_table(THRESHOLD)


def iptables_rules() -> list[list[str]]:
    """The connbytes + TOS rule set of the qos_mod agreement test, as argument lists."""
    rules = []
    for cdir, ctdir in (("original", "ORIGINAL"), ("reply", "REPLY")):
        for rng, tos in ((f"0:{THRESHOLD}", "0x10/0x10"), (f"{THRESHOLD + 1}:", "0x00/0x10")):
            rules.append(
                f"-p tcp -m conntrack --ctdir {ctdir} -m connbytes --connbytes {rng} "
                f"--connbytes-dir {cdir} --connbytes-mode packets -j TOS --set-tos {tos}".split()
            )
    rules.append(["-p", "tcp", "--tcp-flags", "FIN", "FIN", "-j", "TOS", "--set-tos", "0x10/0x10"])
    return rules


def leftovers(legacy: bool = False) -> str:
    """What a configuration left hooked into the path: nftables tables, iptables-legacy
    tables (not counted with ``legacy``: it cannot be removed) or our modules ('' when
    nothing)."""
    left = [t.strip() for t in vmbench.sh("nft", "list", "tables").splitlines() if t.strip()]
    names = Path("/proc/net/ip_tables_names")
    if names.exists() and not legacy:
        left += [f"iptables-legacy table {t}" for t in names.read_text().split()]
    ours = ("itm_mod", "qos_mod", "itm_bench_qosnf")
    left += [f"module {m}" for m in ours if Path("/sys/module", m).exists()]
    return ", ".join(left)


class Guest:
    """The guest half: sets each configuration up, times it, checks it, tears it down."""

    def __init__(self, moddir: Path, iterations: int) -> None:
        self.ko = vmbench.module_paths(moddir)
        self.iterations = iterations
        self.next_port = 10000
        #: per configuration: how many packets its counters say it marked short, long
        self.marked: dict[str, tuple[int, int]] = {}
        #: iptable_mangle is a module (not built in): unloading it removes the
        #: iptables-legacy table, whose hooks stay in the path once it exists
        self.legacy_removable = Path("/sys/module/iptable_mangle/initstate").exists()

    def measure(self) -> float:
        """Time one run over fresh flows: nanoseconds per packet."""
        FWD_FILE.write_text(f"{self.iterations} {FLOWS} {self.next_port}")
        self.next_port += FLOWS
        iters, ns = map(int, FWD_FILE.read_text().split())
        return ns / iters

    def expected(self) -> tuple[int, int]:
        """Short and long packets of one run when the first packet counts (rule sets)."""
        per_flow = self.iterations // FLOWS
        short = FLOWS * min(per_flow, THRESHOLD)
        return short, self.iterations - short

    # each configuration: (set up, check and tear down) -> marked (short, long)

    def _nft(self, text: str) -> None:
        subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True)

    def setup(self, name: str) -> None:
        """Switch configuration `name` on."""
        if name in (CONNTRACK, QOS_CT):
            self._nft(CT_TABLE)
        if name == NFT:
            self._nft(NFT_TABLE)
        if name in (IPT, IPT_LEGACY):
            tool = "iptables" if name == IPT else "iptables-legacy"
            if name == IPT_LEGACY:
                vmbench.sh("modprobe", "iptable_mangle")  # teardown unloads it
            for rule in iptables_rules():
                vmbench.sh(tool, "-t", "mangle", "-A", "POSTROUTING", *rule)
        if name in (QOS, QOS_CT):
            vmbench.sh("insmod", self.ko["itm_mod"])
            vmbench.sh("insmod", self.ko["qos_mod"], f"threshold={THRESHOLD}")
        if name == QOS_NF:
            vmbench.sh("insmod", self.ko["itm_bench_qosnf"], f"threshold={THRESHOLD}")

    def teardown(self, name: str) -> tuple[int, int]:
        """Switch configuration `name` off; the (short, long) packets it counted."""
        marked = (0, 0)
        if name == NFT:
            counts = [
                int(m)
                for m in re.findall(
                    r"counter packets (\d+)", vmbench.sh("nft", "list", "table", "ip", "qosbench")
                )
            ]
            marked = (counts[0] + counts[2], counts[1] + counts[3])
            vmbench.sh("nft", "delete", "table", "ip", "qosbench")
        if name in (IPT, IPT_LEGACY):
            tool = "iptables" if name == IPT else "iptables-legacy"
            listing = vmbench.sh(tool, "-t", "mangle", "-L", "POSTROUTING", "-v", "-x", "-n")
            counts = [int(line.split()[0]) for line in listing.splitlines()[2:] if line.strip()]
            marked = (counts[0] + counts[2], counts[1] + counts[3])
            vmbench.sh(tool, "-t", "mangle", "-F")
            # an empty table still hooks every packet: gone, or the next
            # configurations would pay for its chains
            if name == IPT:
                vmbench.sh("nft", "delete", "table", "ip", "mangle")
            elif self.legacy_removable:
                vmbench.sh("rmmod", "iptable_mangle")
        if name in (QOS, QOS_CT):
            stats = Path("/sys/module/qos_mod/stats")
            marked = (
                int((stats / "short_packets").read_text()),
                int((stats / "long_packets").read_text()),
            )
            vmbench.sh("rmmod", "qos_mod")
            vmbench.sh("rmmod", "itm_mod")
        if name == QOS_NF:
            s, lg = QOSNF_MARKED.read_text().split()
            marked = (int(s), int(lg))
            vmbench.sh("rmmod", "itm_bench_qosnf")
        if name in (CONNTRACK, QOS_CT):
            listing = vmbench.sh("nft", "list", "table", "ip", "qosbench_ct")
            invalid = int(re.findall(r"counter packets (\d+)", listing)[0])
            vmbench.sh("nft", "delete", "table", "ip", "qosbench_ct")
            if invalid:
                raise RuntimeError(f"conntrack found {invalid} invalid packets")
        left = leftovers(legacy=not self.legacy_removable)
        if left:
            raise RuntimeError(f"{name} left {left} behind: the next configurations would pay")
        return marked

    def check(self, name: str, marked: tuple[int, int], runs: int) -> None:
        """Fail unless `name` marked what the rule says over its `runs` runs."""
        short, long = self.expected()
        if name in (NFT, IPT, IPT_LEGACY, QOS_NF, QOS, QOS_CT):
            # qos_mod marks the first packet too (mark_first, its default)
            want = (short * runs, long * runs)
        else:
            want = (0, 0)
        if marked != want:
            raise RuntimeError(f"{name}: marked (short, long) {marked}, expected {want}")


def rounds(repeats: int, legacy_removable: bool) -> list[list[str]]:
    """The configurations of each round, in order: all of them interleaved, or, where
    the iptables-legacy table cannot be removed, the others first and its runs after
    them all (a table once made hooks every later packet)."""
    if legacy_removable:
        return [list(CONFIGS)] * repeats
    others = [n for n in CONFIGS if n != IPT_LEGACY]
    return [others] * repeats + [[IPT_LEGACY]] * repeats


def guest(moddir: Path, out: Path, iterations: int, repeats: int) -> int:
    """Inside the VM: every configuration, interleaved over the repeats.

    Where iptable_mangle is built in (UML) the iptables-legacy table, once made,
    hooks every later packet of every configuration: its runs then come after all
    the others' instead of between them.
    """
    g = Guest(moddir, iterations)
    vmbench.mount_debugfs()
    # request_module() from nft and iptables does not reach modprobe in the guest
    vmbench.sh("modprobe", "-a", *GUEST_MODULES)
    for knob in ("nf_conntrack_acct=1", "nf_conntrack_tcp_be_liberal=1"):
        vmbench.sh("sysctl", "-q", f"net.netfilter.{knob}")
    vmbench.sh("insmod", g.ko["itm_bench_drive"])
    samples: dict[str, list[float]] = {name: [] for name in CONFIGS}
    marked: dict[str, list[int]] = {name: [0, 0] for name in CONFIGS}
    try:
        g.measure()  # warm up
        for names in rounds(repeats, g.legacy_removable):
            for name in names:
                g.setup(name)
                try:
                    samples[name].append(g.measure())
                finally:
                    s, lg = g.teardown(name)
                marked[name][0] += s
                marked[name][1] += lg
        for name in CONFIGS:
            g.check(name, (marked[name][0], marked[name][1]), repeats)
    finally:
        _cleanup()
    doc = {
        "kernel": platform.release(),
        "iterations": iterations,
        "flows": FLOWS,
        "threshold": THRESHOLD,
        "repeats": repeats,
        "ns_per_packet": {k: min(v) for k, v in samples.items()},
        "median": {k: statistics.median(v) for k, v in samples.items()},
        "spread": {k: [min(v), max(v)] for k, v in samples.items()},
        "marked": {k: v for k, v in marked.items()},
    }
    out.write_text(json.dumps(doc, indent=2))
    return 0


def _quiet(*args: str) -> None:
    subprocess.run(args, capture_output=True, check=False)


def _cleanup() -> None:
    quiet = _quiet
    for table in ("qosbench", "qosbench_ct"):
        quiet("nft", "delete", "table", "ip", table)
    for tool in ("iptables", "iptables-legacy"):
        quiet(tool, "-t", "mangle", "-F")
    for mod in ("qos_mod", "itm_mod", "itm_bench_qosnf", "itm_bench_drive"):
        quiet("rmmod", mod)


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of one kernel's results."""
    ns, median = doc["ns_per_packet"], doc["median"]
    floor = ns[FLOOR]
    qos = ns[QOS] - floor
    lines = [
        f"Kernel {doc['kernel']} ({doc['iterations']:,} packets of {doc['flows']:,} flows,"
        f" threshold {doc['threshold']}, fastest of {doc['repeats']} runs):",
        "",
        "| configuration | ns/packet | (median) | cost over no marking (ns) | cost ÷ qos_mod's |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in CONFIGS:
        cost = ns[name] - floor
        ratio = "—" if name == FLOOR else f"{cost / qos:.2f}x"
        lines.append(f"| {name} | {ns[name]:.0f} | {median[name]:.0f} | {cost:.0f} | {ratio} |")
    return "\n".join(lines)


DOC_INTRO = [
    "What marking short flows costs per forwarded packet: qos_mod against the"
    " nftables and iptables rule sets that apply the same rule with connection"
    " tracking, and against no marking at all. A driver module pushes TCP segments"
    " of 200 flows (100 packets each) through pre-routing, forward and post-routing in a VM (QEMU"
    " TCG, 2 vCPUs, on a {cpu} host); every flow is new to each run, so each scheme"
    " marks 20 packets per flow short and the rest long, and the benchmark checks"
    " each scheme's own counters for exactly that before it reports. TCG inflates"
    " absolute times; the ratios, measured in the same VM run, are what carries over.",
    "",
    "The nftables rule writes `ip dscp set 4`/`0` (nft 1.0.6 cannot OR a bit into a"
    " header field), which for senders with precedence 0 — as here — is the same"
    " marking; the iptables pair (`TOS --set-tos 0x10/0x10`) keeps the other bits"
    " exactly as qos_mod does.",
    "",
    "The anchor 'qos marking, bare nf hook' is qos_mod's own flow table and marking (the"
    " same source files) in a hand-written netfilter hook at IPv4 post-routing, without"
    " itm_mod (kernel/bench/itm_bench_qosnf_main.c).",
]


def host(args: argparse.Namespace) -> int:
    """Build the modules, boot each kernel asked for, collect and print the results."""
    load = vmbench.loadavg()
    tiers = vmbench.tables_per_kernel(args, "qos_cost", table)
    if tiers is None:
        return 1
    for uml, tables in tiers.items() if args.write else ():
        intro = [line.format(cpu=vmbench.cpu()) for line in DOC_INTRO]
        if uml:
            intro[0] = (
                intro[0]
                .replace(
                    "in a VM (QEMU TCG, 2 vCPUs, on a",
                    f"natively in User-Mode Linux ({vmbench.uml_build()}one CPU, on a",
                )
                .replace(
                    " TCG inflates absolute times; the ratios, measured in the same VM run, are"
                    " what carries over.",
                    " The guest's kernel code runs as ordinary instructions on the host CPU.",
                )
            )
        vmbench.write_section(
            "qos_cost_uml" if uml else "qos_cost",
            "qos_mod against nftables and iptables" + (", native (User-Mode Linux)" if uml else ""),
            [
                *intro,
                "",
                f"Command: `python -m bench.qos_cost --kernel {args.kernel} --iterations"
                f" {args.iterations} --repeats {args.repeats} --write` — run"
                f" {vmbench.today()}, load average {load} at the start; about 4 minutes per"
                " kernel on an idle machine (2 in User-Mode Linux).",
                "",
                *[t + "\n" for t in tables],
            ],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = vmbench.parser("bench.qos_cost", __doc__ or "", 20_000, 25)
    args = parser.parse_args(argv)
    if args.iterations % FLOWS or args.iterations < FLOWS * (THRESHOLD + 1):
        parser.error(
            f"--iterations must be a multiple of {FLOWS} and at least {FLOWS * (THRESHOLD + 1)}"
        )
    if args.repeats * len(CONFIGS) + 1 > MAX_RUNS:
        parser.error(f"at most {(MAX_RUNS - 1) // len(CONFIGS)} repeats (fresh ports run out)")
    if args.guest:
        return guest(Path(args.guest), args.out, args.iterations, args.repeats)
    return host(args)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.qos_cost"))
