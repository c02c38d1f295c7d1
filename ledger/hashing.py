"""The one hash function of the chain: SHA-256 (hashlib, about 2M small hashes/s here)."""
from __future__ import annotations

from hashlib import sha256

HASH_SIZE = 32
EMPTY_HASH = bytes(HASH_SIZE)


def hash_bytes(data: bytes) -> bytes:
    """32-byte SHA-256 digest."""
    return sha256(data).digest()
