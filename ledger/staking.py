"""Staking: who validates, with what stake, from which height; rewards and slashing.

Everything lives in consensus state (so it is in the state root and every node agrees):

    v/bonded        the bonded table: [[public_key, stake], ...] in address order
    v/sets          [set(H), set(H+1), set(H+2)] after block H (each as the bonded table)
    v/unbond/<H>    unbonded stake paid back at the end of block H: [[address, amount], ...]
    v/slashed/<a>   a tombstone: this validator double-signed and may never bond again

The rule (CometBFT's): a change made by a transaction of block H (bond, unbond, slash) is in
the table at the end of H, and the table becomes the validator set of height H+2.  So the
header of block H names set(H) and set(H+1), both known from its parent's state, and a node
holding the state after H knows who signs H+1 and H+2 (`validator_set`).

The functions that run a staking transaction raise StakingFailure (the transaction fails,
its fee is kept); `end_block` pays the block reward and the unbonding stake that is due,
then shifts the sets.  Fees go to the proposer in ledger.transition.
"""
from __future__ import annotations

from dataclasses import dataclass

from ledger import errors
from ledger.evidence import DuplicateVoteEvidence, EvidenceError, verify as verify_evidence
from ledger.params import ChainParams
from ledger.state import (Account, State, get_account, get_staking, set_account, set_staking)
from ledger.validators import Validator, ValidatorSet

BONDED = b"bonded"
SETS = b"sets"
UNBOND = b"unbond/"
SLASHED = b"slashed/"
U64_MAX = 2**64 - 1


class StakingFailure(Exception):
    """A valid staking transaction that cannot take effect: it fails with this message."""


@dataclass(frozen=True, slots=True)
class Slashed:
    """What `slash` did: burned from the stake, and the rest sent to unbonding."""

    validator: bytes
    burned: int
    unbonding: int


# ---- the table and the sets -------------------------------------------------------------

def _to_wire(validators: tuple[Validator, ...]) -> list:
    return [[v.public_key, v.stake] for v in validators]


def _from_wire(w: list) -> tuple[Validator, ...]:
    return tuple(Validator(pk, stake) for pk, stake in w)


def bonded(state: State) -> tuple[Validator, ...]:
    """The bonded table now (it becomes the set two heights after this block)."""
    return _from_wire(get_staking(state, BONDED) or [])


def _set_bonded(state: State, validators: list[Validator]) -> None:
    validators.sort(key=lambda v: v.address)
    set_staking(state, BONDED, _to_wire(tuple(validators)))


def genesis_staking(validators: ValidatorSet) -> dict[bytes, list]:
    """The staking entries of the genesis state: the genesis set bonded and signing 0, 1, 2."""
    table = _to_wire(validators.validators)
    return {BONDED: table, SETS: [table, table, table]}


def validator_set(state: State, offset: int) -> ValidatorSet:
    """After block H: the set that signs H + offset (offset 0, 1 or 2)."""
    sets = get_staking(state, SETS)
    if sets is None:
        raise errors.LedgerError("the state holds no validator sets (written by a gradchain from before staking)")
    return ValidatorSet(_from_wire(sets[offset]))


# ---- transactions -------------------------------------------------------------------------

def bond(state: State, params: ChainParams, public_key: bytes, amount: int) -> None:
    """Move `amount` from the account of `public_key` into its stake (a new validator, or more
    stake for one); the funds were checked with the transaction."""
    validator = Validator(public_key, 0)
    if get_staking(state, SLASHED + validator.address) is not None:
        raise StakingFailure("this validator was slashed for double signing and may not bond again")
    table = list(bonded(state))
    current = next((v for v in table if v.public_key == public_key), None)
    if current is None and len(table) >= params.max_validators:
        raise StakingFailure(f"the validator set is full ({params.max_validators} validators)")
    stake = amount + (current.stake if current else 0)
    if sum(v.stake for v in table) + amount > U64_MAX:
        raise StakingFailure("total stake would exceed 2**64 base units")
    account = get_account(state, validator.address)
    set_account(state, validator.address, Account(account.balance - amount, account.nonce))
    _set_bonded(state, [v for v in table if v.public_key != public_key] + [Validator(public_key, stake)])


