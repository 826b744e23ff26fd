"""matplotlib, an optional dependency (the ``plot`` extra): imported only to draw."""

from __future__ import annotations

from typing import Any

from itmtool.errors import EXIT_UNSUPPORTED, ToolError

#: the one line that says how to get it
INSTALL_HINT = "pip install 'itmbench[plot]' (or `make setup` in a checkout)"


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; a one-line ToolError when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ToolError(
            "matplotlib is not installed: plots need it", hint=INSTALL_HINT, code=EXIT_UNSUPPORTED
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
