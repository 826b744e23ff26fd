"""The init script of a User-Mode Linux guest (itmtool.uml): what it mounts."""

from __future__ import annotations

from pathlib import Path

from itmtool import uml

TREE = Path("/cache/uml-tree")
SCRIPT = Path("/work/res/.vm-script.sh")
RC = Path("/work/res/.uml-rc")


def _init(root: Path, rwdirs: list[Path]) -> list[str]:
    return uml._init_script(TREE, "6.12.118", SCRIPT, rwdirs, RC, root=root).splitlines()


def test_a_checkout_in_tmp_is_mounted_back_read_only_before_the_rwdirs() -> None:
    """A clone in /tmp (as CI makes one) would be hidden by the guest's fresh /tmp."""
    res = Path("/tmp/ci/build/k/results")
    lines = _init(Path("/tmp/ci"), [res])
    back = "mkdir -p /tmp/ci; mount -r -t hostfs -o /tmp/ci hostfs /tmp/ci"
    assert back in lines
    fresh = next(i for i, line in enumerate(lines) if "mount -t tmpfs tmpfs" in line)
    rw = next(i for i, line in enumerate(lines) if f"hostfs {res}" in line)
    assert fresh < lines.index(back) < rw
    assert lines[-1] != back and f"bash {SCRIPT}" in lines


def test_a_checkout_outside_the_fresh_directories_is_left_to_the_root_mount() -> None:
    for root in (Path("/work/main"), Path("/tmpfoo/clone"), Path("/srv/run")):
        assert not any("mount -r -t hostfs" in line for line in _init(root, [root / "res"]))


def test_every_fresh_directory_hides_a_checkout_in_it() -> None:
    for d in uml.FRESH:
        assert uml._hidden(Path(d) / "clone")
        assert f" {d} " in f" {uml._MOUNTS.split('for d in ', 1)[1].split(';', 1)[0]} "
