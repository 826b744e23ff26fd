"""``itmroute run`` without the privileges the daemon needs: one line saying that it
needs root (CAP_NET_ADMIN, CAP_NET_RAW) and itmtool's exit code for 'permission
denied' (4), wherever the refusal comes from (no root needed: the refusals are
simulated; the last test meets the real one as nobody)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from itmroute import cli, daemon
from itmroute.cli import STATE_ELSEWHERE, main
from libitm import BackendUnavailable

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#: a daemon with a destination, on its own (python) data path: no itm_route lookup
CONFIG = (
    "name: a\naddress: 10.77.100.1\nneighbours: {r1: 10.77.1.2}\n"
    "destinations: [{prefix: 10.77.200.0/24, itm: 10.77.200.1}]\n"
    f"datapath: python\nkey: '{KEY}'\n"
)
NEEDS_ROOT = "itmroute: running the daemon needs root (CAP_NET_ADMIN and CAP_NET_RAW)"
EPERM = PermissionError(errno.EPERM, os.strerror(errno.EPERM))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    f = tmp_path / "a.yaml"
    f.write_text(CONFIG)
    return f


def _run(cfg: Path, *extra: str) -> int:
    return main(["run", "-c", str(cfg), "--state", str(cfg.parent / "a.json"), *extra])


def test_a_raw_socket_refused_by_the_kernel(
    cfg: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user without CAP_NET_RAW meets: the daemon's raw sockets raise EPERM
    (was '[Errno 1] Operation not permitted', exit 1)."""
    real = socket.socket

    def no_raw(family: int = -1, kind: int = -1, *args: Any, **kwargs: Any) -> socket.socket:
        if kind == socket.SOCK_RAW:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        return real(family, kind, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", no_raw)  # as itmroute.daemon calls it
    assert _run(cfg) == 4
    err = capsys.readouterr().err
    assert err == f"{NEEDS_ROOT}: Operation not permitted\n", err
    assert not (cfg.parent / "a.json").exists()


class _Router:
    """Stands for the daemon: built, then its run raises `raises`."""

    raises: BaseException | None = None

    def __init__(self, cfg: Any, **kw: Any) -> None:
        pass

    def run(self, duration: float | None = None) -> None:
        assert self.raises is not None
        raise self.raises

    def stop(self) -> None:
        pass


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Router]]:
    """_Router in the daemon's place; the signal handlers ``run`` sets are put back."""
    monkeypatch.setattr(daemon, "Router", _Router)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield _Router
    _Router.raises = None
    for s, h in handlers.items():
        signal.signal(s, h)


@pytest.mark.parametrize(
    ("raised", "code", "said"),
    [
        (EPERM, 4, f"{NEEDS_ROOT}: Operation not permitted"),
        (
            PermissionError(errno.EACCES, "Permission denied", "/run/itmroute/a.json"),
            4,
            "itmroute: permission denied: /run/itmroute/a.json",
        ),
        (
            BackendUnavailable("binding an nfqueue needs CAP_NET_ADMIN (root has it)"),
            4,
            "itmroute: binding an nfqueue needs CAP_NET_ADMIN (root has it)",
        ),
        (
            BackendUnavailable("nfnetlink_queue is missing"),
            1,
            "itmroute: nfnetlink_queue is missing",
        ),
    ],
    ids=["eperm", "a-file", "backend-needs-root", "backend-missing"],
)
def test_a_refusal_while_the_daemon_starts_its_loop(
    raised: BaseException,
    code: int,
    said: str,
    cfg: Path,
    router: type[_Router],
    capsys: pytest.CaptureFixture[str],
) -> None:
    router.raises = raised
    assert _run(cfg, "--duration", "1") == code
    assert capsys.readouterr().err == said + "\n"


def test_a_refusal_while_the_daemon_is_built(
    cfg: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(cfg: Any, **kw: Any) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(daemon, "Router", refused)
    assert _run(cfg) == 4
    assert capsys.readouterr().err == f"{NEEDS_ROOT}: Operation not permitted\n"


def test_the_default_state_directory_that_cannot_be_created(
    cfg: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --state a user meets /run/itmroute first: root's to create."""
    state_dir = tmp_path / "run" / "itmroute"
    monkeypatch.setattr(cli, "STATE_DIR", state_dir)

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(cli, "has_cap_net_admin", lambda: False)
    assert main(["run", "-c", str(cfg)]) == 4
    assert capsys.readouterr().err == (
        f"{NEEDS_ROOT}: cannot create {state_dir}: Permission denied\n"
    )
    # a service user with the capabilities: the directory is what is in the way
    monkeypatch.setattr(cli, "has_cap_net_admin", lambda: True)
    assert main(["run", "-c", str(cfg)]) == 4
    assert capsys.readouterr().err == (
        f"itmroute: cannot create {state_dir}: Permission denied: {STATE_ELSEWHERE}\n"
    )


def test_a_state_directory_the_daemon_cannot_write_is_refused_before_it_starts(
    cfg: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a warning a second while it serves: one line, exit 4, nothing started."""
    started = []
    monkeypatch.setattr(daemon, "Router", lambda *a, **kw: started.append(1))
    state_dir = tmp_path / "run" / "itmroute"
    state_dir.mkdir(parents=True)
    monkeypatch.setattr(cli, "STATE_DIR", state_dir)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != state_dir)
    assert main(["run", "-c", str(cfg)]) == 4
    assert capsys.readouterr().err == (
        f"itmroute: permission denied: cannot write in {state_dir}: {STATE_ELSEWHERE}\n"
    )
    st = tmp_path / "run" / "itmroute" / "x.json"
    assert main(["run", "-c", str(cfg), "--state", str(st)]) == 4
    assert capsys.readouterr().err == (
        f"itmroute: --state {st}: permission denied: cannot write in {state_dir}: "
        f"{STATE_ELSEWHERE}\n"
    )
    assert not started


def _as_nobody() -> list[str]:
    """The command prefix that runs as an unprivileged user (util-linux's setpriv,
    essential on Debian: its absence fails the test rather than skipping it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to drop root"
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]


@pytest.mark.parametrize("state", ["--state", "default"])
def test_run_as_an_unprivileged_user(state: str) -> None:
    """The real refusal, without simulation: one line, exit 4, nothing left."""
    prefix = _as_nobody()
    with tempfile.TemporaryDirectory(prefix="itmroute-nobody-") as d:
        os.chmod(d, 0o777)
        cfg = Path(d) / "a.yaml"
        cfg.write_text(CONFIG)
        cfg.chmod(0o644)
        extra = ["--state", f"{d}/a.json"] if state == "--state" else []
        res = subprocess.run(
            [*prefix, sys.executable, "-m", "itmroute", "run", "-c", str(cfg), *extra],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            cwd=Path(__file__).parents[3],
        )
        lines = [ln for ln in res.stderr.splitlines() if " INFO " not in ln]  # the log
        assert res.returncode == 4, res.stderr
        assert len(lines) == 1 and lines[0].startswith(NEEDS_ROOT + ": "), res.stderr
        assert sorted(os.listdir(d)) == ["a.yaml"]
