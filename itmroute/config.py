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
    datapath: auto               # who carries the packets: auto, kernel, wireguard, python
    wg_port: 7178                # datapath wireguard: the device's port (default port + 1,
                                 # or port - 4097 near 65535); relays forward on the 4096
                                 # ports above it
    mark: 0x17e0                 # firewall mark of the daemon's own sockets (1..0xffff)
    key: 6f1c...                 # the overlay's shared key: 32..64 hex digits (required)

Every field is checked when the file is read: a bad one is a `ConfigError` of
one line naming the file and the key (``a.yaml:port: 'x' is not an integer
in 1..65535``), and ``itmroute`` exits 2 with it. A file that cannot be read is
the line and exit code of :func:`libitm.files.describe_error`, as in itmtool:
5 no such file, 4 permission denied, 2 a directory, 1 another I/O error.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from libitm.files import EXIT_FAILED, describe_error
from libitm.spelling import unknown_names

from .auth import parse_key
from .wgkeys import FORWARD_PORTS

DEFAULT_PORT = 7177
#: the firewall mark of the daemon's own sockets: its packets are never captured
DEFAULT_MARK = 0x17E0


#: an ITM's address: IPv4, or IPv6 in an overlay whose ITMs talk IPv6 to each other
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ConfigError(ValueError):
    """A configuration that cannot be used (the message says why); ``code`` is the
    exit code: 2, or for a file that cannot be read itmtool's (see
    :func:`read_error`)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProbeSettings:
    """How a destination's paths are probed and chosen (times in seconds).

    The defaults are itmRoute's own. The path in use is watched the BFD way:
    probed every ``detect_interval`` and declared down when no acknowledgement
    came for ``detect_miss`` intervals (plus ``2 * rttvar`` of slack): 0.24 s
    by default. Only while packets go out (within ``quiet_after``): when none
    did, there is nothing to fail over and the path in use is probed like the
    others. The destination ITM's receipts in its own tunnelled datagrams stand
    in for the probes (the path is probed once silent for an interval). A
    destination ITM that receives our data at least every ``watch_gap`` and
    sends us nothing watches it for us: a receipt on its own every
    ``receipt_interval`` (the path in use is then probed like the others) and,
    when the data stops for ``watch_factor`` times its usual gap (at least
    ``watch_min``), a notice over every path: if we were still sending on the
    path, it is probed at once and left unless that probe is answered within
    ``max(notice_confirm, 2*srtt + 4*rttvar)``. Its
    first missed interval races probes over every path (every
    ``race_interval`` for ``race_time``), so that the others have fresh round
    trips when it is left. A path that looks clearly better is probed every
    ``active_interval``, the others every ``idle_interval``. Any probe not
    answered within ``max(min_timeout, 2*srtt + 4*rttvar)`` is lost;
    ``dead_after`` consecutive losses abandon a path too.

    The loss rate of a path is counted over its last ``loss_window`` probes,
    the first ``loss_forgive`` losses in that window forgiven (one dropped
    acknowledgement is not a lossy path). A switch to a better path needs its
    score (``srtt * (1 + loss_weight * max(0, loss - loss_floor))``) to be
    lower by ``margin`` (relative) and ``min_gain`` (absolute) at ``confirm``
    consecutive evaluations. A destination without traffic for ``idle_after``
    is not probed any more.
    """

    detect_interval: float = 0.08
    detect_miss: int = 3
    quiet_after: float = 1.0
    active_interval: float = 0.25
    idle_interval: float = 2.0
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
    loss_window: int = 100
    loss_forgive: int = 1
    loss_weight: float = 12.0
    loss_floor: float = 0.0
    hot_time: float = 3.0
    idle_after: float = 60.0
    evaluate_interval: float = 0.05
    receipt_interval: float = 1.0
    watch_gap: float = 0.07
    watch_factor: float = 4.0
    watch_min: float = 0.1
    notice_confirm: float = 0.05

    @classmethod
    def preset(cls, name: str) -> ProbeSettings:
        """``itmroute`` (the defaults) or ``ron``: RON's probing (Andersen et al.,
        SOSP 2001) — a probe every 12 s, after a loss retries every 3 s, a path is
        down after 4 consecutive losses, no races."""
        if name == "itmroute":
            return cls()
        if name == "ron":
            return cls(
                detect_interval=12.0,
                detect_miss=4,
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
    """An overlay prefix (IPv4 or IPv6) and the ITM that answers probes for it (its
    IPv4 overlay address)."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    itm: Address


