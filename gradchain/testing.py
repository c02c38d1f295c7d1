"""A chain in memory for contract authors' tests: deploy, call, assert, no node needed.

    from gradchain import TestChain, Reverted

    def test_transfer():
        chain = TestChain()
        alice, bob = chain.accounts[:2]
        token = chain.deploy(open("token.py").read(), alice.address)   # a live object
        token.transfer_to(bob.address, 10, sender=alice)                # a signed CALL transaction
        assert token.view.balance(bob.address) == 10                    # a free read-only call
        with pytest.raises(Reverted, match="insufficient balance") as e:
            token.transfer_to(alice.address, 99, sender=bob)
        assert e.value.line == 10

Every transaction goes through the same path as on a node (signature, nonce, gas,
ledger.transition.process_transaction, the VM), one block per transaction, so gas,
receipts and failures are exactly what a node would produce.  State is a dict: fast
to snapshot and roll back (`with chain.snapshot(): ...`).

A failed run raises gradchain.errors.ContractFailed (Reverted, OutOfGas), the same
classes the SDK raises; `contract` is the address as bytes, `receipt` the ledger's.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from gradchain.errors import ContractFailed, OutOfGas, Reverted, TxRejected, contract_failure
from ledger.genesis import devnet_keys
from ledger.block import STATUS_SUCCESS, Receipt
from ledger.contracts import read_only_call
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.state import (Account, State, changes, get_account, get_code, get_storage, set_account)
from ledger.trace import trace, trace_json
from ledger.transition import BlockEnv, process_transaction
from ledger import errors
from ledger import tx as txs
from vm import meter, runtime
from vm.compiler import FILENAME_PREFIX, code_hash, compile_contract
from vm.limits import MAX_STORAGE_KEY_BYTES, MAX_STORAGE_VALUE_BYTES
from vm.validate import ContractInvalid
from vm.codec import decode_value, encode_value

CHAIN_ID = "gradchain-test"
FUNDS = 10**9 * 10**9  # each test account: a billion coins of 10^9 units
DEFAULT_GAS = 100_000_000


@dataclass(frozen=True)
class Event:
    contract: bytes
    name: str
    data: dict
    height: int


class TestChain:
    """A fresh chain: ten funded accounts, block height and time you control."""

    __test__ = False  # not a pytest test class

    def __init__(self, accounts: int = 10, time_ms: int = 1_700_000_000_000):
        self.accounts: list[PrivateKey] = devnet_keys(accounts)
        self.state: dict[bytes, bytes] = {}
        self.height = 0
        self.time_ms = time_ms
        self.block_time_ms = 1000
        self.params = ChainParams()
        self.proposer = bytes(20)
        self.default_sender = self.accounts[0]
        self.receipts: list[Receipt] = []
        self.events: list[Event] = []
        # the last transaction, its block's env, the state it replaced and its receipt (trace_last)
        self._last: tuple[txs.Transaction, BlockEnv, dict[bytes, bytes | None], Receipt] | None = None
        s = State(self.state.get)
        for k in self.accounts:
            set_account(s, k.address, Account(FUNDS, 0))
        self._apply(s)

    # ---- state ----------------------------------------------------------------------------

    def _apply(self, s: State) -> dict[bytes, bytes | None]:
        """Write s's changes; returns what they replaced (the undo of the block)."""
        undo: dict[bytes, bytes | None] = {}
        for k, v in changes(s).items():
            undo[k] = self.state.get(k)
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        return undo

    def _view(self) -> State:
        return State(self.state.get)

    def balance(self, address: bytes) -> int:
        return get_account(self._view(), address).balance

    def code(self, address: bytes) -> str | None:
        return get_code(self._view(), address)

    def storage(self, contract: Any, key: Any, default: Any = None) -> Any:
        """A contract's stored value (what `storage[key]` reads inside it)."""
        raw = get_storage(self._view(), _address(contract), encode_value(key, MAX_STORAGE_KEY_BYTES))
        return default if raw is None else decode_value(raw, MAX_STORAGE_VALUE_BYTES)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Everything done inside the block is undone when it ends."""
        saved = (dict(self.state), self.height, self.time_ms, list(self.receipts), list(self.events), self._last)
        try:
            yield
        finally:
            self.state, self.height, self.time_ms, self.receipts, self.events, self._last = saved

    @contextlib.contextmanager
    def sender(self, key: PrivateKey) -> Iterator[None]:
        """Transactions inside the block are signed by `key` unless they say otherwise."""
        saved, self.default_sender = self.default_sender, key
        try:
            yield
        finally:
            self.default_sender = saved

    def travel(self, ms: int) -> None:
        """Move block time forward by `ms` milliseconds."""
        self.time_ms += ms

    # ---- transactions ---------------------------------------------------------------------

    def send(self, tx: txs.Transaction) -> Receipt:
        """Execute a signed transaction in a block of its own; returns its receipt.  A
        transaction a node would refuse raises TxRejected, and makes no block."""
        env = BlockEnv(CHAIN_ID, self.height + 1, self.time_ms + self.block_time_ms, self.proposer, self.params)
        s = self._view()
        try:
            if len(tx.raw) > self.params.max_tx_bytes:  # as a node's admission would
                raise errors.TransactionTooLarge(f"transaction is {len(tx.raw)} bytes, over the limit of "
                                                 f"{self.params.max_tx_bytes}")
            txs.validate_transaction(tx, CHAIN_ID, self.params.max_block_gas)
            txs.verify_signature(tx)
            receipt = process_transaction(s, env, tx)
        except errors.InvalidTransaction as e:
            raise TxRejected.of(e.reason, str(e)) from None
        self.height, self.time_ms = env.height, env.time_ms
        self._last = (tx, env, self._apply(s), receipt)
        self.receipts.append(receipt)
        for c, name, data in receipt.events:
            self.events.append(Event(c, name, decode_value(data, 1 << 20), self.height))
        return receipt

    def _nonce(self, key: PrivateKey) -> int:
        return get_account(self._view(), key.address).nonce

    def deploy(self, source: str | os.PathLike, *args: Any, sender: PrivateKey | None = None, value: int = 0,
               gas: int = DEFAULT_GAS) -> "Contract":
        """Deploy a contract from its source text, or from a file (a `pathlib.Path`): one
        deployed from a file is measured by coverage.py as that file while
        gradchain.coverage_plugin is loaded (docs/contracts.md, "Coverage")."""
        key = sender or self.default_sender
        if isinstance(source, os.PathLike):
            path = os.path.realpath(source)
            source = Path(path).read_text(encoding="utf-8")
            if _coverage_measuring():
                runtime.name_code(source, path)
        payload = txs.Deploy(source, txs.encode_args(args), value)
        gas_limit = txs.intrinsic_gas(txs.TxKind.DEPLOY, payload) + gas
        tx = txs.deploy(key, CHAIN_ID, self._nonce(key), source, args, value, gas_limit)
        receipt = self.send(tx)
        _raise_failed(receipt, source)
        return Contract(self, decode_value(receipt.output, 64))

    def transact(self, contract: Any, function: str, *args: Any, sender: PrivateKey | None = None,
                 value: int = 0, gas: int = DEFAULT_GAS) -> Any:
        """Call `function` in a transaction; returns its result or raises ContractFailed."""
        key = sender or self.default_sender
        address = _address(contract)
        payload = txs.Call(address, function, txs.encode_args(args), value)
        gas_limit = txs.intrinsic_gas(txs.TxKind.CALL, payload) + gas
        receipt = self.send(txs.call(key, CHAIN_ID, self._nonce(key), address, function, args, value, gas_limit))
        _raise_failed(receipt)
        return None if receipt.output is None else decode_value(receipt.output, 1 << 20)

    def view(self, contract: Any, function: str, *args: Any, sender: bytes | None = None,
             gas: int = DEFAULT_GAS) -> Any:
        """A free read-only call: runs against current state and keeps nothing."""
        out = read_only_call(self._view(), CHAIN_ID, self.height, self.time_ms,
                             sender or self.default_sender.address, _address(contract), function,
                             list(args), gas)
        if out.error is not None:
            e = out.error
            raise contract_failure(e.code)(e.message, e.code, e.contract, e.function, e.line, out.gas_used)
        return decode_value(out.output, 1 << 20)

    @property
    def last_receipt(self) -> Receipt:
        return self.receipts[-1]

    def trace_last(self) -> dict:
        """The call tree of the last transaction (a failed one too), re-executed on the state
        before it: what trace_tx answers for a node's transaction (docs/rpc.md "trace_tx"),
        less where it is; `gradchain.tracing.trace_text` prints it as the CLI does.

            token.transfer_to(bob.address, 5)
            print(trace_text(chain.trace_last()))
        """
        if self._last is None:
            raise ValueError("no transaction has run on this chain yet")
        tx, env, undo, receipt = self._last
        state = self.state
        out = trace(lambda k: undo[k] if k in undo else state.get(k), env, (), tx, receipt)
        return trace_json(tx, out)

    @contextlib.contextmanager
    def gas_profile(self) -> Iterator["GasProfile"]:
        """Gas spent per contract source line by what runs inside the block:

            with chain.gas_profile() as prof:
                token.transfer_to(bob.address, 5)
            print(prof.table())

        A tracer (sys.settrace, so tests only: nothing of it reaches consensus) reads the
        gas counter at each line a contract runs and gives the difference to the line
        before: a basic block's static charge lands on its first line, a builtin's or a
        storage access's priced work on the line that called it."""
        prof = GasProfile(self)
        previous = sys.gettrace()
        sys.settrace(prof.trace)
        try:
            yield prof
        finally:
            sys.settrace(previous)
            prof.settle()


