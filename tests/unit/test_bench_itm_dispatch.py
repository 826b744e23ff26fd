"""bench/itm_dispatch.py's table."""

from __future__ import annotations

from bench import itm_dispatch


def _doc(fastest: dict[str, float] | None) -> dict[str, object]:
    median = dict.fromkeys(itm_dispatch.CONFIGS, 50.0)
    median["floor"], median["bare nf hook"] = 2.0, 12.0
    doc: dict[str, object] = {
        "kernel": "6.12.118",
        "iterations": 100_000,
        "repeats": 30,
        "ns_per_packet": median,
    }
    if fastest is not None:
        doc["fastest"] = fastest
    return doc


def test_ratios_come_from_the_fastest_round_with_the_median_beside() -> None:
    fastest = dict.fromkeys(itm_dispatch.CONFIGS, 30.0)
    fastest["floor"], fastest["bare nf hook"] = 1.0, 11.0
    text = itm_dispatch.table(_doc(fastest))
    assert "fastest round" in text
    assert "| bare nf hook | 11.0 | 12.0 | 10.0 | 1.00x |" in text
    assert "| itm_mod, 1 app | 30.0 | 50.0 | 29.0 | 2.90x |" in text


def test_a_result_without_fastest_rounds_uses_the_median() -> None:
    text = itm_dispatch.table(_doc(None))
    assert "| itm_mod, 1 app | 50.0 | 50.0 | 48.0 | 4.80x |" in text
