"""`itmtool new`: a kernel module or a user-space application that works as generated.

``new kernel NAME`` writes a directory with ``NAME.c`` (one application using
itm.h: the five callbacks and a timer, stubbed in with what each is for; it
classifies and counts every packet of its interest), a ``Kbuild`` and a
``Makefile`` that find this checkout's ``kernel/include`` and itm_mod's
``Module.symvers``, and a README.  ``new user NAME`` writes a libitm
application (the five callbacks and a timer), a pytest test that builds a
pcap and runs the application offline, and a README.

Both come from the jinja2 templates in ``templates/new/``.  Every value is
checked before anything is written (`ToolError`, exit 2, one line naming the
value): what the generator writes builds with W=1 and passes its own test.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import importlib.util
import ipaddress
import keyword
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from itmtool import buildmods, resources
from itmtool.errors import EXIT_USAGE, ToolError
from itmtool.matrix import ROOT, Kernel
from libitm.info import LABEL_MAX, PRIORITY_MAX, PRIORITY_MIN, check_label

TEMPLATES = Path(__file__).resolve().parent / "templates" / "new"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

#: --hook values: short names (as itm_test_app) and libitm's names -> (C enum, libitm name)
HOOKS = {
    "pre": ("ITM_PRE_ROUTING", "PRE_ROUTING"),
    "in": ("ITM_IP_IN", "IP_IN"),
    "fwd": ("ITM_IP_FORWARD", "IP_FORWARD"),
    "out": ("ITM_IP_OUT", "IP_OUT"),
    "post": ("ITM_POST_ROUTING", "POST_ROUTING"),
}
_HOOK_ALIASES = {
    "pre_routing": "pre",
    "prerouting": "pre",
    "ip_in": "in",
    "input": "in",
    "ip_forward": "fwd",
    "forward": "fwd",
    "ip_out": "out",
    "output": "out",
    "post_routing": "post",
    "postrouting": "post",
    "pre_route": "pre",  # the paper's names (ip_in, ip_forward, ip_out are above)
    "ip_post_route": "post",
}
_PROTOS = {
    "tcp": 6,
    "udp": 17,
    "icmp": 1,
    "icmpv6": 58,
    "sctp": 132,
    "udplite": 136,
    "dccp": 33,
}
_PROTO_ALIASES = {"icmp6": "icmpv6", "ipv6-icmp": "icmpv6"}
#: the protocols with ports (itm_proto_has_ports() in kernel/itm_mod/hooks.c)
_PORT_PROTOS = {6, 17, 132, 136, 33}
#: the protocols whose ports libitm's Packet reads (sport/dport are None for the others)
_LIBITM_PORT_PROTOS = {6, 17}
_PORTS = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")
_NUMBER = re.compile(r"^[0-9]{1,3}$")
_INTEREST_KEYS = ("family", "proto", "src", "dst", "sport", "dport")

#: the `timer_ms` module parameter is an unsigned int (0: no timer)
TIMER_MS_MAX = 2**32 - 1


def _usage(message: str) -> ToolError:
    """A one-line usage error (exit 2): the message names the value and what is allowed."""
    return ToolError(message, code=EXIT_USAGE)


def hook_key(value: str) -> str:
    """Normalise a --hook value to pre|in|fwd|out|post (exit 2 when unknown)."""
    v = value.lower()
    v = _HOOK_ALIASES.get(v, v)
    if v not in HOOKS:
        raise _usage(
            f"bad --hook {value!r}: hooks: pre, in, fwd, out, post "
            "(or pre_routing, ip_in, ip_forward, ip_out, post_routing)"
        )
    return v


@dataclass
class InterestSpec:
    """Which packets the generated application wants (the `--interest` options)."""

    family: int = 0  # 0, 4 or 6
    protocol: int = 0
    src: str | None = None  # network, e.g. 10.0.0.0/8
    dst: str | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None

    def describe(self) -> str:
        """A short reading, e.g. 'ipv4 udp dport 5000'."""
        parts = []
        if self.family:
            parts.append(f"ipv{self.family}")
        if self.protocol:
            names = {v: k for k, v in _PROTOS.items()}
            parts.append(names.get(self.protocol, f"protocol {self.protocol}"))
        for key in ("src", "dst"):
            if getattr(self, key):
                parts.append(f"{key} {getattr(self, key)}")
        for key in ("sport", "dport"):
            rng = getattr(self, key)
            if rng:
                parts.append(f"{key} {rng[0]}" if rng[0] == rng[1] else f"{key} {rng[0]}-{rng[1]}")
        return " ".join(parts) or "every packet"

    def c_fields(self) -> list[str]:
        """Designated initialisers of `struct itm_interest` (inside `.interest = {}`)."""
        out = []
        if self.family:
            out.append(f".family = {'AF_INET' if self.family == 4 else 'AF_INET6'},")
        if self.protocol:
            names = {v: k for k, v in _PROTOS.items()}
            name = names.get(self.protocol)
            out.append(f".protocol = {'IPPROTO_' + name.upper() if name else self.protocol},")
        for key, addr, mask in (("src", "saddr", "smask"), ("dst", "daddr", "dmask")):
            net = getattr(self, key)
            if net:
                n = ipaddress.ip_network(net)
                out += _c_array(f".{addr}.s6_addr", n.network_address.packed)
                out += _c_array(f".{mask}.s6_addr", n.netmask.packed)
        for key in ("sport", "dport"):
            rng = getattr(self, key)
            if rng:
                out.append(f".{key}_min = {rng[0]},")
                out.append(f".{key}_max = {rng[1]},")
        return out

    def py_args(self) -> str:
        """Keyword arguments of `libitm.Interest(...)`."""
        args = []
        if self.family:
            args.append(f"family={self.family}")
        if self.protocol:
            names = {v: k for k, v in _PROTOS.items()}
            name = names.get(self.protocol)
            args.append(f'protocol="{name}"' if name else f"protocol={self.protocol}")
        for key in ("src", "dst"):
            if getattr(self, key):
                args.append(f'{key}="{getattr(self, key)}"')
        for key in ("sport", "dport"):
            rng = getattr(self, key)
            if rng:
                args.append(f"{key}=({rng[0]}, {rng[1]})")
        return ", ".join(args)


def _bytes(raw: bytes) -> str:
    return ", ".join(f"0x{b:02x}" for b in raw)


def _c_array(lhs: str, raw: bytes) -> list[str]:
    """`lhs = { bytes },` on one line, or over three for 16 bytes (line length)."""
    if len(raw) <= 4:
        return [f"{lhs} = {{ {_bytes(raw)} }},"]
    return [f"{lhs} = {{", f"\t{_bytes(raw[:8])},", f"\t{_bytes(raw[8:])}", "},"]


def _ports(key: str, value: str) -> tuple[int, int]:
    """`P` or `LO-HI` (decimal, 1..65535, LO <= HI) of the interest key `key`."""
    m = _PORTS.match(value)
    if not m:
        raise _usage(f"bad --interest {key}={value}: a port 1..65535 or a range LO-HI")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    for port in (lo, hi):
        if not 1 <= port <= 65535:
            raise _usage(f"bad --interest {key}={value}: port {port} is not in 1..65535")
    if lo > hi:
        raise _usage(f"bad --interest {key}={value}: the range is empty ({lo} > {hi})")
    return lo, hi


def _protocol(value: str) -> int:
    """A protocol name (tcp, udp, ...) or number 1..255."""
    v = value.lower()
    v = _PROTO_ALIASES.get(v, v)
    if v in _PROTOS:
        return _PROTOS[v]
    if _NUMBER.match(v) and 1 <= int(v) <= 255:
        return int(v)
    raise _usage(f"bad --interest proto={value}: one of {', '.join(_PROTOS)} or a number 1..255")


def _network(key: str, value: str) -> str:
    """An address or network (`10.0.0.0/8`, `fd00::/64`): host bits are masked off."""
    if "%" in value or value != value.strip():
        raise _usage(f"bad --interest {key}={value}: an address[/prefix] without a zone")
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise _usage(f"bad --interest {key}={value}: an IPv4 or IPv6 address[/prefix]") from None


def parse_interest(items: list[str]) -> InterestSpec:
    """Parse `--interest KEY=VALUE[,KEY=VALUE...]` (repeatable) into an `InterestSpec`.

    Keys: family (4|6), proto (tcp|udp|icmp|icmpv6|sctp|udplite|dccp|number), src and
    dst (address[/prefix]), sport and dport (port or lo-hi, with a protocol that has
    ports). Each key at most once; family, addresses and protocol must agree
    (``icmp`` with IPv6 is ICMPv6, as in libitm). Any bad value: `ToolError`, exit 2.
    """
    spec = InterestSpec()
    seen: dict[str, str] = {}
    pairs = [kv.strip() for item in items for kv in item.split(",") if kv.strip()]
    for kv in pairs:
        key, sep, value = kv.partition("=")
        key = {"protocol": "proto"}.get(key.strip(), key.strip())
        if not sep or not value:
            raise _usage(f"bad --interest {kv}: expected key=value")
        if key not in _INTEREST_KEYS:
            raise _usage(
                f"bad --interest {kv}: unknown key {key!r} (keys: {', '.join(_INTEREST_KEYS)})"
            )
        if key in seen:
            raise _usage(f"bad --interest {kv}: {key} given twice ({key}={seen[key]} before)")
        seen[key] = value
        if key == "family":
            if value.lower() not in ("4", "6", "ipv4", "ipv6"):
                raise _usage(f"bad --interest family={value}: 4 or 6")
            spec.family = int(value[-1])
        elif key == "proto":
            spec.protocol = _protocol(value)
        elif key in ("src", "dst"):
            setattr(spec, key, _network(key, value))
        else:
            setattr(spec, key, _ports(key, value))
    versions = {ipaddress.ip_network(n).version for n in (spec.src, spec.dst) if n}
    if len(versions) > 1:
        raise _usage(
            f"bad --interest src={spec.src} and dst={spec.dst} are of different address families"
        )
    if versions:
        (v,) = versions
        if spec.family and spec.family != v:
            addr = (
                spec.src if spec.src and ipaddress.ip_network(spec.src).version == v else spec.dst
            )
            raise _usage(f"bad --interest family={spec.family} with an IPv{v} address ({addr})")
        spec.family = v
    if spec.protocol == 58:
        if spec.family == 4:
            raise _usage(
                f"bad --interest proto={seen['proto']} with IPv4: ICMPv6 exists only in IPv6"
            )
        spec.family = 6
    elif spec.protocol == 1 and spec.family == 6:
        spec.protocol = 58  # libitm's reading, and what itm_mod sees in IPv6 packets
    if (spec.sport or spec.dport) and spec.protocol not in _PORT_PROTOS:
        ports = ", ".join(f"{k}={seen[k]}" for k in ("sport", "dport") if k in seen)
        what = f"proto={seen['proto']}" if "proto" in seen else "no proto"
        raise _usage(
            f"bad --interest {ports} with {what}: ports need proto=tcp, udp, sctp, udplite or dccp"
        )
    return spec


@dataclass
class AppSpec:
    """What `itmtool new` generates."""

    name: str
    hook: str = "post"  # pre|in|fwd|out|post
    interest: InterestSpec = field(default_factory=InterestSpec)
    priority: int = 0
    timer_ms: int = 1000
    label: str = ""

    def __post_init__(self) -> None:
        """Check every value (exit 2, one line naming it): the name for both kinds
        (`check_kind` adds what only one kind refuses), hook, label, priority, timer."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise _usage(
                f"bad name {self.name!r}: 1-31 lower-case letters, digits and '_', "
                "starting with a letter (the module or file name, C prefix and label)"
            )
        self.hook = hook_key(self.hook)
        self.label = self.label or self.name
        try:
            check_label(self.label)
        except ValueError:
            raise _usage(
                f"bad --label {self.label!r}: 1..{LABEL_MAX} letters, digits, '_', '.', '-', "
                "starting with a letter or digit"
            ) from None
        if (
            not isinstance(self.priority, int)
            or isinstance(self.priority, bool)
            or not PRIORITY_MIN <= self.priority <= PRIORITY_MAX
        ):
            raise _usage(
                f"bad --priority {self.priority!r}: an integer {PRIORITY_MIN}..{PRIORITY_MAX} "
                "(struct itm_info.priority is an s32)"
            )
        if (
            not isinstance(self.timer_ms, int)
            or isinstance(self.timer_ms, bool)
            or not 0 <= self.timer_ms <= TIMER_MS_MAX
        ):
            raise _usage(
                f"bad --timer-ms {self.timer_ms!r}: 0 (no timer) or 1..{TIMER_MS_MAX} milliseconds"
            )

    def check_kind(self, kind: str) -> None:
        """Refuse a name that breaks what `kind` (kernel or user) generates (exit 2).

        kernel: the name of one of itmBench's modules or of a module of an installed
        kernel, or a name whose C identifiers (NAME_init, NAME_class, ...) are
        already names in the kernel headers. user: a Python keyword or builtin, the
        name of a module the application, its test or its tools import (it would
        shadow it), a name pytest would collect as a test module; and ports with a
        protocol whose ports libitm does not read. What the rendered Python itself
        shows (syntax, clashes, line length) is checked by `_check_python`.
        """
        name = self.name
        if kind == "kernel":
            if name in OWN_MODULES:
                raise _usage(f"bad name {name!r}: itmBench's own module {name} has that name")
            release = installed_kernel_modules().get(name)
            if release:
                raise _usage(f"bad name {name!r}: a module of Linux {release} has that name")
            for ident in c_identifiers(name):
                if ident in KERNEL_HEADER_NAMES:
                    raise _usage(
                        f"bad name {name!r}: the generated C would define {ident}, "
                        "a name in the kernel headers"
                    )
        elif kind == "user":
            if keyword.iskeyword(name):
                raise _usage(f"bad name {name!r}: a Python keyword cannot name a module")
            if name in dir(builtins):
                raise _usage(
                    f"bad name {name!r}: the generated test imports it, which would hide "
                    f"the Python builtin {name}"
                )
            if name in PY_RESERVED or name in sys.stdlib_module_names or _importable(name):
                raise _usage(
                    f"bad name {name!r}: {name}.py would shadow the Python module {name} "
                    "(imported by the application, its test or their tools)"
                )
            it = self.interest
            if (it.sport or it.dport) and it.protocol not in _LIBITM_PORT_PROTOS:
                raise _usage(
                    f"bad --interest for a user application: {it.describe()}: libitm reads "
                    "the ports of tcp and udp packets only"
                )
            if name.startswith("test_") or name.endswith("_test"):
                raise _usage(f"bad name {name!r}: pytest would collect {name}.py as a test module")
        else:
            raise _usage(f"unknown kind {kind!r}: kernel or user")

    def context(self, root: Path = ROOT) -> dict[str, Any]:
        """The variables the templates see."""
        c_hook, py_hook = HOOKS[self.hook]
        return {
            "name": self.name,
            "label": self.label,
            "hook": self.hook,
            "c_hook": c_hook,
            "py_hook": py_hook,
            "interest_doc": self.interest.describe(),
            "interest_c": self.interest.c_fields(),
            "interest_py": self.interest.py_args(),
            "priority": self.priority,
            "timer_ms": self.timer_ms,
            "itm_root": str(root),
            "itm_include": str(root / "kernel" / "include"),
            # where `itmtool build` puts itm_mod's Module.symvers (in the tree: its build/)
            "itm_build": (
                "$(ITM_ROOT)/build"
                if root / "build" == buildmods.BUILD_ROOT
                else str(buildmods.BUILD_ROOT)
            ),
            "class_name": "".join(w.capitalize() for w in self.name.split("_") if w) or "App",
            **self._packet_context(),
        }

    def _packet_context(self) -> dict[str, Any]:
        """What the generated user test needs to build packets of interest."""
        it = self.interest
        family = it.family or (6 if it.protocol == 58 else 4)
        proto = it.protocol or 17
        if proto == 1 and family == 6:
            proto = 58
        other = 0
        if it.protocol:
            other = 17 if proto != 17 else 6

        def host(net: str | None, n: int) -> str:
            if not net:
                return f"10.0.0.{n}" if family == 4 else f"fd00::{n}"
            network = ipaddress.ip_network(net)
            return str(network.network_address + (1 if network.num_addresses > 2 else 0))

        return {
            "family": family,
            "packet_protocol": proto,
            "other_protocol": other,
            "packet_src": host(it.src, 1),
            "packet_dst": host(it.dst, 2),
            "dport": it.dport[0] if it.dport else 5000,
            "sport": it.sport[0] if it.sport else 40000,
        }


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["col"] = lambda n: "\t" * (n // 8) + " " * (n % 8)
    return env


def _render(kind: str, spec: AppSpec, dest: Path, force: bool, root: Path) -> list[Path]:
    """Check, render every template in memory, then write: nothing is written on error."""
    spec.check_kind(kind)
    if dest.exists() and not dest.is_dir():
        raise _usage(f"bad --dir {str(dest)!r}: it is a file, not a directory")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ToolError(f"{dest} exists and is not empty", hint="choose another --dir, or --force")
    env = _env()
    ctx = spec.context(root)
    texts: dict[str, str] = {}
    for tpl in sorted((TEMPLATES / kind).glob("*.j2")):
        out_name = tpl.name[: -len(".j2")].replace("NAME", spec.name)
        texts[out_name] = env.get_template(f"{kind}/{tpl.name}").render(**ctx)
    if kind == "user":
        _check_python(spec, texts)
    written: list[Path] = []
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for out_name, text in texts.items():
            path = dest / out_name
            path.write_text(text)
            written.append(path)
    except BaseException:
        # a half-written application is worse than none (an interrupt, a full disk)
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                dest.rmdir()
        raise  # itmtool reports an OSError as one line with its path and exit code
    return written


#: the line length of the generated pyproject.toml's ruff settings
PY_LINE_MAX = 100


def _check_python(spec: AppSpec, texts: dict[str, str]) -> None:
    """Refuse values that make the generated Python invalid: a syntax error, a line
    longer than its ruff settings allow, a module-level name bound twice (the
    app's class shadowing an import, the test's ``import NAME`` shadowed by one of
    its functions), or a function where a local variable NAME hides the imported
    module NAME (``app = app.App()``)."""
    bound_in_app: list[str] = []
    for out_name, text in sorted(texts.items(), key=lambda kv: kv[0] != f"{spec.name}.py"):
        if not out_name.endswith(".py"):
            continue
        try:
            tree = ast.parse(text, out_name)
        except SyntaxError as e:
            line = (e.text or "").strip()
            raise _usage(
                f"bad name {spec.name!r}: the generated {out_name} would not compile ({line})"
            ) from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if len(line) > PY_LINE_MAX:
                by_label = spec.label != spec.name and spec.label in line
                what = f"--label {spec.label!r}" if by_label else f"name {spec.name!r}"
                raise _usage(
                    f"bad {what}: line {lineno} of the generated {out_name} would be longer "
                    f"than {PY_LINE_MAX} characters"
                )
        bound: set[str] = set()
        for node in tree.body:
            for new_name in _bound_names(node):
                if new_name in bound:
                    raise _usage(
                        f"bad name {spec.name!r}: {new_name} would be defined twice "
                        f"in the generated {out_name}"
                    )
                bound.add(new_name)
        if out_name == f"{spec.name}.py":
            bound_in_app = sorted(bound)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in _AMBIGUOUS:
                raise _usage(
                    f"bad name {spec.name!r}: class {node.name} in the generated {out_name} "
                    "is an ambiguous name (ruff E742)"
                )
        imports_app = any(
            isinstance(node, ast.Import) and any(a.name == spec.name for a in node.names)
            for node in tree.body
        )
        if not imports_app:
            continue
        app_names = set(bound_in_app)
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef) and _hides(
                func, spec.name, app_names
            ):
                raise _usage(
                    f"bad name {spec.name!r}: in the generated {out_name}, {func.name}() "
                    f"uses the module {spec.name} and a variable of that name"
                )


