"""dkms.conf and `itmtool dkms`, without running dkms.

dkms.conf is checked by reading it the way DKMS does — it is a shell fragment
sourced with ``kernelver`` set — and against the tree: every module it
installs is built by the top-level Kbuild from its location, and MAKE is the
top-level Makefile's ``modules`` target with KDIR.  `itmtool dkms install`,
`remove` and `status` run here against a stand-in for dkms that keeps its
state the way dkms 3 does; tests/host/test_itmtool_dkms_host.py runs the real
one.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from itmtool import dkms
from itmtool.errors import ToolError
from itmtool.matrix import ROOT
from tests.support.fake_dkms import K61, K612, RUNTIME, FakeDkms


def _sourced(path: Path, kernelver: str) -> dict[str, str]:
    """Source the file in bash as dkms does and read the variables back."""
    script = (
        f"kernelver={kernelver}; set -eu; . {path}; "
        'echo "PACKAGE_NAME=$PACKAGE_NAME"; echo "PACKAGE_VERSION=$PACKAGE_VERSION"; '
        'echo "MAKE=${MAKE[0]}"; echo "CLEAN=$CLEAN"; echo "AUTOINSTALL=$AUTOINSTALL"; '
        'for i in "${!BUILT_MODULE_NAME[@]}"; do '
        'echo "MOD$i=${BUILT_MODULE_NAME[$i]}:${BUILT_MODULE_LOCATION[$i]}:'
        '${DEST_MODULE_LOCATION[$i]}"; done'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def test_dkms_conf_is_what_dkms_reads() -> None:
    v = _sourced(ROOT / "dkms.conf", "6.12.117+deb12-amd64")
    assert v["PACKAGE_NAME"] == "itmbench"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{v["PACKAGE_VERSION"]}"' in pyproject
    assert v["MAKE"] == "make KDIR=/lib/modules/6.12.117+deb12-amd64/build modules"
    assert v["CLEAN"] == "make KDIR=/lib/modules/6.12.117+deb12-amd64/build clean"
    assert v["AUTOINSTALL"] == "yes"
    mods = [v[k].split(":") for k in sorted(v) if k.startswith("MOD")]
    assert [m[0] for m in mods][:1] == ["itm_mod"]
    for name, loc, dest in mods:
        assert dest.startswith("/"), name
        kbuild = ROOT / loc / "Kbuild"
        if name == "qos_mod" and not kbuild.exists():
            continue  # left out by itmtool dkms until kernel/qos_mod lands
        assert re.search(rf"^obj-m\s*:?=\s*{name}\.o", kbuild.read_text(), re.MULTILINE), name


def test_python_reading_matches_bash() -> None:
    conf = dkms.parse((ROOT / "dkms.conf").read_text())
    assert conf.package == "itmbench"
    assert conf.modules()[0] == ("itm_mod", "kernel/itm_mod/")
    assert "${kernelver}" in conf.arrays["MAKE"][0]


def test_top_level_makefile_has_the_modules_target_dkms_calls() -> None:
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^modules:\s*$", make, re.MULTILINE)
    assert "$(MAKE) -C $(KDIR) M=$(CURDIR) modules" in make
    assert "kernel/itm_mod/" in dkms.built_dirs() or "kernel/itm_mod" in dkms.built_dirs()


def _tree(tmp: Path, with_qos: bool, qos_in_kbuild: bool) -> Path:
    root = tmp / "tree"
    kbuild = ""
    for name in ("itm_mod", "itm_queue"):
        (root / "kernel" / name).mkdir(parents=True)
        (root / "kernel" / name / "Kbuild").write_text(f"obj-m := {name}.o\n")
        kbuild += f"obj-m += kernel/{name}/\n"
    if with_qos:
        (root / "kernel" / "qos_mod").mkdir(parents=True)
        (root / "kernel" / "qos_mod" / "Kbuild").write_text("obj-m := qos_mod.o\n")
    if qos_in_kbuild:
        kbuild += "obj-m += kernel/qos_mod/\n"
    for name in ("sch_rio", "itm_route"):
        (root / "kernel" / name).mkdir(parents=True)
        (root / "kernel" / name / "Kbuild").write_text(f"obj-m := {name}.o\n")
        kbuild += f"obj-m += kernel/{name}/\n"
    (root / "Kbuild").write_text(kbuild)
    (root / "Makefile").write_text("modules:\n")
    (root / "dkms.conf").write_text((ROOT / "dkms.conf").read_text())
    return root


@pytest.mark.parametrize(
    ("with_qos", "in_kbuild", "modules", "dropped"),
    [
        (True, True, ["itm_mod", "itm_queue", "qos_mod", "sch_rio", "itm_route"], ""),
        (
            False,
            False,
            ["itm_mod", "itm_queue", "sch_rio", "itm_route"],
            "no kernel/qos_mod/ in this tree",
        ),
        (
            True,
            False,
            ["itm_mod", "itm_queue", "sch_rio", "itm_route"],
            "the top-level Kbuild does not build kernel/qos_mod/",
        ),
    ],
)
def test_modules_the_tree_does_not_build_are_left_out(
    tmp_path: Path, with_qos: bool, in_kbuild: bool, modules: list[str], dropped: str
) -> None:
    root = _tree(tmp_path, with_qos, in_kbuild)
    conf, left_out = dkms.for_tree(dkms.parse((root / "dkms.conf").read_text()), root)
    assert [n for n, _ in conf.modules()] == modules
    assert sorted(conf.arrays["DEST_MODULE_LOCATION"]) == list(range(len(modules)))
    assert (dropped in left_out[0]) if dropped else not left_out
    dest = tmp_path / "usr-src" / "itmbench-0.1.0"
    dkms.stage(dest, conf, root)
    staged = _sourced(dest / "dkms.conf", "6.1.0-56-amd64")
    assert [staged[k].split(":")[0] for k in sorted(staged) if k.startswith("MOD")] == modules
    assert (dest / "kernel" / "itm_mod" / "Kbuild").exists()
    assert dkms.built_dirs(dest) == {loc.rstrip("/") for _, loc in conf.modules()}
    assert dkms.is_ours(dest) and dkms.staged_matches(dest, conf, root)
    (root / "kernel" / "itm_mod" / "main.c").write_text("/* changed */\n")
    assert not dkms.staged_matches(dest, conf, root)


STATUS_OUT = """\
itmbench/0.0.9: added
itmbench/0.1.0, 6.1.0-56-amd64, x86_64: installed
itmbench/0.1.0, 6.12.117+deb12-amd64, x86_64: installed (WARNING! Diff between built and \
installed module!)
other/1.2, 6.1.0-56-amd64, x86_64: built
readelf: Warning: Section '.comment' was not dumped because it does not exist
"""


def test_dkms_status_lines_are_read() -> None:
    got = dkms.parse_status(STATUS_OUT)
    assert [(e.name, e.version, e.kernel, e.state) for e in got] == [
        ("itmbench", "0.0.9", None, "added"),
        ("itmbench", "0.1.0", "6.1.0-56-amd64", "installed"),
        ("itmbench", "0.1.0", "6.12.117+deb12-amd64", "installed"),
        ("other", "1.2", "6.1.0-56-amd64", "built"),
    ]
    assert got[1].arch == "x86_64" and got[2].note.startswith("WARNING! Diff")


#: built by the top-level Kbuild for the tests and benchmarks only (paper_qos: the
#: paper's qos_mod in the figures' shape, which tests/kernel/test_paper_api.py checks)
TEST_ONLY = {"kernel/test_app", "kernel/bench", "kernel/paper_qos"}


def test_dkms_installs_every_module_a_user_needs_at_run_time(tmp_path: Path) -> None:
    conf, left_out = dkms.tree_conf()
    assert [n for n, _ in conf.modules()] == RUNTIME and not left_out
    assert {loc.rstrip("/") for _, loc in conf.modules()} == dkms.built_dirs() - TEST_ONLY
    said: list[str] = []
    (tmp_path / K61 / "build").mkdir(parents=True)  # headers, as the dry run checks
    doc = dkms.install(K61, dry_run=True, env=dkms.Env(say=said.append, lib_modules=tmp_path))
    assert "modules: itm_mod, itm_queue, qos_mod, sch_rio, itm_route" in said
    assert doc["left_out"] == []


def test_a_dry_run_refuses_a_release_without_headers_as_the_install_does(tmp_path: Path) -> None:
    said: list[str] = []
    with pytest.raises(ToolError, match=r"no kernel headers for 9\.9\.9") as err:
        dkms.install("9.9.9", dry_run=True, env=dkms.Env(say=said.append, lib_modules=tmp_path))
    assert err.value.code == 6 and said == []


def _verbs(calls: list[list[str]]) -> list[str]:
    return [" ".join(c[1:2] + c[c.index("-k") + 1 :] if "-k" in c else c[1:2]) for c in calls]


def test_without_dkms_it_prints_the_plan_and_says_how_to_get_it(tmp_path: Path) -> None:
    said: list[str] = []
    env = FakeDkms(tmp_path).env(tmp_path, said, dkms_here=False)
    calls: list[Callable[[], object]] = [
        lambda: dkms.install(K61, env=env),
        lambda: dkms.remove(env=env),
        lambda: dkms.status(env=env),
    ]
    for call in calls:
        with pytest.raises(ToolError) as exc:
            call()
        assert exc.value.code == 6
        assert "dkms is not installed" in exc.value.message
        assert "apt-get install dkms" in exc.value.hint
    assert not (tmp_path / "usr-src").exists()


def test_dry_run_prints_the_plan_and_does_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    fake = FakeDkms(tmp_path)
    doc = dkms.install(K61, dry_run=True, env=fake.env(tmp_path, said))
    assert [c[1] for c in doc["commands"]] == ["add", "build", "install"]
    assert f"dkms build -m itmbench -v 0.1.0 -k {K61}" in said
    doc = dkms.remove(dry_run=True, env=fake.env(tmp_path, said))
    assert doc["commands"] == [["dkms", "remove", "itmbench/0.1.0", "--all"]]
    assert not fake.calls and not (tmp_path / "usr-src").exists()


def test_refusals(tmp_path: Path) -> None:
    said: list[str] = []
    fake = FakeDkms(tmp_path)
    with pytest.raises(ToolError) as exc:
        dkms.install("6.18.0-noheaders", env=fake.env(tmp_path, said))
    assert exc.value.code == 6 and "no kernel headers for 6.18.0-noheaders" in exc.value.message
    assert "--kernel 6.12" in exc.value.hint
    with pytest.raises(ToolError) as exc:
        dkms.install(K61, env=fake.env(tmp_path, said, uid=1000))
    assert exc.value.code == 4
    with pytest.raises(ToolError) as exc:
        dkms.remove(env=fake.env(tmp_path, said))
    assert exc.value.code == 5 and "not installed with dkms" in exc.value.message
    assert dkms.status(env=fake.env(tmp_path, said))["added"] is False
    assert not [c for c in fake.calls if c[1] != "status"]


def test_install_two_kernels_then_remove(tmp_path: Path) -> None:
    said: list[str] = []
    fake = FakeDkms(tmp_path)
    env = fake.env(tmp_path, said)
    src = tmp_path / "usr-src" / "itmbench-0.1.0"

    doc = dkms.install(K61, env=env)
    assert _verbs(fake.calls) == ["status", "status", "add", f"build {K61}", f"install {K61}"]
    assert (src / "dkms.conf").read_text().startswith(dkms.MARKER)
    assert [m["name"] for m in doc["modules"]] == RUNTIME
    assert all(m["vermagic"].startswith(K61 + " ") for m in doc["modules"])

    fake.calls.clear()  # the second kernel: no second add
    dkms.install(K612, env=env)
    assert _verbs(fake.calls) == ["status", "status", f"build {K612}", f"install {K612}"]
    fake.calls.clear()  # again: nothing to do
    dkms.install(K612, env=env)
    assert _verbs(fake.calls) == ["status", "status"]

    st = dkms.status(env=env)
    assert st["added"] and st["source"] == str(src)
    assert [r["kernel"] for r in st["kernels"]] == [K61, K612]
    table = dkms.status_table(st)
    assert f"{K612}     installed  itm_mod   {K612}" in table
    assert f"itm_queue {K612}" in table

    fake.calls.clear()
    doc = dkms.remove(K612, env=env)
    assert doc["removed"] == [K612] and not doc["source_removed"] and src.exists()
    with pytest.raises(ToolError) as exc:
        dkms.remove(K612, env=env)
    assert exc.value.code == 5 and K61 in exc.value.hint
    doc = dkms.remove(env=env)
    assert doc["removed"] == [K61] and doc["source_removed"] and not src.exists()
    assert not (fake.lib / K61 / "updates").exists()


def test_changed_sources_are_added_again_for_every_kernel(tmp_path: Path) -> None:
    said: list[str] = []
    fake = FakeDkms(tmp_path)
    env = fake.env(tmp_path, said)
    dkms.install(K61, env=env)
    (tmp_path / "usr-src" / "itmbench-0.1.0" / "kernel" / "itm_mod" / "main.c").write_text("old")
    fake.calls.clear()
    dkms.install(K612, env=env)
    assert _verbs(fake.calls) == [
        "status",
        "status",
        "remove",
        "add",
        f"build {K61}",
        f"install {K61}",
        f"build {K612}",
        f"install {K612}",
    ]
    assert any("differ from this tree" in line for line in said)
    assert fake.installed == {K61, K612}


def test_a_failing_dkms_step_is_reported(tmp_path: Path) -> None:
    said: list[str] = []
    fake = FakeDkms(tmp_path)
    fake.fail = "build"
    with pytest.raises(ToolError) as exc:
        dkms.install(K61, env=fake.env(tmp_path, said))
    assert exc.value.code == 1
    assert "dkms build -m itmbench -v 0.1.0 -k 6.1.0-56-amd64 failed (exit 10)" in exc.value.message
    assert "Bad return status" in exc.value.message and "/var/lib/dkms/itmbench" in exc.value.hint
