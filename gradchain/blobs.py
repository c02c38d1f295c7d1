"""The SDK's side of blobs: what a client uploads (bytes, a file, numpy arrays) named and
split without holding a file in memory, and every chunk a node sends checked against the
root before it is used (docs/rpc.md "Blobs").

A file is read twice, one chunk at a time: once to hash its chunks (the root), once to
send them; only the leaf hashes and the tree above them (64 bytes a chunk) stay in memory.
Numpy arrays become a tensor data set (ledger/datasets.py): floats are quantised to Q.16
by mlcore's host rule (docs/mlcore.md section 5), int32 arrays are taken as they are.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from gradchain.errors import ProofError
from ledger.blobs import CHUNK_BYTES, BlobError, BlobRef, check_chunk
from ledger.merkle import leaf_hash, merkle_levels, merkle_proof_of_levels

__all__ = ["Upload", "upload_of", "dataset_bytes", "parse_ref_root", "checked_chunk"]

@dataclass(frozen=True)
class Upload:
    """A blob ready to send: its name, its tree (every proof without hashing again), and
    read(i), the bytes of chunk i (from memory or read from the file)."""

    ref: BlobRef
    levels: list[list[bytes]]
    read: Callable[[int], bytes]

    def proof(self, index: int) -> list[bytes]:
        return merkle_proof_of_levels(self.levels, index)


def upload_of(data: Any, chunk_bytes: int = CHUNK_BYTES) -> Upload:
    """bytes-like data, a file path (str or os.PathLike), or (x, y) numpy arrays, named
    and ready to send. ValueError for data that cannot be a blob (empty, bad arrays)."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"a data set is given as (x, y) arrays, not a tuple of {len(data)}")
        data = dataset_bytes(*data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _memory_upload(memoryview(data), chunk_bytes)
    if isinstance(data, (str, os.PathLike)):
        return _file_upload(Path(data), chunk_bytes)
    raise TypeError(f"blob data must be bytes, a file path or (x, y) numpy arrays, not {type(data).__name__}")


def _memory_upload(view: memoryview, chunk_bytes: int) -> Upload:
    if not view.c_contiguous:
        raise ValueError("blob data must be contiguous bytes")
    view = view.cast("B")
    _chunk_rule(chunk_bytes)
    if not len(view):
        raise ValueError("a blob holds at least 1 byte: the data is empty")
    leaves = [leaf_hash(view[i:i + chunk_bytes]) for i in range(0, len(view), chunk_bytes)]
    levels = merkle_levels(leaves)
    ref = _ref(levels, len(view), chunk_bytes)
    return Upload(ref, levels, lambda i: bytes(view[i * chunk_bytes:(i + 1) * chunk_bytes]))


def _file_upload(path: Path, chunk_bytes: int) -> Upload:
    _chunk_rule(chunk_bytes)
    if not path.is_file():
        raise ValueError(f"blob file {path} does not exist or is not a regular file")
    leaves, size = [], 0
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            leaves.append(leaf_hash(block))
            size += len(block)
    if size == 0:
        raise ValueError(f"a blob holds at least 1 byte: {path} is empty")
    levels = merkle_levels(leaves)
    ref = _ref(levels, size, chunk_bytes)

    def read(i: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(i * chunk_bytes)
            block = f.read(ref.chunk_size(i))
        if len(block) != ref.chunk_size(i) or leaf_hash(block) != levels[0][i]:
            raise ValueError(f"blob file {path} changed while it was being uploaded (chunk {i})")
        return block
    return Upload(ref, levels, read)


def _chunk_rule(chunk_bytes: int) -> None:
    try:
        BlobRef(bytes(32), 1, chunk_bytes)
    except BlobError as e:
        raise ValueError(str(e)) from None


def _ref(levels: list[list[bytes]], size: int, chunk_bytes: int) -> BlobRef:
    try:
        return BlobRef(levels[-1][0], size, chunk_bytes)
    except BlobError as e:
        raise ValueError(str(e)) from None


def dataset_bytes(x: Any, y: Any) -> bytes:
    """The data-set blob (ledger/datasets.py) of inputs x (rows, features) and labels y.

    x: float -> Q.16 by mlcore's quantise rule (round half up, saturated to mlcore's input
    format); int32 -> taken as Q.16 values as they are; any other dtype is refused.
    y: integer (rows,) -> class labels (kind 0; any integer dtype within int32); float
    (rows,) or (rows, width) -> Q.16 regression targets (kind 1, width 1 for (rows,));
    int32 (rows, width) -> Q.16 targets as they are. ValueError for anything else."""
    import numpy as np

    from ledger.datasets import DatasetError, encode_dataset

    def fixed(a: np.ndarray, name: str) -> np.ndarray:
        if a.dtype.kind == "f":
            from mlcore.fixed import quantize
            from mlcore.models import INPUTS
            try:
                return quantize(a, INPUTS)
            except ValueError as e:
                raise ValueError(f"data set {name}: {e}") from None
        if a.dtype == np.int32:
            return a
        raise ValueError(f"data set {name} is {a.dtype}: give floats (quantised to Q.16) or int32 (Q.16 values)")

    x, y = np.asarray(x), np.asarray(y)
    xq = fixed(x, "x")
    if y.dtype.kind in "iu" and y.ndim == 1:
        if y.size and (int(y.min()) < -2**31 or int(y.max()) >= 2**31):
            raise ValueError("data set class labels y must fit int32")
        yq = y.astype(np.int32)
    elif y.dtype.kind == "f" and y.ndim == 1:
        yq = fixed(y, "y")[:, None]
    else:
        yq = fixed(y, "y")
    try:
        return encode_dataset(np.ascontiguousarray(xq), np.ascontiguousarray(yq))
    except DatasetError as e:
        raise ValueError(str(e)) from None


def parse_ref_root(root: str | bytes | BlobRef) -> bytes:
    """A blob's root from 64 hex digits (0x optional), 32 bytes, or a BlobRef."""
    if isinstance(root, BlobRef):
        return root.root
    if isinstance(root, bytes) and len(root) == 32:
        return root
    if isinstance(root, str):
        s = root[2:] if root[:2].lower() == "0x" else root
        if len(s) == 64:
            try:
                return bytes.fromhex(s)
            except ValueError:
                pass
    raise ValueError(f"a blob root is 64 hex digits or 32 bytes, not {root!r}")


def checked_chunk(ref: BlobRef, index: int, answer: Any) -> bytes:
    """The chunk in a node's blob_chunk answer {chunk, proof}, once its length and audit
    path to ref.root are checked; ProofError otherwise (a node that lies is caught here)."""
    try:
        chunk = bytes.fromhex(answer["chunk"])
        proof: Sequence[bytes] = [bytes.fromhex(h) for h in answer["proof"]]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProofError(f"malformed blob_chunk answer for chunk {index} of {ref.root.hex()}: {e!r}") from None
    try:
        check_chunk(ref, index, chunk, list(proof))
    except BlobError as e:
        raise ProofError(f"the node's chunk does not check: {e}") from None
    return chunk
