"""ledger.trie: canonical roots, persistence, reads, and proofs that nothing can forge."""
from __future__ import annotations

import random
from collections.abc import Mapping
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger import trie
from ledger.encoding import decode, encode
from ledger.hashing import EMPTY_HASH
from ledger.trie import EMPTY_ROOT, get, prove, root_from_items, update, verify_proof

H = lambda b: sha256(b).digest()  # noqa: E731


# ---------------------------------------------------------------- reference model

def bit(kh: bytes, i: int) -> int:
    return (kh[i >> 3] >> (7 - (i & 7))) & 1


def ref_root(items: Mapping[bytes, bytes]) -> bytes:
    """The canonical root straight from the definition: no keys -> EMPTY_HASH, one key ->
    its leaf, two or more -> a branch over the split by the next path bit."""
    def sub(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not leaves:
            return EMPTY_HASH
        if len(leaves) == 1:
            kh, vh = leaves[0]
            return H(b"\x00" + kh + vh)
        left = [x for x in leaves if bit(x[0], depth) == 0]
        right = [x for x in leaves if bit(x[0], depth) == 1]
        return H(b"\x01" + sub(left, depth + 1) + sub(right, depth + 1))
    return sub([(H(k), H(v)) for k, v in items.items()], 0)


def reachable(store: Mapping[bytes, bytes], root: bytes) -> set[bytes]:
    """Hashes of all nodes under root (raises KeyError if one is missing)."""
    out: set[bytes] = set()
    todo = [root]
    while todo:
        h = todo.pop()
        if h == EMPTY_HASH or h in out:
            continue
        out.add(h)
        enc = store[h]
        if enc[0] == 1:
            todo += [enc[1:33], enc[33:65]]
    return out


def check_node_encodings(nodes: Mapping[bytes, bytes]) -> None:
    for h, enc in nodes.items():
        if enc[0] == 1:
            assert len(enc) == 65 and H(enc) == h
        else:
            assert enc[0] == 0 and H(b"\x00" + enc[1:33] + H(enc[33:])) == h


class Chain:
    """A node store plus the root history, checking every invariant of update()."""

    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.root = EMPTY_ROOT
        self.model: dict[bytes, bytes] = {}
        self.history: list[tuple[bytes, dict[bytes, bytes]]] = [(EMPTY_ROOT, {})]

    def apply(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        before = reachable(self.store, self.root)
        snapshot = dict(self.store)
        root, new = update(self.store.__getitem__, self.root, changes)
        assert self.store == snapshot  # stored nodes never touched
        check_node_encodings(new)
        assert not (set(new) & before)  # only genuinely new nodes come back
        merged = {**self.store, **new}
        after = reachable(merged, root)  # complete: every node under root is stored
        assert set(new) <= after  # and nothing useless is written
        self.store.update(new)
        for k, v in changes.items():
            if v is None:
                self.model.pop(k, None)
            else:
                self.model[k] = v
        self.root = root
        self.history.append((root, dict(self.model)))
        return root


# Keys whose paths share long prefixes, so chains of one-sided branches get exercised:
# deep-2113/deep-7693 share 25 bits, near-16669 shares 17 bits with both.
DEEP = [b"deep-2113", b"deep-7693", b"near-16669"]
UNIVERSE = DEEP + [b"k%d" % i for i in range(13)]
ABSENT = [b"absent-%d" % i for i in range(6)] + [b"deep-6123", b"deep-8196"]

values = st.one_of(st.just(b""), st.sampled_from([b"a", b"b", b"\x00" * 32]),
                   st.binary(max_size=40))
batches = st.dictionaries(st.sampled_from(UNIVERSE), st.none() | values, max_size=12)


def test_deep_keys_really_share_prefixes() -> None:
    a, b, c = (int.from_bytes(H(k), "big") for k in DEEP)
    assert 256 - (a ^ b).bit_length() == 25
    assert 256 - (a ^ c).bit_length() == 17


# ---------------------------------------------------------------- fixed vectors

def test_fixed_vectors() -> None:
    assert EMPTY_ROOT == EMPTY_HASH == bytes(32)
    assert root_from_items({}) == EMPTY_ROOT
    # One key: the root is that key's leaf.
    one = {b"alice": b"100"}
    assert root_from_items(one) == H(b"\x00" + H(b"alice") + H(b"100"))
    assert root_from_items(one).hex() == (
        "e88595db6e2373140c77336108e543dd79e1c6420dff08568b120417c8af88b5")
    # alice's path starts with 0, bob's with 1: a single branch.
    two = {b"alice": b"100", b"bob": b"200"}
    assert (bit(H(b"alice"), 0), bit(H(b"bob"), 0)) == (0, 1)
    assert root_from_items(two) == H(b"\x01" + root_from_items(one)
                                     + H(b"\x00" + H(b"bob") + H(b"200")))
    assert root_from_items(two).hex() == (
        "38aa0ada94ff3ee34417ed647542474fe1ee43ffa7c53595bdbc43dcb4bc2dec")
    four = {b"alice": b"100", b"bob": b"200", b"carol": b"300", b"dave": b""}
    assert root_from_items(four).hex() == (
        "3dae9545c5c93857bc837caf0467e270c7780451368635cc36eba56acc092c14")
    deep = {DEEP[0]: b"x", DEEP[1]: b"y", DEEP[2]: b"z"}
    assert root_from_items(deep).hex() == (
        "4a97226d53fb83d9eab2898687321e6605e3806019876a9cdbd57facefb8ebfa")
    for items in (one, two, four, deep):
        assert ref_root(items) == root_from_items(items)
        assert update({}.__getitem__, EMPTY_ROOT, items)[0] == root_from_items(items)


def test_path_helpers() -> None:
    kh = trie.key_path(b"bob")
    assert kh == H(b"bob") and kh[0] == 0x81
    assert [trie.path_bit(kh, i) for i in range(8)] == [1, 0, 0, 0, 0, 0, 0, 1]
    assert trie.leaf_hash(kh, H(b"v")) == H(b"\x00" + kh + H(b"v"))
    assert trie.branch_hash(kh, EMPTY_HASH) == H(b"\x01" + kh + EMPTY_HASH)


# ---------------------------------------------------------------- updates and reads

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches, max_size=10))
def test_update_sequences_match_from_scratch_root(seq: list[dict]) -> None:
    c = Chain()
    for changes in seq:
        root = c.apply(changes)
        assert root == root_from_items(c.model) == ref_root(c.model)
        for k in UNIVERSE + ABSENT:
            assert get(c.store.__getitem__, root, k) == c.model.get(k)
    # Persistence: every old root still reads exactly its old state.
    for old_root, old_model in c.history:
        for k in UNIVERSE:
            assert get(c.store.__getitem__, old_root, k) == old_model.get(k)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(UNIVERSE), values, max_size=len(UNIVERSE)),
       st.randoms(use_true_random=False))
