"""itmRoute's configuration: the YAML file and the probe settings.

::

    name: a                      # names the state file (/run/itmroute/a.json)
    address: 10.77.100.1         # this ITM's overlay address
    port: 7177                   # UDP port of the tunnel and the probes
    mtu: 1500                    # link MTU the tunnel runs over
    neighbours:                  # name: address of each neighbouring ITM
      r1: 10.77.1.2
    destinations:                # the overlay prefixes this ITM serves, and the
      - prefix: 10.77.200.0/24   # ITM that answers probes for each
        itm: 10.77.200.1
    probe: itmroute              # itmroute | ron | a mapping of ProbeSettings fields
    backend: auto                # libitm backend (auto, nfqueue, kernel)
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PORT = 7177
#: the firewall mark of the daemon's own sockets: its packets are never captured
DEFAULT_MARK = 0x17E0


class ConfigError(ValueError):
    """A configuration that cannot be used (the message says why)."""


@dataclass(frozen=True)
class ProbeSettings:
    """How a destination's paths are probed and chosen (times in seconds).

    The defaults are itmRoute's own: the path in use is probed every
    ``active_interval``, the others every ``idle_interval``; a probe not
    answered within ``max(min_timeout, 2*srtt + 4*rttvar)`` is lost;
    ``dead_after`` consecutive losses abandon a path; a first loss on the path
    in use (or traffic going out with nothing coming back) races probes over
    every path every ``race_interval`` for ``race_time``. A switch to a better
    path needs its score (``srtt * (1 + loss_weight * max(0, loss - loss_floor))``) to be lower by
    ``margin`` (relative) and ``min_gain`` (absolute) at ``confirm``
    consecutive evaluations. A destination without traffic for ``idle_after``
    is not probed any more.
    """

    active_interval: float = 0.25
    idle_interval: float = 1.5
    retry_interval: float = 0.0  # 0: no separate retry schedule after a loss
    startup_interval: float = 0.1
    startup_time: float = 0.6
    min_timeout: float = 0.2
    first_timeout: float = 1.0
    dead_after: int = 2
    race: bool = True
    race_interval: float = 0.1
    race_time: float = 0.3
    stall_after: float = 0.3
    stall_window: float = 3.0
    stall_holdoff: float = 2.0
    stall_max: float = 60.0
    margin: float = 0.15
    min_gain: float = 0.002
    confirm: int = 3
    rtt_alpha: float = 0.2
    loss_alpha: float = 0.05
    loss_weight: float = 12.0
    loss_floor: float = 0.03
    hot_time: float = 3.0
    idle_after: float = 60.0
    evaluate_interval: float = 0.05

    @classmethod
    def preset(cls, name: str) -> ProbeSettings:
        """``itmroute`` (the defaults) or ``ron``: RON's probing (Andersen et al.,
        SOSP 2001) — a probe every 12 s, after a loss retries every 3 s, a path is
        down after 4 consecutive losses, no races."""
        if name == "itmroute":
            return cls()
        if name == "ron":
            return cls(
                active_interval=12.0,
                idle_interval=12.0,
                retry_interval=3.0,
                dead_after=4,
                race=False,
                min_timeout=1.0,
            )
        raise ConfigError(f"unknown probe preset {name!r} (itmroute or ron)")


@dataclass(frozen=True)
class Destination:
    """An overlay prefix and the ITM that answers probes for it."""

    prefix: ipaddress.IPv4Network
    itm: ipaddress.IPv4Address


@dataclass(frozen=True)
class Config:
    """A daemon's configuration (see the module docstring for the file)."""

    address: ipaddress.IPv4Address
    name: str = "itmroute"
    port: int = DEFAULT_PORT
    mtu: int = 1500
    neighbours: dict[str, ipaddress.IPv4Address] = field(default_factory=dict)
    destinations: list[Destination] = field(default_factory=list)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    backend: str = "auto"
    mark: int = DEFAULT_MARK


def _addr(value: object, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError as e:
        raise ConfigError(f"{what}: {value!r} is not an IPv4 address") from e


def _probe(value: object) -> ProbeSettings:
    if value is None:
        return ProbeSettings()
    if isinstance(value, str):
        return ProbeSettings.preset(value)
    if not isinstance(value, dict):
        raise ConfigError("probe: a preset name or a mapping of settings")
    base = ProbeSettings.preset(str(value.pop("preset", "itmroute")))
    known = {f.name for f in dataclasses.fields(ProbeSettings)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"probe: unknown settings {', '.join(unknown)}")
    try:
        return dataclasses.replace(base, **value)
    except TypeError as e:
        raise ConfigError(f"probe: {e}") from e


def parse_config(doc: dict[str, Any]) -> Config:
    """A :class:`Config` from a parsed YAML document."""
    if not isinstance(doc, dict):
        raise ConfigError("the configuration must be a mapping")
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(unknown)}")
    if "address" not in doc:
        raise ConfigError("address (this ITM's overlay address) is required")
    neighbours_doc = doc.get("neighbours") or {}
    if isinstance(neighbours_doc, list):
        neighbours_doc = {f"n{i + 1}": a for i, a in enumerate(neighbours_doc)}
    if not isinstance(neighbours_doc, dict):
        raise ConfigError("neighbours: a mapping name: address (or a list of addresses)")
    neighbours = {str(k): _addr(v, f"neighbour {k}") for k, v in neighbours_doc.items()}
    if "direct" in neighbours:
        raise ConfigError("'direct' names the direct path; give the neighbour another name")
    dests: list[Destination] = []
    for i, d in enumerate(doc.get("destinations") or []):
        if not isinstance(d, dict) or "prefix" not in d:
            raise ConfigError(f"destination {i + 1}: needs a prefix")
        try:
            prefix = ipaddress.IPv4Network(str(d["prefix"]))
        except ValueError as e:
            raise ConfigError(f"destination {i + 1}: {e}") from e
        itm = _addr(d.get("itm", prefix.network_address), f"destination {i + 1} itm")
        dests.append(Destination(prefix, itm))
    port = int(doc.get("port", DEFAULT_PORT))
    mtu = int(doc.get("mtu", 1500))
    if not 1 <= port <= 65535:
        raise ConfigError("port must be in 1..65535")
    if not 576 <= mtu <= 65535:
        raise ConfigError("mtu must be in 576..65535")
    probe = doc.get("probe")
    return Config(
        address=_addr(doc["address"], "address"),
        name=str(doc.get("name", "itmroute")),
        port=port,
        mtu=mtu,
        neighbours=neighbours,
        destinations=dests,
        probe=_probe(dict(probe) if isinstance(probe, dict) else probe),
        backend=str(doc.get("backend", "auto")),
        mark=int(doc.get("mark", DEFAULT_MARK)),
    )


def load_config(path: str | Path) -> Config:
    """Read and check a YAML configuration file."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from e
    return parse_config(doc)
