"""Authentication of every itmRoute datagram: a keyed MAC and a replay window.

Every datagram (tunnelled data, probe, acknowledgement) ends in a 16-byte
MAC over the whole datagram before it: Poly1305 with a one-time key, as
ChaCha20-Poly1305 (RFC 8439) computes the tag of an empty message whose
associated data is the datagram. Its key is the sender's: a keyed BLAKE2s of
the overlay's shared key (``key`` in the configuration) over
:func:`key_label` (the sender's overlay address and whether it is DATA), and
its nonce is the datagram's counter. The header carries the sender's overlay
address and that 64-bit counter: the sender's wall clock in microseconds when
it started, then one more per datagram (and never behind the clock).

Poly1305 costs about a quarter of a keyed BLAKE2s per byte in portable C (the
kernel data path's MAC was two thirds of its CPU; docs/benchmarks.md), but a
one-time key must never be used twice: no two datagrams may share a sender
key and a counter. Each kind has one sealer with one counter that only grows
(an ITM's DATA is sealed by its kernel data path or by its daemon, never by
both; the rest always by the daemon), and a sender's restart starts from its
clock, above what it sent before unless it sealed more than a million
datagrams a second for longer than it was down. Two ITMs configured with the
same overlay address break this rule (and their replay windows): do not.

A receiver keeps, per sender (the authenticated address, not the datagram's
source: a datagram replayed from elsewhere is the same sender's) and per kind
(DATA, or the rest), the highest counter it accepted and a window of the 64
below it:

* a datagram whose MAC does not verify is dropped (``auth_failed``);
* one whose counter was seen already, lies below the window, or is more than
  ``max_age`` seconds off the receiver's clock is dropped too (``replayed``):
  a captured probe or packet sent again does nothing.

A daemon that restarts starts from its clock again, above everything it sent
before. The receiver checks the MAC before it keeps any state for a sender.

An ITM with the kernel data path (itm_route) sends from one address two
sequences of counters: its kernel seals the DATA, with a counter of its own,
and its daemon the probes, acknowledgements and notices. Each is in order on
its own, not with the other (a probe the daemon sealed a moment before a burst
of DATA may arrive after it, its counter then far below the window): hence
one window per sender for DATA and one for the rest.

The key is 16..32 bytes: BLAKE2s takes no longer one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import wire

#: bytes of the MAC at the end of every datagram
TAG_LEN = wire.TAG_LEN
#: counters accepted below the highest one seen from a sender (out of order)
WINDOW = 64
#: how far (seconds) a counter may be from the receiver's clock
MAX_AGE = 60.0
#: windows kept (one per sender for DATA, one for the rest; each needs a datagram
#: that verified)
MAX_PEERS = 4096
#: bytes of the key (BLAKE2s keys are at most 32 bytes)
KEY_MIN, KEY_MAX = 16, 32


#: the start of every sender key's label (the version of the wire format in it)
LABEL: bytes = b"itmroute-3-"


def key_label(sender: bytes, data: bool) -> bytes:
    """What a sender key is derived from: :data:`LABEL`, ``D`` (DATA) or ``C``
    (probes, acknowledgements, notices), the sender's 4 or 16 address bytes."""
    return LABEL + (b"D" if data else b"C") + sender


def sender_key(key: bytes, sender: bytes, data: bool) -> bytes:
    """The 32-byte key of ``sender``'s DATA (``data``) or other datagrams."""
    return hashlib.blake2s(key_label(sender, data), key=key, digest_size=32).digest()


def nonce(counter: int) -> bytes:
    """The 12-byte ChaCha20-Poly1305 nonce of a datagram's counter: four zero
    bytes, the counter little-endian (the kernel's 64-bit-nonce layout)."""
    return b"\0\0\0\0" + counter.to_bytes(8, "little")


def mac(key: bytes, counter: int, data: bytes | bytearray | memoryview) -> bytes:
    """The 16-byte MAC of ``data`` under a sender key and ``counter``."""
    return ChaCha20Poly1305(key).encrypt(nonce(counter), b"", bytes(data))


class AuthError(ValueError):
    """A datagram refused: ``counter`` names the counter it is counted in."""

    def __init__(self, counter: str, message: str) -> None:
        super().__init__(message)
        self.counter = counter


