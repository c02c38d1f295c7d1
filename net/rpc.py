"""JSON-RPC 2.0 over HTTP (aiohttp): the node's read and submit interface.

Every method is documented in docs/rpc.md.  Errors use the standard codes
(-32700 parse, -32600 invalid request, -32601 unknown method, -32602 invalid params,
-32603 internal) and these of our own:
    -32000 transaction rejected  (data: {"reason": code, "message": text})
    -32001 not found
    -32002 timed out waiting for commit (data: {"hash": ...})
A batch's broadcast_tx calls are admitted together, so their signatures are checked
in one parallel batch.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, Awaitable, Callable, Coroutine, Protocol

from aiohttp import web

from ledger import errors, trie
from ledger.block import Block, Header, Receipt
from ledger.keys import address_hex, parse_address, parse_hex
from ledger.state import account_key, decode_account
from ledger.tx import decode_transaction, tx_to_json, validate_transaction
from ledger.encoding import encode
from ledger.chain import Chain
from ledger.keys import PrivateKey
from ledger.mempool import AlreadyKnown, Mempool
from consensus.genesis import Genesis
from consensus.validators import ValidatorSet



class Node(Protocol):
    """What the RPC server needs from a node (node.Node provides it)."""

    chain: Chain
    mempool: Mempool
    genesis: Genesis
    validators: ValidatorSet
    key: PrivateKey

    async def submit(self, raws: list[bytes]) -> list[bytes | errors.LedgerError]: ...

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> tuple[int, int, Receipt]: ...

    def spawn(self, coro: Coroutine) -> None: ...

log = logging.getLogger("gradchain.rpc")

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
TX_REJECTED, NOT_FOUND, COMMIT_TIMEOUT = -32000, -32001, -32002
MAX_BATCH = 20_000
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


# ---- views ------------------------------------------------------------------------------

def header_json(h: Header) -> dict:
    return {"hash": h.hash.hex(), "chain_id": h.chain_id, "height": h.height, "time_ms": h.time_ms,
            "parent_hash": h.parent_hash.hex(), "proposer": address_hex(h.proposer),
            "tx_root": h.tx_root.hex(), "receipts_root": h.receipts_root.hex(),
            "state_root": h.state_root.hex(), "validators_hash": h.validators_hash.hex(),
            "next_validators_hash": h.next_validators_hash.hex(), "last_commit_hash": h.last_commit_hash.hex()}


def receipt_json(r: Receipt) -> dict:
    return {"status": "success" if r.status else "failed", "gas_used": r.gas_used, "error": r.error,
            "events": list(r.events), "output": r.output}


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


def _height(node: Node, height: Any) -> int:
    latest = node.chain.tip.height
    if height is None:
        return latest
    h = p_int(height, "height")
    if h > latest:
        raise RpcError(NOT_FOUND, f"no block at height {h} yet (latest is {latest})")
    return h


@method
async def m_status(node: Node) -> dict:
    tip = node.chain.tip
    return {"chain_id": node.chain.chain_id, "height": tip.height, "latest_block_hash": tip.hash.hex(),
            "latest_block_time_ms": tip.time_ms, "genesis_hash": node.genesis.hash.hex(),
            "node_version": NODE_VERSION, "validator": address_hex(node.key.address),
            "mempool_size": len(node.mempool)}


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
    block: Block | None = store.block(h)
    assert block is not None
    out = {"header": header_json(block.header), "tx_hashes": [t.hash.hex() for t in block.txs],
           "last_commit": commit_json(block.last_commit), "commit": commit_json(store.commit(h))}
    if full:
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
            "tx": tx_to_json(tx), "receipt": receipt_json(receipt)}


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
    h = _height(node, height)
    vs = node.validators
    return {"height": h, "total_stake": vs.total_stake, "hash": vs.hash.hex(),
            "validators": [{"address": address_hex(v.address), "public_key": v.public_key.hex(),
                            "stake": v.stake} for v in vs.validators]}


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


@method
async def m_broadcast_tx_commit(node: Node, tx: Any, timeout: Any = 30) -> dict:
    """Returns the receipt once the transaction is in a committed block."""
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 600:
        raise _bad("timeout", "a number of seconds in (0, 600]")
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
    return {"hash": res.hex(), "height": height, "index": index, "receipt": receipt_json(receipt)}


# ---- dispatch ---------------------------------------------------------------------------

def _bind(fn: Method, node: Node, params: Any) -> Awaitable[Any]:
    if params is None:
        params = []
    if not isinstance(params, (list, dict)):
        raise RpcError(INVALID_REQUEST, "invalid request: params must be an array or an object")
    try:
        bound = inspect.signature(fn).bind(node, *params) if isinstance(params, list) \
            else inspect.signature(fn).bind(node, **params)
    except TypeError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {e}") from None
    return fn(*bound.args, **bound.kwargs)


def _check_request(req: Any) -> tuple[Any, str, Any]:
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        raise RpcError(INVALID_REQUEST, 'invalid request: expected {"jsonrpc": "2.0", "method": ..., "id": ...}')
    rid = req.get("id")
    if rid is not None and type(rid) not in (int, str):
        raise RpcError(INVALID_REQUEST, "invalid request: id must be a string, an integer or null")
    return rid, req["method"], req.get("params")


async def _call(node: Node, req: Any) -> dict | None:
    rid: Any = None
    try:
        rid, name, params = _check_request(req)
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
    if isinstance(req, dict) and "id" not in req and req.get("jsonrpc") == "2.0" and isinstance(req.get("method"), str):
        return None  # a notification is never answered, not even with an error (JSON-RPC 2.0)
    return resp


async def _batch(node: Node, reqs: list) -> list[dict]:
    """Answer a batch; its broadcast_tx calls are admitted as one group."""
    out: list[dict | None] = [None] * len(reqs)
    group: list[tuple[int, Any, bytes]] = []
    for i, req in enumerate(reqs):
        if (isinstance(req, dict) and req.get("jsonrpc") == "2.0" and req.get("method") == "broadcast_tx"
                and type(req.get("id")) in (int, str)):
            p = req.get("params")
            tx = p[0] if isinstance(p, list) and len(p) == 1 else p.get("tx") if isinstance(p, dict) and len(p) == 1 else None
            try:
                group.append((i, req["id"], p_hex(tx, "tx")))
                continue
            except RpcError:
                pass
        out[i] = await _call(node, req)
    if group:
        results = await node.submit([raw for _, _, raw in group])
        for (i, rid, _), res in zip(group, results):
            if isinstance(res, errors.LedgerError):
                out[i] = {"jsonrpc": "2.0", "id": rid, "error": rejected(res).to_json()}
            else:
                out[i] = {"jsonrpc": "2.0", "id": rid, "result": {"hash": res.hex()}}
    return [r for r in out if r is not None]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json")


def make_app(node: Node, max_body: int) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json({"jsonrpc": "2.0", "id": None, "error": {
                "code": INVALID_REQUEST, "message": f"invalid request: body is over the limit of {max_body} bytes"}}, 413)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return _json({"jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "parse error: body is not JSON"}})
        if isinstance(doc, list):
            if not doc or len(doc) > MAX_BATCH:
                return _json({"jsonrpc": "2.0", "id": None, "error": {
                    "code": INVALID_REQUEST, "message": f"invalid request: a batch holds 1 to {MAX_BATCH} requests"}})
            answers = await _batch(node, doc)
            return _json(answers) if answers else web.Response(status=204)
        answer = await _call(node, doc)
        return _json(answer) if answer is not None else web.Response(status=204)

    async def get_root(request: web.Request) -> web.Response:
        return _json({"service": "gradchain JSON-RPC 2.0", "methods": sorted(METHODS), "docs": "docs/rpc.md"})

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/", handle)
    app.router.add_get("/", get_root)
    return app
