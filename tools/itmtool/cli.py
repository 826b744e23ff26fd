"""itmtool: the one command for a person running an ITM.

Exit codes: 0 success; 1 a request failed; 2 bad usage; 3 itm_mod not loaded;
4 permission denied; 5 no such application, module or file; 6 not possible here
(the kernel cannot load modules, kernel headers or dkms missing); 130
interrupted (Ctrl-C); 141 stdout closed early (a pipe). See docs/itmtool.md.

Every expected failure is one line on stderr (``itmtool: CMD: message``, maybe a
hint line) and its exit code; a traceback only with ``itmtool --debug``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from itmtool import cleanup as cleanup_mod
from itmtool import rio as rio_mod
from itmtool import status as status_mod
from itmtool.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_NOT_LOADED,
    EXIT_OK,
    EXIT_PERM,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    ToolError,
)
from libitm import cliargs
from libitm.control import ItmControl, ItmControlError, ItmNotLoaded
from libitm.info import LABEL_MAX

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NOT_LOADED",
    "EXIT_OK",
    "EXIT_PERM",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "build_parser",
    "main",
]


def _cmd_status(args: argparse.Namespace) -> int:
    if not args.watch:
        try:
            with ItmControl() as ctl:
                text = status_mod.render(ctl, args.json)
        except ItmNotLoaded as err:
            if not args.json:
                print(f"itmtool: status: {err}", file=sys.stderr)
            text = status_mod.render_not_loaded(args.json)  # the nfqueue backend's apps
            if text:
                print(text)
            return EXIT_NOT_LOADED
        print(text)
        return EXIT_OK
    # --watch: until Ctrl-C (exit 130); itm_mod missing is a state shown, not an end
    clear = not args.json and sys.stdout.isatty()
    while True:
        try:
            with ItmControl() as ctl:
                text = status_mod.json_line(ctl) if args.json else status_mod.render(ctl, False)
        except ItmNotLoaded as err:
            text = (
                status_mod.render_not_loaded(True, compact=True)
                if args.json
                else f"{err}\n" + status_mod.render_not_loaded(False)
            )
        if args.json:
            print(text, flush=True)  # one document per line
        else:
            home = "\033[H\033[2J" if clear else ""
            print(home + time.strftime("%H:%M:%S ") + text, flush=True)
        time.sleep(args.interval)


def _app_label(text: str) -> str:
    """argparse type of an application's label as itm_mod keeps it: 1..31 bytes."""
    if not text or len(text.encode()) > LABEL_MAX or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an application label (1..{LABEL_MAX} characters;"
            " `itmtool status` lists them)"
        )
    return text


def _cmd_set(args: argparse.Namespace) -> int:
    with ItmControl() as ctl:
        if args.cmd == "enable":
            ctl.set_app(args.label, enabled=True)
        elif args.cmd == "disable":
            ctl.set_app(args.label, enabled=False)
        else:
            ctl.set_app(args.label, priority=args.priority)
    return EXIT_OK


def _cmd_netns(args: argparse.Namespace) -> int:
    with ItmControl() as ctl:
        if args.state is not None:
            ctl.set_netns_active(args.state == "on")
        print("on" if ctl.netns_active() else "off")
    return EXIT_OK


def _emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=2) if getattr(args, "json", False) else text)


def _cmd_build(args: argparse.Namespace) -> int:
    from itmtool import build

    kernel = build.resolve_kernel(args.kernel)
    build.check_headers(kernel)
    if not args.json:
        print(f"building the modules for {kernel.release} (W=1) ...", flush=True)
    res, summary = build.build(kernel)
    if res.ok:
        text = f"built for {kernel.release} in {res.moddir}:\n" + "\n".join(
            f"  {m}" for m in summary["modules"]
        )
    else:
        text = f"the build for {kernel.release} FAILED (exit {res.returncode}):\n" + "\n".join(
            res.diagnostics or res.log.splitlines()[-30:]
        )
    _emit(args, summary, text)
    return EXIT_OK if res.ok else EXIT_FAILED


