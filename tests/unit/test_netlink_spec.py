"""The netlink protocol has one source of truth: spec/itm.yaml."""

from __future__ import annotations

import re

from itmtool import nlgen
from libitm.control import itm_spec


def test_generated_files_are_up_to_date() -> None:
    assert nlgen.main(["--check"]) == 0, "run `make gen` and commit the result"


def test_c_header_and_python_agree_on_every_number() -> None:
    header = (nlgen.ROOT / "kernel/include/uapi/linux/itm_netlink.h").read_text()
    # walk the C enums and compare each value with the Python constant
    for body in re.findall(r"enum \{(.*?)\};", header, re.S):
        names = [n.strip() for n in body.split(",") if n.strip() and "=" not in n]
        names = [n for n in names if not n.startswith("__")]
        for value, name in enumerate(names):
            if hasattr(itm_spec, name):
                assert getattr(itm_spec, name) == value, name
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
