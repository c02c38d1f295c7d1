"""The JSON-RPC error codes (the standard ones and ours, listed in net/rpc/__init__.py) and
the error a method raises to answer with one."""
from __future__ import annotations

from typing import Any

from ledger import errors

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
TX_REJECTED, NOT_FOUND, COMMIT_TIMEOUT, CONTRACT_FAILED = -32000, -32001, -32002, -32003
BATCH_LIMIT, SERVER_BUSY, REQUEST_TIMEOUT = -32004, -32005, -32006
DEVNET_ONLY = -32010  # a devnet control (net/rpc/devnet.py) asked of a chain that is not a one-validator devnet
TRACE_FAILED = -32011  # trace_tx (net/rpc/trace.py) cannot re-execute the transaction as committed


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
