"""`itmtool dkms` through the real DKMS, the way a person installs the modules.

One story, in order:

1. ``itmtool dkms install --kernel 6.1`` (a kernel of the matrix that is not
   the running one): ``dkms status`` says installed; the modules are in
   ``/lib/modules/<6.1>/updates/dkms/``, their vermagic is 6.1's, and depmod
   indexed them (``modinfo -k <6.1> -n`` finds them, qos_mod and itm_queue depend
   on itm_mod);
2. the second kernel gets them the way a kernel upgrade does: Debian's hook
   ``/etc/kernel/postinst.d/dkms <6.12>`` (dkms autoinstall); then
   ``itmtool dkms install --kernel 6.12`` finds nothing left to do and
   ``itmtool dkms status --json`` shows both kernels;
3. the 6.12 kernel boots in a VM (``itmtool vm``; virtme-ng shares this
   machine's /lib/modules): ``modprobe qos_mod`` loads itm_mod first from
   depmod's index, ``modprobe itm_queue`` loads (Python applications' kernel
   backend), ``itmtool status`` shows qos_mod registered,
   ``modprobe -r`` leaves no module loaded;
4. ``itmtool dkms remove``: the package is gone from dkms, /usr/src and
   /var/lib/dkms, the .ko files are gone, and each kernel's depmod index is
   byte for byte what it was before the test.

The machine is left as it was found, also when a step fails (a ``finally``
removes whatever the test added, and dkms's signing key in /var/lib/dkms when
dkms made it during the test).  If itmbench is in dkms before the test, the
test fails without touching it.  It fails, never skips, when dkms is missing
(`make setup` installs it).  Two dkms builds and one VM boot under TCG: about
1.5 minutes on an idle 2-core machine, 4 on a busy one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from itmtool import dkms
from itmtool.matrix import read_matrix

LIB = Path("/lib/modules")
SRC = Path("/usr/src")
DKMS_TREE = Path("/var/lib/dkms")
HOOK = Path("/etc/kernel/postinst.d/dkms")
#: the modules a user needs at run time, all installed by dkms (sorted: as _ko_files lists them)
RUNTIME = ["itm_mod", "itm_queue", "qos_mod", "sch_rio", "itm_route"]

pytestmark = pytest.mark.root


def itmtool(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run itmtool as a person does (a new process), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "itmtool.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command, output captured, no check."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _index(release: str) -> dict[str, str]:
    """depmod's files of a kernel (modules.dep, .alias, .bin ...) by digest."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((LIB / release).glob("modules.*"))
    }


def _ko_files(release: str, names: list[str]) -> list[Path]:
    return sorted(p for n in names for p in (LIB / release / "updates" / "dkms").glob(f"{n}.ko*"))


def _dkms_status(package: str) -> str:
    return sh("dkms", "status", "-m", package).stdout.strip()


def _check_installed(release: str, package: str, version: str, names: list[str]) -> None:
    """What a person checks after an install for `release`."""
    assert f"{package}/{version}, {release}, x86_64: installed" in _dkms_status(package)
    files = _ko_files(release, names)
    assert [p.name.split(".")[0] for p in files] == sorted(names), files
    for path in files:
        vermagic = sh("modinfo", "-F", "vermagic", str(path)).stdout.split()
        assert vermagic[:1] == [release], (path, vermagic)
        found = sh("modinfo", "-k", release, "-n", path.name.split(".")[0]).stdout.strip()
        assert found == str(path), "depmod did not index it"
    for user in ("qos_mod", "itm_queue"):
        deps = sh("modinfo", "-k", release, "-F", "depends", user).stdout.strip()
        assert deps == "itm_mod", user


def _cleanup(
    package: str, version: str, releases: list[str], had_updates: dict[str, bool]
) -> list[str]:
    """Remove whatever is left of the package; returns what had to be removed."""
    left: list[str] = []
    if _dkms_status(package):
        left.append(f"dkms: {_dkms_status(package)}")
        sh("dkms", "remove", f"{package}/{version}", "--all")
    for path in (SRC / f"{package}-{version}", DKMS_TREE / package):
        if path.exists():
            left.append(str(path))
            shutil.rmtree(path)
    for rel in releases:
        stray = _ko_files(rel, RUNTIME)
        for p in stray:
            left.append(str(p))
            p.unlink()
        if stray:
            sh("depmod", "-a", rel)
        if not had_updates[rel]:
            for d in (LIB / rel / "updates" / "dkms", LIB / rel / "updates"):
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    return left


