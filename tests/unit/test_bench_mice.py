"""The mice-elephants experiment's pure logic: traces, plan, marking rules, statistics, tables."""

from __future__ import annotations

import math
import random
import statistics
import struct
from pathlib import Path
from typing import Any

import pytest

import itmlab
from bench import mice_capture, mice_elephants, mice_plan, mice_report, mice_stats
from bench.mice_trace import MSS, Sizes, arrival_rate, is_short, offered_load, trace
from libitm.pcap import LINKTYPE_ETHERNET, PcapWriter


def test_bounded_pareto_mean_matches_samples_and_bounds() -> None:
    s = Sizes()
    rng = random.Random(3)
    xs = [s.draw(rng) for _ in range(100_000)]
    assert min(xs) >= s.low and max(xs) <= s.high
    assert statistics.fmean(xs) == pytest.approx(s.mean(), rel=0.05)
    # heavy-tailed: most flows are mice, most bytes are in elephants
    short = [x for x in xs if is_short(x)]
    assert len(short) / len(xs) > 0.7
    assert sum(short) / sum(xs) < 0.5


def test_trace_is_seeded_and_offers_the_load() -> None:
    s = Sizes()
    a = trace(1, 0.8, 4e6, 12.0, s)
    assert a == trace(1, 0.8, 4e6, 12.0, s)
    assert a != trace(2, 0.8, 4e6, 12.0, s)
    assert all(0 <= f.start < 12.0 for f in a)
    assert [f.start for f in a] == sorted(f.start for f in a)
    # Poisson: the count over many long windows averages the rate
    lam = arrival_rate(0.8, 4e6, s)
    counts = [len(trace(seed, 0.8, 4e6, 100.0, s)) for seed in range(20)]
    assert statistics.fmean(counts) == pytest.approx(lam * 100, rel=0.05)
    loads = [offered_load(trace(seed, 0.8, 4e6, 200.0, s), 4e6, 200.0) for seed in range(20)]
    assert statistics.fmean(loads) == pytest.approx(0.8, rel=0.15)


def test_short_is_at_most_twenty_segments() -> None:
    assert is_short(20 * MSS) and not is_short(20 * MSS + 1)


def test_plan_interleaves_schemes_and_bounds_time() -> None:
    runs = mice_plan.plan((0.6, 0.95), (1, 2), ("prio", "red"))
    assert len(runs) == 2 * 2 * 2 * 4
    assert [r.scheme for r in runs[:4]] == list(mice_plan.SCHEMES)
    # the main comparison: every marking scheme marks the first packet
    assert {r.scheme for r in runs if r.mark_first} == {"qos_mod", "qos_ctrl"}
    assert all(r.mark_first for r in runs if r.scheme in ("qos_mod", "qos_ctrl"))
    assert len({(r.core, r.load, r.seed) for r in runs}) == 8
    sweep = mice_plan.plan((0.6, 0.95), (1,), ("prio",), sweep_load=0.95)
    extra = [r for r in sweep if r.part == "sweep"]
    assert sorted(r.threshold for r in extra if not r.offloads) == [10, 20, 50, 100]
    # the paper's reading (first packet as sent) at threshold 20 only
    assert [
        (r.threshold, r.offloads) for r in extra if not r.mark_first and r.scheme != "none"
    ] == [(20, False)]
    assert {r.scheme for r in extra if r.offloads} == {"none", "qos_mod"}
    assert mice_plan.bound_seconds(runs) == mice_plan.BOOT + 32 * (
        mice_plan.WINDOW + mice_plan.DRAIN + mice_plan.OVERHEAD
    )
    # the quick path stays a smoke check of a few minutes
    quick = mice_plan.plan((0.6, 0.95), (1,), ("prio",))
    assert mice_plan.bound_seconds(quick) < 12 * 60


