"""The WireGuard data path's parts that this machine's kernel runs (it has no
WireGuard: the data path itself is tests/kernel/test_itmroute_wireguard.py).

* :class:`~itmroute.nftsession.OwnedTable` with the real ``nft``: the table
  exists while its ``nft -i`` runs, refuses a second owner, names a bad
  command in one line, and is gone when its owner is killed with -9;
* ``itmroute run --datapath wireguard``: a relay (no destinations, no device)
  runs; a second one in the same namespace is refused in one line, exit 1;
  ``kill -9`` takes the steering table with it; an ITM with destinations on a
  kernel without WireGuard is told so in one line, exit 2, and nothing stays.

Everything runs in a network namespace of its own.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from itmlab import netns, sh
from itmroute.nftsession import NftError, OwnedTable
from tests.support.host_ns import require_root, scratch_ns

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _require_root() -> None:
    require_root("network namespaces, nftables")


@pytest.fixture
def ns() -> Iterator[str]:
    with scratch_ns("irwg") as name:
        yield name


def tables(ns: str) -> str:
    return sh("ip", "netns", "exec", ns, "nft", "list", "tables")


def has_wireguard(ns: str) -> bool:
    """Whether this kernel can make a WireGuard device (it cannot on this machine)."""
    made = subprocess.run(
        ["ip", "-n", ns, "link", "add", "wgprobe", "type", "wireguard"], capture_output=True
    )
    if made.returncode == 0:
        sh("ip", "-n", ns, "link", "del", "wgprobe")
    return made.returncode == 0


def test_an_owned_table_lives_with_its_nft(ns: str) -> None:
    with netns(ns):
        t = OwnedTable("inet", "itmt")
    try:
        assert "table inet itmt" in tables(ns)
        t.apply(["add set inet itmt s { type ipv4_addr; }", "add element inet itmt s { 10.0.0.1 }"])
        assert "10.0.0.1" in sh(
            "ip", "netns", "exec", ns, "nft", "list", "set", "inet", "itmt", "s"
        )
        with pytest.raises(NftError, match=r"^Error: .*\(in: add chain inet itmt bad") as e:
            t.apply(["add chain inet itmt bad { type filter hook nosuch priority 0; }"])
        assert "\n" not in str(e.value)
        t.apply(["add element inet itmt s { 10.0.0.2 }"])  # the session goes on
        with netns(ns), pytest.raises(NftError, match="table inet itmt: Error"):
            OwnedTable("inet", "itmt")  # nobody else may take it
        # nor change it from outside
        other = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "itmt", "x"],
            capture_output=True,
            text=True,
        )
        assert other.returncode != 0
    finally:
        t.close()
    assert "itmt" not in tables(ns)
    assert not t.alive
    with pytest.raises(NftError, match="not running"):
        t.apply(["list tables"])


def _run(ns: str, conf: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "itmroute", "run", "-c", str(conf),
         "--state", str(state), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def _wait_state(proc: subprocess.Popen[str], state: Path) -> None:
    end = time.monotonic() + 30
    while not state.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.1)
    if not state.exists():
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no state file: {err[-2000:]}")


def test_a_relay_runs_once_per_namespace_and_its_table_dies_with_it(
    ns: str, tmp_path: Path
) -> None:
    conf = tmp_path / "r.yaml"
    conf.write_text(
        f"name: wg-r\naddress: 10.77.1.2\nport: 7199\ndatapath: wireguard\n"
        f"key: '{secrets.token_hex(16)}'\n"
    )
    first = _run(ns, conf, tmp_path / "r1.json")
    try:
        _wait_state(first, tmp_path / "r1.json")
        assert "table inet itmroute" in tables(ns)
        second = _run(ns, conf, tmp_path / "r2.json")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        lines = [ln for ln in err.splitlines() if ln.startswith("itmroute:")]
        assert lines == [
            "itmroute: WireGuard data path: nftables table inet itmroute belongs to another"
            " process (another itmroute daemon runs the WireGuard data path in this network"
            " namespace; stop it, or run this one with another data path)"
        ], err
        assert "Traceback" not in err
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        end = time.monotonic() + 10
        while "itmroute" in tables(ns) and time.monotonic() < end:
            time.sleep(0.1)
        assert "itmroute" not in tables(ns)  # nft -i read end-of-file and went
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_a_kernel_without_wireguard_is_one_line_exit_2(ns: str, tmp_path: Path) -> None:
    conf = tmp_path / "a.yaml"
    conf.write_text(
        f"name: wg-a\naddress: 10.77.100.1\nport: 7199\n"
        f"key: '{secrets.token_hex(16)}'\n"
        "destinations: [{prefix: 10.99.0.0/24, itm: 10.99.0.1}]\n"
    )
    proc = _run(ns, conf, tmp_path / "a.json", "--datapath", "wireguard", "--duration", "1")
    _, err = proc.communicate(timeout=60)
    if has_wireguard(ns):  # a kernel that has it: the daemon runs and cleans up
        assert proc.returncode == 0, err
    else:
        assert proc.returncode == 2, err
        lines = [ln for ln in err.splitlines() if ln.startswith("itmroute:")]
        assert len(lines) == 1 and "this kernel has no WireGuard" in lines[0], err
    assert "Traceback" not in err
    assert "itmroute" not in tables(ns)
    assert "7177" not in sh("ip", "-n", ns, "rule", "show")
    assert "itmroute0" not in sh("ip", "-n", ns, "link", "show")
