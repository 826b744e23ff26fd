"""tests/support/forked.py, the guest tests' forked children, behave as a new
``ip netns exec NS python -c`` would in what the tests rely on: the namespace
and its /sys, warnings on stderr, no descriptor of the test process, exit
statuses, signals, and Popen's timeouts."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import forked
from tests.support.host_ns import require_root, scratch_ns

LOOK = """
import logging, os, sys
logging.getLogger("libitm").warning("told %s", sys.argv[1:])
print(sorted(os.listdir("/sys/class/net")))
print(*sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
"""


@pytest.fixture
def ns() -> Iterator[str]:
    require_root("network namespaces")
    with scratch_ns("itm-fork") as name:
        yield name


def test_a_child_sees_its_namespace_and_nothing_of_the_test(ns: str) -> None:
    # the test runner's own logging must not swallow the child's warning
    logging.getLogger().addHandler(logging.NullHandler())
    with socket.socket() as held:
        child = forked.start(forked.python_source(LOOK), ["-c", "a", "b"], ns=ns)
        out, err = child.communicate(timeout=30)
        assert held.fileno() > 2
    assert child.returncode == 0, err
    assert "told ['a', 'b']" in err, err
    names, fds = out.splitlines()
    assert names == "['lo']", out
    # 0, 1, 2 and the directory listdir read: the socket held here is not there
    assert len(fds.split()) == 4, out


def test_exit_statuses_and_signals_are_popens() -> None:
    sleeper = forked.python_source("import time; time.sleep(60)")
    child = forked.start(sleeper, ["-c"])
    with pytest.raises(subprocess.TimeoutExpired):
        child.communicate(timeout=0.2)
    child.kill()
    assert child.wait(10) == -9
    # a handler of the test process's (the VM tier's, while a guest runs) is not
    # the child's, even for a signal sent at once
    before = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        for _ in range(20):
            child = forked.start(sleeper, ["-c"])
            child.terminate()
            child.communicate(timeout=10)
            assert child.returncode == -15
    finally:
        signal.signal(signal.SIGTERM, before)
    assert forked.start(forked.python_source("raise SystemExit(3)"), ["-c"]).wait(10) == 3
    child = forked.start(forked.python_source("1 / 0"), ["-c"])
    _, err = child.communicate(timeout=10)
    assert child.returncode == 1 and "ZeroDivisionError" in err, err
