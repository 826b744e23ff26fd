"""`itmtool load` / `unload`: itmBench's kernel modules in and out, in dependency order.

Modules are found by name among the ones built for the running kernel
(``$ITM_MODDIR`` and its sibling ``generated/`` when set, as in the VM;
``build/<uname -r>/src``, ``build/<uname -r>/generated``; then the in-tree
build when its vermagic matches), or given as a path to a ``.ko``.  They are
inserted with ``insmod`` (so no ``depmod`` or installation is needed) after
their parameters have been checked against ``modinfo``, and removed with
``rmmod``.  itm_mod comes before its applications and goes after them.  A
kernel module one of ours needs (itm_route needs ``libchacha20poly1305`` on
Debian's kernels, where it is a module) is loaded with ``modprobe`` first.

Everything that touches the machine goes through a :class:`Host`, so the
decisions can be tested with a fake one.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from itmtool.errors import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_PERM,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    ToolError,
)
from itmtool.matrix import ROOT
from itmtool.resources import BUILD_ROOT

CORE = "itm_mod"
#: the kernel backend of libitm: its registrations are user-space applications
QUEUE = "itm_queue"
#: the RIO qdisc: its qdiscs, not modules, hold it
RIO = "sch_rio"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,55}$")
_PARAM = re.compile(r"^([A-Za-z0-9_.]+)=(.*)$", re.DOTALL)
_INT_TYPES = {"byte", "short", "ushort", "int", "uint", "long", "ulong", "ullong", "hexint"}
#: what each integer parameter type of the kernel holds (moduleparam.h; 64-bit longs)
_INT_RANGE = {
    "byte": (0, 0xFF),
    "short": (-(2**15), 2**15 - 1),
    "ushort": (0, 0xFFFF),
    "int": (-(2**31), 2**31 - 1),
    "uint": (0, 2**32 - 1),
    "hexint": (0, 2**32 - 1),
    "long": (-(2**63), 2**63 - 1),
    "ulong": (0, 2**64 - 1),
    "ullong": (0, 2**64 - 1),
}
#: a number as the kernel's kstrto*() read it with base 0: 0x hex, 0 octal, decimal
_KERNEL_INT = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_BOOLS = {"y", "n", "Y", "N", "1", "0", "yes", "no", "true", "false", "on", "off"}

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@dataclass
class Host:
    """The machine as far as loading modules goes (paths and commands, swappable in tests)."""

    release: str = field(default_factory=lambda: os.uname().release)
    proc: Path = Path("/proc")
    sys_module: Path = Path("/sys/module")
    lib_modules: Path = Path("/lib/modules")
    root: Path = ROOT
    #: where `itmtool build` puts its builds (the checkout's build/ or the user's cache);
    #: None: ``root / "build"`` (tests give a root of their own)
    build_root: Path | None = None
    euid: int = field(default_factory=os.geteuid)
    run: Runner = _run
    #: modules built elsewhere, searched first (the VM tier's ITM_MODDIR)
    moddir: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["ITM_MODDIR"]) if os.environ.get("ITM_MODDIR") else None
        )
    )

    def module_support(self) -> bool:
        """Whether the running kernel can load modules (CONFIG_MODULES: /proc/modules)."""
        return (self.proc / "modules").exists()

    def loaded(self, name: str) -> bool:
        """Whether a loadable module is loaded (built-in ones have no initstate)."""
        return (self.sys_module / name / "initstate").exists()

    def holders(self, name: str) -> list[str]:
        """The loaded modules that use `name`'s symbols."""
        d = self.sys_module / name / "holders"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def headers(self, release: str | None = None) -> Path:
        """The kbuild directory for a kernel release (default: the running one)."""
        return self.lib_modules / (release or self.release) / "build"


class Control(Protocol):
    """What unload needs of `libitm.control.ItmControl` (a fake in tests)."""

    def apps(self) -> list[Any]:
        """The registered applications."""

    def close(self) -> None:
        """Release the connection."""


def _default_control() -> Control:
    from libitm.control import ItmControl

    return ItmControl()


