"""libitm without root: a process of user nobody that holds CAP_NET_ADMIN (as a
systemd service with ``AmbientCapabilities=CAP_NET_ADMIN`` does) runs deciders
and observers on the nfqueue backend, leaves no rule behind on Ctrl-C, and after
kill -9 ``itmtool cleanup`` with the same capability removes its rules.  With
CAP_BPF and CAP_PERFMON besides, its observers get their copies from the BPF ring."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libitm import Hook
from libitm.transport.bpf_syscall import program_names
from libitm.transport.ring import program_name
from tests.support import as_nobody
from tests.support.netns_pair import NetPair

APP = """
import json, logging, signal, sys
from pathlib import Path
from libitm import Interest, ItmInfo, ItmLoop, Verdict

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
seen = []
loop = ItmLoop("nfqueue", observer_copies=sys.argv[2])
loop.register_hook("ip_in", ItmInfo(
    "cap-watch", Interest(family=4),
    class_func=lambda where, pkt: 1,
    log_func=lambda where, cls, pkt: seen.append(pkt.dport) if pkt.proto == 17 else None))
loop.register_hook("ip_in", ItmInfo(
    "cap-block", Interest(protocol="udp", dport=5010),
    class_func=lambda where, pkt: 1,
    process_func=lambda where, cls, pkt: Verdict.DROP))
loop.register_timer(lambda: Path(sys.argv[1]).touch(), 0.05)
try:
    loop.run(duration=60)
except KeyboardInterrupt:
    pass  # Ctrl-C: the loop has closed (rules gone); say what was seen
finally:
    print(json.dumps({"seen": len(seen), "copies": loop.counters()["backend"]}), flush=True)
"""

NET_ADMIN = ("net_admin",)
WITH_BPF = ("net_admin", "bpf", "perfmon")


@pytest.fixture
def nobody() -> Iterator[tuple[Path, dict[str, str], str]]:
    """A directory nobody may read (the app script, the ready file's directory is
    its own), nobody's environment and interpreter."""
    d = Path(tempfile.mkdtemp(prefix="itm-caps-"))
    try:
        os.chmod(d, 0o777)
        (d / "app.py").write_text(APP)
        (d / "app.py").chmod(0o644)
        env = as_nobody.environment(d)
        yield d, env, as_nobody.interpreter(env)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _start(
    net: NetPair, nobody: tuple[Path, dict[str, str], str], caps: tuple[str, ...], copies: str
) -> subprocess.Popen[str]:
    d, env, python = nobody
    ready = d / "ready"
    ready.unlink(missing_ok=True)
    cmd = ["ip", "netns", "exec", net.b, *as_nobody.drop(caps), python, str(d / "app.py")]
    p = subprocess.Popen(
        [*cmd, str(ready), copies],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=d,
        # a child of a non-interactive shell ignores SIGINT; a user's Ctrl-C reaches it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    net.procs.append(p)
    end = time.monotonic() + 20
    while not ready.exists():
        if p.poll() is not None or time.monotonic() > end:
            p.kill()
            out, err = p.communicate(timeout=10)
            pytest.fail(f"the application as nobody did not start: {out} {err}")
        time.sleep(0.05)
    return p


def _received(net: NetPair, port: int, count: int) -> int:
    rx = net.receiver(net.b, "udp-recv", str(port), "3", str(count))
    net.net(net.a, "udp-send", net.ip_b, str(port), str(count))
    out, _ = rx.communicate(timeout=30)
    return int(json.loads(out.strip().splitlines()[-1])["received"])


def _interrupted(p: subprocess.Popen[str]) -> tuple[dict[str, object], str]:
    """Ctrl-C: the application's last line and its stderr."""
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    lines = out.strip().splitlines()
    assert lines, err
    return json.loads(lines[-1]), err


def test_cap_net_admin_alone_runs_a_decider_and_an_observer(
    net: NetPair, nobody: tuple[Path, dict[str, str], str]
) -> None:
    """No root, no CAP_BPF: the decider drops its port, the observer gets NFLOG
    copies (saying why not the ring, naming the capabilities), Ctrl-C removes every
    rule, and the table it made goes with it."""
    p = _start(net, nobody, NET_ADMIN, "auto")
    assert "NFQUEUE" in net.rules(net.b)
    assert _received(net, 5009, 20) == 20
    assert _received(net, 5010, 10) == 0
    time.sleep(0.3)  # the observer's last copies
    out, err = _interrupted(p)
    assert out["seen"] == 30, (out, err)
    assert "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN" in err, err
    assert "Traceback" not in err, err
    assert net.rules(net.b) == ""
    # the table libitm created (commented as its own, no file in /run/libitm needed)
    # goes with its last rule
    assert "cannot note" not in err, err
    tables = subprocess.run(
        ["ip", "netns", "exec", net.b, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mangle" not in tables, tables


def _cleanup(
    net: NetPair, nobody: tuple[Path, dict[str, str], str], caps: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    """`itmtool cleanup` in namespace b as nobody with ``caps``."""
    d, env, python = nobody
    cmd = ["ip", "netns", "exec", net.b, *as_nobody.drop(caps), python, "-m", "itmtool.cli"]
    return subprocess.run(
        [*cmd, "cleanup"], capture_output=True, text=True, env=env, cwd=d, timeout=60, check=False
    )


def test_after_kill_9_itmtool_cleanup_with_cap_net_admin_removes_the_rules(
    net: NetPair, nobody: tuple[Path, dict[str, str], str]
) -> None:
    p = _start(net, nobody, NET_ADMIN, "nflog")
    p.kill()
    p.communicate(timeout=10)
    assert "NFQUEUE" in net.rules(net.b)
    # without the capability: refused in one line, exit 4, nothing removed
    res = _cleanup(net, nobody, ())
    assert res.returncode == 4, res
    assert res.stderr.strip().splitlines() == [
        "itmtool: cleanup: cleanup needs CAP_NET_ADMIN (root has it)"
    ]
    assert "NFQUEUE" in net.rules(net.b)
    res = _cleanup(net, nobody, NET_ADMIN)
    assert res.returncode == 0, res.stderr
    assert "process" in res.stdout and "is gone" in res.stdout, res.stdout
    assert net.rules(net.b) == ""


def test_with_cap_bpf_and_cap_perfmon_observers_read_the_ring(
    net: NetPair, nobody: tuple[Path, dict[str, str], str]
) -> None:
    """This host's kernel has BPF netfilter links (test_bpf_ring_host.py): as nobody
    with the three capabilities, observer_copies='ring' works and the program goes
    with the process."""
    p = _start(net, nobody, WITH_BPF, "ring")
    mine = program_name(4, Hook.IP_IN, p.pid)
    assert mine in program_names()
    assert _received(net, 5009, 20) == 20
    time.sleep(0.3)  # the ring's 10 ms timer
    out, err = _interrupted(p)
    assert out["seen"] == 20, (out, err)
    assert "Traceback" not in err, err
    assert net.rules(net.b) == ""
    end = time.monotonic() + 10
    while mine in program_names():
        assert time.monotonic() < end, "the program outlived its process"
        time.sleep(0.1)
