"""Re-executing a committed transaction with a tracer (trace_tx, net/rpc/trace.py).

The state before transaction i of block H is the state of block H - 1 (read through its state
root: the trie keeps every old root readable) with transactions 0 .. i-1 of block H applied
again, in block H's own environment (its height, time and proposer: ledger.transition.BlockEnv).
Transaction i then runs once more through process_transaction with a vm.trace.Tracer.  The
receipt it gives must equal the committed one, field for field: if not, the trace would
describe something the chain did not do, and `trace` raises NotReproduced instead.

A devnet control applied in block H (devnet_set_balance, devnet_load: written before the
block's first transaction, consensus/devnet.py) is not part of the block, so a transaction
that depends on one is not reproduced: it is reported so, never traced wrongly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ledger import errors
from ledger.block import Receipt
from ledger.keys import address_hex
from ledger.state import State
from ledger.transition import BlockEnv, process_transaction
from ledger.tx import Transaction, TxKind, contract_address, intrinsic_gas
from vm.trace import Tracer, revert_point

_FIELDS = ("status", "gas_used", "error", "events", "output", "failure", "logs")


class TraceFailed(Exception):
    """The transaction cannot be traced; `reason` is a stable code."""

    reason = "trace_failed"


class StateMissing(TraceFailed):
    """The parent block's state is no longer stored (a trie node is missing)."""

    reason = "state_missing"


class NotExecutable(TraceFailed):
    """An earlier transaction of the block, or this one, may not run here again (a blob whose
    data this node no longer holds)."""

    reason = "not_executable"


class NotReproduced(TraceFailed):
    """The re-execution gave another receipt than the committed one; `fields` says where."""

    reason = "not_reproduced"

    def __init__(self, message: str, fields: list[str]):
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class TxTrace:
    receipt: Receipt  # of the re-execution: equal to the committed one
    tracer: Tracer


def trace(read: Callable[[bytes], bytes | None], env: BlockEnv, earlier: Sequence[Transaction],
          tx: Transaction, committed: Receipt) -> TxTrace:
    """Re-execute `tx` on the state `read` gives (its block's parent state) after `earlier`
    (the block's transactions before it), with a tracer; its receipt checked against
    `committed`."""
    state = State(read)
    tracer = Tracer()
    try:
        for t in earlier:
            process_transaction(state, env, t)
        receipt = process_transaction(state, env, tx, tracer)
    except KeyError:
        raise StateMissing(f"the state before block {env.height} is no longer stored") from None
    except errors.InvalidTransaction as e:
        raise NotExecutable(f"block {env.height} cannot be re-executed here: {e}") from None
    differ = [f for f in _FIELDS if _wire(receipt, f) != _wire(committed, f)]
    if differ:
        raise NotReproduced(f"trace does not reproduce the receipt (it differs in {', '.join(differ)}): the block "
                            "may hold a devnet control's change, which re-execution cannot see", differ)
    return TxTrace(receipt, tracer)


def _wire(r: Receipt, name: str) -> object:
    v = getattr(r, name)
    return [list(e) for e in v] if name == "events" else list(v) if name in ("failure", "logs") else v


def target(tx: Transaction) -> str | None:
    """Whom the transaction addresses: a call's contract, a deploy's new address, a transfer's
    recipient (None for the other kinds)."""
    if tx.kind == TxKind.DEPLOY:
        return address_hex(contract_address(tx.sender_address, tx.nonce))
    if tx.kind == TxKind.CALL:
        return address_hex(tx.payload.contract)
    if tx.kind == TxKind.TRANSFER:
        return address_hex(tx.payload.to)
    return None


def trace_json(tx: Transaction, out: TxTrace) -> dict:
    """A trace as trace_tx answers it (less where the transaction is): the kind, the parties,
    the receipt's outcome, the revert point (the innermost failed call: its contract, function
    and line) and the call tree (None for a kind that runs no contract code)."""
    r = out.receipt
    tree = out.tracer.to_json()
    point = revert_point(tree)
    revert = point["error"] if point is not None else None
    if revert is None and r.failure:  # failed before contract code ran (a value it cannot pay)
        code, contract, function, line = r.failure
        revert = {"code": code, "message": r.error, "contract": address_hex(contract) if contract else None,
                  "function": function or None, "line": line or None}
    return {"kind": TxKind(tx.kind).name.lower(), "from": address_hex(tx.sender_address), "to": target(tx),
            "status": "success" if r.status else "failed", "gas_used": r.gas_used,
            "intrinsic_gas": intrinsic_gas(tx.kind, tx.payload), "error": r.error or None, "revert": revert,
            "call": tree, "truncated": out.tracer.truncated}
