"""JSON-RPC 2.0 over HTTP (aiohttp): the node's read and submit interface.

Every method is documented in docs/rpc.md.  Errors use the standard codes
(-32700 parse, -32600 invalid request, -32601 unknown method, -32602 invalid params,
-32603 internal) and these of our own:
    -32000 transaction rejected  (data: {"reason": code, "message": text})
    -32001 not found
    -32002 timed out waiting for commit (data: {"hash": ...})
    -32003 contract execution failed (data: {"code", "message", "contract", "function",
           "line", "gas_used", "logs"}: where and why, never opaque bytes)
    -32004 batch limit reached: the batch's work, reply bytes or commit wait is spent
           (data: {"limit": "work" | "reply_bytes" | "commit_wait", "max": ...})
    -32005 server busy: too many connections, in all or from this IP (HTTP 503)
    -32006 request timeout: the body did not arrive in time (HTTP 408)
A batch's broadcast_tx calls are admitted together, so their signatures are checked
in one parallel batch.

Nothing a client sends may hold the event loop or memory for long (Limits): a batch runs
one request at a time, yielding to the loop after each, and stops at its work, reply
and commit-wait bounds; connections are counted in all and per IP, and one that has not
sent its headers (or its body) in time is closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import keyword
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, Iterator, Protocol

from aiohttp import web

from ledger import errors, staking, trie
from ledger.block import Header, Receipt
from ledger.contracts import read_only_call, read_only_deploy
from ledger.keys import address_hex, parse_address, parse_hex
from ledger.state import State, account_key, code_key, decode_account, decode_code, storage_key
from ledger.tx import (MAX_FUNCTION_NAME, U64_MAX, Call, Deploy, Transaction, TxKind, contract_address,
                       decode_transaction, encode_args, intrinsic_gas, tx_to_json, validate_transaction)
from vm import ml as vm_ml
from vm import runtime
from vm.errors import InvalidContract, VMError
from vm.host import pinned
from vm.limits import MAX_INT_DIGITS, MAX_EVENT_BYTES, MAX_OUTPUT_BYTES, MAX_STORAGE_KEY_BYTES, MAX_STORAGE_VALUE_BYTES
from vm.values import Decimal, decode_value, encode_value, from_json_arg, to_json
from ledger.encoding import encode
from ledger.chain import Chain
from ledger.keys import PrivateKey
from ledger.mempool import AlreadyKnown, Mempool
from consensus.bft import BftEngine
from ledger.genesis import Genesis
from net.consensus_reactor import stall_json



class Node(Protocol):
    """What the RPC server needs from a node (node.Node provides it)."""

    chain: Chain
    mempool: Mempool
    genesis: Genesis
    key: PrivateKey

    async def submit(self, raws: list[bytes]) -> list[bytes | errors.LedgerError]: ...

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> tuple[int, int, Receipt]: ...

    def spawn(self, coro: Coroutine) -> None: ...

log = logging.getLogger("gradchain.rpc")

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
TX_REJECTED, NOT_FOUND, COMMIT_TIMEOUT, CONTRACT_FAILED = -32000, -32001, -32002, -32003
BATCH_LIMIT, SERVER_BUSY, REQUEST_TIMEOUT = -32004, -32005, -32006
CALL_GAS = 50_000_000       # default and most gas of `call` (geth's rpc gas cap;
                            # about 50 ms of contract work: calls run on the node's event loop)
MAX_EVENT_BLOCKS = 10_000   # blocks one `events` query may scan
MAX_EVENT_LIMIT = 10_000    # events one `events` answer may hold
MAX_BATCH = 1_000           # requests in one batch
MAX_BATCH_WORK = 1_000      # work units of one batch (WORK: 1 for most methods)
MAX_REPLY_BYTES = 4 << 20   # bytes of one batch's answers
MAX_COMMIT_WAIT = 600       # seconds: one broadcast_tx_commit's timeout, and a batch's total of them
WORK = {"call": 50, "estimate_gas": 50, "events": 50, "code": 5, "block": 2, "broadcast_tx_commit": 5}
NODE_VERSION = "0.1.0"


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict:
        e = {"code": self.code, "message": self.message}
        if self.data is not None:
            e["data"] = self.data
        return e


def rejected(err: errors.LedgerError) -> RpcError:
    return RpcError(TX_REJECTED, f"transaction rejected: {err}", {"reason": err.reason, "message": str(err)})


# ---- parameter parsing ----------------------------------------------------------------

def _bad(name: str, what: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {name} must be {what}")


def p_int(v: Any, name: str, lo: int = 0) -> int:
    if type(v) is not int or v < lo:
        raise _bad(name, f"an integer >= {lo}")
    return v


def p_hex(v: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(v, str):
        raise _bad(name, "a hex string")
    s = v[2:] if v[:2].lower() == "0x" else v
    try:
        b = parse_hex(s, name)
    except ValueError:
        raise _bad(name, "a hex string") from None
    if size is not None and len(b) != size:
        raise _bad(name, f"{size} bytes of hex")
    return b


def p_address(v: Any, name: str = "address") -> bytes:
    try:
        return parse_address(v)
    except ValueError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {name}: {e}") from None


def p_bool(v: Any, name: str) -> bool:
    if type(v) is not bool:
        raise _bad(name, "true or false")
    return v


def p_range(v: Any, name: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise _bad(name, f"an integer in [{lo}, {hi}]")
    return v


def p_value(v: Any, name: str) -> Any:
    """A contract value given as JSON (vm.values.from_json_arg: {"bytes": "0x.."}, ...)."""
    try:
        return from_json_arg(v)
    except VMError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {name}: {e.message}") from None


def p_args(v: Any) -> list:
    """Contract arguments: a JSON array, each item read by p_value; at most what a
    transaction may carry."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad("args", "an array of arguments")
    out = [p_value(x, f"args[{i}]") for i, x in enumerate(v)]
    try:
        encode_args(out)
    except VMError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: args: {e.message}") from None
    return out


