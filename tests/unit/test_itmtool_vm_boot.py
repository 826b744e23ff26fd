"""itmtool.vm.run: a guest kernel that dies while booting is booted again, once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from itmtool import vm

Outcome = tuple[bool, int, str]  # (reached the command, vng's exit code, output)


@dataclass
class FakeKernel:
    """Just what vm.run reads of a matrix kernel."""

    vmlinuz: Path
    release: str = "6.12.0-test"
    is_uml: bool = False


class FakeBoots:
    """Stands in for vng: each boot plays one scripted outcome."""

    def __init__(self, started: Path, outcomes: list[Outcome]) -> None:
        self.started = started
        self.outcomes = outcomes
        self.timeouts: list[float] = []

    def __call__(
        self, cmd: list[str], env: dict[str, str], *, timeout: float, stream: bool
    ) -> tuple[int, str]:
        assert not self.started.exists(), "the marker of the last boot was not removed"
        self.timeouts.append(timeout)
        reach, rc, out = self.outcomes.pop(0)
        if reach:
            self.started.write_text("")
        return rc, out


BootVm = Callable[[list[Outcome]], tuple[vm.VmResult, FakeBoots]]


@pytest.fixture
def rw(tmp_path: Path) -> Path:
    """The run's rwdir, where the guest's marker and script go."""
    return tmp_path / "rw"


@pytest.fixture
def boot_vm(
    rw: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> BootVm:
    """vm.run on a fake kernel whose boots play the given outcomes, in order."""
    image = tmp_path / "vmlinuz"
    image.write_text("")
    monkeypatch.setattr(vm, "vng_path", lambda: "/bin/false")

    def run(outcomes: list[Outcome]) -> tuple[vm.VmResult, FakeBoots]:
        boots = FakeBoots(rw / vm.STARTED, outcomes)
        monkeypatch.setattr(vm, "_boot", boots)
        res = vm.run(FakeKernel(image), "true", rwdirs=[rw], timeout=100)  # type: ignore[arg-type]
        if res.boots == 1:
            assert capsys.readouterr().err == "", "a single boot says nothing"
        return res, boots

    return run


def test_boot_death_before_the_command_is_booted_again(
    boot_vm: BootVm,
    rw: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    res, boots = boot_vm([(False, 255, "Oops: int3\n"), (True, 0, "ok\n")])
    assert (res.returncode, res.started, res.boots) == (0, True, 2)
    assert (res.output, res.failed_boots) == ("ok\n", ["Oops: int3\n"])
    assert (
        "died before the command started (exit 255, boot 1); booting again"
        in capsys.readouterr().err
    )
    assert not (rw / vm.STARTED).exists()
    script = (rw / ".vm-script.sh").read_text().splitlines()
    assert script[0] == f": > {rw / vm.STARTED}", "the marker must be the guest's first act"
    assert all(0 < t <= 100 for t in boots.timeouts)


def test_failure_after_the_command_started_is_not_retried(
    boot_vm: BootVm,
) -> None:
    res, boots = boot_vm([(True, 1, "test failed\n"), (True, 0, "ok\n")])
    assert (res.returncode, res.started, res.boots, res.output) == (1, True, 1, "test failed\n")
    assert len(boots.outcomes) == 1


def test_a_kernel_that_never_boots_fails_after_the_retries(
    boot_vm: BootVm,
) -> None:
    res, _ = boot_vm([(False, 255, f"panic {i}\n") for i in range(vm.BOOT_RETRIES + 1)])
    assert (res.returncode, res.started, res.boots) == (255, False, vm.BOOT_RETRIES + 1)
    assert res.output == f"panic {vm.BOOT_RETRIES}\n" and res.failed_boots[0] == "panic 0\n"


def test_success_boots_once(
    boot_vm: BootVm,
) -> None:
    res, _ = boot_vm([(True, 0, "ok\n")])
    assert (res.returncode, res.started, res.boots, res.output) == (0, True, 1, "ok\n")
