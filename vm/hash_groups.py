"""Which values may be dict keys, and the groups of keys that certainly share a hash: CPython's
int, Decimal and tuple hashes can be made to collide by an author, so the VM caps the keys of
one group (vm/sizes.py, and the map decoder of vm/codec.py)."""
from __future__ import annotations

from typing import Any

from vm.decimals import Decimal
from vm.tensors import Model, Tensor

__all__ = ["hash_group"]

_HASH_MODULUS = (1 << 61) - 1  # CPython hashes ints modulo this prime on 64-bit machines


# hash(None) on CPython 3.12 and later.  3.11 derives it from None's address, which no
# author can predict: grouping None as this constant on every version covers both.
_NONE_HASH = 0xFCA86420


def hash_group(k: Any) -> Any:
    """The group of dict keys that certainly share k's hash, the same on every node and
    hash seed; None when no author can build many keys with k's hash.

    CPython hashes ints modulo 2**61-1, Decimals through ints and tuples by combining
    their items' hashes (xxHash lanes, the same on 3.11 to 3.13), so an author can make
    any number of such keys collide, turning each dict operation into a walk over all of
    them.  str and bytes hashes are keyed per process, but not every key that holds text
    is safe: a str hashes as the bytes of its buffer ("x" as b"x", "" as 0), so ("a", n)
    for every multiple n of 2**61-1, or tuples of "x" and b"x" in any order, collide on
    every node too.  Keys are grouped by what their hash is certainly a function of; the
    VM caps the distinct keys of one group at MAX_SAME_HASH (vm.sizes, _decode_map)."""
    t = type(k)
    if t is int:
        return None if -_HASH_MODULUS < k < _HASH_MODULUS else hash(k)
    if t is Decimal:
        return hash(k)
    if t is tuple:
        if len(k) <= 6 and _few_share(k):
            return None
        head, rest = _lanes(k)
        # an unknown lane first: the group itself cannot be made to collide in a dict
        return hash(head) if rest is None else (rest, hash(head), len(head))
    return None


def _few_share(k: tuple) -> bool:
    """Whether at most 2**len(k) keys (64 for 6 items) can share the hash of k, a tuple
    of text, None, bools and ints below the modulus with at most one item before its
    first non-empty text: each item then has at most two values of one hash ("x" and
    b"x", -1 and -2), and the hash of what precedes the text cannot be steered.  The
    common ("balance", owner) key needs no group."""
    known = 0
    for x in k:
        t = type(x)
        if (t is str or t is bytes) and x:
            break
        if not (t is str or t is bytes or x is None or t is bool or t is int and -_HASH_MODULUS < x < _HASH_MODULUS):
            return False
        known += 1
    else:
        return False  # no text: only ints and the like, whose combined hash can be steered
    if known > 1:
        return False
    return all(type(x) in _FEW_SHARE or type(x) is int and -_HASH_MODULUS < x < _HASH_MODULUS for x in k)


_FEW_SHARE = (str, bytes, bool, type(None))


def _lanes(k: tuple) -> tuple[tuple, tuple | None]:
    """(head, rest): head stands for k's leading items whose hash anyone can compute, by
    values with exactly their hash on CPython 3.12+ (None becomes _NONE_HASH); rest, from
    the first item whose hash is keyed per process on, identifies each item's lane: its
    hash where known, else the bytes CPython hashes, or the group of a tuple of them."""
    head: list = []
    rest: list | None = None
    for x in k:
        t = type(x)
        if t is str or t is bytes:
            known, lane = not x, (0 if not x else _hashed_bytes(x) if t is str else x)
        elif t is tuple:
            h, r = _lanes(x)
            known, lane = r is None, (h if r is None else (r, hash(h), len(h)))
        else:
            known, lane = True, (_NONE_HASH if x is None else x)
        if rest is None and known:
            head.append(lane)
        elif rest is None:
            rest = [lane]
        else:
            rest.append(hash(lane) if known else lane)
    return tuple(head), None if rest is None else tuple(rest)


def _hashed_bytes(s: str) -> bytes:
    """The buffer CPython hashes for s: 1, 2 or 4 bytes a character, by its widest."""
    if s.isascii():
        return s.encode("ascii")
    top = max(s)
    if top < "\u0100":
        return s.encode("latin-1")
    if top < "\U00010000":
        return s.encode("utf-16-le", "surrogatepass")
    return s.encode("utf-32-le", "surrogatepass")


def _is_key(k: Any) -> bool:
    """Whether k may be a dict key: a scalar value (not a Tensor or Model) or a tuple of keys."""
    t = type(k)
    if t is tuple:
        return all(_is_key(x) for x in k)
    return t is not list and t is not dict and t is not Tensor and t is not Model
