"""Consensus parameters: fixed in the genesis file, identical on every node."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


BLOCK_OVERHEAD_BYTES = 64 * 1024  # room kept in a block for its header and commit


@dataclass(frozen=True, slots=True)
class ChainParams:
    max_tx_bytes: int = 64 * 1024
    max_block_bytes: int = 16 * 1024 * 1024
    max_block_gas: int = 1_000_000_000  # about 47,000 transfers

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "ChainParams":
        if not isinstance(doc, dict):
            raise ValueError("chain parameters must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown chain parameters: {sorted(unknown)}")
        for k, v in doc.items():
            if type(v) is not int or v <= 0:
                raise ValueError(f"chain parameter {k} must be a positive integer")
        return cls(**doc)

    def __post_init__(self) -> None:
        if self.max_block_bytes < self.max_tx_bytes + BLOCK_OVERHEAD_BYTES:
            raise ValueError(f"max_block_bytes must leave room for one largest transaction plus "
                             f"{BLOCK_OVERHEAD_BYTES} bytes of header and commit")
        if self.max_tx_bytes > 2**32 or self.max_block_gas >= 2**64:
            raise ValueError("chain parameter out of range")

    def to_wire(self) -> list:
        return [self.max_tx_bytes, self.max_block_bytes, self.max_block_gas]
