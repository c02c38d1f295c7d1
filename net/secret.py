"""The secret connection: key exchange, key derivation and per-frame sealing of p2p links.

Modelled on CometBFT's SecretConnection, with PyNaCl's primitives: each side of a link
sends a fresh ephemeral X25519 key in its hello; the shared secret, keyed into BLAKE2b over
a hash of both hellos (the transcript), gives one ChaCha20-Poly1305 key per direction; both
node keys sign the transcript (in net/p2p.py), so a man in the middle who swaps ephemeral
keys holds two different transcripts and cannot produce either signature.  Every frame
after the hellos is sealed with its direction's key and a counter nonce, the length prefix
as associated data: a flipped, injected, replayed, reordered or reflected frame fails its
tag.  Pure functions and dataclasses, no sockets; docs/p2p.md gives the exact layouts.
"""
from __future__ import annotations

from dataclasses import dataclass

import nacl.exceptions
from nacl.bindings import (crypto_aead_chacha20poly1305_ietf_ABYTES, crypto_aead_chacha20poly1305_ietf_decrypt,
                           crypto_aead_chacha20poly1305_ietf_encrypt, crypto_generichash_blake2b_salt_personal,
                           crypto_scalarmult)
from nacl.public import PrivateKey as X25519PrivateKey

EPHEMERAL_KEY_SIZE = 32
TAG_SIZE = crypto_aead_chacha20poly1305_ietf_ABYTES   # 16: a sealed payload is this much longer
LENGTH_PREFIX = 4
COUNTER_LIMIT = 1 << 64        # counters 0 .. 2**64 - 1 are used once each; then the link closes
TRANSCRIPT_PERSON = b"gc-p2p-transcrpt"   # BLAKE2b personalisation: 16 bytes each
KDF_PERSON = b"gc-p2p-secretkey"


class SecretError(Exception):
    """A key exchange or a sealed frame refused; the message is the reason."""


@dataclass(frozen=True)
class Ephemeral:
    """A fresh X25519 key pair for one link, never reused (its secret is dropped with it)."""

    secret: bytes
    public: bytes

    @classmethod
    def generate(cls) -> "Ephemeral":
        sk = X25519PrivateKey.generate()
        return cls(bytes(sk), bytes(sk.public_key))


def nonce(counter: int) -> bytes:
    """The 12-byte AEAD nonce of a frame: 4 zero bytes || the counter, 8 bytes little-endian."""
    return bytes(4) + counter.to_bytes(8, "little")


@dataclass
class Direction:
    """One direction of a link: its key and the counter of the next frame.  The sender
    seals and the receiver opens frames in the same order, so the counters agree without
    being sent; one frame out of place fails its tag."""

    key: bytes
    counter: int = 0

    def seal(self, payload: bytes) -> bytes:
        """The frame on the wire: length prefix (of the sealed payload) || sealed payload."""
        n = self._next()
        prefix = (len(payload) + TAG_SIZE).to_bytes(LENGTH_PREFIX, "big")
        return prefix + crypto_aead_chacha20poly1305_ietf_encrypt(payload, prefix, nonce(n), self.key)

    def open(self, prefix: bytes, sealed: bytes) -> bytes:
        """The payload of a frame read from the wire; SecretError if its tag does not match
        (tampered, replayed, reordered, or sealed with another key)."""
        n = self._next()
        try:
            return crypto_aead_chacha20poly1305_ietf_decrypt(sealed, prefix, nonce(n), self.key)
        except nacl.exceptions.CryptoError:
            raise SecretError(f"frame {n} failed authentication (tampered, replayed, reordered "
                              f"or sealed with another key)") from None

    def _next(self) -> int:
        n = self.counter
        if n >= COUNTER_LIMIT:
            raise SecretError(f"frame counter exhausted ({COUNTER_LIMIT} frames): the link must be redialled")
        self.counter = n + 1
        return n


@dataclass
class SecretLink:
    """The two directions of one link, from one side's point of view, and the transcript
    hash that both node keys sign."""

    send: Direction
    recv: Direction
    transcript: bytes


def transcript_hash(our_hello: bytes, our_eph: bytes, their_hello: bytes, their_eph: bytes) -> bytes:
    """BLAKE2b-256 of both ephemeral keys and both hello payloads, the side with the lower
    ephemeral key first (so both sides hash the same bytes), each hello prefixed with its
    4-byte length.  The hellos carry the ephemeral keys too; hashing them apart binds the
    keys actually used even if a caller passed a hello that does not hold them."""
    (lo, lo_eph), (hi, hi_eph) = sorted([(our_hello, our_eph), (their_hello, their_eph)], key=lambda h: h[1])
    data = lo_eph + hi_eph + len(lo).to_bytes(4, "big") + lo + len(hi).to_bytes(4, "big") + hi
    return crypto_generichash_blake2b_salt_personal(data, digest_size=32, person=TRANSCRIPT_PERSON)


def shared_secret(our_secret: bytes, their_public: bytes) -> bytes:
    """X25519(our secret, their public); SecretError for a low-order point (the result would
    be all zeros, a secret the man in the middle knows)."""
    try:
        shared = crypto_scalarmult(our_secret, their_public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.TypeError, nacl.exceptions.ValueError):
        raise SecretError("ephemeral key is a low-order point") from None
    if shared == bytes(len(shared)):
        raise SecretError("ephemeral key is a low-order point")
    return shared


def derive(ours: Ephemeral, our_hello: bytes, their_eph: bytes, their_hello: bytes) -> SecretLink:
    """Both directions' keys from the exchange: BLAKE2b-512 keyed with the shared secret over
    the transcript hash; the first 32 bytes seal frames from the side with the lower
    ephemeral key, the last 32 the other way."""
    if their_eph == ours.public:
        raise SecretError("the peer sent our own ephemeral key back")
    transcript = transcript_hash(our_hello, ours.public, their_hello, their_eph)
    okm = crypto_generichash_blake2b_salt_personal(transcript, digest_size=64,
                                                   key=shared_secret(ours.secret, their_eph), person=KDF_PERSON)
    low_to_high, high_to_low = okm[:32], okm[32:]
    if ours.public < their_eph:
        return SecretLink(Direction(low_to_high), Direction(high_to_low), transcript)
    return SecretLink(Direction(high_to_low), Direction(low_to_high), transcript)
