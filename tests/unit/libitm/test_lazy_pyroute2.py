"""libitm.control imports only pyroute2.netlink; the rest of pyroute2 still works."""

from __future__ import annotations

import subprocess
import sys

from tests.support.packets import ROOT_DIR

CHECK = """
import sys
from libitm.control import ItmControl
from libitm.control.queue import ItmQueueClient
pkg = sys.modules["pyroute2"]
assert "IPRoute" not in vars(pkg), "pyroute2's __init__ ran"
assert "pyroute2.ndb.main" not in sys.modules
from pyroute2 import config  # a submodule: still without the rest
assert "IPRoute" not in vars(pkg)
from pyroute2 import IPRoute  # a name of __init__: the whole library now
assert IPRoute.__module__.startswith("pyroute2.")
try:
    pkg.no_such_name
except AttributeError:
    print("ok")
"""


def test_control_plane_leaves_the_rest_of_pyroute2_unimported() -> None:
    res = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.split() == ["ok"], res.stderr