class GasProfile:
    """Gas per (contract, function, line), filled by TestChain.gas_profile."""

    def __init__(self, chain: TestChain):
        self.chain = chain
        self.gas: dict[tuple[str, str, int], int] = {}
        self._where: tuple[str, str, int] | None = None
        self._left = 0
        self._rt: Any = None
        self._named = runtime.named_files()  # contracts deployed from files while coverage measures

    def trace(self, frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        if not (code.co_filename.startswith(FILENAME_PREFIX) or code.co_filename in self._named) \
                or code.co_name in ("_outer", "_factory"):
            return None
        return self._line

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        self.settle()
        if event == "line":
            self._where = (frame.f_code.co_filename, frame.f_code.co_name, frame.f_lineno)
        return self._line

    def settle(self) -> None:
        """Give the gas spent since the last line event to that line (within one
        execution: between two, the counter is reset)."""
        left, rt = meter._GAS.cell_contents, meter.RT
        if self._where is not None and rt is not None and rt is self._rt and left < self._left:
            self.gas[self._where] = self.gas.get(self._where, 0) + self._left - left
        self._left, self._rt = left, rt

    def by_line(self) -> list[tuple[str, int, str, int]]:
        """(function, line, source text, gas), most expensive first."""
        sources = {runtime.code_filename(code_hash(src)): src.split("\n") for src in _deployed_sources(self.chain)}
        rows = []
        for (filename, function, line), spent in self.gas.items():
            text = sources.get(filename, [])
            rows.append((function, line, text[line - 1].strip() if 0 < line <= len(text) else "", spent))
        return sorted(rows, key=lambda r: -r[3])

    def table(self) -> str:
        return "\n".join(f"{spent:>12,}  {fn}:{line:<5} {text}" for fn, line, text, spent in self.by_line())


def _coverage_measuring() -> bool:
    """Whether coverage.py measures this process with gradchain.coverage_plugin enabled
    (then a contract deployed from a file is compiled under that file's name)."""
    plugin = sys.modules.get("gradchain.coverage_plugin")
    return plugin is not None and plugin.measuring()


def _deployed_sources(chain: TestChain) -> list[str]:
    return [get_code(State(chain.state.get), k[1:]) for k in chain.state if k[:1] == b"c"]


def _raise_failed(r: Receipt, source: str | None = None) -> None:
    if r.status == STATUS_SUCCESS:
        return
    code, contract, function, line = r.failure or ("error", b"", "", 0)
    message = r.error
    if code == "invalid_contract" and source is not None:  # the receipt has a fixed text: say why
        try:
            compile_contract(source)
        except ContractInvalid as e:
            message = "\n".join(str(i) for i in e.issues)
    raise contract_failure(code)(message, code, contract or None, function, line, r.gas_used, receipt=r)


def _address(contract: Any) -> bytes:
    return contract.address if isinstance(contract, Contract) else contract


class Contract:
    """A deployed contract: its exported functions are methods that send transactions;
    `contract.view.fn(...)` makes free read-only calls."""

    def __init__(self, chain: TestChain, address: bytes):
        self.chain, self.address = chain, address
        self.view = _Views(self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def send(*args: Any, sender: PrivateKey | None = None, value: int = 0, gas: int = DEFAULT_GAS) -> Any:
            return self.chain.transact(self.address, name, *args, sender=sender, value=value, gas=gas)
        return send

    def storage(self, key: Any, default: Any = None) -> Any:
        return self.chain.storage(self.address, key, default)

    def __repr__(self) -> str:
        return f"<Contract 0x{self.address.hex()}>"


class _Views:
    def __init__(self, contract: Contract):
        self._c = contract

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def view(*args: Any, sender: bytes | None = None, gas: int = DEFAULT_GAS) -> Any:
            return self._c.chain.view(self._c.address, name, *args, sender=sender, gas=gas)
        return view


__all__ = ["TestChain", "Contract", "ContractFailed", "Reverted", "OutOfGas", "Event", "GasProfile"]