@dataclass(frozen=True)
class Config:
    """A daemon's configuration (see the module docstring for the file)."""

    address: Address
    name: str = "itmroute"
    port: int = DEFAULT_PORT
    mtu: int = 1500
    neighbours: dict[str, Address] = field(default_factory=dict)
    destinations: list[Destination] = field(default_factory=list)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    backend: str = "auto"
    #: who carries the tunnelled packets: ``kernel`` (the itm_route module),
    #: ``wireguard`` (the kernel's WireGuard, :mod:`itmroute.wgpath`), ``python``
    #: (the daemon itself), ``auto`` (kernel when itm_route is loaded, else python)
    datapath: str = "auto"
    #: the WireGuard device's UDP port (``datapath: wireguard``); relays forward
    #: on the :data:`~itmroute.wgkeys.FORWARD_PORTS` ports above it
    wg_port: int = DEFAULT_PORT + 1
    mark: int = DEFAULT_MARK
    #: the overlay's shared key: every datagram carries a MAC made with it
    key: bytes = field(default=b"", repr=False)


#: a daemon's name names its state file (/run/itmroute/NAME.json): no path separators,
#: no leading dot, a length a file name takes
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: the libitm backends a daemon can run on (offline replays a pcap: not a daemon's)
DAEMON_BACKENDS = ("auto", "kernel", "nfqueue")
#: who carries the tunnelled packets (``datapath``)
DATAPATHS = ("auto", "kernel", "wireguard", "python")
#: probe settings that must be above zero (the others may be 0)
_POSITIVE = {
    "detect_interval",
    "detect_miss",
    "quiet_after",
    "loss_window",
    "active_interval",
    "idle_interval",
    "startup_interval",
    "min_timeout",
    "first_timeout",
    "dead_after",
    "race_interval",
    "confirm",
    "evaluate_interval",
    "receipt_interval",
    "watch_factor",
}
_FRACTIONS = {"rtt_alpha", "loss_floor"}


def check_name(name: object, where: str = "name") -> str:
    """A daemon name: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit
    (so that the state file stays in its directory)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{where}: {name!r} is not a daemon name (1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit)"
        )
    return name


class _Doc:
    """Where a value came from, for one-line errors: ``FILE:key.sub[2]: message``."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def error(self, key: str, message: str) -> ConfigError:
        where = f"{self.source}:{key}" if self.source else key
        return ConfigError(f"{where}: {message}")

    def addr(self, value: object, key: str, version: int | None = None) -> Address:
        """An address of IP ``version`` (4 or 6; None: either)."""
        what = f"an IPv{version}" if version else "an IPv4 or IPv6"
        if not isinstance(value, str):
            raise self.error(key, f"{value!r} is not {what} address")
        try:
            a = ipaddress.ip_address(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not {what} address") from None
        if version and a.version != version:
            raise self.error(key, f"{value!r} is not {what} address (like this ITM's own address)")
        return a

    def integer(self, value: object, key: str, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.error(key, f"{value!r} is not an integer in {lo}..{hi}")
        return value


def _probe(value: object, doc: _Doc) -> ProbeSettings:
    if value is None:
        return ProbeSettings()
    if isinstance(value, str):
        try:
            return ProbeSettings.preset(value)
        except ConfigError as e:
            raise doc.error("probe", str(e)) from None
    if not isinstance(value, dict):
        raise doc.error("probe", "a preset name (itmroute, ron) or a mapping of settings")
    value = dict(value)
    preset = value.pop("preset", "itmroute")
    try:
        base = ProbeSettings.preset(str(preset))
    except ConfigError as e:
        raise doc.error("probe.preset", str(e)) from None
    fields = {f.name: f for f in dataclasses.fields(ProbeSettings)}
    unknown = unknown_names(value, fields)
    if unknown:
        raise doc.error("probe", f"unknown settings {unknown}")
    for key, v in value.items():
        default = getattr(base, key)
        where = f"probe.{key}"
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise doc.error(where, f"{v!r} is not true or false")
        elif isinstance(default, int):
            doc.integer(v, where, 1 if key in _POSITIVE else 0, 10**6)
        else:
            if not isinstance(v, int | float) or isinstance(v, bool) or v != v:
                raise doc.error(where, f"{v!r} is not a number")
            low_ok = v > 0 if key in _POSITIVE else v >= 0
            if not low_ok or v > 86400 or (key in _FRACTIONS and v > 1):
                limit = "0..1" if key in _FRACTIONS else "0..86400"
                above = " and above 0" if key in _POSITIVE else ""
                raise doc.error(where, f"{v!r} is out of range ({limit}{above})")
            value[key] = float(v)
    return dataclasses.replace(base, **value)


def parse_config(doc: dict[str, Any], source: str | None = None) -> Config:
    """A :class:`Config` from a parsed YAML document; every field is checked.

    A bad field raises :class:`ConfigError` with one line naming it, prefixed with
    ``source:`` (the file) when given: ``/etc/itmroute.yaml:port: 'x' is not ...``.
    """
    d = _Doc(source)
    if not isinstance(doc, dict):
        what = "empty" if doc is None else f"a {type(doc).__name__}"
        raise ConfigError(f"{source or 'the configuration'}: {what}, expected a mapping")
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(str(k) for k in set(doc) - known)
    if unknown:
        raise d.error(unknown[0], f"unknown keys: {unknown_names(doc, known)}")
    if "address" not in doc:
        raise d.error("address", "address (this ITM's overlay address) is required")
    address = d.addr(doc["address"], "address")
    neighbours_doc = doc.get("neighbours") or {}
    if isinstance(neighbours_doc, list):
        neighbours_doc = {f"n{i + 1}": a for i, a in enumerate(neighbours_doc)}
    if not isinstance(neighbours_doc, dict):
        raise d.error("neighbours", "a mapping name: address (or a list of addresses)")
    neighbours = {}
    for k, v in neighbours_doc.items():
        if not isinstance(k, str) or not NAME_RE.match(k):
            raise d.error(f"neighbours.{k}", f"{k!r} is not a neighbour name")
        if k == "direct":
            raise d.error(
                "neighbours.direct",
                "'direct' names the direct path; give the neighbour another name",
            )
        neighbours[k] = d.addr(v, f"neighbours.{k}", address.version)
    dests_doc = doc.get("destinations") or []
    if not isinstance(dests_doc, list):
        raise d.error("destinations", "a list of {prefix: NET, itm: ADDRESS}")
    dests: list[Destination] = []
    for i, entry in enumerate(dests_doc):
        key = f"destinations[{i + 1}]"
        extra = unknown_names(entry, {"prefix", "itm"}) if isinstance(entry, dict) else ""
        if extra:
            raise d.error(key, f"unknown keys: {extra} (a destination has prefix, itm)")
        if not isinstance(entry, dict) or "prefix" not in entry:
            raise d.error(key, f"destination {i + 1}: needs a prefix")
        try:
            prefix = ipaddress.ip_network(str(entry["prefix"]))
        except ValueError as e:
            raise d.error(f"{key}.prefix", f"destination {i + 1}: {e}") from None
        if prefix.version != address.version and "itm" not in entry:
            raise d.error(
                f"{key}.itm",
                f"destination {i + 1}: an IPv{prefix.version} prefix needs the"
                f" IPv{address.version} address of its ITM",
            )
        itm = d.addr(entry.get("itm", str(prefix.network_address)), f"{key}.itm", address.version)
        dests.append(Destination(prefix, itm))
    port = d.integer(doc.get("port", DEFAULT_PORT), "port", 1, 65535)
    mtu_ = d.integer(doc.get("mtu", 1500), "mtu", 576, 65535)
    backend = doc.get("backend", "auto")
    if backend not in DAEMON_BACKENDS:
        raise d.error("backend", f"{backend!r} is not one of {', '.join(DAEMON_BACKENDS)}")
    datapath = doc.get("datapath", "auto")
    if datapath not in DATAPATHS:
        raise d.error("datapath", f"{datapath!r} is not one of {', '.join(DATAPATHS)}")
    name = check_name(doc.get("name", "itmroute"), f"{source}:name" if source else "name")
    # the ports above ``port`` by default, those below when they do not fit
    below = port + 1 + FORWARD_PORTS > 65535
    default_wg = port - 1 - FORWARD_PORTS if below else port + 1
    wg_port = d.integer(doc.get("wg_port", default_wg), "wg_port", 1, 65535 - FORWARD_PORTS)
    if wg_port <= port <= wg_port + FORWARD_PORTS:
        raise d.error(
            "wg_port",
            f"{wg_port}..{wg_port + FORWARD_PORTS} (the WireGuard port and the relays'"
            f" forwarding ports above it) would take port {port}",
        )
    mark = d.integer(doc.get("mark", DEFAULT_MARK), "mark", 1, 0xFFFF)
    probe = _probe(doc.get("probe"), d)
    if "key" not in doc:
        raise d.error(
            "key",
            "required: the overlay's shared key, 32..64 hex digits, the same on every ITM"
            " (make one with: itmroute genkey)",
        )
    try:
        shared_key = parse_key(doc["key"])
    except ValueError as e:
        raise d.error("key", str(e)) from None
    return Config(
        address=address,
        name=name,
        port=port,
        mtu=mtu_,
        neighbours=neighbours,
        destinations=dests,
        probe=probe,
        backend=backend,
        datapath=datapath,
        wg_port=wg_port,
        mark=mark,
        key=shared_key,
    )


def read_error(path: str | Path, err: OSError) -> ConfigError:
    """The `ConfigError` of a configuration file that cannot be read: the line and
    exit code of :func:`libitm.files.describe_error`, as itmtool reports the same
    failure (5 no such file, 4 permission denied, 2 a directory, 1 another I/O
    error)."""
    if err.filename is None:  # name the file even when the error does not
        err = type(err)(err.errno, err.strerror or str(err), str(path))
    described = describe_error(err)
    message, code = described if described is not None else (f"{path}: {err}", EXIT_FAILED)
    return ConfigError(message, code)


def load_config(path: str | Path) -> Config:
    """Read and check a YAML configuration file (`ConfigError`: one line, ``FILE:key: why``;
    a file that cannot be read: :func:`read_error`)."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise read_error(path, e) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{where}: not YAML ({problem})") from None
    return parse_config(doc, str(path))
