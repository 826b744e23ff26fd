"""libitm in the paper's names and shapes (issue 17): what a reader of the paper writes works."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import libitm
from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict
from libitm.control import itm_spec
from libitm.dispatch import Dispatcher
from libitm.info import where_first
from tests.support.packets import read_pcap, tcp
from tests.support.paper_app import THRESHOLD, TIMER_JIFFIES, PaperQos, figures_tos, register
from tests.support.qos_trace import trace, write_trace

PKT = tcp("10.0.0.1", "10.0.0.2", 1000, 80, b"hello")


def test_verdicts_are_netfilters_values() -> None:
    assert (Verdict.DROP, Verdict.ACCEPT) == (0, 1)
    assert (libitm.NF_DROP, libitm.NF_ACCEPT) == (0, 1)
    assert Verdict.ACCEPT == itm_spec.ITM_VERDICT_ACCEPT
    assert Verdict.DROP == itm_spec.ITM_VERDICT_DROP


@pytest.mark.parametrize(("returned", "dropped"), [(1, False), (0, True), (None, False)])
def test_process_func_returning_netfilters_numbers(returned: int | None, dropped: bool) -> None:
    """``return NF_ACCEPT`` (1) accepts and ``return NF_DROP`` (0) drops, as in itm.h."""
    d = Dispatcher()
    info = ItmInfo("nf", class_func=lambda w, p: 1, process_func=lambda w, c, p: returned)
    d.add(Hook.IP_IN, info)
    out = d.dispatch(Hook.IP_IN, Packet(PKT))
    assert out.verdict == (Verdict.DROP if dropped else Verdict.ACCEPT)
    assert info.counters.errors == 0


def test_a_verdict_libitm_does_not_have_is_an_error_and_the_packet_passes() -> None:
    d = Dispatcher()
    info = ItmInfo("stolen", class_func=lambda w, p: 1, process_func=lambda w, c, p: 2)
    d.add(Hook.IP_IN, info)
    assert d.dispatch(Hook.IP_IN, Packet(PKT)).verdict == Verdict.ACCEPT
    assert info.counters.errors == 1
    with pytest.raises(ValueError, match="NF_ACCEPT"):
        Verdict.coerce(3)


def _record(calls: list[tuple[Any, ...]], name: str) -> Any:
    def cb(*args: Any) -> int:
        calls.append((name, *args))
        return 1

    return cb


def test_every_callback_gets_where_first() -> None:
    calls: list[tuple[Any, ...]] = []
    names = ("class_func", "log_func", "process_func", "update_func", "control_func")
    info = ItmInfo("w", **{n: _record(calls, n) for n in names})
    d = Dispatcher()
    d.add(Hook.IP_FORWARD, info)
    pkt = Packet(PKT)
    d.dispatch(Hook.IP_FORWARD, pkt)
    assert [c[0] for c in calls] == list(names)
    assert all(c[1] is Hook.IP_FORWARD for c in calls)
    assert calls[0][2:] == (pkt,)
    assert all(c[2:] == (1, pkt) for c in calls[1:])


def test_callbacks_without_where_still_work() -> None:
    """libitm's shape before issue 17: class_func(pkt), log_func(cls, pkt), ..."""
    seen: list[tuple[str, Any]] = []
    info = ItmInfo(
        "old",
        class_func=lambda pkt: 5,
        log_func=lambda cls, pkt: seen.append(("log", cls)),
        update_func=lambda cls, pkt, extra=None: seen.append(("update", cls)),
        control_func=lambda cls, pkt: seen.append(("control", cls)),
    )
    d = Dispatcher()
    d.add(Hook.IP_IN, info)
    d.dispatch(Hook.IP_IN, Packet(PKT))
    assert seen == [("log", 5), ("update", 5), ("control", 5)]
    assert info.counters.errors == 0


def test_the_shape_is_read_once_when_the_callback_is_set() -> None:
    def paper(where: Hook, pkt: Packet) -> int:
        return 1

    def old(pkt: Packet) -> int:
        return 1

    assert where_first("class_func", paper) is paper
    assert where_first("class_func", old) is not old
    # *args, or a signature that cannot be read: the paper's shape
    generic = mock.Mock(return_value=1)
    assert where_first("class_func", generic) is generic
    assert where_first("log_func", print) is print
    info = ItmInfo("late")
    info.class_func = old
    assert info.class_func is old, "the application's own callback stays visible"
    assert info.wf_class_func is not None
    assert info.wf_class_func(Hook.IP_IN, Packet(PKT)) == 1
    info.class_func = None
    assert info.wf_class_func is None


def test_application_methods_in_either_shape() -> None:
    class Paper(libitm.Application):
        label = "paperapp"

        def class_func(self, where: Hook, pkt: Packet) -> int:
            return 3

    class Old(libitm.Application):
        label = "oldapp"

        def class_func(self, pkt: Packet) -> int:
            return 4

    d = Dispatcher()
    for app in (Paper(), Old()):
        info = app.to_info()
        d.add(Hook.IP_OUT, info)
    assert [c for _, c in d.dispatch(Hook.IP_OUT, Packet(PKT)).classes] == [3, 4]


