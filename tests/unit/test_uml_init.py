"""The init script of a User-Mode Linux guest (itmtool.uml): what it mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from itmtool import guestrun, kernelcache, matrix, uml
from itmtool.errors import EXIT_USAGE, ToolError

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


def _boot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu: str | None) -> list[str]:
    """The host command uml.run starts (nothing is started)."""
    started: list[list[str]] = []

    def run_group(cmd: list[str], *a: object, **k: object) -> tuple[int, str]:
        started.append(cmd)
        return 0, ""

    monkeypatch.setattr(kernelcache, "built", lambda flavour: tmp_path)
    monkeypatch.setattr(kernelcache, "release", lambda flavour: "6.12.118")
    monkeypatch.setattr(guestrun, "run_group", run_group)
    if cpu is None:
        monkeypatch.delenv(uml.CPU_ENV, raising=False)
    else:
        monkeypatch.setenv(uml.CPU_ENV, cpu)
    kern = next(k for k in matrix.read_matrix() if k.name == "uml")
    uml.run(kern, "true", rwdirs=[tmp_path / "res"])
    return started[0]


def test_uml_is_kept_on_one_host_cpu_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpu = str(max(os.sched_getaffinity(0)))
    assert _boot(monkeypatch, tmp_path, cpu)[:3] == ["taskset", "-c", cpu]
    assert _boot(monkeypatch, tmp_path, None)[0].endswith("linux")
    for bad in ("1,2", str(max(os.sched_getaffinity(0)) + 1)):
        with pytest.raises(ToolError, match="not a host CPU this process may use") as err:
            _boot(monkeypatch, tmp_path, bad)
        assert err.value.code == EXIT_USAGE
