"""itmRoute's kernel data path against plain routing: throughput through one relay.

The overlay of itmroute.lab with one relay (A -- R1 -- D), in a VM with our
modules. Each repeat measures, interleaved, a bulk TCP stream and a UDP flood
(iperf3, ``--iterations`` seconds each) from A's overlay address to D's:

* ``routed``: A and D route each other's prefix through R1, no itmRoute;
* ``kernel``: the same routes, and itm_route in A, R1 and D (configured as the
  daemon configures it, without the daemon): A tunnels to R1, R1 relays to D,
  D delivers; the replies come back the same way;
* ``wireguard``: the same routes, and the WireGuard data path in A, R1 and D
  (set up as the daemon sets it up, without the daemon): A's WireGuard device
  sends to R1's forwarding port for D, R1 forwards the outer datagrams (NAT),
  D's device decrypts; no module of ours is used.

Ratios are each data path over routed in the same repeat. Run in User-Mode Linux
(``--kernel uml``) every namespace shares one CPU at native speed: the ratio is
the data path's cost per packet; under QEMU TCG it is the emulator's.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import entry, vmbench
from itmtool import uml

A_NET = "10.77.100.0/24"
D_NET = "10.77.200.0/24"
MODES = ("routed", "kernel", "wireguard")
FLOWS = ("tcp", "udp")
PORT = 5800


def _iperf(ns_a: str, ns_d: str, a: str, d: str, flow: str, seconds: int) -> float:
    """Mbit/s delivered by one iperf3 run A -> D."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_d, "iperf3", "-s", "-1", "-B", d, "-p", str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        args = ["-c", d, "-B", a, "-p", str(PORT), "-t", str(seconds), "-J"]
        args += ["--connect-timeout", "5000"]
        if flow == "udp":
            args += ["-u", "-b", "0", "-l", "1200"]
        for _ in range(50):  # the server needs a moment to listen
            run = subprocess.run(
                ["ip", "netns", "exec", ns_a, "iperf3", *args],
                capture_output=True,
                text=True,
                timeout=seconds + 30,
                check=False,
            )
            try:
                result = json.loads(run.stdout)
            except ValueError:
                result = {"error": (run.stdout + run.stderr)[-500:]}
            if "Connection refused" not in str(result.get("error", "")):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"iperf3 {flow}: the server never listened")
        end = result.get("end", {})
        if flow == "tcp" and "sum_received" in end:
            return float(end["sum_received"]["bits_per_second"]) / 1e6
        if flow == "udp" and "sum" in end:
            s = end["sum"]
            return float(s["bits_per_second"]) * (1 - float(s["lost_percent"]) / 100) / 1e6
        raise RuntimeError(f"iperf3 {flow}: no result ({result.get('error', 'no error given')})")
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(10)
        if server.poll() is None:
            server.kill()
            server.wait()


@contextlib.contextmanager
def _kernel_path(ov: Any, key: bytes) -> Iterator[None]:
    """itm_route in A, R1 and D: A's and D's prefixes through R1, as the daemons set it."""
    from itmlab import netns
    from itmroute.lab import A_OVERLAY, D_OVERLAY
    from libitm.control.route import ItmRouteClient, RouteSpec

    clients: list[ItmRouteClient] = []
    try:
        for ns, me in ((ov.a, A_OVERLAY), (ov.relays[0], "10.77.1.2"), (ov.d, D_OVERLAY)):
            with netns(ns):
                c = ItmRouteClient()
            clients.append(c)
            c.config(addr=ipaddress.ip_address(me), port=7177, key=key, mtu=1434, mark=0x17E0)
        a, _, d = clients
        a.route_set(
            RouteSpec(
                ipaddress.ip_network(D_NET),
                ipaddress.ip_address(D_OVERLAY),
                ipaddress.ip_address("10.77.1.2"),
                tag=1,
            )
        )
        d.route_set(
            RouteSpec(
                ipaddress.ip_network(A_NET),
                ipaddress.ip_address(A_OVERLAY),
                ipaddress.ip_address("10.77.11.1"),
                tag=1,
            )
        )
        yield
    finally:
        for c in clients:
            c.close()


