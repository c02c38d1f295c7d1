"""Results as JSON: headers, commits, receipts and events, and a contract's failure as the
error -32003 carries it."""
from __future__ import annotations

from typing import Any

from ledger.block import Header, Receipt
from ledger.keys import address_hex
from ledger.tx import Transaction, TxKind, contract_address
from vm import runtime
from vm.codec import decode_value
from vm.compiler import signature
from vm.errors import InvalidContract
from vm.json_values import to_json
from vm.limits import MAX_EVENT_BYTES, MAX_OUTPUT_BYTES
from net.rpc.errors import CONTRACT_FAILED, RpcError


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
    """A receipt for people and programs: values decoded to JSON (vm.json_values.to_json), and
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


def contract_failed(out: runtime.Outcome, intrinsic: int = 0, source: str | None = None) -> RpcError:
    """-32003 with why and where the contract failed: the fields of a failed receipt's
    `failure` (null where the failure happened outside contract code, e.g. no such
    function), plus the message, gas and print() output; for invalid_arguments, the called
    function's `signature` from the contract's `source`."""
    e = out.error
    assert e is not None
    data = {"code": e.code, "message": e.message, "contract": _address_or_none(e.contract),
            "function": e.function or None, "line": e.line or None,
            "gas_used": intrinsic + out.gas_used, "logs": list(out.logs)}
    sig = signature(source, e.function) if e.code == "invalid_arguments" and source and e.function else None
    if sig is not None:
        data["signature"] = sig
        data["message"] = f"{e.message}; expected {sig}"
        return RpcError(CONTRACT_FAILED, f"contract execution failed: {e}; expected {sig}", data)
    if isinstance(e, InvalidContract):
        data["issues"] = e.issues  # every problem with its line and column (never in a receipt)
    return RpcError(CONTRACT_FAILED, f"contract execution failed: {e}", data)


def commit_json(c: Any) -> dict | None:
    if c is None:
        return None
    return {"height": c.height, "round": c.round, "block_hash": c.block_hash.hex(),
            "signatures": [{"validator": address_hex(s.validator), "signature": s.signature.hex()}
                           for s in c.signatures]}
