"""Unknown names, each with the known one it is probably a misspelling of.

Shared by the checks that refuse a name they do not know: libitm's backend
options (``ItmLoop("nfqueue", worker=2)``) and itmroute's configuration keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown_names"]


def unknown_names(found: Iterable[object], known: Iterable[str]) -> str:
    """The names of ``found`` that are not in ``known``, sorted, each followed by the
    closest known name when there is one (``worker (did you mean workers?)``);
    "" when every name is known."""
    known = sorted(set(known))
    parts = []
    for name in sorted({str(x) for x in found} - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return ", ".join(parts)
