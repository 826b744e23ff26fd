"""itmtool: the one command for a person running an ITM.

Exit codes: 0 success; 1 a request failed; 2 bad usage; 3 itm_mod not loaded;
4 permission denied; 5 no such application.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from collections.abc import Callable

from itmtool import status as status_mod
from libitm.control import ItmControl, ItmControlError, ItmNotLoaded

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_LOADED, EXIT_PERM, EXIT_NOT_FOUND = range(6)


def _cmd_status(args: argparse.Namespace) -> int:
    while True:
        try:
            with ItmControl() as ctl:
                text = status_mod.render(ctl, args.json)
        except ItmNotLoaded as err:
            if args.json:
                print(json.dumps({"itm_mod": "not loaded", "netns_active": False, "apps": []}))
            else:
                print(f"itmtool: {err}", file=sys.stderr)
            return EXIT_NOT_LOADED
        if not args.watch:
            print(text)
            return EXIT_OK
        print("\033[H\033[2J" + time.strftime("%H:%M:%S ") + text, flush=True)
        time.sleep(args.interval)


def _cmd_set(args: argparse.Namespace) -> int:
    with ItmControl() as ctl:
        if args.cmd == "enable":
            ctl.set_app(args.label, enabled=True)
        elif args.cmd == "disable":
            ctl.set_app(args.label, enabled=False)
        else:
            ctl.set_app(args.label, priority=args.priority)
    return EXIT_OK


def _cmd_netns(args: argparse.Namespace) -> int:
    with ItmControl() as ctl:
        if args.state is not None:
            ctl.set_netns_active(args.state == "on")
        print("on" if ctl.netns_active() else "off")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="itmtool",
        description="Control the Internet Traffic Manager: applications, their state, counters.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("status", help="registered applications per hook, in run order")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.set_defaults(func=_cmd_status)

    for name, text in (("enable", "turn an application on"), ("disable", "turn it off")):
        p = sub.add_parser(name, help=text)
        p.add_argument("label", help="the application's label (see `itmtool status`)")
        p.set_defaults(func=_cmd_set)

    p = sub.add_parser("priority", help="change where an application runs at its hook")
    p.add_argument("label", help="the application's label")
    p.add_argument("priority", type=int, help="lower runs first; ties run in registration order")
    p.set_defaults(func=_cmd_set)

    p = sub.add_parser("netns", help="attach itm_mod's hooks to this network namespace")
    p.add_argument("state", nargs="?", choices=("on", "off"), help="omit to show the state")
    p.set_defaults(func=_cmd_netns)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `itmtool` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ItmNotLoaded as err:
        print(f"itmtool: {err}", file=sys.stderr)
        return EXIT_NOT_LOADED
    except ItmControlError as err:
        print(f"itmtool: {args.cmd}: {err}", file=sys.stderr)
        if err.code == errno.EPERM:
            print("itmtool: changes need CAP_NET_ADMIN (run as root)", file=sys.stderr)
            return EXIT_PERM
        return EXIT_NOT_FOUND if err.code == errno.ENOENT else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
