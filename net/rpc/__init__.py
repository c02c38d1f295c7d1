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
    -32010 devnet only: `mine` and devnet_* on a chain that is not a one-validator devnet
           (data: {"chain_id", "validators"})
    -32011 trace failed: trace_tx cannot re-execute the transaction as committed
           (data: {"reason": "state_missing" | "not_executable" | "not_reproduced", "fields"})
A batch's broadcast_tx calls are admitted together, so their signatures are checked
in one parallel batch.

Nothing a client sends may hold the event loop or memory for long (Limits): a batch runs
one request at a time, yielding to the loop after each, and stops at its work, reply
and commit-wait bounds; connections are counted in all and per IP, and one that has not
sent its headers (or its body) in time is closed.

One module per job (a new endpoint or transport is a new module here):
    app.py          the HTTP app (POST /, GET /), the body's bounds, start() and Server
    ws.py           GET /ws: JSON-RPC over a WebSocket, subscribe/unsubscribe, its bounds and close codes
    subscriptions.py  the Hub the commit path publishes to: kinds, filters, bounded Sinks (WsLimits)
    connections.py  connections counted in all and per IP; the header timeout
    batch.py        a batch under its Budget; its broadcast_tx calls admitted as one group
    dispatch.py     one request -> its answer: checks, method lookup, params bound
    methods.py      the method table (METHODS), its handlers, and Node: what they read
    blobs.py        the blob methods: put_blob_chunk, blob, blob_chunk (registered in METHODS)
    devnet.py       mine and the devnet_* controls of a one-validator devnet (registered in METHODS)
    trace.py        trace_tx: a committed transaction re-executed with its call tree (registered in METHODS)
    explore.py      contract_models and validator_activity: bounded reads the explorer page needs
    params.py       reading and checking params (p_*)
    views.py        results as JSON: headers, commits, receipts, events
    jsonio.py       JSON text in and out under the VM's digit rule
    errors.py       the error codes and RpcError
    limits.py       every bound a client meets, and Limits (node.py's --rpc-* flags)
"""
from __future__ import annotations

from net.rpc import blobs as _blobs  # noqa: F401  (registers put_blob_chunk, blob, blob_chunk)
from net.rpc import jobs as _jobs  # noqa: F401  (registers job, jobs)
from net.rpc import devnet as _devnet  # noqa: F401  (registers mine and the devnet_* controls)
from net.rpc import trace as _trace  # noqa: F401  (registers trace_tx)
from net.rpc import explore as _explore  # noqa: F401  (registers contract_models, validator_activity)
from net.rpc.app import Server, make_app, start
from net.rpc.errors import RpcError
from net.rpc.limits import (CALL_GAS, MAX_BATCH, MAX_BATCH_WORK, MAX_COMMIT_WAIT, MAX_EVENT_BLOCKS, MAX_EVENT_LIMIT,
                            MAX_REPLY_BYTES, WORK, Limits)
from net.rpc.methods import METHODS, Node

__all__ = ["CALL_GAS", "MAX_BATCH", "MAX_BATCH_WORK", "MAX_COMMIT_WAIT", "MAX_EVENT_BLOCKS", "MAX_EVENT_LIMIT",
           "MAX_REPLY_BYTES", "METHODS", "WORK", "Limits", "Node", "RpcError", "Server", "make_app", "start"]
