"""nfnetlink_queue's transport: the queue socket, its codec and batched receive.

* :mod:`.queue`: :class:`QueueTransport`, one socket (bind, configure, receive
  batches, verdict batching), no policy;
* :mod:`.codec`: the hand-written nfnetlink_queue messages;
* :mod:`.mmsg`: ``recvmmsg`` into preallocated slots.
"""

from __future__ import annotations

from .queue import FULL_COPY, QueueTransport, Route, TransportError, socket_drops

__all__ = ["FULL_COPY", "QueueTransport", "Route", "TransportError", "socket_drops"]