def p_function(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_FUNCTION_NAME or not v.isascii():
        raise _bad("function", f"a function name of 1 to {MAX_FUNCTION_NAME} ASCII characters")
    return v


def p_source(v: Any, max_bytes: int) -> str:
    try:
        ok = type(v) is str and 0 < len(v.encode()) <= max_bytes
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is not UTF-8
        ok = False
    if not ok:
        raise _bad("source", f"non-empty UTF-8 contract source of at most {max_bytes} bytes")
    return v


def p_storage_key(v: Any) -> tuple[Any, bytes]:
    """(key, its encoding): what `storage[key]` inside the contract would look up."""
    k = p_value(v, "key")
    try:
        hash(k)
    except TypeError:
        raise _bad("key", 'a str, bytes, int, bool, null or a tuple of these ({"tuple": [...]}): '
                          "lists and objects cannot be storage keys") from None
    if type(k) is Decimal:
        raise _bad("key", "a str, bytes, int, bool, null or a tuple: a Decimal cannot be a storage key")
    try:
        return k, encode_value(k, MAX_STORAGE_KEY_BYTES)
    except VMError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: key: {e.message}") from None


# ---- views ------------------------------------------------------------------------------

def header_json(h: Header) -> dict:
    return {"hash": h.hash.hex(), "chain_id": h.chain_id, "height": h.height, "time_ms": h.time_ms,
            "parent_hash": h.parent_hash.hex(), "proposer": address_hex(h.proposer),
            "tx_root": h.tx_root.hex(), "receipts_root": h.receipts_root.hex(),
            "state_root": h.state_root.hex(), "validators_hash": h.validators_hash.hex(),
            "next_validators_hash": h.next_validators_hash.hex(), "last_commit_hash": h.last_commit_hash.hex()}


def _address_or_none(a: bytes | None) -> str | None:
    return address_hex(a) if a else None


def event_json(e: tuple, index: int) -> dict:
    contract, name, data = e
    return {"index": index, "contract": address_hex(contract), "name": name,
            "data": to_json(decode_value(data, MAX_EVENT_BYTES)), "data_raw": data.hex()}


def receipt_json(r: Receipt, tx: Transaction) -> dict:
    """A receipt for people and programs: values decoded to JSON (vm.values.to_json), and
    the exact encodings beside them (`output`, `data_raw`) for SDKs that decode them."""
    out = {"status": "success" if r.status else "failed", "gas_used": r.gas_used, "error": r.error,
           "events": [event_json(e, i) for i, e in enumerate(r.events)],
           "output": None if r.output is None else r.output.hex(),
           "result": None if r.output is None else to_json(decode_value(r.output, MAX_OUTPUT_BYTES)),
           "failure": None, "logs": list(r.logs)}
    if r.failure:
        code, contract, function, line = r.failure
        out["failure"] = {"code": code, "contract": _address_or_none(contract), "function": function or None,
                          "line": line or None}
    if tx.kind == TxKind.DEPLOY:
        out["contract_address"] = address_hex(contract_address(tx.sender_address, tx.nonce)) if r.status else None
    return out


def contract_failed(out: runtime.Outcome, intrinsic: int = 0) -> RpcError:
    """-32003 with why and where the contract failed: the fields of a failed receipt's
    `failure` (null where the failure happened outside contract code, e.g. no such
    function), plus the message, gas and print() output."""
    e = out.error
    assert e is not None
    data = {"code": e.code, "message": e.message, "contract": _address_or_none(e.contract),
            "function": e.function or None, "line": e.line or None,
            "gas_used": intrinsic + out.gas_used, "logs": list(out.logs)}
    if isinstance(e, InvalidContract):
        data["issues"] = e.issues  # every problem with its line and column (never in a receipt)
    return RpcError(CONTRACT_FAILED, f"contract execution failed: {e}", data)


def commit_json(c: Any) -> dict | None:
    if c is None:
        return None
    return {"height": c.height, "round": c.round, "block_hash": c.block_hash.hex(),
            "signatures": [{"validator": address_hex(s.validator), "signature": s.signature.hex()}
                           for s in c.signatures]}


# ---- methods ----------------------------------------------------------------------------

Method = Callable[..., Awaitable[Any]]
METHODS: dict[str, Method] = {}


def method(fn: Method) -> Method:
    METHODS[fn.__name__.removeprefix("m_")] = fn
    return fn


def _height(node: Node, height: Any, name: str = "height") -> int:
    latest = node.chain.tip.height
    if height is None:
        return latest
    h = p_int(height, name)
    if h > latest:
        with pinned():  # h may have up to MAX_INT_DIGITS digits, over a host's limit
            raise RpcError(NOT_FOUND, f"no block at height {h} yet (latest is {latest})")
    return h


@contextlib.contextmanager
def _state_at(node: Node, h: int) -> Iterator[tuple[State, Header]]:
    """The world state after block h, read through that block's state root (the latest
    from the flat state table); valid inside the `with` only, and only without awaiting."""
    store = node.chain.store
    header = store.header(h)
    assert header is not None
    with store.read() as r:
        if h == node.chain.tip.height:
            yield State(r.state), header
        else:
            yield State(lambda k: trie.get(r.node, header.state_root, k)), header


@method
async def m_status(node: Node) -> dict:
    """`stalled`: null, or where a BFT node has made no progress for several rounds and
    whose votes are missing (net/consensus_reactor.stall_json)."""
    tip = node.chain.tip
    stall = node.engine.stall() if isinstance(node.engine, BftEngine) else None
    return {"chain_id": node.chain.chain_id, "height": tip.height, "latest_block_hash": tip.hash.hex(),
            "latest_block_time_ms": tip.time_ms, "genesis_hash": node.genesis.hash.hex(),
            "node_version": NODE_VERSION, "validator": address_hex(node.key.address),
            "mempool_size": len(node.mempool), "ml": vm_ml.stats(),
            "stalled": None if stall is None else stall_json(stall)}


@method
async def m_block(node: Node, height: Any = None, hash: Any = None, full: Any = False) -> dict:
    """A block by height (default latest) or by hash; `full` includes decoded transactions."""
    store = node.chain.store
    if hash is not None:
        if height is not None:
            raise RpcError(INVALID_PARAMS, "invalid params: give height or hash, not both")
        h = store.height_of(p_hex(hash, "hash", 32))
        if h is None:
            raise RpcError(NOT_FOUND, f"no block with hash {hash}")
    else:
        h = _height(node, height)
    full = p_bool(full, "full")
    summary = store.block_summary(h)
    assert summary is not None
    header, last_commit, tx_hashes = summary
    out = {"header": header_json(header), "tx_hashes": [t.hex() for t in tx_hashes],
           "last_commit": commit_json(last_commit), "commit": commit_json(store.commit(h))}
    if full:
        block = store.block(h)
        assert block is not None
        out["txs"] = [tx_to_json(t) for t in block.txs]
    return out


@method
async def m_tx(node: Node, hash: Any) -> dict:
    """A committed transaction with its receipt, or {"status": "pending"} while it waits."""
    hsh = p_hex(hash, "hash", 32)
    found = node.chain.store.tx(hsh)
    if found is None:
        pending = node.mempool.get(hsh)
        if pending is not None:
            return {"hash": hsh.hex(), "status": "pending", "tx": tx_to_json(pending)}
        raise RpcError(NOT_FOUND, f"no transaction with hash {hsh.hex()}")
    tx, height, index, receipt = found
    return {"hash": hsh.hex(), "status": "committed", "height": height, "index": index,
            "tx": tx_to_json(tx), "receipt": receipt_json(receipt, tx)}


@method
async def m_account(node: Node, address: Any, height: Any = None, prove: Any = False) -> dict:
    """Balance and nonce at a height (default latest), optionally with a Merkle proof
    against that block's state root."""
    addr = p_address(address)
    h = _height(node, height)
    prove = p_bool(prove, "prove")
    header = node.chain.store.header(h)
    assert header is not None
    key = account_key(addr)
    with node.chain.store.read() as r:
        raw = trie.get(r.node, header.state_root, key)
        proof = trie.prove(r.node, header.state_root, key) if prove else None
    acct = decode_account(raw) if raw is not None else None
    out = {"address": address_hex(addr), "height": h, "state_root": header.state_root.hex(),
           "balance": acct.balance if acct else 0, "nonce": acct.nonce if acct else 0}
    if height is None:
        out["pending_nonce"] = node.mempool.pending_nonce(addr)
    if prove:
        out["proof"] = {"key": key.hex(), "value": raw.hex() if raw is not None else None,
                        "proof": encode(proof).hex()}
    return out


@method
async def m_validators(node: Node, height: Any = None) -> dict:
    """The set that signed block `height` (default latest), the set of height + 1 ("next"),
    and the bonded table after it, which signs from height + 2 (ledger/staking.py)."""
    h = _height(node, height)
    with _state_at(node, h) as (state, _):
        vs = staking.validator_set(state, 0)
        following = staking.validator_set(state, 1)
        table = staking.bonded(state)

    def rows(vals: tuple) -> list[dict]:
        return [{"address": address_hex(v.address), "public_key": v.public_key.hex(), "stake": v.stake}
                for v in vals]
    return {"height": h, "total_stake": vs.total_stake, "hash": vs.hash.hex(), "validators": rows(vs.validators),
            "next": rows(following.validators), "bonded": rows(table)}


@method
async def m_genesis(node: Node) -> dict:
    return {"hash": node.genesis.hash.hex(), "genesis": node.genesis.to_json()}


async def _admit(node: Node, raws: list[bytes]) -> list[Any]:
    return await node.submit(raws)


@method
async def m_broadcast_tx(node: Node, tx: Any) -> dict:
    """Returns once the mempool admitted the transaction (or with the reason it did not)."""
    (res,) = await node.submit([p_hex(tx, "tx")])
    if isinstance(res, errors.LedgerError):
        raise rejected(res)
    return {"hash": res.hex()}


@method
async def m_broadcast_tx_async(node: Node, tx: Any) -> dict:
    """Returns the hash at once; admission happens in the background (check with `tx`)."""
    raw = p_hex(tx, "tx")
    try:  # what can be told at once is told at once; the signature and mempool checks follow
        parsed = decode_transaction(raw, node.chain.params.max_tx_bytes)
        validate_transaction(parsed, node.chain.chain_id, node.chain.params.max_block_gas)
    except errors.InvalidTransaction as e:
        raise rejected(e) from None
    node.spawn(node.submit([raw]))
    return {"hash": parsed.hash.hex()}


def _is_timeout(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_COMMIT_WAIT


@method
async def m_broadcast_tx_commit(node: Node, tx: Any, timeout: Any = 30) -> dict:
    """Returns the receipt once the transaction is in a committed block."""
    if not _is_timeout(timeout):
        raise _bad("timeout", f"a number of seconds in (0, {MAX_COMMIT_WAIT}]")
    raw = p_hex(tx, "tx")
    (res,) = await node.submit([raw])
    if isinstance(res, (errors.NonceTooLow, AlreadyKnown)):
        # sent before (a retry): answer with its receipt, or wait for it, rather than refuse
        from ledger.hashing import hash_bytes
        h = hash_bytes(raw)
        if node.chain.store.tx(h) is not None or node.mempool.get(h) is not None:
            res = h
    if isinstance(res, errors.LedgerError):
        raise rejected(res)
    try:
        height, index, receipt = await node.wait_commit(res, timeout)
    except asyncio.TimeoutError:
        raise RpcError(COMMIT_TIMEOUT, f"transaction {res.hex()} was admitted but not committed within "
                       f"{timeout} s", {"hash": res.hex()}) from None
    except errors.LedgerError as e:
        raise rejected(e) from None
    parsed = decode_transaction(raw, node.chain.params.max_tx_bytes)
    return {"hash": res.hex(), "height": height, "index": index, "receipt": receipt_json(receipt, parsed)}


# ---- contracts --------------------------------------------------------------------------

def _gas(node: Node, gas: Any) -> int:
    return CALL_GAS if gas is None else p_range(gas, "gas", 1, min(CALL_GAS, node.chain.params.max_block_gas))


@method
async def m_call(node: Node, contract: Any, function: Any, args: Any = None, height: Any = None,
                 sender: Any = None, gas: Any = None, value: Any = 0) -> dict:
    """A read-only call of an exported function against the state after a block (default
    latest): free, nothing kept.  ctx.block_height/time are that block's."""
    addr = p_address(contract, "contract")
    fn = p_function(function)
    argv = p_args(args)
    frm = bytes(20) if sender is None else p_address(sender, "sender")
    gas_limit = _gas(node, gas)
    val = p_range(value, "value", 0, U64_MAX)
    h = _height(node, height)
    with _state_at(node, h) as (state, header):
        out = read_only_call(state, node.chain.chain_id, header.height, header.time_ms, frm, addr, fn, argv,
                             gas_limit, val)
    if out.error is not None:
        raise contract_failed(out)
    return {"result": to_json(decode_value(out.output, MAX_OUTPUT_BYTES)), "output": out.output.hex(),
            "gas_used": out.gas_used, "events": [event_json(e, i) for i, e in enumerate(out.events)],
            "logs": list(out.logs), "height": h}


@method
async def m_estimate_gas(node: Node, from_: Any, contract: Any = None, function: Any = None, args: Any = None,
                         value: Any = 0, source: Any = None, gas: Any = None) -> dict:
    """Gas a CALL (contract, function) or DEPLOY (source) transaction would use if it ran
    now on top of the latest block: intrinsic gas plus the simulated run's."""
    frm = p_address(from_, "from")
    argv = p_args(args)
    val = p_range(value, "value", 0, U64_MAX)
    chain = node.chain
    # up to a whole block: the first use of an ML program costs ML_COMPILE, more than CALL_GAS
    gas_limit = p_range(gas, "gas", 1, chain.params.max_block_gas) if gas is not None else chain.params.max_block_gas
    if source is not None:
        if contract is not None or function is not None:
            raise RpcError(INVALID_PARAMS, "invalid params: give source (a deploy) or contract and function "
                                           "(a call), not both")
        p_source(source, chain.params.max_tx_bytes)
        intrinsic = intrinsic_gas(TxKind.DEPLOY, Deploy(source, encode_args(argv), val))
        address = contract_address(frm, node.mempool.pending_nonce(frm))
        with _state_at(node, chain.tip.height) as (state, tip):
            out = read_only_deploy(state, chain.chain_id, tip.height + 1, tip.time_ms + 1, frm, address, source,
                                   argv, gas_limit, val)
    else:
        if contract is None or function is None:
            raise RpcError(INVALID_PARAMS, "invalid params: give contract and function (a call) or source (a deploy)")
        target, fn = p_address(contract, "contract"), p_function(function)
        intrinsic = intrinsic_gas(TxKind.CALL, Call(target, fn, encode_args(argv), val))
        with _state_at(node, chain.tip.height) as (state, tip):
            out = read_only_call(state, chain.chain_id, tip.height + 1, tip.time_ms + 1, frm, target, fn, argv,
                                 gas_limit, val, free=False)
    if out.error is not None:
        raise contract_failed(out, intrinsic)
    return {"gas": intrinsic + out.gas_used, "intrinsic_gas": intrinsic}


def _contract_at(r: Any, root: bytes, addr: bytes, h: int) -> str:
    """The source of the contract at addr under state root `root` (block h), or -32001."""
    raw = trie.get(r.node, root, code_key(addr))
    if raw is None:
        raise RpcError(NOT_FOUND, f"no contract at {address_hex(addr)} at height {h}")
    return decode_code(raw)


@method
async def m_storage(node: Node, contract: Any, key: Any, height: Any = None, prove: Any = False) -> dict:
    """A contract's stored value (what `storage[key]` reads inside it) after a block,
    optionally with a Merkle proof of its state key against that block's state root."""
    addr = p_address(contract, "contract")
    k, enc = p_storage_key(key)
    prove = p_bool(prove, "prove")
    h = _height(node, height)
    header = node.chain.store.header(h)
    assert header is not None
    skey = storage_key(addr, enc)
    with node.chain.store.read() as r:
        _contract_at(r, header.state_root, addr, h)
        raw = trie.get(r.node, header.state_root, skey)
        proof = trie.prove(r.node, header.state_root, skey) if prove else None
    out = {"contract": address_hex(addr), "key": to_json(k), "height": h, "state_root": header.state_root.hex(),
           "value": None if raw is None else to_json(decode_value(raw, MAX_STORAGE_VALUE_BYTES)),
           "raw": None if raw is None else raw.hex()}
    if prove:
        out["proof"] = {"key": skey.hex(), "value": None if raw is None else raw.hex(), "proof": encode(proof).hex()}
    return out


@method
async def m_code(node: Node, address: Any, height: Any = None) -> dict:
    """A contract's source, code hash and exported functions."""
    addr = p_address(address)
    h = _height(node, height)
    header = node.chain.store.header(h)
    assert header is not None
    with node.chain.store.read() as r:
        source = _contract_at(r, header.state_root, addr, h)
    compiled = runtime.load(source)
    return {"address": address_hex(addr), "height": h, "code_hash": compiled.code_hash.hex(), "source": source,
            "functions": {name: list(params) for name, params in compiled.exports.items()},
            "constructor": compiled.constructor}


@method
async def m_events(node: Node, contract: Any = None, name: Any = None, from_height: Any = None,
                   to_height: Any = None, limit: Any = 1000) -> dict:
    """Events of committed transactions, oldest first, from at most MAX_EVENT_BLOCKS blocks
    (default: the latest ones, or those from from_height on).  An answer cut by `limit`
    ends at a block boundary (unless one block alone holds more), so the next query
    starts at to_height + 1."""
    addr = None if contract is None else p_address(contract, "contract")
    if name is not None and (type(name) is not str or not name):
        raise _bad("name", "an event name (a non-empty string)")
    limit = p_range(limit, "limit", 1, MAX_EVENT_LIMIT)
    if from_height is not None and to_height is not None:  # the shape of the range first, then the chain
        lo, hi = p_int(from_height, "from_height"), p_int(to_height, "to_height")
        if lo > hi:
            raise RpcError(INVALID_PARAMS, f"invalid params: from_height {lo} is above to_height {hi}")
        if hi - lo + 1 > MAX_EVENT_BLOCKS:
            raise RpcError(INVALID_PARAMS, f"invalid params: a query spans at most {MAX_EVENT_BLOCKS} blocks, "
                                           f"{lo}..{hi} is {hi - lo + 1}: split it")
    if from_height is None:
        hi = _height(node, to_height, "to_height")
        lo = max(0, hi - MAX_EVENT_BLOCKS + 1)
    else:
        lo = _height(node, from_height, "from_height")
        hi = _height(node, to_height, "to_height") if to_height is not None else \
            min(node.chain.tip.height, lo + MAX_EVENT_BLOCKS - 1)
    events: list[dict] = []
    block_start, block_height, last_full = 0, lo, hi
    truncated = False
    for height, index, tx_hash, receipt in node.chain.store.receipts(lo, hi):
        if height != block_height:
            block_start, block_height = len(events), height
        for i, e in enumerate(receipt.events):
            if (addr is not None and e[0] != addr) or (name is not None and e[1] != name):
                continue
            if len(events) == limit:
                truncated = True
                if block_start:  # drop the partial block: the next query starts with it
                    del events[block_start:]
                    last_full = height - 1
                else:
                    last_full = height
                break
            events.append({"height": height, "tx_hash": tx_hash.hex(), "tx_index": index, **event_json(e, i)})
        if truncated:
            break
    return {"from_height": lo, "to_height": last_full, "truncated": truncated, "events": events}


# ---- dispatch ---------------------------------------------------------------------------

def _py_name(name: str) -> str:
    """A param named like a Python keyword (`from`) is the method's `from_`; the name
    `from_` itself is no param."""
    if keyword.iskeyword(name):
        return name + "_"
    if name.endswith("_") and keyword.iskeyword(name[:-1]):
        raise RpcError(INVALID_PARAMS, f"invalid params: got an unexpected keyword argument {name!r}")
    return name


def _rpc_name(m: re.Match) -> str:
    return f"'{m[1]}'" if keyword.iskeyword(m[1]) else m[0]


def _bind(fn: Method, node: Node, params: Any) -> Awaitable[Any]:
    if params is None:
        params = []
    if not isinstance(params, (list, dict)):
        raise RpcError(INVALID_REQUEST, "invalid request: params must be an array or an object")
    try:
        bound = inspect.signature(fn).bind(node, *params) if isinstance(params, list) \
            else inspect.signature(fn).bind(node, **{_py_name(k): v for k, v in params.items()})
    except TypeError as e:
        raise RpcError(INVALID_PARAMS, "invalid params: " + re.sub(r"'(\w+)_'", _rpc_name, str(e))) from None
    return fn(*bound.args, **bound.kwargs)


@dataclass(frozen=True)
class HugeInt:
    """A JSON number with more digits than any int the node takes: kept as this marker, not
    parsed, so that no host setting (PYTHONINTMAXSTRDIGITS) decides how a request reads."""

    digits: int


SAFE_DIGITS = 640  # CPython's lowest digit limit: int() of this many digits works on every host


def parse_int(text: str) -> int | HugeInt:
    """json.loads' parse_int: ints of up to MAX_INT_DIGITS digits under the VM's digit rule."""
    digits = len(text) - text.startswith("-")
    if digits <= SAFE_DIGITS:
        return int(text)
    if digits > MAX_INT_DIGITS:
        return HugeInt(digits)
    with pinned():
        return int(text)


def _huge(v: Any) -> HugeInt | None:
    """The first HugeInt inside a params value, walked without recursion."""
    stack = [v]
    while stack:
        x = stack.pop()
        if type(x) is HugeInt:
            return x
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return None


def _check_request(req: Any) -> tuple[Any, str, Any]:
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        raise RpcError(INVALID_REQUEST, 'invalid request: expected {"jsonrpc": "2.0", "method": ..., "id": ...}')
    rid = req.get("id")
    if type(rid) is HugeInt:
        raise RpcError(INVALID_REQUEST, f"invalid request: id is a number of {rid.digits} digits (at most "
                                        f"{MAX_INT_DIGITS}): use a string, a smaller integer or null")
    if rid is not None and type(rid) not in (int, str):
        raise RpcError(INVALID_REQUEST, "invalid request: id must be a string, an integer or null")
    return rid, req["method"], req.get("params")


async def _call(node: Node, req: Any) -> dict | None:
    rid: Any = None
    try:
        rid, name, params = _check_request(req)
        huge = _huge(params)
        if huge is not None:
            raise RpcError(INVALID_PARAMS, f"invalid params: a number of {huge.digits} digits is over the limit of "
                                           f"{MAX_INT_DIGITS} digits")
        fn = METHODS.get(name)
        if fn is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name!r}")
        result = await _bind(fn, node, params)
        resp: dict = {"jsonrpc": "2.0", "id": rid, "result": result}
    except RpcError as e:
        resp = {"jsonrpc": "2.0", "id": rid, "error": e.to_json()}
    except Exception:  # an engine bug: say so, keep serving
        log.exception("internal error in %r", req)
        resp = {"jsonrpc": "2.0", "id": rid, "error": {"code": INTERNAL_ERROR, "message": "internal error"}}
    if _is_notification(req):
        return None  # a notification is never answered, not even with an error (JSON-RPC 2.0)
    return resp


def _is_notification(req: Any) -> bool:
    return isinstance(req, dict) and "id" not in req and req.get("jsonrpc") == "2.0" \
        and isinstance(req.get("method"), str)


def _answer_id(req: Any) -> Any:
    """The id an answer to req carries (null where req has no valid one)."""
    rid = req.get("id") if isinstance(req, dict) else None
    return rid if type(rid) in (int, str) else None


def _commit_timeout(params: Any) -> float:
    """The wait a broadcast_tx_commit call asks for (0 where its params are invalid: the
    method refuses those itself)."""
    t = params[1] if isinstance(params, list) and len(params) > 1 else \
        params.get("timeout", 30) if isinstance(params, dict) else 30
    return t if _is_timeout(t) else 0


@dataclass
class Budget:
    """What the rest of one batch may spend: work units (WORK), answer bytes and seconds of
    broadcast_tx_commit waits.  Once one is spent, the rest of the batch is answered -32004."""

    work: int = MAX_BATCH_WORK
    reply: int = MAX_REPLY_BYTES
    wait: float = MAX_COMMIT_WAIT
    spent: RpcError | None = None

    def _stop(self, limit: str, most: float) -> RpcError:
        self.spent = RpcError(BATCH_LIMIT, f"batch limit reached: the batch's {limit.replace('_', ' ')} "
                              f"(at most {most:g}) is spent; this and the later requests were not run: send "
                              "them in another batch", {"limit": limit, "max": most})
        return self.spent

    def charge(self, req: Any) -> RpcError | None:
        """Take req's work (and commit wait) from the budget, or say which bound it passes."""
        if self.spent is not None:
            return self.spent
        name = req.get("method") if isinstance(req, dict) else None
        self.work -= WORK.get(name, 1) if type(name) is str else 1
        if self.work < 0:
            return self._stop("work", MAX_BATCH_WORK)
        if name == "broadcast_tx_commit":
            self.wait -= _commit_timeout(req.get("params"))
            if self.wait < 0:
                return self._stop("commit_wait", MAX_COMMIT_WAIT)
        return None

    def take_reply(self, n: int) -> RpcError | None:
        if self.spent is None and n > self.reply:
            return self._stop("reply_bytes", MAX_REPLY_BYTES)
        self.reply -= n
        return self.spent


def _dumps(body: Any) -> str:
    """JSON text under the VM's settings (vm/host.py): a contract's ints have up to 1,234
    digits, which json.dumps refuses under a host digit limit below that."""
    with pinned():
        return json.dumps(body, separators=(",", ":"))


def _group_tx(req: Any) -> bytes | None:
    """The transaction of a broadcast_tx request that can join the batch's admission group."""
    if not (isinstance(req, dict) and req.get("jsonrpc") == "2.0" and req.get("method") == "broadcast_tx"
            and type(req.get("id")) in (int, str)):
        return None
    p = req.get("params")
    tx = p[0] if isinstance(p, list) and len(p) == 1 else p.get("tx") if isinstance(p, dict) and len(p) == 1 else None
    try:
        return p_hex(tx, "tx")
    except RpcError:
        return None


GROUP_ANSWER_BYTES = 512  # reserved per broadcast_tx of the group: its hash or rejection, beside its id


async def _batch(node: Node, reqs: list) -> list[str]:
    """Answer a batch as JSON texts, one request at a time, yielding to the event loop after
    each so that other clients are served in between; its broadcast_tx calls are admitted
    as one group at the end."""
    budget = Budget()
    out: list[str | None] = [None] * len(reqs)
    group: list[tuple[int, Any, bytes]] = []
    for i, req in enumerate(reqs):
        over = budget.charge(req)
        raw = None if over else _group_tx(req)
        if raw is not None:
            over = budget.take_reply(len(_dumps(req["id"])) + GROUP_ANSWER_BYTES)
            if over is None:
                group.append((i, req["id"], raw))
                continue
        answer = {"jsonrpc": "2.0", "id": _answer_id(req), "error": over.to_json()} if over else await _call(node, req)
        if answer is not None and not _is_notification(req):
            text = _dumps(answer)
            over = None if over else budget.take_reply(len(text))
            out[i] = _dumps({"jsonrpc": "2.0", "id": _answer_id(req), "error": over.to_json()}) if over else text
        await asyncio.sleep(0)
    if group:
        results = await node.submit([raw for _, _, raw in group])
        for (i, rid, _), res in zip(group, results):
            if isinstance(res, errors.LedgerError):
                out[i] = _dumps({"jsonrpc": "2.0", "id": rid, "error": rejected(res).to_json()})
            else:
                out[i] = _dumps({"jsonrpc": "2.0", "id": rid, "result": {"hash": res.hex()}})
    return [r for r in out if r is not None]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(body), status=status, content_type="application/json")


