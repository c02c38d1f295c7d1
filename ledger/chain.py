"""The committed chain on disk: genesis, tip, and the three steps every engine needs.

`build_block` (a proposer makes a block from candidate transactions), `execute_block`
(any validator re-executes a proposed block and checks its roots) and `commit_block`
(a finalised block goes to disk in one LMDB write).  Consensus decides WHEN a block is
final; this module only knows how blocks change state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Container, Iterable, Mapping

from ledger import blob_records, errors, staking
from ledger.blob_records import BlobSource, NoBlobs
from ledger.block import Block, Header
from ledger.commit import Commit
from ledger.params import ChainParams
from ledger.state import Account, State, get_account, set_raw
from ledger.store import Store
from ledger.transition import BlockEnv, BlockOutput, propose_block, state_transition
from ledger.tx import Transaction
from ledger.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class Proposal:
    block: Block
    output: BlockOutput
    rejected: list[tuple[Transaction, errors.LedgerError]]


class Chain:
    """A store opened at its tip.  Single writer: only the validator loop calls commit."""

    def __init__(self, store: Store, chain_id: str, params: ChainParams, blobs: BlobSource = NoBlobs()):
        self.store = store
        self.blobs = blobs  # the node's blob data (ledger/blobstore.py)
        self.chain_id = chain_id
        self.params = params
        height = store.latest_height()
        if height < 0:
            raise errors.LedgerError("the store holds no genesis")
        tip = store.header(height)
        assert tip is not None
        self.tip: Header = tip

    def account(self, address: bytes) -> Account:
        """Latest committed account."""
        with self.store.read() as r:
            return get_account(State(r.state), address)

    def blob_expiry(self, root: bytes) -> int | None:
        """The last height at which nodes keep the blob's data, or None if no block recorded it."""
        with self.store.read() as r:
            rec = blob_records.record(State(r.state), root)
        return None if rec is None else rec[1]

    def validator_set(self, height: int) -> ValidatorSet:
        """The set that signs block `height`, for tip <= height <= tip + 2 (ledger/staking.py):
        what checks the tip's commit, the next block's, and the one after."""
        offset = height - self.tip.height
        if not 0 <= offset <= 2:
            raise errors.LedgerError(f"the validator set of height {height} is not known at tip {self.tip.height}")
        with self.store.read() as r:
            return staking.validator_set(State(r.state), offset)

    def build_block(self, candidates: Iterable[Transaction], proposer: bytes, time_ms: int,
                    last_commit: Commit | None, overrides: Mapping[bytes, bytes | None] | None = None) -> Proposal:
        """Execute the valid candidates on top of the tip and wrap them in a block.
        `overrides` (devnet controls only: raw state key -> stored value or None) are
        written before the first transaction, so the block's state root commits to them."""
        tip = self.tip
        env = BlockEnv(self.chain_id, tip.height + 1, max(time_ms, tip.time_ms + 1), proposer, self.params,
                       self.blobs)
        with self.store.read() as r:
            state = State(r.state)
            for k, v in (overrides or {}).items():
                set_raw(state, k, v)
            block, out, rejected = propose_block(state, r.node, tip, env, candidates, last_commit)
        return Proposal(block, out, rejected)

    def rollback(self, snapshot_id: int) -> int:
        """Devnet only: the store back to a snapshot's height (Store.rollback); the new tip."""
        height = self.store.rollback(snapshot_id)
        tip = self.store.header(height)
        assert tip is not None
        self.tip = tip
        return height

    def execute_block(self, block: Block, verified: Container[bytes] = ()) -> BlockOutput:
        """Re-execute a proposed block on top of the tip; InvalidBlock if it is wrong.
        `verified`: hashes of txs whose signatures this node already checked."""
        with self.store.read() as r:
            return state_transition(r.state, r.node, self.tip, block, self.params, verified, self.blobs)

    def commit_block(self, block: Block, commit: Commit, out: BlockOutput) -> None:
        if block.header.parent_hash != self.tip.hash:
            raise errors.InvalidBlock("block does not extend the tip")
        self.store.commit_block(block, commit, out)
        self.tip = block.header
