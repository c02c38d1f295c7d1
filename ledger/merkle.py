"""Merkle roots and audit paths of an ordered list (tx root, receipts root, blobs, job traces).

RFC 6962 / CometBFT crypto/merkle rules: leaf = H(0x00 || item), inner = H(0x01 || l || r),
n items split at k = the largest power of two strictly below n, empty list -> H(b"").
The 0x00/0x01 prefixes keep a leaf from ever being passed off as an inner node.

It is computed bottom-up, level by level: pairing neighbours and carrying an odd last
node up unchanged gives exactly the recursive RFC 6962 tree (the left part of every
split is a full power-of-two tree), without recursion and with one hash call per node.

An audit path (RFC 6962 section 2.1.1, RFC 9162 section 2.1.3) for leaf `index` of `count`
is the list of sibling hashes from the leaf up to the root, bottom-up; a level where the
node is carried up has no sibling and adds nothing. Verification is RFC 9162's
algorithm (2.1.3.2), which also fixes the path's length: a path one hash too long or too
short fails. The `*_of_leaves` forms take precomputed leaf hashes, so that large items
(a blob's 1 MiB chunks) are hashed once and every proof reuses them.
"""
from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

__all__ = ["merkle_root", "EMPTY_MERKLE_ROOT", "leaf_hash", "merkle_root_of_leaves", "merkle_proof",
           "merkle_proof_of_leaves", "merkle_levels", "merkle_proof_of_levels", "verify_merkle_proof",
           "verify_leaf_proof"]

EMPTY_MERKLE_ROOT = sha256(b"").digest()
HASH_BYTES = 32


def leaf_hash(item: bytes) -> bytes:
    """H(0x00 || item), without copying item (a bytes, bytearray or memoryview)."""
    h = sha256(b"\x00")
    h.update(item)
    return h.digest()


def _inner(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    n = len(level)
    nxt = [_inner(level[i], level[i + 1]) for i in range(0, n - 1, 2)]
    if n & 1:
        nxt.append(level[-1])
    return nxt


def merkle_root_of_leaves(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 root over leaf hashes already computed with `leaf_hash`."""
    if not leaves:
        return EMPTY_MERKLE_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_root(items: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle root of items, in their order."""
    return merkle_root_of_leaves([leaf_hash(item) for item in items])


def merkle_proof_of_leaves(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` over precomputed leaf hashes, bottom-up.
    Raises IndexError when index is not in [0, len(leaves))."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"merkle proof: index {index} outside a tree of {len(leaves)} leaves")
    level, i, path = list(leaves), index, []
    while len(level) > 1:
        if i & 1:
            path.append(level[i - 1])
        elif i + 1 < len(level):
            path.append(level[i + 1])
        # else: the last node of an odd level is carried up and has no sibling here
        level, i = _next_level(level), i >> 1
    return path


def merkle_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree over leaf hashes, leaves first, the root's level last: kept by
    whoever serves many proofs of one tree (a blob's chunks), each then O(log n)."""
    if not leaves:
        raise ValueError("merkle levels: a tree needs at least one leaf")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def merkle_proof_of_levels(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """The audit path of leaf `index` read from `merkle_levels` (no hashing); the same
    path as merkle_proof_of_leaves.  IndexError when index is outside the leaves."""
    if not 0 <= index < len(levels[0]):
        raise IndexError(f"merkle proof: index {index} outside a tree of {len(levels[0])} leaves")
    path, i = [], index
    for level in levels[:-1]:
        if i & 1:
            path.append(level[i - 1])
        elif i + 1 < len(level):
            path.append(level[i + 1])
        i >>= 1
    return path


def merkle_proof(items: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 6962 audit path of items[index], bottom-up."""
    return merkle_proof_of_leaves([leaf_hash(item) for item in items], index)


def verify_leaf_proof(root: bytes, leaf: bytes, index: int, count: int, proof: Sequence[bytes]) -> bool:
    """True iff `proof` is the audit path of leaf hash `leaf` at `index` in a tree of `count`
    leaves with `root` (RFC 9162 2.1.3.2). Junk (wrong types, sizes, index >= count,
    count < 1, a path of the wrong length) is False, never an exception."""
    if not (type(index) is int and type(count) is int and 0 <= index < count):
        return False
    if not (_is_hash(root) and _is_hash(leaf) and isinstance(proof, (list, tuple))):
        return False
    fn, sn, r = index, count - 1, bytes(leaf)
    for p in proof:
        if sn == 0 or not _is_hash(p):
            return False
        if fn & 1 or fn == sn:
            r = _inner(bytes(p), r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _inner(r, bytes(p))
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_merkle_proof(root: bytes, item: bytes, index: int, count: int, proof: Sequence[bytes]) -> bool:
    """True iff `proof` proves `item` is entry `index` of a `count`-item list with `root`."""
    if not isinstance(item, (bytes, bytearray, memoryview)):
        return False
    return verify_leaf_proof(root, leaf_hash(item), index, count, proof)


def _is_hash(x: object) -> bool:
    return isinstance(x, (bytes, bytearray)) and len(x) == HASH_BYTES
