"""Blocks, headers and receipts, with their canonical wire forms (commits: ledger/commit.py).

A block at height H carries the commit (precommit signatures) that finalised block H-1,
as CometBFT does; the commit of block H itself is stored beside it once it exists.
The header's state root is the root AFTER executing the block's transactions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ledger import errors
from ledger.encoding import DecodeError, decode, encode
from ledger.hashing import HASH_SIZE, hash_bytes
from ledger.keys import ADDRESS_SIZE
from ledger.commit import Commit, commit_from_wire
from ledger.tx import Transaction, decode_transaction

BLOCK_VERSION = 1
RECEIPT_VERSION = 1

STATUS_FAILED = 0
STATUS_SUCCESS = 1


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: str
    height: int
    time_ms: int  # proposer's clock, strictly increasing along the chain
    parent_hash: bytes
    proposer: bytes  # validator address
    tx_root: bytes
    receipts_root: bytes
    state_root: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    last_commit_hash: bytes

    def to_wire(self) -> list:
        return [BLOCK_VERSION, self.chain_id, self.height, self.time_ms, self.parent_hash,
                self.proposer, self.tx_root, self.receipts_root, self.state_root,
                self.validators_hash, self.next_validators_hash, self.last_commit_hash]

    @property
    def hash(self) -> bytes:
        return hash_bytes(encode(self.to_wire()))


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[Transaction, ...]
    last_commit: Commit | None

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height


@dataclass(frozen=True, slots=True)
class Receipt:
    """What executing a valid transaction did.

    events:  ([contract, name, data], ...), data in the VM's value encoding
    output:  the VM encoding of a call's result or a deploy's contract address, or None
    failure: (code, contract, function, line) of a failed contract run, else ()
    logs:    the contract's print() lines
    """

    status: int
    gas_used: int
    error: str = ""  # why it failed, in the VM's words (failure_text adds code and place)
    events: tuple = ()
    output: bytes | None = None
    failure: tuple = ()
    logs: tuple = ()

    def to_wire(self) -> list:
        return [RECEIPT_VERSION, self.status, self.gas_used, self.error, [list(e) for e in self.events],
                self.output, list(self.failure), list(self.logs)]


def failure_text(r: Receipt) -> str:
    """A failed receipt's error as people read it: "revert: reason (in fn, line 12)"."""
    if not r.failure:
        return r.error
    code, _, function, line = r.failure
    where = f" (in {function}, line {line})" if function and line else ""
    return f"{code}: {r.error}{where}"


# ---- decoding ------------------------------------------------------------------------

def _need(cond: bool, what: str) -> None:
    if not cond:
        raise errors.InvalidBlock(what)


def _is_hash(v: Any) -> bool:
    return type(v) is bytes and len(v) == HASH_SIZE


def header_from_wire(w: Any) -> Header:
    _need(isinstance(w, list) and len(w) == 12 and type(w[0]) is int and w[0] == BLOCK_VERSION,
          "header must be a v1 array of 12 fields")
    _, chain_id, height, time_ms, parent, proposer, tx_root, rc_root, st_root, vh, nvh, lch = w
    _need(type(chain_id) is str, "header chain id must be a string")
    _need(type(height) is int and height >= 0 and type(time_ms) is int and time_ms >= 0, "bad height or time")
    _need(type(proposer) is bytes and len(proposer) == ADDRESS_SIZE, "proposer must be an address")
    _need(all(_is_hash(h) for h in (parent, tx_root, rc_root, st_root, vh, nvh, lch)), "header hashes must be 32 bytes")
    return Header(chain_id, height, time_ms, parent, proposer, tx_root, rc_root, st_root, vh, nvh, lch)


def encode_block(block: Block) -> bytes:
    return encode([BLOCK_VERSION, block.header.to_wire(), [t.raw for t in block.txs],
                   block.last_commit.to_wire() if block.last_commit else None])


def decode_block(raw: bytes, max_block_bytes: int, max_tx_bytes: int,
                 known: Callable[[bytes], Transaction | None] = lambda _h: None) -> Block:
    """Parse a block's wire bytes; raises InvalidBlock (or its transaction's error).
    `known(tx hash)` may give a transaction already decoded (a node's mempool): the same
    hash is the same bytes, so it is not decoded again."""
    _need(len(raw) <= max_block_bytes, "block is over the size limit")
    try:
        w = decode(raw)
    except DecodeError as e:
        raise errors.InvalidBlock(f"block is not canonical msgpack: {e}") from None
    _need(isinstance(w, list) and len(w) == 4 and type(w[0]) is int and w[0] == BLOCK_VERSION,
          "block must be a v1 array of 4 fields")
    header = header_from_wire(w[1])
    _need(isinstance(w[2], list) and all(type(t) is bytes for t in w[2]), "block txs must be a list of bytes")
    try:
        txs = tuple(known(hash_bytes(t)) or decode_transaction(t, max_tx_bytes) for t in w[2])
    except errors.InvalidTransaction as e:
        raise errors.InvalidBlock(f"block holds an invalid transaction: {e}") from None
    last_commit = None if w[3] is None else commit_from_wire(w[3])
    return Block(header, txs, last_commit)


def encode_receipt(r: Receipt) -> bytes:
    return encode(r.to_wire())


def receipt_from_wire(w: list) -> Receipt:
    return Receipt(w[1], w[2], w[3], tuple(tuple(e) for e in w[4]), w[5], tuple(w[6]), tuple(w[7]))


def decode_receipt(raw: bytes) -> Receipt:
    return receipt_from_wire(decode(raw))
