"""Blobs on chain: what consensus knows of a blob, and until when every node keeps it.

A BLOB transaction records `b"b" + root -> [size, chunk_bytes, expiry]`: the blob's
shape, and the last height at which nodes must still hold its chunks.  Expiry is the
block's height plus the chain's `blob_retention_blocks` plus the blocks the sender pinned
(paid in its intrinsic gas, ledger.tx.intrinsic_gas); a later BLOB of the same blob, or a
job that needs the data (ledger/jobs.py), only ever moves it later.  The bytes are not in
the state: the node's ledger/blobstore.py holds them, and a node that does not have every
chunk of a recorded blob refuses the block (data availability).
"""
from __future__ import annotations

from typing import Protocol

from ledger import errors
from ledger.blobs import BlobRef
from ledger.params import ChainParams
from ledger.state import BLOB_PREFIX, State, get_record, set_record


class BlobSource(Protocol):
    """The node's blob data, as the state transition may read it (ledger/blobstore.py)."""

    def has(self, ref: BlobRef) -> bool: ...

    def chunk(self, root: bytes, index: int) -> bytes | None: ...


class NoBlobs:
    """A source that holds nothing: a block with a blob is then unavailable."""

    def has(self, ref: BlobRef) -> bool:
        return False

    def chunk(self, root: bytes, index: int) -> bytes | None:
        return None


class BlobUnavailable(errors.InvalidTransaction):
    """This node does not hold every chunk of a blob the transaction names."""

    reason = "blob_unavailable"


def record(state: State, root: bytes) -> tuple[BlobRef, int] | None:
    """(the blob, its expiry height) if a block recorded it, else None."""
    w = get_record(state, BLOB_PREFIX, root)
    return None if w is None else (BlobRef(root, w[0], w[1]), w[2])


def keep_until(state: State, ref: BlobRef, height: int) -> int:
    """Make nodes keep the blob's data at least until `height`; returns its expiry."""
    old = record(state, ref.root)
    expiry = height if old is None else max(old[1], height)
    set_record(state, BLOB_PREFIX, ref.root, [ref.size, ref.chunk_bytes, expiry])
    return expiry


def check(state: State, params: ChainParams, source: BlobSource, ref: BlobRef) -> None:
    """May a block hold a BLOB of `ref`?  BlobUnavailable if not: the block is invalid to
    this node, and a proposer leaves the transaction out.  Runs before the fee is taken."""
    if ref.size > params.max_blob_bytes:
        raise BlobUnavailable(f"blob is {ref.size} bytes, over the chain's limit of {params.max_blob_bytes}")
    old = record(state, ref.root)
    if old is not None and (old[0].size, old[0].chunk_bytes) != (ref.size, ref.chunk_bytes):
        raise BlobUnavailable(f"blob {ref.root.hex()} is recorded as {old[0].size} bytes in chunks of "
                              f"{old[0].chunk_bytes}")
    if not source.has(ref):
        raise BlobUnavailable(f"this node does not hold every chunk of blob {ref.root.hex()}")


def put(state: State, params: ChainParams, height: int, ref: BlobRef, pin_blocks: int) -> int:
    """A BLOB transaction's effect (after `check`): the blob is kept for the retention window
    and the pinned blocks from this height on.  Returns its expiry."""
    return keep_until(state, ref, height + params.blob_retention_blocks + pin_blocks)