#: names that ruff (E741/E742) refuses for classes: they look like 1 and 0
_AMBIGUOUS = {"l", "O", "I"}


def _hides(func: ast.FunctionDef | ast.AsyncFunctionDef, name: str, app_names: set[str]) -> bool:
    """True when `func` binds `name` locally and also reads ``name.X`` for a name X
    of the generated application module: the local hides the module there."""
    binds = uses_module = False
    for node in ast.walk(func):
        if isinstance(node, ast.arg) and node.arg == name:
            binds = True
        elif isinstance(node, ast.Name) and node.id == name:
            binds = binds or isinstance(node.ctx, ast.Store)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == name
            and node.attr in app_names
        ):
            uses_module = True
    return binds and uses_module


def _bound_names(node: ast.stmt) -> list[str]:
    """The module-level names one statement binds (imports, defs, classes, assignments)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def render_kernel(
    spec: AppSpec, dest: Path, *, force: bool = False, root: Path = ROOT
) -> list[Path]:
    """Write a kernel module directory for `spec` into `dest`; returns the files."""
    return _render("kernel", spec, dest, force, resources.require_sources(root))


def render_user(spec: AppSpec, dest: Path, *, force: bool = False, root: Path = ROOT) -> list[Path]:
    """Write a libitm application (and its test) for `spec` into `dest`; returns the files."""
    return _render("user", spec, dest, force, root)


#: the modules of this tree (obj-m in kernel/*/Kbuild): a generated module must not take
#: their names (tests/unit/test_itmtool_new.py checks the list against the tree)
OWN_MODULES = frozenset(
    {
        "itm_mod",
        "itm_queue",
        "qos_mod",
        "itm_test_app",
        "itm_bench_drive",
        "itm_bench_nf",
        "itm_bench_apps",
        "itm_bench_qosnf",
        "paper_qos",
        "sch_rio",
        "itm_route",
    }
)

#: Python modules a generated application must not shadow besides the standard library
#: and whatever is importable here (its test may run where they are not installed)
PY_RESERVED = frozenset(
    {"libitm", "itmtool", "itmroute", "pytest", "_pytest", "pyroute2", "yaml", "conftest"}
)


def _importable(name: str) -> bool:
    """True when `name` is a module or regular package importable here."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


