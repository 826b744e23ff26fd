"""itmtool's module commands on this machine's own kernel, which cannot load modules.

A new user on such a machine must hear what is wrong and the way out (the VM),
with exit code 6 and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def itmtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "itmtool.cli", *args], capture_output=True, text=True, check=False
    )


def test_this_kernel_cannot_load_modules() -> None:
    assert not Path("/proc/modules").exists(), "these tests describe a kernel without modules"


def test_load_and_unload_point_at_the_vm() -> None:
    for args in (("load", "itm_mod"), ("load", "qos_mod", "threshold=5"), ("unload", "itm_mod")):
        res = itmtool(*args)
        assert res.returncode == 6, (args, res.stderr)
        assert "cannot load modules" in res.stderr and "itmtool vm" in res.stderr
        assert "Traceback" not in res.stderr


def test_bad_module_name_is_said_first() -> None:
    res = itmtool("load", "itm-nosuch")
    assert res.returncode == 5
    assert "no module called 'itm-nosuch'" in res.stderr and "itm_mod" in res.stderr


def test_build_for_the_running_kernel_without_headers() -> None:
    release = os.uname().release
    assert not Path(f"/lib/modules/{release}/build").exists()
    res = itmtool("build")
    assert res.returncode == 6
    assert f"no kernel headers for {release}" in res.stderr
    assert "--kernel 6.12" in res.stderr and "Traceback" not in res.stderr