def test_delete_back_to_empty(items: dict, rnd: random.Random) -> None:
    c = Chain()
    c.apply(items)
    keys = list(items) + [b"never-there"]
    rnd.shuffle(keys)
    while keys:  # delete in random-sized batches, checking the shape after each
        n = rnd.randint(1, len(keys))
        c.apply({k: None for k in keys[:n]})
        keys = keys[n:]
        assert c.root == ref_root(c.model)
    assert c.root == EMPTY_ROOT and c.model == {}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(UNIVERSE), values, min_size=1),
       st.dictionaries(st.sampled_from(UNIVERSE), values),
       st.randoms(use_true_random=False))
def test_batching_and_order_do_not_matter(final: dict, start: dict,
                                          rnd: random.Random) -> None:
    """Any history that ends in the same key/value set ends at the same root."""
    target = root_from_items(final)
    # From some other state: delete what is not in final, then write final's items,
    # split into random batches in random orders.
    to_apply = [(k, None) for k in start if k not in final] + list(final.items())
    for _ in range(3):
        c = Chain()
        c.apply(start)
        rnd.shuffle(to_apply)
        i = 0
        while i < len(to_apply):
            n = rnd.randint(1, len(to_apply) - i)
            c.apply(dict(to_apply[i:i + n]))
            i += n
        assert c.root == target
    # And all at once from empty.
    assert update({}.__getitem__, EMPTY_ROOT, final)[0] == target


