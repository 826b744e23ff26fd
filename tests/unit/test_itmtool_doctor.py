"""`itmtool doctor` over a fake machine: OK / MISSING lines, the fixes, the exit code per --for."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from itmtool import cli, doctor
from itmtool.matrix import Kernel

K61, K612 = "6.1.0-57-amd64", "6.12.118+deb12-amd64"
CAP_NET_ADMIN = 1 << 12


@dataclass(frozen=True)
class UninstalledKernel(Kernel):
    """A kernel of the matrix whose headers package is not installed."""

    @property
    def release(self) -> str:
        raise LookupError(f"Debian package {self.headers_pkg} is not installed")


class Machine:
    """A machine with everything itmBench needs; tests take things away."""

    def __init__(self) -> None:
        self.commands = {
            "make", "gcc", "qemu-system-x86_64", "busybox", "iptables", "ip6tables", "nft",
            "dkms", "flex", "bison", "bc", *doctor.TEST_COMMANDS,
        }  # fmt: skip
        self.paths = {
            "/proc/net/netfilter/nfnetlink_queue",
            str(doctor.SOURCE_TARBALL),
            str(doctor.LIBELF_HEADER),
            *(f"/boot/vmlinuz-{k}" for k in (K61, K612)),
            *(f"/lib/modules/{k}/build" for k in (K61, K612)),
        }
        self.modules = False  # the running kernel loads modules
        self.caps = CAP_NET_ADMIN
        self.vng = True
        self.euid = 0
        self.kernels: list[Kernel] = [
            FixedKernel("6.1", "linux-image-amd64", "linux-headers-amd64", fixed=K61),
            FixedKernel("6.12", "linux-image-6.12-amd64", "linux-headers-6.12-amd64", fixed=K612),
        ]

    def exists(self, path: Path) -> bool:
        if str(path) == "/proc/modules":
            return self.modules
        return str(path) in self.paths

    def probe(self) -> doctor.Probe:
        return doctor.Probe(
            which=lambda c: f"/usr/bin/{c}" if c in self.commands else None,
            exists=self.exists,
            is_file=lambda p: False,  # busybox only through `which`
            release="6.18.0-nomodules",
            euid=self.euid,
            cap_eff=lambda: self.caps,
            vng=lambda: "/venv/bin/vng" if self.vng else None,
            run=lambda argv: subprocess.CompletedProcess(argv, 1, "", "not found"),
            matrix=lambda: self.kernels,
            python="/venv/bin/python",
        )

    def report(self, purpose: str) -> dict[str, object]:
        return doctor.report(purpose, self.probe())


@dataclass(frozen=True)
class FixedKernel(Kernel):
    """A kernel of the matrix with its release given (no dpkg)."""

    fixed: str = ""

    @property
    def release(self) -> str:
        return self.fixed


def _line(doc: dict[str, object], name: str) -> str:
    """The table's line for check `name`, with its fix line when there is one."""
    lines = doctor.table(doc).splitlines()
    i = next(i for i, line in enumerate(lines) if line[9:].startswith(name))
    fix = lines[i + 1] if i + 1 < len(lines) and "fix: " in lines[i + 1] else ""
    return lines[i] + ("\n" + fix if fix else "")


@pytest.mark.parametrize("purpose", doctor.PURPOSES)
def test_everything_there_is_ready(purpose: str) -> None:
    doc = Machine().report(purpose)
    assert doc["ok"] and doctor.exit_code(doc) == 0
    assert doctor.table(doc).splitlines()[-1] == f"ready for {purpose}"


def test_no_busybox_stops_demo_and_test_with_the_fix() -> None:
    m = Machine()
    m.commands.discard("busybox")
    for purpose in ("demo", "test"):
        doc = m.report(purpose)
        assert doctor.exit_code(doc) == 6 and doc["missing"] == ["busybox"]
        line = _line(doc, "busybox")
        assert line.startswith("MISSING  busybox")
        assert "initramfs" in line and "fix: apt-get install -y busybox-static" in line
        assert "NOT ready for" in doctor.table(doc).splitlines()[-1]
    # a user whose kernel loads modules does not need the VM
    m.modules = True
    m.paths.add("/lib/modules/6.18.0-nomodules/build")
    doc = m.report("user")
    assert doctor.exit_code(doc) == 0
    assert _line(doc, "busybox").startswith("missing  busybox")
    assert "(not needed for user)" in _line(doc, "busybox")


