"""Validator sets: who may sign blocks, with what stake."""
from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import encode
from ledger.hashing import hash_bytes
from ledger.keys import address_of


@dataclass(frozen=True, slots=True)
class Validator:
    public_key: bytes
    stake: int

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)


@dataclass(frozen=True)
class ValidatorSet:
    """Validators in address order (the order is part of the hash)."""

    validators: tuple[Validator, ...]

    def __post_init__(self) -> None:
        vs = tuple(sorted(self.validators, key=lambda v: v.address))
        if not vs:
            raise ValueError("a validator set needs at least one validator")
        if len({v.address for v in vs}) != len(vs):
            raise ValueError("a validator appears twice in the set")
        if any(type(v.stake) is not int or not 0 < v.stake < 2**64 for v in vs):
            raise ValueError("every validator needs a positive integer stake below 2**64")
        if any(type(v.public_key) is not bytes or len(v.public_key) != 32 for v in vs):
            raise ValueError("validator public keys are 32 bytes")
        object.__setattr__(self, "validators", vs)
        object.__setattr__(self, "_by_address", {v.address: v for v in vs})

    @property
    def total_stake(self) -> int:
        return sum(v.stake for v in self.validators)

    @property
    def hash(self) -> bytes:
        return hash_bytes(encode([[v.public_key, v.stake] for v in self.validators]))

    def get(self, address: bytes) -> Validator | None:
        return self._by_address.get(address)  # type: ignore[attr-defined]

    def has_quorum(self, stake: int) -> bool:
        """More than two thirds of the total stake."""
        return 3 * stake > 2 * self.total_stake