def test_noop_updates_write_nothing() -> None:
    c = Chain()
    c.apply({k: b"v" + k for k in UNIVERSE})
    root = c.root
    for changes in ({}, {b"nope": None}, {UNIVERSE[0]: b"v" + UNIVERSE[0]},
                    {k: b"v" + k for k in UNIVERSE},
                    {**{k: b"v" + k for k in UNIVERSE[:5]}, b"nope": None, b"nope2": None}):
        r, new = update(c.store.__getitem__, root, changes)
        assert r == root and new == {}
    assert update({}.__getitem__, EMPTY_ROOT, {b"x": None}) == (EMPTY_ROOT, {})


def test_lone_leaf_is_lifted_after_deletes() -> None:
    c = Chain()
    c.apply({DEEP[0]: b"1", DEEP[1]: b"2", DEEP[2]: b"3", b"k1": b"4"})
    c.apply({DEEP[0]: None, b"k1": None, DEEP[2]: None})
    assert c.root == H(b"\x00" + H(DEEP[1]) + H(b"2"))  # back up to the root
    c.apply({DEEP[0]: b"1"})
    c.apply({DEEP[1]: None})
    assert c.root == H(b"\x00" + H(DEEP[0]) + H(b"1"))


def test_missing_node_raises_keyerror() -> None:
    with pytest.raises(KeyError):
        update({}.__getitem__, H(b"unknown root"), {b"a": b"1"})
    with pytest.raises(KeyError):
        get({}.__getitem__, H(b"unknown root"), b"a")


def test_larger_random_tree() -> None:
    rng = random.Random(7)
    c = Chain()
    keys = [rng.randbytes(8) for _ in range(600)]
    for _ in range(4):
        changes = {k: (None if rng.random() < 0.3 else rng.randbytes(20))
                   for k in rng.sample(keys, 300)}
        c.apply(changes)
        assert c.root == root_from_items(c.model)
    for k in keys:
        assert get(c.store.__getitem__, c.root, k) == c.model.get(k)


# ---------------------------------------------------------------- proofs

def build(items: Mapping[bytes, bytes]) -> tuple[dict[bytes, bytes], bytes]:
    root, nodes = update({}.__getitem__, EMPTY_ROOT, items)
    return nodes, root


def all_statements(nodes: dict, root: bytes, model: Mapping[bytes, bytes]):
    for k in list(UNIVERSE) + ABSENT:
        yield k, model.get(k), prove(nodes.__getitem__, root, k)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(UNIVERSE), values))
def test_proofs_verify_and_reject_wrong_statements(model: dict) -> None:
    nodes, root = build(model)
    other_root = root_from_items({**model, b"extra": b"1"})
    for k, v, proof in all_statements(nodes, root, model):
        assert verify_proof(root, k, v, proof)
        wire = decode(encode(proof))
        assert wire == proof and verify_proof(root, k, v, wire)
        assert not verify_proof(other_root, k, v, proof)
        assert not verify_proof(bytes(32) if root != bytes(32) else H(b""), k, v, proof)
        assert not verify_proof(root, k, (v or b"") + b"!", proof)  # wrong value
        if v is not None:
            assert not verify_proof(root, k, None, proof)  # present, not absent
            assert not verify_proof(root, k + b"?", v, proof)  # not some other key's
        else:
            assert not verify_proof(root, k, b"", proof)


