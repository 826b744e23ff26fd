"""Settings for every tier.

Several tests press Ctrl-C on a program they start (SIGINT to a child) and
expect what a person at a terminal gets: exit 130 and everything cleaned up. A
shell that starts a job in the background without job control (``cmd &`` in a
script, ``nohup``) starts it with SIGINT ignored, and an ignored signal stays
ignored across exec: Python then installs no KeyboardInterrupt handler and the
child never sees the Ctrl-C. The test run gives its children a terminal's
SIGINT back, whatever started it.
"""

from __future__ import annotations

import signal


def pytest_configure() -> None:
    """Restore SIGINT's default handling when this run was started with it ignored."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
