"""Helpers for the tests that run inside the VM: modules, namespaces, traffic.

These tests run as root in a kernel of the matrix booted by tests/vm; they load
the modules built for that kernel (``ITM_MODDIR``) and send real packets between
network namespaces that they create and remove.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from itmlab import Topology, kmods, netns, ping, sh, tcp, topology, udp
from tests.support.waiting import wait_until

#: how a guest test says that this kernel lacks what it needs (a Debian kernel built
#: without a feature): tests/vm reports it as a skip with its reason, any other
#: skip in the VM fails
KERNEL_LACKS = "[kernel lacks]"

__all__ = [
    "KernelLog",
    "Topology",
    "app_calls",
    "as_nobody",
    "bad_lines",
    "clear_events",
    "events",
    "insmod",
    "itm_attach",
    "itmtool",
    "kfence_live",
    "loaded",
    "moddir",
    "module_path",
    "modules",
    "netns",
    "ping",
    "rmmod",
    "sh",
    "slab_active",
    "taint",
    "tcp",
    "topology",
    "udp",
    "wait_until",
]

DEBUGFS = Path("/sys/kernel/debug")
TEST_APP_DIR = DEBUGFS / "itm_test_app"


def moddir() -> Path:
    """Where the modules built for the running kernel are."""
    d = os.environ.get("ITM_MODDIR")
    if not d:
        raise RuntimeError("ITM_MODDIR is not set: these tests run in the VM through tests/vm")
    return Path(d)


def module_path(name: str) -> Path:
    """The .ko of one of our modules."""
    (path,) = moddir().rglob(f"{name}.ko")
    return path


def loaded(name: str) -> bool:
    """Whether a module is loaded."""
    return Path("/sys/module", name).exists()


def insmod(name: str, *params: str) -> None:
    """Load one of our modules with parameters (the kernel's own modules it
    needs first, by path: itm_route's libchacha20poly1305 on Debian's kernels)."""
    path = module_path(name)
    kmods.insmod_deps(path, ours=frozenset(p.stem for p in moddir().rglob("*.ko")))
    sh("insmod", str(path), *params)


def rmmod(name: str) -> None:
    """Unload a module if it is loaded."""
    if loaded(name):
        sh("rmmod", name)


@contextlib.contextmanager
def modules(
    itm_params: tuple[str, ...] = (),
    apps: str | None = None,
    queue: tuple[str, ...] | None = None,
) -> Iterator[None]:
    """itm_mod (then itm_queue with parameters `queue`, then the test application
    with `apps`) loaded for the block."""
    insmod("itm_mod", *itm_params)
    try:
        if queue is not None:
            insmod("itm_queue", *queue)
        if apps is not None:
            insmod("itm_test_app", f"apps={apps}")
        yield
    finally:
        rmmod("itm_test_app")
        rmmod("itm_queue")
        rmmod("itm_mod")


def itm_attach(ns: str, active: bool = True) -> None:
    """Attach itm_mod's hooks to namespace `ns` (or detach them) over netlink."""
    from libitm.control import ItmControl

    with netns(ns), ItmControl() as ctl:
        ctl.set_netns_active(active)


def events() -> list[tuple[str, str, int]]:
    """The test application's callback log: (label, callback, class) in order."""
    out = []
    for line in (TEST_APP_DIR / "events").read_text().splitlines():
        label, cb, cls = line.split()
        out.append((label, cb, int(cls)))
    return out


def clear_events() -> None:
    """Empty the test application's callback log."""
    (TEST_APP_DIR / "events").write_text("x")


def app_calls() -> dict[str, dict[str, int]]:
    """Per application, how often each callback ran (from the test application)."""
    out: dict[str, dict[str, int]] = {}
    for line in (TEST_APP_DIR / "stats").read_text().splitlines():
        label, *pairs = line.split()
        out[label] = {k: int(v) for k, v in (p.split("=") for p in pairs)}
    return out


BAD_LOG = re.compile(
    r"WARNING:|\bBUG\b|Oops|general protection|sleeping function called from invalid context"
    r"|list_add corruption|list_del corruption|slab corruption|Redzone|Poison overwritten"
    r"|Objects remaining|kernel BUG|Call Trace|RIP:|refcount_t:|UBSAN|KASAN|INFO: task"
    r"|rcu.*stall|Freepointer corrupt|Padding overwritten|Object already free"
    # the debug kernel's detectors (most also print WARNING: or BUG:)
    r"|possible circular locking|suspicious RCU usage|inconsistent lock state"
    r"|possible recursive locking|KFENCE|ODEBUG|suspected memory leak"
)

#: taint bits that loading an out-of-tree, unsigned module sets (O = 12, E = 13)
ALLOWED_TAINT = (1 << 12) | (1 << 13)


