"""The qos_mod act of `make demo`: short TCP flows behind long ones, with and without
size-aware differentiation.

::

    [client] l0 --- r0 [itm] l1 --- r1 [core] l2 ===(8 Mbit/s)=== r2 [server]
                     qos_mod marks      prio qdisc under a TBF: packets
                     at post-routing    with TOS 0x10 go first

Two long flows keep the bottleneck queue full while short flows (fewer packets
than qos_mod's threshold) are timed from connect to the server's answer.  A
capture at the server counts, per flow, the packets that arrived with the
Minimize-Delay bit set.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import itmlab as lab

ROLES = ["client", "itm", "core", "server"]
PORT = 7000
BOTTLENECK = "8mbit"
SHORT_BYTES = 20_000  # about 14 segments: short for qos_mod's default threshold of 20
SHORT_FLOWS = 12
LONG_FLOWS = 2
ETH_P_IP = 0x0800


class Marks:
    """Count, per client source port, packets arriving with and without TOS 0x10."""

    def __init__(self, ns: str, dev: str) -> None:
        with lab.netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.bind((dev, 0))
        self.sock.settimeout(0.2)
        self.short: Counter[int] = Counter()
        self.total: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(128)
            except OSError:
                continue
            ip = frame[14:]
            if len(ip) < 24 or ip[9] != socket.IPPROTO_TCP:
                continue
            (sport,) = struct.unpack_from("!H", ip, (ip[0] & 0x0F) * 4)
            if sport == PORT:
                continue  # the server's direction is not marked by the ITM
            self.total[sport] += 1
            if ip[1] & 0x10:
                self.short[sport] += 1

    def close(self) -> None:
        """Stop capturing."""
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def bottleneck(c: lab.Chain) -> Iterator[None]:
    """TBF at BOTTLENECK on the core's link to the server, a prio qdisc inside it."""
    core, dev = c.names[2], c.dev_out(2)
    lab.sh("ip", "-n", core, "link", "set", dev, "txqueuelen", "100")
    lab.sh(
        "tc",
        "-n",
        core,
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "handle",
        "1:",
        "tbf",
        "rate",
        BOTTLENECK,
        "burst",
        "16kb",
        "latency",
        "500ms",
    )
    lab.sh("tc", "-n", core, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "prio")
    for i, ns in enumerate(c.names[:-1]):
        lab.sh(
            "ip",
            "netns",
            "exec",
            ns,
            "ethtool",
            "-K",
            c.dev_out(i),
            "tso",
            "off",
            "gso",
            "off",
            check=False,
        )
    yield


def run_mix(c: lab.Chain) -> dict[str, Any]:
    """Long flows in the background, short flows timed one after another."""
    client, server_ns = c.names[0], c.names[-1]
    dst = c.addr(len(c.names) - 1)
    server = lab.FlowServer(server_ns, PORT)
    marks = Marks(server_ns, f"r{len(c.names) - 2}")
    longs: list[tuple[float, int, int]] = []
    duration = SHORT_FLOWS * 0.5 + 3.0
    deadline = time.monotonic() + duration

    def long_flow() -> None:
        longs.append(lab.timed_flow(client, dst, PORT, 1 << 40, deadline=deadline))

    threads = [threading.Thread(target=long_flow, daemon=True) for _ in range(LONG_FLOWS)]
    try:
        for th in threads:
            th.start()
        time.sleep(2.0)  # let the long flows fill the queue
        shorts = []
        for _ in range(SHORT_FLOWS):
            shorts.append(lab.timed_flow(client, dst, PORT, SHORT_BYTES, timeout=20))
            time.sleep(0.3)
        for th in threads:
            th.join(duration + 30)
    finally:
        marks.close()
        server.close()
    flows = [("short", s) for s in shorts] + [("long", lg) for lg in longs]
    return {
        "short_seconds": [s[0] for s in shorts],
        "long_mbps": [lg[1] * 8 / lg[0] / 1e6 for lg in longs if lg[0] > 0],
        "flows": [
            {
                "kind": kind,
                "sport": f[2],
                "bytes": f[1],
                "seconds": f[0],
                "packets": marks.total[f[2]],
                "marked_short": marks.short[f[2]],
            }
            for kind, f in flows
        ],
    }


