"""The mice-elephants experiment's capture: every client packet's mark, as it enters the core.

tcpdump (C, with a kernel filter and a large buffer) writes the headers of the
client-to-server packets to a pcap while a run goes on; afterwards the pcap is
read with libitm's reader into one byte of flags per packet and flow: bit 0
the Minimize-Delay mark (TOS 0x10), bit 1 FIN.  A Python capture would lose
packets on the emulated machine when hundreds of senders share its CPU;
tcpdump reports its own losses, which the experiment records.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

from itmlab import stop
from libitm.pcap import PcapReader, PcapRecord

ETH_HEADER = 14


def tcp_packets(pcap: Path) -> Iterator[tuple[PcapRecord, bytes, int]]:
    """Each IPv4 TCP packet in `pcap`: its record, its IP packet, its IP header length."""
    with pcap.open("rb") as f:
        for rec in PcapReader(f):
            ip = rec.data[ETH_HEADER:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            if len(ip) >= ihl + 20:
                yield rec, ip, ihl


def tcp_to_port(pcap: Path, port: int) -> Iterator[tuple[PcapRecord, bytes, int]]:
    """Each IPv4 TCP packet to `port` in `pcap`, as `tcp_packets` gives them."""
    for rec, ip, ihl in tcp_packets(pcap):
        if struct.unpack_from("!H", ip, ihl + 2)[0] == port:
            yield rec, ip, ihl


def flags_by_port(pcap: Path, port: int) -> dict[int, bytearray]:
    """Per client source port, the flags of its packets to `port`, in capture order."""
    out: dict[int, bytearray] = {}
    for _, ip, ihl in tcp_to_port(pcap, port):
        sport = struct.unpack_from("!H", ip, ihl)[0]
        fin = ip[ihl + 13] & 0x01
        out.setdefault(sport, bytearray()).append((ip[1] & 0x10) >> 4 | fin << 1)
    return out


class Capture:
    """tcpdump in namespace `ns` on `dev`, for TCP packets to `port` that the device
    receives (`direction` "in") or sends ("out"), into `pcap`; `bpf` replaces the filter."""

    def __init__(
        self,
        ns: str,
        dev: str,
        port: int,
        pcap: Path,
        direction: str = "in",
        bpf: str | None = None,
    ) -> None:
        self.pcap = pcap
        self.port = port
        pcap.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "-n", "-s", "80", "-B", "16384",
             "-w", str(pcap), "-U", "-Q", direction, bpf or f"tcp dst port {port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # tcpdump says "listening on ..." once its filter is in place
        first = self.proc.stderr.readline() if self.proc.stderr else ""
        if "listening on" not in first:
            self.proc.kill()
            raise RuntimeError(f"tcpdump did not start: {first.strip()}")

    def close(self) -> tuple[dict[int, bytearray], int]:
        """Stop tcpdump; the flags per client port and the packets the kernel dropped."""
        dropped = self.stop()
        return flags_by_port(self.pcap, self.port), dropped

    def stop(self) -> int:
        """Stop tcpdump; the packets the kernel dropped (-1: tcpdump did not say)."""
        _, err = stop(self.proc, signal.SIGINT, timeout=20)
        found = re.search(r"(\d+) packets? dropped by kernel", err or "")
        return int(found.group(1)) if found else -1


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_capture",
            "it is a part of the mice-elephants experiment;"
            " run python -m bench.mice_elephants (see its --help)",
        )
    )