@functools.cache
def installed_kernel_modules(base: Path = Path("/lib/modules")) -> dict[str, str]:
    """Module name -> release, over the kernels installed in `base` (modules.order and
    modules.builtin; '-' read as '_' as modprobe does)."""
    names: dict[str, str] = {}
    for release_dir in sorted(base.glob("*")):
        for listing in ("modules.order", "modules.builtin"):
            try:
                lines = (release_dir / listing).read_text().split()
            except OSError:
                continue
            for line in lines:
                mod = line.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")
                names.setdefault(mod, release_dir.name)
    return names


@functools.cache
def _c_suffixes() -> tuple[str, ...]:
    """The suffixes of the file-scope C names the kernel template derives from NAME."""
    probe = "zzitmprobe"
    text = _env().get_template("kernel/NAME.c.j2").render(**AppSpec(probe).context())
    return tuple(sorted(set(re.findall(rf"\b{probe}(_\w+)", text))))


def c_identifiers(name: str) -> list[str]:
    """The C names (``NAME_init``, ``NAME_class``, ``struct NAME_app`` ...) generated for `name`."""
    return [name + suffix for suffix in _c_suffixes()]


def core_symvers(kernel: Kernel) -> Path:
    """itm_mod's Module.symvers for `kernel` (built with buildmods when missing)."""
    symvers = buildmods.BUILD_ROOT / kernel.release / "src" / "Module.symvers"
    if not symvers.exists() or "itm_register_hook" not in symvers.read_text():
        res = buildmods.build(kernel)
        if res.returncode != 0:
            raise ToolError(
                f"itm_mod does not build for {kernel.release}",
                hint="\n".join(res.diagnostics[-10:]),
            )
    return symvers


