"""libitm.control.rio: the rio qdisc's netlink options and dump, byte for byte.

The attribute numbers and the xstats layout are read from the uapi header the
module is built with (kernel/include/uapi/linux/sch_rio.h), so the Python side
and the C side cannot drift apart silently.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest

from itmtool import cli
from libitm.control import rio

ROOT = Path(__file__).resolve().parents[2]
UAPI = (ROOT / "kernel/include/uapi/linux/sch_rio.h").read_text()


def _uapi_enum() -> list[str]:
    body = re.search(r"enum \{\n(.*?)\n\};", UAPI, re.S)
    assert body
    return re.findall(r"^\s*(TCA_RIO_\w+),", body.group(1), re.M)


def _tlvs(data: bytes) -> dict[int, bytes]:
    """A flat netlink attribute stream as {type: payload}."""
    out, off = {}, 0
    while off < len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        out[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _encoded_options(cfg: rio.RioConfig) -> dict[int, bytes]:
    msg = rio.rio_tcmsg()
    msg["index"] = 7
    msg["parent"] = rio.TC_H_ROOT
    msg["attrs"] = [("TCA_KIND", "rio"), ("TCA_OPTIONS", {"attrs": rio.encode_options(cfg)})]
    msg.encode()
    raw = bytes(msg.data[16 + 20 :])  # nlmsghdr, tcmsg
    top = _tlvs(raw)
    assert top[1] == b"rio\0"
    options_type = struct.unpack_from("=H", raw, 4 + len(b"rio\0") + 2)[0]
    assert options_type == 2 | 0x8000  # TCA_OPTIONS | NLA_F_NESTED: the kernel's parser is strict
    return _tlvs(top[2])


def test_attribute_numbers_are_the_uapi_headers() -> None:
    names = [name for name, _ in rio.rio_options.nla_map]
    assert names == _uapi_enum()


def test_xstats_layout_is_the_uapi_headers() -> None:
    body = re.search(r"struct tc_rio_xstats \{(.*?)\};", UAPI, re.S)
    assert body
    fields = re.findall(r"__u(64|32)\s+(\w+);", body.group(1))
    assert [name for _, name in fields] == list(rio.XSTATS_FIELDS)
    assert rio.XSTATS.size == sum(int(bits) // 8 for bits, _ in fields)


def test_default_config_on_the_wire() -> None:
    num = {name: i for i, name in enumerate(_uapi_enum())}
    opts = _encoded_options(rio.RioConfig())
    u32 = {k: struct.unpack("=I", v)[0] for k, v in opts.items() if len(v) == 4}
    assert u32[num["TCA_RIO_LIMIT"]] == 1000
    assert opts[num["TCA_RIO_WLOG"]][0] == 9
    assert (u32[num["TCA_RIO_IN_MIN"]], u32[num["TCA_RIO_IN_MAX"]]) == (40, 70)
    assert (u32[num["TCA_RIO_OUT_MIN"]], u32[num["TCA_RIO_OUT_MAX"]]) == (10, 30)
    assert u32[num["TCA_RIO_IN_MAX_P"]] == round(0.02 * 2**32)
    assert u32[num["TCA_RIO_OUT_MAX_P"]] == round(0.1 * 2**32)
    assert u32[num["TCA_RIO_FLAGS"]] == 0
    assert num["TCA_RIO_DSCP"] not in opts  # TOS 0x10 unless a DSCP is given
    assert num["TCA_RIO_STAB"] not in opts


def test_dscp_ecn_and_stab_on_the_wire() -> None:
    num = {name: i for i, name in enumerate(_uapi_enum())}
    cell, stab = rio.idle_damping(9, 1000, 10_000_000)
    cfg = rio.RioConfig(dscp=18, ecn=True, scell_log=cell, stab=stab)
    opts = _encoded_options(cfg)
    assert opts[num["TCA_RIO_DSCP"]][0] == 18
    assert struct.unpack("=I", opts[num["TCA_RIO_FLAGS"]])[0] == rio.TC_RIO_ECN
    assert opts[num["TCA_RIO_SCELL_LOG"]][0] == cell
    assert opts[num["TCA_RIO_STAB"]] == stab


def test_max_p_one_is_the_largest_u32() -> None:
    assert rio.RedProfile(1, 2, 1.0).max_p_fixed == 2**32 - 1


def test_a_dump_decodes_to_the_config_and_counters() -> None:
    cfg = rio.RioConfig(limit=200, wlog=3, dscp=10, ecn=True, scell_log=4)
    counters = [*range(1, 9), 5, 9, 2, 3]
    msg = rio.rio_tcmsg()
    msg["index"] = 1  # lo
    msg["handle"] = 0x10000
    msg["parent"] = rio.TC_H_ROOT
    msg["attrs"] = [
        ("TCA_KIND", "rio"),
        ("TCA_OPTIONS", {"attrs": rio.encode_options(cfg)}),
        ("TCA_STATS", {"bytes": 1500, "packets": 3, "drop": 4, "qlen": 3, "backlog": 300}),
        ("TCA_XSTATS", rio.XSTATS.pack(*counters)),
    ]
    msg.encode()
    back = rio.rio_tcmsg(bytes(msg.data))
    back.decode()
    st = rio._status(back)
    assert st.handle == "1:0" and st.parent == "root"
    assert st.config.limit == 200 and st.config.wlog == 3 and st.config.dscp == 10
    assert st.config.ecn and st.config.scell_log == 4
    assert st.config.in_profile.min == 40
    assert math.isclose(st.config.out_profile.max_p, 0.1, rel_tol=1e-6)
    assert st.counters["packets"] == 3 and st.counters["drop"] == 4
    assert st.xstats == dict(zip(rio.XSTATS_FIELDS, counters, strict=True))


def test_idle_damping_is_tcs_table() -> None:
    # 1000-byte packets at 8 Mbit/s: 1000 us each; W = 2^-9
    cell, stab = rio.idle_damping(9, 1000, 8_000_000)
    per_us = -math.log(1 - 2**-9) / 1000
    assert 31 / per_us / (1 << cell) < 512 <= 31 / per_us / (1 << (cell - 1))
    assert len(stab) == 256 and stab[0] == 0 and stab[255] == 31
    assert stab[100] == min(int((100 << cell) * per_us), 31)
    assert list(stab) == sorted(stab)


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        (rio.RioConfig(limit=0), "limit"),
        (rio.RioConfig(wlog=32), "wlog"),
        (rio.RioConfig(dscp=64), "dscp"),
        (rio.RioConfig(in_profile=rio.RedProfile(50, 40, 0.1)), "in: need 0 <= min <= max"),
        (rio.RioConfig(out_profile=rio.RedProfile(1, 2, 0.0)), "out: max_p"),
        (rio.RioConfig(wlog=25, in_profile=rio.RedProfile(1, 200, 0.1)), "too large for wlog"),
    ],
)
def test_bad_configs_are_refused_before_sending(cfg: rio.RioConfig, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        rio.encode_options(cfg)


@pytest.mark.parametrize("handle", ["1", "x:1", "1:2:3", "100000:0"])
def test_bad_handles(handle: str) -> None:
    with pytest.raises(ValueError, match="not a tc handle"):
        rio.parse_handle(handle)


def test_handles() -> None:
    assert rio.parse_handle("root") == rio.TC_H_ROOT
    assert rio.parse_handle("1:") == 0x10000
    assert rio.parse_handle("10:a") == 0x10000A


@pytest.mark.parametrize(
    "argv",
    [
        ["rio", "set", "eth0", "--in", "40,70"],
        ["rio", "set", "eth0", "--out", "30,10,0.1"],
        ["rio", "set", "eth0", "--out", "10,30,1.5"],
        ["rio", "set", "eth0", "--bandwidth", "fast"],
        ["rio"],
    ],
)
def test_bad_cli_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("itmtool: rio")


def test_rate_units() -> None:
    from itmtool.rio import rate

    assert rate("100mbit") == 100_000_000
    assert rate("1gbit") == 10**9
    assert rate("125kbps") == 1_000_000
