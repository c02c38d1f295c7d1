"""The state commitment: a compressed binary sparse Merkle tree over 256-bit key paths.

Why this shape:
- The path of a key is kh = H(key), so adversaries cannot choose where keys land and the
  tree stays about log2(n) deep.  Bit i of the path (MSB first) picks the child at depth i
  (0 = left).
- Nodes are content-addressed and never mutated: an update only adds nodes, so every old
  root keeps proving its own state.
- The shape is canonical (a function of the key/value set only, never of history): an
  empty subtree is EMPTY_HASH, a subtree with one key is that key's leaf (as high as it
  can go), a subtree with two or more keys is a branch.  So two nodes that reach the same
  state by different histories compute the same root, and root_from_items() can check it.

Hashes and stored encodings:
- leaf:   hash H(0x00 || kh || H(value)),  stored as 0x00 || kh || value
  (the raw value, so historical values can be read back from an old root).
- branch: hash H(0x01 || left || right),   stored as exactly those 65 bytes.
The 0x00/0x01 prefixes keep a leaf from being passed off as a branch, and the leaf hash
commits to kh (not only to the value) so a leaf cannot be moved to another key's path.

Proof format (a msgpack-encodable list, see prove()):
    [depth, bitmap, siblings, terminal]
- depth:    int 0..256, the number of branches from the root down to the terminal.
- bitmap:   bytes of length ceil(depth/8); bit i (MSB first, like path bits) is set iff
            the sibling at depth i is non-empty; the padding bits past depth are zero.
            (bytes, not an int: ledger.encoding only carries 64-bit ints.)
- siblings: the non-empty siblings from the root down, 32 bytes each, never EMPTY_HASH;
            as many as the bitmap has set bits.
- terminal: None (an empty subtree: the key is absent), or [kh, value_hash] of the leaf
            found there: the key's own leaf (inclusion; the value travels separately)
            or another key's leaf sharing the first `depth` path bits (exclusion).
Every field has exactly one valid form, so any change to a valid proof makes it fail.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from hashlib import sha256
from typing import Any

from ledger.hashing import EMPTY_HASH, HASH_SIZE

__all__ = [
    "EMPTY_ROOT", "KEY_BITS", "NodeSource", "key_path", "path_bit", "leaf_hash",
    "branch_hash", "update", "get", "prove", "verify_proof", "root_from_items",
]

EMPTY_ROOT = EMPTY_HASH
KEY_BITS = 256
_TOP = KEY_BITS - 1  # shift that brings path bit 0 of an int path down to bit 0

NodeSource = Callable[[bytes], bytes]
"""get_node(hash) -> encoded node; raises KeyError if the store lacks it."""


def key_path(key: bytes) -> bytes:
    """The 256-bit path of a state key: H(key), so key choice cannot skew the tree."""
    return sha256(key).digest()


def path_bit(kh: bytes, i: int) -> int:
    """Bit i of a path, MSB first: the child (0 = left) taken at depth i."""
    return (kh[i >> 3] >> (7 - (i & 7))) & 1


def leaf_hash(kh: bytes, value_hash: bytes) -> bytes:
    """Hash of the leaf of path kh holding a value whose H() is value_hash."""
    return sha256(b"\x00" + kh + value_hash).digest()


def branch_hash(left: bytes, right: bytes) -> bytes:
    """Hash of a branch with these child hashes."""
    return sha256(b"\x01" + left + right).digest()


def _corrupt(h: bytes, why: str) -> ValueError:
    return ValueError(f"corrupt trie node {h.hex()}: {why}")


def _build(ks: Sequence[int], lhs: Sequence[bytes], encs: Sequence[bytes | None], lo: int, hi: int,
           depth: int, out: dict[bytes, bytes]) -> bytes:
    """Canonical subtree at `depth` for the leaves [lo, hi) (sorted by path, sharing the
    first `depth` bits, hi > lo).  New nodes go to out; a leaf whose enc is None already
    exists and is not written again."""
    if hi - lo == 1:
        enc = encs[lo]
        if enc is not None:
            out[lhs[lo]] = enc
        return lhs[lo]
    a = ks[lo]
    b = KEY_BITS - (a ^ ks[hi - 1]).bit_length()  # first bit where the range splits
    s = _TOP - b
    mid = bisect_left(ks, ((a >> s) | 1) << s, lo, hi)
    enc = (b"\x01" + _build(ks, lhs, encs, lo, mid, b + 1, out)
           + _build(ks, lhs, encs, mid, hi, b + 1, out))
    h = sha256(enc).digest()
    out[h] = enc
    # All keys share bits depth..b-1: a chain of branches with one empty child each.
    for d in range(b - 1, depth - 1, -1):
        enc = b"\x01" + (EMPTY_HASH + h if (a >> (_TOP - d)) & 1 else h + EMPTY_HASH)
        h = sha256(enc).digest()
        out[h] = enc
    return h


def update(get_node: NodeSource, root: bytes,
           changes: Mapping[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes]]:
    """Apply a batch of changes (value None = delete; deleting an absent key is a no-op).

    Returns (new root, new nodes: hash -> encoding) and never mutates stored nodes.  The
    changes are sorted by path and split bit by bit, so each touched node is read and
    hashed once per batch; a lone change walks down and back up without recursion.
    """
    new: dict[bytes, bytes] = {}
    if not changes:
        return root, new
    rows: list[tuple[bytes, bytes | None, bytes | None]] = []  # (kh, leaf hash, encoding)
    for key, value in changes.items():
        kh = sha256(key).digest()
        if value is None:
            rows.append((kh, None, None))
        else:
            rows.append((kh, sha256(b"\x00" + kh + sha256(value).digest()).digest(),
                         b"\x00" + kh + value))
    rows.sort()  # kh are distinct (SHA-256), so the sort never compares past them
    ks = [int.from_bytes(r[0], "big") for r in rows]
    new_get = new.get

    def load(h: bytes) -> bytes:
        enc = new_get(h)
        return get_node(h) if enc is None else enc

    def is_leaf(h: bytes) -> bool:
        return load(h)[0] == 0

    def one(h: bytes, depth: int, i: int) -> bytes:
        """Apply the single change i to the subtree h at depth."""
        kh, lh, enc_new = rows[i]
        k = ks[i]
        start, top = depth, h
        sibs = []
        while h != EMPTY_HASH:  # walk down to the empty subtree or leaf on k's path
            node = load(h)
            if node[0] != 1:
                if node[0] != 0 or len(node) < 1 + HASH_SIZE:
                    raise _corrupt(h, "bad leaf")
                break
            if len(node) != 65 or depth >= KEY_BITS:
                raise _corrupt(h, "bad branch")
            if (k >> (_TOP - depth)) & 1:
                sibs.append(node[1:33])
                h = node[33:]
            else:
                sibs.append(node[33:])
                h = node[1:33]
            depth += 1
        if h == EMPTY_HASH:
            if lh is None:
                return top  # deleting an absent key
            new[lh] = enc_new
            cur, cur_leaf = lh, True
        elif node[1:33] == kh:  # k's own leaf
            if lh == h:
                return top  # same value again
            if lh is None:
                cur, cur_leaf = EMPTY_HASH, False
            else:
                new[lh] = enc_new
                cur, cur_leaf = lh, True
        else:  # another key's leaf sits where k would go
            if lh is None:
                return top
            new[lh] = enc_new
            b = KEY_BITS - (k ^ int.from_bytes(node[1:33], "big")).bit_length()
            enc = b"\x01" + (h + lh if (k >> (_TOP - b)) & 1 else lh + h)
            cur = sha256(enc).digest()
            new[cur] = enc
            for d in range(b - 1, depth - 1, -1):
                enc = b"\x01" + (EMPTY_HASH + cur if (k >> (_TOP - d)) & 1 else cur + EMPTY_HASH)
                cur = sha256(enc).digest()
                new[cur] = enc
            cur_leaf = False
        for j in range(len(sibs) - 1, -1, -1):  # back up, restoring the canonical shape
            sib = sibs[j]
            if sib == EMPTY_HASH:
                if cur_leaf or cur == EMPTY_HASH:
                    continue  # a lone leaf (or nothing) rises
            elif cur == EMPTY_HASH and is_leaf(sib):
                cur, cur_leaf = sib, True  # the sibling leaf is now alone: lift it
                continue
            d = start + j
            enc = b"\x01" + (sib + cur if (k >> (_TOP - d)) & 1 else cur + sib)
            cur = sha256(enc).digest()
            new[cur] = enc
            cur_leaf = False
        return cur

    def many(h: bytes, depth: int, lo: int, hi: int) -> bytes:
        """Apply the changes [lo, hi) (two or more) to the subtree h at depth."""
        node = None if h == EMPTY_HASH else load(h)
        if node is not None and node[0] == 1:
            if len(node) != 65 or depth >= KEY_BITS:
                raise _corrupt(h, "bad branch")
            s = _TOP - depth
            mid = bisect_left(ks, ((ks[lo] >> s) | 1) << s, lo, hi)
            left, right = node[1:33], node[33:]
            nl = (one(left, depth + 1, lo) if mid - lo == 1 else many(left, depth + 1, lo, mid)
                  ) if mid > lo else left
            nr = (one(right, depth + 1, mid) if hi - mid == 1 else many(right, depth + 1, mid, hi)
                  ) if hi > mid else right
            if nl == left and nr == right:
                return h
            if nl == EMPTY_HASH:
                if nr == EMPTY_HASH or is_leaf(nr):
                    return nr
            elif nr == EMPTY_HASH and is_leaf(nl):
                return nl
            enc = b"\x01" + nl + nr
            h2 = sha256(enc).digest()
            new[h2] = enc
            return h2
        # An empty subtree or a single leaf: rebuild it from the merged key set.
        merged: list[tuple[int, bytes, bytes | None]] = []  # (path, leaf hash, new encoding)
        old_k = -1
        if node is not None:
            if node[0] != 0 or len(node) < 1 + HASH_SIZE:
                raise _corrupt(h, "bad leaf")
            old_k = int.from_bytes(node[1:33], "big")
        for i in range(lo, hi):
            k = ks[i]
            if 0 <= old_k < k:  # the untouched old leaf, in its sorted place
                merged.append((old_k, h, None))
                old_k = -1
            lh = rows[i][1]
            if k == old_k:
                old_k = -1
                if lh == h:  # rewritten with the same value: keep it, do not re-emit it
                    merged.append((k, h, None))
                    continue
            if lh is not None:
                merged.append((k, lh, rows[i][2]))
        if old_k >= 0:
            merged.append((old_k, h, None))
        if not merged:
            return EMPTY_HASH
        mk, ml, me = zip(*merged)
        return _build(mk, ml, me, 0, len(mk), depth, new)

    n = len(rows)
    new_root = one(root, 0, 0) if n == 1 else many(root, 0, 0, n)
    return new_root, new


def get(get_node: NodeSource, root: bytes, key: bytes) -> bytes | None:
    """The value of key under root, or None if absent (works for any old root)."""
    kh = sha256(key).digest()
    k = int.from_bytes(kh, "big")
    h, depth = root, 0
    while h != EMPTY_HASH:
        node = get_node(h)
        if node[0] != 1:
            return node[33:] if node[1:33] == kh else None
        if len(node) != 65 or depth >= KEY_BITS:
            raise _corrupt(h, "bad branch")
        h = node[33:] if (k >> (_TOP - depth)) & 1 else node[1:33]
        depth += 1
    return None


def prove(get_node: NodeSource, root: bytes, key: bytes) -> list[Any]:
    """Proof that key has its current value, or is absent, under root (format: module doc)."""
    kh = sha256(key).digest()
    k = int.from_bytes(kh, "big")
    h, depth = root, 0
    bits = 0
    sibs: list[bytes] = []
    terminal: list[bytes] | None = None
    while h != EMPTY_HASH:
        node = get_node(h)
        if node[0] != 1:
            terminal = [node[1:33], sha256(node[33:]).digest()]
            break
        if len(node) != 65 or depth >= KEY_BITS:
            raise _corrupt(h, "bad branch")
        if (k >> (_TOP - depth)) & 1:
            sib, h = node[1:33], node[33:]
        else:
            sib, h = node[33:], node[1:33]
        bits <<= 1
        if sib != EMPTY_HASH:
            sibs.append(sib)
            bits |= 1
        depth += 1
    nbytes = (depth + 7) >> 3
    bitmap = (bits << (nbytes * 8 - depth)).to_bytes(nbytes, "big")
    return [depth, bitmap, sibs, terminal]


def _is_hash(x: object) -> bool:
    return type(x) is bytes and len(x) == HASH_SIZE


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: Any) -> bool:
    """True iff proof shows that under root, key maps to value (None = key absent).

    Never raises: anything malformed (types, lengths, depth > 256, stray bits, EMPTY_HASH
    listed as a sibling, extra fields) is simply False.
    """
    if not _is_hash(root) or type(key) is not bytes:
        return False
    if value is not None and type(value) is not bytes:
        return False
    if type(proof) not in (list, tuple) or len(proof) != 4:
        return False
    depth, bitmap, sibs, terminal = proof
    if type(depth) is not int or not 0 <= depth <= KEY_BITS:
        return False
    if type(bitmap) is not bytes or len(bitmap) != (depth + 7) >> 3:
        return False
    nbits = len(bitmap) * 8
    bm = int.from_bytes(bitmap, "big")
    if bm & ((1 << (nbits - depth)) - 1):
        return False  # padding bits must be zero
    if type(sibs) not in (list, tuple) or len(sibs) != bm.bit_count():
        return False
    for s in sibs:
        if not _is_hash(s) or s == EMPTY_HASH:
            return False
    kh = sha256(key).digest()
    k = int.from_bytes(kh, "big")
    if terminal is None:
        if value is not None:
            return False
        h = EMPTY_HASH
    else:
        if type(terminal) not in (list, tuple) or len(terminal) != 2:
            return False
        tkh, tvh = terminal
        if not _is_hash(tkh) or not _is_hash(tvh):
            return False
        if tkh == kh:
            if value is None or tvh != sha256(value).digest():
                return False
        else:
            # Exclusion by another leaf: it must sit on k's path, i.e. share its first
            # `depth` bits (otherwise it proves nothing about k).
            if value is not None or (int.from_bytes(tkh, "big") ^ k) >> (KEY_BITS - depth):
                return False
        h = sha256(b"\x00" + tkh + tvh).digest()
    j = len(sibs)
    for d in range(depth - 1, -1, -1):
        if (bm >> (nbits - 1 - d)) & 1:
            j -= 1
            sib = sibs[j]
        else:
            sib = EMPTY_HASH
        if (k >> (_TOP - d)) & 1:
            h = sha256(b"\x01" + sib + h).digest()
        else:
            h = sha256(b"\x01" + h + sib).digest()
    return h == root


def root_from_items(items: Mapping[bytes, bytes]) -> bytes:
    """The root of a key/value set computed from scratch (e.g. to check a stored state
    root at restart); equal to the root of any update history reaching the same set."""
    if not items:
        return EMPTY_ROOT
    rows = sorted((sha256(key).digest(), value) for key, value in items.items())
    ks = [int.from_bytes(kh, "big") for kh, _ in rows]
    lhs = [sha256(b"\x00" + kh + sha256(v).digest()).digest() for kh, v in rows]
    return _build(ks, lhs, [None] * len(rows), 0, len(rows), 0, {})
