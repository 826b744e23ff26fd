"""enable / disable / priority: what the user sees when the label is wrong (found by
the kernel-side sweep in UML: an over-long label came back as the kernel's
'Attribute failed policy validation', exit 1; a label used in two namespaces
gave no way out)."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from itmtool import cli
from libitm.control import ItmControlError


class _Refusing:
    """Stands for ItmControl: refuses every change with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message

    def __enter__(self) -> _Refusing:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def set_app(self, label: str, **changes: Any) -> None:
        raise ItmControlError(self.code, self.message)


@pytest.mark.parametrize("cmd", ["disable", "enable", "priority"])
@pytest.mark.parametrize("label", ["a" * 45, "", "\u00e9" * 16])
def test_a_label_itm_mod_cannot_hold_is_a_usage_error(
    cmd: str, label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [cmd, label] + (["5"] if cmd == "priority" else [])
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "is not an application label (1..31 characters" in capsys.readouterr().err


def test_a_label_in_several_namespaces_says_where_to_run_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        cli,
        "ItmControl",
        lambda: _Refusing(errno.ENOTUNIQ, "the label is used in several namespaces"),
    )
    assert cli.main(["disable", "dup"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "itmtool: disable: the label is used in several namespaces"
    assert (
        err[1]
        == "itmtool: run it in the application's namespace: `ip netns exec NS itmtool disable ...`"
    )


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        (
            "the application serves every namespace: change it from the initial network namespace",
            "itmtool: run it in the initial namespace (without `ip netns exec`)",
        ),
        ("Operation not permitted", "itmtool: changes need CAP_NET_ADMIN (run as root)"),
    ],
)
def test_a_refused_change_says_what_to_do(
    message: str, hint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """itm_mod refuses a change of every namespace's application from another
    namespace with EPERM too: root is told where to run it, not to become root."""
    monkeypatch.setattr(cli, "ItmControl", lambda: _Refusing(errno.EPERM, message))
    assert cli.main(["disable", "qos"]) == 4
    assert capsys.readouterr().err.splitlines() == [f"itmtool: disable: {message}", hint]