def _error(code: int, message: str, status: int = 200) -> web.Response:
    return _json({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status)


# ---- connections --------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """What clients may hold of the server (node.py's --rpc-* flags)."""

    max_connections: int = 256     # open connections, all clients together
    max_per_ip: int = 32           # open connections from one IP
    header_timeout: float = 10.0   # s from connecting, or from the last answer, to a request's headers
    body_timeout: float = 30.0     # s to read a request's body once its headers are in


class _Guard(asyncio.Protocol):
    """An aiohttp connection (inner) counted against Limits and closed when its client does
    not send a request's headers within header_timeout (slowloris)."""

    def __init__(self, conns: "_Connections", inner: asyncio.Protocol):
        self.conns, self.inner = conns, inner
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        why = self.conns.admit(self.ip)
        if why:
            body = _dumps({"jsonrpc": "2.0", "id": None, "error": {"code": SERVER_BUSY, "message": why}}).encode()
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            transport.close()
            return
        self.transport = transport
        self.conns.guards[transport] = self
        self.inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        """Start the wait for the next request's headers."""
        self.disarm()
        self.timer = asyncio.get_running_loop().call_later(self.conns.limits.header_timeout, self._expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        log.info("rpc: closed a connection from %s: no request within %g s", self.ip, self.conns.limits.header_timeout)
        assert self.transport is not None
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.disarm()
        self.conns.release(self.ip, self.transport)
        self.transport = None
        self.inner.connection_lost(exc)


@dataclass
class _Connections:
    """The open connections, in all and per IP."""

    limits: Limits
    per_ip: dict[str, int] = field(default_factory=dict)
    guards: dict[Any, _Guard] = field(default_factory=dict)

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ip, or say why it is refused."""
        if len(self.guards) >= self.limits.max_connections:
            return f"server busy: {self.limits.max_connections} connections are open, the most it serves: retry later"
        if self.per_ip.get(ip, 0) >= self.limits.max_per_ip:
            return f"server busy: {self.limits.max_per_ip} connections from {ip} are open, the most per IP"
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def release(self, ip: str, transport: Any) -> None:
        del self.guards[transport]
        self.per_ip[ip] -= 1
        if not self.per_ip[ip]:
            del self.per_ip[ip]


def make_app(node: Node, max_body: int, conns: _Connections) -> web.Application:
    limits = conns.limits

    async def handle(request: web.Request) -> web.Response:
        guard = conns.guards.get(request.transport)
        if guard is not None:
            guard.disarm()  # the headers are in
        try:
            return await answer(request)
        finally:
            if guard is not None and guard.transport is not None:
                guard.arm()

    async def answer(request: web.Request) -> web.Response:
        try:
            body = await asyncio.wait_for(request.read(), limits.body_timeout)
        except web.HTTPRequestEntityTooLarge:
            return _error(INVALID_REQUEST, f"invalid request: body is over the limit of {max_body} bytes", 413)
        except asyncio.TimeoutError:
            resp = _error(REQUEST_TIMEOUT, f"request timeout: the body did not arrive within {limits.body_timeout:g} s",
                          408)
            resp.force_close()
            return resp
        except ConnectionError:  # the client went away mid-body: nothing to answer, one line to say
            log.info("rpc: %s dropped the connection while sending a request", request.remote)
            raise web.HTTPBadRequest() from None
        try:
            doc = json.loads(body, parse_int=parse_int)
        except (ValueError, RecursionError):
            return _error(PARSE_ERROR, "parse error: body is not JSON")
        if isinstance(doc, list):
            if not doc or len(doc) > MAX_BATCH:
                return _error(INVALID_REQUEST, f"invalid request: a batch holds 1 to {MAX_BATCH} requests")
            texts = await _batch(node, doc)
            if not texts:
                return web.Response(status=204)
            return web.Response(text="[" + ",".join(texts) + "]", content_type="application/json")
        single = await _call(node, doc)
        return _json(single) if single is not None else web.Response(status=204)

    async def get_root(request: web.Request) -> web.Response:
        return _json({"service": "gradchain JSON-RPC 2.0", "methods": sorted(METHODS), "docs": "docs/rpc.md"})

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/", handle)
    app.router.add_get("/", get_root)
    return app


@dataclass
class Server:
    """A listening RPC server (start)."""

    runner: web.AppRunner
    listener: asyncio.AbstractServer

    async def close(self) -> None:
        self.listener.close()
        await self.runner.cleanup()


async def start(node: Node, host: str, port: int, max_body: int, limits: Limits = Limits()) -> Server:
    """Listen on host:port; OSError where that cannot be done."""
    conns = _Connections(limits)
    runner = web.AppRunner(make_app(node, max_body, conns), access_log=None)
    await runner.setup()
    assert runner.server is not None
    protocol = runner.server
    try:
        listener = await asyncio.get_running_loop().create_server(lambda: _Guard(conns, protocol()), host, port,
                                                                  reuse_address=True)
    except OSError:
        await runner.cleanup()
        raise
    return Server(runner, listener)
