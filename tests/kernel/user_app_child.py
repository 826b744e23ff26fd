"""A libitm application queueing at every hook, in a forked child in a namespace.

The child reuses the test process's imports (a new Python costs tens of seconds
on the emulated CPU); it registers one application per hook through itm_queue,
accepts every packet, and reports how many it saw when SIGTERM ends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from libitm import Interest, ItmInfo, ItmLoop, Packet, Verdict
from tests.kernel import kit

HOOKS = ("pre_routing", "ip_in", "ip_forward", "ip_out", "post_routing")


@dataclass
class ChildResult:
    """Packets the child's applications accepted (filled in when the block ends)."""

    packets: int = -1


def _serve(interest: Interest, ready: int, report: int) -> int:
    seen = 0

    def process(where: object, cls: int, pkt: Packet) -> Verdict:
        nonlocal seen
        seen += 1
        return Verdict.ACCEPT

    loop = ItmLoop("kernel")
    for hook in HOOKS:
        info = ItmInfo(f"uq_{hook}", interest, lambda w, p: 1, None, process)
        loop.register_hook(hook, info)
    loop.start()
    os.write(ready, b"r")
    with contextlib.suppress(SystemExit):  # SIGTERM
        loop.run()
    os.write(report, f"{seen}\n".encode())
    return 0


@contextlib.contextmanager
def queueing_app(ns: str, interest: Interest) -> Iterator[ChildResult]:
    """Run the child's applications in namespace `ns` for the block."""
    ready_r, ready_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(ready_r)
            os.close(rep_r)
            with kit.netns(ns):
                code = _serve(interest, ready_w, rep_w)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(rep_w)
    result = ChildResult()
    try:
        assert os.read(ready_r, 1) == b"r", "the queueing application did not start"
        yield result
    finally:
        os.kill(pid, signal.SIGTERM)
        with os.fdopen(rep_r, "rb") as f:
            line = f.readline()
        _, status = os.waitpid(pid, 0)
        os.close(ready_r)
        result.packets = int(line) if line.strip() else -1
        assert os.waitstatus_to_exitcode(status) == 0, "the queueing application failed"
