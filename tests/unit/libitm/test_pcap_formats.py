"""pcapng and Linux cooked captures through libitm's reader and the offline backend;
damaged files give one clear PcapError; outputs appear only complete."""

from __future__ import annotations

import io
import os
import random
import socket
import stat
import struct
import threading
from pathlib import Path

import pytest

from libitm import Hook, Interest, ItmInfo, ItmLoop, Packet, Verdict
from libitm.files import PathConflict
from libitm.pcap import PcapError, PcapReader
from tests.support.capture_files import (
    ETHERNET,
    RAW,
    SLL,
    SLL2,
    NgFile,
    NgInterface,
    NgPacket,
    pcapng_bytes,
    read_pcapng,
    sll2_header,
    sll_header,
    write_classic,
)
from tests.support.packets import ETH_HDR_V4, ref_csum, tcp, udp, verify

P1 = udp("10.0.0.1", "10.0.0.2", 1000, 53, b"one")
P2 = udp("10.0.0.1", "10.0.0.2", 1000, 7001, b"drop me")
P3 = tcp("10.0.0.1", "10.0.0.2", 5, 80, b"three")
P6 = udp("fd00::1", "fd00::2", 1000, 53, b"six")


def _marker() -> ItmInfo:
    """UDP to 53 gets TOS 0x10, UDP to 7001 is dropped, the rest passes untouched."""

    def class_func(pkt: Packet) -> int:
        return 2 if pkt.dport == 7001 else 1

    def process_func(where: Hook, cls: int, pkt: Packet) -> Verdict:
        if cls == 2:
            return Verdict.DROP
        pkt.tos = 0x10
        return Verdict.ACCEPT

    return ItmInfo(
        "mark", Interest(protocol="udp"), class_func=class_func, process_func=process_func
    )


def _replay(src: Path, out: Path, log: Path | None = None) -> ItmLoop:
    loop = ItmLoop("offline", pcap=src, out=out, log=log)
    loop.register_hook("post_routing", _marker())
    loop.run()
    return loop


def _marked(pkt: bytes) -> bytes:
    """What the application makes of P1 or P6: the TOS / traffic class set to 0x10."""
    m = bytearray(pkt)
    if m[0] >> 4 == 4:
        m[1] = 0x10
        m[10:12] = b"\0\0"
        m[10:12] = struct.pack("!H", ref_csum(bytes(m[:20])))
    else:
        m[0] = 0x61
        m[1] = (m[1] & 0x0F) | 0x00
    return bytes(m)


