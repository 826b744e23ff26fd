"""``itmroute``: start the daemon, show its path table.

::

    itmroute run -c /etc/itmroute.yaml [--state FILE] [--backend nfqueue] [--duration S]
    itmroute show [--state FILE | -c CONFIG] [--json]

Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 no state (the
daemon is not running or has not written its table yet).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from libitm import BackendUnavailable

from .config import ConfigError, load_config

STATE_DIR = Path("/run/itmroute")


def state_path(name: str) -> Path:
    """Where the daemon called ``name`` writes its table."""
    return STATE_DIR / f"{name}.json"


def cmd_run(args: argparse.Namespace) -> int:
    """``itmroute run``."""
    from .daemon import Router

    cfg = load_config(args.config)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    state = Path(args.state) if args.state else state_path(cfg.name)
    try:
        router = Router(cfg, backend=args.backend, state_file=state)
    except (OSError, BackendUnavailable) as e:
        print(f"itmroute: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda signum, frame: router.stop())
    try:
        router.run(duration=args.duration)
    except KeyboardInterrupt:
        pass
    except BackendUnavailable as e:
        print(f"itmroute: {e}", file=sys.stderr)
        return 1
    return 0


def format_table(state: dict[str, Any]) -> str:
    """The human-readable path table of a daemon's state."""
    lines = [f"itmroute {state['name']} ({state['address']}), tunnel mtu {state['tunnel_mtu']}"]
    for d in state["destinations"]:
        mode = "active" if d["active"] else "idle"
        lines.append(
            f"\n{d['prefix']} via itm {d['dest']}: {mode}, using {d['current']}, "
            f"{d['switches']} switches, {d['probes_sent']} probes"
        )
        lines.append(f"  {'PATH':<10} {'VIA':<16} {'RTT(ms)':>8} {'LOSS%':>6} {'ALIVE':<5} USE")
        for p in d["paths"]:
            rtt = "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f}"
            lines.append(
                f"  {p['name']:<10} {p['via'] or '-':<16} {rtt:>8} {p['loss'] * 100:>6.1f} "
                f"{'yes' if p['alive'] else 'no':<5} {'*' if p['name'] == d['current'] else ''}"
            )
        for dec in d["decisions"][-5:]:
            lines.append(f"  decision: {dec['line']}")
    c = state["counters"]
    lines.append("\n" + " ".join(f"{k}={v}" for k, v in c.items()))
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    """``itmroute show``."""
    if args.state:
        path = Path(args.state)
    elif args.config:
        path = state_path(load_config(args.config).name)
    else:
        path = state_path("itmroute")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"itmroute: no state in {path} ({e}); is the daemon running?", file=sys.stderr)
        return 3
    print(json.dumps(state, indent=1) if args.json else format_table(state))
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = argparse.ArgumentParser(
        prog="itmroute", description="overlay routing through the closest neighbouring ITM"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start the daemon")
    run.add_argument("-c", "--config", required=True, help="YAML configuration")
    run.add_argument("--state", help="state file (default /run/itmroute/NAME.json)")
    run.add_argument("--backend", help="libitm backend (overrides the configuration)")
    run.add_argument("--duration", type=float, help="seconds to run")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    run.set_defaults(func=cmd_run)
    show = sub.add_parser("show", help="print a running daemon's path table")
    show.add_argument("-c", "--config", help="the daemon's configuration (for its name)")
    show.add_argument("--state", help="state file")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(func=cmd_show)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``itmroute`` command."""
    args = parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except ConfigError as e:
        print(f"itmroute: {e}", file=sys.stderr)
        return 2
    return rc
