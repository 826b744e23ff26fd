"""What every ITM of an overlay derives from the overlay key for the WireGuard data path.

Nothing is exchanged: each ITM computes every other ITM's WireGuard identity
from the overlay key it already has and the other's overlay address.

* an ITM's private key: keyed BLAKE2s (the overlay key) over ``itmroute-wg-3-K``
  and its overlay address; its public key is X25519's (RFC 7748) of it;
* one preshared key for every pair, ``itmroute-wg-3-P``: WireGuard mixes it into
  each handshake, so the overlay key is needed on top of the private keys;
* the relay's forwarding port for a destination ITM: ``wg_port + 1 + h``,
  ``h`` a keyed-less BLAKE2s of the destination's address modulo
  :data:`FORWARD_PORTS`. A sender and every relay compute the same port
  without being told; two destinations that share one are told apart by the
  relay, which relays only the first (the other's probes are not relayed
  through it, so no sender picks that path).

Whoever holds the overlay key can compute every ITM's private key: the
WireGuard path protects the overlay from those who do not (the same trust as
itmRoute's MAC), not ITMs from each other.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

#: how many UDP ports above ``wg_port`` a relay may forward on
FORWARD_PORTS = 4096
_LABEL = b"itmroute-wg-3-"


def private_key(overlay_key: bytes, address: bytes) -> bytes:
    """The WireGuard private key (32 bytes) of the ITM at ``address`` (4 or 16 bytes)."""
    return hashlib.blake2s(_LABEL + b"K" + address, key=overlay_key, digest_size=32).digest()


def public_key(private: bytes) -> bytes:
    """X25519's public key of ``private`` (which it clamps, as WireGuard does)."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def preshared_key(overlay_key: bytes) -> bytes:
    """The preshared key of every pair of the overlay's ITMs."""
    return hashlib.blake2s(_LABEL + b"P", key=overlay_key, digest_size=32).digest()


def b64(key: bytes) -> str:
    """A key the way WireGuard's tools write it (and pyroute2 takes it)."""
    return base64.b64encode(key).decode()


def forward_port(wg_port: int, target: bytes) -> int:
    """The port on which every relay forwards WireGuard traffic to ``target``."""
    h = int.from_bytes(hashlib.blake2s(_LABEL + b"F" + target, digest_size=8).digest(), "big")
    return wg_port + 1 + h % FORWARD_PORTS
