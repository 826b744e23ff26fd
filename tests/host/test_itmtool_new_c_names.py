"""`itmtool new kernel` refuses a name whose C names clash with the kernel headers.

`itmtool.new.KERNEL_HEADER_NAMES` is a stored list (the generator runs without
kernel headers); here it is recomputed from the headers of every kernel of the
matrix: the includes of the generated module are preprocessed with the module's
own compiler command, and every macro, struct/union/enum tag and function name
that a generated name (NAME + one of the template's suffixes) could land on must
be in the stored list. A refused name is then shown not to build, a name next to
it to build W=1-clean.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from itmtool import new
from itmtool.errors import ToolError
from itmtool.matrix import Kernel, selected

# UML's modules need ARCH=um, which a generated Makefile does not pass: tests/vm builds them
KERNELS = [k for k in selected() if not k.is_uml]  # $ITM_KERNELS, as the VM tier


def compile_command(kernel: Kernel, moddir: Path, name: str) -> str:
    """The compiler command kbuild used for `name`.c (from its .cmd file)."""
    line = (moddir / f".{name}.o.cmd").read_text().splitlines()[0]
    return line.split(":=", 1)[1].split(" ; ")[0]


def header_names(kernel: Kernel, tmp: Path) -> set[str]:
    """Macros, tags and called or declared functions that the generated module's
    includes bring in, for `kernel`."""
    spec = new.AppSpec("zz_probe_names")
    new.render_kernel(spec, tmp / "probe")
    res = new.build_module(kernel, tmp / "probe")
    assert res.returncode == 0, res.log[-3000:]
    src = (tmp / "probe" / "zz_probe_names.c").read_text()
    includes = [ln for ln in src.splitlines() if ln.startswith(("#include", "#define pr_fmt"))]
    only = tmp / "probe" / "only_includes.c"
    only.write_text("\n".join(includes) + "\n")
    cmd = compile_command(kernel, tmp / "probe", "zz_probe_names")
    cmd = re.sub(r"-Wp,-MMD,\S+", "", cmd)
    cmd = re.sub(r"-c -o \S+ \S+$", f"-E -dD -o {tmp / 'out.i'} {only}", cmd.strip())
    subprocess.run(cmd, shell=True, cwd=kernel.build_dir.resolve(), check=True)
    text = (tmp / "out.i").read_text()
    macros = set(re.findall(r"^#define (\w+)", text, re.M))
    body = re.sub(r"^#.*$", "", text, flags=re.M)
    tags = set(re.findall(r"\b(?:struct|union|enum)\s+(\w+)", body))
    functions = set(re.findall(r"\b(\w+)\s*\(", body))
    return macros | tags | functions


def clashes(names: set[str]) -> set[str]:
    """The header names that NAME + a suffix of the template can be."""
    suffixes = new._c_suffixes()
    ok = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
    return {
        ident
        for ident in names
        for s in suffixes
        if ident.endswith(s) and ok.match(ident[: -len(s)])
    }


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_the_stored_header_names_cover_the_headers(kernel: Kernel, tmp_path: Path) -> None:
    new.core_symvers(kernel)
    found = clashes(header_names(kernel, tmp_path))
    assert "module_init" in found  # the computation sees the macros
    missing = sorted(found - new.KERNEL_HEADER_NAMES)
    assert not missing, f"add to KERNEL_HEADER_NAMES in tools/itmtool/new.py: {missing}"


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_a_refused_name_does_not_build_and_its_neighbour_does(
    kernel: Kernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    symvers = new.core_symvers(kernel)
    with pytest.raises(ToolError, match="module_"):
        new.AppSpec("module").check_kind("kernel")
    monkeypatch.setattr(new.AppSpec, "check_kind", lambda self, kind: None)
    for name, builds in (("module", False), ("modules", True)):
        new.render_kernel(new.AppSpec(name), tmp_path / name)
        res = new.build_module(kernel, tmp_path / name, symvers=symvers)
        assert (res.returncode == 0 and not res.diagnostics) is builds, res.log[-2000:]
