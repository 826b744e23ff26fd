"""The one topology builder (:class:`Lab`) and the shapes the project builds with it.

A :class:`Lab` is a set of network namespaces joined by veth links, with
addresses, routes and forwarding, created with one ``ip -batch`` in the root
namespace and one per namespace, and removed whole (also when creating fails)::

    lab = Lab("itmx")                       # namespace names: itmx-<tag>-<role>
    a, r = lab.ns("a"), lab.ns("r")
    lab.link(a, "va", r, "ra", ["10.9.1.1/24"], ["10.9.1.254/24"])
    lab.ip(a, "route add default via 10.9.1.254")
    lab.forward(r)
    with lab:                               # create(); destroy() on the way out
        ...
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .commands import ip_batch
from .netns import netns


@dataclass
class Lab:
    """Namespaces, veth links, addresses, routes and forwarding; see the module doc.

    ``prefix`` and a random ``tag`` name the namespaces (``<prefix>-<tag>-<role>``,
    or exactly the role's name with ``exact=True`` in :meth:`ns`).
    """

    prefix: str = "itm"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    names: list[str] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)
    _lines: dict[str, list[str]] = field(default_factory=dict)
    _up: dict[str, list[str]] = field(default_factory=dict)
    _sysctl: list[tuple[str, str, str]] = field(default_factory=list)
    _created: bool = False

    def ns(self, role: str, *, exact: bool = False) -> str:
        """Add a namespace; returns its name."""
        name = role if exact else f"{self.prefix}-{self.tag}-{role}"
        if name not in self.names:
            self.names.append(name)
            self._lines[name] = ["link set dev lo up"]
            self._up[name] = []
        return name

    def link(
        self,
        ns1: str,
        dev1: str,
        ns2: str,
        dev2: str,
        addrs1: list[str] | tuple[str, ...] = (),
        addrs2: list[str] | tuple[str, ...] = (),
    ) -> None:
        """A veth pair ``dev1`` in ``ns1`` -- ``dev2`` in ``ns2``, each end with its
        addresses (``"10.1.2.3/24"``; IPv6 ones without duplicate detection)."""
        self._links.append(
            f"link add name {dev1} netns {ns1} type veth peer name {dev2} netns {ns2}"
        )
        for ns, dev, addrs in ((ns1, dev1, addrs1), (ns2, dev2, addrs2)):
            for a in addrs:
                self._lines[ns].append(f"addr add {a} dev {dev}" + (" nodad" if ":" in a else ""))
            self._up[ns].append(f"link set dev {dev} up")

    def via_router(
        self,
        a: str,
        r: str,
        b: str,
        left: tuple[str, str, str, str],
        right: tuple[str, str, str, str],
    ) -> None:
        """``a`` -- ``r`` -- ``b`` over IPv4: ``left`` is (a's device, its address,
        r's device, its address), ``right`` (r's device, its address, b's device, its
        address), addresses with their prefix length; ``a`` and ``b`` route
        everything through ``r``, which forwards."""
        self.link(a, left[0], r, left[2], [left[1]], [left[3]])
        self.link(r, right[0], b, right[2], [right[1]], [right[3]])
        self.ip(a, f"route add default via {left[3].split('/')[0]}")
        self.ip(b, f"route add default via {right[1].split('/')[0]}")
        self.forward(r, v6=False)

    def ip(self, ns: str, *lines: str) -> None:
        """More ``ip`` commands for ``ns`` (routes, addresses on lo, ...), run after
        its links are up."""
        self._up[ns].extend(lines)

    def forward(self, ns: str, v6: bool = True) -> None:
        """Make ``ns`` a router (IPv4, and IPv6 unless ``v6`` is False)."""
        self.sysctl(ns, "net/ipv4/ip_forward", "1")
        if v6:
            self.sysctl(ns, "net/ipv6/conf/all/forwarding", "1")

    def sysctl(self, ns: str, key: str, value: str) -> None:
        """Set ``/proc/sys/<key>`` in ``ns`` once its links exist, before their
        addresses (``net/ipv4/conf/<dev>/rp_filter``, ...)."""
        self._sysctl.append((ns, key, value))

    def create(self) -> None:
        """Build everything; on failure remove what was made, then raise."""
        try:
            ip_batch([f"netns add {n}" for n in self.names] + self._links)
            self._created = True
            for ns, key, value in self._sysctl:
                with netns(ns):  # /proc/sys/net is the opening thread's namespace's
                    Path("/proc/sys", key).write_text(value + "\n")
            for ns in self.names:
                ip_batch(self._lines[ns] + self._up[ns], ns)
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Delete the namespaces (their links, rules and queues go with them)."""
        # -force: on past a namespace that was never made
        ip_batch([f"netns del {n}" for n in self.names], force=True, check=False)
        self._created = False

    def __enter__(self) -> Lab:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@dataclass
class Topology:
    """client -- router -- server, IPv4 and IPv6, in three fresh namespaces.

    ::

        [client] c0 ---- r0 [router] r1 ---- s0 [server]
          10.77.1.2    10.77.1.1  10.77.2.1    10.77.2.2
          fd77:1::2    fd77:1::1  fd77:2::1    fd77:2::2
    """

    client: str
    router: str
    server: str
    client4: str = "10.77.1.2"
    router4: str = "10.77.1.1"
    server4: str = "10.77.2.2"
    client6: str = "fd77:1::2"
    router6: str = "fd77:1::1"
    server6: str = "fd77:2::2"


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """Create the three-namespace topology; remove it afterwards, also on failure."""
    tag = secrets.token_hex(3)
    lab = Lab()
    t = Topology(
        lab.ns(f"itmc-{tag}", exact=True),
        lab.ns(f"itmr-{tag}", exact=True),
        lab.ns(f"itms-{tag}", exact=True),
    )
    lab.link(t.client, "c0", t.router, "r0", ["10.77.1.2/24", "fd77:1::2/64"],
             ["10.77.1.1/24", "fd77:1::1/64"])  # fmt: skip
    lab.link(t.server, "s0", t.router, "r1", ["10.77.2.2/24", "fd77:2::2/64"],
             ["10.77.2.1/24", "fd77:2::1/64"])  # fmt: skip
    for ns, gw4, gw6 in (
        (t.client, "10.77.1.1", "fd77:1::1"),
        (t.server, "10.77.2.1", "fd77:2::1"),
    ):
        lab.ip(ns, f"route add default via {gw4}", f"route add default via {gw6}")
    lab.forward(t.router)
    with lab:
        yield t


@dataclass
class Chain:
    """A line of namespaces, each linked to the next by a veth pair.

    Link ``i`` joins ``names[i]`` and ``names[i+1]`` on 10.78.<i+1>.0/24: the left
    end is .1, the right end .2; interfaces are named ``l<i>`` (left end) and
    ``r<i>`` (right end).  Every namespace routes everything else towards the
    far ends, so the first and the last can talk through the middle ones.
    """

    names: list[str]

    def addr(self, index: int) -> str:
        """The address of namespace `index` (on its link towards the left, or right for 0)."""
        return "10.78.1.1" if index == 0 else f"10.78.{index}.2"

    def dev_out(self, index: int) -> str:
        """The interface of namespace `index` towards the next one."""
        return f"l{index}"


@contextlib.contextmanager
def chain(roles: list[str]) -> Iterator[Chain]:
    """Create a chain of namespaces named after `roles`; remove them afterwards."""
    tag = secrets.token_hex(3)
    lab = Lab()
    c = Chain([lab.ns(f"itm{role[:3]}-{tag}", exact=True) for role in roles])
    last = len(c.names) - 1
    for i in range(last):
        lab.link(c.names[i], f"l{i}", c.names[i + 1], f"r{i}", [f"10.78.{i + 1}.1/24"],
                 [f"10.78.{i + 1}.2/24"])  # fmt: skip
    for i, ns in enumerate(c.names):
        # routes to the subnets beyond the neighbours
        for j in range(1, last + 1):
            if j < i:
                lab.ip(ns, f"route add 10.78.{j}.0/24 via 10.78.{i}.1")
            elif j > i + 1:
                lab.ip(ns, f"route add 10.78.{j}.0/24 via 10.78.{i + 1}.2")
        if 0 < i < last:
            lab.forward(ns, v6=False)
    with lab:
        yield c
