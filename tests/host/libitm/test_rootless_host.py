"""libitm with no root at all: user ``nobody`` in a user and network namespace of
its own (``unshare -rn``, as a researcher without sudo would try it) runs a decider
and an observer on the nfqueue backend over loopback, and Ctrl-C leaves no rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import as_nobody

SCRIPT = """
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path

ready = Path(sys.argv[2])


def app():
    from libitm import Interest, ItmInfo, ItmLoop, Verdict

    seen = []
    loop = ItmLoop("nfqueue")
    loop.register_hook("ip_in", ItmInfo(
        "rl-block", Interest(protocol="udp", dport=5010),
        class_func=lambda w, p: 1, process_func=lambda w, c, p: Verdict.DROP))
    loop.register_hook("ip_in", ItmInfo(
        "rl-watch", Interest(protocol="udp", dport=5009),
        class_func=lambda w, p: 1, log_func=lambda w, c, p: seen.append(p.dport)))
    loop.register_timer(ready.touch, 0.05)
    try:
        loop.run(duration=60)
    except KeyboardInterrupt:
        pass
    print(json.dumps({"seen": len(seen)}), flush=True)


def received(port, count):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", port))
    rx.settimeout(0.5)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(count):
        tx.sendto(b"x" * 32, ("127.0.0.1", port))
    got = 0
    try:
        while got < count:
            rx.recv(100)
            got += 1
    except TimeoutError:
        pass
    return got


def rules():
    from libitm.xtables import command_path

    out = subprocess.run([command_path("iptables"), "-t", "mangle", "-S"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "ITM" in line]


def main():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    p = subprocess.Popen([sys.executable, __file__, "app", str(ready)], stdout=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    end = time.monotonic() + 20
    while not ready.exists():
        if p.poll() is not None or time.monotonic() > end:
            p.kill()
            sys.exit("the application did not start")
        time.sleep(0.05)
    during = rules()
    result = {"passed": received(5009, 20), "blocked": received(5010, 10), "rules": len(during)}
    time.sleep(0.3)  # the observer's last copies
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    result.update(json.loads(out.strip().splitlines()[-1]), exit=p.returncode, left=rules())
    print(json.dumps(result), flush=True)


app() if sys.argv[1] == "app" else main()
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="itm-rootless-"))
    try:
        os.chmod(d, 0o777)
        (d / "rootless.py").write_text(SCRIPT)
        (d / "rootless.py").chmod(0o644)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_nobody_in_its_own_user_and_network_namespace(workdir: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed"
    env = as_nobody.environment(workdir)
    wrap = (unshare, "--user", "--map-root-user", "--net")
    python = as_nobody.interpreter(env, wrap)
    cmd = [*as_nobody.drop(), *wrap]
    res = subprocess.run(
        [*cmd, python, str(workdir / "rootless.py"), "main", str(workdir / "ready")],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {
        "passed": 20,
        "blocked": 0,
        "rules": out["rules"],
        "seen": 20,
        "exit": 0,
        "left": [],
    }, (out, res.stderr)
    assert out["rules"] >= 2, out  # the decider's chain and its jump, at least
    assert "Traceback" not in res.stderr, res.stderr
    # the table it could not note goes with the namespace: no warning about it
    assert "cannot note" not in res.stderr, res.stderr
