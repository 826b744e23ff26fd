"""Owner marks on rules, liveness, CAP_NET_ADMIN, reading the ITM chains, queue choice."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from libitm import BackendUnavailable, Hook, Interest, LabelInUse
from libitm.backends.nfqueue import choose_queues
from libitm.owners import Owner, has_cap_net_admin, parse_comment, start_time, this_process
from libitm.xtables import Xtables, describe_rule, queue_numbers


def _proc(tmp: Path, pid: int, start: int, comm: str = "python3") -> Path:
    d = tmp / str(pid)
    d.mkdir(parents=True)
    fields = ["S", "1", "1", "1", "0", "-1", "0"] + ["0"] * 12 + [str(start), "0"]
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    return tmp


def test_comment_round_trip() -> None:
    owner = Owner(1234, 98765, "qos ctl")
    assert owner.comment() == "itm owner=1234 start=98765 label=qos ctl"
    assert parse_comment(owner.comment()) == owner
    assert parse_comment("someone else's rule") is None
    assert parse_comment("itm owner=x start=1 label=a") is None


def test_comment_fits_iptables() -> None:
    assert len(Owner(1, 2, "é" * 300).comment().encode()) <= 255


def test_start_time_reads_field_22_past_odd_command_names(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 42, 555, comm="a) b (c")
    assert start_time(42, proc) == 555
    assert start_time(43, proc) is None


def test_a_recycled_pid_is_not_the_owner(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 42, 555)
    assert Owner(42, 555, "x").alive(proc)
    assert not Owner(42, 554, "x").alive(proc), "same pid, another start: another process"
    assert not Owner(7, 555, "x").alive(proc)


def test_this_process_is_alive() -> None:
    me = this_process("t")
    assert me.pid == os.getpid() and me.alive()
    assert me.same_process(this_process("other label"))


def test_cap_net_admin_from_cap_eff(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    status = tmp_path / "self" / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000001000\n")
    assert has_cap_net_admin(tmp_path)
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    assert not has_cap_net_admin(tmp_path)
    status.write_text("Name:\tx\nCapEff:\t000001ffffffefff\n")
    assert not has_cap_net_admin(tmp_path), "every capability but CAP_NET_ADMIN"


def test_label_in_use_is_a_backend_error_naming_the_pid() -> None:
    err = LabelInUse("twin", 4242)
    assert isinstance(err, BackendUnavailable)
    assert err.pid == 4242 and err.label == "twin"
    assert str(err).startswith("label 'twin' is in use by process 4242")


def test_queue_numbers_of_rules() -> None:
    assert queue_numbers(["-A", "X", "-j", "NFQUEUE", "--queue-num", "7"]) == {7}
    assert queue_numbers(["-A", "X", "-j", "NFQUEUE", "--queue-balance", "3:5"]) == {3, 4, 5}
    assert queue_numbers(["-A", "X", "-j", "NFQUEUE"]) == {0}
    assert queue_numbers(["-A", "X", "-j", "ACCEPT", "--queue-num", "7"]) == set()


def test_choose_queues_leaves_out_named_and_held_numbers() -> None:
    assert choose_queues(4100, {4100, 4102}, {4101}, span=5) == [4103, 4104]
    assert choose_queues(65534, set(), set()) == [65534, 65535]


_LIVE = '-m comment --comment "itm owner={me} start={start} label=live"'
_GONE = '-m comment --comment "itm owner=999999 start=1 label=gone"'
_Q = "-j NFQUEUE --queue-num {q} --queue-bypass"
SAVED = "\n".join(
    [
        "-P PREROUTING ACCEPT",
        "-P INPUT ACCEPT",
        "-N ITM-live",
        "-N ITM-gone",
        "-N ITM-bare",
        "-N OTHER",
        f"-A PREROUTING {_LIVE} -j ITM-live",
        f"-A INPUT {_GONE} -j ITM-gone",
        "-A INPUT -p udp -j NFQUEUE --queue-num 9",
        f"-A ITM-live -p tcp -m tcp --dport 80 {_LIVE} {_Q.format(q=4100)}",
        f"-A ITM-live -p udp -m udp --dport 80 {_LIVE} {_Q.format(q=4100)}",
        f"-A ITM-gone -s 10.0.0.0/8 {_GONE} {_Q.format(q=4101)}",
    ]
)


class FakeXtables(Xtables):
    """An Xtables whose commands answer from text and are recorded, never run."""

    def __init__(self, saved: str) -> None:
        super().__init__()
        self.saved = saved

    def _exec(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(cmd)
        out = self.saved if cmd[-1] == "-S" and cmd[3] == "mangle" else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")


@pytest.fixture
def xt() -> FakeXtables:
    me = this_process("live")
    return FakeXtables(SAVED.replace("{me}", str(me.pid)).replace("{start}", str(me.start)))


def test_itm_chains_with_owner_hook_queue_interest(xt: FakeXtables) -> None:
    chains = xt.itm_chains(4)
    assert set(chains) == {"ITM-live", "ITM-gone", "ITM-bare"}
    live = chains["ITM-live"]
    assert live.owner == this_process("live") and live.owner.alive()
    assert live.hooks == [Hook.PRE_ROUTING] and live.queues == {4100}
    assert live.interest_text() == "tcp dport 80 | udp dport 80"
    gone = chains["ITM-gone"]
    assert gone.owner is not None and gone.owner.pid == 999999 and not gone.owner.alive()
    assert gone.hooks == [Hook.IP_IN] and gone.interest_text() == "src 10.0.0.0/8"
    assert chains["ITM-bare"].owner is None


def test_reap_removes_only_the_dead_owners_chain(xt: FakeXtables) -> None:
    xt.commands.clear()
    dead = xt.reap(4)
    assert [c.name for c in dead] == ["ITM-gone"]
    changes = [c[4:] for c in xt.commands if c[-1] != "-S"]
    assert changes == [
        ["-D", "INPUT", "-m", "comment", "--comment", "itm owner=999999 start=1 label=gone",
         "-j", "ITM-gone"],
        ["-F", "ITM-gone"],
        ["-X", "ITM-gone"],
    ]  # fmt: skip


def test_queues_in_use_counts_every_nfqueue_rule(xt: FakeXtables) -> None:
    assert xt.queues_in_use(4) == {9, 4100, 4101}


def test_install_marks_every_rule_with_its_owner(xt: FakeXtables) -> None:
    xt.commands.clear()
    owner = Owner(1, 2, "l")
    xt.install(4, "ITM-l", Hook.IP_OUT, Interest(dport=53), 4107, owner)
    rules = [c[4:] for c in xt.commands]
    assert rules[0] == ["-N", "ITM-l"]
    assert len(rules) == 4  # the chain, tcp and udp rules, the jump
    for r in rules[1:]:
        assert r[r.index("--comment") + 1] == "itm owner=1 start=2 label=l"
    assert rules[-1][:2] == ["-A", "OUTPUT"] and rules[-1][-2:] == ["-j", "ITM-l"]


def test_describe_rule() -> None:
    assert describe_rule(["-p", "17", "-d", "10.0.0.0/8", "--sport", "1:9"]) == (
        "udp dst 10.0.0.0/8 sport 1-9"
    )
    assert describe_rule(["-j", "NFQUEUE"]) == "all"
