"""How a benchmark's command ends: its own exit code, or on Ctrl-C one line on
stderr and 130 (128 + SIGINT, as a shell reports it), after the benchmark's own
clean-up (its ``finally`` blocks remove what it set up) and without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run(main: Callable[[], int], name: str) -> int:
    """``main()``'s exit code; 130 with ``name: interrupted`` on stderr on Ctrl-C."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