def test_each_scheme_is_checked_against_its_own_rule() -> None:
    # flags: bit 0 marked, bit 1 FIN; a flow of 24 packets, threshold 20, FIN last
    nft = bytes([1] * 20 + [0] * 3 + [3])
    qos = bytes([0] + [1] * 19 + [0] * 3 + [3])
    assert mice_stats.mismatches("nft", nft, 20) == 0
    assert mice_stats.mismatches("qos_mod", qos, 20) == 0
    assert mice_stats.mismatches("qos_ctrl", qos, 20) == 0
    assert mice_stats.mismatches("qos_mod", nft, 20) == 1  # the SYN
    assert mice_stats.mismatches("qos_mod", nft, 20, mark_first=True) == 0
    assert mice_stats.mismatches("qos_ctrl", qos, 20, mark_first=True) == 1
    assert mice_stats.mismatches("none", bytes([0, 0, 2]), 20) == 0
    assert mice_stats.mismatches("none", qos, 20) == 20


def _run(scheme: str, times: list[float], seed: int = 1, **extra: Any) -> dict[str, Any]:
    sizes = [10_000, 20_000, 500_000, 1_000_000]
    flows = [[sz, s, sz, 10, 5, 0, []] for sz, s in zip(sizes, times, strict=True)]
    return {"scheme": scheme, "core": "prio", "load": 0.95, "seed": seed, "part": "main",
            "threshold": 20, "offloads": False, "offered": 0.9, "flows": flows,
            "utilisation": 0.97, "cpu_idle": 0.5, **extra}  # fmt: skip


def test_summary_separates_mice_and_elephants() -> None:
    s = mice_stats.summary(_run("qos_mod", [0.1, 0.3, 2.0, 4.0]))
    assert s["short_mean"] == pytest.approx(200)
    assert s["short_p99"] == pytest.approx(298)
    assert s["long_mbps"] == pytest.approx(2.0)  # 500 kB in 2 s, 1 MB in 4 s
    assert s["agreement"] == 1.0 and s["marked"] == 0.5
    cut = _run("none", [0.1, -1.0, 2.0, 4.0])
    cut["flows"][3][2] = 500_000  # cut at the deadline: goodput of what it sent
    s = mice_stats.summary(cut)
    assert s["short_mean"] == pytest.approx(100) and s["short_done"] == 0.5
    assert s["long_done"] == 0.5 and s["long_mbps"] == pytest.approx((2.0 + 1.0) / 2)
    assert math.isnan(mice_stats.percentile([], 50))


def test_paired_difference_tells_equal_from_different() -> None:
    a = [_run("qos_mod", [0.1, 0.3, 2, 4]), _run("qos_mod", [0.2, 0.2, 2, 4], seed=2)]
    same = [_run("nft", [0.11, 0.29, 2, 4]), _run("nft", [0.19, 0.21, 2, 4], seed=2)]
    mean, lo, hi, n = mice_stats.paired_short_diff(same, a)
    assert n == 4 and lo <= 0 <= hi and abs(mean) < 1
    slower = [_run("nft", [0.5, 0.7, 2, 4]), _run("nft", [0.6, 0.65, 2, 4], seed=2)]
    mean, lo, hi, n = mice_stats.paired_short_diff(slower, a)
    assert lo > 0 and mean == pytest.approx(412.5)


def test_tables_compare_with_no_marking() -> None:
    doc = {
        "kernel": "6.12.0-test",
        "runs": [
            _run("none", [0.4, 0.6, 2, 4]),
            _run("qos_mod", [0.1, 0.3, 2, 4]),
            _run("nft", [0.1, 0.3, 2, 4]),
            _run("qos_ctrl", [0.1, 0.3, 2, 4], ctrl_cpu=2.0, seconds=20.0),
            {"scheme": "nft", "core": "red", "load": 0.6, "seed": 1, "part": "main", "error": "x"},
        ],
    }
    table = mice_report.kernel_table(doc)
    assert "| prio | 0.95 | qos_mod | 0.90 | 200 | 0.40 |" in table
    assert "Runs that failed (1)" in table
    pairs = mice_report.pair_table(doc)
    # 2 CPU seconds in a 20 s run, over 40 packets
    assert "| prio | 0.95 | libitm qos_ctrl | +0 |" in pairs and "| 10% | 50000 |" in pairs
    verdict = mice_report.verdict([doc])
    assert "500 → 200 ms with qos_mod (lower on every seed, 1 seed(s))" in verdict[0]
    assert "(within the 10% margin)" in verdict[0]


