"""Settings for every tier.

Several tests press Ctrl-C on a program they start (SIGINT to a child) and
expect what a person at a terminal gets: exit 130 and everything cleaned up. A
shell that starts a job in the background without job control (``cmd &`` in a
script, ``nohup``) starts it with SIGINT ignored, and an ignored signal stays
ignored across exec: Python then installs no KeyboardInterrupt handler and the
child never sees the Ctrl-C. The test run gives its children a terminal's
SIGINT back, whatever started it.

The VM tier's guests start as soon as the run has collected a test that reads
them (tests/vm, parametrized by kernel): they then build, boot and run while the
unit and host tiers run.
"""

from __future__ import annotations

import signal

import pytest


def pytest_configure() -> None:
    """Restore SIGINT's default handling when this run was started with it ignored."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the VM tier's guests in the background when this run has their tests."""
    if any(item.nodeid.startswith("tests/vm/") and "[" in item.nodeid for item in session.items):
        from tests.vm import guest  # only then: it reads the kernel matrix

        guest.start_tiers()
