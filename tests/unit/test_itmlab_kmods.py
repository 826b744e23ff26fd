"""itmlab.kmods: the kernel's modules that ours need, found without modprobe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from itmlab import kmods

REL = "6.12.0-test-amd64"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    base = tmp_path / REL
    for rel in (
        "kernel/lib/crypto/libchacha20poly1305.ko.xz",
        "kernel/arch/x86/crypto/chacha-x86_64.ko.xz",
        "kernel/arch/x86/crypto/poly1305-x86_64.ko.xz",
        "kernel/lib/crypto/libchacha.ko.xz",
    ):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"")
    (base / "modules.dep").write_text(
        "kernel/lib/crypto/libchacha20poly1305.ko.xz: kernel/arch/x86/crypto/poly1305-x86_64.ko.xz"
        " kernel/arch/x86/crypto/chacha-x86_64.ko.xz kernel/lib/crypto/libchacha.ko.xz\n"
        "kernel/arch/x86/crypto/chacha-x86_64.ko.xz: kernel/lib/crypto/libchacha.ko.xz\n"
    )
    return tmp_path


def test_a_module_is_found_by_name_with_dashes_or_underscores(tree: Path) -> None:
    found = kmods.find_stock("chacha_x86_64", REL, tree)
    assert found == tree / REL / "kernel/arch/x86/crypto/chacha-x86_64.ko.xz"
    assert kmods.find_stock("nosuch", REL, tree) is None


def test_without_an_index_the_tree_is_searched(tree: Path) -> None:
    (tree / REL / "modules.dep").unlink()
    found = kmods.find_stock("libchacha", REL, tree)
    assert found == tree / REL / "kernel/lib/crypto/libchacha.ko.xz"


def test_dependencies_go_in_first_and_ours_are_left_to_the_caller(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = {
        "itm_route.ko": "itm_mod,libchacha20poly1305",
        "libchacha20poly1305.ko.xz": "poly1305-x86_64,chacha-x86_64",
        "chacha-x86_64.ko.xz": "libchacha",
    }
    inserted: list[str] = []

    def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        if args[0] == "modinfo":
            return subprocess.CompletedProcess(args, 0, deps.get(Path(args[-1]).name, "") + "\n")
        assert args[0] == "insmod"
        inserted.append(Path(args[1]).name)
        return subprocess.CompletedProcess(args, 0, "")

    real_find = kmods.find_stock
    monkeypatch.setattr(kmods, "run", run)
    monkeypatch.setattr(kmods, "find_stock", lambda name: real_find(name, REL, tree))
    monkeypatch.setattr(kmods, "loaded", lambda name: name.split(".")[0] + ".ko.xz" in inserted)
    done = kmods.insmod_deps(Path("/x/itm_route.ko"), ours=frozenset({"itm_mod"}))
    assert inserted == [
        "poly1305-x86_64.ko.xz",
        "libchacha.ko.xz",
        "chacha-x86_64.ko.xz",
        "libchacha20poly1305.ko.xz",
    ]
    assert done == ["poly1305-x86_64", "libchacha", "chacha-x86_64", "libchacha20poly1305"]


def test_a_dependency_the_kernel_lacks_is_named(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        kmods, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "wireguard\n")
    )
    monkeypatch.setattr(kmods, "find_stock", lambda name: None)
    monkeypatch.setattr(kmods, "loaded", lambda name: False)
    with pytest.raises(RuntimeError, match=r"x\.ko needs wireguard, which this kernel"):
        kmods.insmod_deps(Path("/x/x.ko"))


def test_stock_modules_go_in_by_path_when_not_loaded(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserted: list[str] = []

    def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        assert args[0] == "insmod" and kw.get("check") is False
        inserted.append(args[1])
        return subprocess.CompletedProcess(args, 1, "", "insmod: ERROR: File exists")

    monkeypatch.setattr(kmods, "run", run)
    monkeypatch.setattr(kmods, "loaded", lambda name: name == "libchacha")
    kmods.insmod_stock(
        "kernel/lib/crypto/libchacha",  # loaded: left alone
        "kernel/arch/x86/crypto/chacha-x86_64",
        "kernel/drivers/net/veth",  # no file (built in): skipped
        release=REL,
        root=tree,
    )
    assert inserted == [str(tree / REL / "kernel/arch/x86/crypto/chacha-x86_64.ko.xz")]
