"""The method table and its handlers: what a node answers (every method is documented in
docs/rpc.md), and the Node interface they read."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable, Coroutine, Iterator, Protocol

from ledger import errors, staking, trie
from ledger.blobstore import BlobStore
from ledger.block import Header, Receipt
from ledger.chain import Chain
from ledger.contracts import read_only_call, read_only_deploy
from ledger.encoding import encode
from ledger.genesis import Genesis
from ledger.keys import PrivateKey, address_hex
from ledger.mempool import AlreadyKnown, Mempool
from ledger.admission import Admission
from ledger.state import State, account_key, code_key, decode_account, decode_code, get_code, storage_key
from ledger.tx import (U64_MAX, Call, Deploy, TxKind, contract_address, decode_transaction, encode_args,
                       intrinsic_gas, tx_to_json)
from vm import ml as vm_ml
from vm import runtime
from vm.codec import decode_value
from vm.host import pinned
from vm.json_values import to_json
from vm.limits import MAX_OUTPUT_BYTES, MAX_STORAGE_VALUE_BYTES
from consensus.bft import BftEngine
from net.consensus_reactor import stall_json
from net.rpc.errors import COMMIT_TIMEOUT, INVALID_PARAMS, NOT_FOUND, RpcError, rejected
from net.rpc.metrics import NodeMetrics
from net.rpc.limits import CALL_GAS, MAX_COMMIT_WAIT, MAX_EVENT_BLOCKS, MAX_EVENT_LIMIT
from net.rpc.params import (_bad, p_address, p_args, p_bool, p_function, p_hex, p_int, p_range, p_source,
                            p_storage_key)
from net.rpc.views import commit_json, contract_failed, event_json, header_json, receipt_json


class Node(Protocol):
    """What the RPC server needs from a node (node.Node provides it)."""

    chain: Chain
    mempool: Mempool
    genesis: Genesis
    key: PrivateKey
    admission: Admission  # the one way a transaction enters the mempool
    blobs: BlobStore  # the node's blob data (net/rpc/blobs.py serves it)
    metrics: NodeMetrics  # GET /metrics and /health (net/rpc/metrics.py); dispatch counts requests in it

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> tuple[int, int, Receipt]: ...

    def spawn(self, coro: Coroutine) -> None: ...


NODE_VERSION = "0.1.0"
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


@method
async def m_broadcast_tx(node: Node, tx: Any) -> dict:
    """Returns once the mempool admitted the transaction (or with the reason it did not)."""
    (res,) = await node.admission.admit([p_hex(tx, "tx")])
    if isinstance(res, errors.LedgerError):
        raise rejected(res)
    return {"hash": res.hex()}


@method
async def m_broadcast_tx_async(node: Node, tx: Any) -> dict:
    """Returns the hash at once; admission happens in the background (check with `tx`)."""
    raw = p_hex(tx, "tx")
    try:  # what can be told at once is told at once; the signature and mempool checks follow
        parsed = node.admission.check(raw)
    except errors.InvalidTransaction as e:
        raise rejected(e) from None
    node.spawn(node.admission.admit_checked([parsed]))
    return {"hash": parsed.hash.hex()}


def _is_timeout(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_COMMIT_WAIT


@method
async def m_broadcast_tx_commit(node: Node, tx: Any, timeout: Any = 30) -> dict:
    """Returns the receipt once the transaction is in a committed block."""
    if not _is_timeout(timeout):
        raise _bad("timeout", f"a number of seconds in (0, {MAX_COMMIT_WAIT}]")
    raw = p_hex(tx, "tx")
    (res,) = await node.admission.admit([raw])
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


def _failed_source(state: State, out: Any) -> str | None:
    """The source of the contract a simulated run failed in, where the error names one."""
    return get_code(state, out.error.contract) if out.error.contract else None


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
            raise contract_failed(out, source=_failed_source(state, out))
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
                raise contract_failed(out, intrinsic, _failed_source(state, out))
    if out.error is not None:  # a deploy: its constructor's source is the one given
        raise contract_failed(out, intrinsic, source)
    return {"gas": intrinsic + out.gas_used, "intrinsic_gas": intrinsic, "ml_compile_gas": out.compile_gas}


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
