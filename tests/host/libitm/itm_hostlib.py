"""Namespaces, processes and rule inspection for the libitm host tests."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from itmlab import Lab, run

HERE = Path(__file__).resolve().parent
APP = HERE / "itm_hostapp.py"
NET = HERE / "itm_hostnet.py"
PY = sys.executable


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr on failure (:func:`itmlab.run`)."""
    return run(*cmd, check=check, timeout=timeout)


def root_ns_rules() -> str:
    """The ITM chains and jumps in the root namespace's mangle tables."""
    lines = []
    for tool in ("iptables", "ip6tables"):
        out = sh(tool, "-w", "-t", "mangle", "-S", check=False).stdout
        lines += [f"{tool} {ln}" for ln in out.splitlines() if "ITM-" in ln]
    return "\n".join(lines)


class NetPair:
    """Namespaces ``a`` (sender side) and ``b`` joined by veth ``va``/``vb``.

    ::

        [ itmh-XXXX-a ]  va 10.N.M.1/24 ---- vb 10.N.M.2/24  [ itmh-XXXX-b ]
                            fdNN::1/64          fdNN::2/64
    """

    def __init__(self) -> None:
        tag = f"{random.getrandbits(24):06x}"
        self.a = f"itmh-{tag}-a"
        self.b = f"itmh-{tag}-b"
        n, m = random.randrange(100, 250), random.randrange(1, 250)
        self.ip_a = f"10.{n}.{m}.1"
        self.ip_b = f"10.{n}.{m}.2"
        self.ip6_a = f"fd{n:02x}:{m:x}::1"
        self.ip6_b = f"fd{n:02x}:{m:x}::2"
        self.procs: list[subprocess.Popen[str]] = []
        self.lab = Lab()

    def create(self) -> None:
        """Build the namespaces and the link."""
        lab = self.lab = Lab()
        for ns in (self.a, self.b):
            lab.ns(ns, exact=True)
        lab.link(self.a, "va", self.b, "vb", [f"{self.ip_a}/24", f"{self.ip6_a}/64"],
                 [f"{self.ip_b}/24", f"{self.ip6_b}/64"])  # fmt: skip
        lab.create()

    def destroy(self) -> None:
        """Kill leftover processes and delete both namespaces (and their rules)."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self.lab.destroy()

    # ---------------------------------------------------------- processes
    def popen(self, ns: str, *args: str) -> subprocess.Popen[str]:
        """Start ``args`` inside ``ns`` (the child is the python process itself)."""
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[2]), PYTHONUNBUFFERED="1")
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.procs.append(p)
        return p

    def run(self, ns: str, *args: str, timeout: float = 30) -> str:
        """Run ``args`` inside ``ns`` and return stdout."""
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[2]))
        res = subprocess.run(
            ["ip", "netns", "exec", ns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{args} in {ns} failed: {res.stderr}")
        return res.stdout

    def receiver(self, ns: str, *args: str) -> subprocess.Popen[str]:
        """Start a helper from itm_hostnet.py and wait for its "ready" line."""
        p = self.popen(ns, PY, str(NET), *args)
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(
                f"helper {args} did not start: {line} {p.stderr and p.stderr.read()}"
            )
        return p

    def net(self, ns: str, *args: str, timeout: float = 60) -> dict[str, object]:
        """Run an itm_hostnet.py command to completion; its JSON output."""
        out = self.run(ns, PY, str(NET), *args, timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def app(self, ns: str, tmp: Path, *args: str, wait_ready: bool = True) -> App:
        """Start itm_hostapp.py in ``ns`` and wait until its rules are installed."""
        ready = tmp / f"ready-{len(self.procs)}"
        p = self.popen(ns, PY, str(APP), "--ready", str(ready), *args)
        app = App(p, ready)
        if wait_ready:
            app.wait_ready()
        return app

    def rules(self, ns: str) -> str:
        """The mangle rules (v4 and v6) of ``ns`` that mention ITM."""
        lines = []
        for tool in ("iptables", "ip6tables"):
            out = sh("ip", "netns", "exec", ns, tool, "-w", "-t", "mangle", "-S").stdout
            lines += [f"{tool} {ln}" for ln in out.splitlines() if "ITM-" in ln]
        return "\n".join(lines)


class RoutedPair(NetPair):
    """``a`` and ``b`` on two subnets with a router namespace ``r`` between them.

    ::

        [ a ] va 10.N.M.1/24 -- ra 10.N.M.254 [ r ] rb 10.N.M+1.254 -- vb 10.N.M+1.2/24 [ b ]
    """

    def __init__(self) -> None:
        super().__init__()
        self.r = self.a[:-1] + "r"
        parts = self.ip_a.split(".")
        n, m = int(parts[1]), int(parts[2]) % 249
        self.ip_a = f"10.{n}.{m}.1"
        self.ip_b = f"10.{n}.{m + 1}.2"
        self.gw_a = f"10.{n}.{m}.254"
        self.gw_b = f"10.{n}.{m + 1}.254"

    def create(self) -> None:
        """Build the three namespaces, links, addresses and routes."""
        lab = self.lab = Lab()
        for ns in (self.a, self.r, self.b):
            lab.ns(ns, exact=True)
        lab.via_router(self.a, self.r, self.b, ("va", f"{self.ip_a}/24", "ra", f"{self.gw_a}/24"),
                       ("rb", f"{self.gw_b}/24", "vb", f"{self.ip_b}/24"))  # fmt: skip
        lab.create()


class App:
    """A running itm_hostapp.py."""

    def __init__(self, proc: subprocess.Popen[str], ready: Path) -> None:
        self.proc = proc
        self.ready = ready

    def wait_ready(self, timeout: float = 15) -> None:
        """Block until the app has installed its rules."""
        end = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early: {self.proc.communicate()[1]}")
            if time.monotonic() > end:
                raise RuntimeError("app did not become ready")
            time.sleep(0.02)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the app."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> tuple[int, str]:
        """Wait for exit; (return code, stderr)."""
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


def read_events(path: Path) -> list[dict[str, object]]:
    """The JSON lines an app wrote."""
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
