"""`itmtool status`: the registered applications, per hook in run order, and the rio qdiscs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from libitm.control import App, ItmControl
from libitm.owners import has_cap_net_admin
from libitm.xtables import CHAIN_PREFIX, Xtables, XtablesError

COLUMNS = (
    ("HOOK", lambda a: a.hook),
    ("LABEL", lambda a: a.label),
    ("TYPE", lambda a: a.type),
    ("OWNER", lambda a: _owner(a)),
    ("PRIO", lambda a: str(a.priority)),
    ("ON", lambda a: "yes" if a.enabled else "no"),
    ("SEEN", lambda a: str(a.stats["seen"])),
    ("MATCHED", lambda a: str(a.stats["matched"])),
    ("CLASSIFIED", lambda a: str(a.stats["classified"])),
    ("ACCEPT", lambda a: str(a.stats["accept"])),
    ("DROP", lambda a: str(a.stats["drop"])),
    ("STOLEN", lambda a: str(a.stats["stolen"])),
    ("QUEUE", lambda a: str(a.stats["queue"])),
    ("NS/PKT", lambda a: _ns_per_packet(a)),
    ("INTEREST", lambda a: describe_interest(a.interest)),
)


def _owner(app: App) -> str:
    """The module of a kernel application, the process of a user-space one (and how
    many worker queues it has, when several)."""
    if app.type != "user":
        return app.owner or "-"
    return f"pid {app.pid}" + (f" x{app.queue_count}" if app.queue_count > 1 else "")


def _ns_per_packet(app: App) -> str:
    matched = app.stats["matched"]
    return str(app.stats["time_ns"] // matched) if matched else "-"


def describe_interest(interest: dict[str, Any]) -> str:
    """A short human reading of an interest, e.g. 'ipv4 udp dst 10.0.0.0/8 dport 53'."""
    parts = []
    if interest.get("family") not in (None, "any"):
        parts.append(str(interest["family"]))
    proto = interest.get("protocol") or 0
    if proto:
        parts.append({1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}.get(proto, f"proto {proto}"))
    for key in ("src", "dst"):
        if interest.get(key):
            parts.append(f"{key} {interest[key]}")
    for key in ("sport", "dport"):
        rng = interest.get(key)
        if rng:
            parts.append(f"{key} {rng[0]}" if rng[0] == rng[1] else f"{key} {rng[0]}-{rng[1]}")
    return " ".join(parts) or "all"


def table(apps: list[App]) -> str:
    """Render the applications as an aligned text table."""
    rows = [[name for name, _ in COLUMNS]]
    rows += [[fn(app) for _, fn in COLUMNS] for app in apps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


#: where kernel modules live in sysfs; an application module may keep its own
#: counters as one integer per file in /sys/module/<owner>/stats/ (qos_mod does)
SYS_MODULE = Path("/sys/module")


def module_counters(apps: list[App], sys_module: Path | None = None) -> dict[str, dict[str, int]]:
    """The counters of each application module that publishes a ``stats`` directory.

    Returns ``{owner: {counter: value}}`` for the kernel modules that own the
    given applications, in the order they first appear; unreadable or
    non-integer files are left out.
    """
    root = SYS_MODULE if sys_module is None else sys_module
    out: dict[str, dict[str, int]] = {}
    for app in apps:
        if app.type != "kernel" or not app.owner or app.owner in out:
            continue
        stats_dir = root / app.owner / "stats"
        if not stats_dir.is_dir():
            continue
        counters: dict[str, int] = {}
        for f in sorted(stats_dir.iterdir()):
            try:
                counters[f.name] = int(f.read_text().strip())
            except (OSError, ValueError):
                continue
        out[app.owner] = counters
    return out


def snapshot(ctl: ItmControl, sys_module: Path | None = None) -> dict[str, Any]:
    """The documented `--json` shape of `itmtool status`."""
    apps = ctl.apps()
    return {
        "itm_mod": "loaded",
        "netns_active": ctl.netns_active(),
        "apps": [a.to_json() for a in apps],
        "module_stats": module_counters(apps, sys_module),
        "nfqueue_apps": nfqueue_apps(),
        "rio_qdiscs": [q.as_dict() for q in rio_qdiscs()],
    }


def json_line(ctl: ItmControl, sys_module: Path | None = None) -> str:
    """The `--json` document on one line (`status --watch --json`: one per refresh)."""
    return json.dumps(snapshot(ctl, sys_module))


def render(ctl: ItmControl, as_json: bool, sys_module: Path | None = None) -> str:
    """The status as text for people or JSON for scripts."""
    if as_json:
        return json.dumps(snapshot(ctl, sys_module), indent=2)
    apps = ctl.apps()
    head = "itm_mod: loaded; hooks {} in this network namespace".format(
        "active" if ctl.netns_active() else "NOT active (itmtool netns on)"
    )
    tail = [t for t in (nfqueue_text(nfqueue_apps()), rio_text(rio_qdiscs())) if t]
    if not apps:
        return "\n".join([head, "no application registered", *tail])
    lines = [head, table(apps)]
    for owner, counters in module_counters(apps, sys_module).items():
        shown = "  ".join(f"{k} {v}" for k, v in counters.items())
        lines.append(f"{owner} counters: {shown}")
    return "\n".join(lines + tail)


# ------------------------------------------------------------- rio qdiscs
def rio_qdiscs() -> list[Any]:
    """Every rio qdisc (kernel/sch_rio) in this network namespace, as
    ``libitm.control.rio.RioStatus``: its parameters, the generic counters and
    its own.  Empty when there is none or the qdisc dump cannot be read."""
    from libitm.control import rio

    try:
        with rio.RioControl() as ctl:
            return ctl.show()
    except (rio.RioError, OSError):
        return []


def rio_text(statuses: list[Any]) -> str:
    """The rio section of the text status (empty when there is none)."""
    from itmtool import rio as rio_cli

    if not statuses:
        return ""
    return "rio qdiscs (sch_rio) in this network namespace:\n" + rio_cli.render(statuses)


# ------------------------------------------------------ nfqueue backend apps
NFQ_COLUMNS = (
    ("LABEL", "label"),
    ("HOOK", "hook"),
    ("QUEUE", "queue"),
    ("COPIES", "copies"),
    ("OWNER", "pid"),
    ("ALIVE", "alive"),
    ("FAMILY", "families"),
    ("INTEREST", "interest"),
)


def nfqueue_apps(xt: Xtables | None = None) -> list[dict[str, Any]]:
    """The applications of libitm's nfqueue backend in this network namespace.

    Read from the ``ITM-`` chains of the mangle table (both families); each
    entry: ``label``, ``chain``, ``hook`` (lower-case, None if no jump),
    ``queue`` (None if no rule), ``copies`` (an observer's: ``"ring"`` or
    ``"nflog"``; None for the others), ``pid`` (None: no owner recorded), ``alive``,
    ``families`` ([4], [6] or [4, 6]) and ``interest`` (the rules' matches).
    Empty when iptables cannot be read (no CAP_NET_ADMIN, not installed).
    """
    xt = xt or Xtables()
    found: dict[str, dict[str, Any]] = {}
    for fam in (4, 6):
        try:
            chains = xt.itm_chains(fam)
        except XtablesError:
            continue
        for ch in chains.values():
            owner = ch.owner
            entry = found.setdefault(
                ch.name,
                {
                    "label": owner.label if owner else ch.name[len(CHAIN_PREFIX) :],
                    "chain": ch.name,
                    "hook": ch.hooks[0].name.lower() if ch.hooks else None,
                    "queue": min(ch.queues) if ch.queues else None,
                    "copies": ch.copies,
                    "pid": owner.pid if owner else None,
                    "alive": bool(owner and owner.alive()),
                    "families": [],
                    "interest": [],
                },
            )
            entry["families"].append(fam)
            text = ch.interest_text()
            if text not in entry["interest"]:
                entry["interest"].append(text)
    apps = list(found.values())
    for entry in apps:
        entry["interest"] = " | ".join(entry["interest"])
    return sorted(apps, key=lambda e: (e["hook"] or "", e["label"]))


def nfqueue_table(apps: list[dict[str, Any]]) -> str:
    """The nfqueue backend's applications as an aligned text table."""

    def cell(entry: dict[str, Any], key: str) -> str:
        val = entry[key]
        if key == "alive":
            return "yes" if val else "NO"
        if key == "families":
            return "+".join(f"ipv{f}" for f in val)
        return "-" if val is None else str(val)

    rows = [[name for name, _ in NFQ_COLUMNS]]
    rows += [[cell(e, key) for _, key in NFQ_COLUMNS] for e in apps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(NFQ_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


#: the nfqueue section when iptables could not be read for want of the capability
NFQ_UNREADABLE = (
    "nfqueue backend: libitm processes not listed (reading iptables needs CAP_NET_ADMIN)"
)


def nfqueue_text(apps: list[dict[str, Any]], readable: bool | None = None) -> str:
    """The nfqueue section of the text status (empty when there is none; a line
    saying so when this process may not read the rules: ``readable`` False, or
    None and no CAP_NET_ADMIN)."""
    if not apps:
        if readable is None:
            readable = has_cap_net_admin()
        return "" if readable else NFQ_UNREADABLE
    text = "nfqueue backend (libitm processes in this network namespace):\n" + nfqueue_table(apps)
    if any(not e["alive"] for e in apps):
        text += "\nrules of dead processes are left: `itmtool cleanup` removes them"
    return text


def render_not_loaded(as_json: bool, xt: Xtables | None = None, compact: bool = False) -> str:
    """What `itmtool status` prints on stdout when itm_mod is not loaded
    (``compact``: the JSON document on one line, for ``--watch --json``)."""
    apps = nfqueue_apps(xt)
    rios = rio_qdiscs()
    if as_json:
        return json.dumps(
            {
                "itm_mod": "not loaded",
                "netns_active": False,
                "apps": [],
                "nfqueue_apps": apps,
                "rio_qdiscs": [q.as_dict() for q in rios],
            },
            indent=None if compact else 2,
        )
    return "\n".join(t for t in (nfqueue_text(apps), rio_text(rios)) if t)