def test_core_treatments_classify_every_packet() -> None:
    red = mice_elephants.core_qdisc("red")
    assert red[0].startswith("qdisc add dev l2 root handle 1: tbf rate 4mbit")
    assert any("protocol all" in c and "flowid 10:2" in c for c in red)
    assert mice_elephants.core_qdisc("prio")[-1].endswith("prio")


def test_rio_core_is_one_fifo_under_the_tbf_with_the_stated_profiles() -> None:
    from itmtool import cli

    assert mice_elephants.core_qdisc("rio") == mice_elephants.core_qdisc("prio")[:1]
    args = cli.build_parser().parse_args(mice_elephants.rio_command())
    assert (args.dev, args.parent, args.handle) == ("l2", "1:1", "10:")
    assert (args.in_profile.min, args.in_profile.max, args.in_profile.max_p) == (30, 90, 0.02)
    assert (args.out_profile.min, args.out_profile.max, args.out_profile.max_p) == (15, 45, 0.1)
    assert args.bandwidth == 4_000_000


def test_capture_reads_marks_and_fin_per_client_port(tmp_path: Path) -> None:
    def frame(sport: int, dport: int, tos: int, tcp_flags: int) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 40, 0, 0, 64, 6, 0, bytes(4), bytes(4))
        tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, tcp_flags, 0, 0, 0)
        return bytes(14) + ip + tcp

    pcap = tmp_path / "c.pcap"
    with pcap.open("wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        for i, (sport, dport, tos, fl) in enumerate(
            [(40000, 7000, 0x00, 0x02), (40000, 7000, 0x10, 0x10), (7000, 40000, 0x10, 0x10),
             (40001, 7000, 0x10, 0x11), (40000, 7000, 0x00, 0x11)]
        ):  # fmt: skip
            w.write_packet(float(i), frame(sport, dport, tos, fl))
    got = mice_capture.flags_by_port(pcap, 7000)
    assert got == {40000: bytearray([0, 1, 2]), 40001: bytearray([3])}


def test_run_all_lists_every_benchmark_with_its_bound() -> None:
    from bench import run_all

    names = [b.name for b in run_all.BENCHMARKS]
    assert names == [
        "itm_dispatch",
        "qos_cost",
        "libitm_queue",
        "libitm_packet_cost",
        "libitm_workers",
        "libitm_stream",
        "libitm_observer",
        "libitm_kernel_queue",
        "mice_elephants",
        "itmroute",
        "itmroute_kernel",
        "itmroute_failover",
    ]
    assert all(b.command()[-1] == "--write" and b.minutes > 0 for b in run_all.BENCHMARKS)
    assert run_all.main(["--list"]) == 0
    assert "Failed, so their sections are older: qos_cost." in run_all.header(
        ["qos_cost"], ["qos_cost"], 3.0
    )


def test_a_quick_run_keeps_its_data_out_of_the_page() -> None:
    assert mice_elephants.data_file("6.12").parent == mice_elephants.DATA
    assert mice_elephants.DATA not in mice_elephants.data_file("6.12", quick=True).parents


