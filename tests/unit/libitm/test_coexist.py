"""Coexistence without a kernel: owner marks on rules, liveness, CAP_NET_ADMIN,
reading the ITM chains, reaping, queue choice, and what `itmtool status` and
`itmtool cleanup` make of the chains (iptables answered from text)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from itmtool import cleanup as cleanup_mod
from itmtool import status as status_mod
from libitm import BackendUnavailable, Hook, Interest, LabelInUse, xtables
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
def xt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeXtables:
    monkeypatch.setattr(xtables, "MARKER_DIR", tmp_path / "run")  # never the machine's
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


def test_status_lists_each_chain_once_with_its_owner(xt: FakeXtables) -> None:
    apps = {a["label"]: a for a in status_mod.nfqueue_apps(xt)}
    me = this_process("live")
    assert apps["live"] == {
        "label": "live",
        "chain": "ITM-live",
        "hook": "pre_routing",
        "queue": 4100,
        "copies": None,
        "pid": me.pid,
        "alive": True,
        "families": [4, 6],
        "interest": "tcp dport 80 | udp dport 80",
    }
    assert apps["gone"]["alive"] is False and apps["gone"]["pid"] == 999999
    assert apps["bare"]["pid"] is None and apps["bare"]["queue"] is None
    table = status_mod.nfqueue_text(list(apps.values()))
    assert re.search(rf"live\s+pre_routing\s+4100\s+-\s+{me.pid}\s+yes\s+ipv4\+ipv6", table)
    assert re.search(r"gone\s+ip_in\s+4101\s+-\s+999999\s+NO", table)
    assert "itmtool cleanup" in table


def test_status_lists_nothing_when_iptables_cannot_be_read() -> None:
    xt = Xtables(iptables="/nonexistent/iptables", ip6tables="/nonexistent/ip6tables")
    assert status_mod.nfqueue_apps(xt) == []


def _documented(name: str) -> object:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "itmtool.md").read_text()
    m = re.search(rf"<!-- json: {name} -->\s*```json\n(.*?)```", doc, re.S)
    assert m, name
    return json.loads(m.group(1))


def test_cleanup_removes_dead_and_ownerless_keeps_live(
    xt: FakeXtables, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cleanup_mod, "UNOWNED_GRACE", 0)
    xt.commands.clear()
    res = cleanup_mod.cleanup(xt)
    removed = sorted((r["chain"], r["family"], r["reason"]) for r in res["removed"])
    assert removed == [
        ("ITM-bare", 4, "no owner recorded"),
        ("ITM-bare", 6, "no owner recorded"),
        ("ITM-gone", 4, "owner gone"),
        ("ITM-gone", 6, "owner gone"),
    ]
    assert {(k["chain"], k["reason"]) for k in res["kept"]} == {("ITM-live", "owner alive")}
    deleted = {c[-1] for c in xt.commands if c[4:5] == ["-X"]}
    assert deleted == {"ITM-gone", "ITM-bare"}, "a live owner's chain is never touched"
    doc = _documented("cleanup")
    assert isinstance(doc, dict) and set(doc) == set(res)
    assert set(doc["removed"][0]) == set(res["removed"][0])
    assert "removed ITM-gone (ipv4): process 999999 is gone" in cleanup_mod.text(res)


def test_cleanup_dry_run_changes_nothing(xt: FakeXtables, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup_mod, "UNOWNED_GRACE", 0)
    xt.commands.clear()
    res = cleanup_mod.cleanup(xt, dry_run=True)
    assert len(res["removed"]) == 4
    assert all(c[-1] in ("-S", "-V") or c[1] == "list" for c in xt.commands)
    assert "would remove ITM-bare (ipv6): no owner recorded" in cleanup_mod.text(res)


def test_the_table_goes_only_if_libitm_made_it_and_it_is_empty(xt: FakeXtables) -> None:
    xt.commands.clear()
    assert not xt.drop_table_if_ours(4), "no note: the table was there before libitm"
    xtables.table_marker(4).parent.mkdir(parents=True)
    xtables.table_marker(4).write_text("created by libitm\n")
    assert xt.drop_table_if_ours(4)
    assert ["nft", "delete", "table", "ip", "mangle"] in xt.commands
    assert not xtables.table_marker(4).exists()


def test_a_process_removes_only_its_own_chain_of_a_name(xt: FakeXtables) -> None:
    xt.commands.clear()
    assert not xt.remove_chain(4, "ITM-gone", Owner(1, 2, "gone")), "another process's chain"
    assert not any(c[4:5] == ["-X"] for c in xt.commands)
    assert xt.remove_chain(4, "ITM-live", this_process("live"))
    assert ["-X", "ITM-live"] in [c[4:] for c in xt.commands]


def test_markers_of_namespaces_that_are_gone_are_pruned(tmp_path: Path) -> None:
    """A test's libitm process killed, then its namespace deleted: the table went with
    the namespace, its note under /run/libitm stayed (found after a host-tier run)."""
    from libitm.xtables import live_netns_ids, prune_markers

    markers = tmp_path / "libitm"
    markers.mkdir()
    for name in ("mangle-ipv4-netns-111", "mangle-ipv6-netns-111", "mangle-ipv4-netns-222"):
        (markers / name).write_text("created by libitm\n")
    gone = prune_markers(markers, live={"222"})
    assert sorted(p.name for p in gone) == ["mangle-ipv4-netns-111", "mangle-ipv6-netns-111"]
    assert [p.name for p in markers.iterdir()] == ["mangle-ipv4-netns-222"]
    assert prune_markers(tmp_path / "none") == []
    # this process's own namespace is always among the live ones
    own = os.readlink("/proc/self/ns/net").removeprefix("net:[").rstrip("]")
    assert own in live_netns_ids()


def test_status_says_when_it_may_not_read_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CAP_NET_ADMIN iptables cannot be read: an empty list says why
    instead of passing for 'no libitm process here'."""
    assert status_mod.nfqueue_text([], readable=True) == ""
    assert status_mod.nfqueue_text([], readable=False) == status_mod.NFQ_UNREADABLE
    monkeypatch.setattr(status_mod, "has_cap_net_admin", lambda: False)
    assert "needs CAP_NET_ADMIN" in status_mod.nfqueue_text([])
    monkeypatch.setattr(status_mod, "has_cap_net_admin", lambda: True)
    assert status_mod.nfqueue_text([]) == ""
