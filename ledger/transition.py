"""The state-transition function: how a block changes the world.

Read top to bottom: `state_transition` checks a block against its parent and
re-executes it; `apply_body` runs its transactions in order; `process_transaction`
runs one.  Nothing here reads a clock, a random source or the network: the output is a
pure function of the parent state and the block.  Gas is charged in process_transaction.

Where things happen:
- a transaction is validated: ledger.tx.validate_transaction (stateless) and
  ledger.tx.check_nonce_and_funds (called by check_transaction below and by the mempool);
  a new one enters the mempool through ledger.admission;
- gas is charged: process_transaction below;
- a block is committed: ledger.store.Store.commit_block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Container, Iterable

from ledger import errors
from ledger.contracts import ContractResult, ExecutionFailure, run_contract_tx
from ledger.block import STATUS_FAILED, STATUS_SUCCESS, Block, Header, Receipt, encode_receipt
from ledger.commit import Commit
from ledger.hashing import EMPTY_HASH
from ledger.merkle import merkle_root
from ledger import blob_records, job_run, jobs, staking
from ledger.blob_records import BlobSource, NoBlobs
from ledger.params import BLOCK_OVERHEAD_BYTES, ChainParams
from ledger.state import (Account, State, begin_transaction, changes, commit_transaction,
                          get_account, rollback_transaction, set_account)
from ledger.trie import update as trie_update
from vm.limits import MAX_OUTPUT_BYTES
from vm.codec import encode_value
from vm.trace import Tracer

from ledger.tx import (INTRINSIC_GAS, Transaction, TxKind, check_nonce_and_funds, intrinsic_gas,
                       validate_transaction, verify_signature)


@dataclass(frozen=True, slots=True)
class BlockEnv:
    """What a transaction may know about the block it runs in."""

    chain_id: str
    height: int
    time_ms: int
    proposer: bytes  # receives the fees
    params: ChainParams
    blobs: BlobSource = NoBlobs()  # this node's blob data (ledger/blobstore.py): BLOB and jobs read it


@dataclass(frozen=True, slots=True)
class BlockOutput:
    """Everything executing a block produced, ready to be committed."""

    receipts: tuple[Receipt, ...]
    changes: dict[bytes, bytes | None]
    tx_root: bytes
    receipts_root: bytes
    state_root: bytes
    trie_nodes: dict[bytes, bytes]
    gas_used: int


# ---- one transaction -------------------------------------------------------------------

def check_transaction(state: State, tx: Transaction) -> Account:
    """Stateful validity (ledger.tx.check_nonce_and_funds) against the sender's account."""
    sender = get_account(state, tx.sender_address)
    check_nonce_and_funds(tx, sender.nonce, sender.balance)
    return sender


def _run_transfer(state: State, env: BlockEnv, tx: Transaction) -> ContractResult:
    payload = tx.payload
    sender = get_account(state, tx.sender_address)
    set_account(state, tx.sender_address, Account(sender.balance - payload.amount, sender.nonce))
    to = get_account(state, payload.to)
    set_account(state, payload.to, Account(to.balance + payload.amount, to.nonce))
    return ContractResult(INTRINSIC_GAS[TxKind.TRANSFER], None, (), ())


def _run_contract(state: State, env: BlockEnv, tx: Transaction) -> ContractResult:
    return run_contract_tx(state, env.chain_id, env.height, env.time_ms, tx)


def _run_staking(state: State, env: BlockEnv, tx: Transaction) -> ContractResult:
    """BOND, UNBOND and EVIDENCE (ledger/staking.py); a refusal is a failed receipt."""
    gas = INTRINSIC_GAS[TxKind(tx.kind)]
    events: tuple = ()
    try:
        if tx.kind == TxKind.BOND:
            staking.bond(state, env.params, tx.sender, tx.payload.amount)
        elif tx.kind == TxKind.UNBOND:
            staking.unbond(state, env.params, env.height, tx.sender_address, tx.payload.amount)
        else:
            s = staking.slash(state, env.params, env.height, env.chain_id, tx.payload.evidence)
            data = encode_value({"validator": s.validator, "burned": s.burned, "unbonding": s.unbonding},
                                MAX_OUTPUT_BYTES)
            events = ((bytes(20), "Slashed", data),)
    except staking.StakingFailure as e:
        raise ExecutionFailure(str(e), gas) from None
    return ContractResult(gas, None, events, ())


def _run_blob(state: State, env: BlockEnv, tx: Transaction) -> ContractResult:
    """BLOB: record the blob and its expiry (ledger/blob_records.py); its data must be here."""
    p = tx.payload
    expiry = blob_records.put(state, env.params, env.height, p.ref, p.pin_blocks)
    data = encode_value({"root": p.ref.root, "size": p.ref.size, "expiry": expiry}, MAX_OUTPUT_BYTES)
    return ContractResult(intrinsic_gas(tx.kind, p), None, ((bytes(20), "Blob", data),), ())


