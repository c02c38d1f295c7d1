"""Merkle root of an ordered list (a block's tx root and receipts root).

RFC 6962 / CometBFT crypto/merkle rules: leaf = H(0x00 || item), inner = H(0x01 || l || r),
n items split at k = the largest power of two strictly below n, empty list -> H(b"").
The 0x00/0x01 prefixes keep a leaf from ever being passed off as an inner node.

It is computed bottom-up, level by level: pairing neighbours and carrying an odd last
node up unchanged gives exactly the recursive RFC 6962 tree (the left part of every
split is a full power-of-two tree), without recursion and with one hash call per node.
"""
from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

__all__ = ["merkle_root", "EMPTY_MERKLE_ROOT"]

EMPTY_MERKLE_ROOT = sha256(b"").digest()


def merkle_root(items: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle root of items, in their order."""
    if not items:
        return EMPTY_MERKLE_ROOT
    level = [sha256(b"\x00" + item).digest() for item in items]
    while len(level) > 1:
        n = len(level)
        nxt = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, n - 1, 2)]
        if n & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]
