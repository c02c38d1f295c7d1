"""Blobs on chain: the node's blob store (ledger/blobstore.py), BLOB transactions and their
records (ledger/blob_records.py), data availability in blocks; real LMDB data dirs."""
from __future__ import annotations

import json
import os

import pytest

from ledger import errors
from ledger.blob_records import BlobUnavailable, record
from ledger.blobs import BlobError, BlobRef, chunk_leaves, chunk_proof, ref_of, split
from ledger.blobstore import PENDING_BLOCKS, BlobStore
from ledger.block import STATUS_SUCCESS
from ledger.chain import Chain
from ledger.encoding import encode
from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.state import State
from ledger.store import Store
from ledger.tx import (BLOB_PER_KIB, BLOB_PIN_PER_MIB_BLOCK, BLOB_TX, TxKind, decode_transaction, intrinsic_gas,
                       put_blob, sign_transaction)
from ledger.validators import Validator, ValidatorSet
from ledger.votes import make_commit

CHAIN = "blob-test"
KEY = PrivateKey.from_label("blob sender")
VALIDATOR = PrivateKey.from_label("blob validator")
RETENTION = 50
PARAMS = ChainParams(blob_retention_blocks=RETENTION, max_blob_bytes=1 << 20)
CB = 4096
DATA = os.urandom(5 * CB + 123)  # 6 chunks, the last one short


def open_node(path, params: ChainParams = PARAMS) -> tuple[Chain, BlobStore]:
    g = Genesis(CHAIN, 1_700_000_000_000, params, ValidatorSet((Validator(VALIDATOR.public_key, 1),)),
                ((KEY.address, 10**15),))
    store = Store(path / "chain", map_size=16 << 20)
    if store.latest_height() < 0:
        changes, root, nodes = g.initial_state()
        store.init_genesis(json.dumps({"genesis": g.to_json(), "devnet": False}).encode(), g.header(root),
                           changes, nodes)
    blobs = BlobStore(path / "blobs", map_size=64 << 20)
    return Chain(store, CHAIN, params, blobs), blobs


def commit(chain: Chain, txs, last=None):
    prop = chain.build_block(txs, VALIDATOR.address, chain.tip.time_ms + 1000, last)
    c = make_commit([VALIDATOR], CHAIN, prop.block.height, 0, prop.block.hash)
    chain.commit_block(prop.block, c, prop.output)
    return prop, c


def upload(blobs: BlobStore, data: bytes = DATA, cb: int = CB, height: int = 0) -> BlobRef:
    ref = ref_of(data, cb)
    leaves = chunk_leaves(split(data, cb))
    for i, c in enumerate(split(data, cb)):
        assert blobs.put_chunk(ref, i, c, chunk_proof(leaves, i), height) == (i == ref.chunks - 1)
    return ref


# ---- the blob store -------------------------------------------------------------------

def test_the_store_takes_only_chunks_that_match_the_root_and_serves_them_with_proofs(tmp_path):
    blobs = BlobStore(tmp_path / "b", map_size=16 << 20)
    ref = ref_of(DATA, CB)
    parts = split(DATA, CB)
    leaves = chunk_leaves(parts)
    with pytest.raises(BlobError):  # another chunk's bytes under index 0
        blobs.put_chunk(ref, 0, parts[1], chunk_proof(leaves, 0), 0)
    with pytest.raises(BlobError):  # a wrong proof
        blobs.put_chunk(ref, 0, parts[0], chunk_proof(leaves, 1), 0)
    assert blobs.ref(ref.root) is None and not blobs.has(ref)
    for i in (3, 0, 3):  # out of order, and a second copy
        blobs.put_chunk(ref, i, parts[i], chunk_proof(leaves, i), 0)
    assert blobs.present(ref.root) == 2 and not blobs.has(ref)
    with pytest.raises(BlobError, match="not complete"):
        blobs.proof(ref, 0)
    other_shape = BlobRef(ref.root, ref.size, 2 * CB)
    with pytest.raises(BlobError):
        blobs.put_chunk(other_shape, 0, parts[0], chunk_proof(leaves, 0), 0)
    upload(blobs)
    assert blobs.has(ref) and blobs.ref(ref.root) == ref
    assert b"".join(blobs.chunks(ref)) == DATA
    for i in range(ref.chunks):
        assert blobs.proof(ref, i) == chunk_proof(leaves, i)
    assert not blobs.has(BlobRef(ref.root, ref.size - 1, CB))  # a different size is a different blob
    blobs.close()
    again = BlobStore(tmp_path / "b", map_size=16 << 20)  # durable across a reopen
    assert again.has(ref) and again.chunk(ref.root, 5) == parts[5]


def test_prune_deletes_expired_blobs_and_uploads_no_block_recorded(tmp_path):
    blobs = BlobStore(tmp_path / "b", map_size=16 << 20)
    kept, expired, stale = (upload(blobs, os.urandom(CB + i), height=10) for i in range(1, 4))
    expiry = {kept.root: 5000, expired.root: 99}
    assert blobs.pending_bytes(lambda r: r in expiry) == stale.size
    assert blobs.prune(100, expiry.get) == [expired.root]
    assert blobs.has(kept) and blobs.has(stale)  # an upload is kept for PENDING_BLOCKS
    assert blobs.prune(10 + PENDING_BLOCKS, expiry.get) == []
    assert blobs.prune(10 + PENDING_BLOCKS + 1, expiry.get) == [stale.root]
    assert blobs.has(kept) and not blobs.has(stale) and not blobs.has(expired) and blobs.chunk(expired.root, 0) is None


