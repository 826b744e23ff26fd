"""Callback order, the class-0 rule, verdicts and robustness (no backend needed)."""

from __future__ import annotations

import logging

import pytest

from libitm import Application, Hook, Interest, ItmInfo, Packet, Verdict
from libitm.dispatch import Dispatcher
from tests.support.packets import tcp, udp, verify


def recorder(events: list[str], cls: int = 1, verdict: Verdict | None = None) -> ItmInfo:
    def class_func(pkt: Packet) -> int:
        events.append("class")
        return cls

    def log_func(c: int, pkt: Packet) -> None:
        events.append(f"log{c}")

    def process_func(where: Hook, c: int, pkt: Packet) -> Verdict | None:
        events.append(f"process{c}@{where.name}")
        return verdict

    def update_func(c: int, pkt: Packet) -> None:
        events.append(f"update{c}")

    def control_func(c: int, pkt: Packet) -> None:
        events.append(f"control{c}")

    return ItmInfo(
        "rec",
        Interest(protocol="tcp"),
        class_func,
        log_func,
        process_func,
        update_func,
        control_func,
    )


PKT = tcp("10.0.0.1", "10.0.0.2", 1000, 80, b"hello")


def test_callbacks_in_paper_order() -> None:
    ev: list[str] = []
    d = Dispatcher()
    d.add(Hook.IP_OUT, recorder(ev, cls=3))
    out = d.dispatch(Hook.IP_OUT, Packet(PKT))
    assert ev == ["class", "log3", "process3@IP_OUT", "update3", "control3"]
    assert out.verdict == Verdict.ACCEPT and not out.modified and out.classes == [("rec", 3)]


def test_class_zero_skips_process_only() -> None:
    ev: list[str] = []
    d = Dispatcher()
    info = recorder(ev, cls=0, verdict=Verdict.DROP)
    d.add(Hook.IP_IN, info)
    out = d.dispatch(Hook.IP_IN, Packet(PKT))
    assert ev == ["class", "log0", "update0", "control0"]
    assert out.verdict == Verdict.ACCEPT
    assert info.counters.classified == 0 and info.counters.packets == 1


def test_none_callbacks_and_default_class() -> None:
    """No class_func means class 0 (as in itm_mod): process_func is not called."""
    d = Dispatcher()
    seen: list[int] = []
    logged: list[int] = []
    d.add(
        Hook.IP_IN,
        ItmInfo(
            "a", log_func=lambda c, p: logged.append(c), process_func=lambda w, c, p: seen.append(c)
        ),
    )
    d.add(Hook.IP_IN, ItmInfo("b"))
    out = d.dispatch(Hook.IP_IN, Packet(PKT))
    assert out.verdict == Verdict.ACCEPT and out.classes == [("a", 0), ("b", 0)]
    assert seen == [] and logged == [0]


def test_interest_filters_and_other_hooks_ignored() -> None:
    ev: list[str] = []
    d = Dispatcher()
    d.add(Hook.IP_IN, recorder(ev))
    d.dispatch(Hook.IP_IN, Packet(udp("10.0.0.1", "10.0.0.2", 1, 2)))
    d.dispatch(Hook.IP_OUT, Packet(PKT))
    assert ev == []


def test_drop_stops_later_apps_and_priority_order() -> None:
    order: list[str] = []

    def app(label: str, prio: int, verdict: Verdict) -> ItmInfo:
        def pf(w: Hook, c: int, p: Packet) -> Verdict:
            order.append(label)
            return verdict

        return ItmInfo(label, class_func=lambda p: 1, process_func=pf, priority=prio)

    d = Dispatcher()
    d.add(Hook.POST_ROUTING, app("late", 10, Verdict.ACCEPT))
    d.add(Hook.POST_ROUTING, app("first", -5, Verdict.ACCEPT))
    d.add(Hook.POST_ROUTING, app("dropper", 0, Verdict.DROP))
    d.add(Hook.POST_ROUTING, app("tie", 0, Verdict.ACCEPT))
    out = d.dispatch(Hook.POST_ROUTING, Packet(PKT))
    assert out.verdict == Verdict.DROP
    assert order == ["first", "dropper"]


