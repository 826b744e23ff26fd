"""`itmtool cleanup`: remove what libitm processes that died left in this namespace.

The nfqueue backend's chains (``ITM-<label>`` in the mangle table) record their
owner; a chain whose owner is gone (``kill -9``, a crash) is removed with its
jumps, and so is a chain with no owner recorded (an older libitm, or an
install cut short) that still has none half a second later. Then the nft
``mangle`` tables that libitm created are deleted if nothing else is in them.
A live owner's chains are never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import Any

from itmtool.errors import EXIT_OK, EXIT_PERM, EXIT_UNSUPPORTED, ToolError
from libitm.owners import has_cap_net_admin
from libitm.xtables import ItmChain, Xtables, XtablesError, prune_markers

#: how long a chain without an owner must stay so before it counts as left over
UNOWNED_GRACE = 0.5


def _entry(ch: ItmChain, reason: str) -> dict[str, Any]:
    return {
        "chain": ch.name,
        "family": ch.family,
        "label": ch.owner.label if ch.owner else None,
        "pid": ch.owner.pid if ch.owner else None,
        "reason": reason,
    }


def _leftovers(xt: Xtables, family: int) -> tuple[list[tuple[ItmChain, str]], list[ItmChain]]:
    """(chains to remove with the reason, chains of live owners) of ``family``."""
    chains = xt.itm_chains(family)
    gone = [(ch, "owner gone") for ch in chains.values() if ch.owner and not ch.owner.alive()]
    live = [ch for ch in chains.values() if ch.owner and ch.owner.alive()]
    unowned = [ch.name for ch in chains.values() if ch.owner is None]
    if unowned:
        time.sleep(UNOWNED_GRACE)
        again = xt.itm_chains(family)
        gone += [
            (again[n], "no owner recorded")
            for n in unowned
            if n in again and again[n].owner is None
        ]
    return gone, live


def cleanup(xt: Xtables | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Remove the dead owners' chains and libitm's empty tables; the `--json` shape."""
    xt = xt or Xtables()
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    tables: list[str] = []
    readable = False
    for fam in (4, 6):
        try:
            gone, live = _leftovers(xt, fam)
        except XtablesError:
            continue
        readable = True
        kept += [_entry(ch, "owner alive") for ch in live]
        for ch, reason in gone:
            if not dry_run:
                xt.remove(ch)
            removed.append(_entry(ch, reason))
        if not dry_run and xt.drop_table_if_ours(fam):
            tables.append(f"{'ip' if fam == 4 else 'ip6'} {xt.table}")
    if not dry_run:
        with contextlib.suppress(OSError):
            prune_markers()  # the notes of namespaces that are gone (their tables went too)
    if not readable:
        raise ToolError(
            "cannot read the mangle table with iptables/ip6tables",
            hint="is iptables installed?",
            code=EXIT_UNSUPPORTED,
        )
    return {"dry_run": dry_run, "removed": removed, "kept": kept, "tables_removed": tables}


def text(result: dict[str, Any]) -> str:
    """The result for people."""
    verb = "would remove" if result["dry_run"] else "removed"
    lines = [
        f"{verb} {r['chain']} (ipv{r['family']}): "
        + (f"process {r['pid']} is gone" if r["pid"] is not None else r["reason"])
        for r in result["removed"]
    ]
    lines += [f"removed the empty table {t} that libitm created" for t in result["tables_removed"]]
    if not lines:
        lines.append("nothing left over")
    if result["kept"]:
        live = sorted({f"{k['label']} (pid {k['pid']})" for k in result["kept"]})
        lines.append("kept, owner alive: " + ", ".join(live))
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    """`itmtool cleanup [--dry-run] [--json]`."""
    if not has_cap_net_admin():
        raise ToolError("cleanup needs CAP_NET_ADMIN (root has it)", code=EXIT_PERM)
    result = cleanup(dry_run=args.dry_run)
    print(json.dumps(result, indent=2) if args.json else text(result))
    return EXIT_OK
