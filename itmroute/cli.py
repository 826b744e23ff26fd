"""``itmroute``: start the daemon, show its path table.

::

    itmroute [--debug] run -c /etc/itmroute.yaml [--state FILE] [--backend nfqueue]
                           [--datapath auto|kernel|wireguard|python] [--duration S]
    itmroute [--debug] show [--state FILE | -c CONFIG] [--json]
    itmroute genkey              # a random overlay key for the configuration's ``key``

Exit codes: 0 ok, 1 failed, 2 usage or configuration error (also a state file
that is a directory, the configuration or not an itmroute state file), 3 no
state (the daemon is not running: no state file, or the process that wrote it
is gone), 4 permission denied (the configuration cannot be read; ``run``
without root: the daemon needs CAP_NET_ADMIN and CAP_NET_RAW), 5 the
configuration does not exist or (``run``) the directory of ``--state`` does
not exist, 130 ``run``
stopped by Ctrl-C (SIGINT; SIGTERM and ``--duration`` exit 0), 141 the reader
of the output went away (``itmroute show | head``). Errors are one line on
stderr; ``--debug`` shows the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import stat
import sys
from pathlib import Path
from typing import Any, NoReturn

from libitm import BackendUnavailable, cliargs
from libitm.files import EXIT_PERM, describe_error
from libitm.owners import has_cap_net_admin

from .config import DAEMON_BACKENDS, DATAPATHS, ConfigError, check_name, load_config
from .state import NotAStateFile, daemon_alive, load

STATE_DIR = Path("/run/itmroute")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_STATE = 0, 1, 2, 3
EXIT_NOT_FOUND = 5  # itmtool's code for 'no such file' (tools/itmtool/errors.py)
# EXIT_PERM (4, libitm.files): itmtool's code for 'permission denied'
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_PIPE = 128 + signal.SIGPIPE
#: what ``run`` says when the system refuses it a privilege (exit EXIT_PERM)
NEEDS_ROOT = "running the daemon needs root (CAP_NET_ADMIN and CAP_NET_RAW)"
#: what ``run`` says when the state file's directory is not the daemon's to write
STATE_ELSEWHERE = (
    "run the daemon as root, or give it a state file it may write "
    "(--state FILE; systemd: RuntimeDirectory=itmroute)"
)


def state_path(name: str) -> Path:
    """Where the daemon called ``name`` writes its table (a name that would leave
    /run/itmroute, such as ``../x``, is a `ConfigError`)."""
    return STATE_DIR / f"{check_name(name)}.json"


class Refused(Exception):
    """A refusal before anything is touched: one line, exit `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def permission_refused(err: PermissionError | BackendUnavailable) -> Refused | None:
    """``run``'s one line and exit 4 (itmtool's 'permission denied') for a refused
    privilege: a PermissionError without a file (EPERM of a raw socket, netlink,
    SO_MARK) says that the daemon needs root, one naming a file is
    :func:`~libitm.files.describe_error`'s line, a backend that needs root says
    so itself. None: not a matter of permission (another unavailable backend)."""
    if isinstance(err, BackendUnavailable):
        described = describe_error(err)
        if described is None or described[1] != EXIT_PERM:
            return None
        return Refused(described[0], EXIT_PERM)
    if err.filename is not None:
        described = describe_error(err)
        assert described is not None  # an OSError always has a line
        return Refused(described[0], EXIT_PERM)
    return Refused(f"{NEEDS_ROOT}: {err.strerror or err}", EXIT_PERM)


def check_state_target(path: Path, config: Path, *, explicit: bool) -> None:
    """Refuse (`Refused`) a state file path that the daemon must not replace and, at
    its end, remove: a directory, the configuration file, anything but a regular
    file holding an itmroute state (a state file of a dead daemon is replaced, as on
    every restart), or, for an explicit ``--state``, a path whose directory does not
    exist (exit 5). The default directory (/run/itmroute) is created."""
    what = f"--state {path}" if explicit else f"state file {path}"
    if explicit:
        try:
            if not stat.S_ISDIR(os.stat(path.parent).st_mode):
                raise NotADirectoryError
        except FileNotFoundError:
            raise Refused(f"{what}: no such directory {path.parent}", EXIT_NOT_FOUND) from None
        except NotADirectoryError:
            raise Refused(f"{what}: {path.parent} is not a directory", EXIT_NOT_FOUND) from None
    if os.path.isdir(path):
        raise Refused(f"{what} is a directory, not a state file")
    if os.path.lexists(path):
        if os.path.exists(path) and os.path.samefile(path, config):
            raise Refused(f"{what} is the configuration file; refusing to overwrite it")
        if os.path.islink(path):
            raise Refused(
                f"{what} is a symbolic link, not an itmroute state file; refusing to replace it"
            )
        try:
            load(path)
        except NotAStateFile as e:
            raise Refused(
                f"{what} is not an itmroute state file ({e.why}); refusing to replace it"
            ) from None
        except OSError as e:
            raise Refused(f"cannot read {what}: {e.strerror or e}", EXIT_FAILED) from None
    if not explicit:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError as e:
            # without the capabilities that is what to say first; with them, the directory
            why = f"cannot create {path.parent}: {e.strerror}"
            if not has_cap_net_admin():
                raise Refused(f"{NEEDS_ROOT}: {why}", EXIT_PERM) from None
            raise Refused(f"{why}: {STATE_ELSEWHERE}", EXIT_PERM) from None
        except OSError as e:
            raise Refused(f"cannot create {path.parent}: {e.strerror}", EXIT_FAILED) from None
    if not os.access(
        path.parent, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        # the state file would never be written (a warning a second): say so before it starts
        where = f"{what}: " if explicit else ""
        raise Refused(
            f"{where}permission denied: cannot write in {path.parent}: {STATE_ELSEWHERE}",
            EXIT_PERM,
        )


def cmd_run(args: argparse.Namespace) -> int:
    """``itmroute run``: serve until SIGINT (exit 130), SIGTERM or ``--duration`` (exit 0)."""
    from .daemon import Router
    from .kernelpath import DatapathError

    cfg = load_config(args.config)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    state = Path(args.state) if args.state else state_path(cfg.name)
    check_state_target(state, Path(args.config), explicit=bool(args.state))
    try:
        router = Router(cfg, backend=args.backend, datapath=args.datapath, state_file=state)
    except (OSError, BackendUnavailable, DatapathError) as e:
        return _cannot_run(e)
    interrupted = False

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        router.stop()

    # both signals only ask the loop to end: Router.run's cleanup (capture rules,
    # sockets, state file) then runs whole, even when Ctrl-C is pressed again
    signal.signal(signal.SIGTERM, lambda signum, frame: router.stop())
    signal.signal(signal.SIGINT, on_sigint)
    try:
        router.run(duration=args.duration)
    except (PermissionError, BackendUnavailable) as e:
        return _cannot_run(e)
    return EXIT_SIGINT if interrupted else EXIT_OK


def _cannot_run(err: Exception) -> int:
    """Say in one line why the daemon could not start or went on; its exit code: 4 for
    a refused privilege (:func:`permission_refused`), else 1."""
    refused = None
    if isinstance(err, PermissionError | BackendUnavailable):
        refused = permission_refused(err)
    if refused is not None:
        print(f"itmroute: {refused}", file=sys.stderr)
        return refused.code
    print(f"itmroute: {err}", file=sys.stderr)
    return EXIT_FAILED


def format_table(state: dict[str, Any]) -> str:
    """The human-readable path table of a daemon's state."""
    lines = [f"itmroute {state['name']} ({state['address']}), tunnel mtu {state['tunnel_mtu']}"]
    if state.get("datapath") == "python":
        lines.append("data path: python (every tunnelled packet crosses this daemon)")
    elif state.get("datapath") == "kernel":
        lines.append(
            "data path: kernel (itm_route carries the tunnelled packets;"
            " this daemon probes and chooses the paths)"
        )
    elif state.get("datapath") == "wireguard":
        lines.append(
            "data path: wireguard (the kernel's WireGuard carries the tunnelled packets;"
            " this daemon probes and chooses the paths)"
        )
    w = state.get("wireguard")
    if w is not None:
        lines.extend(_wireguard_lines(w))
    for d in state["destinations"]:
        mode = "active" if d["active"] else "idle"
        lines.append(
            f"\n{d['prefix']} via itm {d['dest']}: {mode}, using {d['current']}, "
            f"{d['switches']} switches, {d['probes_sent']} probes"
        )
        head = f"  {'PATH':<10} {'VIA':<16} {'RTT(ms)':>8} {'LOSS%':>6} {'ALIVE':<5} {'HEARD':>6}"
        lines.append(head + " USE")
        for p in d["paths"]:
            rtt = "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f}"
            lines.append(
                f"  {p['name']:<10} {p['via'] or '-':<16} {rtt:>8} {p['loss'] * 100:>6.1f} "
                f"{'yes' if p['alive'] else 'no':<5} {p.get('heard', 0):>6} "
                f"{'*' if p['name'] == d['current'] else ''}"
            )
        for dec in d["decisions"][-5:]:
            lines.append(f"  decision: {dec['line']}")
    c = state["counters"]
    k = state.get("kernel")
    failed, replayed = c.get("auth_failed", 0), c.get("replayed", 0)
    auth = (
        "\nauthentication: every datagram MAC-checked (Poly1305, keys from the shared key);"
        " dropped:"
        f" {failed + (k or {}).get('auth_failed', 0)} failed the check,"
        f" {replayed + (k or {}).get('replayed', 0)} replayed or stale"
    )
    if k is not None:
        auth += (
            f" (DATA in the kernel: {k.get('auth_failed', 0)} failed, {k.get('replayed', 0)}"
            f" replayed; the daemon: {failed} failed, {replayed} replayed)"
        )
    lines.append(auth)
    lines.append("\n" + " ".join(f"{key}={v}" for key, v in c.items()))
    if k is not None:
        lines.append("kernel: " + " ".join(f"{key}={v}" for key, v in k.items()))
    return "\n".join(lines)


def _wireguard_lines(w: dict[str, Any]) -> list[str]:
    """The WireGuard device's peers and the relay's forwarding, for ``show``."""
    lines = [
        f"wireguard: device {w.get('device')} port {w.get('port')};"
        f" endpoints set {w.get('endpoint_sets', 0)}, moved by WireGuard"
        f" {w.get('endpoint_moved', 0)}; dropped after decryption {w.get('rx_errors', 0)}"
        " (forged datagrams are dropped uncounted)"
    ]
    for itm, p in (w.get("peers") or {}).items():
        age = p.get("handshake_age")
        hs = "never" if age is None else f"{age:g} s ago"
        lines.append(
            f"  peer {itm}: endpoint {p.get('endpoint') or '-'}, rx {p.get('rx_bytes', 0)} B,"
            f" tx {p.get('tx_bytes', 0)} B, handshake {hs}"
        )
    fwd = w.get("forwarding") or {}
    if fwd:
        lines.append("  relaying: " + ", ".join(f"port {port} -> {a}" for port, a in fwd.items()))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    """``itmroute show``: the table of a running daemon (exit 3 when it is not running)."""
    if args.state:
        path = Path(args.state)
    elif args.config:
        path = state_path(load_config(args.config).name)
    else:
        path = state_path("itmroute")
    try:
        state = load(path)
    except NotAStateFile as e:
        print(f"itmroute: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        why = e.strerror or str(e)
        print(f"itmroute: no state in {path} ({why}); is the daemon running?", file=sys.stderr)
        return EXIT_NO_STATE
    alive, why_not = daemon_alive(state)
    if not alive:
        print(f"itmroute: {state['name']} is not running ({why_not}); "
              f"{path} is what it left", file=sys.stderr)  # fmt: skip
        return EXIT_NO_STATE
    text = json.dumps(state, indent=1) if args.json else format_table(state)
    print(text)
    return EXIT_OK


def cmd_genkey(args: argparse.Namespace) -> int:
    """``itmroute genkey``: print a new random key for the ``key`` field (64 hex digits)."""
    print(secrets.token_hex(32))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = _Parser(
        prog="itmroute", description="overlay routing through the closest neighbouring ITM"
    )
    ap.add_argument("--debug", action="store_true", help="a traceback for unexpected errors")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start the daemon")
    run.add_argument("-c", "--config", required=True, help="YAML configuration")
    run.add_argument(
        "--state",
        help="state file (default /run/itmroute/NAME.json); its directory must exist,"
        " a file already there must be an itmroute state file",
    )
    run.add_argument(
        "--backend", choices=DAEMON_BACKENDS, help="libitm backend (overrides the configuration)"
    )
    run.add_argument(
        "--datapath",
        choices=DATAPATHS,
        help="who carries the tunnelled packets: the itm_route module (kernel), the kernel's"
        " WireGuard (wireguard, on every ITM of the overlay), this daemon (python), kernel when"
        " itm_route is loaded (auto); overrides the configuration",
    )
    run.add_argument("--duration", type=cliargs.seconds, help="seconds to run")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    run.set_defaults(func=cmd_run)
    show = sub.add_parser("show", help="print a running daemon's path table")
    show.add_argument("-c", "--config", help="the daemon's configuration (for its name)")
    show.add_argument("--state", help="state file")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(func=cmd_show)
    genkey = sub.add_parser("genkey", help="print a new random overlay key")
    genkey.set_defaults(func=cmd_genkey)
    return ap


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's own
    flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``itmroute`` command."""
    args = cliargs.parse(parser(), [*sys.argv[1:]] if argv is None else argv)
    try:
        rc: int = args.func(args)
        sys.stdout.flush()
    except ConfigError as e:
        print(f"itmroute: {e}", file=sys.stderr)
        return e.code
    except Refused as e:
        print(f"itmroute: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        return EXIT_SIGINT
    except Exception as e:
        if args.debug:
            raise
        print(f"itmroute: {type(e).__name__}: {e} (--debug shows where)", file=sys.stderr)
        return EXIT_FAILED
    return rc