@contextlib.contextmanager
def _wireguard_path(ov: Any) -> Iterator[None]:
    """The WireGuard data path in A, R1 and D, both ways through R1, as the daemons
    set it up once they chose R1."""
    from itmlab import netns
    from itmroute.config import parse_config
    from itmroute.daemon import path_tables
    from itmroute.lab import A_OVERLAY, D_OVERLAY
    from itmroute.wgpath import WireguardPath

    started: list[tuple[str, WireguardPath]] = []  # (namespace, its data path)
    try:
        for node in ("a", "r1", "d"):
            cfg = parse_config({**ov.config(node), "datapath": "wireguard"})
            dests = path_tables(cfg)
            for _, st in dests:
                st.current = "r1"
            ns = ov.ns_of(node)
            with netns(ns):
                path = WireguardPath(cfg, dests, time.monotonic)
                path.start()
                started.append((ns, path))
                if node == "r1":
                    for itm in (A_OVERLAY, D_OVERLAY):
                        assert path.forward(ipaddress.ip_address(itm).packed), itm
        yield
    finally:
        for ns, path in started:
            with netns(ns):
                path.close()


def _path(mode: str, ov: Any, key: bytes) -> contextlib.AbstractContextManager[None]:
    if mode == "kernel":
        return _kernel_path(ov, key)
    if mode == "wireguard":
        return _wireguard_path(ov)
    return contextlib.nullcontext()


def guest(moddir: Path, out: Path, seconds: int, repeats: int) -> int:
    """Inside the VM: itm_mod and itm_route loaded, both modes and flows interleaved."""
    from itmlab import kmods, netns
    from itmroute.lab import (
        A_OVERLAY,
        D_OVERLAY,
        load_stock_modules,
        load_wireguard_modules,
        overlay,
    )
    from libitm.control import ItmControl

    ko = vmbench.module_paths(moddir)
    load_stock_modules()
    load_wireguard_modules()
    vmbench.sh("insmod", ko["itm_mod"])
    samples: dict[str, list[float]] = {f"{m} {f}": [] for m in MODES for f in FLOWS}
    try:
        kmods.insmod_deps(Path(ko["itm_route"]), ours=frozenset({"itm_mod"}))
        vmbench.sh("insmod", ko["itm_route"])
        try:
            with overlay("bkr", 1) as ov:
                for ns in (ov.a, ov.d, *ov.relays):
                    with netns(ns), ItmControl() as ctl:
                        ctl.set_netns_active(True)
                # both ways through R1 (the direct link unused), R1 a router
                vmbench.sh("ip", "netns", "exec", ov.relays[0], "sysctl", "-qw",
                           "net.ipv4.ip_forward=1")  # fmt: skip
                vmbench.sh("ip", "-n", ov.a, "route", "replace", D_NET, "via", "10.77.1.2",
                           "src", A_OVERLAY)  # fmt: skip
                vmbench.sh("ip", "-n", ov.d, "route", "replace", A_NET, "via", "10.77.11.1",
                           "src", D_OVERLAY)  # fmt: skip
                key = bytes.fromhex(ov.key)
                for r in range(repeats):
                    order = MODES if r % 2 == 0 else MODES[::-1]
                    for mode in order:
                        with _path(mode, ov, key):
                            for flow in FLOWS:
                                mbps = _iperf(ov.a, ov.d, A_OVERLAY, D_OVERLAY, flow, seconds)
                                samples[f"{mode} {flow}"].append(mbps)
                                print(f"[{r + 1}/{repeats}] {mode:6s} {flow}: {mbps:8.1f} Mbit/s",
                                      flush=True)  # fmt: skip
        finally:
            vmbench.sh("rmmod", "itm_route")
    finally:
        vmbench.sh("rmmod", "itm_mod")
    doc = {
        "kernel": platform.release(),
        "seconds": seconds,
        "repeats": repeats,
        "load": vmbench.loadavg(),
        "samples": samples,
    }
    out.write_text(json.dumps(doc, indent=2))
    return 0


