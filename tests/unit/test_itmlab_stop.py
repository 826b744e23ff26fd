"""itmlab.stop: the one way the lab, the benchmarks and the tests end a process
they started (signal, wait, SIGKILL when it does not go)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from itmlab import stop


def start(source: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", source], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    assert p.stdout.readline() == "up\n"
    return p


HANDLER = """
import signal, sys, time
signal.signal(signal.{sig}, lambda s, f: (print("got", s), sys.exit(3)))
print("up", flush=True)
time.sleep(60)
"""

IGNORING = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
time.sleep(60)
"""


def test_the_signal_ends_it_and_its_output_is_returned() -> None:
    p = start(HANDLER.format(sig="SIGINT"))
    out, err = stop(p, signal.SIGINT, timeout=10)
    assert out == f"got {int(signal.SIGINT)}\n" and err == ""
    assert p.returncode == 3


def test_a_process_that_ignores_the_signal_is_killed_after_the_timeout() -> None:
    p = start(IGNORING)
    stop(p, timeout=0.5)
    assert p.returncode == -signal.SIGKILL


def test_a_stopped_process_is_continued_first_with_cont() -> None:
    p = start(HANDLER.format(sig="SIGTERM"))
    os.kill(p.pid, signal.SIGSTOP)
    out, _ = stop(p, cont=True, timeout=10)
    assert out == f"got {int(signal.SIGTERM)}\n" and p.returncode == 3


def test_an_ended_process_gets_no_signal() -> None:
    p = subprocess.Popen([sys.executable, "-c", "print('bye')"], stdout=subprocess.PIPE, text=True)
    p.wait(timeout=10)
    out, err = stop(p)
    assert (out, err) == ("bye\n", "") and p.returncode == 0
