"""Consensus parameters: fixed in the genesis file, identical on every node."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


BLOCK_OVERHEAD_BYTES = 64 * 1024  # room kept in a block for its header and commit


@dataclass(frozen=True, slots=True)
class ChainParams:
    max_tx_bytes: int = 64 * 1024
    max_block_bytes: int = 16 * 1024 * 1024
    max_block_gas: int = 1_000_000_000  # about 47,000 transfers
    # staking (ledger/staking.py)
    block_reward: int = 1_000_000_000  # base units minted per block, shared by stake (1 GRAD)
    unbonding_blocks: int = 100  # unbonded stake is paid back this many blocks later
    max_validators: int = 100
    slash_percent: int = 5  # share of a double signer's stake that is burned
    # blobs (ledger/blobs.py, docs/jobs.md): nodes keep a blob's data this many blocks after the
    # block that carried it (longer where it is pinned); a blob is at most this many bytes
    blob_retention_blocks: int = 50_000
    max_blob_bytes: int = 1 << 30

    _MAY_BE_ZERO = ("block_reward", "slash_percent")
    # added after the first release: in the wire form (so in the genesis hash) only where they
    # differ from their default, so every genesis file written before them keeps its hash
    _LATER = ("blob_retention_blocks", "max_blob_bytes")

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
            if type(v) is not int or v < (0 if k in cls._MAY_BE_ZERO else 1):
                raise ValueError(f"chain parameter {k} must be a {'non-negative' if k in cls._MAY_BE_ZERO else 'positive'} integer")
        return cls(**doc)

    def __post_init__(self) -> None:
        if self.max_block_bytes < self.max_tx_bytes + BLOCK_OVERHEAD_BYTES:
            raise ValueError(f"max_block_bytes must leave room for one largest transaction plus "
                             f"{BLOCK_OVERHEAD_BYTES} bytes of header and commit")
        if self.max_tx_bytes > 2**32 or self.max_block_gas >= 2**64 or self.block_reward >= 2**64 \
                or self.unbonding_blocks >= 2**32 or self.max_validators > 10_000 or self.slash_percent > 100 \
                or self.blob_retention_blocks >= 2**32 or self.max_blob_bytes > 1 << 40:
            raise ValueError("chain parameter out of range")

    def to_wire(self) -> list:
        wire: list = [self.max_tx_bytes, self.max_block_bytes, self.max_block_gas, self.block_reward,
                      self.unbonding_blocks, self.max_validators, self.slash_percent]
        later = {f.name: f.default for f in fields(self) if f.name in self._LATER}
        changed = [[name, getattr(self, name)] for name in self._LATER if getattr(self, name) != later[name]]
        return wire + [changed] if changed else wire
