"""dkms.conf and `itmtool dkms`, without dkms.

dkms is not installed on a fresh machine of this project (it is not in the
base image), so dkms.conf is checked by reading it the way DKMS does — it is a
shell fragment sourced with ``kernelver`` set — and against the tree: every
module it installs is built by the top-level Kbuild from its location, and
MAKE is the top-level Makefile's ``modules`` target with KDIR.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from itmtool import dkms
from itmtool.errors import ToolError
from itmtool.matrix import ROOT


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
    (root / "kernel" / "itm_mod").mkdir(parents=True)
    (root / "kernel" / "itm_mod" / "Kbuild").write_text("obj-m := itm_mod.o\n")
    kbuild = "obj-m += kernel/itm_mod/\n"
    if with_qos:
        (root / "kernel" / "qos_mod").mkdir(parents=True)
        (root / "kernel" / "qos_mod" / "Kbuild").write_text("obj-m := qos_mod.o\n")
    if qos_in_kbuild:
        kbuild += "obj-m += kernel/qos_mod/\n"
    (root / "Kbuild").write_text(kbuild)
    (root / "Makefile").write_text("modules:\n")
    (root / "dkms.conf").write_text((ROOT / "dkms.conf").read_text())
    return root


@pytest.mark.parametrize(
    ("with_qos", "in_kbuild", "modules", "dropped"),
    [
        (True, True, ["itm_mod", "qos_mod"], ""),
        (False, False, ["itm_mod"], "no kernel/qos_mod/ in this tree"),
        (True, False, ["itm_mod"], "the top-level Kbuild does not build kernel/qos_mod/"),
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


def test_without_dkms_it_prints_the_plan_and_says_how_to_get_it(tmp_path: Path) -> None:
    said: list[str] = []
    with pytest.raises(ToolError) as exc:
        dkms.install("6.1.0-56-amd64", src_root=tmp_path, which=lambda _: None, say=said.append)
    assert exc.value.code == 6
    assert "dkms is not installed" in exc.value.message
    assert "apt-get install dkms" in exc.value.hint
    assert "dkms build -m itmbench -v 0.1.0 -k 6.1.0-56-amd64" in said
    assert not (tmp_path / "itmbench-0.1.0").exists()


def test_dry_run_does_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    cmds = dkms.install("6.1.0-56-amd64", dry_run=True, src_root=tmp_path, say=said.append)
    assert [c[1] for c in cmds] == ["add", "build", "install"]
    assert not any(tmp_path.iterdir())
