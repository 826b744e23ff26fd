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
from tests.support.fake_rio_socket import FakeRioSocket

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


def _encoded_options(cfg: rio.RioConfig, **clear: bool) -> dict[int, bytes]:
    msg = rio.rio_tcmsg()
    msg["index"] = 7
    msg["parent"] = rio.TC_H_ROOT
    msg["attrs"] = [
        ("TCA_KIND", "rio"),
        ("TCA_OPTIONS", {"attrs": rio.encode_options(cfg, **clear)}),
    ]
    return _options_of(msg)


def _options_of(msg: rio.rio_tcmsg) -> dict[int, bytes]:
    """The TCA_RIO_* attributes of an RTM_NEWQDISC message, as the kernel reads them."""
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


def test_flag_values_are_the_uapi_headers() -> None:
    defined = dict(re.findall(r"^#define\s+(TC_RIO_\w+)\s+(0x[0-9a-f]+)", UAPI, re.M))
    for name in ("TC_RIO_ECN", "TC_RIO_CLEAR_DSCP", "TC_RIO_CLEAR_STAB"):
        assert getattr(rio, name) == int(defined[name], 16), name


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
    assert num["TCA_RIO_CLEAR"] not in opts  # a change keeps the DSCP and the table


def test_dscp_ecn_and_stab_on_the_wire() -> None:
    num = {name: i for i, name in enumerate(_uapi_enum())}
    cell, stab = rio.idle_damping(9, 1000, 10_000_000)
    cfg = rio.RioConfig(dscp=18, ecn=True, scell_log=cell, stab=stab)
    opts = _encoded_options(cfg)
    assert opts[num["TCA_RIO_DSCP"]][0] == 18
    assert struct.unpack("=I", opts[num["TCA_RIO_FLAGS"]])[0] == rio.TC_RIO_ECN
    assert opts[num["TCA_RIO_SCELL_LOG"]][0] == cell
    assert opts[num["TCA_RIO_STAB"]] == stab


@pytest.mark.parametrize(
    ("clear", "bits"),
    [
        ({"clear_dscp": True}, rio.TC_RIO_CLEAR_DSCP),
        ({"clear_stab": True}, rio.TC_RIO_CLEAR_STAB),
        ({"clear_dscp": True, "clear_stab": True}, 3),
    ],
)
def test_clearing_the_dscp_and_the_table_on_the_wire(clear: dict[str, bool], bits: int) -> None:
    num = {name: i for i, name in enumerate(_uapi_enum())}
    opts = _encoded_options(rio.RioConfig(), **clear)
    assert struct.unpack("=I", opts[num["TCA_RIO_CLEAR"]])[0] == bits
    assert num["TCA_RIO_DSCP"] not in opts and num["TCA_RIO_STAB"] not in opts


@pytest.mark.parametrize(
    ("cfg", "clear", "words"),
    [
        (rio.RioConfig(dscp=18), {"clear_dscp": True}, "dscp 18 given and cleared"),
        (
            rio.RioConfig(scell_log=4, stab=bytes(256)),
            {"clear_stab": True},
            "table given and cleared",
        ),
    ],
)
def test_a_value_and_its_clearing_together_are_refused(
    cfg: rio.RioConfig, clear: dict[str, bool], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        rio.encode_options(cfg, **clear)


def test_max_p_one_is_the_largest_u32() -> None:
    assert rio.RedProfile(1, 2, 1.0).max_p_fixed == 2**32 - 1


def test_max_p_below_the_kernels_resolution_is_refused() -> None:
    """max_p is sent as a fraction of 2^32: below 2^-32 it would be 0, which the kernel refuses."""
    with pytest.raises(ValueError, match=r"out: max_p 1e-12 .* smallest accepted is 2\^-32"):
        rio.encode_options(rio.RioConfig(out_profile=rio.RedProfile(1, 2, 1e-12)))
    smallest = rio.RedProfile(1, 2, 2.33e-10)  # as the message writes it
    smallest.check("out")
    assert smallest.max_p_fixed == 1 == rio.RedProfile(1, 2, rio.MAX_P_MIN).max_p_fixed


def test_a_dump_decodes_to_the_config_and_counters() -> None:
    cell, stab = rio.idle_damping(3, 1000, 10_000_000)
    cfg = rio.RioConfig(limit=200, wlog=3, dscp=10, ecn=True, scell_log=cell, stab=stab)
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
    assert st.config.ecn and st.config.scell_log == cell
    assert st.config.stab == stab  # the kernel dumps the table it has
    assert st.as_dict()["config"]["idle_table"] is True
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
        (rio.RioConfig(scell_log=4, stab=bytes([32]) * 256), "stab entries"),
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


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--dscp", "18", "--no-dscp"], "argument --no-dscp: not allowed with argument --dscp"),
        (
            ["--no-bandwidth", "--bandwidth", "10mbit"],
            "argument --bandwidth: not allowed with argument --no-bandwidth",
        ),
        (["--out", "10,30,1e-12"], "smallest accepted is 2^-32 (2.33e-10)"),
        (["--in", "40,70,1e-10"], "smallest accepted is 2^-32 (2.33e-10)"),
    ],
)
def test_contradictions_and_a_vanishing_max_p_exit_2_with_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything is sent: one line saying why (and the usual --help hint)."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["rio", "set", "eth0", *argv])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("itmtool: rio: set: ") and words in lines[0]
    assert lines[1:] == ["itmtool: see 'itmtool rio set --help'"]


@pytest.mark.parametrize(
    ("argv", "bits"),
    [
        ([], None),
        (["--no-dscp"], rio.TC_RIO_CLEAR_DSCP),
        (["--no-bandwidth"], rio.TC_RIO_CLEAR_STAB),
        (["--no-dscp", "--no-bandwidth", "--ecn"], 3),
    ],
)
def test_set_sends_what_to_clear(
    argv: list[str], bits: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    num = {name: i for i, name in enumerate(_uapi_enum())}
    monkeypatch.setattr(rio, "NetlinkSocket", FakeRioSocket)
    FakeRioSocket.sent = []
    assert cli.main(["rio", "set", "lo", *argv]) == 0
    [msg] = FakeRioSocket.sent
    opts = _options_of(msg)
    got = opts.get(num["TCA_RIO_CLEAR"])
    assert (None if got is None else struct.unpack("=I", got)[0]) == bits
    assert num["TCA_RIO_DSCP"] not in opts and num["TCA_RIO_STAB"] not in opts


def test_rate_units() -> None:
    from itmtool.rio import rate

    assert rate("100mbit") == 100_000_000
    assert rate("1gbit") == 10**9
    assert rate("125kbps") == 1_000_000
