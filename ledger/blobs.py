"""Blobs: bytes named by the Merkle root of their chunks (docs/jobs.md "Blobs").

Data sets, models and checkpoints are too big for a transaction; the chain names them by
content (`BlobRef`) and anyone holding a chunk can prove it against the name. Pure: no
store, no network. Every chunk is hashed once per operation (`leaf_hash` over a
memoryview, no copy), so naming a 64 MiB blob costs one SHA-256 pass over it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.merkle import leaf_hash, merkle_proof_of_leaves, merkle_root_of_leaves, verify_leaf_proof

__all__ = ["MIN_CHUNK_BYTES", "MAX_CHUNK_BYTES", "CHUNK_BYTES", "MAX_BLOB_SIZE", "BlobError", "BlobRef",
           "ChunkedBlob", "split", "chunk_leaves", "ref_of", "ref_of_leaves", "chunked", "chunk_proof",
           "check_chunk", "assemble"]

MIN_CHUNK_BYTES = 1 << 12          # 4 KiB
MAX_CHUNK_BYTES = CHUNK_BYTES = 1 << 20   # 1 MiB, the default
MAX_BLOB_SIZE = 1 << 40            # 1 TiB: a size beyond is malformed, not merely large
ROOT_BYTES = 32


class BlobError(LedgerError):
    """A blob reference, chunk or proof that breaks a rule of docs/jobs.md "Blobs"."""
    reason = "invalid_blob"


def _check_chunk_bytes(chunk_bytes: object) -> int:
    if type(chunk_bytes) is not int:
        raise BlobError(f"blob chunk_bytes must be an int, not {type(chunk_bytes).__name__}")
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES or chunk_bytes & (chunk_bytes - 1):
        raise BlobError(f"blob chunk_bytes {chunk_bytes} is not a power of two in "
                        f"[{MIN_CHUNK_BYTES}, {MAX_CHUNK_BYTES}]")
    return chunk_bytes


@dataclass(frozen=True, slots=True)
class BlobRef:
    """The name of a blob: the Merkle root of its chunks, its size in bytes, its chunk size.
    Always valid: the constructor checks every rule (BlobError otherwise)."""
    root: bytes
    size: int
    chunk_bytes: int

    def __post_init__(self) -> None:
        if type(self.root) is not bytes or len(self.root) != ROOT_BYTES:
            raise BlobError(f"blob root must be {ROOT_BYTES} bytes, not {_describe(self.root)}")
        if type(self.size) is not int or not 1 <= self.size <= MAX_BLOB_SIZE:
            raise BlobError(f"blob size must be an int in [1, 2**40], not {_describe(self.size)}")
        _check_chunk_bytes(self.chunk_bytes)

    @property
    def chunks(self) -> int:
        """n = ceil(size / chunk_bytes), at least 1."""
        return -(-self.size // self.chunk_bytes)

    def chunk_size(self, index: int) -> int:
        """Length of chunk `index`: chunk_bytes but for the last, size - (n-1)*chunk_bytes."""
        n = self.chunks
        if type(index) is not int or not 0 <= index < n:
            raise BlobError(f"blob chunk index {_describe(index)} outside [0, {n})")
        return self.chunk_bytes if index < n - 1 else self.size - (n - 1) * self.chunk_bytes

    def to_wire(self) -> list:
        return [self.root, self.size, self.chunk_bytes]

    @classmethod
    def from_wire(cls, w: object) -> BlobRef:
        """Strict: a list (or tuple) of exactly [root, size, chunk_bytes], each valid."""
        if not isinstance(w, (list, tuple)) or len(w) != 3:
            raise BlobError(f"blob reference must be [root, size, chunk_bytes], not {_describe(w)}")
        return cls(w[0], w[1], w[2])


@dataclass(frozen=True, slots=True)
class ChunkedBlob:
    """A blob split and hashed once: its name, its chunks and their leaf hashes, ready to
    hand out any chunk with its proof."""
    ref: BlobRef
    chunks: tuple[bytes, ...]
    leaves: tuple[bytes, ...]

    def proof(self, index: int) -> list[bytes]:
        """The audit path of chunk `index` (no hashing of chunk data)."""
        return chunk_proof(self.leaves, index)


def split(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """data in chunks of chunk_bytes, the last one 1..chunk_bytes long; empty data refused."""
    _check_chunk_bytes(chunk_bytes)
    view = _as_view(data)
    return [bytes(view[i:i + chunk_bytes]) for i in range(0, len(view), chunk_bytes)]


def chunk_leaves(chunks: Sequence[bytes]) -> list[bytes]:
    """The leaf hash H(0x00 || chunk) of each chunk, in order."""
    return [leaf_hash(c) for c in chunks]


def ref_of_leaves(leaves: Sequence[bytes], size: int, chunk_bytes: int) -> BlobRef:
    """The BlobRef of a blob of `size` bytes whose chunk leaf hashes are `leaves`."""
    ref = BlobRef(merkle_root_of_leaves(leaves), size, chunk_bytes)
    if len(leaves) != ref.chunks:
        raise BlobError(f"{len(leaves)} chunk hashes for a blob of {size} bytes in chunks of "
                        f"{chunk_bytes} ({ref.chunks} chunks)")
    return ref


def ref_of(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> BlobRef:
    """The name of data: one hash pass, no copy of the chunks."""
    _check_chunk_bytes(chunk_bytes)
    view = _as_view(data)
    leaves = [leaf_hash(view[i:i + chunk_bytes]) for i in range(0, len(view), chunk_bytes)]
    return ref_of_leaves(leaves, len(view), chunk_bytes)


def chunked(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> ChunkedBlob:
    """data split, hashed once and named: what an uploader keeps to serve chunks and proofs."""
    chunks = split(data, chunk_bytes)
    leaves = chunk_leaves(chunks)
    return ChunkedBlob(ref_of_leaves(leaves, sum(map(len, chunks)), chunk_bytes), tuple(chunks), tuple(leaves))


def chunk_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of chunk `index` given every chunk's leaf hash (`chunk_leaves`)."""
    if type(index) is not int or not 0 <= index < len(leaves):
        raise BlobError(f"blob chunk index {_describe(index)} outside [0, {len(leaves)})")
    return merkle_proof_of_leaves(leaves, index)


