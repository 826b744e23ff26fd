"""Experiment: "The War between Mice and Elephants" (Guo & Matta, ICNP 2001) with qos_mod.

In a VM booted on a kernel of the matrix, a dumbbell of network namespaces::

    [client] l0 --- r0 [itm] l1 --- r1 [core] l2 ===(4 Mbit/s)=== r2 [server]
     senders          marks at       TBF bottleneck; marked packets
                      post-routing;  preferred (strict priority, a RED
                      20 ms delay    per class served 3:1, or RIO)

carries TCP transfers with bounded-Pareto sizes and Poisson arrivals
(bench/mice_trace.py) at several offered loads. Every configuration of
bench/mice_plan.py replays the same trace of its seed: the ITM marks nothing,
or runs qos_mod, the nftables rule set that does the same job, or libitm's
examples/qos_ctrl.py (nfqueue backend); the core serves TOS 0x10 first
(``prio``), gives each class its own RED with a 3:1 round-robin share
(``red``), or runs RIO -- one FIFO, a late-dropping RED profile for marked
packets and an early one for the rest (``rio``, kernel/sch_rio). Each flow is
timed from connect to the server's answer; a capture where packets enter the
core checks every client packet's mark against the scheme's rule; the guest's
CPU idle time and the bottleneck's utilisation are read over each run.

    .venv/bin/python -m bench.mice_elephants [--kernel 6.12|all] [--quick] [--sweep] [--write]
    .venv/bin/python -m bench.mice_elephants --report      # tables and plots from the data

Results land in docs/data/mice_elephants-<kernel>.json; --write (and --report)
rewrite the section of docs/benchmarks.md and the plots in docs/img/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import itmlab as lab
from bench import cliargs, entry, mice_capture, mice_order, mice_plan, mice_stats, vmbench
from bench.mice_plan import Run
from bench.mice_trace import MSS, Sizes, offered_load, trace
from bench.qos_cost import nft_table
from itmtool import demo_qos
from itmtool.matrix import ROOT
from libitm.xtables import chain_name

RATE = "4mbit"
RATE_BPS = 4e6
DELAY = "20ms"
SIZES = Sizes()
PORT = demo_qos.PORT
DATA = ROOT / "docs" / "data"
ROLES = ["client", "itm", "core", "server"]
GUEST_MODULES = (
    "veth",
    "sch_tbf",
    "sch_prio",
    "sch_drr",
    "sch_red",
    "sch_netem",
    "cls_u32",
    "nf_conntrack",
    "nf_tables",
    "nft_ct",
    "nfnetlink_queue",
    "xt_NFQUEUE",
    "nft_compat",
    "iptable_mangle",
    "xt_tcpudp",
)
QOS_CTRL = ROOT / "examples" / "qos_ctrl.py"
CTRL_CHAIN = chain_name("qos_ctrl")
#: RIO's profiles (our choice, in packets): the red core's thresholds and probabilities
#: (30/90 kB at 0.02 for marked, 15/45 kB at 0.1 for the rest, avpkt 1000), so that
#: rio and red differ in the queue (one FIFO against two served 3:1), not in the profiles
RIO_IN = (30, 90, 0.02)
RIO_OUT = (15, 45, 0.1)


def core_qdisc(core: str) -> list[str]:
    """The tc commands (arguments after ``tc``) that build treatment `core` on dev l2.

    Both sit under a TBF at RATE.  ``prio``: the prio qdisc's default priomap
    sends TOS 0x10 to band 0, served strictly first.  ``red``: a DRR with one
    class for marked packets (quantum 3 MTUs, a RED that drops late) and one for
    the rest (1 MTU, a RED that drops early): RED with In and Out, per class.
    Unmarked traffic is in one class either way: FIFO, or one RED.
    """
    dev = "dev l2"
    cmds = [f"qdisc add {dev} root handle 1: tbf rate {RATE} burst 16kb latency 400ms"]
    if core == "prio":
        cmds.append(f"qdisc add {dev} parent 1:1 handle 10: prio")
        return cmds
    if core == "rio":
        return cmds  # the rio child is set by rio_command (tc cannot parse its options)
    red = "red limit 200000 avpkt 1000 bandwidth " + RATE
    cmds += [
        f"qdisc add {dev} parent 1:1 handle 10: drr",
        f"class add {dev} parent 10: classid 10:1 drr quantum 4500",
        f"class add {dev} parent 10: classid 10:2 drr quantum 1500",
        # burst (2 min + max) / (3 avpkt), as tc-red(8) advises
        f"qdisc add {dev} parent 10:1 handle 11: {red} min 30000 max 90000 burst 50"
        " probability 0.02",
        f"qdisc add {dev} parent 10:2 handle 12: {red} min 15000 max 45000 burst 25"
        " probability 0.1",
        f"filter add {dev} parent 10: protocol ip prio 1 u32 match ip tos 0x10 0x10 flowid 10:1",
        f"filter add {dev} parent 10: protocol all prio 2 u32 match u32 0 0 flowid 10:2",
    ]
    return cmds


def rio_command() -> list[str]:
    """The itmtool arguments that put RIO (RIO_IN, RIO_OUT) under core_qdisc's TBF on l2."""
    return [
        "rio", "set", "l2", "--parent", "1:1", "--handle", "10:", "--limit", "200",
        "--in", ",".join(map(str, RIO_IN)), "--out", ",".join(map(str, RIO_OUT)),
        "--bandwidth", RATE, "--avpkt", "1000",
    ]  # fmt: skip


