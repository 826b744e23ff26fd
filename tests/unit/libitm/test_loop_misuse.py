"""ItmLoop used wrongly: each mistake is a clear error at the call that made it,
and none loses a packet or leaves a registration half made (found by a sweep of
the API: run() from a callback black-holed every packet on nfqueue)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import libitm
from libitm import Application, BackendUnavailable, Hook, ItmInfo, ItmLoop, Packet, Verdict
from libitm.backends.base import Backend, LoopHost
from libitm.backends.nfqueue import NfqueueBackend
from tests.support.packets import read_pcap, udp, write_pcap


def _trace(tmp_path: Path, n: int = 5) -> Path:
    p = tmp_path / "in.pcap"
    write_pcap(p, [(1000.0 + i, udp("10.0.0.1", "10.0.0.2", 1, 7000 + i, b"x")) for i in range(n)])
    return p


def test_run_from_a_callback_is_refused_and_the_packets_go_on(tmp_path: Path) -> None:
    src, out = _trace(tmp_path), tmp_path / "out.pcap"
    loop = ItmLoop("offline", pcap=src, out=out)
    raised: list[BaseException] = []

    def class_func(pkt: Packet) -> int:
        try:
            loop.run(duration=0.5)
        except RuntimeError as e:
            raised.append(e)
            raise
        return 1

    info = loop.register_hook("ip_in", ItmInfo("reentrant", class_func=class_func))
    loop.run()
    assert len(raised) == 5 and "cannot run inside itself" in str(raised[0])
    assert info.counters.errors == 5  # each a callback error: the packet accepted
    assert len(read_pcap(out)[1]) == 5  # the whole trace written, nothing lost


def test_close_from_a_callback_stops_the_run_instead(tmp_path: Path) -> None:
    src, out = _trace(tmp_path), tmp_path / "out.pcap"
    loop = ItmLoop("offline", pcap=src, out=out)

    def class_func(pkt: Packet) -> int:
        loop.close()
        return 1

    loop.register_hook("ip_in", ItmInfo("closer", class_func=class_func))
    loop.run()
    assert loop.closed and loop.stopping


def test_a_failed_registration_leaves_nothing(tmp_path: Path) -> None:
    class BadTimer(Application):
        label = "bad_timer"
        hook = Hook.IP_IN

        def timers(self) -> list[tuple[object, float]]:  # type: ignore[override]
            return [(lambda: None, 1.0), (lambda: None, 0.0)]

    loop = ItmLoop("offline", pcap=_trace(tmp_path))
    with pytest.raises(ValueError):
        loop.register_app(BadTimer())
    assert loop.applications == [] and loop.timers.next_deadline() is None
    # the label is free again, the loop works
    loop.register_hook("ip_in", ItmInfo("bad_timer"))
    loop.run()


def test_one_itminfo_belongs_to_one_loop_at_a_time(tmp_path: Path) -> None:
    src = _trace(tmp_path)
    info = ItmInfo("shared")
    first = ItmLoop("offline", pcap=src)
    first.register_hook("ip_in", info)
    second = ItmLoop("offline", pcap=src)
    with pytest.raises(ValueError, match="registered in another ItmLoop"):
        second.register_hook("ip_out", info)
    assert info.hook is Hook.IP_IN  # the first loop's registration is untouched
    first.unregister_hook(info)
    second.register_hook("ip_out", info)  # free once unregistered
    second.run()
    third = ItmLoop("offline", pcap=src)
    third.register_hook("ip_in", info)  # and once its loop ran and closed


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"queue_maxlen": 0}, ValueError, "queue_maxlen must be in 1.."),
        ({"queue_maxlen": -5}, ValueError, "queue_maxlen"),
        ({"workers": "2"}, TypeError, "workers must be an int"),
        ({"workers": True}, TypeError, "workers must be an int"),
        ({"queue_base": 70000}, ValueError, "queue_base must be in 0..65535"),
        ({"copy_range": 10}, ValueError, "copy_range"),
    ],
)
def test_nfqueue_options_are_checked_when_given(
    options: dict[str, object], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        NfqueueBackend(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("duration", [math.nan, math.inf, 0, -1, "1", True])
def test_a_bad_duration_is_refused_before_anything_starts(tmp_path: Path, duration: object) -> None:
    loop = ItmLoop("offline", pcap=_trace(tmp_path))
    loop.register_hook("ip_in", ItmInfo("x"))
    with pytest.raises(ValueError, match="duration must be a finite number"):
        loop.run(duration=duration)  # type: ignore[arg-type]
    assert not loop.closed
    loop.run()  # nothing was started: the loop runs as it would have


@pytest.mark.parametrize("name", ["Offline", "nfq", ""])
def test_a_misspelled_backend_is_refused_at_once(name: str) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        ItmLoop(name)
    loop = ItmLoop("offline", pcap="in.pcap")
    with pytest.raises(ValueError, match="unknown backend"):
        loop.set_backend(name)
    with pytest.raises(ValueError, match="unknown backend"):
        libitm.run(backend=name)


def test_a_loop_runs_once(tmp_path: Path) -> None:
    loop = ItmLoop("offline", pcap=_trace(tmp_path))
    loop.register_hook("ip_in", ItmInfo("x"))
    loop.run()
    with pytest.raises(RuntimeError, match="closed; build a new ItmLoop"):
        loop.run()


class _Unavailable(Backend):
    """A live backend that cannot start here (as the kernel one without itm_queue)."""

    live = True

    def start(self, loop: LoopHost) -> None:
        raise BackendUnavailable("not here")

    def install(self, where: Hook, info: ItmInfo) -> None:
        raise AssertionError("never started")

    def uninstall(self, info: ItmInfo) -> None:
        raise AssertionError("never started")

    def fileno(self) -> int:
        return -1

    def process(self) -> int:
        return 0

    def now(self) -> float:
        return 0.0

    def close(self) -> None:
        raise AssertionError("never started")


def test_a_backend_that_cannot_start_keeps_the_registrations(tmp_path: Path) -> None:
    """libitm.run(backend="kernel") failing (no itm_queue) left the default loop
    discarded: the next run(backend="offline") ran no application."""
    seen: list[int] = []

    def class_func(pkt: Packet) -> int:
        seen.append(1)
        return 0

    kept = libitm.register_hook("ip_in", ItmInfo("kept", class_func=class_func))
    with pytest.raises(BackendUnavailable):
        libitm.run(backend=_Unavailable())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="registered in another ItmLoop"):
        ItmLoop("offline", pcap=_trace(tmp_path)).register_hook("ip_in", kept)  # still owned
    libitm.run(backend="offline", pcap=_trace(tmp_path))
    assert len(seen) == 5


def test_unregistering_something_else_is_a_type_error() -> None:
    loop = ItmLoop("offline", pcap="in.pcap")
    with pytest.raises(TypeError, match="unregister_hook needs the ItmInfo"):
        loop.unregister_hook("x")  # type: ignore[arg-type]


def test_verdicts_still_apply_after_the_checks(tmp_path: Path) -> None:
    """The checks above change no verdict: a dropping application still drops."""
    src, out = _trace(tmp_path), tmp_path / "out.pcap"
    loop = ItmLoop("offline", pcap=src, out=out)
    loop.register_hook(
        "ip_in",
        ItmInfo(
            "dropper",
            class_func=lambda pkt: 1 if pkt.dport == 7002 else 0,
            process_func=lambda where, cls, pkt: Verdict.DROP,
        ),
    )
    loop.run()
    assert len(read_pcap(out)[1]) == 4


def test_an_observer_s_changes_are_undone_offline_as_live(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Live backends give an application without a process_func copies: its changes
    reach nothing. Offline they used to reach the result (tos 0x10 written)."""
    src, out = _trace(tmp_path), tmp_path / "out.pcap"
    loop = ItmLoop("offline", pcap=src, out=out)

    def class_func(pkt: Packet) -> int:
        pkt.tos = 0x10
        return 1

    info = loop.register_hook("ip_in", ItmInfo("watcher", class_func=class_func))
    loop.run()
    assert [frame[1] for _, frame in read_pcap(out)[1]] == [0] * 5
    assert info.counters.modified == 0
    assert caplog.text.count("its changes to packets are undone") == 1
