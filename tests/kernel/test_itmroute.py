"""itmRoute in the VM, where netem emulates the links: path choice, adoption of a
clearly better relay, failover when the relay in use is cut, TCP intact across a
cut, DSCP/ECN through the tunnel, ICMP "fragmentation needed", fail-open on
``kill -9`` and resumption on restart.

::

                 +---- R1 ----+
     [A] --------+---- R2 ----+-------- [D]       (itmroute.lab draws the addresses)
      |          +---- R3 ----+          |
      |          +---- R4 ----+          |
      +------------- direct -------------+

A's daemon runs as its own process (it is killed with SIGKILL); D's and the
relays' run in threads of this process, each in its namespace (a new Python
costs about 20 s in the emulated guest). The statistical versions (20 delay
sets, 20 cuts, the flapping rate, probe bytes) are in bench/itmroute.py.

These tests check that each thing happens, not how fast: in an emulated guest
on a loaded host the daemons' timers slip by seconds, so every wait below is
several times what the daemon needs and the times are printed. bench/itmroute.py
holds the times (failover within the second, adoption within seconds) on a
quiet machine; docs/itmroute.md has its figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itmlab import netns
from itmroute.lab import (
    D_OVERLAY,
    CutLater,
    Overlay,
    SeqStream,
    load_stock_modules,
    overlay,
    tcp_transfer,
)
from tests.kernel import kit

NS_PREFIX = "ovl-rt"
#: how long a wait for what the daemon does within seconds may take in a loaded TCG guest
SLOW = 45.0
#: round trips (ms) of the direct path and the paths through R1..R4: ten times a
#: real overlay's, so that what a loaded emulated guest adds to every relayed
#: round trip (its Python relay: 70-90 ms measured in CI, direct 40 ms measured
#: as 104, R2 24 ms as 115) cannot reorder them
FIRST = (400, 640, 240, 520, 720)


class Keepalive:
    """10 datagrams a second A -> D, so that the destination stays active."""

    def __init__(self, ov: Overlay) -> None:
        with netns(ov.a):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.first = 0.0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            if not self.first:
                self.first = time.monotonic()
            with contextlib.suppress(OSError):
                self.sock.sendto(b"k", (D_OVERLAY, 9))

    def close(self) -> None:
        self._stop.set()
        self._th.join(2)
        self.sock.close()


class Lab:
    """The overlay, A's process and its state file."""

    def __init__(self, ov: Overlay, work: Path) -> None:
        self.ov = ov
        self.work = work
        self.proc, self.state_file = ov.start_process("a", work)

    def state(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.state_file.read_text())
            return doc
        except (OSError, ValueError):
            return {}

    def dest(self) -> dict[str, Any]:
        st = self.state()
        return st["destinations"][0] if st.get("destinations") else {}

    def current(self) -> str | None:
        return self.dest().get("current")

    def wait_current(self, want: str, timeout: float) -> bool:
        return kit.wait_until(lambda: self.current() == want, timeout, 0.2)

    def wait_settled(self, want: str, hold: float, timeout: float) -> bool:
        """Wait until `want` is in use and stays so for `hold` s (a loaded guest's
        daemon can move between relays of similar delay before it settles)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.wait_current(want, end - time.monotonic()) and not kit.wait_until(
                lambda: self.current() != want, hold, 0.2
            ):
                return True
        return False

    def wait_relay(self, timeout: float) -> bool:
        """Wait until packets go through some relay (the tunnel is in use)."""
        return kit.wait_until(lambda: str(self.current()).startswith("r"), timeout, 0.2)

    def restart(self) -> None:
        self.proc, self.state_file = self.ov.start_process("a", self.work)

    def log(self) -> str:
        path = self.work / "a.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    load_stock_modules()
    work = Path(tempfile.mkdtemp(prefix="itmroute-"))
    # not itm*: conftest fails a test after which itm* namespaces remain, and
    # these live for the module; their own removal is checked below
    with overlay(NS_PREFIX, 4) as ov:
        ov.set_paths({i: (rtt, 0.0, 0.0) for i, rtt in enumerate(FIRST)})
        ov.start_threads(["d", "r1", "r2", "r3", "r4"])
        lab = Lab(ov, work)
        try:
            # A's process: Python, then its capture rules, in a TCG guest on a loaded host
            assert kit.wait_until(lambda: bool(lab.state()), 300, 0.5), lab.log()
            yield lab
        finally:
            ov.stop_daemons()
            print(lab.log()[-3000:])
    left = [n for n in kit.sh("ip", "netns", "list").split() if n.startswith(NS_PREFIX)]
    assert not left, f"namespaces left: {left}"


def test_picks_the_lowest_rtt_and_adopts_a_clearly_better_relay(lab: Lab) -> None:
    keep = Keepalive(lab.ov)
    try:
        assert lab.wait_current("r2", SLOW), lab.dest()
        first = next(d for d in lab.dest()["decisions"] if d["reason"] == "start")
        assert first["new"] == "r2"
        print("first choice after (s):", first["t"] - keep.first)
        lab.ov.set_path(4, 120)  # R4: half of R2's round trip
        t0 = time.monotonic()
        assert lab.wait_current("r4", SLOW), lab.dest()
        adopted = next(d for d in lab.dest()["decisions"] if d["new"] == "r4")
        assert adopted["t"] >= t0, adopted
        print("R4 adopted after (s):", adopted["t"] - t0)
    finally:
        keep.close()


def test_dscp_ecn_and_icmp_echo_through_the_tunnel(lab: Lab) -> None:
    keep = Keepalive(lab.ov)
    try:
        assert lab.wait_relay(SLOW), lab.dest()
        with netns(lab.ov.d):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with netns(lab.ov.a):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind((D_OVERLAY, 5500))
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
            rx.settimeout(3)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB9)  # EF, ECT(1)
            tunnelled = lab.state()["counters"]["tunnelled"]
            tx.sendto(b"dscp", (D_OVERLAY, 5500))
            data, anc, _, _ = rx.recvmsg(100, socket.CMSG_SPACE(4))
            assert data == b"dscp"
            tos = [c[2][0] for c in anc if c[1] == socket.IP_TOS]
            assert tos == [0xB9]
        assert kit.wait_until(lambda: lab.state()["counters"]["tunnelled"] > tunnelled, 3)
        assert kit.ping(lab.ov.a, D_OVERLAY, 3)
    finally:
        keep.close()


def test_oversized_df_packet_draws_frag_needed_with_the_tunnel_mtu(lab: Lab) -> None:
    keep = Keepalive(lab.ov)
    try:
        assert lab.wait_relay(SLOW), lab.dest()
        mtu = lab.state()["tunnel_mtu"]
        proc = subprocess.run(
            ["ip", "netns", "exec", lab.ov.a, "ping", "-M", "do", "-s", "1472", "-c", "2",
             "-i", "0.5", "-W", "1", D_OVERLAY],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert f"mtu = {mtu}" in out or f"mtu={mtu}" in out, out
        assert kit.wait_until(lambda: lab.state()["counters"]["frag_needed"] >= 1, 3)
        # a packet that fits goes through
        assert kit.ping(lab.ov.a, D_OVERLAY, 1)
    finally:
        keep.close()


def test_cutting_the_relay_in_use_fails_over_within_a_second(lab: Lab) -> None:
    gaps = []
    for _ in range(2):
        # R4 (120 ms) is in use, or is taken back within seconds after the last cut
        # healed; the state file is a second old at most
        assert lab.wait_settled("r4", 1.5, SLOW), lab.dest()
        victim = 4
        stream = SeqStream(lab.ov, rate=100, port=5600)
        cutter = CutLater(lab.ov, victim, 1.5)
        try:
            # long enough for a failover whose timers slipped to show as recovered
            stream.run(10.0)
        finally:
            stream.close()
            cutter.join()
            lab.ov.cut(victim, on=False)
        cut_at = [cutter.done]
        gap = stream.largest_gap(after=cut_at[0] - 1.0)
        gaps.append(gap)
        seen = stream.summary(after=cut_at[0])
        print("failover gap (s):", gap, seen, lab.dest().get("decisions", [])[-3:])
        assert gap <= 6.0, (gap, seen, lab.dest().get("decisions", [])[-3:])
        assert lab.current() != f"r{victim}"
        time.sleep(1.0)
    print("failover gaps (s):", gaps)
    # recovered on another path well before the end (bench/itmroute.py holds the
    # second at the 95th percentile on a quiet machine)
    assert max(gaps) <= 6.0, gaps


def test_tcp_across_a_cut_completes_intact(lab: Lab) -> None:
    keep = Keepalive(lab.ov)
    try:
        assert lab.wait_relay(SLOW), lab.dest()
        victim = int(str(lab.current())[1:])
        # forget the path MTU the frag-needed test left, so that the SYN needs clamping
        kit.sh("ip", "-n", lab.ov.a, "route", "flush", "cache")
        try:
            sent, got, err = tcp_transfer(
                lab.ov, 1_500_000, 5700, lambda: lab.ov.cut(victim), timeout=60
            )
        finally:
            lab.ov.cut(victim, on=False)
        assert err is None
        assert got == sent
        # the state file is written once a second
        assert kit.wait_until(lambda: lab.state()["counters"]["mss_clamped"] >= 1, 3)
    finally:
        keep.close()


def test_kill_9_goes_direct_within_a_second_and_a_restart_tunnels_again(lab: Lab) -> None:
    keep = Keepalive(lab.ov)
    try:
        assert lab.wait_relay(SLOW), lab.dest()
    finally:
        keep.close()
    stream = SeqStream(lab.ov, rate=100, port=5800)
    killed: list[float] = []

    def during(t: float) -> None:
        if t >= 1.0 and not killed:
            os.kill(lab.proc.pid, signal.SIGKILL)  # ip netns exec execs the daemon
            killed.append(time.monotonic())

    direct_before = kit.sh("ip", "-n", lab.ov.d, "-s", "-j", "link", "show", "dev", "a")
    try:
        stream.run(3.0, during)
    finally:
        stream.close()
    lab.proc.wait(10)
    gap = stream.largest_gap(after=killed[0] - 0.5)
    direct_after = kit.sh("ip", "-n", lab.ov.d, "-s", "-j", "link", "show", "dev", "a")
    rx = [json.loads(x)[0]["stats64"]["rx"]["packets"] for x in (direct_before, direct_after)]
    print("gap after kill -9 (s):", gap)
    # the queue fails open at once: what the gap holds beyond that is the guest's
    # own scheduling (bench/itmroute.py measures it on a quiet machine)
    assert gap <= 3.0
    assert rx[1] - rx[0] >= 100  # the stream went direct
    # what was in A's queue or in the tunnel when the daemon died is lost (libitm's
    # queue drops a dead listener's packets): a second and a half's worth at most
    assert len(stream.arrivals) >= stream.sent - 150
    lab.restart()
    keep = Keepalive(lab.ov)
    try:
        assert kit.wait_until(
            lambda: lab.state().get("counters", {}).get("tunnelled", 0) > 0, 120, 0.5
        ), lab.log()
    finally:
        keep.close()
