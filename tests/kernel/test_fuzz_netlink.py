"""Fuzz the itm and itm_queue generic netlink families over bare sockets.

Random and malformed messages, every command id, register/unregister storms
under dumps, sockets closed mid-request, and every mutating command from a
process without CAP_NET_ADMIN.  Seeded: ITM_FUZZ_SEED=N replays a run (the
seed is printed); ITM_FUZZ_SECONDS scales the time (default 6 s per part).
The kernel log check of conftest.py fails any splat.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from libitm.control import itm_queue_spec as Q
from libitm.control import itm_spec as M
from tests.kernel import kit
from tests.kernel.genl_raw import (
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    RawGenl,
    attr,
    errname,
    genl_msg,
    string,
)
from tests.kernel.itm_raw import app_labels, app_state, dump_apps, register
from tests.kernel.nl_fuzz import FamilyShape, Fuzzer, Tally, send_and_drain

SECONDS = float(os.environ.get("ITM_FUZZ_SECONDS", "6"))
SEED = int(os.environ.get("ITM_FUZZ_SEED", str(random.SystemRandom().randrange(1 << 32))))
APPS = "label=kapp_a,hook=post,class=1;label=kapp_b,hook=fwd,prio=3,class=1"


def refcnt(mod: str) -> int:
    """A module's reference count."""
    return int(Path(f"/sys/module/{mod}/refcnt").read_text())


@pytest.fixture
def loaded() -> Iterator[None]:
    """itm_mod, itm_queue and two test applications."""
    with kit.modules(apps=APPS, queue=()):
        yield


@pytest.fixture
def scratch_ns() -> Iterator[str]:
    """A network namespace of the test's own (what root's fuzzing may attach)."""
    name = f"itmfz-{os.getpid()}"
    kit.sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        kit.sh("ip", "netns", "del", name, check=False)


def shapes(sock: RawGenl) -> list[FamilyShape]:
    """What the fuzzer is told of the two families."""
    labels = ("kapp_a", "kapp_b", "fz", "")
    return [
        FamilyShape(sock.family(M.FAMILY_NAME), 4, M.ITM_A_NETNS_ACTIVE, (10, 11), labels),
        FamilyShape(sock.family(Q.FAMILY_NAME), 2, Q.ITMQ_A_PID, (Q.ITMQ_A_INTEREST,), labels),
    ]


def host_state() -> tuple[list[tuple[str, int, int]], int, int]:
    """Applications (label, priority, enabled) and the two modules' refcounts."""
    with RawGenl() as s:
        apps = sorted(app_state(s))
    return apps, refcnt("itm_mod"), refcnt("itm_queue")


def test_every_command_id(loaded: None, scratch_ns: str) -> None:
    """Each command id 0..255, as a request and as a dump, with no attribute:
    the documented error, and EOPNOTSUPP past the last command."""
    known = {
        (M.FAMILY_NAME, M.ITM_CMD_APP_GET, False): errno.EINVAL,
        (M.FAMILY_NAME, M.ITM_CMD_APP_GET, True): 0,
        (M.FAMILY_NAME, M.ITM_CMD_APP_SET, False): errno.EINVAL,
        (M.FAMILY_NAME, M.ITM_CMD_NETNS_GET, False): 0,
        (M.FAMILY_NAME, M.ITM_CMD_NETNS_SET, False): errno.EINVAL,
        (Q.FAMILY_NAME, Q.ITMQ_CMD_REGISTER, False): errno.EINVAL,
        (Q.FAMILY_NAME, Q.ITMQ_CMD_UNREGISTER, False): errno.EINVAL,
    }
    wrong = []
    with kit.netns(scratch_ns), RawGenl() as s:
        for name in (M.FAMILY_NAME, Q.FAMILY_NAME):
            fid = s.family(name)
            for cmd in range(256):
                for dump in (False, True):
                    got = s.request(fid, cmd, dump=dump)[0]
                    want = known.get((name, cmd, dump), errno.EOPNOTSUPP)
                    if got != want:
                        wrong.append(f"{name} cmd {cmd} dump {dump}: {errname(got)}")
    assert not wrong, wrong
    print("1024 requests: every command id answered as documented")


def test_random_and_malformed_messages(loaded: None, scratch_ns: str) -> None:
    """Seeded random messages as root in a scratch namespace: each one answered
    with an error or ack (or dropped when its header is broken), no splat, the
    kernel still answers, and closing the sockets leaves nothing behind."""
    print(f"seed {SEED} (ITM_FUZZ_SEED={SEED} replays it)")
    before = host_state()
    tally = Tally()
    must_answer = answered = 0
    with kit.netns(scratch_ns):
        socks = [RawGenl() for _ in range(4)]
        fuzzer = Fuzzer(SEED, shapes(socks[0]))
        end = time.monotonic() + SECONDS
        seq = 0
        while time.monotonic() < end:
            seq += 1
            data, answer = fuzzer.message(seq)
            s = socks[seq % len(socks)]
            replies = tally.replies
            send_and_drain(s, data, tally)
            must_answer += answer
            answered += answer and tally.replies > replies
        with RawGenl() as s:  # the families still work
            assert sorted(app_labels(s))[:2] == ["kapp_a", "kapp_b"]
        for s in socks:
            s.close()
    print(tally.line())
    assert tally.sent > 100
    assert answered == must_answer, f"{must_answer - answered} requests got no answer"

    # what the fuzzer registered went with its sockets; what it changed is a
    # priority or enabled flag of the test applications, nothing else
    def same() -> bool:
        after = host_state()
        return [a[0] for a in after[0]] == [a[0] for a in before[0]] and after[1:] == before[1:]

    assert kit.wait_until(same), f"{before} -> {host_state()}"


