"""ledger.merkle against the RFC 6962 definition and its published test vectors: roots and
audit paths (the paths against PATH(m, D[n]) of RFC 6962 section 2.1.1, written here anew)."""
from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_MERKLE_ROOT,
    leaf_hash,
    merkle_proof,
    merkle_proof_of_leaves,
    merkle_root,
    merkle_root_of_leaves,
    verify_leaf_proof,
    verify_merkle_proof,
)


def ref_root(items: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written literally (recursive split at the largest 2^k < n)."""
    n = len(items)
    if n == 0:
        return sha256(b"").digest()
    if n == 1:
        return sha256(b"\x00" + items[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return sha256(b"\x01" + ref_root(items[:k]) + ref_root(items[k:])).digest()


# Certificate Transparency's reference leaves and the tree heads for sizes 0..8.
CT_LEAVES = [bytes.fromhex(x) for x in [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_rfc6962_reference_vectors() -> None:
    for n in range(len(CT_LEAVES) + 1):
        assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n], n
        assert ref_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n], n


def test_empty_root_is_hash_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_MERKLE_ROOT == sha256(b"").digest()
    assert merkle_root(()) == EMPTY_MERKLE_ROOT


def test_every_size_up_to_300_matches_reference() -> None:
    items = [i.to_bytes(2, "big") * (i % 5) for i in range(300)]
    for n in range(301):
        assert merkle_root(items[:n]) == ref_root(items[:n]), n


def test_leaf_and_inner_are_domain_separated() -> None:
    # A 2-leaf root must not equal the leaf hash of the concatenated children (second
    # preimage across levels), which the 0x00/0x01 prefixes prevent.
    a, b = b"a", b"b"
    two = merkle_root([a, b])
    la, lb = sha256(b"\x00a").digest(), sha256(b"\x00b").digest()
    assert two == sha256(b"\x01" + la + lb).digest()
    assert merkle_root([la + lb]) != two


def test_order_and_content_matter() -> None:
    items = [b"x", b"y", b"z"]
    assert merkle_root(items) != merkle_root(list(reversed(items)))
    assert merkle_root(items) != merkle_root(items[:2])
    assert merkle_root(items) != merkle_root(items + [b""])
    # No odd-node duplication (the Bitcoin CVE-2012-2459 shape).
    assert merkle_root(items) != merkle_root(items + [b"z"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=70))
def test_matches_recursive_definition(items: list[bytes]) -> None:
    assert merkle_root(items) == ref_root(items)
    assert merkle_root(tuple(items)) == ref_root(items)


# --- audit paths -------------------------------------------------------------------------

def ref_path(m: int, items: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n]), written literally: the deeper siblings first."""
    n = len(items)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return ref_path(m, items[:k]) + [ref_root(items[k:])]
    return ref_path(m - k, items[k:]) + [ref_root(items[:k])]


def sized_items(n: int) -> list[bytes]:
    return [sha256(b"item %d of %d" % (i, n)).digest()[: i % 7 + 1] * (i % 3 + 1) for i in range(n)]


def test_proofs_match_the_rfc_definition_for_every_index_of_sizes_1_to_70() -> None:
    for n in range(1, 71):
        items = sized_items(n)
        root = merkle_root(items)
        leaves = [leaf_hash(x) for x in items]
        assert merkle_root_of_leaves(leaves) == root
        for i in range(n):
            proof = merkle_proof(items, i)
            assert proof == ref_path(i, items), (n, i)
            assert merkle_proof_of_leaves(leaves, i) == proof
            assert verify_merkle_proof(root, items[i], i, n, proof), (n, i)
            assert verify_leaf_proof(root, leaves[i], i, n, proof), (n, i)
            # the path has exactly one sibling per level that has one; a longer or shorter one fails
            assert not verify_merkle_proof(root, items[i], i, n, proof + [root])
            if proof:
                assert not verify_merkle_proof(root, items[i], i, n, proof[:-1])
                assert not verify_merkle_proof(root, items[i], i, n, proof[1:])
            # another index or item fails (items are distinct)
            assert not verify_merkle_proof(root, items[i], (i + 1) % n, n, proof) or n == 1
            assert not verify_merkle_proof(root, items[i] + b"!", i, n, proof)


def test_flipping_any_bit_of_any_sibling_or_the_item_fails() -> None:
    for n in (1, 2, 3, 5, 8, 13, 33):
        items = sized_items(n)
        root = merkle_root(items)
        for i in range(n):
            proof = merkle_proof(items, i)
            for s in range(len(proof)):
                for bit in range(256):
                    bad = bytearray(proof[s])
                    bad[bit // 8] ^= 1 << (bit % 8)
                    forged = proof[:s] + [bytes(bad)] + proof[s + 1:]
                    assert not verify_merkle_proof(root, items[i], i, n, forged), (n, i, s, bit)
            for bit in range(8 * len(items[i])):
                bad = bytearray(items[i])
                bad[bit // 8] ^= 1 << (bit % 8)
                assert not verify_merkle_proof(root, bytes(bad), i, n, proof), (n, i, bit)
            for bit in range(256):
                bad = bytearray(root)
                bad[bit // 8] ^= 1 << (bit % 8)
                assert not verify_merkle_proof(bytes(bad), items[i], i, n, proof)


def test_verification_refuses_junk_without_raising() -> None:
    items = sized_items(6)
    root, proof = merkle_root(items), merkle_proof(items, 2)
    assert verify_merkle_proof(root, items[2], 2, 6, proof)
    assert verify_merkle_proof(root, items[2], 2, 6, tuple(proof))
    junk = [
        (root, items[2], 6, 6, proof),            # index == count
        (root, items[2], 7, 6, proof),            # index > count
        (root, items[2], -1, 6, proof),
        (root, items[2], 0, 0, []),               # count < 1
        (root, items[2], 0, -3, []),
        (root, items[2], True, 6, proof),         # bool is not an index
        (root, items[2], 2.0, 6, proof),
        (root, items[2], 2, "6", proof),
        (root[:31], items[2], 2, 6, proof),       # root not 32 bytes
        (root + b"\0", items[2], 2, 6, proof),
        ("ab" * 16, items[2], 2, 6, proof),
        (None, items[2], 2, 6, proof),
        (root, None, 2, 6, proof),
        (root, "text", 2, 6, proof),
        (root, items[2], 2, 6, None),             # not a list
        (root, items[2], 2, 6, b"".join(proof)),
        (root, items[2], 2, 6, [proof[0][:31]] + proof[1:]),   # a 31-byte sibling
        (root, items[2], 2, 6, [proof[0] + b"\0"] + proof[1:]),
        (root, items[2], 2, 6, [None] + proof[1:]),
        (root, items[2], 2, 6, [1] + proof[1:]),
        (root, items[2], 2, 6, [proof[0].hex()] + proof[1:]),
    ]
    for args in junk:
        assert verify_merkle_proof(*args) is False, args
    assert verify_leaf_proof(root, b"short", 2, 6, proof) is False


def test_a_single_item_tree_has_an_empty_path() -> None:
    root = merkle_root([b"only"])
    assert merkle_proof([b"only"], 0) == []
    assert verify_merkle_proof(root, b"only", 0, 1, [])
    assert not verify_merkle_proof(root, b"only", 0, 1, [root])
    assert not verify_merkle_proof(root, b"only", 0, 2, [])


def test_proof_of_an_index_outside_the_list_is_an_index_error() -> None:
    for n, i in ((0, 0), (3, 3), (3, -1)):
        with pytest.raises(IndexError, match="outside a tree"):
            merkle_proof(sized_items(n), i)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_random_proofs_verify_and_match_the_definition(items: list[bytes], data) -> None:
    i = data.draw(st.integers(0, len(items) - 1))
    proof = merkle_proof(items, i)
    assert proof == ref_path(i, items)
    assert verify_merkle_proof(merkle_root(items), items[i], i, len(items), proof)