def build_module(
    kernel: Kernel, moddir: Path, *, sparse: bool = False, symvers: Path | None = None
) -> buildmods.BuildResult:
    """Build a generated module directory for `kernel` with W=1 (and sparse when asked).

    itm_mod's Module.symvers is copied next to the sources first (so a rebuild of
    build/<release>/src at the same moment cannot pull it away) and passed as
    KBUILD_EXTRA_SYMBOLS.
    """
    symvers = symvers or core_symvers(kernel)
    local = moddir / "itm_mod.symvers"
    shutil.copy2(symvers, local)
    cmd = [
        "make",
        "-C",
        str(kernel.build_dir),
        *kernel.make_args,
        f"M={moddir}",
        "W=1",
        f"KBUILD_EXTRA_SYMBOLS={local}",
    ]
    if sparse:
        cmd += ["C=2", "CHECK=sparse"]
    cmd.append("modules")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return buildmods.BuildResult(kernel.release, moddir, proc.stdout + proc.stderr, proc.returncode)


#: the skeletons the VM tier loads: a few hook/interest combinations
EXAMPLES = (
    AppSpec("gen_fwd_udp", "fwd", parse_interest(["proto=udp,dport=5000"]), priority=5),
    AppSpec("gen_post_tcp", "post", parse_interest(["family=4,proto=tcp,dst=10.77.2.0/24"])),
    AppSpec("gen_in_icmp", "in", parse_interest(["proto=icmp"]), timer_ms=100),
    AppSpec("gen_pre_v6", "pre", parse_interest(["family=6,proto=udp,sport=1-65535"])),
)