def unbond(state: State, params: ChainParams, height: int, address: bytes, amount: int) -> None:
    """Take `amount` out of a validator's stake; it is paid back after `unbonding_blocks`.
    The last validator cannot leave: a chain without validators can never make a block."""
    table = list(bonded(state))
    current = next((v for v in table if v.address == address), None)
    if current is None:
        raise StakingFailure("the sender is not a bonded validator")
    if amount > current.stake:
        raise StakingFailure(f"cannot unbond {amount}: the stake is {current.stake}")
    rest = [v for v in table if v.address != address]
    if amount < current.stake:
        rest.append(Validator(current.public_key, current.stake - amount))
    if not rest:
        raise StakingFailure("the last validator cannot unbond all of its stake")
    _set_bonded(state, rest)
    _schedule_release(state, height + params.unbonding_blocks, address, amount)


def slash(state: State, params: ChainParams, height: int, chain_id: str,
          evidence: DuplicateVoteEvidence) -> Slashed:
    """Punish a proven double signature: burn `slash_percent` of the stake, unbond the rest,
    remove the validator and tombstone it.  Evidence older than the unbonding period is void
    (the stake it could reach may be gone), as is evidence about someone not bonded now."""
    if not height - params.unbonding_blocks <= evidence.height < height:
        raise StakingFailure(f"evidence of height {evidence.height} is outside the window "
                             f"[{max(1, height - params.unbonding_blocks)}, {height - 1}]")
    table = list(bonded(state))
    current = next((v for v in table if v.address == evidence.validator), None)
    if current is None:
        raise StakingFailure("the double signer is not bonded (already slashed, or gone)")
    try:
        verify_evidence(evidence, ValidatorSet((current,)), chain_id)
    except EvidenceError as e:
        raise StakingFailure(f"evidence is invalid: {e}") from None
    rest = [v for v in table if v.address != current.address]
    if not rest:
        raise StakingFailure("the last validator cannot be removed")
    burned = current.stake * params.slash_percent // 100
    _set_bonded(state, rest)
    set_staking(state, SLASHED + current.address, [evidence.height, burned])
    _schedule_release(state, height + params.unbonding_blocks, current.address, current.stake - burned)
    return Slashed(current.address, burned, current.stake - burned)


def _schedule_release(state: State, at: int, address: bytes, amount: int) -> None:
    if amount:
        key = UNBOND + at.to_bytes(8, "big")
        set_staking(state, key, (get_staking(state, key) or []) + [[address, amount]])


# ---- the end of a block ---------------------------------------------------------------------

def end_block(state: State, params: ChainParams, height: int, proposer: bytes) -> None:
    """Pay the block reward to set(height) by stake (the remainder of the division to the
    proposer), pay back the stake whose unbonding ends now, and shift the sets by one."""
    sets = get_staking(state, SETS)
    signers = _from_wire(sets[1])  # set(height): sets[1] of the parent's state
    if params.block_reward:
        total = sum(v.stake for v in signers)
        paid = 0
        for v in signers:
            share = params.block_reward * v.stake // total
            _credit(state, v.address, share)
            paid += share
        _credit(state, proposer, params.block_reward - paid)
    key = UNBOND + height.to_bytes(8, "big")
    for address, amount in get_staking(state, key) or []:
        _credit(state, address, amount)
    if get_staking(state, key) is not None:
        set_staking(state, key, None)
    new = [sets[1], sets[2], get_staking(state, BONDED)]
    if new != sets:
        set_staking(state, SETS, new)


def _credit(state: State, address: bytes, amount: int) -> None:
    if amount:
        a = get_account(state, address)
        set_account(state, address, Account(a.balance + amount, a.nonce))
