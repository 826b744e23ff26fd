"""The command lines of bench/: one-line errors, and the option types they share.

A mistake on a benchmark's command line is one line on stderr and exit 2,
before anything is built, booted or set up: :func:`parser` makes an argparse
parser whose errors are that line (no usage block). The option types
(``positive``, ``port``, ``queue_num``, ``seconds``) are :mod:`libitm.cliargs`'s,
the one implementation, re-exported here; each refuses a bad value with a
message that names it.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from libitm.cliargs import port, positive, queue_num, seconds

__all__ = ["OneLineParser", "parser", "port", "positive", "queue_num", "seconds"]


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the module, exit 2."""

    def error(self, message: str) -> NoReturn:
        """Report a bad argument and exit 2."""
        module = self.prog.removeprefix("python -m ")
        self.exit(2, f"{module}: {message} (see {self.prog} --help)\n")


def parser(module: str, doc: str | None) -> OneLineParser:
    """The parser of ``python -m module``, described by the first line of `doc`."""
    return OneLineParser(
        prog=f"python -m {module}", description=(doc or "").strip().partition("\n")[0]
    )


if __name__ == "__main__":
    import sys

    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.cliargs",
            "it holds what the benchmarks' command lines share; run a benchmark"
            " (python -m bench.run_all --list names them)",
        )
    )
