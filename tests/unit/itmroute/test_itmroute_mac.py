"""itmRoute's MAC, pinned by a reference written from RFC 8439 alone.

The kernel data path (kernel/itm_route/tunnel.c, the kernel's
chacha20poly1305 library) and the daemon (itmroute/auth.py, the
cryptography package) must compute the same tag: a ChaCha20-Poly1305 tag of
an empty message whose associated data is the datagram, under the sender's
key (a keyed BLAKE2s over the label), its counter the 64-bit nonce. This
file computes it from the RFC's two primitives in plain Python, so a change
of layout on either side (label, nonce bytes, padding, lengths) fails here,
not only in the VM's interoperability test.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from itmroute import auth, wire

KEY = bytes(range(32))
A, D = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
M32 = 0xFFFFFFFF


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & M32


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & M32
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & M32
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32
    s[b] = _rotl(s[b] ^ s[c], 7)


def chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3."""
    init = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    init += [*struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce)]
    s = list(init)
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12)
        _quarter(s, 1, 5, 9, 13)
        _quarter(s, 2, 6, 10, 14)
        _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15)
        _quarter(s, 1, 6, 11, 12)
        _quarter(s, 2, 7, 8, 13)
        _quarter(s, 3, 4, 9, 14)
    return struct.pack("<16I", *((x + y) & M32 for x, y in zip(s, init, strict=True)))


def poly1305(key: bytes, msg: bytes) -> bytes:
    """RFC 8439 section 2.5."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        block = msg[i : i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def reference_tag(key: bytes, counter: int, ad: bytes) -> bytes:
    """RFC 8439 section 2.8's tag with no ciphertext; nonce 0000 || counter (LE)."""
    nonce = b"\0\0\0\0" + counter.to_bytes(8, "little")
    otk = chacha20_block(key, 0, nonce)[:32]
    pad = bytes(-len(ad) % 16)
    return poly1305(otk, ad + pad + struct.pack("<QQ", len(ad), 0))


def test_the_reference_primitives_give_the_rfcs_vectors() -> None:
    # RFC 8439 2.5.2 (Poly1305) and 2.3.2 (the ChaCha20 block function)
    key = bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    assert poly1305(key, b"Cryptographic Forum Research Group").hex() == (
        "a8061dc1305136c6c22b8baf0c0127a9"
    )
    block = chacha20_block(bytes(range(32)), 1, bytes.fromhex("000000090000004a00000000"))
    assert block[:16].hex() == "10f1e7e4d13b5915500fdd1fa32071c4"


@pytest.mark.parametrize("kind", [wire.DATA, wire.DATA | wire.RELAYED, wire.PROBE, wire.ACK])
@pytest.mark.parametrize("sender", [A, bytes(range(16))])
def test_a_sealed_datagram_carries_the_reference_tag(kind: int, sender: bytes) -> None:
    sealer = auth.Sealer(KEY, sender, lambda: 1_800_000_000.0)
    body = bytes(wire.Probe(wire.PROBE, 7, A, D).body()) if kind & 0x7F != wire.DATA else b""
    msg = sealer.seal(kind, body + bytes(range(200)))
    counter = struct.unpack_from(">Q", msg, 4 + len(sender))[0]
    data = kind & ~wire.RELAYED == wire.DATA
    label = b"itmroute-3-" + (b"D" if data else b"C") + sender
    skey = hashlib.blake2s(label, key=KEY, digest_size=32).digest()
    assert auth.sender_key(KEY, sender, data) == skey
    assert msg[-16:] == reference_tag(skey, counter, msg[:-16])
    assert auth.mac(skey, counter, msg[:-16]) == msg[-16:]


def test_keys_differ_by_sender_and_kind_so_no_two_sealers_share_a_nonce() -> None:
    keys = {auth.sender_key(KEY, s, d) for s in (A, D) for d in (True, False)}
    assert len(keys) == 4


def test_a_tag_made_under_another_kinds_key_fails() -> None:
    """A probe sealed with the DATA key (the kernel's) of its sender is refused."""
    sealer = auth.Sealer(KEY, A, lambda: 1_800_000_000.0)
    msg = bytearray(sealer.seal(wire.PROBE, wire.Probe(wire.PROBE, 1, A, D).body()))
    counter = struct.unpack_from(">Q", msg, 8)[0]
    msg[-16:] = auth.mac(auth.sender_key(KEY, A, True), counter, msg[:-16])
    with pytest.raises(auth.AuthError, match="bad MAC"):
        auth.Sealer(KEY, D, lambda: 1_800_000_000.0).open(bytes(msg), "10.0.0.1")
