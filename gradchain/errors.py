"""The user's one exception tree: what the SDK (`gradchain.client.Client`) and the
in-process harness (`gradchain.testing.TestChain`) raise, so a test and a script catch
the same `Reverted` whichever of the two ran the contract.

    GradchainError
      RpcError              the node answered with a JSON-RPC error (`code`, `message`, `data`)
        TxRejected          the node refused the transaction (`reason`: a stable code)
        NotFound            no such block, transaction or contract
        CommitTimeout       admitted but not committed in time
      ProofError            the node's answer does not match its Merkle proof
      ConnectionFailed      no node answers at the URL
      ContractFailed        a contract run failed (`code`, `message`, `function`, `line`, ...)
        Reverted            require() failed: `message` is the contract's reason
        OutOfGas
      StakingFailed         a committed BOND, UNBOND or EVIDENCE transaction was refused

A transaction refused before it runs (a bad nonce, funds, a gas limit, a signature)
raises TxRejected from both, with the same code, message and `reason` as a node's answer.
"""
from __future__ import annotations

from typing import Any, Sequence


class GradchainError(Exception):
    """Base of every error the SDK and the harness raise of their own."""


class RpcError(GradchainError):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class TxRejected(RpcError):
    """The node refused the transaction; `reason` is a stable code (e.g. nonce_too_low)."""

    CODE = -32000  # docs/rpc.md "Errors"

    @classmethod
    def of(cls, reason: str, message: str) -> "TxRejected":
        """The error a node answers for a refusal with this reason and message."""
        return cls(cls.CODE, f"transaction rejected: {message}", {"reason": reason, "message": message})

    @property
    def reason(self) -> str:
        return (self.data or {}).get("reason", "")


class NotFound(RpcError):
    pass


class CommitTimeout(RpcError):
    pass


class ProofError(GradchainError):
    """The node's answer does not match its Merkle proof."""


class ConnectionFailed(GradchainError):
    """No node answers at the URL."""


class ContractFailed(GradchainError):
    """A contract run failed: a transaction's receipt says so, or a view or gas estimate
    was answered with -32003 (SDK), or the harness ran it.  `code` is the VM's stable code
    ("revert", "out_of_gas", "not_found", ...); `contract` ("0x..." from the SDK, the
    address bytes from the harness), `function` and `line` say where (None from the SDK
    when unknown; "" and 0 from the harness, as in a receipt); `receipt` is the committed
    receipt (the RPC's dict from the SDK, the ledger's Receipt from the harness; None for
    a view or an estimate), with `tx_hash` and `height` of that transaction (SDK);
    `issues` lists a refused contract's problems (from the node's simulation; a receipt
    holds only a fixed message)."""

    code = "error"

    def __init__(self, message: str, code: str, contract: str | bytes | None, function: str | None,
                 line: int | None, gas_used: int, logs: Sequence[str] = (), receipt: Any = None,
                 tx_hash: str | None = None, height: int | None = None, issues: Sequence[str] = ()):
        super().__init__(message)
        self.message, self.code, self.contract, self.function, self.line = message, code, contract, function, line
        self.gas_used, self.logs, self.receipt = gas_used, list(logs), receipt
        self.tx_hash, self.height, self.issues = tx_hash, height, list(issues)

    def __str__(self) -> str:
        # "CODE: MESSAGE (in FUNCTION, line N)".  The SDK names a function whose line the
        # node did not send (line None); the harness, like a receipt, names a place only
        # with its line (line 0: no place).
        if not self.function or self.line == 0:
            return f"{self.code}: {self.message}"
        return f"{self.code}: {self.message} (in {self.function}" + (f", line {self.line}" if self.line else "") + ")"


class Reverted(ContractFailed):
    """require(condition, message) failed: `message` is the contract's reason."""


class OutOfGas(ContractFailed):
    pass


class StakingFailed(GradchainError):
    """A committed BOND, UNBOND or EVIDENCE transaction that the chain refused (it paid its
    fee, nothing else changed): `message` is the chain's reason (ledger/staking.py, e.g.
    "cannot unbond 5: the stake is 3"); `receipt`, `tx_hash`, `height` and `gas_used` are
    those of the failed transaction, as in ContractFailed."""

    def __init__(self, message: str, receipt: dict, tx_hash: str, height: int):
        super().__init__(message)
        self.message, self.receipt, self.tx_hash, self.height = message, receipt, tx_hash, height
        self.gas_used = receipt.get("gas_used", 0)

    def __str__(self) -> str:
        return f"{self.message} (transaction {self.tx_hash} failed in block {self.height})"


FAILURES: dict[str, type[ContractFailed]] = {"revert": Reverted, "out_of_gas": OutOfGas}


def contract_failure(code: str) -> type[ContractFailed]:
    """The class of a failed run with the VM's stable `code`: Reverted, OutOfGas, or
    ContractFailed for the rest."""
    return FAILURES.get(code, ContractFailed)