def test_both_kinds_of_exclusion_and_the_format() -> None:
    # Empty tree: depth 0, nothing.
    assert prove({}.__getitem__, EMPTY_ROOT, b"a") == [0, b"", [], None]
    assert verify_proof(EMPTY_ROOT, b"a", None, [0, b"", [], None])
    # One-key tree: any other key is excluded by that leaf, at the root.
    nodes, root = build({b"alice": b"100"})
    p = prove(nodes.__getitem__, root, b"bob")
    assert p == [0, b"", [], [H(b"alice"), H(b"100")]]
    assert verify_proof(root, b"bob", None, p)
    assert prove(nodes.__getitem__, root, b"alice") == [0, b"", [], [H(b"alice"), H(b"100")]]
    # Two keys sharing 25 bits: the 25 branches above them each have one empty child.
    items = {DEEP[0]: b"x", DEEP[1]: b"y"}
    nodes, root = build(items)
    p = prove(nodes.__getitem__, root, DEEP[0])
    assert p[0] == 26 and len(p[1]) == 4 and p[2] == [H(b"\x00" + H(DEEP[1]) + H(b"y"))]
    assert int.from_bytes(p[1], "big") == 1 << (32 - 26)  # only the sibling at depth 25
    assert p[3] == [H(DEEP[0]), H(b"x")]
    # Exclusion with a leaf found deep in the chain: near-16669 shares 17 bits.
    p = prove(nodes.__getitem__, root, DEEP[2])
    assert p[3] is None and p[0] == 18 and verify_proof(root, DEEP[2], None, p)
    # In a fuller tree absent keys meet both empty subtrees and other keys' leaves.
    nodes, root = build({k: b"v" for k in UNIVERSE})
    kinds = set()
    for i in range(200):
        k = b"probe-%d" % i
        p = prove(nodes.__getitem__, root, k)
        assert verify_proof(root, k, None, p)
        kinds.add("empty" if p[3] is None else "leaf")
        if p[3] is not None:  # the other leaf shares the first p[0] bits of k's path
            assert p[3][0] != H(k)
            assert all(bit(p[3][0], i) == bit(H(k), i) for i in range(p[0]))
    assert kinds == {"empty", "leaf"}


def test_exclusion_leaf_must_lie_on_the_key_path() -> None:
    """Another key's leaf excludes k only if it shares k's path down to where it sits.
    Hashing along k's bits alone cannot see this when the root was built dishonestly."""
    a = next(k for k in (b"x%d" % i for i in range(100)) if bit(H(k), 0) == 1)
    q = next(k for k in (b"z%d" % i for i in range(100)) if bit(H(k), 0) == 0)
    leaf_a = H(b"\x00" + H(a) + H(b"1"))
    # a's leaf hung on the 0 side, off its own path: the hashes line up along q's path.
    bogus_root = H(b"\x01" + leaf_a + EMPTY_HASH)
    forged = [1, b"\x00", [], [H(a), H(b"1")]]
    assert not verify_proof(bogus_root, q, None, forged)
    # The honest counterpart (a's leaf on a 1-path key's side) is accepted.
    q1 = next(k for k in (b"w%d" % i for i in range(100)) if bit(H(k), 0) == 1)
    honest_root = H(b"\x01" + EMPTY_HASH + leaf_a)
    assert verify_proof(honest_root, q1, None, [1, b"\x00", [], [H(a), H(b"1")]])


# ---------------------------------------------------------------- tampering and junk

TAMPERS = ["flip_sib", "drop_sib", "add_sib", "depth", "depth_resize", "flip_bitmap",
           "grow_bitmap", "shrink_bitmap", "term_none", "term_random", "term_flip",
           "term_own", "term_extra", "extra_field", "drop_field", "retype"]