def _two_interface_file() -> NgFile:
    """An Ethernet interface in microseconds and a cooked-v2 one in nanoseconds with
    an offset; one packet of each kind on each, and a Simple Packet Block."""
    eth, sll2 = ETH_HDR_V4, sll2_header()
    return NgFile(
        [
            NgInterface(ETHERNET, 262144),
            NgInterface(SLL2, 65535, tsresol=9, tsoffset=1_700_000_000),
        ],
        [
            NgPacket(0, 1_000_000_123_456, eth + P1),
            NgPacket(1, 5_000_000_001, sll2 + P2),
            NgPacket(1, 5_100_000_002, sll2 + P3),
            NgPacket(0, 1_000_002_000_000, eth + P3 + b"\0" * 6),  # Ethernet padding
            NgPacket(0, 0, eth + P1, simple=True),
            NgPacket(1, 6_000_000_003, sll2_header(0x86DD) + P6),
        ],
    )


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_reader_interfaces_times_and_bytes(tmp_path: Path, big_endian: bool) -> None:
    src = tmp_path / "in.pcapng"
    src.write_bytes(pcapng_bytes(_two_interface_file(), big_endian=big_endian))
    with src.open("rb") as f:
        reader = PcapReader(f)
        recs = list(reader)
    assert reader.format == "pcapng"
    assert [(i.linktype, i.units) for i in reader.interfaces] == [
        (ETHERNET, 10**6),
        (SLL2, 10**9),
    ]
    assert [r.linktype for r in recs] == [ETHERNET, SLL2, SLL2, ETHERNET, ETHERNET, SLL2]
    assert [r.data for r in recs] == [p.data for p in _two_interface_file().packets]
    assert recs[0].timestamp == pytest.approx(1_000_000.123456)
    assert (recs[1].ts_sec, recs[1].ts_frac) == (1_700_000_005, 1)  # if_tsoffset added
    assert recs[4].simple and recs[4].ts_sec == recs[3].ts_sec  # SPB: previous time


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_replay_writes_pcapng_with_the_same_interfaces(
    tmp_path: Path, big_endian: bool
) -> None:
    src = tmp_path / "in.pcapng"
    given = _two_interface_file()
    src.write_bytes(pcapng_bytes(given, big_endian=big_endian))
    out, log = tmp_path / "out.pcapng", tmp_path / "v.log"
    loop = _replay(src, out, log)
    assert loop.counters()["backend"]["packets"] == 6
    assert [ln.split()[1] for ln in log.read_text().splitlines()] == ["accept", "drop"] + [
        "accept"
    ] * 4
    got = read_pcapng(out.read_bytes())
    assert got.interfaces == given.interfaces  # link types, snap lengths, tsresol, tsoffset
    kept = [given.packets[i] for i in (0, 2, 3, 4, 5)]
    assert [(p.interface, p.ts, p.simple) for p in got.packets] == [
        (p.interface, p.ts, p.simple) for p in kept
    ]
    eth, sll2 = ETH_HDR_V4, sll2_header()
    assert [p.data for p in got.packets] == [
        eth + _marked(P1),
        sll2 + P3,  # TCP: not of interest, byte for byte
        eth + P3 + b"\0" * 6,  # padding kept
        eth + _marked(P1),
        sll2_header(0x86DD) + _marked(P6),
    ]
    assert verify(got.packets[0].data[14:])


@pytest.mark.parametrize(
    ("linktype", "header"), [(SLL, sll_header()), (SLL2, sll2_header()), (RAW, b"")]
)
@pytest.mark.parametrize("big_endian", [False, True])
def test_cooked_classic_pcap_replay_keeps_link_type_and_bytes(
    tmp_path: Path, linktype: int, header: bytes, big_endian: bool
) -> None:
    src, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    frames = [(100, 1, header + P1), (100, 2, header + P2), (101, 999_999_999, header + P3)]
    write_classic(src, linktype, frames, big_endian=big_endian, nanosecond=True)
    _replay(src, out)
    raw = out.read_bytes()
    magic, _, _, _, _, _, lt = struct.unpack("<IHHiIII", raw[:24])
    assert (magic, lt) == (0xA1B23C4D, linktype)  # nanosecond, same link type
    sec, frac, incl, _ = struct.unpack("<IIII", raw[24:40])
    assert (sec, frac) == (100, 1)
    assert raw[40 : 40 + incl] == header + _marked(P1)
    pos = 40 + incl
    sec, frac, incl, _ = struct.unpack("<IIII", raw[pos : pos + 16])
    assert (sec, frac, raw[pos + 16 :]) == (101, 999_999_999, header + P3)


def test_pcapng_sections_of_either_byte_order_and_snapped_simple_packets(
    tmp_path: Path,
) -> None:
    """Two sections (little, then big endian) each number their interfaces from 0;
    a Simple Packet Block holds the packet cut at interface 0's snap length."""
    cut = P3[:30]  # snap length 30: the block pads the 30 bytes to 32
    first = NgFile([NgInterface(RAW, 30)], [NgPacket(0, 0, cut, simple=True, orig=len(P3))])
    second = NgFile(
        [NgInterface(ETHERNET), NgInterface(RAW, tsresol=3)],
        [NgPacket(1, 7_000, P1), NgPacket(0, 2_000_000, ETH_HDR_V4 + P2)],
    )
    src, out = tmp_path / "in.pcapng", tmp_path / "out.pcapng"
    src.write_bytes(pcapng_bytes(first) + pcapng_bytes(second, big_endian=True))
    with src.open("rb") as f:
        recs = list(PcapReader(f))
    assert [(r.interface, r.linktype, r.data) for r in recs] == [
        (0, RAW, cut),
        (2, RAW, P1),
        (1, ETHERNET, ETH_HDR_V4 + P2),
    ]
    assert recs[0].orig_len == len(P3) and recs[1].timestamp == 7.0
    _replay(src, out)
    got = read_pcapng(out.read_bytes())  # one section with the three interfaces
    assert [(i.linktype, i.snaplen, i.tsresol) for i in got.interfaces] == [
        (RAW, 30, None),
        (ETHERNET, 0, None),
        (RAW, 0, 3),
    ]
    assert [(p.interface, p.ts, p.data, p.simple) for p in got.packets] == [
        (0, 0, cut, True),
        (2, 7_000, _marked(P1), False),
    ]  # P2 (to 7001) dropped
    assert got.packets[0].orig == len(P3)


