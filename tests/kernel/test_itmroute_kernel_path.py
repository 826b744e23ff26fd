"""itmroute with ``datapath: kernel``: the daemons probe, choose and fail over as
on their own data path, and itm_route (kernel/itm_route) carries the packets.

::

                 +---- R1 ----+           R1: 40 ms round trip (the best)
     [A] --------+            +-------- [D]
      |          +---- R2 ----+           R2: 80 ms
      +------------- direct -------------+    160 ms

A stream of 100 datagrams a second from A to D goes through a relay (R1 unless
a loaded emulator's noise says otherwise), in the kernel; that relay is cut and
the daemons move the stream to another path, the kernel's routes follow;
the stopped daemons leave no configuration behind. The module's own behaviour
(tunnel, relay, delivery, forgeries, kill -9) is tests/kernel/test_itm_route.py.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from itmlab import netns
from itmroute.lab import Overlay, SeqStream, load_stock_modules, overlay, stream_across_cut
from libitm.control.route import ItmRouteClient
from tests.kernel import kit

D_NET = ipaddress.ip_network("10.77.200.0/24")
RELAYS = ("r1", "r2")


def _current(ov: Overlay) -> str | None:
    dests = ov.router("a").snapshot()["destinations"]
    return str(dests[0].get("current")) if dests else None


def test_the_daemons_choose_the_paths_and_the_kernel_carries_the_packets() -> None:
    """itmroute with ``datapath: kernel``: the daemons probe, choose and fail over as
    on their own data path; itm_route tunnels, relays and delivers the stream."""
    load_stock_modules()
    with kit.modules():
        kit.insmod("itm_route")
        try:
            with overlay("itmd", 2, datapath="kernel") as ov:
                for ns in (ov.a, ov.d, *ov.relays):
                    kit.itm_attach(ns)
                # R1 the fastest, then R2, the direct path the slowest (round trips, ms)
                ov.set_paths({0: (160, 0, 0), 1: (40, 0, 0), 2: (80, 0, 0)})
                ov.start_threads(["d", "r1", "r2", "a"])
                a = ov.router("a")
                assert a.snapshot()["datapath"] == "kernel"
                stream = SeqStream(ov, rate=100, port=5700)
                try:
                    stream.run(6.0)
                finally:
                    stream.close()
                if _current(ov) not in RELAYS:
                    # under TCG beside other guests the measured round trips are
                    # noise (330-730 ms for netem's 40-160 in CI's rehearsal): more
                    # rounds, with traffic (an idle destination is not probed)
                    more = SeqStream(ov, rate=100, port=5702)
                    try:
                        more.run(14.0)
                    finally:
                        more.close()
                # R1 is the fastest, but which relay wins under that noise is not
                # this test's business (test_itmroute.py's): the kernel must carry
                # the packets through the relay the daemons chose.  The daemon may
                # still change its mind between two reads (seen under TCG: it chose
                # R1 while the kernel still had R2's route), so the kernel has a few
                # seconds to follow the daemon's latest choice
                seen: dict[str, Any] = {}

                def kernel_follows() -> bool:
                    relay = _current(ov)
                    with netns(ov.a), ItmRouteClient() as watch:
                        state, routes = watch.get()
                    vias = [r.via for r in routes if r.prefix == D_NET]
                    seen.update(relay=relay, state=state, routes=routes)
                    # the relay as A sees it: 10.77.<index>.2
                    return relay in RELAYS and vias == [
                        ipaddress.ip_address(f"10.77.{relay.removeprefix('r')}.2")
                    ]

                assert kit.wait_until(kernel_follows, timeout=10.0, step=0.5), seen
                relay, state = str(seen["relay"]), seen["state"]
                index = int(relay.removeprefix("r"))
                if state is not None and state.stats["tunnelled"] <= 50:
                    # the daemons chose the relay after the streams ended (seen on
                    # the debug kernel under TCG at host load 4-7: every packet had
                    # gone direct): the kernel must carry the next ones through it
                    again = SeqStream(ov, rate=100, port=5703)
                    try:
                        again.run(3.0)
                    finally:
                        again.close()
                    with netns(ov.a), ItmRouteClient() as watch:
                        state, _ = watch.get()
                assert state is not None and state.stats["tunnelled"] > 50, (state, seen)
                # the relay in use cut: the daemons leave it, the kernel follows
                _, gap, seen_cut = stream_across_cut(ov, index, 5701)
                print("kernel data path, failover gap (s):", gap, seen_cut)
                assert gap <= 6.0, (gap, seen_cut, a.snapshot())
                assert _current(ov) != relay
                ov.stop_daemons()
                with netns(ov.a), ItmRouteClient() as watch:
                    assert watch.get() == (None, [])  # a stopped daemon leaves nothing
        finally:
            kit.rmmod("itm_route")
