"""The closed tree of ledger errors: one class per rule, each with a stable reason code.

Invalid transactions and blocks raise; a transaction that is valid but fails while
executing becomes a receipt with a failed status instead (DESIGN 2).
"""
from __future__ import annotations


class LedgerError(Exception):
    """Base of every rule violation. `reason` is a stable machine-readable code."""

    reason = "invalid"


class InvalidTransaction(LedgerError):
    reason = "invalid_transaction"


class MalformedTransaction(InvalidTransaction):
    reason = "malformed"


class TransactionTooLarge(InvalidTransaction):
    reason = "too_large"


class BadSignature(InvalidTransaction):
    reason = "bad_signature"


class WrongChainId(InvalidTransaction):
    reason = "wrong_chain_id"


class NonceTooLow(InvalidTransaction):
    reason = "nonce_too_low"


class NonceTooHigh(InvalidTransaction):
    reason = "nonce_too_high"


class InsufficientFunds(InvalidTransaction):
    reason = "insufficient_funds"


class GasLimitTooLow(InvalidTransaction):
    reason = "gas_limit_too_low"


class GasLimitTooHigh(InvalidTransaction):
    reason = "gas_limit_too_high"


class InvalidBlock(LedgerError):
    reason = "invalid_block"


class StorageFull(LedgerError):
    """The node could not write a block (disk or LMDB map full): it takes no transaction
    and stops (docs/consensus.md "Disk full")."""
    reason = "node_storage_full"