def _pcap_header(linktype: int = RAW) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


def _good_pcapng() -> bytes:
    raw: bytes = pcapng_bytes(NgFile([NgInterface(RAW)], [NgPacket(0, 1, P1)]), extra_blocks=False)
    return raw


BAD_FILES = {
    "empty": (b"", "empty file"),
    "three bytes": (b"\xd4\xc3\xb2", "not a capture"),
    "text": (b"hello, world\n" * 3, "not a pcap or pcapng capture"),
    "pcap header cut": (_pcap_header()[:20], "truncated pcap file"),
    "pcap record header cut": (_pcap_header() + b"\0" * 10, "inside the header of record 0"),
    "pcap record cut": (
        _pcap_header() + struct.pack("<IIII", 1, 0, len(P1), len(P1)) + P1[:-3],
        "inside record 0",
    ),
    "pcap record too long": (
        _pcap_header() + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 60),
        "claims 4294967280 bytes",
    ),
    "pcap link type": (_pcap_header(147) + b"", "unsupported link type 147"),
    "pcapng byte order": (b"\x0a\x0d\x0d\x0a" + bytes(40), "bad byte-order magic"),
    "pcapng cut": (_good_pcapng()[:-6], "truncated pcapng file"),
    "pcapng block length": (
        _good_pcapng()[:28] + struct.pack("<II", 1, 13) + bytes(20),
        "has length 13",
    ),
    "pcapng link type": (
        pcapng_bytes(NgFile([NgInterface(147)], []), extra_blocks=False),
        "unsupported link type 147 on interface 0",
    ),
    "pcapng packet before interface": (
        pcapng_bytes(NgFile([], [NgPacket(0, 1, P1)]), extra_blocks=False),
        "before any interface",
    ),
    "pcapng unknown interface": (
        pcapng_bytes(NgFile([NgInterface(RAW)], [NgPacket(3, 1, P1)]), extra_blocks=False),
        "names interface 3",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_damaged_captures_raise_one_clear_error(tmp_path: Path, name: str) -> None:
    content, message = BAD_FILES[name]
    src = tmp_path / "bad.cap"
    src.write_bytes(content)
    out = tmp_path / "out.pcap"
    out.write_bytes(b"previous result")
    loop = ItmLoop("offline", pcap=src, out=out, log=tmp_path / "v.log")
    loop.register_hook("ip_in", ItmInfo("x"))
    with pytest.raises(PcapError) as exc:
        loop.run()
    text = str(exc.value)
    assert text.startswith(f"{src}: ") and message in text
    assert "\n" not in text
    assert out.read_bytes() == b"previous result"  # the old result stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.cap", "out.pcap"]


def test_a_pcapng_without_packets_is_a_valid_empty_trace(tmp_path: Path) -> None:
    src, out = tmp_path / "in.pcapng", tmp_path / "out.pcapng"
    src.write_bytes(pcapng_bytes(NgFile([NgInterface(ETHERNET)], [])))
    assert _replay(src, out).counters()["backend"]["packets"] == 0
    assert read_pcapng(out.read_bytes()).packets == []


def test_output_naming_the_input_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    write_classic(src, RAW, [(1, 0, P1)])
    before = src.read_bytes()
    link = tmp_path / "link.pcap"
    link.symlink_to(src)
    other = tmp_path / "other.log"
    for out, log in ((src, None), (link, None), (None, src), (other, other)):
        loop = ItmLoop("offline", pcap=src, out=out, log=log)
        loop.register_hook("ip_in", ItmInfo("x"))
        with pytest.raises(PathConflict):
            loop.run()
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pcap", "link.pcap"]


def test_an_interrupted_run_leaves_no_output_and_keeps_the_old_one(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    write_classic(src, RAW, [(i, 0, P1) for i in range(10)])
    out, log = tmp_path / "out.pcap", tmp_path / "v.log"
    out.write_bytes(b"previous result")
    seen = []

    def class_func(pkt: Packet) -> int:
        seen.append(1)
        if len(seen) == 5:
            raise KeyboardInterrupt
        return 1

    loop = ItmLoop("offline", pcap=src, out=out, log=log)
    loop.register_hook("ip_in", ItmInfo("x", class_func=class_func))
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pcap", "out.pcap"]


def test_outputs_keep_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    write_classic(src, RAW, [(1, 0, P1)])
    old = os.umask(0o022)
    try:
        _replay(src, tmp_path / "new.pcap")
    finally:
        os.umask(old)
    assert (tmp_path / "new.pcap").stat().st_mode & 0o777 == 0o644
    kept = tmp_path / "kept.pcap"
    kept.write_bytes(b"")
    kept.chmod(0o600)
    _replay(src, kept)
    assert kept.stat().st_mode & 0o777 == 0o600


def test_an_output_device_or_pipe_is_written_into_not_replaced(tmp_path: Path) -> None:
    """--out /dev/null as root replaced the device with a regular file (a rename over
    it); a FIFO (or /dev/stdout) is written into, a socket refused."""
    src = tmp_path / "in.pcap"
    write_classic(src, RAW, [(i, 0, P1) for i in range(3)])
    # as root, a device node of our own (the old code replaced the device it was
    # given); otherwise /dev/null itself, which only root could replace
    null = tmp_path / "null" if os.geteuid() == 0 else Path("/dev/null")
    if os.geteuid() == 0:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _replay(src, null)
    assert stat.S_ISCHR(os.stat(null).st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    _replay(src, fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert _read_all(got[0]) == 3
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        sock.bind(str(tmp_path / "sock"))
        loop = ItmLoop("offline", pcap=src, out=tmp_path / "sock")
        loop.register_hook("ip_in", ItmInfo("x"))
        with pytest.raises(PathConflict, match="neither a regular file"):
            loop.run()
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock").st_mode)
    names = (
        ["in.pcap", "null", "pipe", "sock"] if os.geteuid() == 0 else ["in.pcap", "pipe", "sock"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def _read_all(raw: bytes) -> int:
    return len(list(PcapReader(io.BytesIO(raw))))


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcapng big endian"])
def test_every_cut_and_flipped_byte_is_read_or_refused_with_pcap_error(
    tmp_path: Path, kind: str
) -> None:
    """No struct.error, IndexError, MemoryError...: a capture cut anywhere, or with
    any byte changed, is read or refused with a PcapError."""
    if kind == "pcap":
        src = tmp_path / "in.pcap"
        write_classic(src, SLL2, [(1, 2, sll2_header() + P1), (3, 4, sll2_header() + P3)])
        good = src.read_bytes()
    else:
        good = pcapng_bytes(_two_interface_file(), big_endian=kind.endswith("endian"))
    assert _read_all(good) > 0
    rng = random.Random(14)
    variants = [good[:cut] for cut in range(len(good))]
    for _ in range(300):
        flipped = bytearray(good)
        flipped[rng.randrange(len(good))] ^= 1 << rng.randrange(8)
        variants.append(bytes(flipped))
    for raw in variants:
        try:
            _read_all(raw)
        except PcapError as err:
            assert "\n" not in str(err)
