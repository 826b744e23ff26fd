"""bench.itmroute_failover's host half: the table of each data path's cuts."""

from __future__ import annotations

from typing import Any

from bench import itmroute_failover

INF = float("inf")
DOC: dict[str, Any] = {
    "kernel": "6.12.118",
    "iterations": 3,
    "load": "0.50 0.40 0.30",
    "paths": {
        "python": {
            "gaps": [0.2, 0.25, 0.3],
            "median": 0.25,
            "p95": 0.3,
            "outage_median": 0.2,
            "outage_p95": 0.25,
        },
        "kernel": {
            "gaps": [0.2, 0.6, INF],
            "median": 0.6,
            "p95": INF,
            "outage_median": 0.5,
            "outage_p95": INF,
        },
        "wireguard": {"error": "RuntimeError: no WireGuard"},
    },
}


def test_each_data_path_is_a_row_against_the_goal() -> None:
    text = itmroute_failover.table(DOC)
    assert "| python | 0.25 | 0.30 | 0.30 | 0.20 | 0.25 | met |" in text
    assert "| kernel | 0.60 | never | never | 0.50 | never | missed |" in text
    assert "| wireguard | RuntimeError: no WireGuard |" in text
    assert "3 cuts per data path" in text and "0.50 0.40 0.30" in text
