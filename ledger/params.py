"""Consensus parameters: fixed in the genesis file, identical on every node."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True, slots=True)
class ChainParams:
    max_tx_bytes: int = 64 * 1024
    max_block_bytes: int = 16 * 1024 * 1024
    max_block_gas: int = 1_000_000_000  # about 47,000 transfers

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "ChainParams":
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown chain parameters: {sorted(unknown)}")
        for k, v in doc.items():
            if type(v) is not int or v <= 0:
                raise ValueError(f"chain parameter {k} must be a positive integer")
        return cls(**doc)

    def to_wire(self) -> list:
        return [self.max_tx_bytes, self.max_block_bytes, self.max_block_gas]