def test_receiver_order_counts_overtaken_packets_not_retransmissions(tmp_path: Path) -> None:
    from bench import mice_order

    def frame(ip_id: int, seq: int, payload: int, tos: int = 0) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 40 + payload, ip_id, 0, 64, 6, 0,
                         bytes(4), bytes(4))  # fmt: skip
        tcp = struct.pack("!HHIIBBHHH", 40000, 7000, seq, 0, 0x50, 0x10, 0, 0, 0)
        return bytes(14) + ip + tcp + bytes(payload)

    # sent: id 65534 seq 0, 65535 seq 100, 0 seq 200 (the ID wraps), 1 seq 300;
    # arrived: 65534, 0 (overtook 65535), 65535 (out of order), then id 1 is lost
    # and resent as id 2 after id 3 (seq 400)
    arrivals = [(65534, 0), (0, 200), (65535, 100), (3, 400), (2, 300)]
    pcap = tmp_path / "rx.pcap"
    with pcap.open("wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        for i, (ip_id, seq) in enumerate(arrivals):
            w.write_packet(0.05 * i, frame(ip_id, seq, 100, tos=0x10 if i < 2 else 0))
    got = mice_order.order_by_port(pcap, 7000)[40000]
    assert (got.packets, got.out_of_order, got.first_out_of_order) == (5, 2, 3)
    # id 2 arrived after id 3: it is counted as out of order, not as resent
    assert got.resent == 0
    # bins of 0.1 s: [bytes, resent, out of order, marked, CE]
    assert got.trace(0.0) == [[200, 0, 0, 2, 0], [200, 0, 1, 0, 0], [100, 0, 1, 0, 0]]


def test_receiver_order_counts_a_retransmission_as_resent(tmp_path: Path) -> None:
    from bench import mice_order

    flow = mice_order.FlowOrder()
    for ip_id, seq in [(10, 1000), (12, 1200), (13, 1300), (14, 1100)]:  # 11 lost, resent as 14
        flow.add(0.0, ip_id, seq, 100, 0)
    assert (flow.out_of_order, flow.resent) == (0, 1)


def test_core_order_counts_packets_that_left_behind_a_later_one() -> None:
    from bench import mice_order

    # entered 5, 6, 7, 8 (already 7 before 6: not the core's doing); left 5, 7, 8, 6
    assert mice_order.core_order([5, 7, 6, 8], [5, 7, 8, 6]) == (1, 4)
    assert mice_order.core_order([5, 7, 6, 8], [5, 7, 6, 8]) == (0, 0)
    # dropped in the core (6) or seen on one side only (9): skipped
    assert mice_order.core_order([5, 6, 7], [5, 9, 7]) == (0, 0)


def test_plan_compares_more_cores_at_one_load() -> None:
    runs = mice_plan.plan(
        (0.6, 0.95), (1, 2), ("rio",), ("none", "qos_mod"), compare=(("prio", "red"), 0.95)
    )
    assert len(runs) == 2 * (2 * 2 + 2 * 2)  # seeds x (rio at two loads + two cores at one)
    assert {(r.core, r.load) for r in runs} == {
        ("rio", 0.6), ("rio", 0.95), ("prio", 0.95), ("red", 0.95)
    }  # fmt: skip
    # interleaved: each seed runs every configuration before the next seed starts
    assert [r.seed for r in runs] == [1] * 8 + [2] * 8
    assert all(r.mark_first == (r.scheme == "qos_mod") for r in runs)


def _rio_run(scheme: str, times: list[float], seed: int, order: list[int]) -> dict[str, Any]:
    run = _run(scheme, times, seed, core="rio")
    # rx packets, out of order, first, resent, core out of order, first
    for f, late in zip(run["flows"], order, strict=True):
        f += [10, late, 4 if late else 0, 1, 0, 0]
    run["rio"] = dict.fromkeys(("in_enqueued", "in_early", "in_forced", "out_enqueued",
                                "out_early", "out_forced", "limit_drops"), 1)  # fmt: skip
    run["elephant"] = {"size": 1_000_000, "resent": 3, "out_of_order": 0, "bin": 0.1,
                       "trace": [[1448, 0, 0, 1, 0]] * 3, "flight": [2, 0, 10]}  # fmt: skip
    return run


def test_paired_ratio_pairs_flows_of_the_same_trace() -> None:
    q = [_run("qos_mod", [0.1, 0.3, 2, 4]), _run("qos_mod", [0.2, 0.2, 2, -1], seed=2)]
    n = [_run("none", [0.2, 0.6, 4, 4]), _run("none", [0.4, 0.4, 4, 4], seed=2)]
    ratio, lo, hi, pairs, per_seed = mice_stats.paired_ratio(q, n, mice_stats.short_ms)
    assert ratio == pytest.approx(0.5) and lo == pytest.approx(0.5) == hi and pairs == 4
    assert per_seed == pytest.approx([0.5, 0.5])
    # goodput: 500 kB in 2 s against 4 s; the failed flow of seed 2 has no pair
    ratio, lo, hi, pairs, per_seed = mice_stats.paired_ratio(q, n, mice_stats.long_mbps)
    assert pairs == 3 and per_seed[1] == pytest.approx(2.0)
    assert lo <= ratio <= hi
    assert mice_stats.paired_ratio([], [], mice_stats.short_ms)[3] == 0


def test_rio_tables_give_both_halves_and_the_order() -> None:
    from bench import mice_rio_report

    doc: dict[str, Any] = {
        "kernel": "6.12.0-test",
        "runs": [
            _rio_run("none", [0.4, 0.6, 2, 4], 1, [0, 0, 2, 0]),
            _rio_run("qos_mod", [0.1, 0.3, 2, 4], 1, [0, 0, 0, 0]),
        ],
    }
    claim = mice_rio_report.claim_table(doc)
    assert "| rio | 0.95 | 1 | 500 → 200 | 0.40 (0.25 to 0.50) | 0.40 | 2 |" in claim
    assert "| 1.00 (1.00 to 1.00) | 1.00 | 2 | yes | — |" in claim
    order = mice_rio_report.order_table(doc)
    # no marking: 1 flow of 4 had 2 of its 10 packets out of order, the first at 4
    assert (
        "| rio | 0.95 | no marking | 4 | 25.0% | 5.00% | 4 | 0.0% | 0.00% | — | 10.00% | — | — |"
        in order
    )
    # runs that also counted the order as sent and entering the core (2 and 1 of 40)
    for r in doc["runs"]:
        for i, f in enumerate(r["flows"]):
            f += [2 if i == 0 else 0, 1 if i == 1 else 0]
    assert "| 10.00% | 5.00% | 2.50% |" in mice_rio_report.order_table(doc)
    assert "| rio | 0.95 | qos_mod | 4 | 0.0% | 0.00% | — |" in order
    counters = mice_rio_report.counters_table(doc)
    assert counters and "| 0.95 | qos_mod | 1 | 1 | 1 | 66.67 | 1 | 1 | 1 | 66.67 | 1 |" in counters
    ele = mice_rio_report.elephant_table(doc)
    assert "| rio | 1 | no marking | 1000 | 4.0 | 2.000 | 3 | 0 | 3 | 6.0 | 10 |" in ele
    [line] = mice_rio_report.verdict([doc])
    assert "load 0.95 0.40 (0.25 to 0.50) of no marking (≤ 0.5: yes)" in line
    assert "(≥ 0.95 at every load: yes)" in line


def test_flight_is_data_sent_less_data_acknowledged(tmp_path: Path) -> None:
    from bench import mice_order

    def frame(sport: int, dport: int, seq: int, ack: int, payload: int) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0, 64, 6, 0,
                         bytes(4), bytes(4))  # fmt: skip
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, 0x50, 0x10,
                          0, 0, 0)  # fmt: skip
        return bytes(14) + ip + tcp + bytes(payload)

    base = 2**32 - 1000  # the sequence numbers wrap
    packets = [
        (0.00, frame(40000, 7000, base, 0, 0)),  # the handshake's ACK: no data
        (0.01, frame(40000, 7000, base, 0, 1448)),
        (0.02, frame(40000, 7000, base + 1448, 0, 1448)),
        (0.03, frame(7000, 40000, 0, base + 1448, 0)),  # one acknowledged
        (0.05, frame(40001, 7000, 5, 0, 1448)),  # another flow
        (0.12, frame(40000, 7000, base + 2896, 0, 1448)),
    ]
    pcap = tmp_path / "snd.pcap"
    with pcap.open("wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        for when, data in packets:
            w.write_packet(when, data)
    got = mice_order.flight(pcap, 7000, 40000)
    assert got == [(0.01, 1448), (0.02, 2896), (0.12, 2896)]
    assert mice_order.binned_max(got, 0.01, 1448) == [2, 2]


def test_append_replaces_a_configuration_run_again_and_keeps_the_sessions() -> None:
    first = [_run("none", [1, 1, 1, 1], seed=s) for s in (1, 2, 3)]
    again = [_run("none", [2, 2, 2, 2], seed=3), _run("qos_mod", [2, 2, 2, 2], seed=3)]
    old = {"kernel": "6.12.0-test", "date": "d1", "minutes": 25.0, "partial": True,
           "planned": 3, "runs": first}  # fmt: skip
    new = {"kernel": "6.12.0-test", "date": "d2", "minutes": 9.0, "planned": 2, "runs": again}
    got = mice_elephants.appended(old, new)
    assert [(r["scheme"], r["seed"]) for r in got["runs"]] == [
        ("none", 1), ("none", 2), ("none", 3), ("qos_mod", 3)
    ]  # fmt: skip
    assert got["runs"][2]["flows"][0][1] == 2  # seed 3's no-marking run is the new one
    assert [(s["date"], s["runs"]) for s in got["sessions"]] == [("d1", 3), ("d2", 2)]
    assert got["minutes"] == 34.0 and "partial" not in got
    with pytest.raises(SystemExit):
        mice_elephants.appended(old, {**new, "kernel": "6.1.0-test"})


def test_seed_list_must_be_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        mice_elephants.main(["--seed-list", "3,x"])
    assert err.value.code == 2 and "--seed-list" in capsys.readouterr().err


class _Chain:
    names = ("c", "i", "k", "s")

    def addr(self, i: int) -> str:
        return f"10.0.0.{i}"


def test_steering_covers_every_veth_end_and_checks_the_kernel_took_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: dict[tuple[str, str], str] = {}

    def sh(*argv: str, check: bool = True) -> str:
        ns, cmd = argv[3], argv[4:]
        if cmd[0] == "sh":
            value, _, knob = cmd[2].removeprefix("echo ").partition(" > ")
            written[(ns, knob)] = value
            return ""
        return written.get((ns, cmd[1]), "0") + "\n"

    monkeypatch.setattr(itmlab, "sh", sh)
    g = mice_elephants.Guest(_Chain(), Path("/nonexistent"))  # type: ignore[arg-type]
    ends = list(g.devices())
    assert ends == [("c", "l0"), ("i", "r0"), ("i", "l1"), ("k", "r1"), ("k", "l2"), ("s", "r2")]
    g.steer_links()
    assert sorted(written) == sorted(
        (ns, f"/sys/class/net/{d}/queues/rx-0/rps_cpus") for ns, d in ends
    )
    assert set(written.values()) == {"1"}

    def ignored(*argv: str, check: bool = True) -> str:  # a kernel without RPS
        return "0\n"

    monkeypatch.setattr(itmlab, "sh", ignored)
    with pytest.raises(RuntimeError, match="rps_cpus"):
        g.steer_links()


def test_steer_reaches_the_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def host(args: Any, runs: list[mice_plan.Run]) -> int:
        seen["args"] = args.guest_args
        return 0

    monkeypatch.setattr(mice_elephants, "host", host)
    assert mice_elephants.main(["--kernel", "6.12", "--loads", "0.6", "--steer"]) == 0
    assert seen["args"].endswith(" --steer")
    assert mice_elephants.main(["--kernel", "6.12", "--loads", "0.6"]) == 0
    assert "--steer" not in seen["args"]
