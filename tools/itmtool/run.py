"""`itmtool run APP.py`: start a user-space (libitm) application.

An application file gives itmtool its applications in one of three ways, tried
in this order:

1. a function ``apps()`` returning `libitm.Application` or `libitm.ItmInfo`
   objects (an ``ItmInfo`` needs its ``hook`` set) — what ``itmtool new user``
   generates;
2. `libitm.Application` subclasses defined in the file, each built with no
   arguments (e.g. examples/qos_ctrl.py);
3. a function ``main(argv)``: the file's own command line, called with the
   backend options and whatever follows ``--`` (e.g. examples/port_blocker.py).

For 1 and 2 itmtool builds the `libitm.ItmLoop`, runs it on the chosen backend
and prints the counters when the loop ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from itmtool.errors import EXIT_NOT_FOUND, EXIT_PERM, EXIT_UNSUPPORTED, EXIT_USAGE, ToolError


def load_file(path: Path) -> ModuleType:
    """Import an application file as a module (its directory goes on sys.path)."""
    if not path.is_file():
        raise ToolError(f"no such application file: {path}", code=EXIT_NOT_FOUND)
    if path.suffix != ".py":
        raise ToolError(f"{path} is not a Python file", code=EXIT_USAGE)
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ToolError(f"cannot import {path}", code=EXIT_USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def find_apps(module: ModuleType) -> list[Any] | None:
    """The applications a module offers (ways 1 and 2), or None to call its `main`."""
    from libitm import Application

    factory = getattr(module, "apps", None)
    if callable(factory):
        return list(factory())
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Application)
        and obj is not Application
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    if classes:
        return [cls() for cls in classes]
    return None


def backend_options(
    backend: str, pcap: str | None, out: str | None, log: str | None
) -> dict[str, Any]:
    """The `ItmLoop` options for the command-line choices (offline needs --pcap)."""
    if pcap and backend in ("auto", "offline"):
        return {"pcap": pcap, "out": out, "log": log}
    if backend == "offline":
        raise ToolError("the offline backend needs --pcap IN (and --out OUT)", code=EXIT_USAGE)
    if pcap or out or log:
        raise ToolError(
            f"--pcap/--out/--log go with the offline backend, not {backend}", code=EXIT_USAGE
        )
    return {}


def run_app(
    path: Path,
    *,
    backend: str = "auto",
    pcap: str | None = None,
    out: str | None = None,
    log: str | None = None,
    duration: float | None = None,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run the applications of `path`; returns the summary (`--json` shape)."""
    from libitm import BackendUnavailable, ItmLoop

    options = backend_options(backend, pcap, out, log)
    module = load_file(path)
    apps = find_apps(module)
    if apps is None:
        main: Callable[[list[str]], Any] | None = getattr(module, "main", None)
        if not callable(main):
            raise ToolError(
                f"{path} has no applications",
                hint="define apps() returning libitm.Application objects, a libitm.Application "
                "subclass, or main(argv) (`itmtool new user NAME` makes a working example)",
                code=EXIT_USAGE,
            )
        argv = ["--backend", "offline" if options else backend]
        for key in ("pcap", "out", "log"):
            if options.get(key):
                argv += [f"--{key}", str(options[key])]
        if duration is not None:
            argv += ["--duration", str(duration)]
        rc = _call_main(main, argv + list(extra or []))
        return {"file": str(path), "mode": "main", "argv": argv, "exit": rc}
    if extra:
        raise ToolError(
            f"{path} defines its applications: it takes no arguments after --", code=EXIT_USAGE
        )
    loop_backend = "offline" if options else backend
    loop = ItmLoop(loop_backend, strict=False, **options)
    for app in apps:
        if getattr(app, "hook", None) is None:
            raise ToolError(
                f"{path}: application {getattr(app, 'label', app)!r} has no hook", code=EXIT_USAGE
            )
        loop.register_hook(app.hook, app)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            loop.run(duration=duration)
    except BackendUnavailable as err:
        code = EXIT_PERM if "root" in str(err) or "CAP_NET_ADMIN" in str(err) else EXIT_UNSUPPORTED
        raise ToolError(
            f"the {loop_backend} backend cannot run here: {err}",
            hint="try --backend offline --pcap IN --out OUT (no root needed)",
            code=code,
        ) from None
    finally:
        loop.close()
    counters = loop.counters()
    return {
        "file": str(path),
        "mode": "apps",
        "backend": loop_backend,
        "apps": counters["apps"],
        "backend_counters": counters["backend"],
        "malformed": counters["malformed"],
    }


def _call_main(main: Callable[[list[str]], Any], argv: list[str]) -> int:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc if isinstance(rc, int) else (0 if rc is None else 1)


def table(summary: dict[str, Any]) -> str:
    """The counters of a finished run, for people."""
    if summary["mode"] == "main":
        return f"{summary['file']}: main({' '.join(summary['argv'])}) exited {summary['exit']}"
    cols = ("packets", "classified", "accepted", "dropped", "modified", "errors")
    rows = [["LABEL", *(c.upper() for c in cols)]]
    rows += [[label, *(str(c[k]) for k in cols)] for label, c in summary["apps"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return f"backend {summary['backend']}\n" + "\n".join(lines)


def dumps(summary: dict[str, Any]) -> str:
    """The `--json` text."""
    return json.dumps(summary, indent=2, default=str)
