"""`itmtool new`: every value a person can give is checked before a file is written.

A refused value: exit 2, one line on stderr that names it, no traceback, nothing
written. Accepted edge values (the int limits of the priority, the uint limit of
the timer, port 65535, ranges) are generated; some are built W=1 against the
6.12 headers and the user applications run their own test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from itmtool import cli, new
from itmtool.matrix import ROOT, read_matrix
from tests.support.generated_app_checks import assert_user_app_passes

VENV_BIN = Path(sys.executable).parent

#: (argv after `new`, what the one line must say)
REFUSED = [
    # values
    (["kernel", "t1", "--timer-ms", "-1"], "--timer-ms -1"),
    (["user", "t1", "--timer-ms", "4294967296"], "--timer-ms 4294967296"),
    (["kernel", "t1", "--priority", "99999999999"], "--priority 99999999999"),
    (["kernel", "t1", "--priority", "-2147483649"], "--priority -2147483649"),
    (["kernel", "t1", "--priority", "2147483648"], "--priority 2147483648"),
    (["kernel", "t1", "--label", "with space"], "--label 'with space'"),
    (["user", "t1", "--label", "x" * 32], "--label 'xxxx"),
    (["kernel", "t1", "--label", 'quo"te'], "--label"),
    (["kernel", "t1", "--label=-lead"], "--label '-lead'"),
    (["kernel", "t1", "--hook", "sideways"], "--hook 'sideways'"),
    # interests
    (["kernel", "t1", "--interest", "proto=tcp,sport=80-"], "sport=80-"),
    (["kernel", "t1", "--interest", "proto=tcp,sport=-80"], "sport=-80"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=65536"], "port 65536"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=0"], "port 0"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=0-80"], "port 0"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=90-80"], "dport=90-80"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=8O"], "dport=8O"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=\uff18\uff10"], "dport=\uff18\uff10"),
    (["kernel", "t1", "--interest", "proto=tcp,dport=1e3"], "dport=1e3"),
    (["kernel", "t1", "--interest", "dport=53"], "dport=53 with no proto"),
    (["kernel", "t1", "--interest", "proto=icmp,dport=53"], "dport=53 with proto=icmp"),
    (["kernel", "t1", "--interest", "src=garbage"], "src=garbage"),
    (["kernel", "t1", "--interest", "dst=10.0.0.300"], "dst=10.0.0.300"),
    (["kernel", "t1", "--interest", "src=10.0.0.0/33"], "src=10.0.0.0/33"),
    (["kernel", "t1", "--interest", "src=fe80::1%eth0/64"], "src=fe80::1%eth0/64"),
    (["kernel", "t1", "--interest", "family=4,proto=icmpv6"], "proto=icmpv6 with IPv4"),
    (["kernel", "t1", "--interest", "dst=10.0.0.0/8,proto=icmpv6"], "proto=icmpv6 with IPv4"),
    (["kernel", "t1", "--interest", "family=6,dst=10.0.0.0/8"], "family=6 with an IPv4"),
    (["kernel", "t1", "--interest", "src=10.0.0.0/8,dst=fd00::/8"], "different address"),
    (["kernel", "t1", "--interest", "family=5"], "family=5"),
    (["kernel", "t1", "--interest", "proto=udp,proto=tcp"], "proto given twice"),
    (["kernel", "t1", "--interest", "proto=udp", "--interest", "protocol=tcp"], "given twice"),
    (["kernel", "t1", "--interest", "dport=1,proto=tcp,dport=2"], "dport given twice"),
    (["kernel", "t1", "--interest", "colour=red"], "unknown key 'colour'"),
    (["kernel", "t1", "--interest", "proto"], "--interest proto: expected key=value"),
    (["kernel", "t1", "--interest", "proto="], "--interest proto=: expected key=value"),
    (["kernel", "t1", "--interest", "proto=gre2"], "proto=gre2"),
    (["kernel", "t1", "--interest", "proto=0"], "proto=0"),
    (["kernel", "t1", "--interest", "proto=256"], "proto=256"),
    (["kernel", "t1", "--interest", "proto=²"], "proto=²"),
    # names for both kinds
    (["kernel", "Bad-Name"], "bad name 'Bad-Name'"),
    (["user", "1st"], "bad name '1st'"),
    (["user", "x" * 32], "bad name 'xxxx"),
    (["kernel", "_x"], "bad name '_x'"),
    # kernel names
    (["kernel", "itm_mod"], "itmBench's own module itm_mod"),
    (["kernel", "qos_mod"], "own module qos_mod"),
    (["kernel", "itm_test_app"], "own module itm_test_app"),
    (["kernel", "module"], "would define module_"),
    (["kernel", "skb"], "skb_init"),
    (["kernel", "itm"], "itm_app"),
    (["kernel", "veth"], "a module of Linux"),
    (["kernel", "nf_tables"], "a module of Linux"),
    (["user", "t1", "--interest", "proto=sctp,dport=9"], "libitm reads the ports of tcp and udp"),
    (["user", "t1", "--interest", "proto=dccp,sport=1-9"], "libitm reads the ports"),
    (["user", "t1", "--label", "L" * 31], "--label 'LLLL"),
    (["user", "x" * 22], "longer than 100 characters"),
    # user names
    (["user", "class"], "Python keyword"),
    (["user", "import"], "Python keyword"),
    (["user", "json"], "shadow the Python module json"),
    (["user", "argparse"], "shadow the Python module argparse"),
    (["user", "libitm"], "shadow the Python module libitm"),
    (["user", "pyroute2"], "shadow the Python module pyroute2"),
    (["user", "pytest"], "shadow the Python module pytest"),
    (["user", "conftest"], "shadow the Python module conftest"),
    (["user", "test_udp"], "pytest would collect test_udp.py"),
    (["user", "udp_test"], "pytest would collect"),
    (["user", "none"], "would not compile"),
    (["user", "true"], "would not compile"),
    (["user", "packet"], "Packet would be defined twice in the generated packet.py"),
    (["user", "write_trace"], "write_trace would be defined twice in the generated test_"),
    (["user", "application"], "Application would be defined twice in the generated"),
    (["user", "itm_loop"], "ItmLoop would be defined twice"),
    (["user", "verdict"], "Verdict would be defined twice"),
    (["user", "annotations"], "annotations would be defined twice in the generated test_"),
    (["user", "app"], "test_counts_every_packet_of_interest_offline() uses the module app and"),
    (["user", "argv"], "test_command_line_offline() uses the module argv and a variable"),
    (["user", "loop"], "uses the module loop and a variable of that name"),
    (["user", "total"], "uses the module total and a variable of that name"),
    (["user", "i"], "class I in the generated i.py is an ambiguous name"),
    (["user", "o"], "class O in the generated o.py is an ambiguous name"),
    (["user", "len"], "would hide the Python builtin len"),
    (["user", "int"], "would hide the Python builtin int"),
]


@pytest.mark.parametrize(("argv", "said"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_values(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    rc = cli.main(["new", *argv, "--dir", str(dest)])
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("itmtool: new: "), err
    assert said in lines[0], err
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_refused_value_from_the_real_command(tmp_path: Path) -> None:
    """The console script: the same one line, no traceback, nothing in the directory."""
    for argv in (
        ["kernel", "t1", "--timer-ms", "-1"],
        ["user", "json"],
        ["kernel", "t1", "--interest", "proto=tcp,sport=80-"],
    ):
        res = subprocess.run(
            [str(VENV_BIN / "itmtool"), "new", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert list(tmp_path.iterdir()) == []


def test_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["new", "user", "t1", "--dir", str(f)]) == 2
    assert "it is a file" in capsys.readouterr().err
    assert f.read_text() == "x"


def test_own_modules_list_covers_the_tree() -> None:
    """OWN_MODULES holds every obj-m of kernel/*/Kbuild."""
    found = set()
    for kbuild in ROOT.glob("kernel/*/Kbuild"):
        for line in kbuild.read_text().splitlines():
            if line.startswith("obj-m"):
                found |= {w[: -len(".o")] for w in line.split() if w.endswith(".o")}
    assert found and found <= new.OWN_MODULES


