"""Evidence of double signing: two votes of one validator for different blocks at one
(type, height, round) (CometBFT DuplicateVoteEvidence).

Anyone may hold and submit it; everything needed to judge it is inside it, plus the
validator set of its height and the chain id.  Checks come in the usual two kinds:
`validate_basic` needs nothing but the evidence (shape, same validator/type/height/round,
different blocks, canonical order), `verify` adds the validator set and the signatures.
One class per broken rule, under EvidenceError.

The two votes are kept in canonical order (vote_a's sign bytes < vote_b's), so one pair of
conflicting votes has one encoding and one hash.  A validator that signs three blocks at one
step makes three pairs: the chain should punish an offence once, keyed by `offence`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger import errors
from ledger.encoding import DecodeError
from ledger.encoding import decode as canonical_decode
from ledger.encoding import encode as canonical_encode
from ledger.hashing import hash_bytes
from ledger.keys import ADDRESS_SIZE, SIGNATURE_SIZE

from ledger.validators import ValidatorSet
from ledger.votes import NIL, PRECOMMIT, PREVOTE, SignedVote, Vote

EVIDENCE_VERSION = 1
DUPLICATE_VOTE = 1  # evidence kind, the first field after the version
HASH_SIZE = 32
MAX_EVIDENCE_SIZE = 1024  # an encoding is about 330 bytes


class EvidenceError(errors.LedgerError):
    """Base of every reason to refuse evidence."""

    reason = "invalid_evidence"


class MalformedEvidence(EvidenceError):
    reason = "malformed_evidence"


class EvidenceNotCanonical(EvidenceError):
    reason = "evidence_not_canonical"


class VotesNotConflicting(EvidenceError):
    """Both votes name the same block: no misbehaviour."""

    reason = "votes_not_conflicting"


class ValidatorMismatch(EvidenceError):
    reason = "validator_mismatch"


class VoteTypeMismatch(EvidenceError):
    reason = "vote_type_mismatch"


class HeightMismatch(EvidenceError):
    reason = "height_mismatch"


class RoundMismatch(EvidenceError):
    reason = "round_mismatch"


class UnknownValidator(EvidenceError):
    """The signer is not in the validator set of the evidence's height."""

    reason = "unknown_validator"


class BadEvidenceSignature(EvidenceError):
    reason = "bad_evidence_signature"


def vote_to_wire(sv: SignedVote) -> list:
    """A vote inside evidence: [validator, type, height, round, block hash or NIL, signature]."""
    v = sv.vote
    return [v.validator, v.type, v.height, v.round, NIL if v.value is None else v.value, sv.signature]


