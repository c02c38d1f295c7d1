"""What one client may ask of the server: per call, per batch and per connection (the
bounds docs/rpc.md lists; node.py's --rpc-* flags set Limits)."""
from __future__ import annotations

from dataclasses import dataclass

CALL_GAS = 50_000_000       # default and most gas of `call` (geth's rpc gas cap;
                            # about 50 ms of contract work: calls run on the node's event loop)
MAX_EVENT_BLOCKS = 10_000   # blocks one `events` query may scan
MAX_EVENT_LIMIT = 10_000    # events one `events` answer may hold
MAX_BATCH = 1_000           # requests in one batch
MAX_BATCH_WORK = 1_000      # work units of one batch (WORK: 1 for most methods)
MAX_REPLY_BYTES = 4 << 20   # bytes of one batch's answers
MAX_COMMIT_WAIT = 600       # seconds: one broadcast_tx_commit's timeout, and a batch's total of them
WORK = {"call": 50, "estimate_gas": 50, "events": 50, "code": 5, "block": 2, "broadcast_tx_commit": 5,
        # a chunk (up to 1 MiB) decoded from hex, hashed with its proof and written to LMDB; one served
        "put_blob_chunk": 10, "blob_chunk": 2,
        "mine": 50, "devnet_dump": 200, "devnet_load": 200, "devnet_revert": 50,  # devnet controls
        "trace_tx": 100}  # re-executes up to a block's transactions


@dataclass(frozen=True)
class Limits:
    """What clients may hold of the server (node.py's --rpc-* flags)."""

    max_connections: int = 256     # open connections, all clients together
    max_per_ip: int = 32           # open connections from one IP
    header_timeout: float = 10.0   # s from connecting, or from the last answer, to a request's headers
    body_timeout: float = 30.0     # s to read a request's body once its headers are in
