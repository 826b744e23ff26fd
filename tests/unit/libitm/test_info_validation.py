"""ItmInfo refuses at construction (and when set later) what would fail on every
packet: a label ending in a newline, a priority that is not an s32 int, a callback
that cannot take the parameters it is called with."""

from __future__ import annotations

import functools
from typing import Any
from unittest import mock

import pytest

import libitm
from libitm import Hook, ItmInfo, Packet
from libitm.dispatch import Dispatcher
from libitm.info import check_label
from libitm.owners import parse_comment
from tests.support.packets import tcp

PKT = tcp("10.0.0.1", "10.0.0.2", 1000, 80, b"hello")


@pytest.mark.parametrize("label", ["nl\n", "a\nb", "\nx", "ok\r", "x\n\n"])
def test_a_label_with_a_newline_is_refused(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        ItmInfo(label)
    with pytest.raises(ValueError, match="label"):
        check_label(label)
    info = ItmInfo("ok")
    with pytest.raises(ValueError, match="label"):
        info.label = label
    assert info.label == "ok"


def test_owner_comment_is_matched_whole() -> None:
    assert parse_comment("itm owner=12 start=34 label=a.b") == libitm.owners.Owner(12, 34, "a.b")
    assert parse_comment("itm owner=12 start=34 label=a\nb") is None


@pytest.mark.parametrize(
    ("priority", "error", "message"),
    [
        ("hi", TypeError, "priority must be an int"),
        (1.0, TypeError, "priority must be an int"),
        (True, TypeError, "priority must be an int"),
        (None, TypeError, "priority must be an int"),
        (2**31, ValueError, "out of range"),
        (-(2**31) - 1, ValueError, "out of range"),
    ],
)
def test_priority_is_an_s32_int(priority: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ItmInfo("p", priority=priority)  # type: ignore[arg-type]
    info = ItmInfo("p", priority=3)
    with pytest.raises(error, match=message):
        info.priority = priority  # type: ignore[assignment]
    assert info.priority == 3


def test_priority_limits_and_order() -> None:
    lo = ItmInfo("lo", priority=-(2**31), class_func=lambda where, pkt: 1)
    hi = ItmInfo("hi", priority=2**31 - 1, class_func=lambda where, pkt: 3)
    mid = ItmInfo("mid", class_func=lambda where, pkt: 2)
    mid.priority = 7
    d = Dispatcher()
    for info in (hi, mid, lo):
        d.add(Hook.IP_IN, info)
    assert d.dispatch(Hook.IP_IN, Packet(PKT)).classes == [("lo", 1), ("mid", 2), ("hi", 3)]


@pytest.mark.parametrize(
    ("name", "fn", "shapes"),
    [
        ("class_func", lambda a, b, c: 1, r"\(where, pkt\) or, without where, \(pkt\)"),
        ("class_func", lambda: 1, r"\(where, pkt\)"),
        ("class_func", lambda where, pkt, *, k: 1, r"\(where, pkt\)"),
        ("process_func", lambda p: 0, r"process_func must take the parameters \(where, cls, pkt\)"),
        ("process_func", lambda c, p: 0, r"\(where, cls, pkt\), not"),
        ("log_func", lambda a, b, c, d: 0, r"\(where, cls, pkt\) or, without where, \(cls, pkt\)"),
        ("update_func", lambda pkt: 0, "update_func"),
        ("control_func", lambda: 0, "control_func"),
    ],
)
def test_a_callback_of_the_wrong_shape_is_refused(name: str, fn: Any, shapes: str) -> None:
    with pytest.raises(TypeError, match=shapes):
        ItmInfo("cb", **{name: fn})
    info = ItmInfo("cb")
    with pytest.raises(TypeError, match=name):
        setattr(info, name, fn)
    assert getattr(info, name) is None


def _paper_cls(where: Hook, pkt: Packet) -> int:
    return 1


class _Callable:
    def __call__(self, where: Hook, cls: int, pkt: Packet) -> None:
        return None


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("class_func", _paper_cls),
        ("class_func", lambda pkt: 1),  # without where
        ("class_func", lambda where, pkt, extra=None: 1),
        ("class_func", lambda *a: 1),
        ("class_func", mock.Mock(return_value=1)),
        ("class_func", functools.partial(lambda x, where, pkt: 1, 0)),
        ("log_func", lambda where, cls, pkt: None),
        ("log_func", lambda cls, pkt: None),  # without where
        ("log_func", print),  # a builtin whose signature Python may not read
        ("log_func", max),  # no signature: accepted
        ("process_func", lambda where, cls, pkt: 1),
        ("process_func", _Callable()),
        ("update_func", lambda where, cls, pkt, **kw: None),
        ("control_func", lambda cls, pkt: None),
    ],
)
def test_callbacks_of_either_shape_are_accepted(name: str, fn: Any) -> None:
    info = ItmInfo("cb", **{name: fn})
    assert getattr(info, name) is fn


def test_application_methods_are_checked() -> None:
    class Bad(libitm.Application):
        label = "badapp"

        def process_func(self, pkt: Packet) -> None:  # type: ignore[override]
            return None

    with pytest.raises(TypeError, match="process_func"):
        Bad().to_info()
