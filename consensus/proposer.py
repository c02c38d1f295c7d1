"""Who proposes at (height, round): stake-weighted round robin, as CometBFT does it.

Every validator holds a proposer priority.  One increment adds each validator's voting
power to its priority, then the validator with the highest priority (ties: the smallest
address) proposes and pays the total power back.  Over any window a validator proposes in
proportion to its stake, and no one waits long: the gap between priorities stays bounded.

The arithmetic follows CometBFT `types/validator_set.go` to the integer, so that every
node agrees on the proposer:
- a new validator starts at -1.125 * total power (`-(total + total >> 3)`),
- before a batch of increments the spread max - min is scaled down (dividing every
  priority, truncating toward zero, by ceil(spread / (2 * total))) when it exceeds
  2 * total, then the floor of the average is subtracted so priorities centre on zero,
- sums clip at the int64 bounds,
- a fresh set (`NewValidatorSet`) is already incremented once: that is height 1, round 0;
  each new height increments once more, and round r of a height increments r more times.

Validator set updates (new priorities for joining validators, `updateWithChangeSet`) are
not here yet: a set is fixed from the height its `ProposerState.initial` is taken.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ledger.validators import ValidatorSet

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
PRIORITY_WINDOW_SIZE_FACTOR = 2


def _clip(x: int) -> int:
    """CometBFT's safeAddClip / safeSubClip: saturate at the int64 bounds."""
    return max(INT64_MIN, min(INT64_MAX, x))


def _div_toward_zero(a: int, b: int) -> int:
    """Go's `/` on int64 truncates toward zero; Python's `//` floors."""
    q = abs(a) // b
    return q if a >= 0 else -q


def rescale_priorities(priorities: tuple[int, ...], diff_max: int) -> tuple[int, ...]:
    """Divide every priority when the spread exceeds diff_max (CometBFT RescalePriorities)."""
    if diff_max <= 0:
        return priorities
    diff = max(priorities) - min(priorities)
    if diff <= diff_max:
        return priorities
    ratio = (diff + diff_max - 1) // diff_max
    return tuple(_div_toward_zero(p, ratio) for p in priorities)


def centre_priorities(priorities: tuple[int, ...]) -> tuple[int, ...]:
    """Subtract the floored average (big.Int Div by a positive n floors), so they sum near 0."""
    avg = sum(priorities) // len(priorities)
    return tuple(_clip(p - avg) for p in priorities)


@dataclass(frozen=True, slots=True)
class ProposerState:
    """Priorities of a fixed validator set (address order), and who they made proposer."""

    addresses: tuple[bytes, ...]
    powers: tuple[int, ...]
    priorities: tuple[int, ...]
    proposer_index: int

    @classmethod
    def initial(cls, vset: ValidatorSet) -> ProposerState:
        """The state of a fresh set, incremented once as NewValidatorSet does: height 1, round 0."""
        total = vset.total_stake
        start = -(total + (total >> 3))
        fresh = tuple(start for _ in vset.validators)
        fresh = centre_priorities(rescale_priorities(fresh, PRIORITY_WINDOW_SIZE_FACTOR * total))
        state = cls(tuple(v.address for v in vset.validators),
                    tuple(v.stake for v in vset.validators), fresh, -1)
        return state.advance(1)

    @property
    def total_power(self) -> int:
        return sum(self.powers)

    @property
    def proposer(self) -> bytes:
        return self.addresses[self.proposer_index]

    def advance(self, times: int) -> ProposerState:
        """CometBFT IncrementProposerPriority(times): rescale, centre, then `times` single steps."""
        if times <= 0:
            raise ValueError("advance needs a positive number of steps")
        total = self.total_power
        prios = centre_priorities(rescale_priorities(self.priorities, PRIORITY_WINDOW_SIZE_FACTOR * total))
        prios_l = list(prios)
        index = self.proposer_index
        for _ in range(times):
            prios_l = [_clip(p + w) for p, w in zip(prios_l, self.powers)]
            # the highest priority wins; addresses are sorted, so the first maximum is the
            # smallest address among equals
            index = max(range(len(prios_l)), key=lambda i: (prios_l[i], -i))
            prios_l[index] = _clip(prios_l[index] - total)
        return ProposerState(self.addresses, self.powers, tuple(prios_l), index)


@lru_cache(maxsize=1024)
def proposer_state(vset: ValidatorSet, height: int) -> ProposerState:
    """The priorities at round 0 of `height` for a set fixed since height 1.

    One increment per height, as CometBFT's updateState does (whatever round the previous
    height was decided in).  O(height): a node keeps the state and advances it per height;
    this derivation is for tests and for nodes starting from genesis.
    """
    if height < 1:
        raise ValueError("heights start at 1")
    state = ProposerState.initial(vset)
    for _ in range(height - 1):
        state = state.advance(1)
    return state


@lru_cache(maxsize=4096)
def round_proposer(state: ProposerState, round_: int) -> bytes:
    """The proposer of round `round_` of the height whose round-0 priorities are `state`."""
    if round_ < 0:
        raise ValueError("rounds start at 0")
    return state.proposer if round_ == 0 else state.advance(round_).proposer


def proposer(vset: ValidatorSet, height: int, round_: int) -> bytes:
    """proposer(h, r) of the paper, for a validator set fixed since height 1."""
    return round_proposer(proposer_state(vset, height), round_)