def test_modification_is_reported_and_checksums_hold() -> None:
    d = Dispatcher()

    def pf(w: Hook, c: int, p: Packet) -> None:
        p.tos = 0x10

    info = ItmInfo("mod", class_func=lambda p: 1, process_func=pf)
    d.add(Hook.IP_OUT, info)
    pkt = Packet(PKT)
    out = d.dispatch(Hook.IP_OUT, pkt)
    assert out.modified and pkt.tos == 0x10 and verify(pkt.raw)
    assert info.counters.modified == 1


@pytest.mark.parametrize(
    "stage", ["class_func", "log_func", "process_func", "update_func", "control_func"]
)
def test_exception_accepts_unchanged(stage: str, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def boom(*args: object) -> int:
        raise RuntimeError("kaboom")

    def modify(*args: object) -> int:
        pkt = args[-1]
        assert isinstance(pkt, Packet)
        pkt.ttl = 1
        calls.append("x")
        return 1

    kw: dict[str, object] = {
        n: modify for n in ("class_func", "log_func", "process_func", "update_func", "control_func")
    }
    kw[stage] = boom
    info = ItmInfo("fragile", **kw)  # type: ignore[arg-type]
    d = Dispatcher()
    d.add(Hook.IP_IN, info)
    pkt = Packet(PKT)
    with caplog.at_level(logging.ERROR, logger="libitm"):
        out = d.dispatch(Hook.IP_IN, pkt)
        out2 = d.dispatch(Hook.IP_IN, Packet(PKT))
    assert out.verdict == Verdict.ACCEPT and not out.modified
    assert out2.verdict == Verdict.ACCEPT
    assert pkt.raw == PKT
    assert info.counters.errors == 2
    assert "fragile" in caplog.text and stage in caplog.text


def test_strict_reraises() -> None:
    def boom(p: Packet) -> int:
        raise RuntimeError("strict")

    d = Dispatcher(strict=True)
    d.add(Hook.IP_IN, ItmInfo("s", class_func=boom))
    with pytest.raises(RuntimeError, match="strict"):
        d.dispatch(Hook.IP_IN, Packet(PKT))


def test_bad_return_values_are_errors() -> None:
    d = Dispatcher()
    info = ItmInfo("bad", class_func=lambda p: "x", process_func=lambda w, c, p: True)
    d.add(Hook.IP_IN, info)
    assert d.dispatch(Hook.IP_IN, Packet(PKT)).verdict == Verdict.ACCEPT
    assert info.counters.errors == 1


def test_malformed_packet_is_accepted() -> None:
    d = Dispatcher()
    d.add(
        Hook.IP_IN, ItmInfo("m", class_func=lambda p: 1, process_func=lambda w, c, p: Verdict.DROP)
    )
    assert d.dispatch(Hook.IP_IN, Packet(b"\x45\x00garbage")).verdict == Verdict.ACCEPT
    assert d.malformed == 1


def test_application_class_form() -> None:
    class Dropper(Application):
        label = "dropper"
        interest = Interest(protocol="tcp")
        hook = Hook.IP_IN

        def class_func(self, pkt: Packet) -> int:
            return 2 if pkt.dport == 80 else 0

        def process_func(self, where: Hook, cls: int, pkt: Packet) -> Verdict:
            return Verdict.DROP

    info = Dropper().to_info()
    assert info.log_func is None and info.class_func is not None
    d = Dispatcher()
    d.add(Hook.IP_IN, info)
    assert d.dispatch(Hook.IP_IN, Packet(PKT)).verdict == Verdict.DROP
    other = tcp("10.0.0.1", "10.0.0.2", 1000, 81)
    assert d.dispatch(Hook.IP_IN, Packet(other)).verdict == Verdict.ACCEPT
