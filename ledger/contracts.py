"""Contract transactions: how DEPLOY and CALL change state, through the VM.

The VM (vm.runtime) knows nothing of the ledger: it sees the world through the Host
below, which reads and writes ledger.state.  A failed contract run raises
ExecutionFailure; process_transaction then rolls back every change the run made
(nested calls and transfers included), keeps the fee and the nonce bump, and writes the
error into the receipt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vm import runtime
from vm.errors import VMError
from vm.trace import Tracer
from vm.codec import encode_value

from ledger.state import (Account, State, get_account, get_code, get_storage, set_account, set_code,
                          set_storage)
from ledger.jobs import job_model
from ledger.tx import Transaction, TxKind, contract_address, decode_args, intrinsic_gas


class StateHost:
    """The VM's view of ledger state (vm.runtime.Host)."""

    __slots__ = ("state",)

    def __init__(self, state: State):
        self.state = state

    def get_code(self, address: bytes) -> str | None:
        return get_code(self.state, address)

    def storage_get(self, address: bytes, key: bytes) -> bytes | None:
        return get_storage(self.state, address, key)

    def storage_set(self, address: bytes, key: bytes, value: bytes | None) -> None:
        set_storage(self.state, address, key, value)

    def balance(self, address: bytes) -> int:
        return get_account(self.state, address).balance

    def transfer(self, sender: bytes, to: bytes, amount: int) -> bool:
        return move_coins(self.state, sender, to, amount)

    def job_model(self, job_id: int) -> tuple[str, tuple[int, ...], bytes] | None:
        return job_model(self.state, job_id)


def move_coins(state: State, sender: bytes, to: bytes, amount: int) -> bool:
    """Move coins between accounts; False (and nothing moved) if the sender lacks them."""
    src = get_account(state, sender)
    if src.balance < amount:
        return False
    if amount and sender != to:
        set_account(state, sender, Account(src.balance - amount, src.nonce))
        dst = get_account(state, to)
        set_account(state, to, Account(dst.balance + amount, dst.nonce))
    return True


@dataclass(slots=True)
class ContractResult:
    """A successful contract run, as its receipt records it."""

    gas_used: int
    output: bytes | None
    events: tuple
    logs: tuple


class ExecutionFailure(Exception):
    """A valid transaction that failed while running: it becomes a failed receipt."""

    def __init__(self, message: str, gas_used: int, failure: tuple = (), logs: tuple = ()):
        super().__init__(message)
        self.gas_used = gas_used
        self.failure = failure
        self.logs = logs


def _env(chain_id: str, height: int, time_ms: int, origin: bytes) -> runtime.Env:
    return runtime.Env(chain_id, height, time_ms, origin)


def _finish(outcome: runtime.Outcome, intrinsic: int, output: bytes | None) -> ContractResult:
    gas_used = intrinsic + outcome.gas_used
    logs = tuple(outcome.logs)
    e = outcome.error
    if e is not None:
        failure = (e.code, e.contract or b"", e.function, e.line)
        raise ExecutionFailure(e.message, gas_used, failure, logs)
    events = tuple((c, name, data) for c, name, data in outcome.events)
    return ContractResult(gas_used, output if output is not None else outcome.output, events, logs)


def _deploy(rt: runtime.Execution, state: State, sender: bytes, address: bytes, source: str, args: list,
            value: int) -> None:
    """Store the code, move the value, run the constructor (a deploy transaction's work)."""
    if get_code(state, address) is not None:
        raise VMError(f"a contract already exists at 0x{address.hex()}")
    set_code(state, address, source)
    if not move_coins(state, sender, address, value):
        raise VMError("the sender cannot pay the value sent with the deploy")
    runtime.deploy_contract(rt, address, source, args, {}, value)


def run_contract_tx(state: State, chain_id: str, height: int, time_ms: int, tx: Transaction,
                    tracer: Tracer | None = None) -> ContractResult:
    """Execute a DEPLOY or CALL inside process_transaction's rollback point (`tracer`:
    trace_tx's re-execution only, vm/trace.py)."""
    intrinsic = intrinsic_gas(tx.kind, tx.payload)
    env = _env(chain_id, height, time_ms, tx.sender_address)
    p = tx.payload
    args = decode_args(p.args)
    host = StateHost(state)
    if tx.kind == TxKind.DEPLOY:
        address = contract_address(tx.sender_address, tx.nonce)

        def deploy(rt: runtime.Execution) -> None:
            _deploy(rt, state, tx.sender_address, address, p.source, args, p.value)

        outcome = runtime.execute(host, env, tx.gas_limit - intrinsic, deploy, tracer=tracer)
        return _finish(outcome, intrinsic, encode_value(address, 64))

    def call(rt: runtime.Execution) -> bytes:
        if not move_coins(state, tx.sender_address, p.contract, p.value):
            raise VMError("the sender cannot pay the value sent with the call")
        return runtime.call_function(rt, p.contract, p.function, args, {}, p.value)

    outcome = runtime.execute(host, env, tx.gas_limit - intrinsic, call, tracer=tracer)
    return _finish(outcome, intrinsic, None)


def read_only_call(state: State, chain_id: str, height: int, time_ms: int, sender: bytes, contract: bytes,
                   function: str, args: list, gas_limit: int, value: int = 0,
                   free: bool = True) -> runtime.Outcome:
    """Run a call against `state` without keeping anything (RPC call, estimate_gas).
    The caller discards `state`; the outcome's gas_used excludes intrinsic gas.  A free call
    (`call`, not `estimate_gas`) pays no ML_COMPILE for an ML program new to the chain: its
    gas is what the call costs once the program is on chain."""
    env = _env(chain_id, height, time_ms, sender)

    def call(rt: runtime.Execution) -> Any:
        if value and not move_coins(state, sender, contract, value):
            raise VMError("the sender cannot pay the value sent with the call")
        return runtime.call_function(rt, contract, function, args, {}, value)

    return runtime.execute(StateHost(state), env, gas_limit, call, compile_fees=not free)


def read_only_deploy(state: State, chain_id: str, height: int, time_ms: int, sender: bytes, address: bytes,
                     source: str, args: list, gas_limit: int, value: int = 0) -> runtime.Outcome:
    """Run a deploy (validation, constructor) against `state` without keeping anything
    (RPC estimate_gas).  The outcome's gas_used excludes intrinsic gas."""
    env = _env(chain_id, height, time_ms, sender)
    return runtime.execute(StateHost(state), env, gas_limit,
                           lambda rt: _deploy(rt, state, sender, address, source, args, value))
