"""The wheel, installed the way a user installs it, works outside the clone.

``pip wheel --no-deps`` builds the wheel from this checkout; a fresh virtualenv
in a temporary directory (no system site-packages: a missing dependency shows)
gets it and its dependencies from PyPI (pip's download cache makes that quick).
Then, from a directory outside the clone, a user's first steps:

* ``import libitm, libitm.backends, libitm.control, itmlab`` -- from the venv, not the clone;
* ``itmtool --help`` and ``itmtool --version``;
* ``itmtool new user demoapp`` and its own generated pytest;
* ``itmtool build --kernel 6.12``: the sources come from the wheel, the build
  goes to the per-user cache ($XDG_CACHE_HOME/itmbench/build);
* ``itmtool new kernel demok`` and its own Makefile's W=1 build against 6.12's
  headers and that build's Module.symvers;
* ``itmtool run`` offline on a pcap written with libitm.pcap.PcapWriter;
* ``itmtool dkms install --dry-run`` (the modules a user needs, itm_queue included)
  and ``itmtool doctor --json``.

Needs network access to PyPI (or pip's cache) and the 6.12 headers of the
matrix (`make setup`); it fails, never skips, without them.  About a minute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from itmtool.matrix import ROOT, read_matrix
from libitm.pcap import PcapReader

#: the script the user's venv runs to write the input trace (UDP 10.0.0.1 -> 10.0.0.2:5000)
MKPCAP = """\
import struct, sys
from libitm.pcap import PcapWriter

def udp(i):
    payload = b"itmBench %d" % i
    l4 = struct.pack("!HHHH", 40000 + i, 5000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return ip + l4

with open(sys.argv[1], "wb") as f:
    w = PcapWriter(f)
    for i in range(int(sys.argv[2])):
        w.write_packet(1.0 + i, udp(i))
"""
PACKETS = 5
_DIAG = re.compile(r"(warning|error)\b", re.IGNORECASE)


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run a command as the user would; fail the test with its output when it fails."""
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{out[-4000:]}"
    return proc.stdout


def test_the_wheel_works_outside_the_clone(tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    k612 = next(k for k in read_matrix() if k.name == "6.12")
    assert k612.build_dir.exists(), f"no 6.12 headers ({k612.build_dir}): run `make setup`"

    # the wheel, from the clone
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        cwd=ROOT,
        env=dict(os.environ),
    )
    (wheel,) = wheels.glob("itmbench-*.whl")

    # a fresh venv outside the clone, the wheel and its dependencies from PyPI
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=dict(os.environ))
    py = str(venv / "bin" / "python")
    user = tmp_path / "home"
    user.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", str(user)),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "LANG": "C.UTF-8",
    }
    run([py, "-m", "pip", "install", "-q", str(wheel), "pytest"], cwd=user, env=env)

    # the packages come from the venv
    out = run(
        [
            py,
            "-c",
            "import libitm, libitm.backends, libitm.control, itmtool, itmroute, itmlab\n"
            "for m in (libitm, libitm.backends, libitm.control, itmtool, itmroute, itmlab):\n"
            "    print(m.__file__)",
        ],
        cwd=user,
        env=env,
    )
    files = out.split()
    assert len(files) == 6 and all(f.startswith(str(venv)) for f in files), out

    out = run(["itmtool", "--help"], cwd=user, env=env)
    assert all(c in out for c in ("build", "new", "run", "dkms", "doctor")), out
    assert run(["itmtool", "--version"], cwd=user, env=env) == f"itmtool {version}\n"

    # a user-space application and its own test
    run(["itmtool", "new", "user", "demoapp"], cwd=user, env=env)
    out = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=user / "demoapp", env=env)
    assert re.search(r"\b\d+ passed\b", out) and "failed" not in out, out

    # the modules, built from the wheel's sources into the per-user cache
    doc = json.loads(run(["itmtool", "build", "--kernel", "6.12", "--json"], cwd=user, env=env))
    moddir = tmp_path / "cache" / "itmbench" / "build" / k612.release / "src"
    assert doc["ok"] and doc["moddir"] == str(moddir), doc
    assert {"kernel/itm_mod/itm_mod.ko", "kernel/itm_queue/itm_queue.ko"} <= set(doc["modules"])

    # a kernel application, built by its own Makefile against that build
    run(["itmtool", "new", "kernel", "demok"], cwd=user, env=env)
    make = run(
        ["make", "-C", str(user / "demok"), f"KDIR={k612.build_dir}", "W=1"], cwd=user, env=env
    )
    assert not [line for line in make.splitlines() if _DIAG.search(line)], make
    ko = user / "demok" / "demok.ko"
    assert ko.exists(), make
    info = run(["modinfo", "-F", "depends", str(ko)], cwd=user, env=env)
    assert info.strip() == "itm_mod"
    vermagic = run(["modinfo", "-F", "vermagic", str(ko)], cwd=user, env=env)
    assert vermagic.split()[0] == k612.release

    # the application, offline on a pcap
    (user / "mkpcap.py").write_text(MKPCAP)
    run([py, "mkpcap.py", "in.pcap", str(PACKETS)], cwd=user, env=env)
    argv = ["itmtool", "run", "demoapp/demoapp.py", "--pcap", "in.pcap", "--out", "out.pcap"]
    summary = json.loads(run([*argv, "--json"], cwd=user, env=env))
    counters = summary["apps"]["demoapp"]
    assert (counters["packets"], counters["accepted"], counters["errors"]) == (PACKETS, PACKETS, 0)
    with (user / "out.pcap").open("rb") as f:
        assert len(list(PcapReader(f))) == PACKETS

    # dkms finds its sources in the wheel, and installs every module a user needs
    out = run(["itmtool", "dkms", "install", "--dry-run", "--kernel", "6.12"], cwd=user, env=env)
    assert "modules: itm_mod, itm_queue, qos_mod, sch_rio, itm_route\n" in out, out

    # the doctor runs, and its exit code is its verdict
    proc = subprocess.run(
        ["itmtool", "doctor", "--json"], cwd=user, env=env, capture_output=True, text=True
    )
    doc = json.loads(proc.stdout)
    assert doc["for"] == "user" and proc.returncode == (0 if doc["ok"] else 6), proc.stderr
    assert {"busybox", "qemu", "virtme-ng", "kernel 6.12", "dkms"} <= {
        c["name"] for c in doc["checks"]
    }
