"""Generate the itm and itm_queue netlink protocol files from their YAML specs.

Each spec (spec/itm.yaml, spec/itm_queue.yaml, in the style of the kernel's
Documentation/netlink/specs) is the single source of truth of its family.  This
module renders, with jinja2 templates:

* the C uapi header included by the kernel modules, and
* the Python module with the constants and pyroute2 message classes.

Run it as ``python -m itmtool.nlgen`` (``make gen``); ``--check`` exits 1 when a
generated file differs from what the spec gives.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from itmtool import resources

#: the checkout whose spec/ and generated files this works on (a wheel has no spec/)
ROOT = resources.checkout() or resources.SOURCE_ROOT
TEMPLATES = Path(__file__).resolve().parent / "templates" / "netlink"

#: spec file -> (template, output path) pairs
TARGETS: dict[str, list[tuple[str, str]]] = {
    "spec/itm.yaml": [
        ("uapi.h.j2", "kernel/include/uapi/linux/itm_netlink.h"),
        ("spec.py.j2", "libitm/control/itm_spec.py"),
    ],
    "spec/itm_queue.yaml": [
        ("uapi.h.j2", "kernel/include/uapi/linux/itm_queue_netlink.h"),
        ("spec.py.j2", "libitm/control/itm_queue_spec.py"),
    ],
    "spec/itm_route.yaml": [
        ("uapi.h.j2", "kernel/include/uapi/linux/itm_route_netlink.h"),
        ("spec.py.j2", "libitm/control/itm_route_spec.py"),
    ],
}

# spec attribute type -> pyroute2 nla type name
_PYROUTE2_TYPES = {
    "u8": "uint8",
    "u16": "uint16",
    "u32": "uint32",
    "u64": "uint64",
    "s32": "int32",
    "string": "asciiz",
    "binary": "cdata",
    "pad": "none",
    "flag": "flag",
}


def cname(*parts: str) -> str:
    """Join spec names into a C identifier: ("itm", "a", "app-label") -> ITM_A_APP_LABEL."""
    return "_".join(p.replace("-", "_") for p in parts if p).upper()


@dataclass
class Attr:
    """One attribute of an attribute set."""

    name: str
    type: str
    cname: str
    doc: str = ""
    nested: str | None = None
    max_len: int | None = None
    length: int | None = None
    max: int | None = None

    @property
    def pytype(self) -> str:
        """The pyroute2 nla type (the nested set's class name for nests)."""
        if self.type == "nest":
            assert self.nested is not None
            return self.nested.replace("-", "_")
        return _PYROUTE2_TYPES[self.type]


@dataclass
class AttrSet:
    """An attribute set: one enum in C, one nla class in Python."""

    name: str
    doc: str
    prefix: str
    attrs: list[Attr] = field(default_factory=list)

    @property
    def pyname(self) -> str:
        """Python identifier of the set."""
        return self.name.replace("-", "_")


def enum_entries(prefix: str, d: dict[str, Any]) -> tuple[list[tuple[str, int]], bool]:
    """The (C name, value) pairs of an enum definition, sorted by value.

    An entry is a name, or ``{name: ..., value: N}`` as in the kernel's
    netlink specs; an entry without a value follows the previous one.  The
    values must be 0..n-1 (the ``*_NAMES`` tuple is indexed by value).  The
    second result says whether any value was given, so that the C enum
    spells the values out.
    """
    pairs: list[tuple[str, int]] = []
    explicit = False
    value = 0
    for e in d["entries"]:
        if isinstance(e, dict):
            if "value" in e:
                value = int(e["value"])
                explicit = True
            e = e["name"]
        pairs.append((cname(prefix, d["name"], e), value))
        value += 1
    pairs.sort(key=lambda p: p[1])
    if [v for _, v in pairs] != list(range(len(pairs))):
        raise ValueError(f"enum {d['name']!r}: values must be 0..{len(pairs) - 1}")
    return pairs, explicit


def load(spec_path: Path) -> dict[str, Any]:
    """Read a spec and return the template context."""
    spec = yaml.safe_load(spec_path.read_text())
    prefix = spec["c-prefix"]
    consts: list[tuple[str, int, str]] = []
    enums: list[tuple[str, str, list[tuple[str, int]], bool]] = []
    for d in spec.get("definitions", []):
        if d["type"] == "const":
            consts.append((cname(prefix, d["name"]), int(d["value"]), d.get("doc", "")))
        elif d["type"] == "enum":
            entries, explicit = enum_entries(prefix, d)
            enums.append((cname(prefix, d["name"]), d.get("doc", ""), entries, explicit))
        else:
            raise ValueError(f"unknown definition type {d['type']!r}")
    sets: list[AttrSet] = []
    for s in spec["attribute-sets"]:
        set_prefix = s.get("name-prefix", cname(prefix, "a", s["name"]) + "_").rstrip("_")
        aset = AttrSet(s["name"], s.get("doc", ""), set_prefix)
        for a in s["attributes"]:
            aset.attrs.append(
                Attr(
                    name=a["name"],
                    type=a["type"],
                    cname=cname(aset.prefix, a["name"]),
                    doc=a.get("doc", ""),
                    nested=a.get("nested-attributes"),
                    max_len=a.get("max-len"),
                    length=a.get("len"),
                    max=a.get("max"),
                )
            )
        sets.append(aset)
    ops = [
        {
            "name": op["name"],
            "cname": cname(prefix, "cmd", op["name"]),
            "doc": op.get("doc", ""),
            "admin": "admin-perm" in op.get("flags", []),
        }
        for op in spec["operations"]["list"]
    ]
    return {
        "spec": spec,
        "source": spec_path.relative_to(ROOT).as_posix(),
        "name": spec["name"],
        "prefix": prefix,
        "guard": cname("_uapi_linux", spec["name"], "netlink_h"),
        "consts": consts,
        "enums": enums,
        "sets": sets,
        "ops": ops,
    }


def render(spec_rel: str) -> dict[str, str]:
    """Render every target of one spec; returns {output path: text}."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    ctx = load(ROOT / spec_rel)
    return {out: env.get_template(tpl).render(**ctx) for tpl, out in TARGETS[spec_rel]}


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every generated file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for spec_rel in TARGETS:
        for out, text in render(spec_rel).items():
            path = ROOT / out
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(out)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        print("out of date (run `make gen`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