def test_installed_kernel_modules_reads_modules_order(tmp_path: Path) -> None:
    rel = tmp_path / "9.9.9-test"
    rel.mkdir()
    (rel / "modules.order").write_text("kernel/net/a/foo-bar.ko\nkernel/drivers/baz.ko.xz\n")
    (rel / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    names = new.installed_kernel_modules.__wrapped__(tmp_path)
    assert names == {"foo_bar": "9.9.9-test", "baz": "9.9.9-test", "ext4": "9.9.9-test"}


@pytest.mark.parametrize(
    ("items", "expect"),
    [
        (["proto=tcp,dport=65535"], {"protocol": 6, "dport": (65535, 65535)}),
        (["proto=udp,sport=1-65535"], {"sport": (1, 65535)}),
        (["proto=udp,dport=80-80"], {"dport": (80, 80)}),
        (["proto=UDP,family=IPv4"], {"protocol": 17, "family": 4}),
        (["proto=dccp,dport=5004"], {"protocol": 33}),
        (["proto=icmp6"], {"protocol": 58, "family": 6}),
        (["proto=icmpv6"], {"protocol": 58, "family": 6}),
        (["family=6,proto=icmp"], {"protocol": 58, "family": 6}),  # as libitm reads it
        (["proto=255"], {"protocol": 255}),
        (["proto=6,dport=22"], {"protocol": 6}),
        (["src=10.1.2.3/8"], {"src": "10.0.0.0/8", "family": 4}),
        (["dst=fd00::1"], {"dst": "fd00::1/128", "family": 6}),
        (["src=0.0.0.0/0"], {"src": "0.0.0.0/0", "family": 4}),
        (["proto=tcp, dport=80 ,", " sport=1024-65535"], {"sport": (1024, 65535)}),
    ],
)
def test_accepted_interests(items: list[str], expect: dict[str, object]) -> None:
    spec = new.parse_interest(items)
    for key, value in expect.items():
        assert getattr(spec, key) == value, key


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("kernel", "int"),  # a C keyword is only ever a prefix in C: int_class, ...
        ("kernel", "sock"),
        ("kernel", "x" * 31),
        ("user", "match"),  # a soft keyword imports fine
        ("user", "x" * 21),  # the longest whose generated lines fit in 100 characters
        ("user", "a1"),
    ],
)
def test_accepted_names(kind: str, name: str, tmp_path: Path) -> None:
    render = new.render_kernel if kind == "kernel" else new.render_user
    files = render(new.AppSpec(name), tmp_path / name)
    assert files


