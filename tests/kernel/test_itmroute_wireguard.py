"""itmroute with ``datapath: wireguard``: the kernel's own WireGuard carries the
packets, none of our modules is loaded, the daemons probe, choose and steer.

::

                 +---- R1 ----+           R1: 40 ms round trip (the best)
     [A] --------+            +-------- [D]
      |          +---- R2 ----+           R2: 80 ms
      +------------- direct -------------+    160 ms

A stream of 100 datagrams a second from A to D goes through WireGuard, end to
end, by way of the relay the daemons chose (which forwards the outer
datagrams: NAT on a port of its own for D); the relay in use is cut and the
daemons move the stream to another path. A forger on R1's link delivers
nothing. ``kill -9`` of A's daemon takes its steering with it: the stream goes
plain and direct at once, and a restart tunnels again. The stopped daemons
leave no device, rule, route or table behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from itmlab import netns, run
from itmroute import wgkeys
from itmroute.lab import (
    A_OVERLAY,
    A_OVERLAY6,
    D_OVERLAY,
    D_OVERLAY6,
    Overlay,
    SeqStream,
    load_stock_modules,
    load_wireguard_modules,
    overlay,
    stream_across_cut,
)
from itmroute.wgpath import DEVICE, RULE_PRIORITY, TABLE
from tests.kernel import kit

RELAYS = ("r1", "r2")


def _current(ov: Overlay, node: str = "a") -> str | None:
    dests = ov.router(node).snapshot()["destinations"]
    return str(dests[0].get("current")) if dests else None


def _wg(ov: Overlay, node: str = "a") -> dict[str, Any]:
    return dict(ov.router(node).snapshot()["wireguard"])


def _left_behind(ns: str) -> list[str]:
    """What of the WireGuard data path is still in namespace ``ns``."""
    left = []
    if run("ip", "-n", ns, "link", "show", DEVICE, check=False).returncode == 0:
        left.append(f"device {DEVICE}")
    rules = run("ip", "-n", ns, "rule", "show").stdout
    if f"{RULE_PRIORITY}:" in rules:
        left.append("rule")
    if _has_table(ns):
        left.append(f"table inet {TABLE}")
    return left


def _children(pid: int, comm: str) -> list[int]:
    """The pids of process ``pid``'s children named ``comm``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == pid and name == comm:
            out.append(int(stat.parent.name))
    return out


def _where_it_waits(pid: int, log: Path) -> str:
    """For a daemon that did not start in time: its log, where its threads wait in
    the kernel, and the kernel's last messages (a slow device teardown shows there)."""
    parts = [log.read_text()]
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        with contextlib.suppress(OSError):
            parts.append(f"task {task.name}: {(task / 'wchan').read_text()}")
            parts.append((task / "stack").read_text())
    dmesg = run("dmesg", check=False).stdout.splitlines()
    return "\n".join([*parts, "dmesg:", *dmesg[-15:]])


def _started(proc: subprocess.Popen[bytes], state: Path, log: Path) -> str | None:
    """Wait for the daemon ``proc`` to write its first state; None once it has,
    else why not (it exited, or where it waits).  The bound is test_itmroute.py's:
    a Python daemon's imports alone take 20-60 s in a loaded TCG guest, and CI once
    saw a first start take more than 60 s with nothing logged yet."""
    if kit.wait_until(lambda: state.exists() or proc.poll() is not None, timeout=300.0):
        if state.exists():
            return None
        return f"exited with {proc.returncode}:\n{log.read_text()}"
    return _where_it_waits(proc.pid, log)


def _has_table(ns: str) -> bool:
    """Whether the steering table is in namespace ``ns``."""
    tables = run("ip", "netns", "exec", ns, "nft", "list", "tables").stdout
    return f"table inet {TABLE}" in tables.splitlines()


def _stream(ov: Overlay, seconds: float, port: int) -> SeqStream:
    s = SeqStream(ov, rate=100, port=port)
    try:
        s.run(seconds)
    finally:
        s.close()
    return s


