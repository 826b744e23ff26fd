"""itmtool.vm.run: a guest kernel that dies while booting is booted again, once;
itmtool.guestrun.run_group: a stalled or abandoned guest does not outlive its run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from itmtool import guestrun, vm

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
        self,
        cmd: list[str],
        env: dict[str, str],
        *,
        timeout: float,
        stream: bool,
        heartbeat: Path | None = None,
    ) -> tuple[int, str]:
        assert not self.started.exists(), "the marker of the last boot was not removed"
        self.timeouts.append(timeout)
        reach, rc, out = self.outcomes.pop(0)
        if reach:
            self.started.write_text("")
        return rc, out


BootVm = Callable[[list[Outcome]], tuple[guestrun.VmResult, FakeBoots]]


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

    def run(outcomes: list[Outcome]) -> tuple[guestrun.VmResult, FakeBoots]:
        boots = FakeBoots(rw / guestrun.STARTED, outcomes)
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
    assert not (rw / guestrun.STARTED).exists()
    script = (rw / ".vm-script.sh").read_text().splitlines()
    assert script[0] == f": > {rw / guestrun.STARTED}", "the marker must be the guest's first act"
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


def _beating_guest(beat: Path, beats: int, then: str) -> list[str]:
    """A stand-in VM: prints, beats `beats` times 0.1 s apart, then runs `then`."""
    loop = f"for i in $(seq {beats}); do date +%s.%N > {beat}; sleep 0.1; done"
    return ["sh", "-c", f"echo console line; {loop}; {then}"]


def test_a_guest_whose_heartbeat_stops_is_killed_with_its_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung guest fails in `stall` seconds, not at the tier's time limit."""
    monkeypatch.setattr(guestrun, "STALL_POLL", 0.2)
    beat, pidfile = tmp_path / "beat", tmp_path / "pid"
    cmd = _beating_guest(beat, 3, f"echo $$ > {pidfile}; exec sleep 60")
    t0 = time.monotonic()
    with pytest.raises(guestrun.GuestStalled) as caught:
        guestrun.run_group(
            cmd, dict(os.environ), timeout=60, stream=False, heartbeat=beat, stall=1.0
        )
    assert time.monotonic() - t0 < 20
    assert "console line" in str(caught.value.output)
    assert "no heartbeat for 1 s" in str(caught.value)
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_guest_that_beats_or_has_not_started_beating_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beating to its end, or still booting (no heartbeat yet): no stall."""
    monkeypatch.setattr(guestrun, "STALL_POLL", 0.2)
    beat = tmp_path / "beat"
    beat.write_text("left by an earlier run")  # removed before the boot
    os.utime(beat, (0, 0))
    rc, out = guestrun.run_group(
        _beating_guest(beat, 15, "exit 3"),
        dict(os.environ),
        timeout=60,
        stream=False,
        heartbeat=beat,
        stall=1.0,
    )
    assert (rc, out.strip()) == (3, "console line")
    beat.unlink()
    rc, _ = guestrun.run_group(
        ["sh", "-c", "sleep 1.5"], dict(os.environ), timeout=60, stream=False,
        heartbeat=beat, stall=0.5,
    )  # fmt: skip
    assert rc == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_itmtool_takes_its_guest_with_it(tmp_path: Path, sig: int) -> None:
    """`timeout 8 itmtool vm ...` (SIGTERM) or a closed terminal (SIGHUP) ended
    itmtool and left the UML guest running, adopted by init: the guest here is a
    shell whose child writes its pid, as UML's helpers would be."""
    pidfile = tmp_path / "guest.pid"
    code = (
        "import os, signal, sys\n"
        # as started from a terminal: a test run under nohup (CI's rehearsal) would
        # hand down SIGHUP ignored, which run_group rightly leaves ignored
        f"signal.signal({int(sig)}, signal.SIG_DFL)\n"
        "from itmtool import guestrun\n"
        f"guestrun.run_group(['sh', '-c', 'sleep 60 & echo $! > {pidfile}; wait'],"
        " dict(os.environ), timeout=60, stream=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    guest = int(pidfile.read_text())
    try:
        proc.send_signal(sig)
        assert proc.wait(20) == 128 + sig
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{guest}") and time.monotonic() < deadline:
            time.sleep(0.05)  # the kill is SIGKILL to the group: gone at once, reaped by init
        state = Path(f"/proc/{guest}/stat")
        assert not state.exists() or state.read_text().split(") ")[1].startswith("Z")
    finally:
        with contextlib.suppress(OSError):
            os.kill(guest, signal.SIGKILL)  # on a failure, nothing is left either
        if proc.poll() is None:
            proc.kill()
            proc.wait()