def tamper(proof: list, key: bytes, data: st.DataObject) -> list:
    depth, bitmap, sibs, term = proof
    sibs = list(sibs)
    op = data.draw(st.sampled_from(TAMPERS), label="op")
    if op == "flip_sib":
        assume(sibs)
        i = data.draw(st.integers(0, len(sibs) - 1))
        j = data.draw(st.integers(0, 31))
        x = data.draw(st.integers(1, 255))
        s = bytearray(sibs[i])
        s[j] ^= x
        sibs[i] = bytes(s)
    elif op == "drop_sib":
        assume(sibs)
        del sibs[data.draw(st.integers(0, len(sibs) - 1))]
    elif op == "add_sib":
        sibs.insert(data.draw(st.integers(0, len(sibs))),
                    data.draw(st.binary(min_size=32, max_size=32)))
    elif op == "depth":
        depth += data.draw(st.sampled_from([-9, -8, -2, -1, 1, 2, 8, 9, 300]))
    elif op == "depth_resize":  # change the depth and keep the bitmap well-formed
        depth = max(0, depth + data.draw(st.sampled_from([-2, -1, 1, 2])))
        n = (depth + 7) // 8
        bm = int.from_bytes(bitmap.ljust(n, b"\0")[:n], "big")
        bm &= ~((1 << (n * 8 - depth)) - 1)
        bitmap = bm.to_bytes(n, "big")
        sibs = sibs[:bin(bm).count("1")]
        if len(sibs) < bin(bm).count("1"):
            sibs += [H(b"pad")] * (bin(bm).count("1") - len(sibs))
    elif op == "flip_bitmap":
        assume(bitmap)
        i = data.draw(st.integers(0, len(bitmap) * 8 - 1))
        bitmap = (int.from_bytes(bitmap, "big") ^ (1 << i)).to_bytes(len(bitmap), "big")
    elif op == "grow_bitmap":
        bitmap = bitmap + data.draw(st.binary(min_size=1, max_size=2))
    elif op == "shrink_bitmap":
        assume(bitmap)
        bitmap = bitmap[:-1]
    elif op == "term_none":
        assume(term is not None)
        term = None
    elif op == "term_random":
        term = [data.draw(st.binary(min_size=32, max_size=32)),
                data.draw(st.binary(min_size=32, max_size=32))]
    elif op == "term_flip":
        assume(term is not None)
        term = [bytearray(term[0]), bytearray(term[1])]
        w = data.draw(st.integers(0, 1))
        term[w][data.draw(st.integers(0, 31))] ^= data.draw(st.integers(1, 255))
        term = [bytes(term[0]), bytes(term[1])]
    elif op == "term_own":  # claim the key's own leaf with some value hash
        assume(term is None or term[0] != H(key))
        term = [H(key), term[1] if term else H(b"")]
    elif op == "term_extra":
        term = (list(term) if term else [H(key), H(b"")]) + [b""]
    elif op == "extra_field":
        return [depth, bitmap, sibs, term, data.draw(st.none() | st.integers() | st.binary())]
    elif op == "drop_field":
        i = data.draw(st.integers(0, 3))
        return [x for j, x in enumerate([depth, bitmap, sibs, term]) if j != i]
    elif op == "retype":
        which = data.draw(st.integers(0, 3))
        if which == 0:
            depth = bool(depth) if depth in (0, 1) else str(depth)
        elif which == 1:
            bitmap = int.from_bytes(bitmap, "big")
        elif which == 2:
            sibs = b"".join(sibs)
        else:
            term = b"".join(term) if term else b""
    return [depth, bitmap, sibs, term]


TREES = [
    {},
    {b"alice": b"100"},
    {DEEP[0]: b"x", DEEP[1]: b"y"},
    {**{k: b"v" + k for k in UNIVERSE}},
    {**{k: b"" for k in UNIVERSE[::2]}, DEEP[1]: b"y"},
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much])
@given(st.sampled_from(range(len(TREES))), st.sampled_from(UNIVERSE + ABSENT), st.data())
def test_any_tampered_proof_fails(t: int, key: bytes, data: st.DataObject) -> None:
    model = TREES[t]
    nodes, root = build(model)
    value = model.get(key)
    proof = prove(nodes.__getitem__, root, key)
    assert verify_proof(root, key, value, proof)
    bad = tamper(proof, key, data)
    assume(repr(bad) != repr(proof))  # repr: True == 1, but the proof did change
    assert not verify_proof(root, key, value, bad)
    assert not verify_proof(root, key, None if value is not None else b"", bad)
    # Still rejected after a trip through the wire format, when it can make one.
    try:
        wire = decode(encode(bad))
    except (TypeError, ValueError):
        return
    assert not verify_proof(root, key, value, wire)


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
    | st.binary(max_size=40) | st.binary(min_size=32, max_size=32),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=20,
)
shaped_junk = st.builds(
    lambda d, b, s, t: [d, b, s, t],
    st.integers(-3, 300) | junk,
    st.binary(max_size=40) | junk,
    st.lists(st.binary(min_size=31, max_size=33) | st.just(EMPTY_HASH), max_size=6) | junk,
    st.none() | st.lists(st.binary(min_size=31, max_size=33), max_size=3) | junk,
)


@settings(max_examples=400, deadline=None)
@given(junk | shaped_junk, junk | st.binary(min_size=32, max_size=32),
       junk | st.binary(max_size=8), st.none() | st.binary(max_size=8) | junk)
