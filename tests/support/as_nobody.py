"""Running this project's code as the unprivileged user ``nobody`` (util-linux's
setpriv), with no capability or with the ones a test names.

The project's virtualenv Python may sit under a directory nobody cannot enter
(/root/.pyenv); then the system's Python of the same version runs the same code
with the virtualenv's packages on PYTHONPATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def drop(caps: tuple[str, ...] = ()) -> list[str]:
    """The command prefix that runs as nobody: no capability, or ``caps`` (names
    such as ``"net_admin"``) kept in the permitted, effective and ambient sets."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to drop root"
    cmd = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if caps:
        keep = ",".join(f"+{c}" for c in caps)
        cmd += [f"--inh-caps=-all,{keep}", f"--ambient-caps=-all,{keep}"]
    else:
        cmd += ["--inh-caps=-all"]
    return cmd


def environment(home: Path, path: str = "/usr/bin:/bin") -> dict[str, str]:
    """An environment for nobody: its HOME, and this checkout and the virtualenv's
    packages on PYTHONPATH."""
    paths = [str(ROOT), str(ROOT / "tools"), sysconfig.get_paths()["purelib"]]
    return {"HOME": str(home), "PATH": path, "PYTHONPATH": ":".join(paths)}


def interpreter(env: dict[str, str], wrap: tuple[str, ...] = ()) -> str:
    """A Python that nobody can run with this project, through the command ``wrap``
    (e.g. ``unshare``) if given: the virtualenv's, or the system's of the same
    version; fails the test when there is none."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, shutil.which(minor, path="/usr/bin:/usr/local/bin")):
        if python is None:
            continue
        probe = subprocess.run(
            [*drop(), *wrap, python, "-c", "import itmtool.cli, libitm"],
            env=env,
            cwd="/",
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return python
    pytest.fail(f"no Python that user nobody can run with this project ({minor} wanted)")
