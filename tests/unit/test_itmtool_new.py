"""`itmtool new`: what the generator writes, rendered into temporary directories.

The generated C must be clean under checkpatch --strict (its build with W=1 and
sparse on every kernel is in tests/host/test_itmtool_generated_build.py, its
loading in tests/kernel/test_generated_modules.py); the generated Python must
pass ruff, ruff format, mypy --strict and its own test (offline, on a pcap it
generates).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itmtool import buildmods, cli, new
from itmtool.errors import ToolError
from itmtool.matrix import ROOT
from tests.support.generated_app_checks import assert_user_app_passes

KERNEL_CASES = [
    ("count_fwd", "fwd", ["proto=udp,dport=5000-5010"]),
    ("v4_web", "post", ["family=4,proto=tcp,dst=10.77.2.0/24,dport=80"]),
    ("v6_src", "pre", ["family=6", "src=fd77:1::/64,proto=icmpv6"]),
    ("everything", "ip_in", []),
]


def test_interest_parsing() -> None:
    spec = new.parse_interest(["proto=udp,dport=53", "dst=10.0.0.0/8"])
    assert (spec.family, spec.protocol, spec.dst, spec.dport) == (4, 17, "10.0.0.0/8", (53, 53))
    assert spec.describe() == "ipv4 udp dst 10.0.0.0/8 dport 53"
    assert new.parse_interest([]).describe() == "every packet"
    v6 = new.parse_interest(["src=fd00::1/64"])
    assert v6.family == 6 and v6.src == "fd00::/64"


@pytest.mark.parametrize(
    ("items", "said"),
    [
        (["dport=53"], "ports need proto"),
        (["proto=udp,dport=9-1"], "dport=9-1: the range is empty"),
        (["proto=udp,dport=70000"], "port 70000 is not in 1..65535"),
        (["proto=gre2"], "proto=gre2: one of tcp"),
        (["family=5"], "family=5: 4 or 6"),
        (["family=6,dst=10.0.0.0/8"], "family=6 with an IPv4 address"),
        (["src=10.0.0.0/8,dst=fd00::/8"], "different address families"),
        (["colour=red"], "unknown key 'colour'"),
        (["proto"], "expected key=value"),
        (["dst=10.0.0.300"], "dst=10.0.0.300: an IPv4 or IPv6 address"),
    ],
)
def test_bad_interests(items: list[str], said: str) -> None:
    with pytest.raises(ToolError) as exc:
        new.parse_interest(items)
    assert exc.value.code == 2
    assert said in str(exc.value)


@pytest.mark.parametrize("name", ["Bad", "1st", "with-dash", "x" * 32, ""])
def test_bad_names(name: str) -> None:
    with pytest.raises(ToolError) as exc:
        new.AppSpec(name)
    assert exc.value.code == 2


def test_bad_hook() -> None:
    with pytest.raises(ToolError) as exc:
        new.AppSpec("x", "sideways")
    assert "hooks: pre, in, fwd, out, post" in str(exc.value)


def test_kernel_skeleton_content(tmp_path: Path) -> None:
    spec = new.AppSpec("count_fwd", "fwd", new.parse_interest(["proto=udp,dport=5000"]))
    files = new.render_kernel(spec, tmp_path / "count_fwd")
    assert sorted(f.name for f in files) == ["Kbuild", "Makefile", "README.md", "count_fwd.c"]
    c = (tmp_path / "count_fwd" / "count_fwd.c").read_text()
    assert '#include "itm.h"' in c
    for cb in ("class_func", "log_func", "process_func", "update_func", "control_func"):
        assert f".{cb} = count_fwd_" in c, cb
        assert f" * {cb} - " in c, f"{cb} has no comment on what it is for"
    assert "struct itm_timer timer;" in c and "itm_register_timer(&app.timer" in c
    assert "itm_register_hook(ITM_IP_FORWARD, &app.info)" in c
    assert ".protocol = IPPROTO_UDP," in c and ".dport_min = 5000," in c
    assert "atomic64_inc(&a->packets)" in c
    kbuild = (tmp_path / "count_fwd" / "Kbuild").read_text()
    assert f"ITM_INCLUDE ?= {ROOT / 'kernel' / 'include'}" in kbuild
    assert "obj-m := count_fwd.o" in kbuild
    make = (tmp_path / "count_fwd" / "Makefile").read_text()
    assert "KBUILD_EXTRA_SYMBOLS=$(ITM_SYMVERS)" in make
    assert "$(ITM_ROOT)/build/$(KRELEASE)/src/Module.symvers" in make


def test_kernel_skeleton_address_interest(tmp_path: Path) -> None:
    spec = new.AppSpec("v6_src", "pre", new.parse_interest(["src=fd77:1::/64,proto=icmpv6"]))
    new.render_kernel(spec, tmp_path / "v6")
    c = (tmp_path / "v6" / "v6_src.c").read_text()
    assert ".family = AF_INET6," in c
    assert ".saddr.s6_addr = {" in c and "0xfd, 0x77, 0x00, 0x01" in c
    assert "0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff," in c  # the /64 mask
    spec4 = new.AppSpec("v4", "post", new.parse_interest(["dst=10.77.2.0/24"]))
    new.render_kernel(spec4, tmp_path / "v4")
    c4 = (tmp_path / "v4" / "v4.c").read_text()
    assert ".daddr.s6_addr = { 0x0a, 0x4d, 0x02, 0x00 }," in c4
    assert ".dmask.s6_addr = { 0xff, 0xff, 0xff, 0x00 }," in c4


def test_generated_c_is_checkpatch_strict_clean(tmp_path: Path) -> None:
    sources = []
    for name, hook, interest in KERNEL_CASES:
        spec = new.AppSpec(name, hook, new.parse_interest(interest), priority=3, timer_ms=0)
        new.render_kernel(spec, tmp_path / name)
        sources.append(tmp_path / name / f"{name}.c")
    spec = new.AppSpec("long_name_for_alignment_check", "out", timer_ms=250)
    new.render_kernel(spec, tmp_path / "long")
    sources.append(tmp_path / "long" / f"{spec.name}.c")
    problems = buildmods.style(sources)
    assert not problems, "\n".join(problems)


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    spec = new.AppSpec("twice")
    new.render_user(spec, tmp_path / "twice")
    with pytest.raises(ToolError) as exc:
        new.render_user(spec, tmp_path / "twice")
    assert "--force" in exc.value.hint
    new.render_user(spec, tmp_path / "twice", force=True)


@pytest.mark.parametrize(
    ("name", "hook", "interest", "timer_ms"),
    [
        ("udp_counter", "fwd", ["proto=udp,dport=5000-5010"], 1000),
        ("v6_pings", "in", ["family=6,proto=icmp,src=fd00:1::/64"], 100),
        ("all_out", "post", [], 0),
    ],
)
def test_generated_user_app_is_lint_clean_and_passes_its_own_test(
    tmp_path: Path, name: str, hook: str, interest: list[str], timer_ms: int
) -> None:
    d = tmp_path / name
    spec = new.AppSpec(name, hook, new.parse_interest(interest), timer_ms=timer_ms)
    files = new.render_user(spec, d)
    assert sorted(f.name for f in files) == sorted(
        ["README.md", f"{name}.py", f"test_{name}.py", "pyproject.toml"]
    )
    assert_user_app_passes(d, name)


def test_new_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "dns"
    rc = cli.main(
        [
            "new",
            "kernel",
            "count_dns",
            "--hook",
            "fwd",
            "--interest",
            "proto=udp,dport=53",
            "--dir",
            str(d),
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "kernel" and doc["name"] == "count_dns" and doc["dir"] == str(d)
    assert str(d / "count_dns.c") in doc["files"]
    rc = cli.main(["new", "user", "Bad-Name", "--dir", str(tmp_path / "x")])
    assert rc == 2
    assert "bad name" in capsys.readouterr().err
    rc = cli.main(["new", "kernel", "k", "--interest", "dport=1", "--dir", str(tmp_path / "k")])
    assert rc == 2
    assert "ports need proto" in capsys.readouterr().err