def examples_dir(kernel: Kernel) -> Path:
    """Where `build_examples` puts the skeletons for `kernel`."""
    return buildmods.BUILD_ROOT / kernel.release / "generated"


def build_examples(
    kernel: Kernel, dest: Path | None = None, *, symvers: Path | None = None, sparse: bool = False
) -> list[buildmods.BuildResult]:
    """Generate every skeleton of `EXAMPLES` and build it for `kernel` with W=1 (and sparse).

    Into `dest`/<name>/ (default build/<release>/generated/) against `symvers`
    (default: build/<release>/src/Module.symvers, built when missing).
    tests/vm/guest.py calls this with the ``generated`` directory next to the
    run's ITM_MODDIR, where tests/kernel/test_generated_modules.py looks.
    """
    base = dest or examples_dir(kernel)
    shutil.rmtree(base, ignore_errors=True)
    symvers = symvers or core_symvers(kernel)
    results = []
    for spec in EXAMPLES:
        render_kernel(spec, base / spec.name)
        results.append(build_module(kernel, base / spec.name, symvers=symvers, sparse=sparse))
    return results


#: names in the kernel headers of the matrix kernels (6.1, 6.12, the debug kernel) that
#: a generated module would define with its name as prefix (macros, functions, struct
#: tags): `new kernel` refuses a name whose C names land on one (module -> module_init).
#: tests/host/test_itmtool_new_c_names.py recomputes them from the installed headers.
_KERNEL_HEADER_NAMES_TEXT = """
    access_coordinate_class account_hardirq_exit account_process_tick account_softirq_exit
    alarm_init arch_cpu_finalize_init arch_cpu_idle_exit arch_early_irq_init arch_nmi_exit
    arch_scale_freq_tick arch_task_cache_init arch_tick_broadcast_exit assoc_array_init
    atime_needs_update bio_init bio_list_init bio_list_merge_init bioset_exit bioset_init
    boot_cpu_hotplug_init boot_cpu_init bpf_arch_poke_desc_update bpf_dynptr_init
    bpf_image_ksym_init bpf_link_init bpf_obj_init bpf_percpu_array_update
    bpf_percpu_hash_update bpf_prog_dev_bound_init bpf_struct_ops_desc_init
    bpf_trampoline_exit bpf_verifier_log btf_field_iter_init call_function_init
    capture_control cc_random_init cee_attrs_app cgroup_exit cgroup_init class_dev_iter_exit
    class_dev_iter_init copy_process cpu_init cpufreq_this_cpu_can_update cpuhp_smt_control
    cr4_init cred_init ct_irq_exit ct_nmi_exit dcb_app debug_object_assert_init
    debug_object_init debug_objects_early_init debug_objects_mem_init dentry_d_lock_class
    dev_mc_init dev_uc_init device_lock_reset_class device_lock_set_class devm_mutex_init
    do_exit do_group_exit dql_init driver_init dst_entries_init early_cpu_init
    early_ioremap_init early_irq_init early_security_init elf_common_init file_ra_state_init
    files_init files_maxfiles_init flow_dissector_key_control folio_batch_init
    for_each_process fork_init fprop_global_init fqdir_exit fqdir_init fqdir_pre_exit
    free_area_init ftrace_likely_update ftrace_nmi_exit fwnode_init hash_init
    hlist_bl_del_init hlist_del_init hlist_splice_init hrtimer_init hrtimers_init
    i_gid_needs_update i_gid_update i_size_ordered_init i_uid_needs_update i_uid_update
    ida_init idr_init ieee_attrs_app inet_frags_init initmem_init inode_i_mutex_lock_class
    inode_init io_delay_init iov_iter_init irq_exit is_global_init is_kernel_ro_after_init
    itm_app jump_entry_is_init jump_entry_set_init jump_label_init kasan_has_integrated_init
    kcsan_init kernel_pte_init kernfs_init key_create_or_update key_init key_update
    kick_process klist_init klist_iter_exit klist_iter_init kmem_cache_init kmsan_task_exit
    kobject_init kref_init kset_init kthread_complete_and_exit kthread_exit
    legacy_timer_tick list_del_init list_lru_init list_replace_init list_splice_init
    list_splice_tail_init llist_del_first_init local_lock_debug_init local_lock_init
    lock_set_class lock_set_novalidate_class lockdep_hardirq_exit lockdep_hrtimer_exit
    lockdep_init lockdep_irq_work_exit lockdep_posixtimer_exit lockdep_set_class
    lockdep_set_notrack_class lockdep_set_novalidate_class lockdep_softirq_exit
    lockdep_sys_exit lruvec_init maple_tree_init mas_init mem_encrypt_init mem_init
    mempool_exit mempool_init mm_cache_init mm_core_init mm_lock_seqcount_init mm_pasid_init
    mm_pgtables_bytes_init mmap_init mmu_notifier_range_init mmu_notifier_subscriptions_init
    mod_mem_type_is_init module_exit module_init module_put_and_kthread_exit mt_init
    mutex_init native_pagetable_init native_pv_lock_init net_ns_init net_sysctl_init
    netdev_notifier_info_init netfilter_init netif_msg_init netif_trans_update
    netlink_dump_control nf_hook_state_init nmi_exit node_dev_init nsproxy_cache_init
    oops_exit osq_lock_init page_address_init page_alloc_init page_counter_init
    page_ext_init pagecache_init paging_init path_put_init percpu_counter_init
    percpu_ref_exit percpu_ref_init pgdat_kswapd_lock_init pgdat_page_ext_init
    pgdat_resize_init pgtable_cache_init pgtable_init plist_head_init plist_node_init
    pmd_init pmd_ptlock_init poking_init posix_cpu_timers_exit posix_cputimers_group_init
    posix_cputimers_init preempt_notifier_init printk_deferred_exit proc_caches_init
    ptdesc_pmd_pts_init pti_init ptlock_cache_init ptlock_init ptr_ring_init pud_init
    radix_tree_init radix_tree_iter_init random_init ratelimit_default_init
    ratelimit_state_exit ratelimit_state_init raw_spin_lock_init rcu_head_init rcu_init
    rcu_irq_enter_check_tick rcu_sync_exit rcu_sync_init rcuwait_init readahead_control
    ref_tracker_dir_exit ref_tracker_dir_init register_sysctl_init rhashtable_init
    rhltable_init rwlock_init sched_class sched_clock_init sched_clock_tick sched_tick
    scheduler_tick scoped_class security_audit_rule_init security_init
    security_key_post_create_or_update sema_init seq_file_init seqcount_init
    seqcount_latch_init seqcount_mutex_init seqcount_raw_spinlock_init seqcount_rwlock_init
    seqcount_spinlock_init seqlock_init shrink_control signals_init simple_offset_init
    skb_checksum_init skb_flow_dissector_init skb_frag_list_init skb_headers_offset_update
    skb_init skb_list_del_init skb_queue_head_init skb_queue_head_init_class
    skb_queue_splice_init skb_queue_splice_tail_init skb_remcsum_process skb_zcopy_init
    sme_early_init smp_init softirq_init sparse_init spin_lock_init srcu_init
    stack_depot_early_init stack_depot_init stack_depot_request_early_init
    stack_depot_want_early_init static_call_init static_call_mod_init static_call_update
    subsection_map_init subsys_dev_iter_exit subsys_dev_iter_init syscall_init
    sysfs_attr_init sysfs_bin_attr_init sysfs_init tasklet_init thread_stack_cache_init
    time_init timekeeping_init timerqueue_init topology_scale_freq_tick trap_init
    tsc_early_init tsc_init txq_trans_cond_update txq_trans_update u64_stats_init
    uids_sysfs_init uprobe_copy_process uprobes_init validate_creds_for_do_exit
    vfs_caches_init vm_flags_init vma_init vma_iter_init vma_numab_state_init vmalloc_init
    vmpressure_init vtime_account_guest_exit vtime_guest_exit vtime_user_exit wait_bit_init
    wake_up_process wb_domain_exit wb_domain_init within_module_init workqueue_init
    writeback_control x86_hyper_init x86_idle_thread_init xa_init xas_set_update
    xdp_frame_bulk_init zone_device_page_init zone_seqlock_init zswap_lruvec_state_init
    kasan_early_init kasan_init lock_class lockdep_match_class
"""
KERNEL_HEADER_NAMES = frozenset(_KERNEL_HEADER_NAMES_TEXT.split())
