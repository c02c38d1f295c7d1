"""Double-sign evidence: valid evidence verifies, each broken rule is refused with its own error."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import evidence as ev_mod
from ledger.evidence import (
    NIL,
    BadEvidenceSignature,
    DuplicateVoteEvidence,
    EvidenceError,
    EvidenceNotCanonical,
    HeightMismatch,
    MalformedEvidence,
    RoundMismatch,
    UnknownValidator,
    ValidatorMismatch,
    VotesNotConflicting,
    VoteTypeMismatch,
    decode,
    encode,
    slash,
    validate_basic,
    verify,
)
from consensus.signer import Signer
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote, sign_vote
from ledger import errors
from ledger.encoding import encode as canonical_encode
from ledger.keys import PrivateKey

CHAIN = "evidence-test"
KEYS = [PrivateKey.from_label(f"evidence-validator-{i}") for i in range(4)]
OUTSIDER = PrivateKey.from_label("evidence-outsider")
VSET = ValidatorSet(tuple(Validator(k.public_key, 100) for k in KEYS))
A = b"\xaa" * 32
B = b"\xbb" * 32
C = b"\xcc" * 32


def vote(key: PrivateKey, block_hash: bytes, vote_type: int = PRECOMMIT, height: int = 7, round_: int = 1,
         chain: str = CHAIN) -> SignedVote:
    return SignedVote(Vote(vote_type, height, round_, block_hash or None, key.address),
                      sign_vote(key, chain, vote_type, height, round_, block_hash))


def good(key: PrivateKey = KEYS[0]) -> DuplicateVoteEvidence:
    return DuplicateVoteEvidence.of(vote(key, A), vote(key, B))


def test_valid_evidence_verifies():
    ev = good()
    verify(ev, VSET, CHAIN)
    assert ev.validator == KEYS[0].address and ev.height == 7
    assert ev.offence == (KEYS[0].address, 7, 1, PRECOMMIT)


def test_prevotes_and_nil_votes_are_evidence_too():
    verify(DuplicateVoteEvidence.of(vote(KEYS[1], A, PREVOTE), vote(KEYS[1], B, PREVOTE)), VSET, CHAIN)
    verify(DuplicateVoteEvidence.of(vote(KEYS[1], NIL), vote(KEYS[1], A)), VSET, CHAIN)


def test_canonical_order_gives_one_hash():
    v1, v2 = vote(KEYS[0], B), vote(KEYS[0], A)
    e1, e2 = DuplicateVoteEvidence.of(v1, v2), DuplicateVoteEvidence.of(v2, v1)
    assert e1 == e2 and e1.hash == e2.hash and encode(e1) == encode(e2)
    assert e1.vote_a.vote.payload < e1.vote_b.vote.payload
    swapped = DuplicateVoteEvidence(e1.vote_b, e1.vote_a)
    with pytest.raises(EvidenceNotCanonical):
        verify(swapped, VSET, CHAIN)
    assert swapped.hash != e1.hash  # which is why the swapped form is refused


def test_encoding_round_trips_and_is_pinned():
    ev = good()
    data = encode(ev)
    assert decode(data) == ev
    a, b = ev.vote_a, ev.vote_b
    assert data == canonical_encode([1, 1, [a.vote.validator, a.vote.type, a.vote.height, a.vote.round, a.vote.value,
                                            a.signature],
                                     [b.vote.validator, b.vote.type, b.vote.height, b.vote.round, b.vote.value,
                                      b.signature]])
    assert len(data) < ev_mod.MAX_EVIDENCE_SIZE


def test_errors_are_ledger_errors_with_reason_codes():
    assert issubclass(EvidenceError, errors.LedgerError)
    reasons = {c.reason for c in (EvidenceError, MalformedEvidence, EvidenceNotCanonical, VotesNotConflicting,
                                  ValidatorMismatch, VoteTypeMismatch, HeightMismatch, RoundMismatch,
                                  UnknownValidator, BadEvidenceSignature)}
    assert len(reasons) == 10


def broken(rule: str) -> DuplicateVoteEvidence:
    k = KEYS[0]
    a = vote(k, A)
    b = {
        "same hash": vote(k, A),
        "heights": vote(k, B, height=8),
        "rounds": vote(k, B, round_=2),
        "types": vote(k, B, PREVOTE),
        "validators": vote(KEYS[1], B),
    }.get(rule)
    if rule == "non-validator":
        return DuplicateVoteEvidence.of(vote(OUTSIDER, A), vote(OUTSIDER, B))
    if rule == "bad signature":
        b = vote(k, B)
        return DuplicateVoteEvidence.of(a, dataclasses.replace(b, signature=a.signature))
    if rule == "other chain":
        return DuplicateVoteEvidence.of(vote(k, A, chain="another"), vote(k, B, chain="another"))
    if rule == "signed by another key":
        other = vote(KEYS[1], B)
        return DuplicateVoteEvidence.of(a, dataclasses.replace(other, vote=dataclasses.replace(other.vote,
                                                                                               validator=k.address)))
    return DuplicateVoteEvidence.of(a, b)


@pytest.mark.parametrize("rule, error", [
    ("same hash", VotesNotConflicting),
    ("heights", HeightMismatch),
    ("rounds", RoundMismatch),
    ("types", VoteTypeMismatch),
    ("validators", ValidatorMismatch),
    ("non-validator", UnknownValidator),
    ("bad signature", BadEvidenceSignature),
    ("other chain", BadEvidenceSignature),
    ("signed by another key", BadEvidenceSignature),
])
def test_each_broken_rule_refused_with_its_error(rule, error):
    ev = broken(rule)
    with pytest.raises(error):
        verify(ev, VSET, CHAIN)
    decoded = decode(encode(ev))  # well-formed bytes: decoding is not where rules are judged
    with pytest.raises(error):
        verify(decoded, VSET, CHAIN)


def test_stateless_rules_need_no_validator_set():
    validate_basic(good())
    with pytest.raises(HeightMismatch):
        validate_basic(broken("heights"))
    validate_basic(broken("non-validator"))  # who the validators are is verify's question


def test_malformed_hand_built_votes_refused():
    ev = good()
    a = ev.vote_a
    for field, value in [("validator", b"\x01" * 19), ("type", 3), ("height", 0), ("round", -1),
                         ("value", b"\x01" * 31), ("height", True)]:
        bad = DuplicateVoteEvidence(dataclasses.replace(a, vote=dataclasses.replace(a.vote, **{field: value})),
                                    ev.vote_b)
        with pytest.raises(MalformedEvidence):
            verify(bad, VSET, CHAIN)
    for bad_vote in (dataclasses.replace(a, signature=b"\x00" * 63), "not a vote",
                     dataclasses.replace(a, vote="not a vote")):
        with pytest.raises(MalformedEvidence):
            verify(DuplicateVoteEvidence(bad_vote, ev.vote_b), VSET, CHAIN)


@pytest.mark.parametrize("wire", [
    [2, 1, [], []],  # unknown version
    [1, 2, [], []],  # unknown kind
    [1, 1, []],  # a vote missing
    [True, 1, [], []],
    "not a list",
])
def test_decode_refuses_wrong_shapes(wire):
    with pytest.raises(MalformedEvidence):
        decode(canonical_encode(wire))


def test_decode_refuses_non_canonical_and_oversized_bytes():
    data = encode(good())
    for bad in (data + b"\x00", data[:-1], b"", b"\xc1", b"\x00" * (ev_mod.MAX_EVIDENCE_SIZE + 1)):
        with pytest.raises(MalformedEvidence):
            decode(bad)
    with pytest.raises(MalformedEvidence):
        decode("text")  # type: ignore[arg-type]


GOOD_BYTES = encode(good())


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_only_malformed_or_canonical(data):
    try:
        ev = decode(data)
    except MalformedEvidence:
        return
    assert encode(ev) == data


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD_BYTES) - 1), st.integers(1, 255), st.booleans())
def test_fuzz_mutated_evidence_never_verifies(pos, xor, truncate):
    data = GOOD_BYTES[:pos] if truncate else GOOD_BYTES[:pos] + bytes([GOOD_BYTES[pos] ^ xor]) + GOOD_BYTES[pos + 1:]
    with pytest.raises(EvidenceError):
        verify(decode(data), VSET, CHAIN)


def test_signer_refuses_what_evidence_would_punish(tmp_path):
    """The two halves fit: a Signer never produces the second vote that evidence needs."""
    from consensus.signer import DoubleSignRefused
    with Signer(KEYS[2], CHAIN, tmp_path / "state") as s:
        sig = s.sign_vote(PRECOMMIT, 7, 1, A)
        with pytest.raises(DoubleSignRefused):
            s.sign_vote(PRECOMMIT, 7, 1, B)
    assert sig == vote(KEYS[2], A).signature


@pytest.mark.parametrize("stake, num, den, taken", [
    (1000, 1, 20, 50), (999, 1, 20, 49), (0, 1, 2, 0), (7, 0, 1, 0), (7, 1, 1, 7), (2**64 - 1, 1, 3, (2**64 - 1) // 3),
])
def test_slash_rounds_down(stake, num, den, taken):
    assert slash(stake, num, den) == taken


@pytest.mark.parametrize("args", [(-1, 1, 2), (10, 3, 2), (10, 1, 0), (10, -1, 2), (10.0, 1, 2)])
def test_slash_refuses_bad_fractions(args):
    with pytest.raises(ValueError):
        slash(*args)