#: 6.12 (the newest kernel of the matrix when it is not listed)
KERNEL = next((k for k in read_matrix() if k.name == "6.12"), read_matrix()[-1])

#: edge values a module must build from W=1-clean
KERNEL_EDGES = [
    ("edge_min", "pre", ["proto=tcp,dport=65535"], -(2**31), 0, "lbl.with-dash_1"),
    ("edge_max", "post", ["family=6,proto=icmp"], 2**31 - 1, 2**32 - 1, "L" * 31),
    ("int", "fwd", ["proto=udplite,sport=1-65535,dst=10.0.0.0/8"], 0, 1, ""),
    ("edge_dccp", "out", ["proto=dccp,dport=5004-5005", "src=fd00::/8"], 7, 1000, ""),
]


def test_kernel_edge_values_build_w1_clean(tmp_path: Path) -> None:
    kernel = KERNEL
    symvers = new.core_symvers(kernel)
    for name, hook, interest, priority, timer_ms, label in KERNEL_EDGES:
        spec = new.AppSpec(name, hook, new.parse_interest(interest), priority, timer_ms, label)
        new.render_kernel(spec, tmp_path / name)
        res = new.build_module(kernel, tmp_path / name, symvers=symvers)
        assert res.returncode == 0, res.log[-3000:]
        assert not res.diagnostics, "\n".join(res.diagnostics)
        assert (tmp_path / name / f"{name}.ko").exists()
        c = (tmp_path / name / f"{name}.c").read_text()
        assert f"static int priority = {priority};" in c or priority == 0
    c = (tmp_path / "edge_max" / "edge_max.c").read_text()
    assert ".protocol = IPPROTO_ICMPV6," in c and ".family = AF_INET6," in c


USER_EDGES = [
    ("edge_user_max", ["proto=tcp,dport=65535"], 2**31 - 1, 2**32 - 1, "L" * 30),
    ("edge_user_min", ["family=6,proto=icmp"], -(2**31), 1, "lbl.with-dash_1"),
    ("match", ["proto=udp,sport=1-65535"], 0, 0, ""),
    ("path", ["proto=tcp"], 0, 1000, ""),  # a parameter of write_trace(), harmless there
    ("w", ["proto=udp"], 0, 1000, ""),  # a local of write_trace(), harmless there
]


@pytest.mark.parametrize(
    ("name", "interest", "priority", "timer_ms", "label"),
    USER_EDGES,
    ids=[e[0] for e in USER_EDGES],
)
def test_user_edge_values_pass_their_own_test(
    tmp_path: Path, name: str, interest: list[str], priority: int, timer_ms: int, label: str
) -> None:
    d = tmp_path / name
    spec = new.AppSpec(name, "in", new.parse_interest(interest), priority, timer_ms, label)
    new.render_user(spec, d)
    assert_user_app_passes(d, name)
