"""itmtool.kernelcache without building a kernel: the cache key, the configuration
check, and what a row ``build:<flavour>`` of kernels.txt means."""

from __future__ import annotations

from pathlib import Path

import pytest

from itmtool import kernelcache, matrix


@pytest.fixture
def kernels_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernels/ directory of our own and a cache in tmp_path; a fixed source version."""
    kdir = tmp_path / "kernels"
    (kdir / "patches").mkdir(parents=True)
    for name in ("net.config", "uml.config", "virtme.config", "debug.config"):
        (kdir / name).write_text("CONFIG_NET=y\n")
    (kdir / "patches" / "uml-xstate.patch").write_text("--- a\n+++ b\n")
    monkeypatch.setattr(kernelcache, "KERNELS_DIR", kdir)
    monkeypatch.setenv("ITM_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kernelcache, "source_version", lambda: "6.12.118-1~deb12u1")
    return kdir


def test_the_key_names_flavour_and_source_version(kernels_dir: Path) -> None:
    key = kernelcache.key(kernelcache.FLAVOURS["uml"])
    assert key.startswith("uml-6.12.118-1_deb12u1-")
    assert kernelcache.tree("uml") == kernels_dir.parent / "cache" / key


def test_a_changed_fragment_or_patch_is_a_new_key(kernels_dir: Path) -> None:
    uml = kernelcache.FLAVOURS["uml"]
    before = kernelcache.key(uml)
    (kernels_dir / "uml.config").write_text("CONFIG_NET=y\nCONFIG_VETH=y\n")
    after_fragment = kernelcache.key(uml)
    (kernels_dir / "patches" / "uml-xstate.patch").write_text("--- a\n+++ c\n")
    after_patch = kernelcache.key(uml)
    assert len({before, after_fragment, after_patch}) == 3
    # the debug kernel does not take the UML fragment: its key stays
    debug = kernelcache.key(kernelcache.FLAVOURS["debug"])
    (kernels_dir / "uml.config").write_text("CONFIG_NET=y\n")
    assert kernelcache.key(kernelcache.FLAVOURS["debug"]) == debug


def test_a_missing_fragment_is_a_one_line_error(kernels_dir: Path) -> None:
    (kernels_dir / "debug.config").unlink()
    with pytest.raises(kernelcache.KernelBuildError, match=r"debug\.config is missing"):
        kernelcache.key(kernelcache.FLAVOURS["debug"])


def test_an_option_the_configuration_dropped_is_named(tmp_path: Path) -> None:
    frag = tmp_path / "f.config"
    frag.write_text("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=n\nCONFIG_E=3\n")
    config = tmp_path / ".config"
    config.write_text("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_E=3\n")
    with pytest.raises(kernelcache.KernelBuildError) as err:
        kernelcache._check_config(config, [frag])
    text = str(err.value)
    assert "CONFIG_B=y (got n)" in text
    assert "CONFIG_C=n (got y)" in text
    assert "CONFIG_A" not in text and "CONFIG_D" not in text and "CONFIG_E" not in text


def test_an_unbuilt_kernel_of_ours_says_how_to_build_it(kernels_dir: Path) -> None:
    debug = matrix.Kernel("debug", "build:debug", "build:debug")
    assert debug.flavour == "debug" and not debug.is_uml
    with pytest.raises(LookupError, match="kernelcache build debug"):
        _ = debug.release
    assert debug.build_dir == kernelcache.tree("debug")
    assert debug.make_args == ("ARCH=x86_64",)


def test_a_built_tree_gives_release_image_and_arch(kernels_dir: Path) -> None:
    tree = kernelcache.tree("uml")
    (tree / "include" / "config").mkdir(parents=True)
    (tree / "include" / "config" / "kernel.release").write_text("6.12.118\n")
    (tree / kernelcache.DONE).write_text("600\n")
    uml = matrix.Kernel("uml", "build:uml", "build:uml")
    assert uml.is_uml
    assert uml.release == "6.12.118"
    assert uml.vmlinuz == tree / "linux"
    assert uml.make_args == ("ARCH=um",)
    assert kernelcache.build("uml", say=lambda s: None) == tree  # cached: nothing to do


def test_an_unknown_flavour_in_kernels_txt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kernels.txt"
    path.write_text("6.12 linux-image-6.12-amd64 linux-headers-6.12-amd64\nx build:nope -\n")
    with pytest.raises(ValueError, match="unknown kernel of ours 'build:nope'"):
        matrix.read_matrix(path)


def test_the_demo_kernel_is_the_newest_debian_one() -> None:
    kernels = matrix.read_matrix()
    assert matrix.newest_debian(kernels).name == "6.12"