def _datagrams(ov: Overlay, src: str, dst: str, family: int, n: int = 50) -> int:
    """How many of ``n`` datagrams from ``src`` in A reach ``dst`` in D."""
    with netns(ov.d):
        rx = socket.socket(family, socket.SOCK_DGRAM)
        rx.bind((dst, 5730))
    with netns(ov.a):
        tx = socket.socket(family, socket.SOCK_DGRAM)
        tx.bind((src, 0))
    rx.settimeout(1.0)
    got = 0
    with rx, tx:
        for _ in range(n):
            tx.sendto(b"w" * 100, (dst, 5730))
            time.sleep(0.01)
        with contextlib.suppress(TimeoutError):
            while got < n:
                rx.recv(2048)
                got += 1
    return got


def test_an_overlay_of_ipv6_itms_carries_ipv4_and_ipv6() -> None:
    """ITMs that talk IPv6 to each other: WireGuard's endpoints and the relay's
    forwarding are IPv6, and both families ride inside (IPv4 too, though the
    device has no IPv4 overlay address)."""
    load_stock_modules()
    load_wireguard_modules()
    with overlay("itm6", 1, ipv6=True, outer=6, datapath="wireguard") as ov:
        ov.set_paths({0: (160, 0, 0), 1: (40, 0, 0)})
        ov.start_threads(["d", "r1", "a"])
        got: dict[str, int] = {}

        def carried() -> bool:
            got["v6"] = _datagrams(ov, A_OVERLAY6, D_OVERLAY6, socket.AF_INET6)
            got["v4"] = _datagrams(ov, A_OVERLAY, D_OVERLAY, socket.AF_INET)
            return _current(ov) == "r1" and got["v6"] >= 45 and got["v4"] >= 45

        assert kit.wait_until(carried, timeout=60.0, step=0.5), (got, _wg(ov))
        peer = _wg(ov)["peers"]["fd77:200::1"]
        assert peer["endpoint"].startswith("fd77:a1::2:"), peer  # through R1
        assert "fd77:200::1" in _wg(ov, "r1")["forwarding"].values()
        ov.stop_daemons()
        for ns in (ov.a, ov.d, *ov.relays):
            assert _left_behind(ns) == [], ns