# ---- BLOB transactions ------------------------------------------------------------------

def test_a_blob_transaction_records_the_blob_and_its_expiry(tmp_path):
    chain, blobs = open_node(tmp_path)
    ref = upload(blobs)
    tx = put_blob(KEY, CHAIN, 0, ref, pin_blocks=7)
    assert tx.gas_limit == intrinsic_gas(TxKind.BLOB, tx.payload) == BLOB_TX + 21 * BLOB_PER_KIB + 7 * BLOB_PIN_PER_MIB_BLOCK
    assert decode_transaction(tx.raw, 1 << 16).payload == tx.payload
    prop, c1 = commit(chain, [tx])
    (r,) = prop.output.receipts
    assert r.status == STATUS_SUCCESS and r.gas_used == tx.gas_limit
    assert [e[1] for e in r.events] == ["Blob"]
    with chain.store.read() as rd:
        assert record(State(rd.state), ref.root) == (ref, 1 + RETENTION + 7)
    assert chain.blob_expiry(ref.root) == 1 + RETENTION + 7
    # the same blob again, later and unpinned: the expiry only moves later
    _, c2 = commit(chain, [put_blob(KEY, CHAIN, 1, ref)], c1)
    assert chain.blob_expiry(ref.root) == 1 + RETENTION + 7
    commit(chain, [put_blob(KEY, CHAIN, 2, ref, pin_blocks=100)], c2)
    assert chain.blob_expiry(ref.root) == 3 + RETENTION + 100


def test_a_proposer_leaves_out_a_blob_it_does_not_hold_and_changes_nothing(tmp_path):
    chain, blobs = open_node(tmp_path)
    ref = ref_of(DATA, CB)  # never uploaded
    tx = put_blob(KEY, CHAIN, 0, ref)
    root_before = chain.tip.state_root
    prop = chain.build_block([tx], VALIDATOR.address, chain.tip.time_ms + 1000, None)
    assert prop.block.txs == () and [type(e) for _, e in prop.rejected] == [BlobUnavailable]
    assert prop.rejected[0][1].reason == "blob_unavailable"
    assert chain.account(KEY.address).nonce == 0
    assert chain.tip.state_root == root_before
    too_big = ref_of(os.urandom((1 << 20) + 1), 1 << 20)
    upload(blobs, b"x", CB)  # something else is here; the over-size blob is refused whatever is here
    prop = chain.build_block([put_blob(KEY, CHAIN, 0, too_big)], VALIDATOR.address, chain.tip.time_ms + 1000, None)
    assert prop.block.txs == () and "over the chain's limit" in str(prop.rejected[0][1])


def test_a_block_recording_a_blob_this_node_lacks_is_invalid_to_it(tmp_path):
    proposer, pblobs = open_node(tmp_path / "a")
    other, oblobs = open_node(tmp_path / "b")
    ref = upload(pblobs)
    prop = proposer.build_block([put_blob(KEY, CHAIN, 0, ref)], VALIDATOR.address, proposer.tip.time_ms + 1000, None)
    assert len(prop.block.txs) == 1
    with pytest.raises(errors.InvalidBlock, match="does not hold every chunk"):
        other.execute_block(prop.block)
    upload(oblobs)  # once it has the data (from a peer), the same block is valid to it
    assert other.execute_block(prop.block).state_root == prop.output.state_root


def test_malformed_blob_payloads_are_refused_at_decoding():
    ref = ref_of(DATA, CB)
    good = put_blob(KEY, CHAIN, 0, ref)
    for wire in ([ref.to_wire()], [ref.to_wire(), -1], [ref.to_wire(), 2**32], [ref.to_wire(), True],
                 [[ref.root[:31], ref.size, CB], 0], [[ref.root, 0, CB], 0], [[ref.root, ref.size, 3000], 0],
                 [[ref.root, ref.size], 0], "blob"):
        body = [1, CHAIN, KEY.public_key, 0, good.gas_limit, 1, TxKind.BLOB, wire]
        raw = encode(body + [bytes(64)])
        with pytest.raises(errors.MalformedTransaction):
            decode_transaction(raw, 1 << 16)
    with pytest.raises(ValueError):
        sign_transaction(KEY, CHAIN, 0, 99, None)


def test_default_chain_parameters_keep_the_genesis_hash_of_earlier_releases():
    """The blob parameters enter the wire form (and the genesis hash) only when set."""
    assert ChainParams().to_wire() == [65536, 16777216, 1_000_000_000, 1_000_000_000, 100, 100, 5]
    assert ChainParams(blob_retention_blocks=9).to_wire()[-1] == [["blob_retention_blocks", 9]]
    assert ChainParams.from_json(ChainParams(max_blob_bytes=4096).to_json()).max_blob_bytes == 4096
    with pytest.raises(ValueError):
        ChainParams(max_blob_bytes=(1 << 40) + 1)
