"""The kernel data path of a :class:`~itmroute.daemon.Router`: itm_route carries the packets.

With ``datapath: kernel`` (or ``auto`` when the itm_route module is loaded) the
daemon captures nothing: the kernel tunnels the packets to the overlay
prefixes, relays the other ITMs' DATA and delivers what is meant for this
ITM, with the daemon's wire format and MAC. The daemon keeps probing, the
choice of paths and failover, and steers the kernel through
:class:`KernelPath`:

* at start, CONFIG (overlay address, port, key, mark, the tunnel MTU) and a
  direct route for every served prefix; the daemon's netlink socket owns the
  namespace's data path: when it closes (exit, even ``kill -9``) the kernel
  drops the routes and packets go direct (fail-open);
* every tick, :meth:`KernelPath.poll` reads the kernel's routes (GET) and
  feeds each prefix's :class:`~itmroute.paths.DestState` what the capture
  applications and the DATA handler feed it on the Python path: packets out
  (``note_out``: activity), packets in (``note_in``), the peer ITM's DATA
  (``note_peer_data``: its path tag, relay and pace) and the receipts it
  carried (``note_heard``); then :meth:`KernelPath.push` sets the route of
  every prefix whose path (relay, target, tag) or receipt changed.

The ages the kernel reports are milliseconds before the GET: an event is at
``now - age``, ``now`` read just before the request. What is new since the
previous poll is told by the route's counters where there are some (packets
out, the peer's packets) and otherwise by a time later than the last one
noted by more than :data:`SAME` (the same event read twice differs by the
kernel's clock tick, a jiffy, and the request's own latency).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .config import Config, ConfigError, Destination
from .paths import DestState

if TYPE_CHECKING:
    from libitm.control.route import KernelState, RouteSpec, RouteState

log = logging.getLogger("itmroute")

#: the generic netlink family of the itm_route module (spec/itm_route.yaml)
FAMILY = "itm_route"
#: routes the kernel takes per network namespace (ITMR_MAX_ROUTES)
MAX_ROUTES = 64
#: two reports of one event at most this far apart (seconds) are the same event: the
#: kernel counts ages in jiffies (4 ms at HZ=250, 10 ms at HZ=100), and the request
#: itself takes a moment after ``now`` is read
SAME = 0.015

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DatapathError(Exception):
    """The kernel data path cannot be used (one line; ``itmroute run`` exits 1)."""


class KernelPathMissing(ConfigError):
    """``datapath: kernel`` and the itm_route module is not loaded (exit 2, like
    every configuration that cannot be used)."""


class RouteClient(Protocol):
    """What :class:`KernelPath` needs of :class:`libitm.control.route.ItmRouteClient`."""

    def config(
        self,
        *,
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
        port: int,
        key: bytes,
        mtu: int,
        mark: int,
        family: int | None = None,
    ) -> None: ...

    def route_set(self, route: RouteSpec) -> None: ...

    def route_del(self, prefix: Network | str) -> None: ...

    def get(self) -> tuple[KernelState | None, list[RouteState]]: ...

    def unconfig(self) -> None: ...

    def close(self) -> None: ...


def _connect() -> RouteClient:
    from libitm.control.route import ItmRouteClient

    return ItmRouteClient()


def _family_exists() -> bool | None:
    """Whether the itm_route family is registered (None: the lookup failed)."""
    from libitm.genl import family_id

    try:
        return family_id(FAMILY) is not None
    except OSError:
        return None


def _itm_active() -> bool | None:
    """Whether itm_mod's hooks run in this network namespace (None: cannot tell)."""
    from libitm.control import ItmControl, ItmControlError

    try:
        with ItmControl() as ctl:
            return ctl.netns_active()
    except (ItmControlError, OSError):
        return None


def describe(err: Exception, owner: int | None = None) -> str:
    """One line about an error of the kernel data path (``owner``: the pid that owns
    the namespace's data path, for EBUSY)."""
    code = getattr(err, "code", None)
    text = f"kernel data path: {err}"
    if code == errno.EBUSY:
        who = f"pid {owner}, another itmroute daemon," if owner else "another itmroute daemon"
        text += (
            f" ({who} owns this network namespace's kernel data path;"
            " stop it, or run this one with --datapath python)"
        )
    elif code == errno.EPERM:
        text += " (needs CAP_NET_ADMIN)"
    return text