class Guest:
    """The guest half: one dumbbell, every run of the plan on it."""

    def __init__(self, c: lab.Chain, moddir: Path) -> None:
        self.c = c
        self.ko = vmbench.module_paths(moddir)
        self.client, self.itm, self.core, self.server = c.names
        self.dst = c.addr(3)
        self.ctrl: subprocess.Popen[str] | None = None
        self.ctrl_first = False  # the running qos_ctrl's --mark-first

    def setup_links(self, steer: bool = False) -> None:
        """The ITM's delay towards the core; short device queues at the core; with
        `steer`, every link's packets handled on CPU 0 (see `steer_links`)."""
        lab.sh("tc", "-n", self.itm, "qdisc", "add", "dev", "l1", "root", "netem", "delay", DELAY)
        lab.sh("ip", "-n", self.core, "link", "set", "l2", "txqueuelen", "100")
        if steer:
            self.steer_links()

    def devices(self) -> Iterator[tuple[str, str]]:
        """(namespace, device) of every veth end of the chain."""
        for i, ns in enumerate(self.c.names):
            yield from ((ns, dev) for dev in ([f"r{i - 1}"] if i > 0 else []) + (
                [f"l{i}"] if i < len(self.c.names) - 1 else []))  # fmt: skip

    def steer_links(self) -> None:
        """Receive packet steering to CPU 0 on every veth end, so that the links keep
        each flow's order.

        A veth hands a packet to the backlog of the CPU that sent it; a flow sent from
        both vCPUs (the application on one, ACK-clocked sends in the other's softirq)
        then reaches the next namespace partly swapped, whatever the core does. With
        ``rps_cpus`` 1 every end queues to CPU 0's backlog in the order packets were
        sent, as a wire would.  Raises RuntimeError when the kernel does not take it.
        """
        for ns, dev in self.devices():
            knob = f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"
            lab.sh("ip", "netns", "exec", ns, "sh", "-c", f"echo 1 > {knob}")
            got = lab.sh("ip", "netns", "exec", ns, "cat", knob).strip()
            if int(got.replace(",", ""), 16) != 1:
                raise RuntimeError(f"{ns} {dev}: rps_cpus is {got}, not 1")

    def offloads(self, on: bool) -> None:
        """TSO/GSO/GRO and checksum offload on every veth, on or off."""
        state = "on" if on else "off"
        for ns, dev in self.devices():
            lab.sh(
                "ip", "netns", "exec", ns, "ethtool", "-K", dev,
                "tx", state, "tso", state, "gso", state, "gro", state, check=False,
            )  # fmt: skip

    @contextlib.contextmanager
    def core_treatment(self, core: str) -> Iterator[None]:
        """Treatment `core` at the bottleneck for the block."""
        try:
            for cmd in core_qdisc(core):
                lab.sh("tc", "-n", self.core, *cmd.split())
            if core == "rio":
                from itmtool import cli  # in this process: a new Python costs ~20 s in TCG

                with lab.netns(self.core):
                    code = cli.main(rio_command())
                if code != 0:
                    raise RuntimeError(f"itmtool {' '.join(rio_command())}: exit {code}")
            yield
        finally:
            lab.sh("tc", "-n", self.core, "qdisc", "del", "dev", "l2", "root", check=False)

    @contextlib.contextmanager
    def scheme(self, run: Run) -> Iterator[dict[str, Any]]:
        """The ITM's scheme for the block; yields a dict it fills with the scheme's own figures."""
        info: dict[str, Any] = {}
        try:
            if run.scheme == "qos_mod":
                lab.sh("insmod", self.ko["itm_mod"])
                lab.sh(
                    "insmod",
                    self.ko["qos_mod"],
                    f"threshold={run.threshold}",
                    f"mark_first={int(run.mark_first)}",
                )
                lab.sh(
                    "ip", "netns", "exec", self.itm, "python", "-m", "itmtool.cli", "netns", "on"
                )
            elif run.scheme == "nft":
                subprocess.run(
                    ["ip", "netns", "exec", self.itm, "nft", "-f", "-"],
                    input=nft_table(run.threshold, "mice"),
                    text=True,
                    check=True,
                )
            elif run.scheme == "qos_ctrl":
                if self.ctrl is not None and self.ctrl_first != run.mark_first:
                    self.stop_ctrl()
                if self.ctrl is None:
                    self.start_ctrl(run.mark_first)
                self.ipt("-A", "POSTROUTING", "-j", CTRL_CHAIN)
                info["ctrl_cpu"] = self.ctrl_cpu()
            yield info
        finally:
            if run.scheme == "qos_mod":
                stats = Path("/sys/module/qos_mod/stats")
                if stats.exists():
                    info["qos_stats"] = {p.name: int(p.read_text()) for p in stats.iterdir()}
                lab.sh("rmmod", "qos_mod", check=False)
                lab.sh("rmmod", "itm_mod", check=False)
            elif run.scheme == "nft":
                lab.sh(
                    "ip",
                    "netns",
                    "exec",
                    self.itm,
                    "nft",
                    "delete",
                    "table",
                    "ip",
                    "mice",
                    check=False,
                )
            elif run.scheme == "qos_ctrl" and self.ctrl is not None:
                self.ipt("-D", "POSTROUTING", "-j", CTRL_CHAIN)
                info["ctrl_cpu"] = self.ctrl_cpu() - info.get("ctrl_cpu", 0.0)

    def start_ctrl(self, mark_first: bool) -> None:
        """examples/qos_ctrl.py on the nfqueue backend in the ITM, its rules in but unhooked.

        Python starts slowly on the emulated CPU (tens of seconds), so one
        process serves every qos_ctrl run: between runs the jump to its chain
        is taken out (nothing reaches it), and `hook_ctrl` puts it back.
        """
        self.ctrl_first = mark_first
        self.ctrl = subprocess.Popen(
            ["ip", "netns", "exec", self.itm, sys.executable, str(QOS_CTRL),
             "--backend", "nfqueue", "--threshold", "20",
             "--dst", f"{self.dst}/32", "--duration", "7200",
             *(["--mark-first"] if mark_first else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if CTRL_CHAIN in self.ipt("-S", "POSTROUTING"):
                self.unhook_libitm_jump()
                return
            if self.ctrl.poll() is not None:
                break
            time.sleep(0.5)
        self.ctrl.kill()
        _, err = self.ctrl.communicate()
        self.ctrl = None
        raise RuntimeError(f"qos_ctrl did not install its rules: {err.strip()[-500:]}")

    def unhook_libitm_jump(self) -> None:
        """Delete qos_ctrl's own jump to its chain, by the spec `-S` lists (libitm's
        rules carry their owner in a comment, so a bare `-j CHAIN` does not match)."""
        for line in self.ipt("-S", "POSTROUTING").splitlines():
            spec = shlex.split(line)
            if spec[:2] == ["-A", "POSTROUTING"] and spec[-2:] == ["-j", CTRL_CHAIN]:
                self.ipt("-D", *spec[1:])

    def ipt(self, *args: str) -> str:
        """iptables in the ITM's mangle table."""
        return lab.sh("ip", "netns", "exec", self.itm, "iptables", "-w", "-t", "mangle", *args)

    def ctrl_cpu(self) -> float:
        """CPU seconds qos_ctrl has used so far."""
        if self.ctrl is None:
            return math.nan
        fields = Path(f"/proc/{self.ctrl.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop_ctrl(self) -> None:
        """Stop qos_ctrl (SIGINT: it removes its rules and says what it counted)."""
        p, self.ctrl = self.ctrl, None
        if p is None:
            return
        # ip netns exec execs: the pid is qos_ctrl's own
        _, err = lab.stop(p, signal.SIGINT, timeout=60)
        print(f"qos_ctrl: {err.strip().splitlines()[-1:] if err else ''}", flush=True)

    def traffic(self, run: Run) -> dict[str, Any]:
        """Replay the run's trace; per-flow results, utilisation and CPU idle."""
        flows = trace(run.seed, run.load, RATE_BPS, mice_plan.WINDOW, SIZES)
        results: list[tuple[float, int, int]] = [(-1.0, 0, 0)] * len(flows)
        cap = mice_capture.Capture(self.core, "r1", PORT, Path("/tmp/mice-elephants.pcap"))
        # where the core's qdisc sends them, and where they arrive: the order they keep
        tx = mice_capture.Capture(
            self.core, "l2", PORT, Path("/tmp/mice-elephants-tx.pcap"), direction="out"
        )
        rx = mice_capture.Capture(self.server, "r2", PORT, Path("/tmp/mice-elephants-rx.pcap"))
        # and at the sender, both ways: the largest flow's bytes in flight
        snd = mice_capture.Capture(
            self.client,
            "l0",
            PORT,
            Path("/tmp/mice-elephants-snd.pcap"),
            direction="inout",
            bpf=f"tcp port {PORT}",
        )
        slip: list[float] = [0.0] * len(flows)
        start = time.monotonic()
        hard = start + mice_plan.WINDOW + mice_plan.DRAIN
        cpu0, tx0 = cpu_times(), self.tx_bytes()
        threads = []

        def one(i: int, size: int) -> None:
            slip[i] = time.monotonic() - start - flows[i].start
            results[i] = lab.timed_flow(
                self.client, self.dst, PORT, size, timeout=mice_plan.DRAIN + 5, deadline=hard
            )

        try:
            for i, f in enumerate(flows):
                time.sleep(max(0.0, start + f.start - time.monotonic()))
                th = threading.Thread(target=one, args=(i, f.size), daemon=True)
                th.start()
                threads.append(th)
            time.sleep(max(0.0, start + mice_plan.WINDOW - time.monotonic()))
            tx1 = self.tx_bytes()
            cpu1 = cpu_times()
            for th in threads:
                th.join(max(0.1, hard + 8 - time.monotonic()))
            time.sleep(0.5)
        finally:
            marks, dropped = cap.close()
            rx_dropped = rx.stop()
            tx_dropped = tx.stop()
            snd.stop()
        order = mice_order.order_by_port(rx.pcap, PORT)
        # the same rule where the sender's stack handed them over, and entering the core
        as_sent = mice_order.order_by_port(snd.pcap, PORT)
        at_entry = mice_order.order_by_port(cap.pcap, PORT)
        entered = mice_order.ids_by_port(cap.pcap, PORT)
        left = mice_order.ids_by_port(tx.pcap, PORT)
        rows = []
        for f, (secs, sent, sport) in zip(flows, results, strict=True):
            flags = bytes(marks.get(sport, b"")) if sport else b""
            bad = mice_stats.mismatched(run.scheme, flags, run.threshold, run.mark_first)
            got = order.get(sport, mice_order.FlowOrder()) if sport else mice_order.FlowOrder()
            rows.append(
                [
                    f.size,
                    round(secs, 4),
                    sent,
                    len(flags),
                    sum(b & 1 for b in flags),
                    len(bad),
                    [f"{i}/{flags[i - 1]}" for i in bad[:6]],
                    got.packets,
                    got.out_of_order,
                    got.first_out_of_order,
                    got.resent,
                    *mice_order.core_order(entered.get(sport, []), left.get(sport, [])),
                    as_sent[sport].out_of_order if sport in as_sent else 0,
                    at_entry[sport].out_of_order if sport in at_entry else 0,
                ]
            )
        idle = (cpu1[1] - cpu0[1]) / max(1, cpu1[0] - cpu0[0])
        return {
            "flows": rows,
            "offered": offered_load(flows, RATE_BPS, mice_plan.WINDOW),
            "utilisation": (tx1 - tx0) * 8 / (RATE_BPS * mice_plan.WINDOW),
            "cpu_idle": idle,
            "seconds": time.monotonic() - start,
            # how late the load generator started flows (the emulated CPU keeping up)
            "slip_max": max(slip, default=0.0),
            "slip_p99": mice_stats.percentile(slip, 99),
            "capture_dropped": dropped,
            "rx_capture_dropped": rx_dropped,
            "tx_capture_dropped": tx_dropped,
            "elephant": elephant(flows, results, order, snd.pcap),
            # with offloads on a capture sees buffers of several segments: no per-packet check
            "checked": not run.offloads,
        }

    def rio_stats(self) -> dict[str, Any]:
        """The rio qdisc's own counters and the generic ones, read in the core."""
        from libitm.control.rio import RioControl, RioError

        try:
            with lab.netns(self.core), RioControl() as ctl:
                found = ctl.show("l2")
        except (RioError, OSError) as err:  # the run's figures stand without them
            return {"error": str(err)}
        return {**found[0].xstats, **found[0].counters} if found else {}

    def tx_bytes(self) -> int:
        """Bytes the core has sent on the bottleneck link."""
        out = lab.sh("ip", "-n", self.core, "-s", "-j", "link", "show", "l2")
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])

    def run(self, run: Run) -> dict[str, Any]:
        """One configuration, set up and torn down around the trace."""
        self.offloads(run.offloads)
        with self.core_treatment(run.core), self.scheme(run) as info:
            doc = self.traffic(run)
            if run.core == "rio":
                doc["rio"] = self.rio_stats()
        return {**run.as_dict(), **doc, **info}


def elephant(
    flows: list[Any],
    results: list[tuple[float, int, int]],
    order: dict[int, mice_order.FlowOrder],
    sender: Path,
) -> dict[str, Any]:
    """The largest flow that ran: its size, counts, what arrived per bin (mice_order.BIN),
    and its largest flight per bin in segments, from the `sender`'s capture."""
    ran = [(f.size, sport) for f, (_, _, sport) in zip(flows, results, strict=True) if sport]
    ran = [(size, sport) for size, sport in ran if sport in order]
    if not ran:
        return {}
    size, sport = max(ran)
    got = order[sport]
    sent = mice_order.flight(sender, PORT, sport)
    return {
        "size": size,
        "packets": got.packets,
        "out_of_order": got.out_of_order,
        "resent": got.resent,
        "bin": mice_order.BIN,
        # per bin from its first packet: [bytes, resent, out of order, marked, CE]
        "trace": got.trace(got.arrivals[0][0]),
        # per bin from its first packet sent: the most segments in flight
        "flight": mice_order.binned_max(sent, sent[0][0] if sent else 0.0, MSS),
    }


def cpu_times() -> tuple[int, int]:
    """(all, idle) jiffies of every CPU of the guest so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def guest(moddir: Path, out: Path, runs: list[Run], steer: bool = False) -> int:
    """Inside the VM: every run of the plan, the results rewritten after each."""
    for mod in GUEST_MODULES:  # tc and nft cannot autoload modules in the guest
        lab.sh("modprobe", mod, check=False)
    if any(r.core == "rio" for r in runs):
        lab.sh("insmod", vmbench.module_paths(moddir)["sch_rio"])
    doc: dict[str, Any] = {
        "kernel": platform.release(),
        "rate": RATE,
        "delay": DELAY,
        "window": mice_plan.WINDOW,
        "drain": mice_plan.DRAIN,
        "sizes": {"alpha": SIZES.alpha, "low": SIZES.low, "high": SIZES.high, "mean": SIZES.mean()},
        "vcpus": os.cpu_count(),
        # every link's packets on CPU 0 (Guest.steer_links): no reordering by the veths
        "steer": steer,
        "runs": [],
    }
    with lab.chain(ROLES) as c:
        g = Guest(c, moddir)
        g.setup_links(steer)
        server = lab.FlowServer(g.server, PORT)
        try:
            for i, run in enumerate(runs):
                t0 = time.monotonic()
                try:
                    doc["runs"].append(g.run(run))
                except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
                    doc["runs"].append({**run.as_dict(), "error": str(err)})
                print(f"run {i + 1}/{len(runs)} {run} {time.monotonic() - t0:.0f}s", flush=True)
                out.write_text(json.dumps(doc))
        finally:
            server.close()
            g.stop_ctrl()
            for mod in ("qos_mod", "itm_mod", "sch_rio"):
                lab.sh("rmmod", mod, check=False)
    return 0


def data_file(kernel: str, quick: bool = False, name: str = "mice_elephants") -> Path:
    """Where a kernel's results are kept: docs/data, or build/ for a --quick smoke check.

    A smoke check must not replace the page's data (`--report` reads docs/data).
    """
    if quick:
        return ROOT / "build" / f"{name}-quick-{kernel}.json"
    return DATA / f"{name}-{kernel}.json"


SESSION_KEYS = ("date", "minutes", "host_load", "host_cpu", "command", "planned", "partial")


def appended(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old`'s runs with `new`'s added: a configuration run again replaces its old run.

    Each VM session is kept in ``sessions`` (date, minutes, load, command, how
    many runs it planned and did) so the page can say where the runs came from.
    """

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(r.get(k) for k in ("part", "scheme", "core", "load", "seed", "threshold",
                                         "offloads", "mark_first"))  # fmt: skip

    if old.get("kernel") != new.get("kernel"):
        raise SystemExit(f"--append: the data file is of {old.get('kernel')}, not {new['kernel']}")
    fresh = {key(r) for r in new["runs"]}
    sessions = old.get("sessions") or [
        {**{k: old[k] for k in SESSION_KEYS if k in old}, "runs": len(old["runs"])}
    ]
    sessions.append({**{k: new[k] for k in SESSION_KEYS if k in new}, "runs": len(new["runs"])})
    merged = {**old, "runs": [r for r in old["runs"] if key(r) not in fresh] + new["runs"]}
    merged["sessions"] = sessions
    merged["minutes"] = round(sum(s.get("minutes", 0) for s in sessions), 1)
    merged.pop("partial", None)
    return merged


def host(args: argparse.Namespace, runs: list[Run]) -> int:
    """Boot each kernel asked for, run the plan, keep its data; then the report."""
    from bench import mice_report

    chosen = vmbench.kernels(args.kernel)
    if not chosen:
        return vmbench.fail(f"no kernel {args.kernel!r} in kernels.txt")
    bound = mice_plan.bound_seconds(runs)
    print(f"{len(runs)} runs per kernel, at most {bound / 60:.0f} min per kernel", flush=True)
    status = 0
    for k in chosen:
        t0 = time.monotonic()
        load0 = Path("/proc/loadavg").read_text().split()[:3]
        try:
            doc = vmbench.run_in_vm(k, "mice_elephants", args.guest_args, timeout=bound)
        except RuntimeError as err:
            status = vmbench.fail(str(err))
            continue
        doc.update(host_cpu=vmbench.cpu(), date=vmbench.today(), command=args.command,
                   planned=len(runs),
                   # the host's load averages (1, 5, 15 min) as the VM started and ended
                   host_load=[load0, Path("/proc/loadavg").read_text().split()[:3]],
                   minutes=round((time.monotonic() - t0) / 60, 1))  # fmt: skip
        path = data_file(k.name, args.quick, args.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if args.append and path.exists():
            doc = appended(json.loads(path.read_text()), doc)
        path.write_text(json.dumps(doc) + "\n")
        print(f"results: {path}", flush=True)
        print(mice_report.kernel_table(doc), flush=True)
    if args.write and not args.quick:
        mice_report.write()
    return status


def load_arg(text: str) -> float:
    """An offered load (argparse's ``type``): a fraction of the bottleneck's rate, in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be an offered load in (0, 1], not {text!r}")
    return value


def load_list(text: str) -> tuple[float, ...]:
    """``--loads``: offered loads, comma-separated."""
    try:
        return tuple(load_arg(x) for x in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be offered loads in (0, 1], comma-separated (0.6,0.8,0.95), not {text!r}"
        ) from None


def seed_list(text: str) -> tuple[int, ...]:
    """``--seed-list``: seeds, comma-separated whole numbers."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be seeds, comma-separated whole numbers (3,4,5), not {text!r}"
        ) from None


def comparison(text: str) -> tuple[tuple[str, ...], float | None]:
    """``--compare CORES@LOAD``: more cores, and the load to run them at (None: the top load)."""
    more, _, at = text.partition("@")
    cores = tuple(more.split(","))
    try:
        if "" in cores:
            raise argparse.ArgumentTypeError(text)
        return cores, load_arg(at) if at else None
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be CORES@LOAD, e.g. prio,red@0.95 (LOAD an offered load in (0, 1]), not {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = cliargs.parser("bench.mice_elephants", __doc__)
    p.add_argument("--kernel", default="all", help="kernel of kernels.txt, or all")
    p.add_argument(
        "--quick", action="store_true", help="smoke check: 6.12, one seed, two loads, prio only"
    )
    p.add_argument(
        "--loads",
        type=load_list,
        default=None,
        help="offered loads, comma-separated (0.6,0.8,0.95)",
    )
    p.add_argument("--seeds", type=cliargs.positive, default=None, help="seeds per load (2)")
    p.add_argument("--cores", default=None, help="core treatments, comma-separated (prio,red,rio)")
    p.add_argument("--schemes", default=None, help="ITM schemes, comma-separated (all four)")
    p.add_argument(
        "--seed-list",
        type=seed_list,
        default=None,
        help="these seeds, comma-separated (not --seeds)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add the runs to the data file (a configuration run again replaces its old run)",
    )
    p.add_argument(
        "--compare",
        metavar="CORES@LOAD",
        type=comparison,
        default=None,
        help="more cores at one load only, e.g. prio,red@0.95",
    )
    p.add_argument(
        "--name",
        default="mice_elephants",
        help="data file stem: docs/data/NAME-<kernel>.json (mice_elephants)",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also thresholds 10/50/100, offloads on, at the top load",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="update docs/ (not with --quick: its data goes to build/)",
    )
    p.add_argument("--report", action="store_true", help="only rewrite the docs from docs/data")
    p.add_argument(
        "--steer",
        action="store_true",
        help="handle every link's packets on the guest's CPU 0 (RPS), so links keep order",
    )
    p.add_argument("--guest", metavar="MODDIR", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.guest:
        runs = [Run(**r) for r in json.loads(args.plan)]
        return guest(Path(args.guest), args.out, runs, args.steer)
    if args.report:
        from bench import mice_report

        mice_report.write()
        return 0
    if args.quick and args.kernel == "all":
        args.kernel = "6.12"
    loads = args.loads or ((0.6, 0.95) if args.quick else mice_plan.LOADS)
    seeds = args.seed_list or tuple(
        range(1, (args.seeds or (1 if args.quick else len(mice_plan.SEEDS))) + 1)
    )
    cores = (
        tuple(args.cores.split(","))
        if args.cores
        else (("prio",) if args.quick else mice_plan.CORES)
    )
    schemes = tuple(args.schemes.split(",")) if args.schemes else mice_plan.SCHEMES
    compare = None
    if args.compare:
        more, at = args.compare
        compare = (more, at if at is not None else max(loads))
    bad = set(cores + (compare[0] if compare else ())) - set(mice_plan.CORES)
    bad |= set(schemes) - set(mice_plan.SCHEMES)
    if bad:
        p.error(f"unknown core or scheme: {', '.join(sorted(bad))}")
    runs = mice_plan.plan(loads, seeds, cores, schemes, max(loads) if args.sweep else None, compare)
    plan_json = json.dumps([r.as_dict() for r in runs], separators=(",", ":"))
    args.guest_args = f"--plan '{plan_json}'" + (" --steer" if args.steer else "")
    args.command = "python -m bench.mice_elephants " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    return host(args, runs)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.mice_elephants"))
