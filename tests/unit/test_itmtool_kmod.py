"""`itmtool load` / `unload` decisions against a fake machine (no root, no kernel).

The fake keeps /proc, /sys/module and a checkout in a temporary directory and
answers modinfo/insmod/rmmod like the kernel would, so the error paths a new
user meets are tried end to end through the command line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from itmtool import cli, kmod
from itmtool.errors import ToolError
from libitm.control.client import STAT_NAMES, App, ItmControlError, ItmNotLoaded
from tests.support.fake_itm_control import FakeControl
from tests.support.fake_kmod_machine import MODINFO, RELEASE, FakeMachine


def _app(label: str, owner: str, type_: str = "kernel", pid: int = 0) -> App:
    return App(
        label, type_, "ip_forward", 0, True, pid, owner, 0, 1, {}, dict.fromkeys(STAT_NAMES, 0)
    )


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path)


def _cli(
    machine: FakeMachine,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    apps: list[App] | None = None,
) -> int:
    monkeypatch.setattr(kmod, "Host", lambda: machine.host())
    monkeypatch.setattr(kmod, "_default_control", lambda: FakeControl(apps or []))
    return cli.main(argv)


def test_loading_on_a_kernel_without_module_support(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = FakeMachine(tmp_path, modules=False)
    with pytest.raises(ToolError) as exc:
        kmod.load("itm_mod", host=m.host())
    assert exc.value.code == 6
    assert "cannot load modules" in exc.value.message
    assert "itmtool vm" in exc.value.hint
    assert m.tools_called() == []


def test_this_machines_kernel_is_refused_when_it_has_no_module_support(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real machine: on a kernel without /proc/modules, exit 6 and the way out."""
    host = kmod.Host()
    rc = cli.main(["load", "itm_mod"])
    err = capsys.readouterr().err
    if host.module_support():
        assert "cannot load modules" not in err
    else:
        assert rc == 6
        assert "cannot load modules" in err and "itmtool vm" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("name", ["a b", "../etc", "x" * 80, "mod;rm"])
