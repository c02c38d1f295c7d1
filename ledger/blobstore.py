"""The node's blob data: chunks kept outside the state, in an LMDB environment of their own.

Consensus holds only a blob's record (ledger/blob_records.py: its size and until when it
is kept); the bytes live here, checked chunk by chunk against the blob's root on the way
in (ledger.blobs.check_chunk), so what this store serves is always what the root names.
A blob is *complete* once every chunk is in; a BLOB transaction is admitted, and a block
holding one accepted, only where it is (data availability).

Named databases:
    blobs   root -> [size, chunk_bytes, chunks present, height first seen]
    chunks  root ++ index (4 bytes BE) -> chunk
    leaves  root ++ index -> leaf hash of the chunk (proofs without re-hashing the data)

Uploads that no block records within PENDING_BLOCKS, and recorded blobs past their
expiry, are deleted by `prune` (node-local housekeeping, not consensus).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable, Iterator

import lmdb

from ledger import errors
from ledger.blobs import BlobError, BlobRef, check_chunk, chunk_proof, ref_of, split
from ledger.encoding import decode, encode
from ledger.merkle import leaf_hash, merkle_proof_of_leaves

_DBS = (b"blobs", b"chunks", b"leaves")
PENDING_BLOCKS = 1_000  # an upload no block recorded within this many blocks is deleted
MAX_PENDING_BYTES = 4 << 30  # uploads not yet on chain, at most (a client cannot fill the disk)
_FULL_TEXTS = tuple(os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT))


def _key(root: bytes, index: int) -> bytes:
    return root + index.to_bytes(4, "big")


class BlobStore:
    def __init__(self, path: str | Path, map_size: int = 1 << 40):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_DBS), subdir=True,
                             readahead=False)
        self._db = {name: self.env.open_db(name) for name in _DBS}

    def close(self) -> None:
        self.env.close()

    # ---- reads ----------------------------------------------------------------------------

    def _meta(self, txn: lmdb.Transaction, root: bytes) -> list | None:
        raw = txn.get(root, db=self._db[b"blobs"])
        return None if raw is None else decode(raw)

    def ref(self, root: bytes) -> BlobRef | None:
        """The blob named `root` as this store knows it (complete or not), or None."""
        with self.env.begin() as txn:
            m = self._meta(txn, root)
        return None if m is None else BlobRef(root, m[0], m[1])

    def present(self, root: bytes) -> int:
        """How many of its chunks this store holds."""
        with self.env.begin() as txn:
            m = self._meta(txn, root)
        return 0 if m is None else m[2]

    def has(self, ref: BlobRef) -> bool:
        """Every chunk of exactly this blob is here."""
        with self.env.begin() as txn:
            m = self._meta(txn, ref.root)
        return m is not None and (m[0], m[1]) == (ref.size, ref.chunk_bytes) and m[2] == ref.chunks

    def present_indices(self, root: bytes) -> list[int]:
        """The indices of the chunks of `root` this store holds, ascending (a resumed upload
        sends only the others); read from the leaf hashes, not the chunk data."""
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self._db[b"leaves"])
            if cur.set_range(root):
                for k in cur.iternext(keys=True, values=False):
                    if k[:len(root)] != root:
                        break
                    out.append(int.from_bytes(k[len(root):], "big"))
        return out

    def chunk(self, root: bytes, index: int) -> bytes | None:
        with self.env.begin() as txn:
            v = txn.get(_key(root, index), db=self._db[b"chunks"])
        return None if v is None else bytes(v)

    def leaf_hashes(self, ref: BlobRef) -> list[bytes]:
        """Every chunk's leaf hash, in order; the blob must be complete."""
        if not self.has(ref):
            raise BlobError(f"blob {ref.root.hex()} is not complete on this node")
        with self.env.begin() as txn:
            return [bytes(txn.get(_key(ref.root, i), db=self._db[b"leaves"])) for i in range(ref.chunks)]

    def proof(self, ref: BlobRef, index: int) -> list[bytes]:
        """The chunk's audit path; the blob must be complete."""
        return merkle_proof_of_leaves(self.leaf_hashes(ref), index)

    def chunks(self, ref: BlobRef) -> Iterator[bytes]:
        for i in range(ref.chunks):
            c = self.chunk(ref.root, i)
            if c is None:
                raise BlobError(f"chunk {i} of blob {ref.root.hex()} is missing on this node")
            yield c

    # ---- writes ---------------------------------------------------------------------------

    def pending_bytes(self, recorded: Callable[[bytes], bool]) -> int:
        """Bytes of the blobs here that no block has recorded (uploads in progress)."""
        with self.env.begin() as txn:
            metas = [(bytes(k), decode(v)) for k, v in txn.cursor(db=self._db[b"blobs"])]
        return sum(m[0] for root, m in metas if not recorded(root))

    def put_chunk(self, ref: BlobRef, index: int, chunk: bytes, proof: list[bytes], height: int) -> bool:
        """Store one chunk after checking it against the blob's root (BlobError otherwise).
        Returns whether the blob is complete now.  A second copy of a chunk changes nothing."""
        check_chunk(ref, index, chunk, proof)
        try:
            with self.env.begin(write=True) as txn:
                m = self._meta(txn, ref.root)
                if m is None:
                    m = [ref.size, ref.chunk_bytes, 0, height]
                elif (m[0], m[1]) != (ref.size, ref.chunk_bytes):
                    raise BlobError(f"blob {ref.root.hex()} is known here as {m[0]} bytes in chunks of {m[1]}")
                key = _key(ref.root, index)
                if txn.get(key, db=self._db[b"chunks"]) is None:
                    txn.put(key, chunk, db=self._db[b"chunks"])
                    txn.put(key, leaf_hash(chunk), db=self._db[b"leaves"])
                    m[2] += 1
                    txn.put(ref.root, encode(m), db=self._db[b"blobs"])
                return m[2] == ref.chunks
        except lmdb.Error as e:
            if any(t in str(e) for t in _FULL_TEXTS) or isinstance(e, lmdb.MapFullError):
                raise errors.StorageFull(f"the blob store is full: {e}") from None
            raise

    def put(self, data: bytes, chunk_bytes: int, height: int) -> BlobRef:
        """Store a whole blob held in memory (a test, the harness, a worker's own output)."""
        ref = ref_of(data, chunk_bytes)
        parts = split(data, chunk_bytes)
        leaves = [leaf_hash(c) for c in parts]
        for i, c in enumerate(parts):
            self.put_chunk(ref, i, c, chunk_proof(leaves, i), height)
        return ref

    def delete(self, root: bytes) -> None:
        with self.env.begin(write=True) as txn:
            m = self._meta(txn, root)
            if m is None:
                return
            n = BlobRef(root, m[0], m[1]).chunks
            for i in range(n):
                txn.delete(_key(root, i), db=self._db[b"chunks"])
                txn.delete(_key(root, i), db=self._db[b"leaves"])
            txn.delete(root, db=self._db[b"blobs"])

    def prune(self, height: int, expiry: Callable[[bytes], int | None]) -> list[bytes]:
        """Delete blobs no longer kept at `height`: recorded ones past their expiry, and
        uploads that no block recorded within PENDING_BLOCKS.  Returns the roots deleted."""
        gone = []
        with self.env.begin() as txn:
            entries = [(bytes(k), decode(v)) for k, v in txn.cursor(db=self._db[b"blobs"])]
        for root, (_, _, _, seen) in entries:
            until = expiry(root)
            if (until is None and height - seen > PENDING_BLOCKS) or (until is not None and until < height):
                self.delete(root)
                gone.append(root)
        return gone
