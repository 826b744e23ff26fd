"""Where itmtool finds the sources and puts its builds: the checkout, a wheel, the variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from itmtool import resources
from itmtool.errors import ToolError
from itmtool.matrix import ROOT, read_matrix


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(resources.SRC_ENV, raising=False)
    monkeypatch.delenv(resources.BUILD_ENV, raising=False)


def test_in_the_checkout_it_uses_the_tree_and_its_build_dir() -> None:
    assert resources.checkout() == ROOT == resources.source_root()
    assert (ROOT / "pyproject.toml").is_file()
    assert resources.build_root() == ROOT / "build"
    assert resources.require_sources() == ROOT


def _wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, shipped: bool) -> Path:
    """Pretend the package runs from site-packages (with or without its _src copy)."""
    pkg = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "itmtool"
    pkg.mkdir(parents=True)
    if shipped:
        for name in ("Kbuild", "Makefile", "dkms.conf", "kernels.txt"):
            (pkg / "_src" / name).parent.mkdir(parents=True, exist_ok=True)
            (pkg / "_src" / name).write_text((ROOT / name).read_text())
        (pkg / "_src" / "kernel" / "itm_mod").mkdir(parents=True)
        (pkg / "_src" / "kernel" / "itm_mod" / "Kbuild").write_text("obj-m := itm_mod.o\n")
    monkeypatch.setattr(resources, "PACKAGE_DIR", pkg)
    monkeypatch.setattr(resources, "SHIPPED", pkg / "_src")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return pkg


def test_from_a_wheel_it_uses_the_shipped_copy_and_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _wheel(tmp_path, monkeypatch, shipped=True)
    assert resources.checkout() is None
    assert resources.source_root() == pkg / "_src"
    assert resources.require_sources() == pkg / "_src"
    assert resources.build_root() == tmp_path / "cache" / "itmbench" / "build"
    names = [k.name for k in read_matrix(resources.source_root() / "kernels.txt")]
    assert names == [k.name for k in read_matrix()]


def test_without_sources_it_says_where_it_looked_and_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _wheel(tmp_path, monkeypatch, shipped=False)
    with pytest.raises(ToolError) as exc:
        resources.require_sources()
    assert exc.value.code == 6
    assert f"no itmBench kernel sources in {pkg / '_src'}" in exc.value.message
    assert "ITMBENCH_SRC" in exc.value.hint
    with pytest.raises(ToolError) as exc:
        read_matrix(pkg / "_src" / "kernels.txt")
    assert "kernels.txt" in exc.value.message


def test_the_variables_point_it_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resources.SRC_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setenv(resources.BUILD_ENV, str(tmp_path / "builds"))
    assert resources.source_root() == tmp_path / "nowhere"
    assert resources.build_root() == tmp_path / "builds"
    with pytest.raises(ToolError) as exc:
        resources.require_sources()
    assert f"$ITMBENCH_SRC={tmp_path / 'nowhere'}" in exc.value.message
    monkeypatch.setenv(resources.SRC_ENV, str(ROOT))
    assert resources.require_sources() == ROOT