def parse_key(text: object) -> bytes:
    """The key from its configuration form: 32..64 hex digits (16..32 bytes).

    Raises ValueError with a message that does not repeat the key.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"a string of {2 * KEY_MIN}..{2 * KEY_MAX} hex digits, not a {type(text).__name__}"
            " (put it in quotes)"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(
            f"not hex ({len(text)} characters; {2 * KEY_MIN}..{2 * KEY_MAX} hex digits wanted)"
        ) from None
    if not KEY_MIN <= len(key) <= KEY_MAX:
        longer = " (BLAKE2s keys are at most 32 bytes)" if len(key) > KEY_MAX else ""
        raise ValueError(
            f"{len(key)} bytes; {KEY_MIN}..{KEY_MAX} bytes"
            f" ({2 * KEY_MIN}..{2 * KEY_MAX} hex digits) wanted{longer}"
        )
    return key


@dataclass
class ReplayWindow:
    """The highest counter accepted from one sender and which of the 64 below it were seen."""

    highest: int = -1
    seen: int = 0  # bit i: counter highest - i accepted

    def check(self, counter: int) -> bool:
        """Whether ``counter`` is new (does not record it)."""
        if counter > self.highest:
            return True
        back = self.highest - counter
        return back < WINDOW and not (self.seen >> back) & 1

    def record(self, counter: int) -> None:
        """Record an accepted counter."""
        if counter > self.highest:
            shift = counter - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = counter
        else:
            self.seen |= 1 << (self.highest - counter)


class Sealer:
    """Seals what a daemon sends and opens what it receives."""

    def __init__(self, key: bytes, me: bytes, clock: Callable[[], float] = time.time) -> None:
        """``key``: the overlay's shared key (16..32 bytes); ``me``: this daemon's
        overlay address (4 or 16 bytes); ``clock``: wall-clock seconds."""
        if not KEY_MIN <= len(key) <= KEY_MAX:
            raise ValueError(f"a key of {len(key)} bytes; {KEY_MIN}..{KEY_MAX} bytes wanted")
        self._key = key
        self._me = me
        self._clock = clock
        self._counter = 0
        #: (sender, DATA or not) -> its window
        self._windows: dict[tuple[bytes, bool], ReplayWindow] = {}
        #: (sender, DATA or not) -> its key, ready to compute MACs
        self._aeads: dict[tuple[bytes, bool], ChaCha20Poly1305] = {}

    def _aead(self, sender: bytes, data: bool) -> ChaCha20Poly1305:
        aead = self._aeads.get((sender, data))
        if aead is None:
            if len(self._aeads) >= MAX_PEERS:
                self._aeads.clear()
            aead = ChaCha20Poly1305(sender_key(self._key, sender, data))
            self._aeads[(sender, data)] = aead
        return aead

    def next_counter(self) -> int:
        """The counter of the next datagram sent."""
        self._counter = max(self._counter + 1, int(self._clock() * 1e6))
        return self._counter

    def seal(self, kind: int, body: bytes | bytearray | memoryview) -> bytes:
        """A datagram of ``kind`` (``wire.DATA``, ``wire.PROBE``, ``wire.ACK``, with
        ``wire.RELAYED``) carrying ``body``, its MAC at the end."""
        counter = self.next_counter()
        msg = wire.header(kind, self._me, counter) + bytes(body)
        data = kind & ~wire.RELAYED == wire.DATA
        return msg + self._aead(self._me, data).encrypt(nonce(counter), b"", msg)

    def open(
        self, data: bytes | bytearray | memoryview, source: str
    ) -> tuple[int, bool, bytes, memoryview]:
        """``(type, relayed, sender, body)`` of a datagram that came from address ``source``.

        Raises :class:`wire.WireError` for what is not an itmRoute datagram and
        :class:`AuthError` for one that fails the MAC (``auth_failed``) or was
        seen before (``replayed``).
        """
        kind, relayed, sender, counter = wire.parse_header(data)
        view = memoryview(data)
        head = wire.header_len(len(sender))
        if len(view) < head + TAG_LEN:
            raise wire.WireError("datagram shorter than the header and its MAC")
        key = (sender, kind == wire.DATA)
        try:
            self._aead(*key).decrypt(nonce(counter), bytes(view[-TAG_LEN:]), view[:-TAG_LEN])
        except InvalidTag:
            raise AuthError("auth_failed", f"bad MAC from {source}") from None
        window = self._windows.get(key)
        if abs(counter / 1e6 - self._clock()) > MAX_AGE or (
            window is not None and not window.check(counter)
        ):
            raise AuthError("replayed", f"replayed or stale datagram from {source}")
        if window is None:
            if len(self._windows) >= MAX_PEERS:
                self._windows.clear()
            window = self._windows[key] = ReplayWindow()
        window.record(counter)
        return kind, relayed, sender, view[head:-TAG_LEN]
