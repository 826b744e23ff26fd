"""`itmtool rio`: put the RIO core qdisc (kernel/sch_rio) on a device, read it, remove it.

``itmtool rio set DEV [options]`` adds (or changes) a ``rio`` qdisc, ``show [DEV]``
prints its parameters and counters (``--json`` too), ``del DEV`` removes it.  A
change keeps the qdisc's ``--dscp`` and idle table (``--bandwidth``) unless it
gives new ones; ``--no-dscp`` and ``--no-bandwidth`` take them back to the defaults.
Stock ``tc`` cannot parse rio's options, but ``tc -s qdisc show`` lists it with
the generic counters.  See docs/sch_rio.md.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
from typing import Any

from itmtool.errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_PERM, EXIT_USAGE, ToolError

_RATE = re.compile(r"^(\d+(?:\.\d+)?)([kmg]?)(bit|bps)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def profile(text: str) -> Any:
    """argparse type: ``MIN,MAX,MAX_P`` (packets, packets, a probability)."""
    from libitm.control.rio import RedProfile

    parts = text.split(",")
    try:
        if len(parts) != 3:
            raise ValueError
        prof = RedProfile(int(parts[0]), int(parts[1]), float(parts[2]))
        prof.check("profile")
    except ValueError as err:
        detail = f": {err}" if str(err) else ""
        raise argparse.ArgumentTypeError(
            f"must be MIN,MAX,MAX_P (e.g. 40,70,0.02), not {text!r}{detail}"
        ) from None
    return prof


def rate(text: str) -> int:
    """argparse type: a link rate in bit/s, as tc writes it (``100mbit``, ``1gbit``)."""
    found = _RATE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a rate such as 100mbit, not {text!r}")
    bits = float(found.group(1)) * _UNITS[found.group(2).lower()]
    return int(bits * (8 if (found.group(3) or "").lower() == "bps" else 1))


def add_parser(sub: Any) -> None:
    """The ``rio`` subcommand and its ``set``, ``show`` and ``del``."""
    p = sub.add_parser(
        "rio",
        help="the RIO core qdisc (sch_rio): set it on a device, show its counters, delete it",
        description="RED with In and Out (Clark and Fang, 1998) on one FIFO: packets "
        "marked by qos_mod (TOS 0x10, or --dscp) are 'in', the rest 'out'. Needs sch_rio "
        "loaded (itmtool load sch_rio). See docs/sch_rio.md.",
        epilog="Exit codes: 0 done; 1 the kernel refused; 2 bad argument; 4 not root; "
        "5 no such device, no rio qdisc there, or sch_rio not loaded.",
    )
    rsub = p.add_subparsers(dest="rio_cmd", required=True, metavar="ACTION")
    s = rsub.add_parser("set", help="add a rio qdisc, or change the one there")
    s.add_argument("dev", help="network device")
    s.add_argument("--parent", default="root", help="root (default) or a class, e.g. 1:1")
    s.add_argument("--handle", default="", help="the qdisc's handle, e.g. 10: (default: any)")
    s.add_argument("--limit", type=int, default=1000, help="packets the FIFO holds (1000)")
    s.add_argument("--wlog", type=int, default=9, help="averages' weight is 2^-wlog (9)")
    s.add_argument(
        "--in",
        dest="in_profile",
        type=profile,
        metavar="MIN,MAX,P",
        help="RED profile of 'in' packets, vs the 'in' average (40,70,0.02)",
    )
    s.add_argument(
        "--out",
        dest="out_profile",
        type=profile,
        metavar="MIN,MAX,P",
        help="RED profile of 'out' packets, vs the total average (10,30,0.1)",
    )
    dscp = s.add_mutually_exclusive_group()
    dscp.add_argument("--dscp", type=int, help="this DSCP is 'in' (default: the TOS bit 0x10)")
    dscp.add_argument(
        "--no-dscp",
        action="store_true",
        help="'in' is the TOS bit 0x10 again (a change keeps the DSCP without it)",
    )
    s.add_argument("--ecn", action="store_true", help="mark CE instead of an early drop")
    idle = s.add_mutually_exclusive_group()
    idle.add_argument(
        "--bandwidth",
        type=rate,
        help="link rate (e.g. 100mbit): decay the averages over idle time as RED does",
    )
    idle.add_argument(
        "--no-bandwidth",
        action="store_true",
        help="drop the idle-time decay table (a change keeps it without this)",
    )
    s.add_argument("--avpkt", type=int, default=1000, help="average packet size (1000 bytes)")
    s.add_argument("--json", action="store_true", help="print the qdisc as set, as JSON")
    s.set_defaults(func=command)
    s = rsub.add_parser("show", help="parameters and counters of the rio qdiscs")
    s.add_argument("dev", nargs="?", help="only this device")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=command)
    s = rsub.add_parser("del", help="remove the rio qdisc (the device gets its default back)")
    s.add_argument("dev", help="network device")
    s.add_argument("--parent", default="root", help="root (default) or a class, e.g. 1:1")
    s.set_defaults(func=command)


def _config(args: argparse.Namespace) -> Any:
    from libitm.control import rio

    kwargs: dict[str, Any] = {"limit": args.limit, "wlog": args.wlog, "ecn": args.ecn}
    if args.in_profile is not None:
        kwargs["in_profile"] = args.in_profile
    if args.out_profile is not None:
        kwargs["out_profile"] = args.out_profile
    if args.dscp is not None:
        kwargs["dscp"] = args.dscp
    if args.bandwidth is not None:
        if args.avpkt <= 0:
            raise ToolError("--avpkt must be > 0", code=EXIT_USAGE)
        kwargs["scell_log"], kwargs["stab"] = rio.idle_damping(
            args.wlog, args.avpkt, args.bandwidth
        )
    cfg = rio.RioConfig(**kwargs)
    try:
        cfg.check()
    except ValueError as err:
        raise ToolError(str(err), code=EXIT_USAGE) from None
    return cfg


def render(statuses: list[Any]) -> str:
    """Human-readable lines: one block per rio qdisc."""
    if not statuses:
        return "no rio qdisc"
    out = []
    for st in statuses:
        c, x, g = st.config, st.xstats, st.counters
        mark = "TOS 0x10" if c.dscp is None else f"DSCP {c.dscp}"
        table = "" if c.stab is None else f" idle-table scell_log {c.scell_log}"
        out.append(
            f"rio {st.handle} dev {st.dev} parent {st.parent}: limit {c.limit}p wlog {c.wlog} "
            f"in={mark}{' ecn' if c.ecn else ''}{table}\n"
            f"  in  min {c.in_profile.min} max {c.in_profile.max} max_p {c.in_profile.max_p:.4g}"
            f"  enqueued {x.get('in_enqueued', 0)} early {x.get('in_early', 0)}"
            f" forced {x.get('in_forced', 0)}  avg {x.get('qavg_in', 0)}\n"
            f"  out min {c.out_profile.min} max {c.out_profile.max} max_p {c.out_profile.max_p:.4g}"
            f"  enqueued {x.get('out_enqueued', 0)} early {x.get('out_early', 0)}"
            f" forced {x.get('out_forced', 0)}  avg(all) {x.get('qavg_all', 0)}\n"
            f"  sent {g.get('packets', 0)} pkt {g.get('bytes', 0)} bytes, dropped"
            f" {g.get('drop', 0)}, ecn marked {x.get('ecn_marked', 0)}, full"
            f" {x.get('limit_drops', 0)}, queued {x.get('qlen', 0)} ({x.get('in_qlen', 0)} in)"
        )
    return "\n".join(out)


def command(args: argparse.Namespace) -> int:
    """Run ``itmtool rio ACTION``."""
    from libitm.control import rio

    try:
        with rio.RioControl() as ctl:
            if args.rio_cmd == "set":
                ctl.set(
                    args.dev,
                    _config(args),
                    parent=args.parent,
                    handle=args.handle,
                    clear_dscp=args.no_dscp,
                    clear_stab=args.no_bandwidth,
                )
                if args.json:
                    shown = [s for s in ctl.show(args.dev) if s.parent == args.parent]
                    print(json.dumps([s.as_dict() for s in shown], indent=2))
            elif args.rio_cmd == "del":
                ctl.delete(args.dev, parent=args.parent)
            else:
                statuses = ctl.show(args.dev)
                if args.json:
                    print(json.dumps([s.as_dict() for s in statuses], indent=2))
                else:
                    print(render(statuses))
    except ValueError as err:
        raise ToolError(str(err), code=EXIT_USAGE) from None
    except rio.RioError as err:
        raise _tool_error(err) from None
    return EXIT_OK


def _tool_error(err: Any) -> ToolError:
    if err.code == errno.EPERM:
        return ToolError(str(err), hint="this needs root (CAP_NET_ADMIN)", code=EXIT_PERM)
    if err.code == errno.ENOENT and "kind is unknown" in str(err):
        return ToolError(
            "the kernel has no rio qdisc (sch_rio is not loaded)",
            hint="load it: itmtool load sch_rio",
            code=EXIT_NOT_FOUND,
        )
    if err.code in (errno.ENOENT, errno.ENODEV):
        return ToolError(str(err), code=EXIT_NOT_FOUND)
    return ToolError(str(err))


def unload_refused(show: Any = None) -> ToolError:
    """What `itmtool unload sch_rio` says when rmmod refuses because the module is in use.

    Every rio qdisc holds sch_rio; this names the ones of the caller's network
    namespace (`show`: a function returning ``RioStatus`` objects; default: the
    kernel's qdisc dump) and how to delete them.  Qdiscs of other namespaces
    hold it too, but only a process in a namespace sees them: when there is
    none here, the message says so.
    """
    if show is None:
        from libitm.control import rio

        def show() -> list[Any]:
            try:
                with rio.RioControl() as ctl:
                    return ctl.show()
            except (rio.RioError, OSError):
                return []

    statuses = show()
    if not statuses:
        return ToolError(
            "sch_rio is in use, but by no rio qdisc of this network namespace",
            hint="rio qdiscs of other network namespaces hold it: delete them there "
            "(`ip netns exec NS itmtool rio del DEV`), or delete those namespaces",
            code=EXIT_FAILED,
        )
    lines = ["sch_rio is in use", "rio qdiscs in this network namespace:"]
    lines += [f"  rio {st.handle} dev {st.dev} parent {st.parent}" for st in statuses]
    first = statuses[0]
    where = "" if first.parent == "root" else f" --parent {first.parent}"
    return ToolError(
        "\n".join(lines),
        hint=f"delete them first (`itmtool rio del {first.dev}{where}`; their queued "
        "packets are dropped), then unload sch_rio",
        code=EXIT_FAILED,
    )