def _cmd_load(args: argparse.Namespace) -> int:
    from itmtool import kmod

    done = kmod.load(args.name, args.params, deps=args.deps)
    doc = {
        "loaded": [{"name": m.name, "path": str(m.path)} for m in done],
        "params": args.params,
    }
    text = "\n".join(f"loaded {m.name} ({m.path})" for m in done)
    _emit(args, doc, text)
    return EXIT_OK


def _cmd_unload(args: argparse.Namespace) -> int:
    from itmtool import kmod

    if args.name is None:
        # argparse's "required: name" does not say which name --all wants
        raise ToolError(
            "which module? (--all unloads what uses the module named, then the module)",
            hint="`itmtool unload itm_mod --all` unloads itm_mod and every module that uses it",
            code=EXIT_USAGE,
        )
    done = kmod.unload_report(args.name, everything=args.all)
    _emit(args, done.to_json(), done.text())
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from itmtool import run

    summary = run.run_app(
        Path(args.app),
        backend=args.backend,
        pcap=args.pcap,
        out=args.out,
        log=args.log,
        duration=args.duration,
        extra=args.extra,
        workers=args.workers,
    )
    print(run.dumps(summary) if args.json else run.table(summary))
    if summary["mode"] == "main":
        return int(summary["exit"])
    return EXIT_INTERRUPTED if summary.get("interrupted") else EXIT_OK


def _cmd_new(args: argparse.Namespace) -> int:
    from itmtool import new

    spec = new.AppSpec(
        args.name,
        args.hook,
        new.parse_interest(args.interest),
        priority=args.priority,
        timer_ms=args.timer_ms,
        label=_label_arg(args.label),
    )
    dest = Path(args.dir) if args.dir else Path.cwd() / args.name
    render = new.render_kernel if args.kind == "kernel" else new.render_user
    files = render(spec, dest, force=args.force)
    doc = {"kind": args.kind, "name": spec.name, "dir": str(dest), "files": [str(f) for f in files]}
    if args.kind == "kernel":
        nxt = (
            f"next: itmtool build (itm_mod for this kernel), then `make -C {dest}` "
            f"and `itmtool load {dest / (spec.name + '.ko')}`"
        )
    else:
        nxt = (
            f"next: cd {dest} && python -m pytest, then "
            f"`itmtool run {dest / (spec.name + '.py')} --pcap IN --out OUT`"
        )
    text = f"wrote {args.kind} application {spec.name} in {dest}:\n"
    text += "\n".join(f"  {f.name}" for f in files) + "\n" + nxt
    _emit(args, doc, text)
    return EXIT_OK


def _cmd_vm(args: argparse.Namespace) -> int:
    import shlex

    from itmtool import build, buildmods, vm
    from itmtool.matrix import newest_debian, read_matrix

    kernels = read_matrix()
    kernel = build.resolve_kernel(args.kernel or newest_debian(kernels).name, kernels)
    if not kernel.vmlinuz.exists():
        raise ToolError(
            f"no kernel image {kernel.vmlinuz} to boot",
            hint=f"kernels of the matrix: {', '.join(k.name for k in kernels)} (`make setup`)",
            code=EXIT_UNSUPPORTED,
        )
    moddir = buildmods.BUILD_ROOT / kernel.release / "src"
    if not args.no_build:
        print(f"==> building the modules for {kernel.release}", flush=True)
        res, _ = build.build(kernel)
        if not res.ok:
            print("\n".join(res.diagnostics or res.log.splitlines()[-30:]), file=sys.stderr)
            return EXIT_FAILED
    command: list[str] = args.command[1:] if args.command[:1] == ["--"] else args.command
    if len(command) == 1:
        guest_cmd = command[0]  # one word or a quoted shell command line
    elif command:
        guest_cmd = " ".join(shlex.quote(c) for c in command)
    else:
        guest_cmd = "itmtool load itm_mod && itmtool status"
    script = f'itmtool() {{ python -m itmtool.cli "$@"; }}\nexport -f itmtool\n{guest_cmd}\n'
    how = (
        "User-Mode Linux: a second or two" if kernel.is_uml else "QEMU without KVM: a minute or two"
    )
    print(f"==> booting {kernel.release} ({how}): {guest_cmd}", flush=True)
    out = vm.run(
        kernel,
        script,
        rwdirs=[buildmods.BUILD_ROOT / kernel.release / "vm"],
        env={"ITM_MODDIR": str(moddir)},
        stream=True,
        timeout=args.timeout,
        cpus=args.cpus,
        append=(),
        console=args.console,
    )
    return out.returncode


