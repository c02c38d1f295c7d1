"""trace_tx (docs/rpc.md "trace_tx"): a committed transaction re-executed with a tracer, its
call tree as JSON (ledger/trace.py re-executes, vm/trace.py records and renders)."""
from __future__ import annotations

from typing import Any

from ledger import trie
from ledger.trace import NotReproduced, StateMissing, TraceFailed, trace, trace_json
from ledger.transition import BlockEnv
from net.rpc.errors import NOT_FOUND, TRACE_FAILED, RpcError
from net.rpc.methods import Node, method
from net.rpc.params import p_hex
from net.rpc.views import receipt_json


@method
async def m_trace_tx(node: Node, hash: Any) -> dict:  # noqa: A002 - the documented name
    """Re-execute a committed transaction on the state just before it and return its call
    tree; its receipt must equal the committed one (else TRACE_FAILED, not_reproduced)."""
    hsh = p_hex(hash, "hash", 32)
    store = node.chain.store
    found = store.tx(hsh)
    if found is None:
        if node.mempool.get(hsh) is not None:
            raise RpcError(NOT_FOUND, f"transaction {hsh.hex()} is pending: it can be traced once it is committed")
        raise RpcError(NOT_FOUND, f"no transaction with hash {hsh.hex()}")
    tx, height, index, committed = found
    block, parent = store.block(height), store.header(height - 1)
    if block is None or parent is None:
        raise RpcError(TRACE_FAILED, f"block {height} or its parent is no longer stored",
                       {"reason": StateMissing.reason})
    h = block.header
    env = BlockEnv(h.chain_id, h.height, h.time_ms, h.proposer, node.chain.params, node.chain.blobs)
    try:
        with store.read() as r:
            out = trace(lambda k: trie.get(r.node, parent.state_root, k), env, block.txs[:index], tx, committed)
    except TraceFailed as e:
        data: dict = {"reason": e.reason}
        if isinstance(e, NotReproduced):
            data["fields"] = e.fields
        raise RpcError(TRACE_FAILED, f"cannot trace transaction {hsh.hex()}: {e}", data) from None
    return {"hash": hsh.hex(), "height": height, "index": index, **trace_json(tx, out),
            "receipt": receipt_json(committed, tx)}