def as_nobody(fn: Callable[[], int]) -> int:
    """Run `fn` in a forked child as uid/gid 65534, without any capability; its result.

    The child reuses this process's imports: a new Python would cost tens of
    seconds on the emulated CPU.  An exception in `fn` gives 99.
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)  # from root: every capability goes
            code = fn()
        except BaseException:  # reported as the exit code
            code = 99
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class KernelLog:
    """The kernel log from now on, read through /dev/kmsg in this process.

    (Cheaper than two `dmesg` processes per test on the emulated CPU.)
    """

    def __init__(self) -> None:
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def new_lines(self) -> list[str]:
        """The messages logged since creation (or the last call), one per record."""
        out = []
        while True:
            try:
                rec = os.read(self._fd, 8192)
            except BrokenPipeError:
                out.append("(kernel log records lost: the ring buffer wrapped)")
                continue
            except BlockingIOError:
                return out
            _, _, text = rec.decode(errors="replace").partition(";")
            out.append(text.split("\n", 1)[0])

    def close(self) -> None:
        """Close /dev/kmsg."""
        os.close(self._fd)


def bad_lines(lines: list[str]) -> list[str]:
    """Kernel log lines that show a splat."""
    return [line for line in lines if BAD_LOG.search(line)]


def taint() -> int:
    """The kernel's taint mask without the bits modules like ours are allowed."""
    return int(Path("/proc/sys/kernel/tainted").read_text()) & ~ALLOWED_TAINT


def slab_active(cache: str) -> int | None:
    """Live objects of a slab cache, None when the cache does not exist.

    The cache is shrunk first: on a KASAN kernel freed objects wait in a
    quarantine that slabinfo still counts as active, and a shrink empties it.
    Objects that KFENCE served are added (:func:`kfence_live`): slabinfo does not
    count them."""
    with contextlib.suppress(OSError):
        Path(f"/sys/kernel/slab/{cache}/shrink").write_text("1")
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        fields = line.split()
        if fields[0] == cache:
            return int(fields[1]) + kfence_live(cache)
    return None


#: KFENCE's list of the objects in its pool (kernels with CONFIG_KFENCE)
KFENCE_OBJECTS = DEBUGFS / "kfence" / "objects"

#: awk over KFENCE_OBJECTS: how many objects of cache -v c=NAME are allocated now.
#: Each entry starts "kfence-#N: ADDR-ADDR, size=S, cache=NAME"; a freed one
#: goes on with "freed by task" (or "rcu freeing by task").
KFENCE_LIVE_AWK = (
    '/^kfence-#/ { n += live; live = ($NF == "cache=" c) }'
    " /^(freed|rcu freeing) by task/ { live = 0 }"
    " END { print n + live }"
)


def kfence_live(cache: str) -> int:
    """Objects of slab cache `cache` that KFENCE allocated and that are not freed.

    KFENCE serves one sampled allocation now and then from its own pool, from
    any cache; /proc/slabinfo does not count those objects, so a count of live
    objects taken from slabinfo alone can come out one short on a KFENCE kernel
    (0 on a kernel without KFENCE)."""
    if not KFENCE_OBJECTS.exists():
        return 0
    # the awk program the shell loops use too: one reading of KFENCE's list
    out = sh("awk", "-v", f"c={cache}", KFENCE_LIVE_AWK, str(KFENCE_OBJECTS))
    return int(out)


def kmemleak_ours() -> str | None:
    """The unreferenced objects kmemleak finds now that mention our modules ("" when
    none); None on a kernel without kmemleak (only the kernels with the detectors)."""
    path = DEBUGFS / "kmemleak"
    if not path.exists():
        return None
    path.write_text("scan")
    report = path.read_text()
    ours = ("itm_", "qos_mod", "paper_qos", "sch_rio")
    return "\n".join(b for b in report.split("unreferenced object") if any(m in b for m in ours))


def itmtool(*args: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    """`itmtool ARGS` (in namespace `ns`), run in this process with its streams captured.

    A new Python costs about 20 s in the emulated guest, so the guest tests call
    itmtool's entry point in-process; test_itmtool_status.py runs the real
    command once.
    """
    from itmtool import cli  # the guest tests' only import of the CLI

    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        if ns:
            stack.enter_context(netns(ns))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            rc = cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["itmtool", *args], rc, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def on_one_cpu() -> Iterator[None]:
    """Run this process (its threads, and so the softirqs its packets cause) on one
    CPU: veth hands packets to the backlog of the CPU that sends them, so a
    sender that moves between CPUs could reorder a flow before the router counts
    it, and "the n-th packet" would not be the same packet at both ends."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)