def test_junk_is_false_and_never_raises(proof: Any, root: Any, key: Any, value: Any) -> None:
    assert verify_proof(root, key, value, proof) is False


def test_malformed_edges() -> None:
    nodes, root = build({DEEP[0]: b"x", DEEP[1]: b"y"})
    good = prove(nodes.__getitem__, root, DEEP[0])
    assert verify_proof(root, DEEP[0], b"x", good)
    assert verify_proof(root, DEEP[0], b"x", tuple(good))  # the same list, as a tuple
    d, bm, sibs, term = good
    cases = [
        [d, bm + b"\0", sibs, term],                             # bitmap too long
        [d, bm[:-1], sibs, term],                                # bitmap too short
        [d, (int.from_bytes(bm, "big") | 1).to_bytes(4, "big"), sibs + [H(b"p")], term],
        [d, bm, [EMPTY_HASH], term],                             # explicit empty sibling
        [d, bm, [sibs[0][:31]], term],
        [d, bm, [bytearray(sibs[0])], term],                     # not bytes
        [True, bm, sibs, term],
        [d, bm, sibs, [term[0], term[1][:31]]],
        [d, bm, sibs, (term[0],)],
        [-1, b"", [], None],
    ]
    for bad in cases:
        assert not verify_proof(root, DEEP[0], b"x", bad), bad
    assert not verify_proof(root[:31], DEEP[0], b"x", good)
    assert not verify_proof(root, bytearray(DEEP[0]), b"x", good)
    assert not verify_proof(root, DEEP[0], bytearray(b"x"), good)
    # Deeper than any path, in otherwise well-formed proofs.
    for deep in (257, 264, 1000):
        n = (deep + 7) // 8
        assert not verify_proof(root, DEEP[0], None, [deep, bytes(n), [], None])
        assert not verify_proof(root, DEEP[0], b"x", [deep, bytes(n), [], term])
    # A full-depth (256) proof is well-formed but cannot exclude: the other leaf would
    # need the key's own path.
    assert not verify_proof(root, b"k", None, [256, bytes(32), [], [H(b"k2"), H(b"")]])


def test_old_roots_stay_provable() -> None:
    c = Chain()
    r1 = c.apply({k: b"1" for k in UNIVERSE})
    r2 = c.apply({UNIVERSE[0]: b"2", UNIVERSE[1]: None})
    g = c.store.__getitem__
    assert verify_proof(r1, UNIVERSE[0], b"1", prove(g, r1, UNIVERSE[0]))
    assert verify_proof(r1, UNIVERSE[1], b"1", prove(g, r1, UNIVERSE[1]))
    assert verify_proof(r2, UNIVERSE[0], b"2", prove(g, r2, UNIVERSE[0]))
    assert verify_proof(r2, UNIVERSE[1], None, prove(g, r2, UNIVERSE[1]))
    assert not verify_proof(r2, UNIVERSE[0], b"1", prove(g, r1, UNIVERSE[0]))


def test_non_canonical_forms_of_a_valid_proof_are_rejected() -> None:
    """Listing an empty sibling explicitly, or setting padding bits, hashes the same but
    is a second encoding of the proof: there is exactly one accepted form."""
    nodes, root = build({DEEP[0]: b"x", DEEP[1]: b"y"})
    d, bm, sibs, term = prove(nodes.__getitem__, root, DEEP[0])
    assert d == 26 and len(sibs) == 1
    # Mark depth 3 (really empty) as non-empty and list EMPTY_HASH for it.
    bm2 = (int.from_bytes(bm, "big") | 1 << (31 - 3)).to_bytes(4, "big")
    assert not verify_proof(root, DEEP[0], b"x", [d, bm2, [EMPTY_HASH] + sibs, term])
    # Padding bits past the depth (with a matching extra sibling the hashing never uses).
    for pad in range(6):
        bm3 = (int.from_bytes(bm, "big") | 1 << pad).to_bytes(4, "big")
        assert not verify_proof(root, DEEP[0], b"x", [d, bm3, [H(b"unused")] + sibs, term])
    # A full 32-byte bitmap instead of ceil(26/8) = 4 bytes.
    assert not verify_proof(root, DEEP[0], b"x", [d, bm.ljust(32, b"\0"), sibs, term])
