"""The mice-elephants experiment's receiver view: per flow, packets out of order and resent.

A capture at the server's interface (packets as they arrive, after the core)
is read per client source port.  Linux numbers a TCP socket's IPv4 packets
with its own IP ID counter, one step per packet sent, retransmissions
included (``ip_select_ident_segs``, 6.1 and 6.12), so the ID orders packets by
the time they were *sent*:

- a packet is **out of order** when its IP ID is below (mod 2^16) the highest
  ID already received on its flow: a packet sent after it arrived first, so
  the network reordered the two.  A retransmission is not counted: it is a
  new packet with a new, higher ID;
- a packet is **resent** when it carries payload that starts below the highest
  sequence number already received and it is not out of order: a
  retransmission that filled a hole (the original was dropped) or a spurious
  one.

Sequence numbers are compared relative to the flow's first packet (mod 2^32).

The receiver's view holds every reordering on the way, also the one veth
pairs make when a flow's packets are sent from two CPUs (each CPU's backlog
delivers its own).  The core's own share is measured between two captures in
the core router: where packets enter it and where its qdisc hands them to the
bottleneck link.  A packet is **out of order at the core** when it leaves after
a packet of its flow that entered after it (`core_order`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from bench.mice_capture import tcp_packets, tcp_to_port

#: width of a bin of the elephant's trace, seconds
BIN = 0.1


@dataclass
class FlowOrder:
    """One flow's packets as they arrived, counted."""

    packets: int = 0
    out_of_order: int = 0
    #: 1-based arrival position of the first out-of-order packet, 0 for none
    first_out_of_order: int = 0
    resent: int = 0
    #: per packet: (arrival time, payload bytes, resent, out of order, marked, CE)
    arrivals: list[tuple[float, int, bool, bool, bool, bool]] = field(default_factory=list)
    _top_id: int = -1
    _base_seq: int = -1
    _top_seq: int = 0

    def add(self, when: float, ip_id: int, seq: int, payload: int, tos: int) -> None:
        """Count one arriving packet."""
        self.packets += 1
        late = self._top_id >= 0 and (ip_id - self._top_id) & 0xFFFF >= 0x8000
        if late:
            self.out_of_order += 1
            self.first_out_of_order = self.first_out_of_order or self.packets
        else:
            self._top_id = ip_id
        if self._base_seq < 0:
            self._base_seq = seq
        rel = (seq - self._base_seq) & 0xFFFFFFFF
        resent = payload > 0 and not late and rel < self._top_seq
        self.resent += resent
        self._top_seq = max(self._top_seq, rel + payload)
        self.arrivals.append((when, payload, resent, late, bool(tos & 0x10), tos & 3 == 3))

    def trace(self, start: float) -> list[list[int]]:
        """Per BIN seconds from `start`: [payload bytes, resent, out of order, marked, CE]."""
        bins: list[list[int]] = []
        for when, payload, resent, late, marked, ce in self.arrivals:
            i = max(0, int((when - start) / BIN))
            while len(bins) <= i:
                bins.append([0, 0, 0, 0, 0])
            row = bins[i]
            row[0] += payload
            row[1] += resent
            row[2] += late
            row[3] += marked
            row[4] += ce
        return bins


def order_by_port(pcap: Path, port: int) -> dict[int, FlowOrder]:
    """Per client source port, its IPv4 TCP packets to `port` counted in arrival order."""
    out: dict[int, FlowOrder] = {}
    for rec, ip, ihl in tcp_to_port(pcap, port):
        sport, _, seq = struct.unpack_from("!HHI", ip, ihl)
        total, ip_id = struct.unpack_from("!HH", ip, 2)
        payload = max(0, total - ihl - (ip[ihl + 12] >> 4) * 4)
        out.setdefault(sport, FlowOrder()).add(rec.timestamp, ip_id, seq, payload, ip[1])
    return out


def ids_by_port(pcap: Path, port: int) -> dict[int, list[int]]:
    """Per client source port, the IP IDs of its packets to `port`, in capture order."""
    out: dict[int, list[int]] = {}
    for _, ip, ihl in tcp_to_port(pcap, port):
        sport = struct.unpack_from("!H", ip, ihl)[0]
        out.setdefault(sport, []).append(struct.unpack_from("!H", ip, 4)[0])
    return out


def core_order(entered: list[int], left: list[int]) -> tuple[int, int]:
    """(packets out of order, 1-based position of the first) of one flow between two
    captures: IP IDs in the order they `entered` and the order they `left`.

    A packet that left is out of order when a packet that entered after it left
    before it; packets seen on one side only are skipped.
    """
    rank = {ip_id: i for i, ip_id in enumerate(entered)}
    top, late, first = -1, 0, 0
    for pos, ip_id in enumerate(left, 1):
        r = rank.get(ip_id)
        if r is None:
            continue
        if r < top:
            late += 1
            first = first or pos
        else:
            top = r
    return late, first


def flight(pcap: Path, port: int, sport: int) -> list[tuple[float, int]]:
    """The sender's bytes in flight of flow `sport` -> `port`, at each data packet it sent.

    `pcap` holds both directions at the sender: its data packets (the highest
    sequence number sent so far) and the receiver's ACKs (the highest
    acknowledged).  Their difference is what the sender has in flight, the
    congestion window's footprint while the flow is window-limited.
    """
    out: list[tuple[float, int]] = []
    base, top_sent, top_ack = -1, 0, 0
    for rec, ip, ihl in tcp_packets(pcap):
        src, dst, seq, ack = struct.unpack_from("!HHII", ip, ihl)
        if (src, dst) == (sport, port):
            if base < 0:
                base = seq
            payload = struct.unpack_from("!H", ip, 2)[0] - ihl - (ip[ihl + 12] >> 4) * 4
            top_sent = max(top_sent, (seq - base) % 2**32 + max(0, payload))
            if payload > 0:
                out.append((rec.timestamp, max(0, top_sent - top_ack)))
        elif (src, dst) == (port, sport) and base >= 0 and ip[ihl + 13] & 0x10:
            top_ack = max(top_ack, (ack - base) % 2**32)
    return out


def binned_max(points: list[tuple[float, int]], start: float, scale: int) -> list[int]:
    """Per BIN seconds from `start`, the largest value of `points` divided by `scale`."""
    bins: list[int] = []
    for when, value in points:
        i = max(0, int((when - start) / BIN))
        while len(bins) <= i:
            bins.append(0)
        bins[i] = max(bins[i], round(value / scale))
    return bins


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.mice_order",
            "it is a part of the mice-elephants experiment;"
            " run python -m bench.mice_elephants (see its --help)",
        )
    )
