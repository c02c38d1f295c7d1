"""ledger.blobs: chunking, names, chunk proofs and reassembly, against the rules of
docs/jobs.md "Blobs" (the root recomputed here from the RFC 6962 definition)."""
from __future__ import annotations

import hashlib
import os

import pytest

from ledger import blobs
from ledger.blobs import (
    CHUNK_BYTES,
    MAX_BLOB_SIZE,
    MIN_CHUNK_BYTES,
    BlobError,
    BlobRef,
    assemble,
    check_chunk,
    chunk_leaves,
    chunk_proof,
    chunked,
    ref_of,
    ref_of_leaves,
    split,
)
from ledger.errors import LedgerError
from tests.test_merkle import ref_root

KIB4 = MIN_CHUNK_BYTES


def data_of(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(b"blob %d" % seed).digest(size)


def test_constants() -> None:
    assert (MIN_CHUNK_BYTES, CHUNK_BYTES, blobs.MAX_CHUNK_BYTES, MAX_BLOB_SIZE) == (4096, 1 << 20, 1 << 20, 1 << 40)
    assert issubclass(BlobError, LedgerError) and BlobError.reason == "invalid_blob"


@pytest.mark.parametrize("size", [1, 2, KIB4 - 1, KIB4, KIB4 + 1, 3 * KIB4, 5 * KIB4 + 17, 64 * KIB4 + 1])
def test_split_and_root_follow_the_rules(size: int) -> None:
    data = data_of(size, size)
    chunks = split(data, KIB4)
    n = -(-size // KIB4)
    assert len(chunks) == n and b"".join(chunks) == data
    assert all(len(c) == KIB4 for c in chunks[:-1]) and 1 <= len(chunks[-1]) <= KIB4
    ref = ref_of(data, KIB4)
    assert ref == BlobRef(ref_root(chunks), size, KIB4)
    assert ref.chunks == n
    assert [ref.chunk_size(i) for i in range(n)] == [len(c) for c in chunks]
    assert ref_of(bytearray(data), KIB4) == ref_of(memoryview(data), KIB4) == ref
    assert ref_of_leaves(chunk_leaves(chunks), size, KIB4) == ref
    b = chunked(data, KIB4)
    assert b.ref == ref and list(b.chunks) == chunks and list(b.leaves) == chunk_leaves(chunks)


def test_every_chunk_verifies_and_any_change_is_refused() -> None:
    data = data_of(7 * KIB4 + 100)
    b = chunked(data, KIB4)
    assert b.ref.chunks == 8
    for i, c in enumerate(b.chunks):
        check_chunk(b.ref, i, c, b.proof(i))
        check_chunk(b.ref, i, bytearray(c), tuple(b.proof(i)))
        assert chunk_proof(b.leaves, i) == b.proof(i)
        bad = bytearray(c)
        bad[len(c) // 2] ^= 0x40
        with pytest.raises(BlobError, match=f"chunk {i} of 8: proof does not lead"):
            check_chunk(b.ref, i, bytes(bad), b.proof(i))
        # a chunk presented at another index
        j = (i + 1) % 8
        with pytest.raises(BlobError, match="proof does not lead|bytes, must be"):
            check_chunk(b.ref, j, c, b.proof(i))
        # a proof that is not this chunk's
        if i != j and len(c) == b.ref.chunk_size(j):
            with pytest.raises(BlobError, match="proof does not lead"):
                check_chunk(b.ref, i, c, b.proof(j))


def test_check_chunk_names_the_rule_that_failed() -> None:
    b = chunked(data_of(3 * KIB4 + 5), KIB4)
    ref, last = b.ref, b.ref.chunks - 1
    for index in (-1, 4, 100, True, 1.0, "0"):
        with pytest.raises(BlobError, match="index .* outside"):
            check_chunk(ref, index, b.chunks[0], b.proof(0))
    with pytest.raises(BlobError, match="chunk 0 of 4 is 4095 bytes, must be 4096"):
        check_chunk(ref, 0, b.chunks[0][:-1], b.proof(0))
    with pytest.raises(BlobError, match="chunk 3 of 4 is 6 bytes, must be 5"):
        check_chunk(ref, last, b.chunks[last] + b"\0", b.proof(last))
    with pytest.raises(BlobError, match="must be bytes"):
        check_chunk(ref, 0, "text", b.proof(0))
    for proof in ([], b.proof(0)[:-1], b.proof(0) + [bytes(32)], None, [b"x"] * 2, "junk"):
        with pytest.raises(BlobError, match="proof does not lead"):
            check_chunk(ref, 0, b.chunks[0], proof)
    # the same root under another size does not accept the chunks
    other = BlobRef(ref.root, ref.size + KIB4, KIB4)
    with pytest.raises(BlobError, match="proof does not lead"):
        check_chunk(other, last, b"\0" * KIB4, b.proof(last))


def test_a_single_chunk_blob() -> None:
    b = chunked(b"x", KIB4)
    assert b.ref.chunks == 1 and b.ref.root == hashlib.sha256(b"\x00x").digest()
    check_chunk(b.ref, 0, b"x", [])
    assert assemble(b.ref, [b"x"]) == b"x"
    with pytest.raises(BlobError, match="chunk 0 of 1 is 2 bytes, must be 1"):
        check_chunk(b.ref, 0, b"xy", [])


def test_assemble_checks_presence_sizes_and_root() -> None:
    data = data_of(5 * KIB4 + 1)
    b = chunked(data, KIB4)
    n = b.ref.chunks
    assert assemble(b.ref, b.chunks) == data
    assert assemble(b.ref, list(b.chunks)) == data
    assert assemble(b.ref, {i: c for i, c in reversed(list(enumerate(b.chunks)))}) == data
    with pytest.raises(BlobError, match=f"chunk 2 of {n} is missing"):
        assemble(b.ref, {i: c for i, c in enumerate(b.chunks) if i not in (2, 4)})
    with pytest.raises(BlobError, match=f"chunk {n - 1} of {n} is missing"):
        assemble(b.ref, b.chunks[:-1])
    with pytest.raises(BlobError, match=f"{n + 1} chunks given"):
        assemble(b.ref, b.chunks + (b"x",))
    with pytest.raises(BlobError, match="indices outside"):
        assemble(b.ref, {**dict(enumerate(b.chunks)), n: b"x"})
    with pytest.raises(BlobError, match=f"chunk 1 of {n} is bytes of 4095 bytes, must be 4096"):
        assemble(b.ref, [c[:-1] if i == 1 else c for i, c in enumerate(b.chunks)])
    swapped = list(b.chunks)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(BlobError, match="do not hash to root"):
        assemble(b.ref, swapped)


@pytest.mark.parametrize("wire, message", [
    (None, "must be \\[root, size, chunk_bytes\\]"),
    ([bytes(32), 1], "must be \\[root, size, chunk_bytes\\]"),
    ([bytes(32), 1, KIB4, 0], "must be \\[root, size, chunk_bytes\\]"),
    ({"root": bytes(32)}, "must be \\[root, size, chunk_bytes\\]"),
    ([bytes(31), 1, KIB4], "root must be 32 bytes"),
    ([bytes(33), 1, KIB4], "root must be 32 bytes"),
    ([bytearray(32), 1, KIB4], "root must be 32 bytes"),
    (["00" * 32, 1, KIB4], "root must be 32 bytes"),
    ([bytes(32), 0, KIB4], "size must be an int in \\[1, 2\\*\\*40\\]"),
    ([bytes(32), -5, KIB4], "size must be"),
    ([bytes(32), (1 << 40) + 1, KIB4], "size must be"),
    ([bytes(32), True, KIB4], "size must be"),
    ([bytes(32), 1.0, KIB4], "size must be"),
    ([bytes(32), 1, 2048], "not a power of two in \\[4096, 1048576\\]"),
    ([bytes(32), 1, 2 << 20], "not a power of two"),
    ([bytes(32), 1, 3 * KIB4], "not a power of two"),
    ([bytes(32), 1, 0], "not a power of two"),
    ([bytes(32), 1, True], "chunk_bytes must be an int"),
    ([bytes(32), 1, "4096"], "chunk_bytes must be an int"),
])
def test_from_wire_is_strict(wire, message: str) -> None:
    with pytest.raises(BlobError, match=message):
        BlobRef.from_wire(wire)


def test_wire_round_trip_and_limits() -> None:
    for size, cb in ((1, KIB4), (MAX_BLOB_SIZE, CHUNK_BYTES), (12345, 1 << 13)):
        ref = BlobRef(bytes(range(32)), size, cb)
        assert BlobRef.from_wire(ref.to_wire()) == ref == BlobRef.from_wire(tuple(ref.to_wire()))
    assert BlobRef(bytes(32), MAX_BLOB_SIZE, KIB4).chunks == 1 << 28
    ref = BlobRef(bytes(32), 10, KIB4)
    with pytest.raises(BlobError, match="index 1 outside \\[0, 1\\)"):
        ref.chunk_size(1)


def test_split_and_ref_refuse_bad_input() -> None:
    for fn in (split, ref_of, chunked):
        with pytest.raises(BlobError, match="size must be in \\[1, 2\\*\\*40\\] bytes, not 0"):
            fn(b"", KIB4)
        with pytest.raises(BlobError, match="must be bytes, not str"):
            fn("text", KIB4)
        with pytest.raises(BlobError, match="not a power of two"):
            fn(b"x", 5000)
    with pytest.raises(BlobError, match="contiguous"):
        ref_of(memoryview(bytes(64))[::2], KIB4)
    with pytest.raises(BlobError, match="3 chunk hashes for a blob of 5 bytes"):
        ref_of_leaves([bytes(32)] * 3, 5, KIB4)
    with pytest.raises(BlobError, match="index 3 outside"):
        chunk_proof([bytes(32)] * 3, 3)


def test_default_chunks_are_one_mib_and_each_is_hashed_once(monkeypatch) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 1)
    calls = []
    real = blobs.leaf_hash

    def counting(item):
        calls.append(memoryview(item).nbytes)
        return real(item)

    monkeypatch.setattr(blobs, "leaf_hash", counting)
    ref = ref_of(data)
    assert ref.chunk_bytes == CHUNK_BYTES and ref.chunks == 4
    assert calls == [CHUNK_BYTES] * 3 + [1]          # every byte hashed exactly once
    calls.clear()
    b = chunked(data)
    assert b.ref == ref and calls == [CHUNK_BYTES] * 3 + [1]
    calls.clear()
    for i in range(4):
        b.proof(i)
    assert calls == []                                 # proofs reuse the leaves