def _label_arg(label: str | None) -> str:
    """--label as `new` takes it: absent means the name; given empty is an error (an
    unset shell variable), not the name."""
    if label is None:
        return ""
    if not label:
        raise ToolError(
            "bad --label '': give 1..31 letters, digits, '_', '.', '-'", code=EXIT_USAGE
        )
    return label


def _kernel_arg(text: str) -> str:
    """argparse type of --kernel: a name of the matrix or a release, never empty (an
    empty one from an unset shell variable must not widen `dkms remove` to every
    kernel, nor fall back to the running one)."""
    if not text.strip() or any(c.isspace() or c == "/" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a kernel: give a name of the matrix (6.1, 6.12) or a release"
        )
    return text


def _priority_arg(text: str) -> int:
    """argparse type of a priority: an s32, as struct itm_info.priority is."""
    from libitm.info import PRIORITY_MAX, PRIORITY_MIN

    try:
        value = int(text, 0)
    except ValueError:
        value = PRIORITY_MAX + 1
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer {PRIORITY_MIN}..{PRIORITY_MAX} "
            "(struct itm_info.priority is an s32)"
        )
    return value


def _cmd_dkms(args: argparse.Namespace) -> int:
    import os

    from itmtool import build, dkms

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    env = dkms.Env(say=say)
    release = build.resolve_kernel(args.kernel).release if args.kernel else None
    if args.action == "status":
        doc = dkms.status(release, env=env)
        _emit(args, doc, dkms.status_table(doc))
        return EXIT_OK if doc["added"] else EXIT_NOT_FOUND
    if args.action == "remove":
        doc = dkms.remove(release, dry_run=args.dry_run, env=env)
        if args.dry_run:
            text = "(dry run: nothing done)"
        else:
            text = f"removed {doc['package']}/{doc['version']} from dkms for: " + (
                ", ".join(doc["removed"]) or "no kernel"
            )
            if doc["source_removed"]:
                text += f"\nand its sources ({env.src_root}/{doc['package']}-{doc['version']})"
        _emit(args, doc, text)
        return EXIT_OK
    release = release or os.uname().release
    doc = dkms.install(release, dry_run=args.dry_run, env=env)
    if args.dry_run:
        text = f"(dry run: nothing done; {len(doc['commands'])} dkms commands)"
    else:
        text = f"installed with dkms for {release} (modprobe finds them):\n" + "\n".join(
            f"  {m['name']:<9} {m['path']}  vermagic {(m['vermagic'] or '').split(' ')[0]}"
            for m in doc["modules"]
        )
    _emit(args, doc, text)
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from itmtool import doctor

    doc = doctor.report(args.purpose)
    _emit(args, doc, doctor.table(doc, quiet=args.quiet))
    return doctor.exit_code(doc)


@dataclass(frozen=True)
class _Arg:
    """One ``add_argument`` call of a subcommand: its names and options."""

    names: tuple[str, ...]
    options: dict[str, Any]


def _arg(*names: str, **options: Any) -> _Arg:
    return _Arg(names, options)


#: the ``--json`` of most subcommands
_JSON = _arg("--json", action="store_true", help="machine-readable output")


def _add_command(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    args: Sequence[_Arg],
    **parser: Any,
) -> argparse.ArgumentParser:
    """Add subcommand `name` (`parser`: its help, description, epilog) with `args`, in
    order, run by `func`."""
    p: argparse.ArgumentParser = sub.add_parser(name, **parser)
    for a in args:
        p.add_argument(*a.names, **a.options)
    p.set_defaults(func=func)
    return p