def test_storm_of_registrations_under_dumps(loaded: None) -> None:
    """Threads register and unregister, others dump, others close their socket
    in the middle of a request: every dump is whole, nothing is left after."""
    before = host_state()
    end = time.monotonic() + SECONDS
    counts = {"register": 0, "dump": 0, "closed": 0}
    problems: list[str] = []
    lock = threading.Lock()

    def count(what: str) -> None:
        with lock:
            counts[what] += 1

    def churn(i: int) -> None:
        with RawGenl() as s:
            fid = s.family(Q.FAMILY_NAME)
            while time.monotonic() < end:
                err, _ = register(s, f"storm{i}")
                if err:
                    problems.append(f"register storm{i}: {errname(err)}")
                    return
                err = s.request(fid, Q.ITMQ_CMD_UNREGISTER, string(Q.ITMQ_A_LABEL, f"storm{i}"))[0]
                if err:
                    problems.append(f"unregister storm{i}: {errname(err)}")
                    return
                count("register")

    def dumper() -> None:
        # a registration (its order number) appears once; the applications
        # registered all along appear in every dump
        with RawGenl() as s:
            while time.monotonic() < end:
                apps = [(a[M.ITM_A_LABEL], a[M.ITM_A_ORDER]) for a in dump_apps(s)]
                orders = [order for _, order in apps]
                labels = {label.rstrip(b"\0") for label, _ in apps}
                if len(orders) != len(set(orders)) or not {b"kapp_a", b"kapp_b"} <= labels:
                    problems.append(f"dump showed {apps}")
                    return
                count("dump")

    def closer() -> None:
        rng = random.Random(SEED)
        while time.monotonic() < end:
            s = RawGenl()
            fq, fm = s.family(Q.FAMILY_NAME), s.family(M.FAMILY_NAME)
            hook = attr(Q.ITMQ_A_HOOK, bytes([rng.randrange(5)]))
            s.send_raw(_req(s, fq, Q.ITMQ_CMD_REGISTER, string(Q.ITMQ_A_LABEL, "gone") + hook))
            s.send_raw(_req(s, fm, M.ITM_CMD_APP_GET, b"", dump=True))
            s.close()  # the registration and the dump in flight go with it
            count("closed")

    def guarded(fn: Callable[..., None], *args: int) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # a thread's failure fails the test
                problems.append(f"{fn.__name__}: {exc!r}")

        return threading.Thread(target=run)

    threads = [guarded(churn, i) for i in range(3)]
    threads += [guarded(dumper) for _ in range(2)]
    threads.append(guarded(closer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"storm: {counts}")
    assert not problems, problems[:5]
    assert min(counts.values()) > 0, counts
    # a dump cut short by close() gives its module reference back after an RCU
    # grace period (netlink_sock_destruct), not at once
    assert kit.wait_until(lambda: host_state() == before), f"{before} -> {host_state()}"


def _req(s: RawGenl, fid: int, cmd: int, payload: bytes, dump: bool = False) -> bytes:
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
    return genl_msg(fid, cmd, payload, seq=s.next_seq(), flags=flags)


def test_mutations_without_cap_net_admin(loaded: None) -> None:
    """Every mutating command from uid 65534 without capabilities: EPERM, nothing changed."""
    before = host_state()
    with RawGenl() as s:
        fm = s.family(M.FAMILY_NAME)
        active = s.request(fm, M.ITM_CMD_NETNS_GET)[1]
    host_q = RawGenl()
    assert register(host_q, "root_app")[0] == 0
    mid = host_state()
    label = string(M.ITM_A_LABEL, "kapp_a")
    requests = [
        (M.FAMILY_NAME, M.ITM_CMD_APP_SET, label + attr(M.ITM_A_ENABLED, b"\0")),
        (M.FAMILY_NAME, M.ITM_CMD_APP_SET, label + attr(M.ITM_A_PRIORITY, b"\x07\0\0\0")),
        (M.FAMILY_NAME, M.ITM_CMD_NETNS_SET, attr(M.ITM_A_NETNS_ACTIVE, b"\0")),
        (Q.FAMILY_NAME, Q.ITMQ_CMD_REGISTER, string(1, "nobody_app") + attr(2, b"\4")),
        (Q.FAMILY_NAME, Q.ITMQ_CMD_UNREGISTER, string(Q.ITMQ_A_LABEL, "root_app")),
    ]

    def attempt() -> int:
        with RawGenl() as s:
            codes = [s.request(s.family(f), c, p)[0] for f, c, p in requests]
        return 0 if codes == [errno.EPERM] * len(codes) else 1

    try:
        assert kit.as_nobody(attempt) == 0, "a mutating command did not give EPERM"
        assert host_state() == mid
        with RawGenl() as s:
            assert s.request(fm, M.ITM_CMD_NETNS_GET)[1] == active
    finally:
        host_q.close()
    assert host_state() == before
    print(f"{len(requests)} mutating commands as uid 65534: EPERM each, state unchanged")
