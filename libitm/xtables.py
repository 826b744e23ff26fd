"""iptables / ip6tables rules that send an application's packets to its queue.

Each application gets its own chain ``ITM-<label>`` in the mangle table, jumped
to from the built-in chain of its hook; the chain holds one rule per match of
its interest ending in ``-j NFQUEUE --queue-num N --queue-bypass`` (with no
listener bound, the kernel accepts instead of dropping). Every rule, the jump
included, carries its owner's mark (:mod:`libitm.owners`), so that any libitm
process can tell a live owner's rules from a dead one's.

With the nf_tables flavour of iptables, the first ``iptables -t mangle``
command creates the nft table ``ip mangle`` (``ip6 mangle``); libitm notes
under ``/run/libitm`` that it created it, and the last libitm process of the
network namespace deletes it again when nothing else is in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from .hooks import Hook
from .interest import Interest
from .owners import Owner, parse_comment

log = logging.getLogger("libitm")

CHAIN_PREFIX = "ITM-"
_CHAIN_MAX = 28  # XT_EXTENSION_MAXNAMELEN - 1
_BUILTIN = tuple(h.xtables_chain for h in Hook)
_HOOK_OF = {h.xtables_chain: h for h in Hook}
#: the comment libitm gives an nft table it creates: the note that the table is
#: libitm's to delete once it is empty, kept by the kernel in the table itself
TABLE_COMMENT = "created by libitm"
#: where libitm notes the nft tables it created when it cannot comment them (an
#: nft or kernel without table comments, before nftables 0.9.7 or Linux 5.10):
#: one file per family and netns
MARKER_DIR = Path("/run/libitm")
#: the comment that marks an observer's chain as fed from a BPF ring (no jump
#: leads to it; the hook follows the tag)
RING_TAG = "itm-ring-copies"
_PROTO_NAMES = {"1": "icmp", "6": "tcp", "17": "udp", "58": "icmpv6", "ipv6-icmp": "icmpv6"}


class XtablesError(RuntimeError):
    """An iptables/ip6tables command failed."""


def chain_name(label: str) -> str:
    """The chain of the application labelled ``label`` (at most 28 characters)."""
    name = CHAIN_PREFIX + label
    if len(name) <= _CHAIN_MAX:
        return name
    digest = hashlib.sha1(label.encode()).hexdigest()[:6]
    return name[: _CHAIN_MAX - 7] + "-" + digest


def _comments(args: list[str]) -> list[str]:
    """Every ``--comment`` value of a rule, in order."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--comment"]


def _ring_hook(args: list[str]) -> Hook | None:
    """The hook an observer's ring record names (None: the rule is no such record)."""
    for text in _comments(args):
        tag, _, builtin = text.partition(" ")
        if tag == RING_TAG and builtin in _HOOK_OF:
            return _HOOK_OF[builtin]
    return None


def _copy_kind(args: list[str]) -> str | None:
    """How an observer's rule gets copies: ``"ring"`` (the record of a ring),
    ``"nflog"`` (an NFLOG target), or None (not an observer's rule)."""
    if _ring_hook(args) is not None:
        return "ring"
    return "nflog" if _option(args, "-j") == "NFLOG" else None


def _option(args: list[str], name: str) -> str | None:
    """The value after ``name`` in a rule's arguments (None: absent)."""
    try:
        return args[args.index(name) + 1]
    except (ValueError, IndexError):
        return None


def queue_numbers(args: list[str]) -> set[int]:
    """The queue numbers an ``NFQUEUE`` rule sends to (``--queue-num``, ``--queue-balance``)."""
    if _option(args, "-j") != "NFQUEUE":
        return set()
    num = _option(args, "--queue-num")
    if num is not None and num.isdigit():
        return {int(num)}
    bal = _option(args, "--queue-balance")
    if bal is not None:
        lo, _, hi = bal.partition(":")
        if lo.isdigit() and hi.isdigit():
            return set(range(int(lo), int(hi) + 1))
    if num is None and bal is None:
        return {0}  # NFQUEUE without a number sends to queue 0
    return set()