@dataclass
class ModuleFile:
    """A module to load: its name, its .ko and what modinfo says about it."""

    name: str
    path: Path
    params: dict[str, str]  # name -> type ("int", "bool", "charp", ...)
    depends: list[str]


def known_modules(root: Path = ROOT) -> list[str]:
    """The modules of the tree: the `obj-m` of every Kbuild under kernel/."""
    names: set[str] = set()
    for kbuild in (root / "kernel").glob("*/Kbuild"):
        for m in re.finditer(r"^obj-m\s*[:+]?=\s*(.+)$", kbuild.read_text(), re.MULTILINE):
            names.update(w[:-2] for w in m.group(1).split() if w.endswith(".o"))
    return sorted(names)


def _search_dirs(host: Host) -> list[Path]:
    if host.build_root is not None:
        base = host.build_root / host.release
    elif host.root == ROOT:
        base = BUILD_ROOT / host.release
    else:
        base = host.root / "build" / host.release
    first = [host.moddir, host.moddir.parent / "generated"] if host.moddir else []
    return [*first, base / "src", base / "generated"]


def _vermagic(host: Host, path: Path) -> str:
    out = host.run(["modinfo", "-F", "vermagic", str(path)])
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""


def check_name(name: str, host: Host, *, path_ok: bool = True) -> None:
    """Refuse (exit 5) a malformed name or one that is none of our modules
    (``path_ok``: the command also takes the path of a .ko, as `load` does)."""
    if not _NAME.match(name):
        raise ToolError(
            f"bad module name {name!r}",
            hint="module names are letters, digits, '_' and '-'"
            + (" (or give the path to a .ko)" if path_ok else " (unload takes a name, not a path)"),
            code=EXIT_NOT_FOUND,
        )
    norm = name.replace("-", "_")
    ours = known_modules(host.root)
    built = any(d.is_dir() and any(d.rglob(f"{norm}.ko")) for d in _search_dirs(host))
    if norm not in ours and not built:
        raise ToolError(
            f"no module called {name!r} in itmBench",
            hint=f"its modules are {', '.join(ours)}; for a module made by `itmtool new "
            "kernel`, give the path to its .ko",
            code=EXIT_NOT_FOUND,
        )


def locate(name: str, host: Host) -> Path:
    """The .ko of module `name` built for the running kernel.

    Raises `ToolError`: unknown name (5), headers missing (6), not built (1).
    """
    check_name(name, host)
    norm = name.replace("-", "_")
    for d in _search_dirs(host):
        found = sorted(d.rglob(f"{norm}.ko")) if d.is_dir() else []
        if found:
            return found[0]
    for p in sorted((host.root / "kernel").rglob(f"{norm}.ko")):
        if _vermagic(host, p) == host.release:
            return p
    if not host.headers().exists():
        raise ToolError(
            f"{norm} is not built for {host.release} and its kernel headers are missing "
            f"({host.headers()})",
            hint=f"install linux-headers-{host.release}, then `itmtool build`; "
            "or use `itmtool vm` to work on a kernel of the matrix",
            code=EXIT_UNSUPPORTED,
        )
    raise ToolError(
        f"{norm} is not built for {host.release}",
        hint="run `itmtool build` first",
        code=EXIT_FAILED,
    )


def modinfo(path: Path, host: Host) -> ModuleFile:
    """Name, parameters and dependencies of a .ko (from `modinfo`)."""

    def field_(f: str) -> list[str]:
        out = host.run(["modinfo", "-F", f, str(path)])
        if out.returncode != 0:
            raise ToolError(
                f"{path} is not a kernel module: {out.stderr.strip()}", code=EXIT_NOT_FOUND
            )
        return [line for line in out.stdout.splitlines() if line.strip()]

    params: dict[str, str] = {}
    # parameters with a description (module_param_cb ones have no parmtype), then types
    for line in field_("parm"):
        params.setdefault(line.partition(":")[0].strip(), "")
    for line in field_("parmtype"):
        pname, _, ptype = line.partition(":")
        params[pname.strip()] = ptype.strip()
    (name,) = field_("name") or [path.stem]
    depends = [d for line in field_("depends") for d in line.split(",") if d]
    return ModuleFile(name.strip().replace("-", "_"), path, params, depends)