def ratios(doc: dict[str, Any], flow: str, mode: str = "kernel") -> list[float]:
    """``mode`` over routed, per repeat, for ``flow``."""
    s = doc["samples"]
    got = s.get(f"{mode} {flow}", [])
    return [k / r for k, r in zip(got, s[f"routed {flow}"], strict=False) if r > 0]


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of one kernel's results."""
    s = doc["samples"]
    lines = [
        f"Kernel {doc['kernel']} ({doc['seconds']} s per run, {doc['repeats']} interleaved "
        f"repeats, median (min-max); guest load average at the end {doc['load']}):",
        "",
        "| flow | routed, Mbit/s | data path | Mbit/s | ÷ routed |",
        "|---|---:|---|---:|---:|",
    ]
    for flow in FLOWS:
        name = "bulk TCP" if flow == "tcp" else "UDP flood (1200 B)"
        routed = f"{statistics.median(s[f'routed {flow}']):.0f}"
        for mode in MODES[1:]:
            rs = ratios(doc, flow, mode)
            if not rs:  # a run from before this mode existed
                continue
            lines.append(
                f"| {name} | {routed} | {mode} | {statistics.median(s[f'{mode} {flow}']):.0f} "
                f"| {statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f}) |"
            )
            name = routed = ""
    return "\n".join(lines)


def host(args: argparse.Namespace) -> int:
    """Build the modules, boot each kernel asked for, collect and print the results.

    UML runs on one host CPU (``ITM_UML_CPU``, the last CPU unless set): spread
    over the host's CPUs, its process model made the routed anchor move 3x with
    what else ran on the host (3.8-4.5 Gbit/s on an idle host, 11 beside a busy
    VM); pinned it gave 10.8-12.1 in every run.
    """
    os.environ.setdefault(uml.CPU_ENV, str((os.cpu_count() or 1) - 1))
    tiers = vmbench.tables_per_kernel(args, "itmroute_kernel", table)
    if tiers is None:
        return 1
    for native, tables in tiers.items() if args.write else ():
        vmbench.write_section(
            "itmroute_kernel_uml" if native else "itmroute_kernel",
            "itmRoute's kernel data path against routing" + (", native (UML)" if native else ""),
            [
                "A bulk TCP stream and a UDP flood (iperf3) from A to D through one relay, "
                "routed through it without itmRoute, carried by itm_route (`kernel`: A "
                "tunnels, R1 relays, D delivers, each datagram sealed and checked as the "
                "daemon does) and by the kernel's WireGuard (`wireguard`: A's device to "
                "R1's forwarding port, R1 forwards the outer datagrams, D's device "
                "decrypts), interleaved; the ratio is the data path's over routing's in "
                "the same repeat. "
                + (
                    "User-Mode Linux: every namespace shares one CPU at native speed "
                    f"(UML's processes kept on host CPU {os.environ[uml.CPU_ENV]})."
                    if native
                    else f"QEMU TCG, 2 vCPUs, on a {vmbench.cpu()} host."
                ),
                "",
                f"Command: `python -m bench.itmroute_kernel --kernel {args.kernel} "
                f"--iterations {args.iterations} --repeats {args.repeats} --write` — run "
                f"{vmbench.today()}, host load average at the end {vmbench.loadavg()}.",
                "",
                *[t + "\n" for t in tables],
            ],
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line (``--iterations``: seconds per iperf3 run)."""
    return vmbench.main("bench.itmroute_kernel", __doc__ or "", 5, 3, guest, host, argv)


if __name__ == "__main__":
    sys.exit(entry.run(main, "bench.itmroute_kernel"))
