"""examples/qos_ctrl.py --threshold 0 means what qos_mod's threshold=0 means
(docs/qos_mod.md): every classified packet is LONG except FINs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.qos_trace import expected_tos, offline_tos, trace


@pytest.mark.parametrize("mark_first", [False, True])
def test_threshold_zero_marks_every_classified_packet_long_but_fins(
    tmp_path: Path, mark_first: bool
) -> None:
    pkts = trace()
    tos = offline_tos(pkts, tmp_path, 0, mark_first=mark_first)
    want = [expected_tos(p.n, p.total, p.tos, 0, mark_first=mark_first) for p in pkts]
    assert tos == want
    assert want != [expected_tos(p.n, p.total, p.tos, 20, mark_first=mark_first) for p in pkts]
