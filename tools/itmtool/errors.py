"""The errors itmtool reports to a person: a message, the way out, an exit code."""

from __future__ import annotations

#: exit codes of every itmtool subcommand (documented in docs/itmtool.md)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_LOADED = 3
EXIT_PERM = 4
EXIT_NOT_FOUND = 5
EXIT_UNSUPPORTED = 6
#: Ctrl-C (SIGINT): 128 + 2, what a shell reports for a command SIGINT killed
EXIT_INTERRUPTED = 130
#: stdout was closed early (``itmtool status --json | head -1``): 128 + SIGPIPE
EXIT_BROKEN_PIPE = 141


class ToolError(Exception):
    """A failure a person can act on; `cli.main` prints it without a traceback.

    `hint` is the way out (printed on its own line); `code` the exit code.
    """

    def __init__(self, message: str, *, hint: str = "", code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return self.message + (f"\n{self.hint}" if self.hint else "")
