"""bench.libitm_stream's and bench.libitm_observer's bookkeeping: ratios and added
latency taken per repeat against the anchor of the same repeat, the tables."""

from __future__ import annotations

from typing import Any

import pytest

from bench import libitm_observer as lo
from bench import libitm_stream as ls


def test_stream_ratios_are_per_repeat_and_cpu_per_packet() -> None:
    samples: dict[str, list[dict[str, Any]]] = {
        "no queue": [{"mbps": 10000.0}, {"mbps": 20000.0}],
        "libitm, gso": [
            {"mbps": 5000.0, "packets": 1000, "modified": 1000, "cpu_s": 0.1, "user_s": 0.08},
            {"mbps": 5000.0, "packets": 2000, "modified": 2000, "cpu_s": 0.3, "user_s": 0.2},
        ],
    }
    rows = {r["case"]: r for r in ls.summarize(samples)}
    gso = rows["libitm, gso"]
    # 50% of the first repeat's path, 25% of the second's: not 5000 / 15000
    assert gso["ratio_range"] == pytest.approx((0.25, 0.5))
    assert gso["ratio"] == pytest.approx(0.375)
    assert gso["cpu_us"] == pytest.approx(125.0)  # median of 100 and 150 µs a packet
    assert rows["no queue"]["cpu_us"] == 0.0
    text = ls.table(ls.summarize(samples))
    assert "| libitm, gso | 5000 (5000-5000) | 38% (25%-50%) | 1500 | 1500 |" in text
    assert text.splitlines()[1] == "|---|" + "---:|" * 5


def test_observer_added_latency_is_against_no_app_of_the_same_repeat() -> None:
    def run(ms: float, **extra: Any) -> dict[str, Any]:
        return {"rtts": [ms] * 9 + [ms * 2], "load_mbps": 1000.0, **extra}

    samples = {
        "no app": [run(0.10), run(0.20)],
        "observer": [run(0.11, observer_copies=500), run(0.21, observer_copies=700)],
        "decider": [run(1.0, packets=900), run(2.0, packets=1100)],
    }
    rows = {r["case"]: r for r in lo.summarize(samples, 12)}
    obs = rows["observer"]
    assert obs["added_ms"] == pytest.approx(0.01)
    assert obs["share_range"] == pytest.approx((0.05, 0.1))
    assert obs["lost"] == 4  # 2 pings of 12 missing in each repeat
    assert obs["copies"] == 600 and rows["decider"]["queued"] == 1000
    assert rows["no app"]["share"] == 0.0
    assert "| observer | 0.160 (0.110-0.210) |" in lo.table(list(rows.values()))


def test_the_observer_app_refuses_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert lo.main(["app", "spy"]) == 2
    assert "observer|nflog|batched|decider" in capsys.readouterr().err
