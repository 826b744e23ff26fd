"""A Python program run as a child of this process by fork, not by exec.

In the emulated guests a new Python is the costliest thing a test does: the
interpreter's start and the imports of libitm take 8-10 s in a Debian guest
under TCG and about a minute on the debug kernel (KASAN, lockdep), against a
tenth of a second here (docs/testing.md).  A test that needs a program in a
process of its own (to stop it, kill it with -9, see its sockets go with it)
gets one here from a fork of the test process, whose modules are already
imported, then set up as a fresh ``python -c`` would be:

* in network namespace ``ns`` (``ip netns exec``: the network namespace, and a
  mount namespace of its own with that namespace's /sys);
* with stdin from /dev/null, stdout and stderr piped (or inherited), every
  other descriptor of the test process closed (as ``subprocess`` does: a socket
  of the test's must not outlive it in a child);
* with logging as a new interpreter has it (no handlers: warnings reach
  stderr), default signal handlers, ``sys.argv`` as given, and the test
  process's objects never finalized in the child (``gc.freeze``; the child
  ends with ``os._exit``, so no ``atexit`` of the test runner's runs).

What it does not show is the program's own start: the host tier starts the
real commands (``itmtool run``, ``itmroute run``, an installed wheel).

:class:`Child` answers as much of :class:`subprocess.Popen` as the tests use.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import os
import runpy
import selectors
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import IO

_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_SLAVE = 1 << 19
_MNT_DETACH = 2

#: what the child's stdout and stderr are: a pipe to this process, or this
#: process's own
PIPE = subprocess.PIPE


class Child:
    """A forked child: ``pid``, ``returncode`` and Popen's ``poll``, ``wait``,
    ``communicate``, ``send_signal``, ``terminate`` and ``kill``."""

    def __init__(self, pid: int, args: list[str], stdout: IO[str] | None, stderr: IO[str] | None):
        self.pid = pid
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status if the child has ended (reaped here), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; raises subprocess.TimeoutExpired as Popen does."""
        end = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Read stdout and stderr to their end, then wait; (stdout, stderr), "" for
        a stream that is not piped."""
        end = None if timeout is None else time.monotonic() + timeout
        chunks: dict[int, list[bytes]] = {}
        with selectors.DefaultSelector() as sel:
            for f in (self.stdout, self.stderr):
                if f is not None and not f.closed:
                    chunks[f.fileno()] = []
                    sel.register(f.fileno(), selectors.EVENT_READ)
            while sel.get_map():
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
        texts = []
        for f in (self.stdout, self.stderr):
            if f is None or f.closed:
                texts.append("")
                continue
            texts.append(b"".join(chunks.get(f.fileno(), [])).decode(errors="replace"))
            f.close()
        self.wait(None if end is None else max(end - time.monotonic(), 0.0))
        return texts[0], texts[1]

    def send_signal(self, sig: int) -> None:
        """Signal the child, unless it has been reaped (its pid may be another's)."""
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


def _enter_netns(ns: str) -> None:
    """What ``ip netns exec ns`` does before its command: the network namespace,
    and a private mount namespace where /sys is that namespace's."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({ns})")
    finally:
        os.close(fd)
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rslave /")
    libc.umount2(b"/sys", _MNT_DETACH)
    if libc.mount(ns.encode(), b"/sys", b"sysfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount sysfs /sys")


#: the test process's stdio and logging handlers, kept referenced in a child so
#: that nothing of the test runner is finalized there
_kept: list[object] = []


def _become_child(ns: str | None, cwd: str | None, argv: list[str], out: int, err: int) -> None:
    """In the child: the set-up of a fresh interpreter (module docstring)."""
    gc.freeze()
    _kept.extend([sys.stdin, sys.stdout, sys.stderr, list(logging.root.handlers)])
    # the test process's handlers are not the program's (its signals are blocked
    # until start() unblocks them, after this)
    for sig in signal.valid_signals():
        handler = signal.getsignal(sig)
        if callable(handler) or sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(out if out >= 0 else 1, 1)
    os.dup2(err if err >= 0 else 2, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), line_buffering=True, errors="backslashreplace"
    )
    logging.root.handlers.clear()
    logging.root.setLevel(logging.WARNING)
    if ns:
        _enter_netns(ns)
    if cwd:
        os.chdir(cwd)
    sys.argv = argv
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def start(
    target: Callable[[], object],
    argv: list[str],
    *,
    ns: str | None = None,
    cwd: str | None = None,
    stdout: int | None = PIPE,
    stderr: int | None = PIPE,
) -> Child:
    """Fork; in the child set up as the module docstring says, call ``target``
    and exit with its status (an int it returns or SystemExit's code; 1 and the
    traceback on stderr for an exception).  ``stdout``/``stderr``: PIPE, or
    None for this process's own."""
    pipes = {
        name: os.pipe() if how == PIPE else None for name, how in (("out", stdout), ("err", stderr))
    }
    sys.stdout.flush()
    sys.stderr.flush()
    # a signal sent at once (a test that stops what it just started) must meet the
    # child's own handlers, not this process's: blocked across the fork
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if pid == 0:  # the child: never returns
        rc = 1
        try:
            _become_child(
                ns,
                cwd,
                argv,
                pipes["out"][1] if pipes["out"] else -1,
                pipes["err"][1] if pipes["err"] else -1,
            )
            result = target()
            rc = result if isinstance(result, int) else 0
        except SystemExit as exc:
            code = exc.code
            rc = code if isinstance(code, int) else (0 if code is None else 1)
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
        except BaseException:  # the child's end, whatever it was
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(rc)
    files: list[IO[str] | None] = []
    for p in (pipes["out"], pipes["err"]):
        if p is None:
            files.append(None)
            continue
        os.close(p[1])
        files.append(open(p[0], encoding="utf-8", errors="replace"))  # noqa: SIM115
    return Child(pid, argv, files[0], files[1])


def python_source(source: str) -> Callable[[], object]:
    """A target that runs ``source`` as ``python -c`` would (as ``__main__``)."""

    def run() -> object:
        code = compile(source, "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        return 0

    return run


def python_command(cmd: list[str]) -> tuple[Callable[[], object], list[str]]:
    """The target and ``sys.argv`` of ``[python, -m MODULE | -c SOURCE | SCRIPT,
    ARGS...]``, run as that command would run them (as ``__main__``)."""
    if len(cmd) < 2:
        raise ValueError(f"not a Python command: {cmd}")
    if cmd[1] == "-c":
        return python_source(cmd[2]), ["-c", *cmd[3:]]
    if cmd[1] == "-m":
        module = cmd[2]

        def run_module() -> object:
            # imported by the test already: run afresh, as `python -m` would
            sys.modules.pop(module, None)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            return 0

        return run_module, [module, *cmd[3:]]
    script = cmd[1]

    def run() -> object:
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
        return 0

    return run, cmd[1:]
