"""bench.libitm_queue's bookkeeping: ratios per repeat and the user/kernel split."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench import libitm_queue as lq


def _drain(pps: float, cpu_pps: float, user_us: float, system_us: float) -> dict[str, Any]:
    return {
        "pps": pps,
        "cpu_pps": cpu_pps,
        "user_us": user_us,
        "system_us": system_us,
        "queue_dropped": 0,
        "user_dropped": 0,
        "sock_drops": 0,
    }


def test_split_and_ratios_in_the_table() -> None:
    res = lq.Results(meta={})
    res.drain["libitm, accept"] = [_drain(150e3, 150e3, 2.8, 4.0), _drain(140e3, 140e3, 3.0, 4.2)]
    res.drain["netfilterqueue, accept"] = [
        _drain(100e3, 100e3, 1.0, 8.2),
        _drain(110e3, 110e3, 1.0, 8.6),
    ]
    rows = lq.summarize(res)
    la = rows["libitm, accept"]
    assert la["user_us_per_packet"] == pytest.approx(2.9)
    assert la["system_us_per_packet"] == pytest.approx(4.1)
    # ratios are taken per repeat, against netfilterqueue of the same repeat
    assert la["cpu_ratio_min"] == pytest.approx(140 / 110)
    assert la["cpu_ratio_max"] == pytest.approx(1.5)
    text = lq.table(rows)
    assert "| CPU µs/packet (user + kernel) |" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| libitm, accept |"))
    assert "6.9 (2.9 + 4.1)" in line  # 1e6 / median(cpu_pps)=145e3, split medians
    nfq = next(ln for ln in text.splitlines() if ln.startswith("| netfilterqueue, accept |"))
    assert "(1.0 + 8.4)" in nfq


def test_user_system_of_this_process() -> None:
    user, system = lq.user_system_s(os.getpid())
    assert user > 0 and system >= 0
    assert lq.user_system_s(2**22 + 12345) == (0.0, 0.0), "a process that is gone"