def vote_from_wire(w: Any) -> SignedVote:
    if type(w) is not list or len(w) != 6:
        raise MalformedEvidence("a vote is a list of 6 fields")
    validator, vote_type, height, round_, block_hash, signature = w
    if type(validator) is not bytes or len(validator) != ADDRESS_SIZE:
        raise MalformedEvidence("a vote's validator is a 20-byte address")
    if type(vote_type) is not int or vote_type not in (PREVOTE, PRECOMMIT):
        raise MalformedEvidence("a vote's type is PREVOTE or PRECOMMIT")
    if type(height) is not int or not 1 <= height < 2**63:
        raise MalformedEvidence("a vote's height is an integer from 1 below 2**63")
    if type(round_) is not int or not 0 <= round_ < 2**63:
        raise MalformedEvidence("a vote's round is a non-negative integer below 2**63")
    if type(block_hash) is not bytes or len(block_hash) not in (0, HASH_SIZE):
        raise MalformedEvidence("a vote's block hash is 32 bytes or empty (nil)")
    if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
        raise MalformedEvidence("a vote's signature is 64 bytes")
    return SignedVote(Vote(vote_type, height, round_, None if block_hash == NIL else block_hash, validator), signature)


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Two conflicting votes of one validator, vote_a's payload below vote_b's."""

    vote_a: SignedVote
    vote_b: SignedVote

    @classmethod
    def of(cls, v1: SignedVote, v2: SignedVote) -> DuplicateVoteEvidence:
        """The evidence of two votes, in canonical order whatever order they came in."""
        return cls(v1, v2) if v1.vote.payload <= v2.vote.payload else cls(v2, v1)

    @property
    def validator(self) -> bytes:
        return self.vote_a.vote.validator

    @property
    def height(self) -> int:
        return self.vote_a.vote.height

    @property
    def offence(self) -> tuple[bytes, int, int, int]:
        """(validator, height, round, type): punish each offence once, however many pairs show it."""
        a = self.vote_a.vote
        return (a.validator, a.height, a.round, a.type)

    def to_wire(self) -> list:
        return [EVIDENCE_VERSION, DUPLICATE_VOTE, vote_to_wire(self.vote_a), vote_to_wire(self.vote_b)]

    @property
    def hash(self) -> bytes:
        return hash_bytes(encode(self))


def encode(ev: DuplicateVoteEvidence) -> bytes:
    """Canonical bytes of the evidence (what is hashed and carried in a transaction)."""
    return canonical_encode(ev.to_wire())


def decode(data: bytes) -> DuplicateVoteEvidence:
    """Strict: canonical bytes of the right shape, else MalformedEvidence.  Rules are not checked."""
    try:
        w = canonical_decode(data, MAX_EVIDENCE_SIZE)
    except DecodeError as e:
        raise MalformedEvidence(f"evidence is not canonical msgpack: {e}") from None
    if type(w) is not list or len(w) != 4:
        raise MalformedEvidence("evidence is a list of 4 fields")
    if w[0] != EVIDENCE_VERSION or type(w[0]) is not int:
        raise MalformedEvidence(f"unknown evidence version {w[0]!r}")
    if w[1] != DUPLICATE_VOTE or type(w[1]) is not int:
        raise MalformedEvidence(f"unknown evidence kind {w[1]!r}")
    return DuplicateVoteEvidence(vote_from_wire(w[2]), vote_from_wire(w[3]))


def validate_basic(ev: DuplicateVoteEvidence) -> None:
    """The rules that need nothing but the evidence: one validator, one step, two blocks."""
    for sv in (ev.vote_a, ev.vote_b):  # a hand-built object gets the same shape checks as decoded bytes
        if type(sv) is not SignedVote or type(sv.vote) is not Vote:
            raise MalformedEvidence("evidence holds two signed votes")
        vote_from_wire(vote_to_wire(sv))
    a, b = ev.vote_a.vote, ev.vote_b.vote
    if a.validator != b.validator:
        raise ValidatorMismatch("the votes are signed by different validators")
    if a.type != b.type:
        raise VoteTypeMismatch("the votes are of different types")
    if a.height != b.height:
        raise HeightMismatch("the votes are for different heights")
    if a.round != b.round:
        raise RoundMismatch("the votes are for different rounds")
    if a.value == b.value:
        raise VotesNotConflicting("the votes are for the same block")
    if not a.payload < b.payload:
        raise EvidenceNotCanonical("vote_a's sign bytes must sort before vote_b's")


def verify(ev: DuplicateVoteEvidence, vset: ValidatorSet, chain_id: str) -> None:
    """Raise an EvidenceError unless ev proves that a validator of vset double-signed on chain_id.

    vset must be the validator set of ev.height; how old evidence may be is the chain's rule.
    """
    validate_basic(ev)
    v = vset.get(ev.validator)
    if v is None:
        raise UnknownValidator("the votes' signer is not in the validator set")
    for vote in (ev.vote_a, ev.vote_b):
        if not vote.verify(v.public_key, chain_id):
            raise BadEvidenceSignature("a vote's signature does not verify")


def slash(stake: int, fraction_num: int, fraction_den: int) -> int:
    """The amount taken from `stake` for an offence: stake * num / den, rounded down."""
    if type(stake) is not int or stake < 0:
        raise ValueError("stake is a non-negative integer")
    if type(fraction_num) is not int or type(fraction_den) is not int or not 0 <= fraction_num <= fraction_den \
            or fraction_den == 0:
        raise ValueError("the slash fraction is num/den with 0 <= num <= den and den > 0")
    return stake * fraction_num // fraction_den