def _run_job(state: State, env: BlockEnv, tx: Transaction) -> ContractResult:
    """JOB: one action of the job protocol (ledger/job_run.py dispatches it to
    ledger/job_training.py or job_inference.py); a refusal is a failed receipt."""
    p = tx.payload
    try:
        gas, name, data = job_run.run(state, env.params, env.height, env.blobs, tx.sender_address, p.action, p.body,
                                   p.value, intrinsic_gas(tx.kind, p), tx.gas_limit)
    except jobs.JobFailed as e:
        raise ExecutionFailure(str(e), e.gas_used, (e.code, b"", "", 0)) from None
    return ContractResult(gas, None, ((bytes(20), name, data),), ())


_RUNNERS: dict[int, Callable[[State, BlockEnv, Transaction], ContractResult]] = {
    TxKind.TRANSFER: _run_transfer, TxKind.DEPLOY: _run_contract, TxKind.CALL: _run_contract,
    TxKind.BOND: _run_staking, TxKind.UNBOND: _run_staking, TxKind.EVIDENCE: _run_staking,
    TxKind.BLOB: _run_blob, TxKind.JOB: _run_job}


def process_transaction(state: State, env: BlockEnv, tx: Transaction, tracer: Tracer | None = None) -> Receipt:
    """Execute one valid transaction. Raises InvalidTransaction if it may not be included
    (nonce, funds, or a blob whose data this node lacks), before it changes anything.
    `tracer` records a contract run's calls (trace_tx's re-execution, ledger/trace.py); it
    is None in every block a node builds or checks, and changes no result.

    The sender pays the whole gas limit up front and bumps its nonce; the kind's effect
    runs inside a rollback point; unused gas is refunded and the fee goes to the proposer.
    A failed run keeps the fee and the nonce bump but none of the run's other changes.
    """
    sender = check_transaction(state, tx)
    if tx.kind == TxKind.BLOB:  # data availability: without the data the tx may not be included
        blob_records.check(state, env.params, env.blobs, tx.payload.ref)
    elif tx.kind == TxKind.JOB:
        jobs.check_available(state, env.height, env.blobs, tx.payload.action, tx.payload.body)
    set_account(state, tx.sender_address, Account(sender.balance - tx.max_fee, sender.nonce + 1))
    begin_transaction(state)
    try:
        if tracer is None or tx.kind not in (TxKind.DEPLOY, TxKind.CALL):
            result = _RUNNERS[tx.kind](state, env, tx)
        else:
            result = run_contract_tx(state, env.chain_id, env.height, env.time_ms, tx, tracer)
        commit_transaction(state)
        receipt = Receipt(STATUS_SUCCESS, result.gas_used, "", result.events, result.output, (), result.logs)
    except ExecutionFailure as e:
        rollback_transaction(state)
        receipt = Receipt(STATUS_FAILED, min(e.gas_used, tx.gas_limit), str(e), (), None, e.failure, e.logs)
    gas_used = receipt.gas_used
    refund = (tx.gas_limit - gas_used) * tx.gas_price
    if refund:
        sender = get_account(state, tx.sender_address)
        set_account(state, tx.sender_address, Account(sender.balance + refund, sender.nonce))
    fee = gas_used * tx.gas_price
    if fee:
        proposer = get_account(state, env.proposer)
        set_account(state, env.proposer, Account(proposer.balance + fee, proposer.nonce))
    return receipt


# ---- a block body ----------------------------------------------------------------------

def _admissible(env: BlockEnv, tx: Transaction, gas_so_far: int) -> None:
    validate_transaction(tx, env.chain_id, env.params.max_block_gas)
    if gas_so_far + tx.gas_limit > env.params.max_block_gas:
        raise errors.GasLimitTooHigh("the block's gas limit is reached")


def apply_body(state: State, env: BlockEnv, txs: Iterable[Transaction]) -> list[Receipt]:
    """Execute a block's transactions in order; any invalid one makes the block invalid."""
    receipts, gas = [], 0
    for i, tx in enumerate(txs):
        try:
            _admissible(env, tx, gas)
            receipts.append(process_transaction(state, env, tx))
        except errors.InvalidTransaction as e:
            raise errors.InvalidBlock(f"transaction {i} ({tx.hash.hex()}) is invalid: {e}") from None
        gas += tx.gas_limit
    return receipts


def build_body(state: State, env: BlockEnv, candidates: Iterable[Transaction]
               ) -> tuple[list[Transaction], list[Receipt], list[tuple[Transaction, errors.LedgerError]]]:
    """Proposer's side of apply_body: keep the candidates that are valid, in order, while
    the block has room; return (included, receipts, rejected with their errors)."""
    included, receipts, rejected, gas, size = [], [], [], 0, 0
    for tx in candidates:
        if size + len(tx.raw) > env.params.max_block_bytes - BLOCK_OVERHEAD_BYTES:
            break
        if gas + tx.gas_limit > env.params.max_block_gas and tx.gas_limit <= env.params.max_block_gas:
            break  # the block is full; this tx fits in the next one
        try:
            _admissible(env, tx, gas)
        except errors.InvalidTransaction as e:
            rejected.append((tx, e))
            continue
        try:
            receipts.append(process_transaction(state, env, tx))
        except errors.InvalidTransaction as e:
            rejected.append((tx, e))
            continue
        included.append(tx)
        gas += tx.gas_limit
        size += len(tx.raw)
    return included, receipts, rejected