def check_params(mod: ModuleFile, params: Sequence[str]) -> None:
    """Refuse (exit 2) a parameter the module does not have or a value of the wrong type."""
    have = ", ".join(f"{k} ({v})" if v else k for k, v in sorted(mod.params.items())) or "none"
    seen: set[str] = set()
    for p in params:
        m = _PARAM.match(p)
        if not m:
            raise ToolError(
                f"bad parameter {p!r}: expected name=value",
                hint=f"{mod.name} takes: {have}",
                code=EXIT_USAGE,
            )
        key, value = m.groups()
        if key in seen:
            raise ToolError(
                f"{mod.name} parameter {key} is given twice (the kernel would take the last)",
                hint=f"{mod.name} takes: {have}",
                code=EXIT_USAGE,
            )
        seen.add(key)
        ptype = mod.params.get(key)
        if ptype is None:
            raise ToolError(
                f"{mod.name} has no parameter {key!r}",
                hint=f"{mod.name} takes: {have} (see `modinfo -p {mod.path}`)",
                code=EXIT_USAGE,
            )
        ok = True
        what = f"a {ptype}"
        if ptype in _INT_TYPES:
            low, high = _INT_RANGE[ptype]
            what = f"a {ptype} ({low}..{high})"
            ok = _KERNEL_INT.fullmatch(value) is not None and low <= _kernel_int(value) <= high
        elif ptype in ("bool", "invbool"):
            ok = value in _BOOLS
        if not ok:
            raise ToolError(
                f"bad value for {mod.name} parameter {key}: {value!r} is not {what}",
                hint=f"{mod.name} takes: {have}",
                code=EXIT_USAGE,
            )


def _kernel_int(text: str) -> int:
    """A number in the kernel's base-0 syntax (see :data:`_KERNEL_INT`)."""
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16)
    if len(digits) > 1 and digits[0] == "0":
        return sign * int(digits[1:], 8)
    return sign * int(digits)


def require_module_support(host: Host) -> None:
    """Refuse (exit 6) on a kernel built without loadable modules."""
    if not host.module_support():
        raise ToolError(
            f"the running kernel ({host.release}) cannot load modules "
            "(no /proc/modules: built without CONFIG_MODULES)",
            hint="use `itmtool vm` to boot a kernel of the matrix with the modules at hand, "
            "e.g. `itmtool vm -- itmtool load itm_mod`",
            code=EXIT_UNSUPPORTED,
        )


def _require_root(host: Host, what: str) -> None:
    if host.euid != 0:
        raise ToolError(f"{what} needs root", hint="run it with sudo", code=EXIT_PERM)


def _resolve(spec: str, host: Host) -> Path:
    if spec.endswith(".ko") or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise ToolError(f"no such module file: {spec}", code=EXIT_NOT_FOUND)
        return path.resolve()
    return locate(spec, host)


