"""An Interest refuses the wrong types with a message naming the field."""

from __future__ import annotations

import pytest

from libitm import Interest


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dport": "80"}, r"interest dport must be a port \(an int\) or a \(lo, hi\) range"),
        ({"sport": "80-90"}, "interest sport must be a port"),
        ({"dport": {1, 8}}, "interest dport must be a port"),
        ({"dport": frozenset({80})}, "interest dport must be a port"),
        ({"dport": (1, 2, 3)}, "interest dport must be a port"),
        ({"dport": 80.0}, "interest dport must be a port"),
        ({"sport": ("80", "90")}, "interest sport port '80' is not an int"),
        ({"dport": (1, True)}, "interest dport port True is not an int"),
        ({"protocol": "²"}, "interest protocol '²' is an unknown protocol"),
        ({"protocol": "٦"}, "interest protocol '٦' is an unknown protocol"),
        ({"protocol": 6.0}, "interest protocol must be a number or a name, not 6.0"),
        ({"family": 4.0}, "interest family must be 4, 6 or None, not 4.0"),
        ({"family": 6.0}, "interest family must be"),
        ({"family": True}, "interest family must be"),
        ({"family": "4"}, "interest family must be"),
    ],
)
def test_wrong_types_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Interest(**kwargs)  # type: ignore[arg-type]


def test_what_is_still_accepted() -> None:
    assert Interest(dport=[80, 90]).dport == (80, 90)  # type: ignore[arg-type]
    assert Interest(dport=(80, 80)).dport == (80, 80)
    assert Interest(sport=0, dport=65535).sport == (0, 0)
    assert Interest(protocol="17").protocol == 17
    assert Interest(protocol=" TCP ").protocol == 6
    assert Interest(family=4).family == 4 and Interest(family=6).family == 6
    with pytest.raises(ValueError, match="lo > hi"):
        Interest(dport=(90, 80))