def test_bad_module_name(
    machine: FakeMachine,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli(machine, ["load", name], monkeypatch) == 5
    err = capsys.readouterr().err
    assert "bad module name" in err or "no such module file" in err
    assert machine.tools_called() == []


def test_unknown_module_name_lists_ours(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(machine, ["load", "itm_modd"], monkeypatch) == 5
    err = capsys.readouterr().err
    assert "no module called 'itm_modd'" in err and "itm_mod" in err and "count_udp" in err


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("bogus=1", "has no parameter 'bogus'"),
        ("nf_priority=high", "is not a int"),
        ("init_netns=maybe", "is not a bool"),
        ("nf_priority", "expected name=value"),
        # found in UML: these reached insmod (exit 1, 'Numerical result out of range')
        ("nf_priority=99999999999", "is not a int (-2147483648..2147483647)"),
        ("nf_priority=1_000", "is not a int"),  # Python's int() reads it, the kernel not
        ("nf_priority=0x", "is not a int"),
    ],
)
def test_bad_parameter_is_refused_before_insmod(
    machine: FakeMachine,
    param: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli(machine, ["load", "itm_mod", param], monkeypatch) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "nf_priority (int)" in err and "init_netns (bool)" in err  # what it takes
    assert machine.tools_called() == []


def test_good_parameters_and_unsigned_check(machine: FakeMachine) -> None:
    done = kmod.load("itm_mod", ["nf_priority=-150", "init_netns=1"], host=machine.host())
    assert [m.name for m in done] == ["itm_mod"]
    assert machine.calls[-1][2:] == ["nf_priority=-150", "init_netns=1"]
    for bad in (["timer_ms=-1"], ["timer_ms=4294967296"], ["priority=5", "priority=6"]):
        with pytest.raises(ToolError) as exc:
            kmod.load("count_udp", bad, host=machine.host())
        assert exc.value.code == 2, bad
    # the kernel's number syntax: 010 is octal 8, 0x10 hex, +5 signed
    kmod.load("count_udp", ["timer_ms=010", "priority=+5"], host=machine.host())
    assert machine.calls[-1][2:] == ["timer_ms=010", "priority=+5"]
    assert kmod._kernel_int("010") == 8 and kmod._kernel_int("-0x10") == -16
    assert kmod.unload("count_udp", host=machine.host(), control=lambda: FakeControl([]))
    kmod.load("count_udp", ["packets=3"], host=machine.host())  # no type known: kernel decides


def test_a_value_the_module_refuses_is_a_usage_error(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the module knows its ranges (qos_mod max_flows=0): insmod's EINVAL or
    ERANGE with parameters given is exit 2 naming them, not 'insmod failed' exit 1."""
    real = machine.run

    def refuse(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if argv[0] == "insmod":
            machine.calls.append(list(argv))
            msg = f"insmod: ERROR: could not insert module {argv[1]}: Numerical result out of range"
            return subprocess.CompletedProcess(argv, 1, "", msg)
        return real(argv)

    monkeypatch.setattr(machine, "run", refuse)
    assert _cli(machine, ["load", "itm_mod", "nf_priority=5"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "itm_mod refused its parameters (nf_priority=5): Numerical result out of range" in err
    assert "dmesg" in err and "nf_priority (int)" in err


def test_application_without_itm_mod_is_refused_with_the_way_out(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(machine, ["load", "count_udp"], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "count_udp needs itm_mod, which is not loaded" in err
    assert "itmtool load itm_mod" in err and "--deps" in err
    assert machine.tools_called() == []


def test_deps_load_itm_mod_first(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(machine, ["load", "--deps", "count_udp", "priority=3", "--json"], monkeypatch) == 0
    assert machine.tools_called() == [("insmod", "itm_mod"), ("insmod", "count_udp")]
    assert machine.calls[-1][2:] == ["priority=3"]
    import json

    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["loaded"]] == ["itm_mod", "count_udp"]


def test_a_kernel_module_a_module_needs_is_modprobed_first(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """itm_route needs libchacha20poly1305, a module on Debian's kernels: not one of
    ours, so modprobe loads it (from the kernel's own tree) before insmod."""
    assert _cli(machine, ["load", "--deps", "route_app"], monkeypatch) == 0
    assert machine.tools_called() == [
        ("modprobe", "libchacha20poly1305"),
        ("insmod", "itm_mod"),
        ("insmod", "route_app"),
    ]
    assert _cli(machine, ["unload", "route_app"], monkeypatch) == 0
    assert _cli(machine, ["load", "route_app"], monkeypatch) == 0  # loaded already: no modprobe
    assert machine.tools_called()[-1] == ("insmod", "route_app")
    assert [c for c in machine.tools_called() if c[0] == "modprobe"] == [
        ("modprobe", "libchacha20poly1305")
    ]


def test_a_kernel_without_the_module_a_module_needs_says_so(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.kernel_modules = set()
    assert _cli(machine, ["load", "--deps", "route_app"], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "route_app needs the kernel's libchacha20poly1305 module" in err
    assert "not found" in err and "modinfo libchacha20poly1305" in err
    assert machine.tools_called() == [("modprobe", "libchacha20poly1305")]


def test_unloading_sch_rio_held_by_its_qdiscs_names_them(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rmmod says only "in use": itmtool names the rio qdiscs and how to delete them."""
    from itmtool import rio as rio_cli
    from libitm.control import rio

    (machine.sys / "sch_rio" / "holders").mkdir(parents=True, exist_ok=True)
    (machine.sys / "sch_rio" / "initstate").write_text("live\n")
    real_run = machine.run

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if list(argv) == ["rmmod", "sch_rio"]:
            machine.calls.append(list(argv))
            said = "rmmod: ERROR: Module sch_rio is in use"
            return subprocess.CompletedProcess(argv, 1, "", said)
        return real_run(argv)

    monkeypatch.setattr(machine, "run", run)
    held = [rio.RioStatus("l2", "10:0", "1:1", rio.RioConfig(), {}, {})]
    real_refused = rio_cli.unload_refused
    monkeypatch.setattr(rio_cli, "unload_refused", lambda: real_refused(lambda: held))
    assert _cli(machine, ["unload", "sch_rio"], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "sch_rio is in use" in err and "rio 10:0 dev l2 parent 1:1" in err
    assert "itmtool rio del l2 --parent 1:1" in err


def test_load_needs_root_and_refuses_a_second_load(machine: FakeMachine) -> None:
    with pytest.raises(ToolError) as exc:
        kmod.load("itm_mod", host=machine.host(euid=1000))
    assert exc.value.code == 4
    kmod.load("itm_mod", host=machine.host())
    with pytest.raises(ToolError) as exc:
        kmod.load("itm_mod", host=machine.host())
    assert exc.value.code == 1 and "already loaded" in exc.value.message


def test_in_tree_build_is_used_only_for_the_running_kernel(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ToolError) as exc:  # old_app.ko was built for 6.1: not ours to load
        kmod.locate("old_app", machine.host())
    assert exc.value.code == 6 and "headers are missing" in exc.value.message
    (machine.libmod / RELEASE / "build").mkdir(parents=True)
    with pytest.raises(ToolError) as exc:
        kmod.locate("old_app", machine.host())
    assert exc.value.code == 1 and "itmtool build" in exc.value.hint
    # the shared MODINFO (tests/support) is put back as it was after the test
    monkeypatch.setitem(MODINFO["old_app"], "vermagic", [f"{RELEASE} SMP"])
    assert kmod.locate("old_app", machine.host()).name == "old_app.ko"


def test_a_generated_module_loads_by_path(machine: FakeMachine, tmp_path: Path) -> None:
    kmod.load("itm_mod", host=machine.host())
    ko = machine.root / "build" / RELEASE / "src" / "kernel" / "count_udp" / "count_udp.ko"
    done = kmod.load(str(ko), host=machine.host())
    assert done[0].name == "count_udp"
    with pytest.raises(ToolError) as exc:
        kmod.load(str(tmp_path / "missing.ko"), host=machine.host())
    assert exc.value.code == 5


def test_unloading_itm_mod_while_applications_are_registered(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kmod.load("itm_mod", host=machine.host())
    kmod.load("count_udp", host=machine.host())
    apps = [_app("dns-count", "count_udp"), _app("shaper", "", "user", pid=4242)]
    machine.calls.clear()
    assert _cli(machine, ["unload", "itm_mod"], monkeypatch, apps) == 1
    err = capsys.readouterr().err
    assert "itm_mod is in use" in err
    assert "dns-count (kernel, module count_udp, at ip_forward)" in err
    assert "shaper (user, pid 4242, at ip_forward)" in err
    assert "modules using it: count_udp" in err
    assert "itmtool unload count_udp" in err and "--all" in err
    assert machine.tools_called() == []

    assert _cli(machine, ["unload", "--force", "itm_mod", "--json"], monkeypatch, apps) == 0
    assert machine.tools_called() == [("rmmod", "count_udp"), ("rmmod", "itm_mod")]
    import json

    assert json.loads(capsys.readouterr().out) == {
        "unloaded": ["count_udp", "itm_mod"],
        "unregistered": [
            {
                "label": "dns-count",
                "type": "kernel",
                "hook": "ip_forward",
                "owner": "count_udp",
                "pid": 0,
            },
            {"label": "shaper", "type": "user", "hook": "ip_forward", "owner": "", "pid": 4242},
        ],
    }


def test_unloading_itm_queue_while_user_applications_hold_queues(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`itmtool unload itm_queue` printed 'unloaded' and took the queues of running
    libitm processes (their next request: ENOENT): now refused, listing them."""
    kmod.load("itm_queue", deps=True, host=machine.host())
    apps = [_app("dns-count", "count_udp"), _app("holder", "", "user", pid=119)]
    machine.calls.clear()
    assert _cli(machine, ["unload", "itm_queue"], monkeypatch, apps) == 1
    err = capsys.readouterr().err
    assert "itm_queue is in use" in err and "holder (user, pid 119, at ip_forward)" in err
    assert "dns-count" not in err  # a kernel application does not hold itm_queue
    assert "stop those processes first" in err and "--all itm_queue" in err
    assert machine.tools_called() == []
    assert _cli(machine, ["unload", "--all", "itm_queue"], monkeypatch, apps) == 0
    assert machine.tools_called() == [("rmmod", "itm_queue")]
    # without user applications it goes as before
    kmod.load("itm_queue", host=machine.host())
    assert kmod.unload("itm_queue", host=machine.host(), control=lambda: FakeControl([])) == [
        "itm_queue"
    ]


def test_unload_all_itm_mod_says_which_applications_it_unregistered(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--all` took the applications' registrations (kernel ones with their module,
    user ones' queues with itm_queue) and said only 'unloaded X': now it names them,
    once each, after the modules, and says their packets pass."""
    kmod.load("count_udp", deps=True, host=machine.host())
    kmod.load("itm_queue", host=machine.host())
    apps = [_app("dns-count", "count_udp"), _app("shaper", "", "user", pid=4242)]
    assert _cli(machine, ["unload", "--all", "itm_mod"], monkeypatch, apps) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "unloaded count_udp",
        "unloaded itm_queue",
        "unloaded itm_mod",
        "applications unregistered (their packets now pass untouched):",
        "  dns-count (kernel, module count_udp, at ip_forward)",
        "  shaper (user, pid 4242, at ip_forward)",
        "their user-space processes still run, without their queues: pid 4242",
    ]


def test_unload_all_itm_queue_says_whose_queues_it_took(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    kmod.load("itm_queue", deps=True, host=machine.host())
    apps = [_app("dns-count", "count_udp"), _app("holder", "", "user", pid=119)]
    assert _cli(machine, ["unload", "--all", "itm_queue"], monkeypatch, apps) == 0
    out = capsys.readouterr().out
    assert "unloaded itm_queue\napplications unregistered" in out
    assert "their packets now pass" in out
    assert "  holder (user, pid 119, at ip_forward)" in out
    assert "dns-count" not in out  # a kernel application keeps its registration
    kmod.load("itm_queue", host=machine.host())
    assert _cli(machine, ["unload", "--all", "itm_queue", "--json"], monkeypatch, apps) == 0
    assert json.loads(capsys.readouterr().out)["unregistered"] == [
        {"label": "holder", "type": "user", "hook": "ip_forward", "owner": "", "pid": 119}
    ]


def test_unload_without_applications_unregisters_nothing(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    kmod.load("count_udp", deps=True, host=machine.host())
    assert _cli(machine, ["unload", "count_udp"], monkeypatch) == 0
    assert capsys.readouterr().out == "unloaded count_udp\n"
    assert _cli(machine, ["unload", "--all", "itm_mod", "--json"], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out) == {"unloaded": ["itm_mod"], "unregistered": []}


def test_unload_what_is_not_loaded(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(machine, ["unload", "itm_mod"], monkeypatch) == 5
    assert "itm_mod is not loaded" in capsys.readouterr().err


def test_unload_an_application_then_itm_mod(machine: FakeMachine) -> None:
    kmod.load("count_udp", deps=True, host=machine.host())
    assert kmod.unload("count_udp", host=machine.host(), control=lambda: FakeControl([])) == [
        "count_udp"
    ]
    assert kmod.unload("itm_mod", host=machine.host(), control=lambda: FakeControl([])) == [
        "itm_mod"
    ]


def test_known_modules_of_the_real_tree() -> None:
    assert {"itm_mod", "itm_test_app"} <= set(kmod.known_modules())


def test_itm_moddir_is_searched_first(machine: FakeMachine, tmp_path: Path) -> None:
    """In the VM the run's own build (ITM_MODDIR) and its generated/ sibling come first."""
    run_dir = tmp_path / "vm-1"
    (run_dir / "src" / "kernel" / "itm_mod").mkdir(parents=True)
    (run_dir / "generated" / "count_udp").mkdir(parents=True)
    (run_dir / "src" / "kernel" / "itm_mod" / "itm_mod.ko").write_bytes(b"")
    (run_dir / "generated" / "count_udp" / "count_udp.ko").write_bytes(b"")
    host = machine.host()
    host.moddir = run_dir / "src"
    assert kmod.locate("itm_mod", host).is_relative_to(run_dir)
    assert kmod.locate("count_udp", host).is_relative_to(run_dir / "generated")


def test_unloading_an_application_module_names_its_applications(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`unload count_udp` took its applications' registrations with it and said only
    'unloaded count_udp': now it names them (their `owner` is the module) as
    `unload --all itm_mod` does, with or without --all; others' stay unnamed."""
    import json

    kmod.load("count_udp", deps=True, host=machine.host())
    apps = [
        _app("dns-count", "count_udp"),
        _app("qos", "qos_mod"),
        _app("udp-count", "count_udp"),
        _app("shaper", "", "user", pid=4242),
    ]
    assert _cli(machine, ["unload", "count_udp"], monkeypatch, apps) == 0
    assert capsys.readouterr().out.splitlines() == [
        "unloaded count_udp",
        "applications unregistered (their packets now pass untouched):",
        "  dns-count (kernel, module count_udp, at ip_forward)",
        "  udp-count (kernel, module count_udp, at ip_forward)",
    ]
    assert machine.tools_called()[-1] == ("rmmod", "count_udp")
    kmod.load("count_udp", host=machine.host())
    assert _cli(machine, ["unload", "--all", "count_udp", "--json"], monkeypatch, apps) == 0
    assert json.loads(capsys.readouterr().out) == {
        "unloaded": ["count_udp"],
        "unregistered": [
            {"label": a, "type": "kernel", "hook": "ip_forward", "owner": "count_udp", "pid": 0}
            for a in ("dns-count", "udp-count")
        ],
    }
    every = kmod.unload_report(
        "itm_mod", everything=True, host=machine.host(), control=lambda: FakeControl(apps)
    )
    assert (every.modules, every.unregistered) == (["itm_mod"], apps)  # itm_mod: all of them


@pytest.mark.parametrize(
    "refusal",
    [ItmNotLoaded(2, "no itm family"), ItmControlError(1, "no"), OSError(97, "no netlink")],
)
def test_an_application_module_unloads_when_itm_mod_cannot_be_asked(
    machine: FakeMachine, refusal: Exception
) -> None:
    kmod.load("count_udp", deps=True, host=machine.host())

    def refused() -> kmod.Control:
        raise refusal

    done = kmod.unload_report("count_udp", host=machine.host(), control=refused)
    assert (done.modules, done.unregistered, done.text()) == (
        ["count_udp"],
        [],
        "unloaded count_udp",
    )
    assert machine.tools_called()[-1] == ("rmmod", "count_udp")


def test_itm_mod_is_asked_only_about_modules_that_use_it(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that does not use itm_mod registers no application: unloading it asks
    nothing; `--all itm_mod` asks once for itm_mod and the modules it takes first."""
    monkeypatch.setitem(MODINFO, "plain", {"depends": [""]})
    kmod.load("count_udp", deps=True, host=machine.host())
    machine.insert("plain")
    kmod.load("itm_queue", host=machine.host())
    asked: list[int] = []
    apps = [_app("dns-count", "count_udp"), _app("shaper", "", "user", pid=7)]

    def control() -> kmod.Control:
        asked.append(1)
        return FakeControl(apps)

    assert kmod.unload_report("plain", host=machine.host(), control=control).modules == ["plain"]
    assert asked == []
    done = kmod.unload_report("itm_mod", everything=True, host=machine.host(), control=control)
    assert done.modules == ["count_udp", "itm_queue", "itm_mod"] and done.unregistered == apps
    assert len(asked) == 1