def test_a_label_assigned_later_is_checked() -> None:
    info = libitm.itm_info("qos_ctrl")
    info.label = "qos_ctrl2"
    assert info.label == "qos_ctrl2"
    with pytest.raises(ValueError, match="label"):
        info.label = "has space"
    with pytest.raises(TypeError, match="callable"):
        info.class_func = 3  # type: ignore[assignment]


def test_the_papers_names_are_libitms_functions() -> None:
    assert libitm.itm_register_hook is libitm.register_hook
    assert libitm.itm_unregister_hook is libitm.unregister_hook
    assert libitm.itm_unregister_timer is libitm.unregister_timer
    assert libitm.itm_info is ItmInfo
    assert list(Hook)[:4] == [libitm.PRE_ROUTE, libitm.IP_IN, libitm.IP_FORWARD, libitm.IP_OUT]
    assert libitm.IP_POST_ROUTE is Hook.POST_ROUTING
    assert inspect.signature(libitm.itm_register_timer).parameters.keys() >= {"fn", "timeout"}


@pytest.mark.parametrize(
    ("name", "hook"),
    [
        ("IP_POST_ROUTE", Hook.POST_ROUTING),
        ("PRE_ROUTE", Hook.PRE_ROUTING),
        ("ip-post-route", Hook.POST_ROUTING),
        ("IP_IN", Hook.IP_IN),
        ("IP_FORWARD", Hook.IP_FORWARD),
        ("IP_OUT", Hook.IP_OUT),
    ],
)
def test_the_papers_hook_names_are_accepted(name: str, hook: Hook) -> None:
    assert Hook.parse(name) is hook
    assert list(Hook) == [Hook(i) for i in range(5)], "the aliases add no hook"


def test_itm_register_timer_counts_jiffies_and_passes_data() -> None:
    got: list[object] = []
    loop = libitm.get_loop()
    try:
        h = libitm.itm_register_timer(got.append, 250, "d")
        assert h.interval == 250 / libitm.HZ == 2.5
        h.fn()
        assert got == ["d"]
        h2 = libitm.itm_register_timer(lambda: got.append("none"), 1)
        h2.fn()
        assert got == ["d", "none"]
        h3 = libitm.register_timer(got.append, jiffies=50, data=7)
        assert h3.interval == 0.5
        h3.fn()
        assert got[-1] == 7
        assert libitm.register_timer(lambda: None, 250).interval == 250.0, "seconds, as before"
        with pytest.raises(TypeError, match="not both"):
            libitm.register_timer(lambda: None, 1.0, jiffies=1)
        with pytest.raises(ValueError, match="jiffies"):
            libitm.itm_register_timer(lambda: None, 0)
    finally:
        assert libitm.get_loop() is loop
        libitm._default = None


def test_the_papers_qos_ctrl_marks_a_trace_offline_as_the_figures_say(tmp_path: Path) -> None:
    pkts = trace()
    src, out = tmp_path / "trace.pcap", tmp_path / "marked.pcap"
    write_trace(src, pkts)
    app = PaperQos()
    data, _ = register(app)
    libitm.run(backend="offline", pcap=src, out=out)
    _, frames = read_pcap(out)
    assert len(frames) == len(pkts)
    got = [Packet(bytearray(raw)).tos for _, raw in frames]
    want = [
        figures_tos(p.n, p.n == p.total and p.total > 1, p.tos, p.data[0] >> 4 == 4) for p in pkts
    ]
    assert got == want
    # the rule really bites: packets 2..22 and the FIN (60) SHORT in the 60-packet flow
    long_flow = [(p.n, t) for p, t in zip(pkts, got, strict=True) if p.flow == 4]
    assert [n for n, t in long_flow if t & 0x10] == [*range(2, THRESHOLD + 3), 60]
    assert app.where == {Hook.POST_ROUTING}
    assert data.counters.errors == 0 and data.counters.dropped == 0
    # 10 jiffies = 0.1 s of the trace's clock, fn(data) each time
    span = len(pkts) * 0.001
    assert app.ticks and set(app.ticks) == {"paper"}
    assert abs(len(app.ticks) - span / (TIMER_JIFFIES / libitm.HZ)) <= 1


def test_the_same_on_an_explicit_loop(tmp_path: Path) -> None:
    """ItmLoop.register_hook accepts the paper's hook name too."""
    pkts = trace()
    src, out = tmp_path / "trace.pcap", tmp_path / "marked.pcap"
    write_trace(src, pkts)
    app = PaperQos()
    loop = ItmLoop("offline", pcap=src, out=out)
    loop.register_hook(
        "IP_POST_ROUTE",
        ItmInfo(
            "p2",
            Interest(family=4, protocol="tcp"),
            class_func=app.qos_class,
            log_func=app.qos_log,
            process_func=app.qos_process,
            needs_payload=True,
        ),
    )
    loop.run()
    assert app.where == {Hook.POST_ROUTING}


@pytest.mark.parametrize(
    ("name", "key"),
    [("IP_POST_ROUTE", "post"), ("PRE_ROUTE", "pre"), ("IP_IN", "in"), ("ip_forward", "fwd")],
)
def test_itmtool_new_accepts_the_papers_hook_names(name: str, key: str) -> None:
    from itmtool.new import hook_key

    assert hook_key(name) == key