def describe_rule(args: list[str]) -> str:
    """The match of one NFQUEUE rule for people, e.g. ``tcp dst 10.0.0.0/8 dport 80``."""
    parts: list[str] = []
    proto = _option(args, "-p")
    if proto is not None:
        parts.append(_PROTO_NAMES.get(proto, proto))
    for opt, word in (("-s", "src"), ("-d", "dst")):
        val = _option(args, opt)
        if val is not None:
            parts.append(f"{word} {val}")
    for opt, word in (("--sport", "sport"), ("--dport", "dport")):
        val = _option(args, opt)
        if val is not None:
            lo, _, hi = val.partition(":")
            parts.append(f"{word} {lo}" if not hi or lo == hi else f"{word} {lo}-{hi}")
    return " ".join(parts) or "all"


@dataclass
class ItmChain:
    """One ``ITM-`` chain of the mangle table as found in the kernel."""

    family: int
    name: str
    owner: Owner | None = None
    hooks: list[Hook] = field(default_factory=list)
    queues: set[int] = field(default_factory=set)
    #: the arguments of the chain's rules (after ``-A CHAIN``)
    rules: list[list[str]] = field(default_factory=list)
    #: the jumps to it, as ``iptables -S`` prints them (``-A BUILTIN ...``)
    jumps: list[list[str]] = field(default_factory=list)

    @property
    def copies(self) -> str | None:
        """How an observer's chain gets its copies: ``"ring"`` (a BPF ring,
        :mod:`libitm.transport.ring`), ``"nflog"``, or None (it queues)."""
        return next((k for k in map(_copy_kind, self.rules) if k is not None), None)

    def interest_text(self) -> str:
        """The rules' matches for people (``|`` between rules): those that queue
        or copy (NFLOG, or an observer's ring record)."""
        shown = [describe_rule(r) for r in self.rules if queue_numbers(r) or _copy_kind(r)]
        return " | ".join(dict.fromkeys(shown)) or "none"


