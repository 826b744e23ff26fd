"""bench/libitm_packet_cost.py: its batch is what the drain queues, its loops do their job."""

from __future__ import annotations

from bench import libitm_packet_cost as cost
from libitm import Packet


def test_the_batch_holds_forwarded_64_byte_datagrams() -> None:
    b = cost.Batch()
    assert len(b.lengths) == cost.N and len(set(b.lengths)) == 1
    payload = cost.udp_packet(bytes(64 - 28))
    assert len(payload) == 64, "64 bytes of IP length, as udp_blast sends"
    assert bytes(b.buf[b.lengths[0] - len(payload) : b.lengths[0]]) == payload
    assert Packet(payload).verify_checksums()


def test_every_variant_runs_a_whole_batch() -> None:
    for v in cost.VARIANTS:
        cost.make(v)()  # libitm's raise unless every packet was handled


def test_the_tos_pass_rewrites_every_packet_and_restores_the_batch() -> None:
    b = cost.Batch()
    one = cost.libitm_pass("tos", b)
    one()
    payload_at = b.lengths[0] - 64
    assert all(b.buf[i * cost.SLOT + payload_at + 1] == cost.NEW_TOS for i in range(cost.N))
    b.restore()
    assert bytes(b.buf) == b.pristine


def test_report_ratios() -> None:
    rows = {
        "floor": {"seconds": 1e-6, "instructions": 4000.0},
        "accept": {"seconds": 1.5e-6, "instructions": 9000.0},
        "tos": {"seconds": 3e-6},
    }
    lines = cost.report(rows)
    assert "| 1.50 | 1.50x | 9,000 | 2.25x |" in lines[3]
    assert lines[4].endswith("| — | — |")


def test_kernel_queue_table_ratios_per_repeat() -> None:
    from bench import libitm_kernel_queue as kq

    def run(cpu_pps: float) -> dict[str, float]:
        return {"cpu_pps": cpu_pps, "queued": 5000}

    samples = {c.name: [run(1000.0), run(2000.0)] for c in kq.CONSUMERS}
    samples["libitm, kernel backend, accept"] = [run(1500.0), run(2000.0)]
    doc = {"kernel": "6.12", "n": 5000, "repeats": 2, "samples": samples}
    rows = kq.summary(doc)
    k = rows["libitm, kernel backend, accept"]
    assert (k["ratio"], k["lo"], k["hi"]) == (1.25, 1.0, 1.5), "the median of 1.5x and 1.0x"
    assert rows["netfilterqueue, tos"]["ratio"] == 1.0
    assert "| libitm, kernel backend, accept | 583 | 1.25x (1.00-1.50) | 5000 |" in kq.table(doc)
