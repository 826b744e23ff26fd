"""`itmtool new`: a kernel module or a user-space application that works as generated.

``new kernel NAME`` writes a directory with ``NAME.c`` (one application using
itm.h: the five callbacks and a timer, stubbed in with what each is for; it
classifies and counts every packet of its interest), a ``Kbuild`` and a
``Makefile`` that find this checkout's ``kernel/include`` and itm_mod's
``Module.symvers``, and a README.  ``new user NAME`` writes a libitm
application (the five callbacks and a timer), a pytest test that builds a
pcap and runs the application offline, and a README.

Both come from the jinja2 templates in ``templates/new/``.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from itmtool import buildmods
from itmtool.errors import EXIT_USAGE, ToolError
from itmtool.matrix import ROOT, Kernel

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
_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136}
_PORT_PROTOS = {6, 17, 132, 136, 33}


def hook_key(value: str) -> str:
    """Normalise a --hook value to pre|in|fwd|out|post (exit 2 when unknown)."""
    v = value.lower()
    v = _HOOK_ALIASES.get(v, v)
    if v not in HOOKS:
        raise ToolError(
            f"unknown hook {value!r}",
            hint="hooks: pre, in, fwd, out, post (or pre_routing, ip_in, ip_forward, ip_out, "
            "post_routing)",
            code=EXIT_USAGE,
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


def _ports(value: str) -> tuple[int, int]:
    lo, _, hi = value.partition("-")
    try:
        rng = (int(lo), int(hi or lo))
    except ValueError:
        raise ToolError(f"bad port range {value!r}", code=EXIT_USAGE) from None
    if not (0 < rng[0] <= rng[1] <= 65535):
        raise ToolError(f"bad port range {value!r}: 1..65535, low <= high", code=EXIT_USAGE)
    return rng


def parse_interest(items: list[str]) -> InterestSpec:
    """Parse `--interest KEY=VALUE[,KEY=VALUE...]` (repeatable) into an `InterestSpec`.

    Keys: family (4|6), proto (tcp|udp|icmp|icmpv6|sctp|udplite|number), src and
    dst (address[/prefix]), sport and dport (port or lo-hi).
    """
    spec = InterestSpec()
    pairs = [kv for item in items for kv in item.split(",") if kv.strip()]
    for kv in pairs:
        key, sep, value = kv.strip().partition("=")
        key = {"protocol": "proto"}.get(key, key)
        if not sep or not value:
            raise ToolError(f"bad interest {kv!r}: expected key=value", code=EXIT_USAGE)
        if key == "family":
            if value not in ("4", "6", "ipv4", "ipv6"):
                raise ToolError(f"bad family {value!r}: 4 or 6", code=EXIT_USAGE)
            spec.family = int(value[-1])
        elif key == "proto":
            if value.isdigit() and 0 < int(value) < 256:
                spec.protocol = int(value)
            elif value in _PROTOS:
                spec.protocol = _PROTOS[value]
            else:
                raise ToolError(
                    f"unknown protocol {value!r}",
                    hint=f"one of {', '.join(_PROTOS)} or a number 1..255",
                    code=EXIT_USAGE,
                )
        elif key in ("src", "dst"):
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ToolError(f"bad address {value!r} for {key}", code=EXIT_USAGE) from None
            setattr(spec, key, str(net))
        elif key in ("sport", "dport"):
            setattr(spec, key, _ports(value))
        else:
            raise ToolError(
                f"unknown interest key {key!r}",
                hint="keys: family, proto, src, dst, sport, dport",
                code=EXIT_USAGE,
            )
    versions = {ipaddress.ip_network(n).version for n in (spec.src, spec.dst) if n}
    if len(versions) > 1:
        raise ToolError("src and dst are of different address families", code=EXIT_USAGE)
    if versions:
        (v,) = versions
        if spec.family and spec.family != v:
            raise ToolError(f"family={spec.family} with an IPv{v} address", code=EXIT_USAGE)
        spec.family = v
    if (spec.sport or spec.dport) and spec.protocol not in _PORT_PROTOS:
        raise ToolError(
            "ports need proto=tcp, udp, sctp or udplite",
            hint="add proto=udp (for example) to the interest",
            code=EXIT_USAGE,
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
        if not _NAME.match(self.name):
            raise ToolError(
                f"bad name {self.name!r}",
                hint="a name is 1-31 lower-case letters, digits and '_', starting with a letter "
                "(it becomes the module or file name, the C prefix and the label)",
                code=EXIT_USAGE,
            )
        self.hook = hook_key(self.hook)
        self.label = self.label or self.name

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
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ToolError(f"{dest} exists and is not empty", hint="choose another --dir, or --force")
    dest.mkdir(parents=True, exist_ok=True)
    env = _env()
    ctx = spec.context(root)
    written = []
    for tpl in sorted((TEMPLATES / kind).glob("*.j2")):
        out_name = tpl.name[: -len(".j2")].replace("NAME", spec.name)
        text = env.get_template(f"{kind}/{tpl.name}").render(**ctx)
        path = dest / out_name
        path.write_text(text)
        written.append(path)
    return written


def render_kernel(
    spec: AppSpec, dest: Path, *, force: bool = False, root: Path = ROOT
) -> list[Path]:
    """Write a kernel module directory for `spec` into `dest`; returns the files."""
    return _render("kernel", spec, dest, force, root)


def render_user(spec: AppSpec, dest: Path, *, force: bool = False, root: Path = ROOT) -> list[Path]:
    """Write a libitm application (and its test) for `spec` into `dest`; returns the files."""
    return _render("user", spec, dest, force, root)


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
        f"M={moddir}",
        "W=1",
        f"KBUILD_EXTRA_SYMBOLS={local}",
        "modules",
    ]
    if sparse:
        cmd[4:4] = ["C=2", "CHECK=sparse"]
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
