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
and prints the counters when the loop ends (also on Ctrl-C: then
``interrupted`` is true and itmtool exits 130).

The offline files are checked before the application file is even imported
(`libitm.files.check_offline_paths`: ``--out`` or ``--log`` naming the input is
refused). A file that does not import, or whose ``apps()``, classes or
``main`` raise, is reported in one line: ``FILE:LINE: ErrorType: message``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from itmtool.errors import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_PERM,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    ToolError,
)


def _where(err: BaseException, path: Path | None = None) -> str:
    """FILE:LINE of where ``err`` happened: the innermost frame outside importlib and
    this module; ``path`` (the application file) when the error has no such frame
    (a call of the file's function with the wrong arguments, a file that is not
    text)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}"
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if not f.filename.startswith("<frozen") and f.filename != __file__
    ]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return str(path) if path is not None else "?"


def user_code_error(err: BaseException, what: str = "", path: Path | None = None) -> ToolError:
    """The one-line report of an exception raised by an application file's code."""
    if isinstance(err, SyntaxError):
        text = f"SyntaxError: {err.msg}"
    elif isinstance(err, SystemExit):
        text = f"SystemExit({err.code!r})"
    else:
        text = f"{type(err).__name__}: {err}"
    return ToolError(f"{_where(err, path)}: {what}{text}", code=EXIT_FAILED)


#: the module name an application file is imported as: its own stem could be a
#: package itmtool itself uses (an application file called libitm.py)
_MODULE_PREFIX = "itmtool_app_"


def load_file(path: Path) -> ModuleType:
    """Import an application file as a module (its directory goes on sys.path)."""
    if path.is_dir():
        raise ToolError(f"{path} is a directory, not an application file", code=EXIT_USAGE)
    if not path.is_file():
        raise ToolError(f"no such application file: {path}", code=EXIT_NOT_FOUND)
    if path.suffix != ".py":
        raise ToolError(f"{path} is not a Python file", code=EXIT_USAGE)
    sys.path.insert(0, str(path.resolve().parent))
    name = _MODULE_PREFIX + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ToolError(f"cannot import {path}", code=EXIT_USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except UnicodeDecodeError as err:
        del sys.modules[name]
        raise ToolError(
            f"{path} is not Python source text ({err.reason} at byte {err.start})",
            code=EXIT_USAGE,
        ) from err
    except (Exception, SystemExit) as err:
        del sys.modules[name]
        raise user_code_error(err, path=path) from err
    return module


def find_apps(module: ModuleType, path: Path | None = None) -> list[Any] | None:
    """The applications a module offers (ways 1 and 2), or None to call its `main`
    (``path``: the file as the user named it, for messages)."""
    from libitm import Application

    path = path or Path(module.__file__ or module.__name__)
    factory = getattr(module, "apps", None)
    if callable(factory):
        try:
            got = factory()
        except (Exception, SystemExit) as err:
            raise user_code_error(err, "in apps(): ", path) from err
        try:
            found = list(got)
        except TypeError:
            found = []
        if not found:
            raise ToolError(
                f"{path}: apps() returned {got!r}; it returns a list of libitm.Application "
                "or ItmInfo objects, at least one",
                code=EXIT_USAGE,
            )
        return found
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Application)
        and obj is not Application
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    built = []
    for cls in classes:
        try:
            built.append(cls())
        except (Exception, SystemExit) as err:
            raise user_code_error(err, f"building {cls.__name__}(): ", path) from err
    return built or None


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
    workers: int = 1,
) -> dict[str, Any]:
    """Run the applications of `path`; returns the summary (`--json` shape).

    ``workers`` > 1 runs them in that many processes (the kernel or the nfqueue
    backend, not offline)."""
    from libitm import BackendUnavailable, ItmLoop, LabelInUse
    from libitm.files import check_offline_paths

    options = backend_options(backend, pcap, out, log)
    if options:
        check_offline_paths(options["pcap"], options["out"], options["log"])
    if workers > 1 and (options or backend == "offline"):
        raise ToolError(
            "--workers goes with a live backend (kernel or nfqueue), not offline",
            code=EXIT_USAGE,
        )
    module = load_file(path)
    apps = find_apps(module, path)
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
        if workers > 1:
            argv += ["--workers", str(workers)]
        rc = _call_main(main, argv + list(extra or []), path)
        if rc == EXIT_USAGE and workers > 1:
            print(
                f"hint: itmtool passed --workers {workers} to {path.name}'s main(); a main() "
                "takes it (examples/port_blocker.py does), or the file offers apps() instead",
                file=sys.stderr,
            )
        return {"file": str(path), "mode": "main", "argv": argv + list(extra or []), "exit": rc}
    if extra:
        raise ToolError(
            f"{path} defines its applications: it takes no arguments after --", code=EXIT_USAGE
        )
    loop_backend = "offline" if options else backend
    if workers > 1:
        options = {"workers": workers}
    loop = ItmLoop(loop_backend, strict=False, **options)
    for app in apps:
        if getattr(app, "hook", None) is None:
            raise ToolError(
                f"{path}: application {getattr(app, 'label', app)!r} has no hook", code=EXIT_USAGE
            )
        loop.register_hook(app.hook, app)
    interrupted = False
    try:
        loop.run(duration=duration)
    except KeyboardInterrupt:
        interrupted = True  # the loop cleaned up; the counters so far are shown
    except LabelInUse as err:
        raise ToolError(str(err), code=EXIT_FAILED) from None
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
        "interrupted": interrupted,
    }


def _call_main(main: Callable[[list[str]], Any], argv: list[str], path: Path) -> int:
    """``main(argv)``'s exit code, with ``sys.argv`` as if the file ran as a program
    (an argparse parser then names the file in its messages, not itmtool)."""
    saved = sys.argv
    sys.argv = [str(path), *argv]
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    except Exception as err:
        raise user_code_error(err, "in main(): ", path) from err
    finally:
        sys.argv = saved
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
    lost = summary.get("backend_counters", {}).get("ring_lost", 0)
    if lost:
        lines.append(
            f"observer copies lost: {lost} (the BPF ring was full: the observers fell "
            "behind; the packets went on)"
        )
    return f"backend {summary['backend']}\n" + "\n".join(lines)


def dumps(summary: dict[str, Any]) -> str:
    """The `--json` text."""
    return json.dumps(summary, indent=2, default=str)
