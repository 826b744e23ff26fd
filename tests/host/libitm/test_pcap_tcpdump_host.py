"""A real `tcpdump -i any` capture (Linux cooked v2 on libpcap >= 1.10) through
`itmtool run`: the result keeps the link type, the times and every byte apart
from the application's change.

The capture is made in a network namespace the test creates: ping on its
loopback, 4 echo requests, bounded by tcpdump's -c and a timeout.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from libitm.checksum import ones_sum

pytestmark = pytest.mark.root

LIMIT = 60
APP = """
from libitm import Application, Hook, Interest, Verdict

class MarkIcmp(Application):
    label = "mark_icmp"
    hook = Hook.IP_IN
    interest = Interest(protocol="icmp")
    def class_func(self, pkt):
        return 1
    def process_func(self, where, cls, pkt):
        pkt.tos = 0x10
        return Verdict.ACCEPT
"""


def _records(raw: bytes) -> tuple[int, int, list[tuple[int, int, bytes]]]:
    """(magic, link type, [(sec, frac, frame)]) of a little-endian classic pcap."""
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", raw[:24])
    pos, out = 24, []
    while pos < len(raw):
        sec, frac, incl, _ = struct.unpack("<IIII", raw[pos : pos + 16])
        out.append((sec, frac, raw[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return magic, linktype, out


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with loopback up, removed afterwards."""
    name = f"itmcap{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _capture(ns: str, path: Path, precision: str) -> None:
    tcpdump = shutil.which("tcpdump")
    assert tcpdump, "tcpdump is needed for this test (apt-get install tcpdump)"
    cmd = ["ip", "netns", "exec", ns, tcpdump, "-i", "any", "-w", str(path), "-c", "8"]
    cmd += ["-Z", "root", "-U", "--time-stamp-precision", precision, "icmp"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "listening on" not in line:
            line = proc.stderr.readline()
        assert "LINUX_SLL2" in line, line  # Debian 12's libpcap: cooked v2 for "any"
        ping = ["ip", "netns", "exec", ns, "ping", "-c", "4", "-i", "0.2", "-W", "1", "127.0.0.1"]
        subprocess.run(ping, check=True, capture_output=True, timeout=LIMIT)
        proc.wait(timeout=LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


@pytest.mark.parametrize("precision", ["micro", "nano"])
def test_a_tcpdump_any_capture_replays_byte_for_byte(
    tmp_path: Path, netns: str, precision: str
) -> None:
    cap, out = tmp_path / "any.pcap", tmp_path / "out.pcap"
    _capture(netns, cap, precision)
    (tmp_path / "mark_icmp.py").write_text(APP)
    argv = ["run", "mark_icmp.py", "--pcap", cap.name, "--out", out.name, "--json"]
    res = subprocess.run(
        [sys.executable, "-m", "itmtool.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    magic_in, link_in, given = _records(cap.read_bytes())
    magic_out, link_out, got = _records(out.read_bytes())
    assert link_in == link_out == 276
    assert magic_in == magic_out == (0xA1B23C4D if precision == "nano" else 0xA1B2C3D4)
    assert len(got) == len(given) == 8
    for (s1, f1, a), (s2, f2, b) in zip(given, got, strict=True):
        assert (s1, f1) == (s2, f2)
        assert a[:20] == b[:20]  # the cooked v2 header as captured
        ip_a, ip_b = a[20:], b[20:]
        assert ip_b[1] == 0x10 and ones_sum(ip_b[:20]) == 0xFFFF
        assert ip_a[0] == ip_b[0] and ip_a[2:10] == ip_b[2:10] and ip_a[12:] == ip_b[12:]
