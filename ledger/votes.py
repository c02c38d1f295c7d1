"""Votes and commit certificates: what validators sign, and how a commit is checked.

`Vote` and `SignedVote` are the one form of a vote everywhere: the consensus machine counts
`Vote`s, the engine and the p2p reactor carry `SignedVote`s, and duplicate-vote evidence is
two of them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ledger import errors
from ledger.commit import Commit, CommitSig
from ledger.encoding import encode
from ledger.keys import VOTE_DOMAIN, PrivateKey, verify

from ledger.validators import ValidatorSet

VOTE_VERSION = 1
PREVOTE = 1
PRECOMMIT = 2


NIL = b""  # the block hash a vote for no block signs


@dataclass(frozen=True, slots=True)
class Vote:
    """<PREVOTE|PRECOMMIT, h, r, id(v)> of `validator` (an address); value None is nil."""

    type: int
    height: int
    round: int
    value: bytes | None
    validator: bytes

    @property
    def payload(self) -> bytes:
        """The bytes the validator signs (under VOTE_DOMAIN and the chain id)."""
        return vote_payload(self.type, self.height, self.round, NIL if self.value is None else self.value)


@dataclass(frozen=True, slots=True)
class SignedVote:
    """A vote as its validator sent it."""

    vote: Vote
    signature: bytes

    def verify(self, public_key: bytes, chain_id: str) -> bool:
        """The signature is the holder of `public_key`'s over this vote on `chain_id` (False
        for a malformed field rather than an exception: it came from outside)."""
        try:
            return type(self.signature) is bytes and verify(public_key, self.signature, VOTE_DOMAIN, chain_id,
                                                           self.vote.payload)
        except (TypeError, ValueError):
            return False


def vote_payload(vote_type: int, height: int, round_: int, block_hash: bytes) -> bytes:
    return encode([VOTE_VERSION, vote_type, height, round_, block_hash])


def sign_vote(key: PrivateKey, chain_id: str, vote_type: int, height: int, round_: int,
              block_hash: bytes) -> bytes:
    return key.sign(VOTE_DOMAIN, chain_id, vote_payload(vote_type, height, round_, block_hash))


def make_commit(keys: list[PrivateKey], chain_id: str, height: int, round_: int, block_hash: bytes) -> Commit:
    """A commit signed by the given validators' keys (all of them precommit the block)."""
    sigs = sorted((CommitSig(k.address, sign_vote(k, chain_id, PRECOMMIT, height, round_, block_hash))
                   for k in keys), key=lambda s: s.validator)
    return Commit(height, round_, block_hash, tuple(sigs))


def verify_commit(vset: ValidatorSet, chain_id: str, commit: Commit, height: int, block_hash: bytes) -> None:
    """Raise InvalidBlock unless `commit` finalises (height, block_hash) with > 2/3 of the stake."""
    if commit.height != height or commit.block_hash != block_hash:
        raise errors.InvalidBlock("commit is for another block")
    seen: set[bytes] = set()
    stake = 0
    payload = vote_payload(PRECOMMIT, height, commit.round, block_hash)
    for s in commit.signatures:
        v = vset.get(s.validator)
        if v is None:
            raise errors.InvalidBlock("commit is signed by a non-validator")
        if s.validator in seen:
            raise errors.InvalidBlock("commit holds two signatures of one validator")
        if not verify(v.public_key, s.signature, VOTE_DOMAIN, chain_id, payload):
            raise errors.InvalidBlock("commit holds a bad signature")
        seen.add(s.validator)
        stake += v.stake
    if not vset.has_quorum(stake):
        raise errors.InvalidBlock("commit is signed by 2/3 of the stake or less")
