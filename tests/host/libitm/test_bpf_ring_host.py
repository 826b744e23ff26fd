"""The BPF pieces of the ring copies on this machine's kernel: a program the
verifier refuses comes back with the verifier's log; a loaded program is listed
by name and gone once its descriptors are closed; the kernel's BTF has the
``struct sk_buff`` fields the program reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from libitm import Hook
from libitm.transport import bpf_syscall
from libitm.transport.btf import member_offsets
from libitm.transport.copy_program import EXIT, MOV64_K, SKB_FIELDS, insn
from libitm.transport.ring import RingTransport, program_name
from tests.support.host_ns import scratch_ns
from tests.support.packets import ROOT_DIR


def test_a_refused_program_carries_the_verifier_s_log() -> None:
    # returns 7: a netfilter program may answer NF_DROP (0) or NF_ACCEPT (1) only
    code = insn(MOV64_K, 0, imm=7) + insn(EXIT)
    with pytest.raises(bpf_syscall.BpfError) as e:
        bpf_syscall.load_netfilter(code, "itm_bad")
    assert "loading a BPF netfilter program" in str(e.value)
    assert "R0" in e.value.log, e.value.log  # the verifier names the register


def test_sk_buff_offsets_come_from_this_kernel_s_btf() -> None:
    offs = member_offsets("sk_buff", SKB_FIELDS)
    assert set(offs) == set(SKB_FIELDS)
    assert offs["data_len"] == offs["len"] + 4  # adjacent u32s in every build


def test_a_ring_s_program_is_listed_while_attached_and_gone_after_close() -> None:
    ns = f"itmbpf{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        probe = (
            "import sys, time\n"
            "from libitm import Hook\n"
            "from libitm.transport.ring import RingTransport\n"
            "r = RingTransport(lambda tag: None)\n"
            "r.attach(4, Hook.PRE_ROUTING)\n"
            "print('attached', flush=True)\n"
            "sys.stdin.readline()\n"
            "r.close()\n"
            "print('closed', flush=True)\n"
            "sys.stdin.readline()\n"
        )
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", probe],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT_DIR)},
        )
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline().strip() == "attached"
        name = program_name(4, Hook.PRE_ROUTING, p.pid)
        assert name in bpf_syscall.program_names()
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "closed"
        end = time.monotonic() + 10
        while name in bpf_syscall.program_names():
            assert time.monotonic() < end, "closed, yet the kernel keeps the program"
            time.sleep(0.05)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(30) == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_close_is_idempotent_and_a_closed_ring_reads_nothing() -> None:
    r = RingTransport(lambda tag: None)
    r.close()
    assert r.process() == 0 and not r.is_open


LOST_PROBE = """
import json, mmap, subprocess
from libitm import Hook
from libitm.transport.ring import RingTransport

seen = []
r = RingTransport(lambda tag: (Hook.IP_IN, lambda p: seen.append(1)), size=mmap.PAGESIZE)
r.attach(4, Hook.IP_IN)
subprocess.run(["ping", "-c", "50", "-i", "0.002", "-q", "127.0.0.1"], check=True,
               capture_output=True)
r.process()
c = r.counters()
r.close()
print(json.dumps({**c, "seen": len(seen), "after_close": r.lost}))
"""


def test_a_full_ring_counts_every_copy_it_had_no_room_for() -> None:
    """A one-page ring that nobody reads while 50 pings cross loopback (100 packets
    at ip_in): every packet is either a copy or a lost one, exactly."""
    with scratch_ns("itmlost") as ns:
        res = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LOST_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT_DIR)},
            check=False,
        )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["copies"] == out["seen"] > 0, out
    assert out["lost"] > 0, out
    assert out["copies"] + out["lost"] == 100, out
    assert out["after_close"] == out["lost"], "the count outlives the close"