def run(qos_ko: Path, threshold: int = 20) -> dict[str, Any]:
    """Both modes in one topology: without marking, then with qos_mod loaded."""
    out: dict[str, Any] = {
        "bottleneck": BOTTLENECK,
        "short_bytes": SHORT_BYTES,
        "threshold": threshold,
    }
    with lab.chain(ROLES) as c, bottleneck(c):
        out["without"] = run_mix(c)
        lab.sh("insmod", str(qos_ko), f"threshold={threshold}")
        try:
            lab.sh("ip", "netns", "exec", c.names[1], "python", "-m", "itmtool.cli", "netns", "on")
            out["with"] = run_mix(c)
            out["qos_stats"] = {
                p.name: int(p.read_text()) for p in Path("/sys/module/qos_mod/stats").iterdir()
            }
        finally:
            lab.sh("rmmod", "qos_mod", check=False)
    return out


def summary(doc: dict[str, Any]) -> str:
    """The table a person wants: completion times and marks, with and without."""
    lines = [
        f"bottleneck {doc['bottleneck']}, short flows of {doc['short_bytes']:,} bytes, "
        f"{LONG_FLOWS} long flows, qos_mod threshold {doc['threshold']} packets",
        "",
        f"{'':22}{'without marking':>18}{'with qos_mod':>16}",
    ]

    def row(name: str, fn: Any) -> str:
        return f"{name:22}{fn(doc['without']):>18}{fn(doc['with']):>16}"

    def ok(m: dict[str, Any]) -> list[float]:
        return [s for s in m["short_seconds"] if s > 0]

    lines.append(row("short flows done", lambda m: f"{len(ok(m))}/{len(m['short_seconds'])}"))
    lines.append(row("short mean (ms)", lambda m: f"{1000 * statistics.mean(ok(m)):.0f}"))
    lines.append(row("short median (ms)", lambda m: f"{1000 * statistics.median(ok(m)):.0f}"))
    lines.append(row("short max (ms)", lambda m: f"{1000 * max(ok(m)):.0f}"))
    lines.append(row("long goodput (Mbit/s)", lambda m: f"{sum(m['long_mbps']):.2f}"))
    lines += [
        "",
        "flows with qos_mod (packets seen at the server, and how many had TOS 0x10):",
        f"{'kind':6}{'port':>7}{'bytes':>12}{'packets':>9}{'marked short':>14}{'ms':>8}",
    ]
    for f in doc["with"]["flows"][:4] + doc["with"]["flows"][-LONG_FLOWS:]:
        lines.append(
            f"{f['kind']:6}{f['sport']:>7}{f['bytes']:>12,}{f['packets']:>9}"
            f"{f['marked_short']:>14}{1000 * f['seconds']:>8.0f}"
        )
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Short-flow completion times with and without qos_mod, as a PNG (needs matplotlib)."""
    from itmtool.plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, color in (
        ("without", "without marking (FIFO)", "tab:red"),
        ("with", "with qos_mod", "tab:green"),
    ):
        times = sorted(1000 * s for s in doc[key]["short_seconds"] if s > 0)
        ax.plot(
            times,
            [(i + 1) / len(times) for i in range(len(times))],
            marker="o",
            label=label,
            color=color,
            drawstyle="steps-post",
        )
    ax.set_xlabel("short-flow completion time (ms)")
    ax.set_ylabel("fraction of short flows")
    ax.set_title(
        f"{doc['short_bytes'] // 1000} kB flows behind {LONG_FLOWS} long flows, "
        f"{doc['bottleneck']} bottleneck"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