def test_dkms_install_two_kernels_modprobe_in_vm_and_remove() -> None:
    if shutil.which("dkms") is None:
        pytest.fail("dkms is not installed: `make setup` (scripts/setup.sh) installs it")
    assert os.geteuid() == 0, "the host tier runs as root"
    assert HOOK.exists(), f"{HOOK} (Debian's dkms kernel hook) is missing"
    conf, _ = dkms.tree_conf()
    package, version = conf.package, conf.version
    names = [n for n, _ in conf.modules()]
    assert names == RUNTIME
    k61, k612 = read_matrix()[0], read_matrix()[1]
    releases = [k61.release, k612.release]
    assert os.uname().release not in releases, "the test installs for kernels that do not run"

    before = _dkms_status(package)
    leftovers = [
        str(p) for p in (SRC / f"{package}-{version}", DKMS_TREE / package) if p.exists()
    ] + [str(p) for r in releases for p in _ko_files(r, names)]
    if before or leftovers:
        pytest.fail(
            f"{package} is already in dkms on this machine ({before or ', '.join(leftovers)}): "
            "this test will not clobber it; remove it (`itmtool dkms remove`) and run again"
        )
    # dkms makes its signing key on its first build: one the test made goes with it
    keys = [p for p in (DKMS_TREE / "mok.key", DKMS_TREE / "mok.pub") if not p.exists()]
    index = {r: _index(r) for r in releases}
    had_updates = {r: (LIB / r / "updates").exists() for r in releases}
    times: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        # 1. a person installs for 6.1, a kernel that is not the running one
        res = itmtool("dkms", "install", "--kernel", k61.name)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"installed with dkms for {releases[0]}" in res.stdout
        assert f"{LIB}/{releases[0]}/updates/dkms/itm_mod.ko" in res.stdout
        _check_installed(releases[0], package, version, names)
        times["install 6.1"] = time.monotonic() - t0

        # 2. the second kernel, as a kernel upgrade installs it: Debian's hook
        t = time.monotonic()
        hook = sh(str(HOOK), releases[1])
        assert hook.returncode == 0, hook.stdout + hook.stderr
        _check_installed(releases[1], package, version, names)
        res = itmtool("dkms", "install", "--kernel", k612.name)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"installed for {releases[1]} already" in res.stdout
        res = itmtool("dkms", "status", "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["added"] and doc["source"] == str(SRC / f"{package}-{version}")
        assert [(r["kernel"], r["state"]) for r in doc["kernels"]] == [
            (rel, "installed") for rel in sorted(releases)
        ]
        for row in doc["kernels"]:
            vermagics = [m["vermagic"].split()[0] for m in row["modules"]]
            assert vermagics == [row["kernel"]] * len(names)
        times["autoinstall 6.12"] = time.monotonic() - t

        # 3. the DKMS modules load by name in the booted 6.12 kernel
        t = time.monotonic()
        guest = (
            "set -e; modinfo -n qos_mod; modprobe qos_mod; modprobe itm_queue; "
            "echo itm_queue-loaded: $(grep -c '^itm_queue ' /proc/modules); itmtool status; "
            "modprobe -r qos_mod itm_queue itm_mod; echo loaded-after-modprobe-r: "
            "$(grep -cE '^(itm_mod|itm_queue|qos_mod) ' /proc/modules)"
        )
        res = itmtool(
            "vm",
            "--kernel",
            k612.name,
            "--no-build",
            "--cpus",  # the VM tier's guests may run beside it (docs/testing.md)
            "1",
            "--console",
            "--timeout",
            "600",
            "--",
            guest,
            timeout=700,
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-6000:]
        # the kernel's console (--console, for a VM that dies early) shares the
        # output: its lines carry a [timestamp] and may cut into the guest's
        assert f"{LIB}/{releases[1]}/updates/dkms/qos_mod.ko.xz\n" in out
        assert re.search(r"^itm_mod: loaded", out, re.M), out[-6000:]
        assert "itm_queue-loaded: 1\n" in out, out[-6000:]
        assert re.search(r"^post_routing +qos_mod +kernel", out, re.M), out[-6000:]
        assert "loaded-after-modprobe-r: 0\n" in out, out[-6000:]
        times["VM modprobe 6.12"] = time.monotonic() - t

        # 4. remove: nothing of it is left
        t = time.monotonic()
        res = itmtool("dkms", "remove")
        assert res.returncode == 0, res.stdout + res.stderr
        assert _dkms_status(package) == ""
        assert not (SRC / f"{package}-{version}").exists()
        assert not (DKMS_TREE / package).exists()
        for rel in releases:
            assert _ko_files(rel, names) == []
            assert sh("modinfo", "-k", rel, "-n", "itm_mod").returncode != 0
            assert _index(rel) == index[rel], f"depmod's index of {rel} changed"
            assert (LIB / rel / "updates").exists() == had_updates[rel]
        res = itmtool("dkms", "status")
        assert res.returncode == 5 and "not added to dkms" in res.stdout
        times["remove"] = time.monotonic() - t
    finally:
        left = _cleanup(package, version, releases, had_updates)
        for key in keys:
            key.unlink(missing_ok=True)
        print("timings (s):", {k: round(v) for k, v in times.items()})
    assert not left, f"the test had to clean up after itmtool dkms remove: {left}"