def choose(
    setting: str,
    *,
    connect: Callable[[], RouteClient] | None = None,
    exists: Callable[[], bool | None] | None = None,
    itm_active: Callable[[], bool | None] | None = None,
) -> RouteClient | None:
    """The itm_route client of the data path ``setting`` (None: the daemon's own).

    ``python``: None. ``kernel``: a client, or :class:`KernelPathMissing` when
    the module is not loaded. ``auto``: a client when the module is loaded,
    else None. Says which in the log. ``connect`` opens the client (tests give a
    fake one); ``exists`` tells first whether the family exists without
    importing pyroute2 (the Python data path never needs it); ``itm_active``
    whether itm_mod's hooks run in this namespace (itm_route's applications run
    only there): when they do not, ``kernel`` is refused and ``auto`` takes the
    daemon's own path.
    """
    if setting == "python":
        log.info("data path: python (datapath: python)")
        return None
    if setting not in ("auto", "kernel"):
        raise ConfigError(f"datapath: {setting!r} is not one of auto, kernel, python")
    client: RouteClient | None = None
    if connect is not None or (exists or _family_exists)() is not False:
        from libitm.control.route import ItmRouteError, ItmRouteNotLoaded

        try:
            client = (connect or _connect)()
        except ItmRouteNotLoaded:
            client = None
        except ItmRouteError as e:
            raise DatapathError(describe(e)) from None
    if client is not None and (itm_active or _itm_active)() is False:
        client.close()
        if setting == "kernel":
            raise KernelPathMissing(
                "datapath: kernel, but itm_mod's hooks do not run in this network namespace:"
                " attach them with `itmtool netns on` (or load itm_mod with all_netns=1),"
                " or use datapath auto or python"
            )
        log.info("data path: python (itm_mod's hooks do not run in this network namespace)")
        return None
    if client is None:
        if setting == "kernel":
            raise KernelPathMissing(
                "datapath: kernel, but the itm_route module is not loaded (no 'itm_route'"
                " generic netlink family): load it with `itmtool load itm_route`,"
                " or use datapath auto or python"
            )
        log.info("data path: python (the itm_route module is not loaded)")
        return None
    log.info("data path: kernel (the itm_route module carries the tunnelled packets)")
    return client


@dataclass
class _Seen:
    """What was last noted from one route's report."""

    sent: int = 0  # tunnelled + direct
    tunnelled: int = 0
    out: float = -1e9
    peer_packets: int = 0
    heard: float = -1e9


