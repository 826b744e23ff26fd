"""itmtool's parts that need no kernel: argument parsing, tables, interests, matrix."""

from __future__ import annotations

import pytest

from itmtool import cli, matrix, status
from libitm.control.client import STAT_NAMES, App
from tests.support.fake_itm_control import DNS_INTEREST


def _app(label: str, hook: str, prio: int, order: int, matched: int = 0) -> App:
    stats = dict.fromkeys(STAT_NAMES, 0)
    stats.update(matched=matched, time_ns=matched * 250)
    return App(
        label,
        "kernel",
        hook,
        prio,
        True,
        0,
        "itm_test_app",
        0,
        order,
        dict(DNS_INTEREST),
        stats,
    )


def test_table_columns_and_alignment() -> None:
    text = status.table([_app("dns", "ip_forward", 0, 1, matched=4), _app("x", "ip_out", 5, 2)])
    lines = text.splitlines()
    assert lines[0].split() == [name for name, _ in status.COLUMNS]
    assert lines[1].split()[:6] == ["ip_forward", "dns", "kernel", "itm_test_app", "0", "yes"]
    assert "250" in lines[1].split()  # ns per matched packet
    assert lines[2].split()[13] == "-"  # nothing matched: no per-packet time
    starts = [line.index("kernel") for line in lines[1:]]
    assert len(set(starts)) == 1


def test_user_applications_show_their_pid() -> None:
    user = _app("u", "ip_in", 0, 3)
    user.type, user.pid, user.owner = "user", 4242, "itm_queue"
    line = status.table([user]).splitlines()[1]
    assert line.split()[:5] == ["ip_in", "u", "user", "pid", "4242"]
    user.queue_count = 4  # run by four workers, a queue each
    line = status.table([user]).splitlines()[1]
    assert line.split()[:6] == ["ip_in", "u", "user", "pid", "4242", "x4"]


def test_interest_descriptions() -> None:
    assert status.describe_interest({"family": "any", "protocol": 0}) == "all"
    assert (
        status.describe_interest(_app("a", "ip_in", 0, 1).interest)
        == "ipv4 udp dst 10.0.0.0/8 dport 53"
    )
    assert status.describe_interest({"protocol": 6, "sport": [1000, 2000]}) == "tcp sport 1000-2000"


def test_run_order_sorts_by_hook_priority_then_registration() -> None:
    from libitm.control.client import run_order_key

    apps = [
        _app("c", "post_routing", 0, 1),
        _app("b", "ip_forward", 5, 2),
        _app("a", "ip_forward", 5, 3),
        _app("z", "ip_forward", -1, 4),
    ]
    assert [a.label for a in sorted(apps, key=run_order_key)] == ["z", "b", "a", "c"]


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["priority", "x"], ["priority", "x", "high"], ["netns", "maybe"]],
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_help_on_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("status", "enable", "disable", "priority", "netns"):
        with pytest.raises(SystemExit) as exc:
            cli.main([sub, "--help"])
        assert exc.value.code == 0
        assert "usage: itmtool " + sub in capsys.readouterr().out


def test_matrix_file_parses(tmp_path: object) -> None:
    kernels = matrix.read_matrix()
    assert [k.name for k in kernels] == ["6.1", "6.12", "debug", "uml", "uml-debug"]
    debian = [k for k in kernels if k.flavour is None]
    assert all(k.image_pkg.startswith("linux-image-") for k in debian)
    assert all(k.headers_pkg.startswith("linux-headers-") for k in debian)
    ours = {k.name: k.flavour for k in kernels if k.flavour is not None}
    assert ours == {"debug": "debug", "uml": "uml", "uml-debug": "uml-debug"}
    assert [k.name for k in kernels if k.is_uml] == ["uml", "uml-debug"]
    assert [k.name for k in kernels if k.detectors] == ["debug", "uml-debug"]
