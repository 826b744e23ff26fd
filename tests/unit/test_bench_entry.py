"""bench.entry: a benchmark's command ends with its own exit code, or on Ctrl-C
with one line on stderr and 130, no traceback."""

from __future__ import annotations

import pytest

from bench import entry


def test_the_exit_code_is_mains() -> None:
    assert entry.run(lambda: 4, "bench.x") == 4


def test_ctrl_c_is_one_line_and_130(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> int:
        raise KeyboardInterrupt

    assert entry.run(main, "bench.x") == 130
    assert capsys.readouterr().err == "bench.x: interrupted\n"
