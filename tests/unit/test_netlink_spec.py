"""The netlink protocol has one source of truth: spec/itm.yaml."""

from __future__ import annotations

import re

import pytest

from itmtool import nlgen
from libitm.control import itm_spec


def test_generated_files_are_up_to_date() -> None:
    assert nlgen.main(["--check"]) == 0, "run `make gen` and commit the result"


def test_c_header_and_python_agree_on_every_number() -> None:
    header = (nlgen.ROOT / "kernel/include/uapi/linux/itm_netlink.h").read_text()
    # walk the C enums and compare each value with the Python constant
    for body in re.findall(r"enum \{(.*?)\};", header, re.S):
        items = [n.strip() for n in re.sub(r"/\*.*?\*/", "", body, flags=re.S).split(",")]
        value = 0
        for item in items:
            if not item or item.startswith("__"):
                continue
            name, _, given = (p.strip() for p in item.partition("="))
            if given:
                if not given.isdigit():
                    continue  # XXX_MAX = (__XXX_MAX - 1)
                value = int(given)
            if hasattr(itm_spec, name):
                assert getattr(itm_spec, name) == value, name
            value += 1
    assert f'"{itm_spec.FAMILY_NAME}"' in header
    assert f"ITM_LABEL_MAX\t{itm_spec.ITM_LABEL_MAX}" in header


def test_python_message_class_follows_the_spec() -> None:
    ctx = nlgen.load(nlgen.ROOT / "spec/itm.yaml")
    top = next(s for s in ctx["sets"] if s.name == "itm")
    names = [n for n, _ in itm_spec.itmmsg.nla_map]
    assert names == [f"{top.prefix}_UNSPEC"] + [a.cname for a in top.attrs]
    stats = next(s for s in ctx["sets"] if s.name == "stats")
    assert [n for n, _ in itm_spec.stats.nla_map][1:] == [a.cname for a in stats.attrs]
    assert all(
        t == "uint64" for n, t in itm_spec.stats.nla_map if not n.endswith(("PAD", "UNSPEC"))
    )


def test_kernel_policy_covers_every_request_attribute() -> None:
    """Every attribute a command takes has an entry in itm_mod's strict policy."""
    source = (nlgen.ROOT / "kernel/itm_mod/netlink.c").read_text()
    policy = re.search(r"itm_policy\[ITM_A_MAX \+ 1\] = \{(.*?)\};", source, re.S)
    assert policy
    ctx = nlgen.load(nlgen.ROOT / "spec/itm.yaml")
    top = next(s for s in ctx["sets"] if s.name == "itm")
    by_name = {a.name: a.cname for a in top.attrs}
    for op in ctx["spec"]["operations"]["list"]:
        for attr in op.get("do", {}).get("request", []):
            assert f"[{by_name[attr]}]" in policy.group(1), (op["name"], attr)


def test_verdict_values_are_netfilters() -> None:
    """A paper port's ``return NF_ACCEPT;`` must accept: NF_DROP 0, NF_ACCEPT 1, ..."""
    header = (nlgen.ROOT / "kernel/include/uapi/linux/itm_netlink.h").read_text()
    for name, value in (("DROP", 0), ("ACCEPT", 1), ("STOLEN", 2), ("QUEUE", 3)):
        assert f"ITM_VERDICT_{name} = {value}," in header
        assert getattr(itm_spec, f"ITM_VERDICT_{name}") == value
        assert itm_spec.ITM_VERDICT_NAMES[value] == name.lower()


def test_enum_entries_with_values_must_be_dense() -> None:
    d = {"name": "v", "entries": [{"name": "a", "value": 1}, {"name": "b", "value": 2}]}
    with pytest.raises(ValueError, match=r"values must be 0\.\.1"):
        nlgen.enum_entries("X", d)
    d = {"name": "v", "entries": [{"name": "b", "value": 1}, {"name": "a", "value": 0}]}
    assert nlgen.enum_entries("X", d) == ([("X_V_A", 0), ("X_V_B", 1)], True)
