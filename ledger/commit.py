"""Commits: the precommit signatures that finalise a block, and their canonical wire form.

Below both blocks (a block carries the commit of its parent) and votes (a commit is
checked vote by vote), so neither imports the other to reach it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger import errors
from ledger.encoding import encode
from ledger.hashing import HASH_SIZE, hash_bytes
from ledger.keys import ADDRESS_SIZE, SIGNATURE_SIZE


@dataclass(frozen=True, slots=True)
class CommitSig:
    validator: bytes  # address
    signature: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """Precommit signatures of more than 2/3 of the stake for one block."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSig, ...]

    def to_wire(self) -> list:
        return [self.height, self.round, self.block_hash,
                [[s.validator, s.signature] for s in self.signatures]]

    @property
    def hash(self) -> bytes:
        return hash_bytes(encode(self.to_wire()))


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise errors.InvalidBlock(what)


def commit_from_wire(w: Any) -> Commit:
    _need(isinstance(w, list) and len(w) == 4, "commit must be an array of 4 fields")
    height, rnd, block_hash, sigs = w
    _need(type(height) is int and type(rnd) is int and rnd >= 0
          and type(block_hash) is bytes and len(block_hash) == HASH_SIZE, "bad commit fields")
    _need(isinstance(sigs, list), "commit signatures must be a list")
    out = []
    for s in sigs:
        _need(isinstance(s, list) and len(s) == 2 and type(s[0]) is bytes and len(s[0]) == ADDRESS_SIZE
              and type(s[1]) is bytes and len(s[1]) == SIGNATURE_SIZE, "bad commit signature")
        out.append(CommitSig(s[0], s[1]))
    return Commit(height, rnd, block_hash, tuple(out))
