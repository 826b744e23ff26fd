"""The CLI contract as a user without root meets it (tests/unit/test_cli_contract.py
is the rest): permission problems are exit 4 with the path, one line, no traceback.

The test is root so that it can drop to ``nobody`` (setpriv) for each command,
with a HOME of its own and, as working directory, a directory it may read but
not write. The project's virtualenv Python may sit under a directory nobody
cannot enter (/root/.pyenv); then the system's Python of the same version runs
the same code with the virtualenv's packages on PYTHONPATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libitm.pcap import PcapWriter
from tests.support import as_nobody

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60
APP = """
from libitm import Application, Hook, Interest, Verdict

class Mark(Application):
    label = "mark"
    hook = Hook.POST_ROUTING
    interest = Interest(protocol="udp")
    def class_func(self, pkt):
        return 1
    def process_func(self, where, cls, pkt):
        pkt.tos = 0x10
        return Verdict.ACCEPT
"""


@dataclass
class Nobody:
    """How to run a command as nobody: the interpreter, environment and directories."""

    python: str
    env: dict[str, str]
    home: Path  # nobody's: writable
    cwd: Path  # root's: readable, not writable

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_nobody.drop(), self.python, *argv],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=LIMIT,
            check=False,
        )


def _trace(path: Path) -> Path:
    """Two UDP packets, to ports 23 and 445."""
    with path.open("wb") as f:
        w = PcapWriter(f)
        for i, port in enumerate((23, 445)):
            l4 = struct.pack("!HHHH", 40000, port, 12, 0) + b"ping"
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 32, 1, 0, 64, 17, 0, b"\n\0\0\1", b"\n\0\0\2"
            )
            w.write_packet(1.0 + i, ip + l4)
    return path


@pytest.fixture(scope="module")
def nobody() -> Iterator[Nobody]:
    """nobody's HOME and a root-owned working directory with a trace and apps."""
    if os.geteuid() != 0:
        pytest.fail("the non-root CLI contract needs root to drop to nobody; run it as root")
    user = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="itm-nobody-home-"))
    cwd = Path(tempfile.mkdtemp(prefix="itm-root-dir-"))
    try:
        os.chown(home, user.pw_uid, user.pw_gid)
        home.chmod(0o755)
        cwd.chmod(0o755)
        _trace(cwd / "in.pcap").chmod(0o644)
        _trace(cwd / "secret.pcap").chmod(0o600)
        (cwd / "mark.py").write_text(APP)
        env = as_nobody.environment(home, os.environ.get("PATH", "/usr/bin:/bin"))
        yield Nobody(as_nobody.interpreter(env), env, home, cwd)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


ITMTOOL = ["-m", "itmtool.cli"]
QOS = [str(ROOT / "examples" / "qos_ctrl.py")]
BLOCKER = [str(ROOT / "examples" / "port_blocker.py")]

#: argv (HOME stands for nobody's home), exit code, what stderr says ({cwd}: the
#: root-owned working directory)
CASES = {
    "new in a root directory": (
        [*ITMTOOL, "new", "user", "foo"],
        4,
        "permission denied: {cwd}/foo",
    ),
    "build into the checkout": ([*ITMTOOL, "build", "--kernel", "6.12"], 4, "permission denied"),
    "vm build directory": ([*ITMTOOL, "vm", "--no-build", "--", "true"], 4, "permission denied"),
    "dkms install": ([*ITMTOOL, "dkms", "install", "--kernel", "6.12"], 4, "needs root"),
    "run out in a root directory": (
        [*ITMTOOL, "run", "mark.py", "--pcap", "in.pcap", "--out", "o.pcap"],
        4,
        "permission denied: {cwd}",
    ),
    "run log in a root directory": (
        [*ITMTOOL, "run", "mark.py", "--pcap", "in.pcap", "--out", "HOME/o.pcap", "--log", "v"],
        4,
        "permission denied: {cwd}",
    ),
    "run unreadable pcap": (
        [*ITMTOOL, "run", "mark.py", "--pcap", "secret.pcap"],
        4,
        "permission denied: secret.pcap",
    ),
    "run nfqueue": (
        [*ITMTOOL, "run", "mark.py", "--backend", "nfqueue", "--duration", "1"],
        4,
        "needs CAP_NET_ADMIN",
    ),
    "run offline works": (
        [*ITMTOOL, "run", "mark.py", "--pcap", "in.pcap", "--out", "HOME/ok.pcap"],
        0,
        "",
    ),
    "run kernel backend without itm_queue": (
        [*ITMTOOL, "run", "mark.py", "--backend", "kernel", "--duration", "1"],
        6,
        "itm_queue is not loaded",
    ),
    "qos_ctrl kernel backend without itm_queue": (
        [*QOS, "--backend", "kernel", "--duration", "1"],
        6,
        "itm_queue is not loaded",
    ),
    "qos_ctrl nfqueue": (
        [*QOS, "--backend", "nfqueue", "--duration", "1"],
        4,
        "needs CAP_NET_ADMIN",
    ),
    "qos_ctrl out in a root directory": (
        [*QOS, "--pcap", "in.pcap", "--out", "o.pcap"],
        4,
        "permission denied: {cwd}",
    ),
    "port_blocker unreadable pcap": (
        [*BLOCKER, "--ports", "23,445", "--pcap", "secret.pcap"],
        4,
        "permission denied: secret.pcap",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_as_nobody(nobody: Nobody, name: str) -> None:
    argv, code, says = CASES[name]
    argv = [a.replace("HOME", str(nobody.home)) for a in argv]
    before = sorted(p.name for p in nobody.home.iterdir())
    res = nobody.run(argv)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, (res.returncode, res.stderr)
    assert says.format(cwd=nobody.cwd) in res.stderr, res.stderr
    if code:
        assert len(res.stderr.splitlines()) <= 3, res.stderr  # message, hint (+ progress)
        assert sorted(p.name for p in nobody.home.iterdir()) == before  # nothing left
    assert sorted(p.name for p in nobody.cwd.iterdir()) == ["in.pcap", "mark.py", "secret.pcap"]
