"""ledger.merkle against the RFC 6962 definition and its published test vectors."""
from __future__ import annotations

from hashlib import sha256

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import EMPTY_MERKLE_ROOT, merkle_root


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
