"""What an `itmtool new user` application must pass, as its user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def assert_user_app_passes(d: Path, name: str) -> None:
    """ruff, ruff format, mypy and the application's own test (2 tests) in ``d``."""
    for cmd in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        res = subprocess.run(
            [str(VENV_BIN / cmd[0]), *cmd[1:]], cwd=d, capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_{name}.py"],
        cwd=d,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout
