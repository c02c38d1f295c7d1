"""The blob methods (docs/rpc.md "Blobs"): upload a chunk with its proof, read a blob's
shape and presence, serve a chunk with its proof.

A chunk enters the node's blob store (ledger/blobstore.py) only with a proof against the
blob's root; a BLOB transaction (broadcast_tx) then records the blob on chain.  What a
client may hold here before any block records its blob is bounded: the bytes of
uploads not yet on chain, kept as a running figure rescanned once per block, never more
than ledger.blobstore.MAX_PENDING_BYTES.  Proofs are served from each complete blob's
tree, built once (ledger.merkle.merkle_levels) and kept within a bound: a blob's chunks
never change under its root, so a kept tree is never stale.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ledger import blob_records, blobstore, errors
from ledger.blobs import BlobError, BlobRef
from ledger.merkle import merkle_levels, merkle_proof_of_levels
from ledger.state import State
from net.rpc.errors import INVALID_PARAMS, NOT_FOUND, SERVER_BUSY, RpcError
from net.rpc.methods import Node, method
from net.rpc.params import _bad, p_bool, p_hex, p_int

MAX_PROOF_HASHES = 64   # a blob of 2**40 bytes in 4 KiB chunks has a path of 28
TREE_HASHES_KEPT = 1 << 20  # hashes of the Merkle levels kept for blob_chunk, all blobs together
                            # (about 70 MiB; the tree last asked for is always kept)
_REF_KEYS = {"root", "size", "chunk_bytes"}


@dataclass
class _Pending:
    """Bytes of uploads no block has recorded, as of the tip `height` plus what came since."""

    height: int
    bytes: int


_PENDING: "weakref.WeakKeyDictionary[Any, _Pending]" = weakref.WeakKeyDictionary()
_TREES: "OrderedDict[bytes, list[list[bytes]]]" = OrderedDict()


def p_blob(node: Node, v: Any) -> BlobRef:
    """{root: 32 bytes of hex, size, chunk_bytes}: a valid BlobRef within the chain's max_blob_bytes."""
    if not isinstance(v, dict) or set(v) != _REF_KEYS:
        raise _bad("blob", "an object {root, size, chunk_bytes}")
    root = p_hex(v["root"], "blob.root", 32)
    size = p_int(v["size"], "blob.size", 1)
    chunk_bytes = p_int(v["chunk_bytes"], "blob.chunk_bytes", 1)
    try:
        ref = BlobRef(root, size, chunk_bytes)
    except BlobError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: blob: {e}") from None
    most = node.chain.params.max_blob_bytes
    if size > most:
        raise RpcError(INVALID_PARAMS, f"invalid params: blob.size {size} is over the chain's max_blob_bytes "
                                       f"({most})")
    return ref


def _p_chunk(v: Any, want: int, which: str) -> bytes:
    """`want` bytes of strict hex (0x optional).  bytes.fromhex skips whitespace, so a decoded
    length of exactly half the digits proves there was none: the strict rule of
    ledger.keys.parse_hex at the speed of one decode (a 1 MiB chunk is 2 MiB of text)."""
    s = v[2:] if isinstance(v, str) and v[:2].lower() == "0x" else v
    if not isinstance(s, str) or len(s) != 2 * want:
        raise _bad("chunk", f"{want} bytes of hex ({which})")
    try:
        data = bytes.fromhex(s)
    except ValueError:
        data = b""
    if len(data) != want:
        raise _bad("chunk", f"a hex string ({which})")
    return data


def _recorded(node: Node, root: bytes) -> tuple[BlobRef, int] | None:
    with node.chain.store.read() as r:
        return blob_records.record(State(r.state), root)


def _pending(node: Node) -> _Pending:
    """The running figure of bytes uploaded but not on chain, rescanned when the tip moved
    (a block may have recorded some, pruning may have deleted some)."""
    tip = node.chain.tip.height
    p = _PENDING.get(node)
    if p is None or p.height != tip:
        p = _Pending(tip, node.blobs.pending_bytes(lambda root: node.chain.blob_expiry(root) is not None))
        _PENDING[node] = p
    return p


@method
async def m_put_blob_chunk(node: Node, blob: Any, index: Any, chunk: Any, proof: Any) -> dict:
    """Store chunk `index` of `blob` after checking it against the root; a second copy
    changes nothing.  {"complete": every chunk here, "present": how many}."""
    ref = p_blob(node, blob)
    n = ref.chunks
    if type(index) is not int or not 0 <= index < n:
        raise _bad("index", f"an integer in [0, {n - 1}] (the blob has {n} chunks)")
    data = _p_chunk(chunk, ref.chunk_size(index), f"chunk {index} of {n}")
    if not isinstance(proof, list) or len(proof) > MAX_PROOF_HASHES:
        raise _bad("proof", f"an array of at most {MAX_PROOF_HASHES} hashes (32 bytes of hex each)")
    path = [p_hex(h, f"proof[{i}]", 32) for i, h in enumerate(proof)]
    pending = _pending(node)
    new = node.blobs.ref(ref.root) is None and _recorded(node, ref.root) is None
    most = blobstore.MAX_PENDING_BYTES
    if new and pending.bytes + ref.size > most:
        raise RpcError(SERVER_BUSY, f"server busy: uploads not yet on chain hold {pending.bytes} bytes here; "
                       f"a new blob of {ref.size} would pass the node's limit of {most}: send the BLOB "
                       "transactions of finished uploads first, or wait for stale ones to be pruned",
                       {"limit": "pending_blob_bytes", "max": most, "pending": pending.bytes})
    try:
        complete = node.blobs.put_chunk(ref, index, data, path, node.chain.tip.height)
    except BlobError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {e}") from None
    except errors.StorageFull as e:
        raise RpcError(SERVER_BUSY, f"server busy: {e}", {"limit": "blob_store"}) from None
    if new:
        pending.bytes += ref.size
    return {"complete": complete, "present": node.blobs.present(ref.root)}


@method
async def m_blob(node: Node, root: Any, indices: Any = False) -> dict:
    """A blob's shape, how many of its chunks this node holds, and its expiry (null where no
    block recorded it); with `indices`, the indices of the chunks held."""
    r = p_hex(root, "root", 32)
    want_indices = p_bool(indices, "indices")
    rec = _recorded(node, r)
    ref = node.blobs.ref(r) or (rec[0] if rec is not None else None)
    if ref is None:
        raise RpcError(NOT_FOUND, f"no blob with root {r.hex()} on this node or on chain")
    present = node.blobs.present(r) if node.blobs.ref(r) == ref else 0
    out = {"root": r.hex(), "size": ref.size, "chunk_bytes": ref.chunk_bytes, "chunks": ref.chunks,
           "present": present, "complete": present == ref.chunks, "expiry": None if rec is None else rec[1]}
    if want_indices:
        out["indices"] = node.blobs.present_indices(r) if present else []
    return out


def _levels(node: Node, ref: BlobRef) -> list[list[bytes]]:
    """The Merkle levels of a complete blob, built once from its leaf hashes and kept,
    the least recently asked dropped first, within TREE_HASHES_KEPT."""
    levels = _TREES.get(ref.root)
    if levels is None:
        levels = merkle_levels(node.blobs.leaf_hashes(ref))
        _TREES[ref.root] = levels
        kept = sum(len(level) for tree in _TREES.values() for level in tree)
        while kept > TREE_HASHES_KEPT and len(_TREES) > 1:
            _, old = _TREES.popitem(last=False)
            kept -= sum(len(level) for level in old)
    else:
        _TREES.move_to_end(ref.root)
    return levels


@method
async def m_blob_chunk(node: Node, root: Any, index: Any) -> dict:
    """Chunk `index` of a complete blob with its audit path to the root (ledger.blobs.check_chunk)."""
    r = p_hex(root, "root", 32)
    ref = node.blobs.ref(r)
    if ref is None:
        raise RpcError(NOT_FOUND, f"no data of blob {r.hex()} on this node")
    n = ref.chunks
    if type(index) is not int or not 0 <= index < n:
        raise _bad("index", f"an integer in [0, {n - 1}] (the blob has {n} chunks)")
    if not node.blobs.has(ref):
        raise RpcError(NOT_FOUND, f"blob {r.hex()} is not complete on this node ({node.blobs.present(r)} of {n} "
                                  "chunks): chunks are served with proofs once every chunk is here")
    data = node.blobs.chunk(r, index)
    if data is None:  # deleted (pruned) between the two reads
        raise RpcError(NOT_FOUND, f"chunk {index} of blob {r.hex()} is not on this node")
    proof = merkle_proof_of_levels(_levels(node, ref), index)
    return {"chunk": data.hex(), "proof": [h.hex() for h in proof]}