def load(
    spec: str, params: Sequence[str] = (), *, deps: bool = False, host: Host | None = None
) -> list[ModuleFile]:
    """Insert module `spec` (a name or a .ko path) with `params`; returns what was loaded.

    Dependencies (itm_mod for applications) must be loaded already, or are loaded
    first with `deps`.  Raises `ToolError` with the way out.
    """
    host = host or Host()
    if not (spec.endswith(".ko") or "/" in spec):
        check_name(spec, host)
    require_module_support(host)
    mod = modinfo(_resolve(spec, host), host)
    check_params(mod, params)
    if host.loaded(mod.name):
        raise ToolError(
            f"{mod.name} is already loaded",
            hint=f"`itmtool unload {mod.name}` first to load it with other parameters",
        )
    ours = set(known_modules(host.root)) | {CORE, QUEUE}
    # the kernel's own modules a module of ours needs (itm_route: libchacha20poly1305
    # on Debian's kernels) come with the kernel: modprobe finds them
    kernel_deps = [d for d in mod.depends if d not in ours and not host.loaded(d)]
    missing = [d for d in mod.depends if d in ours and not host.loaded(d)]
    done: list[ModuleFile] = []
    if missing and not deps:
        raise ToolError(
            f"{mod.name} needs {', '.join(missing)}, which is not loaded",
            hint=f"load it first (`itmtool load {missing[0]}`), or `itmtool load --deps "
            f"{spec}` to load it with its default parameters",
        )
    _require_root(host, "loading a module")
    for dep in kernel_deps:
        out = host.run(["modprobe", dep])
        if out.returncode != 0:
            raise ToolError(
                f"{mod.name} needs the kernel's {dep} module: modprobe {dep} failed: "
                f"{out.stderr.strip() or f'exit {out.returncode}'}",
                hint=f"a kernel built without {dep} (as a module or built in) cannot run "
                f"{mod.name}; `modinfo {dep}` says whether this one has it",
            )
    for dep in missing:
        done += load(dep, (), deps=True, host=host)
    out = host.run(["insmod", str(mod.path), *params])
    if out.returncode != 0:
        refused = params and any(
            e in out.stderr for e in ("Invalid argument", "Numerical result out of range")
        )
        if refused:  # a value only the module can judge (a range, a name)
            have = ", ".join(f"{k} ({v})" if v else k for k, v in sorted(mod.params.items()))
            raise ToolError(
                f"{mod.name} refused its parameters ({' '.join(params)}): "
                f"{out.stderr.strip().rsplit(': ', 1)[-1]}",
                hint=f"the kernel log names the value: `dmesg | tail`; {mod.name} takes: {have}",
                code=EXIT_USAGE,
            )
        raise ToolError(
            f"insmod {mod.path.name} failed: {out.stderr.strip()}",
            hint="the kernel log says why: `dmesg | tail`",
        )
    return [*done, mod]


def _describe_apps(apps: Sequence[Any]) -> list[str]:
    lines = []
    for a in apps:
        who = f"module {a.owner}" if a.type == "kernel" else f"pid {a.pid}"
        lines.append(f"  {a.label} ({a.type}, {who}, at {a.hook})")
    return lines


def _app_key(app: Any) -> tuple[str, str, str, str, int]:
    return (app.label, app.type, app.hook, app.owner, app.pid)