@dataclass
class Xtables:
    """Runs iptables (family 4) and ip6tables (family 6) in the mangle table."""

    iptables: str = "iptables"
    ip6tables: str = "ip6tables"
    table: str = "mangle"
    nft: str = "nft"
    commands: list[list[str]] = field(default_factory=list)
    _nftables: dict[int, bool] = field(default_factory=dict)

    def tool(self, family: int) -> str:
        """The binary for ``family``."""
        return self.iptables if family == 4 else self.ip6tables

    def _exec(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(cmd)
        try:
            return subprocess.run(
                [command_path(cmd[0]), *cmd[1:]],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except FileNotFoundError as e:
            raise XtablesError(f"{cmd[0]} is not installed: {e}") from e

    def run(self, family: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one command (``-w``: wait for the xtables lock)."""
        cmd = [self.tool(family), "-w", "-t", self.table, *args]
        res = self._exec(cmd)
        if check and res.returncode != 0:
            raise XtablesError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.returncode}")
        return res

    # ------------------------------------------------------------ reading
    def table_rules(self, family: int, table: str | None = None) -> list[list[str]]:
        """Every line of ``iptables -S`` for ``table`` (default: mangle), split."""
        cmd = [self.tool(family), "-w", "-t", table or self.table, "-S"]
        res = self._exec(cmd)
        if res.returncode != 0:
            raise XtablesError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.returncode}")
        return [shlex.split(ln) for ln in res.stdout.splitlines() if ln.strip()]

    def itm_chains(self, family: int) -> dict[str, ItmChain]:
        """The ``ITM-`` chains of the table, with owner, hooks, queues and rules."""
        chains: dict[str, ItmChain] = {}
        lines = self.table_rules(family)
        for args in lines:
            if args[:1] == ["-N"] and len(args) > 1 and args[1].startswith(CHAIN_PREFIX):
                chains[args[1]] = ItmChain(family, args[1])
        for args in lines:
            if args[:1] != ["-A"] or len(args) < 2:
                continue
            comment = _option(args, "--comment")
            owner = parse_comment(comment) if comment is not None else None
            target = _option(args, "-j")
            if args[1] in chains:
                ch = chains[args[1]]
                ch.rules.append(args[2:])
                ch.queues |= queue_numbers(args)
                ring = _ring_hook(args)
                if ring is not None:
                    ch.hooks.append(ring)
            elif target in chains and args[1] in _HOOK_OF:
                ch = chains[target]
                ch.jumps.append(args)
                ch.hooks.append(_HOOK_OF[args[1]])
            else:
                continue
            if owner is not None and ch.owner is None:
                ch.owner = owner
        return chains

    def queues_in_use(self, family: int) -> set[int]:
        """Every queue number an NFQUEUE rule of the mangle, filter or raw table names."""
        used: set[int] = set()
        for table in (self.table, "filter", "raw"):
            try:
                lines = self.table_rules(family, table)
            except XtablesError:
                continue
            for args in lines:
                if args[:1] == ["-A"]:
                    used |= queue_numbers(args)
        return used

    # ------------------------------------------------------------ writing
    def install(
        self,
        family: int,
        chain: str,
        hook: Hook,
        interest: Interest,
        queue: int,
        owner: Owner | None = None,
        balance: int = 1,
        fanout: bool = False,
        target: list[str] | None = None,
        before: Collection[str] = (),
        ring: bool = False,
    ) -> None:
        """Create ``chain`` with the interest's NFQUEUE rules and jump to it from ``hook``.

        ``balance`` > 1 spreads the packets over ``queue`` .. ``queue + balance - 1``
        (``--queue-balance``: by a hash of the addresses, so a flow stays on one
        queue; with ``fanout`` by the CPU that handles the packet instead).
        ``target`` replaces the NFQUEUE target (an observer's ``NFLOG ...``).
        ``-N`` fails when the chain exists: two processes never fill one chain.
        The jump is appended to the hook's chain, or inserted just before the
        first jump to one of the chains named in ``before`` (a decider's before
        its process's observers: a queued packet leaves the table, so a rule
        after its NFQUEUE rule is not reached for it).

        ``ring``: an observer fed from a BPF ring (:mod:`libitm.transport.ring`):
        the chain records its owner, hook and interest in one ``RETURN`` rule,
        and no jump leads to it, so no packet walks it.
        """
        if target is None:
            if balance > 1:
                spread = ["--queue-balance", f"{queue}:{queue + balance - 1}"]
                spread += ["--queue-cpu-fanout"] if fanout else []
            else:
                spread = ["--queue-num", str(queue)]
            target = ["NFQUEUE", *spread, "--queue-bypass"]
        mark = ["-m", "comment", "--comment", owner.comment()] if owner is not None else []
        if ring:
            target = ["RETURN"]
            mark += ["-m", "comment", "--comment", f"{RING_TAG} {hook.xtables_chain}"]
        self.run(family, "-N", chain)
        for match in interest.xtables_matches(family):
            self.run(
                family,
                "-A",
                chain,
                *match,
                *mark,
                "-j",
                *target,
            )
        if ring:
            return
        where = ["-A", hook.xtables_chain]
        position = self.jump_position(family, hook, before) if before else None
        if position is not None:
            where = ["-I", hook.xtables_chain, str(position)]
        self.run(family, *where, *mark, "-j", chain)

    def jump_position(self, family: int, hook: Hook, targets: Collection[str]) -> int | None:
        """The rule number (from 1, as ``iptables -I`` takes it) of the first jump
        from ``hook``'s chain to one of ``targets``; None if there is none."""
        builtin = hook.xtables_chain
        number = 0
        for line in self.rules(family, builtin):
            args = shlex.split(line)
            if args[:2] != ["-A", builtin]:
                continue
            number += 1
            if _option(args, "-j") in targets:
                return number
        return None

    def remove_chain(self, family: int, chain: str, owner: Owner | None = None) -> bool:
        """Delete every jump to ``chain`` and the chain itself; True if it existed.

        With ``owner``: only if the chain records no owner or that one's process
        (never another process's chain of the same name).
        """
        found = self.itm_chains(family).get(chain)
        if found is None:
            return False
        if owner is not None and found.owner is not None and not found.owner.same_process(owner):
            return False
        self.remove(found)
        return True

    def remove(self, chain: ItmChain) -> None:
        """Delete ``chain``'s jumps, its rules and the chain (as listed)."""
        for jump in chain.jumps:
            self.run(chain.family, "-D", *jump[1:], check=False)
        self.run(chain.family, "-F", chain.name, check=False)
        self.run(chain.family, "-X", chain.name, check=False)

    def reap(self, family: int) -> list[ItmChain]:
        """Remove the chains whose recorded owner is dead; the chains removed."""
        dead = [
            ch
            for ch in self.itm_chains(family).values()
            if ch.owner is not None and not ch.owner.alive()
        ]
        for ch in dead:
            self.remove(ch)
        return dead

    def rules(self, family: int, chain: str) -> list[str]:
        """The rules of ``chain`` as ``iptables -S`` prints them (empty if absent)."""
        res = self.run(family, "-S", chain, check=False)
        return res.stdout.splitlines() if res.returncode == 0 else []

    # ------------------------------------------------------- nft tables
    def uses_nftables(self, family: int) -> bool:
        """True when ``iptables -V`` says nf_tables (tables are nft tables then)."""
        if family not in self._nftables:
            try:
                res = self._exec([self.tool(family), "-V"])
                self._nftables[family] = "nf_tables" in res.stdout
            except XtablesError:
                self._nftables[family] = False
        return self._nftables[family]

    def _nft_table(self, family: int) -> list[str]:
        return ["table", "ip" if family == 4 else "ip6", self.table]

    def _list(self, family: int) -> subprocess.CompletedProcess[str] | None:
        """``nft list table`` of ``family``'s table (None: nft cannot run)."""
        try:
            return self._exec([self.nft, "list", *self._nft_table(family)])
        except XtablesError:
            return None

    def table_exists(self, family: int) -> bool:
        """True when the nft table of ``family`` exists (True if nft cannot tell)."""
        res = self._list(family)
        return res is None or res.returncode == 0

    def note_table(self, family: int) -> None:
        """Before libitm's first rule of ``family``: if the table does not exist yet,
        create it with :data:`TABLE_COMMENT`, so that whoever removes libitm's last
        rule knows the table is libitm's to delete (iptables-nft adds its chains to
        it). Where nft cannot comment a table, a file in :data:`MARKER_DIR` is the
        note (and the notes of namespaces that are gone are forgotten)."""
        if not self.uses_nftables(family) or self.table_exists(family):
            return
        create = [self.nft, "create", *self._nft_table(family)]
        try:
            made = self._exec([*create, "{", "comment", f'"{TABLE_COMMENT}";', "}"]).returncode == 0
        except XtablesError:
            made = False
        if made or self.table_exists(family):
            return  # commented, or another process made it meanwhile: not ours to note
        marker = table_marker(family, self.table)
        with contextlib.suppress(OSError):
            prune_markers()
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("created by libitm\n")
        except OSError as e:
            unnoted_table(family, self.table, e)

    def drop_table_if_ours(self, family: int) -> bool:
        """Delete the nft table if libitm created it (its comment, or a note in
        :data:`MARKER_DIR`) and it is empty; True if deleted."""
        marker = table_marker(family, self.table)
        noted = marker.exists()
        if not noted and not self.uses_nftables(family):
            return False
        res = self._list(family)  # one listing answers all three questions
        if res is None:
            return False  # nft cannot tell
        if res.returncode != 0:  # the table is gone
            marker.unlink(missing_ok=True)
            return False
        if not noted and f'comment "{TABLE_COMMENT}"' not in res.stdout:
            return False
        if not _holds_nothing(res.stdout):
            return False
        res = self._exec([self.nft, "delete", *self._nft_table(family)])
        if res.returncode == 0:
            marker.unlink(missing_ok=True)
            return True
        return False


def _holds_nothing(listing: str) -> bool:
    """Whether an ``nft list table`` listing shows nothing but accepting, empty base
    chains (and a comment)."""
    for line in listing.splitlines():
        text = line.strip()
        if not text or text == "}" or text.startswith(("table ", "chain ", "comment ")):
            continue
        if text.startswith("type ") and "policy accept" in text:
            continue
        return False
    return True


def netns_id() -> str:
    """The inode of the calling thread's network namespace (unique while it exists)."""
    try:
        link = os.readlink("/proc/thread-self/ns/net")
    except OSError:
        return "unknown"
    return link.removeprefix("net:[").rstrip("]")


def live_netns_ids(proc: Path = Path("/proc"), named: Path = Path("/run/netns")) -> set[str]:
    """The inodes of the network namespaces that exist: those of a process, and
    those kept by a bind mount (``ip netns add``)."""
    ids: set[str] = set()
    for pid in proc.iterdir():
        if pid.name.isdigit():
            with contextlib.suppress(OSError):
                ids.add(os.readlink(pid / "ns" / "net").removeprefix("net:[").rstrip("]"))
    if named.is_dir():
        for mount in named.iterdir():
            with contextlib.suppress(OSError):
                ids.add(str(mount.stat().st_ino))
    return ids


def prune_markers(directory: Path | None = None, live: set[str] | None = None) -> list[Path]:
    """Remove the markers of namespaces that no longer exist (their tables went with
    them: a process killed, then its namespace deleted); returns what was removed."""
    directory = MARKER_DIR if directory is None else directory
    if not directory.is_dir():
        return []
    live = live_netns_ids() if live is None else live
    gone = []
    for marker in directory.glob("*-netns-*"):
        if marker.name.rpartition("-netns-")[2] not in live:
            with contextlib.suppress(OSError):
                marker.unlink()
                gone.append(marker)
    return gone


#: where Debian keeps iptables and nft: not on the PATH of a user without root, who
#: may still hold CAP_NET_ADMIN
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def command_path(name: str) -> str:
    """``name`` as found on PATH, else in :data:`SBIN_PATH`, else unchanged."""
    if "/" in name or shutil.which(name) is not None:
        return name
    return shutil.which(name, path=SBIN_PATH) or name


#: the tables already said to stay (one warning each per process)
_UNNOTED: set[tuple[int, str]] = set()


def unnoted_table(family: int, table: str, err: OSError) -> None:
    """Say once that the table libitm creates now will stay after its last rule: its
    note could not be written (a process with CAP_NET_ADMIN but not root, say)."""
    if (family, table) in _UNNOTED:
        return
    _UNNOTED.add((family, table))
    head = (
        f"cannot note in {MARKER_DIR} that libitm creates the IPv{family} {table} table "
        f"({err.strerror or err})"
    )
    if in_user_namespace():
        log.info(
            "%s: in a user namespace of its own the table goes with its network namespace", head
        )
        return
    log.warning(
        "%s: the table, empty, will stay after libitm's last rule goes; give libitm a %s it "
        "may write (systemd: RuntimeDirectory=libitm with RuntimeDirectoryPreserve=yes)",
        head,
        MARKER_DIR,
    )


def in_user_namespace(uid_map: Path = Path("/proc/self/uid_map")) -> bool:
    """True when this process runs in a user namespace other than the initial one
    (``unshare -r``, a rootless container): its uid map is not the identity."""
    try:
        return uid_map.read_text().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def table_marker(family: int, table: str = "mangle") -> Path:
    """The file that says libitm created ``table`` of ``family`` in this namespace."""
    return MARKER_DIR / f"{table}-ipv{family}-netns-{netns_id()}"
