"""iptables / ip6tables rules that send an application's packets to its queue.

Each application gets its own chain ``ITM-<label>`` in the mangle table, jumped
to from the built-in chain of its hook; the chain holds one rule per match of
its interest ending in ``-j NFQUEUE --queue-num N --queue-bypass`` (with no
listener bound, the kernel accepts instead of dropping).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field

from .hooks import Hook
from .interest import Interest

CHAIN_PREFIX = "ITM-"
_CHAIN_MAX = 28  # XT_EXTENSION_MAXNAMELEN - 1
_BUILTIN = tuple(h.xtables_chain for h in Hook)


class XtablesError(RuntimeError):
    """An iptables/ip6tables command failed."""


def chain_name(label: str) -> str:
    """The chain of the application labelled ``label`` (at most 28 characters)."""
    name = CHAIN_PREFIX + label
    if len(name) <= _CHAIN_MAX:
        return name
    digest = hashlib.sha1(label.encode()).hexdigest()[:6]
    return name[: _CHAIN_MAX - 7] + "-" + digest


@dataclass
class Xtables:
    """Runs iptables (family 4) and ip6tables (family 6) in the mangle table."""

    iptables: str = "iptables"
    ip6tables: str = "ip6tables"
    table: str = "mangle"
    commands: list[list[str]] = field(default_factory=list)

    def tool(self, family: int) -> str:
        """The binary for ``family``."""
        return self.iptables if family == 4 else self.ip6tables

    def run(self, family: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one command (``-w``: wait for the xtables lock)."""
        cmd = [self.tool(family), "-w", "-t", self.table, *args]
        self.commands.append(cmd)
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
        except FileNotFoundError as e:
            raise XtablesError(f"{cmd[0]} is not installed: {e}") from e
        if check and res.returncode != 0:
            raise XtablesError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.returncode}")
        return res

    def remove_chain(self, family: int, chain: str) -> bool:
        """Delete every jump to ``chain`` and the chain itself; True if it existed."""
        if self.run(family, "-n", "-L", chain, check=False).returncode != 0:
            return False
        for builtin in _BUILTIN:
            for _ in range(64):
                if self.run(family, "-D", builtin, "-j", chain, check=False).returncode != 0:
                    break
        self.run(family, "-F", chain, check=False)
        self.run(family, "-X", chain, check=False)
        return True

    def install(self, family: int, chain: str, hook: Hook, interest: Interest, queue: int) -> None:
        """Create ``chain`` with the interest's NFQUEUE rules and jump to it from ``hook``."""
        self.run(family, "-N", chain)
        for match in interest.xtables_matches(family):
            self.run(
                family,
                "-A",
                chain,
                *match,
                "-j",
                "NFQUEUE",
                "--queue-num",
                str(queue),
                "--queue-bypass",
            )
        self.run(family, "-A", hook.xtables_chain, "-j", chain)

    def rules(self, family: int, chain: str) -> list[str]:
        """The rules of ``chain`` as ``iptables -S`` prints them (empty if absent)."""
        res = self.run(family, "-S", chain, check=False)
        return res.stdout.splitlines() if res.returncode == 0 else []