def _add_doctor(sub: Any) -> None:
    purpose = _arg(
        "--for",
        dest="purpose",
        choices=("user", "demo", "test"),
        default="user",
        help="what for: user (default: run modules here or in a VM), demo (`make demo`), "
        "test (`make test`)",
    )
    quiet = _arg(
        "-q",
        "--quiet",
        action="store_true",
        help="only what is needed and missing, and the verdict",
    )
    _add_command(
        sub,
        "doctor",
        _cmd_doctor,
        [purpose, quiet, _JSON],
        help="check this machine's prerequisites: OK or MISSING, with the command that fixes it",
        description="One line per prerequisite (kernel modules here or the VM path: qemu, "
        "busybox, virtme-ng, the matrix kernels; netfilter and nfnetlink_queue; dkms; "
        "CAP_NET_ADMIN), OK or MISSING with the exact command that fixes it.",
        epilog="Exit codes: 0 everything needed is there; 6 something needed is missing.",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("itmbench")
    except PackageNotFoundError:
        return "unknown (itmbench is not installed: pip install .)"


class OneLineParser(argparse.ArgumentParser):
    """argparse with the CLI contract's errors: one line naming the subcommand and the
    bad argument, a hint line pointing at ``--help``, exit 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        """Report a bad argument and exit 2."""
        where = ": ".join(self.prog.split())
        self.exit(EXIT_USAGE, f"{where}: {message}\nitmtool: see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = OneLineParser(
        prog="itmtool",
        description="Control the Internet Traffic Manager: applications, their state, counters.",
    )
    parser.add_argument("--version", action="version", version=f"itmtool {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (before COMMAND)"
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    interval = _arg(
        "--interval", type=cliargs.seconds, default=1.0, help="seconds between refreshes (> 0)"
    )
    watch = _arg("--watch", action="store_true", help="refresh until interrupted")
    status_help = "registered applications per hook, in run order"
    _add_command(sub, "status", _cmd_status, [_JSON, watch, interval], help=status_help)

    label = _arg("label", type=_app_label, help="the application's label (see `itmtool status`)")
    for name, text in (("enable", "turn an application on"), ("disable", "turn it off")):
        _add_command(sub, name, _cmd_set, [label], help=text)

    priority = [
        _arg("label", type=_app_label, help="the application's label"),
        _arg(
            "priority", type=_priority_arg, help="lower runs first; ties run in registration order"
        ),
    ]
    priority_help = "change where an application runs at its hook"
    _add_command(sub, "priority", _cmd_set, priority, help=priority_help)

    dry_run = _arg("--dry-run", action="store_true", help="only say what would be removed")
    cleanup_help = "remove the nfqueue rules that dead libitm processes left"
    _add_command(sub, "cleanup", cleanup_mod.command, [dry_run, _JSON], help=cleanup_help)

    state = _arg("state", nargs="?", choices=("on", "off"), help="omit to show the state")
    netns_help = "attach itm_mod's hooks to this network namespace"
    _add_command(sub, "netns", _cmd_netns, [state], help=netns_help)
    _add_module_commands(sub)
    _add_doctor(sub)
    rio_mod.add_parser(sub)
    return parser


def _add_module_commands(sub: Any) -> None:
    """The subcommands of issue 6: build, load, unload, run, new, vm, dkms."""
    kernel = _arg(
        "--kernel",
        type=_kernel_arg,
        metavar="NAME|RELEASE",
        help="a kernel of the matrix (default: the running one)",
    )
    build_help = "build the kernel modules (W=1) for a kernel"
    _add_command(sub, "build", _cmd_build, [kernel, _JSON], help=build_help)

    load_args = [
        _arg("name", help="itm_mod, qos_mod, ... or the path of a .ko"),
        _arg("params", nargs="*", metavar="param=value", help="module parameters"),
        _arg("--deps", action="store_true", help="load missing dependencies (itm_mod) first"),
        _JSON,
    ]
    _add_command(
        sub,
        "load",
        _cmd_load,
        load_args,
        help="insert a module built for the running kernel (itm_mod before applications)",
        description="Insert one of itmBench's modules (by name) or a generated one (by the "
        "path of its .ko), with parameters checked against modinfo first.",
    )

    everything = _arg(
        "--all",
        "--force",
        dest="all",
        action="store_true",
        help="unload the modules that use it first and unregister its applications, "
        "listing them (--force is the same; never rmmod -f)",
    )
    _add_command(
        sub,
        "unload",
        _cmd_unload,
        [_arg("name", nargs="?", help="the module's name"), everything, _JSON],
        help="remove a module (applications before itm_mod)",
        description="Remove a module (an application module's applications go with it: it "
        "names them). itm_mod is refused while applications are registered or "
        "modules use it, unless --all unloads those first.",
    )

    run_args = [
        _arg("app", metavar="APP.py", help="the application file"),
        _arg(
            "--backend",
            default="auto",
            choices=("auto", "kernel", "nfqueue", "offline"),
            help="auto: kernel when itm_queue is loaded, else nfqueue; offline with --pcap",
        ),
        _arg("--pcap", metavar="IN", help="input trace (offline backend)"),
        _arg("--out", metavar="OUT", help="result trace (offline backend)"),
        _arg("--log", metavar="LOG", help="verdict log (offline backend)"),
        _arg("--duration", type=cliargs.seconds, help="seconds to run (live backends)"),
        _arg(
            "--workers",
            type=cliargs.workers,
            default=1,
            help="processes, each with its own queue; a flow stays on one "
            "(kernel or nfqueue backend)",
        ),
        _arg("--json", action="store_true", help="counters as JSON when it ends"),
    ]
    _add_command(
        sub,
        "run",
        _cmd_run,
        run_args,
        help="start a user-space (libitm) application",
        description="Run the applications of a libitm file: apps(), Application subclasses, "
        "or its main(argv) (arguments after -- go to main).",
        epilog="Arguments after -- go to the file's main(argv).",
    ).set_defaults(extra=[])

    new_args = [
        _arg("kind", choices=("kernel", "user"), help="a C module or a libitm application"),
        _arg("name", help="lower-case C identifier: module/file name, prefix and label"),
        _arg(
            "--hook",
            default="post",
            help="pre, in, fwd, out or post (or pre_routing, ip_in, ...); default post",
        ),
        _arg(
            "--interest",
            action="append",
            default=[],
            metavar="KEY=VALUE[,...]",
            help="family=4|6, proto=tcp|udp|icmp|..., src=NET, dst=NET, sport=P[-Q], dport=P[-Q]",
        ),
        _arg("--priority", type=int, default=0, help="run order at the hook (default 0)"),
        _arg("--timer-ms", type=int, default=1000, help="timer period (0: no timer)"),
        _arg("--label", help="the application's label (default: NAME)"),
        _arg("--dir", help="where to write (default: ./NAME)"),
        _arg("--force", action="store_true", help="write into a non-empty directory"),
        _JSON,
    ]
    new_help = "generate a kernel module or a user-space application that works as generated"
    _add_command(sub, "new", _cmd_new, new_args, help=new_help)

    vm_args = [
        _arg(
            "--kernel",
            type=_kernel_arg,
            metavar="NAME",
            help="kernel of the matrix (default: the newest)",
        ),
        _arg("--no-build", action="store_true", help="use the modules already built"),
        _arg(
            "--cpus",
            type=cliargs.vcpus,
            default=2,
            help="virtual CPUs (default 2; 1 when another VM runs beside it on a 2-core machine)",
        ),
        _arg(
            "--timeout", type=cliargs.seconds, default=1800, help="seconds before the VM is killed"
        ),
        _arg(
            "--console",
            action="store_true",
            help="show the kernel's console and vng's own messages too (a VM that dies early)",
        ),
        _arg("command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="guest command"),
    ]
    _add_command(
        sub,
        "vm",
        _cmd_vm,
        vm_args,
        help="boot a kernel of the matrix in a VM with the project and its modules at hand",
        description="Build the modules for a kernel of the matrix and boot it (QEMU, TCG) with "
        "this machine's root file system; run COMMAND in it (default: itmtool load itm_mod && "
        "itmtool status). `itmtool` works inside.",
    )

    dkms_args = [
        _arg(
            "action",
            nargs="?",
            default="install",
            choices=("install", "remove", "status"),
            help="default: install",
        ),
        _arg(
            "--kernel",
            type=_kernel_arg,
            metavar="NAME|RELEASE",
            help="a kernel of the matrix (6.1, 6.12) or a release; install: default the running "
            "kernel; remove, status: default every kernel",
        ),
        _arg("--dry-run", action="store_true", help="print what would be done, do nothing"),
        _JSON,
    ]
    _add_command(
        sub,
        "dkms",
        _cmd_dkms,
        dkms_args,
        help="install the modules with DKMS (they rebuild on kernel upgrades)",
        description="install (the default): stage the tree under /usr/src/itmbench-VERSION, "
        "dkms add (once), build and install for a kernel; the modules land in "
        "/lib/modules/KERNEL/updates/dkms and modprobe finds them. remove: dkms remove for "
        "every kernel (or --kernel) and, when no kernel has it any more, the staged sources. "
        "status: the kernels it is installed for, the module files and their vermagic.",
        epilog="Exit codes: 0 done; 1 a dkms step failed; 4 not root; 5 not installed "
        "(status, remove); 6 dkms or the kernel's headers missing.",
    )


def _split_tail(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`run` and `vm` pass what follows `--` on (to the file's main, to the guest)."""
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    if argv[first : first + 1] in (["run"], ["vm"]) and "--" in argv[first:]:
        cut = argv.index("--", first)
        return argv[:cut], argv[cut + 1 :]
    return argv, None


def _report(err: Exception, cmd: str) -> tuple[list[str], int]:
    """The lines on stderr and the exit code for an error out of a subcommand."""
    from libitm.files import describe_error

    head = f"itmtool: {cmd}:"
    if isinstance(err, ToolError):
        return [f"{head} {err.message}"] + ([f"itmtool: {err.hint}"] if err.hint else []), err.code
    if isinstance(err, ItmNotLoaded):
        return [f"{head} {err}"], EXIT_NOT_LOADED
    if isinstance(err, ItmControlError):
        if err.code == errno.EPERM and "initial network namespace" in str(err):
            hint = "itmtool: run it in the initial namespace (without `ip netns exec`)"
            return [f"{head} {err}", hint], EXIT_PERM
        if err.code == errno.EPERM:
            return [f"{head} {err}", "itmtool: changes need CAP_NET_ADMIN (run as root)"], EXIT_PERM
        if err.code == errno.ENOTUNIQ:
            return [
                f"{head} {err}",
                "itmtool: run it in the application's namespace: "
                f"`ip netns exec NS itmtool {cmd} ...`",
            ], EXIT_FAILED
        return [f"{head} {err}"], EXIT_NOT_FOUND if err.code == errno.ENOENT else EXIT_FAILED
    described = describe_error(err)
    if described is not None:
        message, code = described
        lines = [f"{head} {message}"]
        if code == EXIT_PERM and not getattr(err, "filename", None):
            lines.append("itmtool: this needs root (CAP_NET_ADMIN)")
        return lines, code
    return [
        f"{head} unexpected error: {type(err).__name__}: {err}",
        "itmtool: run with --debug for the traceback (itmtool --debug COMMAND ...)",
    ], EXIT_FAILED


def _quiet_stdout() -> None:
    """stdout's reader went away: send what Python still wants to flush to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `itmtool` console script (exit codes: module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv, tail = _split_tail(argv)
        args = cliargs.parse(build_parser(), argv)
        if tail is not None:
            if args.cmd == "run":
                args.extra = tail
            else:
                args.command = tail
        func: Callable[[argparse.Namespace], int] = args.func
        try:
            code = func(args)
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as err:
            if args.debug:
                traceback.print_exc()
            lines, code = _report(err, args.cmd)
            print("\n".join(lines), file=sys.stderr)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        print("itmtool: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
