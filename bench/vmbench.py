"""What the VM benchmarks share: build, boot, run the guest half, and the docs page.

A VM benchmark is one module under bench/ with a guest half (run inside a
kernel of the matrix by ``python -m bench.NAME --guest MODDIR --out FILE ...``,
writing a JSON result) and a host half that builds the modules, boots each
kernel asked for, and renders the results as a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cliargs
from itmtool import buildmods, kernelcache, vm
from itmtool.matrix import ROOT, Kernel, read_matrix

DOC = ROOT / "docs" / "benchmarks.md"
RUN_FILE_DIR = Path("/sys/kernel/debug/itm_bench")


def sh(*args: str) -> str:
    """Run a command in the guest, failing loudly; returns its output."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def mount_debugfs() -> None:
    """Make /sys/kernel/debug available in the guest (virtme-ng may not mount it)."""
    if not Path("/sys/kernel/debug/tracing").exists():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=False)


def module_paths(moddir: Path) -> dict[str, str]:
    """Every built module by name."""
    return {p.stem: str(p) for p in moddir.rglob("*.ko")}


def kernels(name: str) -> list[Kernel]:
    """The kernels of kernels.txt that `name` ("all" or a kernel's name) selects.

    "all" leaves out the kernels with the detectors (debug, uml-debug): KASAN
    on every access makes their timings say nothing about our code.  ("uml" runs the guest half in
    User-Mode Linux, at native speed.)
    """
    chosen = read_matrix()
    if name == "all":
        return [k for k in chosen if not k.detectors]
    return [k for k in chosen if k.name == name]


def run_in_vm(kernel: Kernel, bench: str, args: str, timeout: float = 900) -> dict[str, Any]:
    """Build the modules for `kernel`, boot it, run `bench`'s guest half; its JSON result.

    Raises RuntimeError with the build diagnostics or the VM's output when no
    result came back.
    """
    top = buildmods.BUILD_ROOT / kernel.release / "bench"
    res = buildmods.build(kernel, dest=top / "src")
    if not res.ok:
        raise RuntimeError("modules did not build:\n" + "\n".join(res.diagnostics))
    out = top / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = out / f"{bench}.json"
    result.unlink(missing_ok=True)
    script = f"python -m bench.{bench} --guest {res.moddir} --out {result} {args}"
    try:
        run = vm.run(kernel, script, rwdirs=[out], append=(), timeout=timeout)
    except subprocess.TimeoutExpired as err:
        if not result.exists():
            raise RuntimeError(f"{kernel.release}: no result in {timeout:.0f} s") from err
        # a guest that writes its result as it goes leaves what it finished
        partial: dict[str, Any] = json.loads(result.read_text())
        partial["partial"] = True
        return partial
    if not result.exists():
        raise RuntimeError(f"{kernel.release}: no result\n{run.output[-3000:]}")
    doc: dict[str, Any] = json.loads(result.read_text())
    return doc


def cpu() -> str:
    """The host's CPU model, for the record."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def uml_build() -> str:
    """How the cache's uml kernel is compiled, for a section's intro: "-O2, " or
    "-Os, " (from its .config), or "" when it is not built."""
    tree = kernelcache.built("uml")
    if tree is None:
        return ""
    config = (tree / ".config").read_text()
    return "-Os, " if "\nCONFIG_CC_OPTIMIZE_FOR_SIZE=y" in config else "-O2, "


def write_section(name: str, title: str, body: list[str]) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = "\n".join([begin, f"## {title}", "", *body, end])
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def loadavg() -> str:
    """The machine's load average now: the first three fields of /proc/loadavg."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def today() -> str:
    """The date stamped on a results section."""
    return time.strftime("%Y-%m-%d")


def fail(message: str) -> int:
    """Print a benchmark failure and return the exit code for it."""
    print(message, file=sys.stderr)
    return 1


def parser(module: str, doc: str, iterations: int, repeats: int) -> argparse.ArgumentParser:
    """The command line every VM benchmark (``python -m module``) takes, the guest half's
    options hidden; a bad value is a one-line error (exit 2) before anything is built."""
    p = cliargs.parser(module, doc)
    p.add_argument("--kernel", default="all", help="kernel of kernels.txt, or all")
    p.add_argument("--iterations", type=cliargs.positive, default=iterations)
    p.add_argument("--repeats", type=cliargs.positive, default=repeats)
    p.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    p.add_argument("--guest", metavar="MODDIR", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p


def main(
    module: str,
    doc: str,
    iterations: int,
    repeats: int,
    guest: Callable[[Path, Path, int, int], int],
    host: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """A VM benchmark's command line (``python -m module``): ``guest(moddir, out,
    iterations, repeats)`` inside the VM (``--guest``), ``host(args)`` outside."""
    args = parser(module, doc, iterations, repeats).parse_args(argv)
    if args.guest:
        return guest(Path(args.guest), args.out, args.iterations, args.repeats)
    return host(args)


def tables_per_kernel(
    args: argparse.Namespace, bench: str, table: Callable[[dict[str, Any]], str]
) -> dict[bool, list[str]] | None:
    """Run `bench` in a VM of each kernel `args.kernel` names; its tables, printed as they come.

    The tables by tier: ``True`` for User-Mode Linux (native speed, one CPU),
    ``False`` for the kernels booted in QEMU, each in the matrix's order, so that
    ``--kernel all --write`` puts each table in its tier's section of the page.
    None (after saying why on stderr) when a kernel is unknown or gave no result.
    """
    chosen = kernels(args.kernel)
    if not chosen:
        fail(f"no kernel {args.kernel!r} in kernels.txt")
        return None
    tiers: dict[bool, list[str]] = {}
    for k in chosen:
        try:
            doc = run_in_vm(k, bench, f"--iterations {args.iterations} --repeats {args.repeats}")
        except RuntimeError as err:
            fail(str(err))
            return None
        tiers.setdefault(k.is_uml, []).append(table(doc))
        print(tiers[k.is_uml][-1] + "\n", flush=True)
    return tiers


if __name__ == "__main__":
    from bench import entry

    sys.exit(
        entry.not_a_command(
            "bench.vmbench",
            "it holds what the VM benchmarks share; run one of them"
            " (python -m bench.run_all --list names them)",
        )
    )