def check_chunk(ref: BlobRef, index: int, chunk: bytes, proof: Sequence[bytes]) -> None:
    """Chunk `index` of `ref` is `chunk`, proved by `proof`: index in range, the exact
    length of that chunk, the audit path to ref.root. BlobError names the rule that failed."""
    n = ref.chunks
    if type(index) is not int or not 0 <= index < n:
        raise BlobError(f"blob chunk index {_describe(index)} outside [0, {n})")
    if not isinstance(chunk, (bytes, bytearray, memoryview)):
        raise BlobError(f"blob chunk {index} must be bytes, not {type(chunk).__name__}")
    want = ref.chunk_size(index)
    if memoryview(chunk).nbytes != want:
        raise BlobError(f"blob chunk {index} of {n} is {memoryview(chunk).nbytes} bytes, must be {want}")
    if not verify_leaf_proof(ref.root, leaf_hash(chunk), index, n, proof):
        raise BlobError(f"blob chunk {index} of {n}: proof does not lead to root {ref.root.hex()}")


def assemble(ref: BlobRef, chunks: Mapping[int, bytes] | Sequence[bytes]) -> bytes:
    """The blob's bytes from all its chunks (a mapping index -> chunk, or a sequence in
    order), each of its exact length and together hashing to ref.root; BlobError names the
    first missing or mis-sized chunk, or says the root differs."""
    n = ref.chunks
    if isinstance(chunks, Mapping):
        get = chunks.get
    else:
        if len(chunks) > n:
            raise BlobError(f"{len(chunks)} chunks given for a blob of {n} chunks")
        get = (lambda i: chunks[i] if i < len(chunks) else None)
    parts = []
    for i in range(n):
        c = get(i)
        if c is None:
            raise BlobError(f"blob chunk {i} of {n} is missing")
        if not isinstance(c, (bytes, bytearray, memoryview)) or memoryview(c).nbytes != ref.chunk_size(i):
            raise BlobError(f"blob chunk {i} of {n} is {_describe(c)}, must be {ref.chunk_size(i)} bytes")
        parts.append(c)
    if isinstance(chunks, Mapping) and any(type(k) is not int or not 0 <= k < n for k in chunks):
        raise BlobError(f"chunk indices outside [0, {n}) given for a blob of {n} chunks")
    if merkle_root_of_leaves(chunk_leaves(parts)) != ref.root:
        raise BlobError(f"blob chunks do not hash to root {ref.root.hex()}")
    return b"".join(parts)


def _as_view(data: object) -> memoryview:
    """data as a flat byte view (no copy); BlobError for anything but contiguous bytes-like
    data of 1..2**40 bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BlobError(f"blob data must be bytes, not {type(data).__name__}")
    view = memoryview(data)
    if not view.c_contiguous:
        raise BlobError("blob data must be contiguous bytes")
    view = view.cast("B")
    if not 1 <= len(view) <= MAX_BLOB_SIZE:
        raise BlobError(f"blob size must be in [1, 2**40] bytes, not {len(view)}")
    return view


def _describe(x: object) -> str:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f"{type(x).__name__} of {memoryview(x).nbytes} bytes"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}"
    if type(x) is int:
        return str(x)
    return type(x).__name__
