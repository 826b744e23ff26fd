"""itmlab: network namespaces, topologies, traffic and captures for itmBench.

The one lab that the demo, the tests, the benchmarks and itmroute's overlay
share (it is not part of the CLI). Everything here runs as root and sends
traffic only between the namespaces it creates.

* :mod:`itmlab.commands`: the command runner (:func:`run`, :func:`sh`,
  :func:`ip_batch`, :func:`stop`);
* :mod:`itmlab.netns`: :func:`netns`, this thread inside a namespace;
* :mod:`itmlab.topology`: :class:`Lab`, the one topology builder, and the
  shapes built with it (:func:`topology`, :func:`chain`);
* :mod:`itmlab.kmods`: the kernel's own modules ours need, inserted by path
  (:func:`~itmlab.kmods.insmod_deps`);
* :mod:`itmlab.traffic`: :func:`udp`, :func:`tcp`, :func:`tcp_transfer`, :func:`ping`,
  :class:`FlowServer`, :func:`timed_flow`.
"""

from __future__ import annotations

from .commands import ip_batch, run, sh, stop
from .netns import netns
from .topology import Chain, Lab, Topology, chain, topology
from .traffic import V6_FIRST_WAIT, FlowServer, ping, tcp, tcp_transfer, timed_flow, udp

__all__ = [
    "V6_FIRST_WAIT",
    "Chain",
    "FlowServer",
    "Lab",
    "Topology",
    "chain",
    "ip_batch",
    "netns",
    "ping",
    "run",
    "sh",
    "stop",
    "tcp",
    "tcp_transfer",
    "timed_flow",
    "topology",
    "udp",
]
