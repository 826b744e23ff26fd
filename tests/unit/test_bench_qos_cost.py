"""bench/qos_cost.py's bookkeeping: what each scheme must have marked, and its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import qos_cost, vmbench


def _guest(iterations: int = 20_000) -> qos_cost.Guest:
    g = qos_cost.Guest.__new__(qos_cost.Guest)
    g.iterations = iterations
    g.next_port = 10000
    g.ko = {}
    return g


def test_every_scheme_counts_the_first_packet() -> None:
    """qos_mod marks the first packet too (mark_first, its default), as the rule sets
    and the hand-written anchor do."""
    g = _guest()
    short, long = g.expected()
    assert (short, long) == (qos_cost.FLOWS * 20, 20_000 - qos_cost.FLOWS * 20)
    g.check(qos_cost.NFT, (2 * short, 2 * long), runs=2)
    g.check(qos_cost.IPT_LEGACY, (short, long), runs=1)
    g.check(qos_cost.QOS, (short, long), runs=1)
    g.check(qos_cost.QOS_NF, (3 * short, 3 * long), runs=3)
    g.check(qos_cost.FLOOR, (0, 0), runs=7)
    with pytest.raises(RuntimeError, match="expected"):
        g.check(qos_cost.QOS, (short - qos_cost.FLOWS, long), runs=1)
    with pytest.raises(RuntimeError, match="expected"):
        g.check(qos_cost.IPT, (short, long - 1), runs=1)


def test_the_iptables_rule_set_is_the_agreement_tests() -> None:
    rules = [" ".join(r) for r in qos_cost.iptables_rules()]
    assert len(rules) == 5
    assert "--connbytes 0:20 --connbytes-dir original" in rules[0]
    assert rules[0].endswith("--set-tos 0x10/0x10")
    assert rules[1].endswith("--set-tos 0x00/0x10") and "--connbytes 21:" in rules[1]
    assert rules[4] == "-p tcp --tcp-flags FIN FIN -j TOS --set-tos 0x10/0x10"


def test_table_divides_each_cost_by_qos_mods() -> None:
    ns = dict.fromkeys(qos_cost.CONFIGS, 1000.0)
    ns[qos_cost.FLOOR], ns[qos_cost.QOS], ns[qos_cost.NFT] = 100.0, 600.0, 2100.0
    doc = {
        "kernel": "6.12.0",
        "iterations": 100_000,
        "flows": 1000,
        "threshold": 20,
        "repeats": 7,
        "ns_per_packet": ns,
        "median": ns,
    }
    text = qos_cost.table(doc)
    assert "| nftables ct rule set | 2100 | 2100 | 2000 | 4.00x |" in text
    assert "| qos_mod | 600 | 600 | 500 | 1.00x |" in text
    assert "| no marking | 100 | 100 | 0 | — |" in text


def test_arguments_that_would_reuse_flows_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        qos_cost.main(["--repeats", "40", "--guest", str(Path("/nonexistent"))])
    assert "repeats" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        qos_cost.main(["--iterations", "1500"])
    with pytest.raises(SystemExit):
        qos_cost.main(["--iterations", str(qos_cost.FLOWS * 20)])


def test_rounds_interleave_every_configuration_when_the_legacy_table_can_go() -> None:
    assert qos_cost.rounds(3, legacy_removable=True) == [list(qos_cost.CONFIGS)] * 3


def test_rounds_put_the_legacy_runs_after_all_others_when_its_table_stays() -> None:
    order = [n for r in qos_cost.rounds(3, legacy_removable=False) for n in r]
    assert order.count(qos_cost.IPT_LEGACY) == 3 and len(order) == 3 * len(qos_cost.CONFIGS)
    first = order.index(qos_cost.IPT_LEGACY)
    assert set(order[first:]) == {qos_cost.IPT_LEGACY}  # nothing measured after it


def test_leftovers_name_what_still_hooks_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmbench, "sh", lambda *a: "table ip mangle\n")
    assert "table ip mangle" in qos_cost.leftovers()
    monkeypatch.setattr(vmbench, "sh", lambda *a: "")
    assert "table ip mangle" not in qos_cost.leftovers()