def test_user_needs_modules_here_or_the_vm_path() -> None:
    m = Machine()
    m.vng = False
    doc = m.report("user")
    assert doctor.exit_code(doc) == 6
    assert doc["missing"] == ["modules on this kernel", "virtme-ng"]
    assert "fix: /venv/bin/python -m pip install virtme-ng" in _line(doc, "virtme-ng")
    m.modules = True  # modules, but no headers for the running kernel
    doc = m.report("user")
    assert doc["missing"] == ["modules on this kernel", "virtme-ng"]
    assert "apt-get install -y linux-headers-6.18.0-nomodules" in _line(doc, "modules on")
    m.paths.add("/lib/modules/6.18.0-nomodules/build")
    assert m.report("user")["ok"]


def test_test_needs_the_host_netfilter_dkms_and_cap_net_admin_demo_does_not() -> None:
    m = Machine()
    m.commands -= {"ip6tables", "nft", "dkms"}
    m.paths.discard("/proc/net/netfilter/nfnetlink_queue")
    m.caps = 0
    m.euid = 1000
    doc = m.report("test")
    assert doctor.exit_code(doc) == 6
    assert doc["missing"] == ["netfilter tools", "nfnetlink_queue", "dkms", "CAP_NET_ADMIN"]
    assert "fix: sudo apt-get install -y iptables nftables" in _line(doc, "netfilter tools")
    assert "ip6tables, nft not found" in _line(doc, "netfilter tools")
    assert "CONFIG_NETFILTER_NETLINK_QUEUE" in _line(doc, "nfnetlink_queue")
    assert "fix: sudo apt-get install -y dkms" in _line(doc, "dkms")
    assert "fix: run it as root: sudo make test" in _line(doc, "CAP_NET_ADMIN")
    assert Machine().report("demo")["ok"]
    m2 = Machine()
    m2.commands -= {"ip6tables", "nft", "dkms"}
    m2.caps = 0
    assert m2.report("demo")["ok"]


def test_matrix_kernels_demo_needs_the_newest_test_all() -> None:
    m = Machine()
    m.kernels[0] = UninstalledKernel("6.1", "linux-image-amd64", "linux-headers-amd64")
    assert m.report("demo")["ok"]
    doc = m.report("test")
    assert doc["missing"] == ["kernel 6.1"]
    line = _line(doc, "kernel 6.1")
    assert "linux-headers-amd64 is not installed" in line
    assert "fix: apt-get install -y linux-image-amd64 linux-headers-amd64" in line
    m.paths.discard(f"/lib/modules/{K612}/build")
    doc = m.report("demo")
    assert doc["missing"] == ["kernel 6.12"]
    assert f"/lib/modules/{K612}/build" in _line(doc, "kernel 6.12")


def test_busybox_is_found_where_virtme_ng_looks() -> None:
    where = {"/bin/busybox-static"}
    probe = doctor.Probe(which=lambda _: None, is_file=lambda p: str(p) in where)
    assert doctor.find_busybox(probe) == "/bin/busybox-static"
    where.clear()
    assert doctor.find_busybox(probe) is None


def test_cli_doctor_json_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    m = Machine()
    m.commands.discard("busybox")
    probe = m.probe()
    monkeypatch.setattr(doctor, "Probe", lambda: probe)
    assert cli.main(["doctor", "--for", "demo", "--json"]) == 6
    doc = json.loads(capsys.readouterr().out)
    assert doc["for"] == "demo" and doc["missing"] == ["busybox"]
    row = next(r for r in doc["checks"] if r["name"] == "busybox")
    assert row == {
        "name": "busybox",
        "ok": False,
        "needed": True,
        "detail": "no busybox: virtme-ng cannot build the VM's initramfs without it",
        "fix": "apt-get install -y busybox-static",
    }
    m.commands.add("busybox")
    assert cli.main(["doctor"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ready for user"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"itmtool {version('itmbench')}\n"


def test_a_user_needs_neither_the_debug_kernel_nor_uml() -> None:
    """The kernels of ours (rows ``build:debug``, ``build:uml``) are the tests': a
    user (and ``make demo``) is ready without them; ``--for test`` is not."""
    m = Machine()
    m.modules = False  # this machine's kernel loads no modules: the VM path it is
    m.kernels += [
        Kernel("debug", "build:debug", "build:debug"),
        Kernel("uml", "build:uml", "build:uml"),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Kernel, "release", property(lambda k: f"6.12.118-{k.name}"))
        user, demo, test = (m.report(p) for p in ("user", "demo", "test"))
    assert user["ok"] and demo["ok"], (user["missing"], demo["missing"])
    missing = test["missing"]
    assert isinstance(missing, list)
    assert not test["ok"] and set(missing) >= {"kernel debug", "kernel uml"}