@dataclass
class Unloaded:
    """What an unload did: the modules removed, in order, and the applications whose
    registrations went with them (their packets now pass untouched)."""

    modules: list[str]
    #: the registered applications (`libitm.control.App`) unregistered by the unload:
    #: an application module's own (its ``owner``), every one for itm_mod, the
    #: user-space ones for itm_queue (only ``--all`` removes itm_mod or itm_queue
    #: while applications are registered)
    unregistered: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The documented `itmtool unload --json` shape."""
        return {
            "unloaded": list(self.modules),
            "unregistered": [
                {"label": a.label, "type": a.type, "hook": a.hook, "owner": a.owner, "pid": a.pid}
                for a in self.unregistered
            ],
        }

    def text(self) -> str:
        """The lines `itmtool unload` prints: one per module, then the applications."""
        lines = [f"unloaded {n}" for n in self.modules]
        if self.unregistered:
            lines.append("applications unregistered (their packets now pass untouched):")
            lines += _describe_apps(self.unregistered)
            pids = sorted({a.pid for a in self.unregistered if a.type == "user"})
            if pids:
                lines.append(
                    "their user-space processes still run, without their queues: "
                    f"pid {', '.join(map(str, pids))}"
                )
        return "\n".join(lines)


def unload(
    name: str,
    *,
    everything: bool = False,
    host: Host | None = None,
    control: Callable[[], Control] | None = None,
) -> list[str]:
    """Remove module `name`; with `everything`, the modules using it first.

    Refuses (exit 1) to remove a module other modules use, or itm_mod while
    applications are registered, listing them.  Returns the names removed, in order
    (:func:`unload_report` also says which applications went with them).
    """
    return unload_report(name, everything=everything, host=host, control=control).modules


def unload_report(
    name: str,
    *,
    everything: bool = False,
    host: Host | None = None,
    control: Callable[[], Control] | None = None,
) -> Unloaded:
    """:func:`unload`, returning the modules removed and the applications unregistered.

    An application module (one that uses itm_mod) goes with the applications it
    registered; with `everything`, itm_mod goes with every registered application (the
    kernel ones' modules are unloaded first) and itm_queue with the user-space ones'
    queues: those are :attr:`Unloaded.unregistered`.  When itm_mod cannot be asked
    (not loaded, refused), the module is unloaded all the same, naming none.
    """
    return _unload(name, everything, host or Host(), control, None)


def _registered_apps(control: Callable[[], Control] | None) -> list[Any]:
    """itm_mod's registered applications; none when it cannot be asked."""
    from libitm.control import ItmControlError

    try:
        ctl = (control or _default_control)()
        try:
            return list(ctl.apps())
        finally:
            ctl.close()
    except ItmControlError:
        return []


def _unload(
    name: str,
    everything: bool,
    host: Host,
    control: Callable[[], Control] | None,
    known: list[Any] | None,
) -> Unloaded:
    """:func:`unload_report`, with itm_mod's applications when an outer unload has
    asked already (`known`), so that each unload asks it once at most."""
    if not _NAME.match(name):
        check_name(name, host, path_ok=False)
    require_module_support(host)
    name = name.replace("-", "_")
    if not host.loaded(name):
        ours = known_modules(host.root)
        raise ToolError(
            f"{name} is not loaded",
            hint="`itmtool status` shows what is registered"
            + ("" if name in ours else f"; itmBench's modules are {', '.join(ours)}"),
            code=EXIT_NOT_FOUND,
        )
    holders = host.holders(name)
    everyone = known

    def registered() -> list[Any]:
        nonlocal everyone
        if everyone is None:
            everyone = _registered_apps(control)
        return everyone

    # itm_mod's or itm_queue's registrations (they keep it in use), or, below, an
    # application module's own: those that go with it
    apps: list[Any] = []
    if name in (CORE, QUEUE):
        apps = registered()
        if name == QUEUE:  # its registrations are the user-space applications
            apps = [a for a in apps if a.type == "user"]
    if (holders or apps) and not everything:
        lines = [f"{name} is in use"]
        if apps:
            lines.append("registered applications:")
            lines += _describe_apps(apps)
        if holders:
            lines.append(f"modules using it: {', '.join(holders)}")
        if name == QUEUE and not holders:
            raise ToolError(
                "\n".join(lines),
                hint="stop those processes first (they fail open: their packets pass), "
                f"or `itmtool unload --all {name}` to take their queues from them",
            )
        first = holders[0] if holders else "the applications' modules"
        raise ToolError(
            "\n".join(lines),
            hint=f"unload them first (`itmtool unload {first}`), or "
            f"`itmtool unload --all {name}` to unload them and then {name}",
        )
    _require_root(host, "unloading a module")
    if name not in (CORE, QUEUE) and name in host.holders(CORE):
        # an application module: its registrations go with it (asked before rmmod);
        # not being able to ask must not keep it loaded
        try:
            mine = registered()
        except OSError:
            mine = []
        apps = [a for a in mine if a.type == "kernel" and a.owner == name]
    removed: list[str] = []
    gone: list[Any] = []
    for h in holders:
        if host.loaded(h):
            sub = _unload(h, True, host, control, everyone)
            removed += sub.modules
            gone += sub.unregistered
    out = host.run(["rmmod", name])
    if out.returncode != 0:
        if name == RIO and "in use" in out.stderr:
            from itmtool import rio as rio_cli  # each rio qdisc holds sch_rio: name them

            raise rio_cli.unload_refused()
        raise ToolError(f"rmmod {name} failed: {out.stderr.strip()}")
    unregistered = list(apps)  # itm_mod's list has itm_queue's users too: once each
    seen = {_app_key(a) for a in apps}
    for a in gone:
        if _app_key(a) not in seen:
            seen.add(_app_key(a))
            unregistered.append(a)
    return Unloaded([*removed, name], unregistered)
