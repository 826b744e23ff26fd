"""`itmtool status`: the registered applications, per hook in run order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from libitm.control import App, ItmControl

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
    """The module of a kernel application, the process of a user-space one."""
    return f"pid {app.pid}" if app.type == "user" else app.owner or "-"


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
    if not apps:
        return head + "\nno application registered"
    lines = [head, table(apps)]
    for owner, counters in module_counters(apps, sys_module).items():
        shown = "  ".join(f"{k} {v}" for k, v in counters.items())
        lines.append(f"{owner} counters: {shown}")
    return "\n".join(lines)