def propose_block(state: State, get_node: Callable[[bytes], bytes], parent: Header, env: BlockEnv,
                  candidates: Iterable[Transaction], last_commit: Commit | None
                  ) -> tuple[Block, BlockOutput, list[tuple[Transaction, errors.LedgerError]]]:
    """A proposer's block on top of `parent` (whose state `state` reads): the valid candidates
    in order, the end of the block, and a header naming the roots; plus the rejected txs."""
    vhash, next_vhash = validator_hashes(state)
    included, receipts, rejected = build_body(state, env, candidates)
    staking.end_block(state, env.params, env.height, env.proposer)
    out = finish_block(state, receipts, included, get_node, parent.state_root)
    header = Header(env.chain_id, env.height, env.time_ms, parent.hash, env.proposer, out.tx_root,
                    out.receipts_root, out.state_root, vhash, next_vhash,
                    last_commit.hash if last_commit else EMPTY_HASH)
    return Block(header, tuple(included), last_commit), out, rejected


def finish_block(state: State, receipts: list[Receipt], txs: list[Transaction] | tuple[Transaction, ...],
                 get_node: Callable[[bytes], bytes], parent_state_root: bytes) -> BlockOutput:
    """Compute the roots that a block's header commits to."""
    ch = changes(state)
    state_root, nodes = trie_update(get_node, parent_state_root, ch)
    return BlockOutput(tuple(receipts), ch, merkle_root([t.hash for t in txs]),
                       merkle_root([encode_receipt(r) for r in receipts]), state_root, nodes,
                       sum(r.gas_used for r in receipts))


# ---- a whole block ---------------------------------------------------------------------

def validate_header(parent: Header, header: Header, chain_id: str) -> None:
    """Checks of a header against its parent that need no execution."""
    if header.chain_id != chain_id:
        raise errors.InvalidBlock(f"block is for chain {header.chain_id!r}")
    if header.height != parent.height + 1:
        raise errors.InvalidBlock(f"block height {header.height} does not follow {parent.height}")
    if header.parent_hash != parent.hash:
        raise errors.InvalidBlock("block's parent hash is not the hash of the previous block")
    if header.time_ms <= parent.time_ms:
        raise errors.InvalidBlock("block time does not increase")


def validator_hashes(state: State) -> tuple[bytes, bytes]:
    """(validators_hash, next_validators_hash) of the block built on `state`: set(H) and
    set(H+1), fixed two and one blocks before (ledger/staking.py)."""
    return staking.validator_set(state, 1).hash, staking.validator_set(state, 2).hash


def state_transition(read: Callable[[bytes], bytes | None], get_node: Callable[[bytes], bytes],
                     parent: Header, block: Block, params: ChainParams,
                     verified: Container[bytes] = (), blobs: BlobSource = NoBlobs()) -> BlockOutput:
    """Check `block` against `parent`, execute it, and check the roots its header claims.

    Signatures are checked here except for the tx hashes in `verified` (those this node
    already checked at mempool admission: each signature is verified once).  `blobs` is this
    node's blob data: a block recording a blob it does not hold is invalid to it.
    Commit-certificate and proposer checks belong to consensus, which calls this; the sets
that sign (validators_hash, next_validators_hash) are checked here, from state."""
    h = block.header
    validate_header(parent, h, parent.chain_id)
    for i, tx in enumerate(block.txs):
        if tx.hash not in verified:
            try:
                verify_signature(tx)
            except errors.InvalidTransaction as e:
                raise errors.InvalidBlock(f"transaction {i} ({tx.hash.hex()}) is invalid: {e}") from None
    last_commit_hash = block.last_commit.hash if block.last_commit else bytes(32)
    if h.last_commit_hash != last_commit_hash:
        raise errors.InvalidBlock("header's last commit hash does not match the block's commit")
    env = BlockEnv(h.chain_id, h.height, h.time_ms, h.proposer, params, blobs)
    state = State(read)
    if (h.validators_hash, h.next_validators_hash) != validator_hashes(state):
        raise errors.InvalidBlock("header's validator set hashes are not those the parent state fixes")
    receipts = apply_body(state, env, block.txs)
    staking.end_block(state, params, h.height, h.proposer)
    out = finish_block(state, receipts, block.txs, get_node, parent.state_root)
    for name in ("tx_root", "receipts_root", "state_root"):
        if getattr(out, name) != getattr(h, name):
            raise errors.InvalidBlock(f"header's {name.replace('_', ' ')} does not match the block's execution")
    return out
