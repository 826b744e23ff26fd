"""itmRoute — overlay routing through the closest neighbouring ITM, on libitm.

Packets leaving for overlay destinations are captured at the output hook
(libitm), and either go on directly or are tunnelled in UDP through the
neighbouring ITM whose path answers small probes fastest. See docs/itmroute.md.

Modules: :mod:`.wire` (the tunnel and probe header), :mod:`.config` (the YAML
configuration and the probe settings), :mod:`.paths` (per-destination path
table: smoothed RTT and loss, hysteresis, abandonment, races), :mod:`.mtu` (MSS
clamp, ICMP "fragmentation needed"), :mod:`.daemon` (sockets and the libitm
loop), :mod:`.kernelpath` (the kernel data path: itm_route's routes out, what it
saw in), :mod:`.cli` (``itmroute run``, ``itmroute show``).
"""

from __future__ import annotations

from .config import Config, Destination, ProbeSettings, load_config
from .paths import Decision, DestState, PathState

__all__ = [
    "Config",
    "Decision",
    "DestState",
    "Destination",
    "PathState",
    "ProbeSettings",
    "load_config",
]
