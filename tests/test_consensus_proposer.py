"""Stake-weighted proposer selection (consensus/proposer.py), CometBFT's integer arithmetic."""
from __future__ import annotations

from collections import Counter

import pytest

from consensus.proposer import (ProposerState, centre_priorities, proposer, proposer_state,
                                rescale_priorities, round_proposer)
from ledger.validators import Validator, ValidatorSet
from ledger.keys import PrivateKey

KEYS = [PrivateKey.from_label(f"proposer validator {i}") for i in range(6)]


def vset(stakes: list[int]) -> ValidatorSet:
    return ValidatorSet(tuple(Validator(k.public_key, s) for k, s in zip(KEYS, stakes)))


def stake_by_address(vs: ValidatorSet) -> dict[bytes, int]:
    return {v.address: v.stake for v in vs.validators}


def proposers(state: ProposerState, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        out.append(state.proposer)
        state = state.advance(1)
    return out


def test_frequency_is_proportional_to_stake():
    vs = vset([1, 2, 3, 4])
    counts = Counter(stake_by_address(vs)[a] for a in proposers(ProposerState.initial(vs), 1000))
    for stake, count in counts.items():
        assert abs(count - 100 * stake) <= 1
    # and within every window of one period (total power) each proposes exactly `stake` times
    seq = proposers(ProposerState.initial(vs), 200)
    for start in range(0, 200, 10):
        assert Counter(stake_by_address(vs)[a] for a in seq[start:start + 10]) == {1: 1, 2: 2, 3: 3, 4: 4}


def test_frequency_with_uneven_stakes_over_rounds_and_heights():
    vs = vset([7, 1, 13, 100, 3])
    total = vs.total_stake
    seq = [proposer(vs, 1, r) for r in range(total * 4)]
    counts = Counter(seq)
    for v in vs.validators:
        assert abs(counts[v.address] - 4 * v.stake) <= 1


def test_priorities_stay_centred_and_bounded():
    vs = vset([1, 50, 1000, 3])
    state = ProposerState.initial(vs)
    total = vs.total_stake
    for _ in range(3000):
        state = state.advance(1)
        assert max(state.priorities) - min(state.priorities) <= 2 * total + max(state.powers)
        assert abs(sum(state.priorities)) < len(state.priorities) * total


def test_new_set_starts_at_minus_one_point_one_two_five_total_then_centres():
    vs = vset([1, 2, 3, 4])
    # NewValidatorSet: all at -1.125 * 10 = -11 (integer), centred to 0, one increment:
    # powers added (1, 2, 3, 4), the largest (4) proposes and pays back 10
    state = ProposerState.initial(vs)
    by_addr = dict(zip(state.addresses, state.priorities))
    assert sorted(by_addr.values()) == [-6, 1, 2, 3]
    assert stake_by_address(vs)[state.proposer] == 4


def test_ties_go_to_the_smallest_address():
    vs = vset([5, 5, 5, 5])
    addrs = sorted(v.address for v in vs.validators)
    assert proposers(ProposerState.initial(vs), 8) == addrs * 2     # round robin in address order


def test_one_validator_always_proposes():
    vs = vset([42])
    only = vs.validators[0].address
    assert {proposer(vs, h, r) for h in range(1, 6) for r in range(5)} == {only}


def test_deterministic_and_derived_by_height():
    vs = vset([3, 1, 4, 1, 5])
    assert proposer_state(vs, 7) == ProposerState.initial(vs).advance(1).advance(1).advance(1).advance(1) \
        .advance(1).advance(1)
    a = [proposer(vs, h, r) for h in range(1, 8) for r in range(4)]
    b = [proposer(vset([3, 1, 4, 1, 5]), h, r) for h in range(1, 8) for r in range(4)]
    assert a == b
    # round r of a height is r more increments of that height's state
    assert round_proposer(proposer_state(vs, 3), 2) == proposer_state(vs, 3).advance(2).proposer
    with pytest.raises(ValueError):
        proposer(vs, 0, 0)
    with pytest.raises(ValueError):
        ProposerState.initial(vs).advance(0)


def test_rescale_and_centre_follow_go_integer_rules():
    # spread 100 > 2 * 10: ratio ceil(100 / 20) = 5, division truncates toward zero
    assert rescale_priorities((-53, 47, 7), 20) == (-10, 9, 1)
    assert rescale_priorities((-5, 5), 20) == (-5, 5)                 # within the window: unchanged
    # the average floors (Go big.Int division by a positive n)
    assert centre_priorities((-3, 0, 0)) == (-2, 1, 1)
    assert centre_priorities((4, 0, 0)) == (3, -1, -1)


def test_large_stakes_clip_at_int64():
    vs = vset([2**62, 2**62 - 1, 5])
    seq = proposers(ProposerState.initial(vs), 10)
    assert all(isinstance(p, bytes) for p in seq)
    st = ProposerState.initial(vs).advance(50)
    assert all(-(2**63) <= p <= 2**63 - 1 for p in st.priorities)
