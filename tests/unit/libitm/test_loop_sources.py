"""The loop: extra readers, a loop without applications, a recorded source's outputs."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet
from libitm.backends.base import Backend, LoopHost
from tests.support.packets import udp, write_pcap


class PairBackend(Backend):
    """A live backend over a socket pair: a byte written to ``peer`` is a wakeup."""

    name = "pair"

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.started = self.closed = False
        self.wakeups = 0

    def start(self, loop: LoopHost) -> None:
        self.started = True

    def install(self, where: Hook, info: ItmInfo) -> None:
        """Nothing to install."""

    def uninstall(self, info: ItmInfo) -> None:
        """Nothing to remove."""

    def fileno(self) -> int:
        return self.sock.fileno()

    def process(self) -> int:
        with contextlib.suppress(BlockingIOError):  # nothing waits: return at once
            self.wakeups += len(self.sock.recv(64))
        return 0

    def now(self) -> float:
        import time

        return time.monotonic()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        self.peer.close()


def test_a_reader_is_called_when_its_socket_is_readable_and_can_stop_the_loop() -> None:
    be = PairBackend()
    loop = ItmLoop(be)
    loop.register_hook("ip_in", ItmInfo("app"))
    a, b = socket.socketpair()
    got: list[bytes] = []

    def on_read() -> None:
        got.append(a.recv(64))
        loop.stop()

    with a, b:
        loop.add_reader(a.fileno(), on_read)
        b.send(b"hello")
        be.peer.send(b"x")
        loop.run(duration=5)
    assert got == [b"hello"]
    assert be.started and be.closed


def test_a_loop_without_applications_runs_timers_and_readers_without_its_backend() -> None:
    be = PairBackend()
    loop = ItmLoop(be)
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            loop.stop()

    loop.register_timer(tick, 0.01)
    loop.run(duration=5)
    assert len(ticks) == 3
    assert not be.started and not be.closed  # never opened, nothing to close


def test_removing_a_reader_stops_its_calls() -> None:
    loop = ItmLoop(PairBackend())
    a, b = socket.socketpair()
    with a, b:
        loop.add_reader(a.fileno(), lambda: pytest.fail("removed reader called"))
        loop.remove_reader(a.fileno())
        b.send(b"x")
        loop.run(duration=0.05)
    with pytest.raises(ValueError):
        loop.add_reader(-1, lambda: None)


def _trace(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "in.pcap"
    write_pcap(p, [(1000.0 + i, udp("10.0.0.1", "10.0.0.2", 1, 7000, b"a")) for i in range(n)])
    return p


def test_an_offline_run_that_fails_midway_leaves_no_output(tmp_path: Path) -> None:
    seen: list[int] = []

    def class_func(pkt: Packet) -> int:
        seen.append(1)
        if len(seen) == 300:  # in the second batch of frames
            raise KeyError("boom")
        return 0

    out, log = tmp_path / "out.pcap", tmp_path / "verdicts.log"
    loop = ItmLoop("offline", strict=True, pcap=_trace(tmp_path, 400), out=out, log=log)
    loop.register_hook("ip_in", ItmInfo("boom", Interest(), class_func=class_func))
    with pytest.raises(KeyError):
        loop.run()
    assert not out.exists() and not log.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "in.pcap"]  # no temporary left


def test_an_offline_run_in_batches_writes_every_frame(tmp_path: Path) -> None:
    out, log = tmp_path / "out.pcap", tmp_path / "verdicts.log"
    loop = ItmLoop("offline", pcap=_trace(tmp_path, 600), out=out, log=log)
    loop.register_hook("ip_in", ItmInfo("count", Interest()))
    loop.run()
    assert len(log.read_text().splitlines()) == 600
    assert loop.counters()["backend"]["packets"] == 600


def test_what_waits_when_the_loop_is_stopped_is_still_handled() -> None:
    """A stop that lands between two reads loses nothing already delivered."""
    be = PairBackend()
    loop = ItmLoop(be)
    loop.register_hook("ip_in", ItmInfo("app"))

    def stop_then_deliver() -> None:
        loop.stop()
        be.peer.send(b"xyz")  # arrives after the stop, before run() returns

    loop.register_timer(stop_then_deliver, 0.01)
    loop.run(duration=5)
    assert be.wakeups == 3
