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


def not_a_command(name: str, instead: str) -> int:
    """Exit code 2 after one line on stderr: module `name` is not run, do `instead`.

    For the modules of bench/ that only hold what the benchmarks share, so that
    ``python -m`` on one of them says what to run instead of doing nothing."""
    print(f"{name} is not a command: {instead}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(
        not_a_command(
            "bench.entry",
            "it holds how a benchmark's command ends; run a benchmark"
            " (python -m bench.run_all --list names them)",
        )
    )