class KernelPath:
    """Steers itm_route for one Router: routes out, what the kernel saw in."""

    def __init__(
        self,
        client: RouteClient,
        cfg: Config,
        dests: list[tuple[Destination, DestState]],
        tunnel_mtu: int,
        clock: Callable[[], float],
    ) -> None:
        """``dests``: the Router's served prefixes and their path tables;
        ``tunnel_mtu``: the largest inner packet tunnelled; ``clock``: the
        Router's. Nothing is sent before :meth:`start`."""
        self.client = client
        self.cfg = cfg
        self.dests = dests
        self.tunnel_mtu = tunnel_mtu
        self.clock = clock
        self._by_prefix: dict[Network, DestState] = {d.prefix: st for d, st in dests}
        self._pushed: dict[Network, RouteSpec] = {}
        self._seen: dict[Network, _Seen] = {d.prefix: _Seen() for d, _ in dests}
        self._via: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        #: the kernel's namespace counters at the last poll
        self.stats: dict[str, int] = {}
        #: the kernel's routes at the last poll
        self.routes: list[RouteState] = []
        self.pushes = 0
        self.errors = 0
        self._closed = False

    # ------------------------------------------------------------ start, stop
    def start(self) -> None:
        """CONFIG, and a direct route for every served prefix. On an error the
        client is closed and :class:`DatapathError` says why in one line."""
        from libitm.control.route import ItmRouteError

        cfg = self.cfg
        try:
            if len(self.dests) > MAX_ROUTES:
                raise DatapathError(
                    f"kernel data path: {len(self.dests)} destination prefixes; itm_route takes"
                    f" {MAX_ROUTES} (use datapath: python)"
                )
            self.client.config(
                addr=cfg.address, port=cfg.port, key=cfg.key, mtu=self.tunnel_mtu, mark=cfg.mark
            )
            for d, st in self.dests:
                route = self._route(d, st, None)
                self.client.route_set(route)
                self._pushed[d.prefix] = route
        except ItmRouteError as e:
            owner = self._owner() if e.code == errno.EBUSY else None
            self.close()
            raise DatapathError(describe(e, owner)) from None
        except BaseException:
            self.close()
            raise

    def _owner(self) -> int | None:
        """The pid that configured the namespace (GET needs no privilege), if any."""
        from libitm.control.route import ItmRouteError

        try:
            state, _ = self.client.get()
        except ItmRouteError:
            return None
        return state.pid if state is not None else None

    def close(self) -> None:
        """Remove the configuration and routes (packets go direct) and close the socket."""
        if self._closed:
            return
        self._closed = True
        from libitm.control.route import ItmRouteError

        try:
            self.client.unconfig()
        except ItmRouteError as e:
            log.debug("itm_route unconfig: %s", e)  # closing the socket does the same
        finally:
            self.client.close()

    # ------------------------------------------------------------ routes out
    def _route(self, d: Destination, st: DestState, now: float | None) -> RouteSpec:
        from libitm.control.route import RouteSpec

        path = st.current_path
        via = None
        if path.via is not None:
            via = self._via.get(path.via)
            if via is None:
                via = self._via[path.via] = ipaddress.ip_address(path.via)
        # a receipt rides only in tunnelled DATA: none on a direct route (no churn)
        receipt = st.receipt_due(now) if via is not None and now is not None else None
        return RouteSpec(d.prefix, d.itm, via, st.tag(path), receipt)

    def push(self, now: float) -> int:
        """Set the route of every prefix whose relay, tag or receipt changed; returns
        how many were set (a refused one is retried at the next call)."""
        from libitm.control.route import ItmRouteError

        n = 0
        for d, st in self.dests:
            want = self._route(d, st, now)
            if self._pushed.get(d.prefix) == want:
                continue
            try:
                self.client.route_set(want)
            except ItmRouteError as e:
                self._trouble(f"route of {d.prefix}", e)
                continue
            self._pushed[d.prefix] = want
            n += 1
        self.pushes += n
        return n

    # ------------------------------------------------------------ what came in
    def poll(self) -> None:
        """Read the kernel's routes and counters and feed each prefix's path table."""
        from libitm.control.route import ItmRouteError

        now = self.clock()  # the ages count back from the request
        try:
            state, routes = self.client.get()
        except ItmRouteError as e:
            self._trouble("GET", e)
            return
        if state is None:
            self._trouble("GET", RuntimeError("the namespace is not configured any more"))
            return
        self.stats = dict(state.stats)
        self.routes = routes
        peers: list[tuple[float, int, DestState, RouteState]] = []
        for r in routes:
            st = self._by_prefix.get(r.prefix)
            if st is None:
                continue
            seen = self._seen[r.prefix]
            self._feed_out(r, st, seen, now)
            if r.in_age is not None and now - r.in_age > st.last_in:
                st.note_in(now - r.in_age)
            packets = r.peer_packets - seen.peer_packets
            if packets < 0:  # the counter went back (a new route): count from zero
                packets = r.peer_packets
            seen.peer_packets = r.peer_packets
            if packets > 0 and r.peer_age is not None and r.peer_tag is not None:
                peers.append((now - r.peer_age, packets, st, r))
            if r.heard_age is not None and r.heard_receipt is not None:
                t = now - r.heard_age
                if t > seen.heard + SAME:
                    seen.heard = t
                    st.note_heard(r.heard_receipt, t)
        # prefixes behind one ITM share its table: their peer data goes in in time order
        for t, packets, st, r in sorted(peers, key=lambda e: e[0]):
            assert r.peer_tag is not None
            via = None if r.peer_via is None else str(r.peer_via)
            if t < st.peer_at:  # older than another prefix's: it only adds packets
                t, tag, via = st.peer_at, st.peer_tag, st.peer_via
            else:
                tag = r.peer_tag
            st.note_peer_data(tag, t, via, packets=packets)

    def _feed_out(self, r: RouteState, st: DestState, seen: _Seen, now: float) -> None:
        """Packets to the prefix: activity (``note_out``), and the receipts they carried."""
        if r.out_age is None:
            return
        t = now - r.out_age
        sent = r.tunnelled + r.direct
        if sent != seen.sent or t > seen.out + SAME:
            seen.out = t
            if t > st.last_out:
                st.note_out(t)
        seen.sent = sent
        if r.tunnelled != seen.tunnelled and r.receipt is not None:
            st.note_receipt_sent(t)  # our DATA carried a receipt: no NOTICE owed for it
        seen.tunnelled = r.tunnelled

    def _trouble(self, what: str, e: Exception) -> None:
        self.errors += 1
        if self.errors <= 10 or self.errors % 1000 == 0:
            log.warning("itm_route %s failed: %s (%d errors)", what, e, self.errors)

    # ------------------------------------------------------------ show
    def snapshot(self) -> dict[str, Any]:
        """The kernel's counters for ``itmroute show`` (key ``kernel``)."""
        return {"kernel": dict(self.stats)}