def test_wireguard_carries_the_stream_through_the_chosen_relay_and_fails_over() -> None:
    """The daemons choose a relay; WireGuard carries the stream through it; a cut
    moves it; a forger delivers nothing; stopped daemons leave nothing."""
    load_stock_modules()
    load_wireguard_modules()
    with overlay("itmw", 2, datapath="wireguard") as ov:
        ov.set_paths({0: (160, 0, 0), 1: (40, 0, 0), 2: (80, 0, 0)})
        ov.start_threads(["d", "r1", "r2", "a"])
        a = ov.router("a")
        assert a.snapshot()["datapath"] == "wireguard"
        _stream(ov, 6.0, 5700)
        if _current(ov) not in RELAYS:
            _stream(ov, 14.0, 5702)  # a loaded emulator's noise: more rounds
        seen: dict[str, Any] = {}
        d_port = wgkeys.forward_port(ov.router("a").cfg.wg_port, socket.inet_aton(D_OVERLAY))

        def through_relay() -> bool:
            relay = _current(ov)
            peer = _wg(ov)["peers"][D_OVERLAY]
            seen.update(relay=relay, peer=peer)
            if relay not in RELAYS:
                return False
            index = int(relay.removeprefix("r"))
            return bool(peer["endpoint"] == f"10.77.{index}.2:{d_port}")

        assert kit.wait_until(through_relay, timeout=10.0, step=0.5), seen
        relay = str(seen["relay"])
        index = int(relay.removeprefix("r"))
        before = _wg(ov)["peers"][D_OVERLAY]["tx_bytes"]
        s = _stream(ov, 3.0, 5703)
        assert len(s.arrivals) >= 0.8 * s.sent, s.summary()
        assert _wg(ov)["peers"][D_OVERLAY]["tx_bytes"] > before + 200 * 60
        assert _wg(ov, relay)["forwarding"][str(d_port)] == D_OVERLAY
        # the relay in use cut: the daemons leave it, WireGuard follows the endpoint
        _, gap, seen_cut = stream_across_cut(ov, index, 5701)
        print("wireguard data path, failover gap (s):", gap, seen_cut)
        assert gap <= 6.0, (gap, seen_cut, a.snapshot())
        assert _current(ov) != relay
        # a forger on R1's link: datagrams to D's forwarding port and probes of it
        # reach D's WireGuard port, which takes none of them
        ov.cut(index, False)
        intruder = ov.add_intruder()
        try:
            with netns(ov.d):
                rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rx.bind((D_OVERLAY, 5710))
            rx.settimeout(0.5)
            with netns(intruder):
                tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with rx, tx:
                for i in range(200):
                    # a WireGuard data message with a made-up receiver and counter
                    fake = b"\x04\x00\x00\x00" + os.urandom(4) + i.to_bytes(8, "little")
                    tx.sendto(fake + os.urandom(64), ("10.77.50.2", d_port))
                    tx.sendto(b"\x01\x00\x00\x00" + os.urandom(144), ("10.77.50.2", d_port))
                try:
                    got = rx.recv(2048)
                except TimeoutError:
                    got = b""
            assert got == b"", got
        finally:
            run("ip", "netns", "del", intruder, check=False)
        ov.stop_daemons()
        for ns in (ov.a, ov.d, *ov.relays):
            assert _left_behind(ns) == [], ns


def test_kill_9_goes_plain_and_a_restart_tunnels_again(tmp_path: Path) -> None:
    """The steering table dies with the daemon: the stream goes direct, not into
    a tunnel nobody steers; a restart clears the rest and tunnels again."""
    load_stock_modules()
    load_wireguard_modules()
    with overlay("itmk", 1, datapath="wireguard") as ov:
        ov.set_paths({0: (160, 0, 0), 1: (40, 0, 0)})
        ov.start_threads(["d", "r1"])
        proc, state = ov.start_process("a", tmp_path)
        try:
            why = _started(proc, state, tmp_path / "a.log")
            assert why is None, why
            _stream(ov, 6.0, 5720)
            assert _has_table(ov.a)
            # its nft killed under it: the daemon makes the table again
            nft = _children(proc.pid, "nft")
            assert len(nft) == 1, nft
            os.kill(nft[0], signal.SIGKILL)
            assert kit.wait_until(
                lambda: "making it again" in (tmp_path / "a.log").read_text() and _has_table(ov.a),
                timeout=10.0,
            ), (tmp_path / "a.log").read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # the table went with nft -i, whose stdin was the daemon's
            assert kit.wait_until(lambda: not _has_table(ov.a), timeout=10.0)
            s = _stream(ov, 3.0, 5721)  # plain, on the direct path
            assert len(s.arrivals) >= 0.8 * s.sent, s.summary()
            proc, state = ov.start_process("a", tmp_path)
            # the restart removes the killed daemon's WireGuard device first; once, with
            # two emulated guests on the machine's two cores, it did not start in 60 s
            why = _started(proc, state, tmp_path / "a.log")
            assert why is None, why
            log = (tmp_path / "a.log").read_text()
            assert f"removing {DEVICE}, left by an earlier itmroute daemon" in log, log
            s = _stream(ov, 4.0, 5722)
            assert len(s.arrivals) >= 0.5 * s.sent, s.summary()
            wg_show = run("ip", "netns", "exec", ov.a, "ip", "-s", "link", "show", DEVICE).stdout
            assert "TX:" in wg_show
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            assert _left_behind(ov.a) == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            ov.stop_daemons()
