"""Staking on a real LMDB chain (ledger/staking.py): bond, unbond with its delay, the set of
height H+2 from the state after H, block rewards by stake, evidence and slashing, and the
refusals.  Blocks are committed with the precommits of the set that signs them, checked."""
from __future__ import annotations

import dataclasses
import re

import pytest

from ledger.genesis import Genesis
from ledger import errors, staking
from ledger.block import STATUS_FAILED, STATUS_SUCCESS
from ledger.chain import Chain
from ledger.evidence import DuplicateVoteEvidence
from ledger.evidence import encode as evidence_encode
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.block import Receipt
from ledger.state import STAKING_PREFIX, State, changes, get_staking, set_staking
from ledger.store import Store
from ledger.tx import (INTRINSIC_GAS, TxKind, bond, decode_transaction, sign_transaction, submit_evidence,
                       transfer, tx_to_json, unbond, Evidence)
from ledger.encoding import decode, encode
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote, make_commit, sign_vote, verify_commit
import node as node_py
from vm.codec import decode_value

CHAIN = "staking-test"
BIG = PrivateKey.from_label("staking big validator")  # keeps 2/3 alone unless a test says otherwise
SMALL = [PrivateKey.from_label(f"staking small {i}") for i in range(3)]
USER = PrivateKey.from_label("staking user")
KEYS = {k.address: k for k in [BIG, *SMALL, USER]}
FUNDS = 10**15
PARAMS = ChainParams(block_reward=1_000_003, unbonding_blocks=3, max_validators=4, slash_percent=10)


def genesis(params: ChainParams = PARAMS, stakes: tuple[int, ...] = (100, 10)) -> Genesis:
    vals = (Validator(BIG.public_key, stakes[0]), Validator(SMALL[0].public_key, stakes[1]))
    return Genesis(CHAIN, 1_000, params, ValidatorSet(vals),
                   tuple(sorted((k.address, FUNDS) for k in [*SMALL, USER])))


class Node:
    """A chain that proposes with BIG and commits with every known key of the signing set."""

    def __init__(self, path, g: Genesis):
        self.store = Store(path)
        changes, root, nodes = g.initial_state()
        self.store.init_genesis(b"{}", g.header(root), changes, nodes)
        self.chain = Chain(self.store, CHAIN, g.params)
        self.last_commit = None

    def nonce(self, key: PrivateKey) -> int:
        return self.chain.account(key.address).nonce

    def block(self, txs=(), proposer: PrivateKey = BIG):
        c = self.chain
        height = c.tip.height + 1
        vset = c.validator_set(height)
        prop = c.build_block(list(txs), proposer.address, c.tip.time_ms + 1000, self.last_commit)
        assert not prop.rejected, prop.rejected
        signers = [KEYS[v.address] for v in vset.validators]
        commit = make_commit(signers, CHAIN, height, 0, prop.block.hash)
        verify_commit(vset, CHAIN, commit, height, prop.block.hash)
        again = c.execute_block(prop.block)  # what every other validator does
        assert again.state_root == prop.output.state_root
        c.commit_block(prop.block, commit, prop.output)
        self.last_commit = commit
        return prop

    def table(self) -> dict[bytes, int]:
        with self.store.read() as r:
            return {v.address: v.stake for v in staking.bonded(State(r.state))}

    def sets(self) -> list[dict[bytes, int]]:
        """{address: stake} of the sets that sign tip, tip+1, tip+2."""
        h = self.chain.tip.height
        return [{v.address: v.stake for v in self.chain.validator_set(h + i).validators} for i in range(3)]

    def balance(self, key: PrivateKey) -> int:
        return self.chain.account(key.address).balance


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "chain", genesis())
    yield n
    n.store.close()


def double_sign(key: PrivateKey, height: int, round_: int = 0, vote_type: int = PREVOTE) -> bytes:
    """Evidence bytes: `key` signed two different blocks at one step."""
    votes = [SignedVote(Vote(vote_type, height, round_, value, key.address),
                        sign_vote(key, CHAIN, vote_type, height, round_, value))
             for value in (b"\x01" * 32, b"\x02" * 32)]
    return evidence_encode(DuplicateVoteEvidence.of(*votes))


def receipt(node: Node, prop, i: int = 0):
    """The i-th receipt of a proposal that `node` committed."""
    return prop.output.receipts[i]


# ---- bonding and the H+2 rule ------------------------------------------------------------

def test_a_bond_in_block_h_signs_from_h_plus_2(node):
    g0 = {BIG.address: 100, SMALL[0].address: 10}
    assert node.sets() == [g0, g0, g0]
    node.block()
    before = node.balance(SMALL[1])
    prop = node.block([bond(SMALL[1], CHAIN, 0, 7)])  # block 2
    assert receipt(node, prop).status == STATUS_SUCCESS
    assert node.balance(SMALL[1]) == before - 7 - INTRINSIC_GAS[TxKind.BOND]
    joined = {**g0, SMALL[1].address: 7}
    assert node.table() == joined
    assert node.sets() == [g0, g0, joined]                     # sets of 2, 3 and 4
    set3, set4 = node.chain.validator_set(3), node.chain.validator_set(4)
    h3 = node.block().block.header
    assert h3.validators_hash == set3.hash and h3.next_validators_hash == set4.hash
    assert set3.get(SMALL[1].address) is None and set4.get(SMALL[1].address).stake == 7
    h4 = node.block().block.header                               # SMALL[1] signs block 4's commit
    assert h4.validators_hash == ValidatorSet(tuple(Validator(KEYS[a].public_key, s) for a, s in joined.items())).hash
    assert {s.validator for s in node.store.commit(4).signatures} == set(joined)
    assert {s.validator for s in node.store.commit(3).signatures} == set(g0)
    more = node.block([bond(SMALL[1], CHAIN, 1, 5)])             # adding stake to a validator
    assert receipt(node, more).status == STATUS_SUCCESS and node.table()[SMALL[1].address] == 12


def test_a_header_naming_another_validator_set_is_refused(node, tmp_path):
    node.block([bond(SMALL[1], CHAIN, 0, 7)])  # block 2 is signed by the genesis set, 3 by the new one
    prop = node.chain.build_block([], BIG.address, node.chain.tip.time_ms + 1000, node.last_commit)
    for field, wrong in (("validators_hash", prop.block.header.next_validators_hash),
                         ("next_validators_hash", prop.block.header.validators_hash)):
        bad = dataclasses.replace(prop.block, header=dataclasses.replace(prop.block.header, **{field: wrong}))
        with pytest.raises(errors.InvalidBlock, match="validator set"):
            node.chain.execute_block(bad)


def test_the_set_is_full(tmp_path):
    n = Node(tmp_path / "c", genesis(ChainParams(max_validators=3)))
    try:
        prop = n.block([bond(SMALL[1], CHAIN, 0, 1), bond(SMALL[2], CHAIN, 0, 1)])
        ok, full = prop.output.receipts
        assert ok.status == STATUS_SUCCESS
        assert full.status == STATUS_FAILED and "full (3 validators)" in full.error
        assert full.gas_used == INTRINSIC_GAS[TxKind.BOND]
        assert set(n.table()) == {BIG.address, SMALL[0].address, SMALL[1].address}
    finally:
        n.store.close()


def test_bonding_more_than_the_balance_is_not_admitted(node):
    poor = transfer(USER, CHAIN, 0, SMALL[2].address, 0)
    node.block([poor])
    tx = bond(SMALL[2], CHAIN, 0, FUNDS + 1)
    prop = node.chain.build_block([tx], BIG.address, node.chain.tip.time_ms + 1000, node.last_commit)
    assert [type(e) for _, e in prop.rejected] == [errors.InsufficientFunds]


# ---- unbonding -------------------------------------------------------------------------------

def test_unbond_pays_back_after_the_delay_and_removes_at_h_plus_2(node):
    node.block([bond(SMALL[1], CHAIN, 0, 7)])      # 1
    node.block()                                   # 2
    node.block()                                   # 3: SMALL[1] signs from here
    before = node.balance(SMALL[1])
    prop = node.block([unbond(SMALL[1], CHAIN, 1, 7)])  # 4: all of it; paid at the end of 4 + 3
    assert receipt(node, prop).status == STATUS_SUCCESS
    assert SMALL[1].address not in node.table()
    assert SMALL[1].address in node.sets()[1] and SMALL[1].address not in node.sets()[2]
    fee = INTRINSIC_GAS[TxKind.UNBOND]
    share = PARAMS.block_reward * 7 // 117  # its reward while in the set (stakes 100 + 10 + 7)
    assert node.balance(SMALL[1]) == before - fee + share
    node.block()                                   # 5: still signs (set of 5 fixed after 3)
    assert SMALL[1].address in {s.validator for s in node.store.commit(5).signatures}
    node.block()                                   # 6: gone
    assert SMALL[1].address not in {s.validator for s in node.store.commit(6).signatures}
    assert node.balance(SMALL[1]) == before - fee + 2 * share
    node.block()                                   # 7: the stake comes back
    assert node.balance(SMALL[1]) == before - fee + 2 * share + 7
    with node.store.read() as r:
        assert get_staking(State(r.state), staking.UNBOND + (7).to_bytes(8, "big")) is None


@pytest.mark.parametrize("who, amount, why", [
    (SMALL[1], 1, "not a bonded validator"),
    (SMALL[0], 11, "cannot unbond 11: the stake is 10"),
])
def test_bad_unbonds_fail_and_keep_the_fee(node, who, amount, why):
    before = node.balance(who)
    prop = node.block([unbond(who, CHAIN, 0, amount)])
    r = receipt(node, prop)
    assert r.status == STATUS_FAILED and why in r.error
    assert node.table() == {BIG.address: 100, SMALL[0].address: 10}
    assert node.balance(who) == before - INTRINSIC_GAS[TxKind.UNBOND] + (
        PARAMS.block_reward * 10 // 110 if who == SMALL[0] else 0)


def test_the_last_validator_cannot_leave(tmp_path):
    g = Genesis(CHAIN, 1_000, PARAMS, ValidatorSet((Validator(SMALL[0].public_key, 5),)),
                ((SMALL[0].address, FUNDS),))
    n = Node(tmp_path / "c", g)
    try:
        r = n.block([unbond(SMALL[0], CHAIN, 0, 5)], proposer=SMALL[0]).output.receipts[0]
        assert r.status == STATUS_FAILED and "last validator" in r.error
        assert n.table() == {SMALL[0].address: 5}
    finally:
        n.store.close()


# ---- rewards ---------------------------------------------------------------------------------

def test_block_reward_is_shared_by_stake_and_fees_go_to_the_proposer(node):
    before = {a: node.chain.account(a).balance for a in (BIG.address, SMALL[0].address)}
    tx = transfer(USER, CHAIN, 0, SMALL[2].address, 5, gas_price=3)
    node.block([tx], proposer=SMALL[0])
    r = PARAMS.block_reward
    small_share = r * 10 // 110
    big_share = r * 100 // 110
    fee = INTRINSIC_GAS[TxKind.TRANSFER] * 3
    assert node.chain.account(BIG.address).balance - before[BIG.address] == big_share
    assert node.chain.account(SMALL[0].address).balance - before[SMALL[0].address] == \
        small_share + fee + (r - small_share - big_share)   # the proposer keeps the rounding


def test_supply_grows_by_exactly_the_reward(node):
    def supply() -> int:
        return sum(node.chain.account(a).balance for a in KEYS) + sum(node.table().values()) + unbonding()

    def unbonding() -> int:
        with node.store.read() as r:
            st = State(r.state)
            return sum(amount for h in range(0, 20) for _, amount in
                       get_staking(st, staking.UNBOND + h.to_bytes(8, "big")) or [])
    s0 = supply()
    node.block([bond(SMALL[1], CHAIN, 0, 50), transfer(USER, CHAIN, 0, BIG.address, 9)])
    node.block([unbond(SMALL[1], CHAIN, 1, 20)])
    node.block([submit_evidence(USER, CHAIN, 1, double_sign(SMALL[0], 2))])
    for _ in range(5):
        node.block()
    burned = 10 * PARAMS.slash_percent // 100
    assert supply() == s0 + 8 * PARAMS.block_reward - burned


# ---- evidence ---------------------------------------------------------------------------------

def test_evidence_slashes_removes_and_tombstones(node):
    node.block()
    node.block()
    ev = double_sign(SMALL[0], 2, vote_type=PRECOMMIT)
    before = node.balance(SMALL[0])
    prop = node.block([submit_evidence(USER, CHAIN, 0, ev)])  # block 3
    r = receipt(node, prop)
    assert r.status == STATUS_SUCCESS, r.error
    (contract, name, data), = r.events
    assert name == "Slashed" and decode_value(data, 10_000) == {"validator": SMALL[0].address, "burned": 1,
                                                                 "unbonding": 9}
    assert node.table() == {BIG.address: 100}
    assert SMALL[0].address in node.sets()[1] and SMALL[0].address not in node.sets()[2]
    # the same offence again, and any other, fails: the validator is no longer bonded
    again = receipt(node, node.block([submit_evidence(USER, CHAIN, 1, ev)]))
    assert again.status == STATUS_FAILED and "not bonded" in again.error
    # it may never bond again
    rebond = receipt(node, node.block([bond(SMALL[0], CHAIN, 0, 10)]))
    assert rebond.status == STATUS_FAILED and "slashed" in rebond.error
    # the unslashed 9 come back at the end of block 3 + 3; no more rewards after block 4
    mid = node.balance(SMALL[0])
    assert mid == before + 2 * (PARAMS.block_reward * 10 // 110) - INTRINSIC_GAS[TxKind.BOND]  # blocks 3, 4
    node.block()
    assert node.balance(SMALL[0]) == mid + 9


@pytest.mark.parametrize("case", ["future", "too_old", "not_bonded", "bad_signature", "other_chain"])
def test_void_evidence_fails(node, case):
    for _ in range(5):
        node.block()
    height = {"future": 6, "too_old": 1}.get(case, 4)
    key = SMALL[2] if case == "not_bonded" else SMALL[0]
    ev = double_sign(key, height)
    if case == "bad_signature":
        ev = double_sign(SMALL[1], height).replace(SMALL[1].address, SMALL[0].address)
    if case == "other_chain":
        votes = [SignedVote(Vote(PREVOTE, height, 0, v, key.address), sign_vote(key, "elsewhere", PREVOTE, height, 0, v))
                 for v in (b"\x01" * 32, b"\x02" * 32)]
        ev = evidence_encode(DuplicateVoteEvidence.of(*votes))
    r = receipt(node, node.block([submit_evidence(USER, CHAIN, 0, ev)]))
    assert r.status == STATUS_FAILED
    assert {"future": "outside the window", "too_old": "outside the window", "not_bonded": "not bonded",
            "bad_signature": "signature", "other_chain": "signature"}[case] in r.error
    assert node.table() == {BIG.address: 100, SMALL[0].address: 10}


# ---- the wire ----------------------------------------------------------------------------------

def test_staking_transactions_round_trip(node):
    for tx in (bond(SMALL[1], CHAIN, 0, 7), unbond(SMALL[1], CHAIN, 1, 3),
               submit_evidence(USER, CHAIN, 0, double_sign(SMALL[0], 3))):
        back = decode_transaction(tx.raw, 65536)
        assert back == tx and back.hash == tx.hash
        assert tx_to_json(back)["kind"] in ("bond", "unbond", "evidence")
    assert tx_to_json(bond(SMALL[1], CHAIN, 0, 7))["amount"] == 7
    j = tx_to_json(submit_evidence(USER, CHAIN, 0, double_sign(SMALL[0], 3)))
    assert j["evidence"]["height"] == 3


@pytest.mark.parametrize("kind, payload, why", [
    (TxKind.BOND, [0], "in (0, 2**64)"),
    (TxKind.BOND, [-1], "in (0, 2**64)"),
    (TxKind.UNBOND, [0], "in (0, 2**64)"),
    (TxKind.UNBOND, [1, 2], "[amount]"),
    (TxKind.BOND, ["7"], "in (0, 2**64)"),
    (TxKind.EVIDENCE, [b"\x00"], "evidence"),
    (TxKind.EVIDENCE, [], "[evidence bytes]"),
    (TxKind.EVIDENCE, ["text"], "[evidence bytes]"),
])
def test_malformed_staking_payloads_are_refused_at_decode(kind, payload, why):
    w = decode(bond(SMALL[1], CHAIN, 0, 7).raw)
    w[6], w[7] = int(kind), payload
    with pytest.raises(errors.MalformedTransaction, match=re.escape(why)):
        decode_transaction(encode(w), 65536)


def test_evidence_about_the_same_block_twice_is_malformed():
    v = SignedVote(Vote(PREVOTE, 3, 0, b"\x01" * 32, SMALL[0].address),
                   sign_vote(SMALL[0], CHAIN, PREVOTE, 3, 0, b"\x01" * 32))
    raw = evidence_encode(DuplicateVoteEvidence(v, v))
    tx = sign_transaction(USER, CHAIN, 0, TxKind.EVIDENCE, Evidence(None, raw))
    with pytest.raises(errors.MalformedTransaction, match="same block"):
        decode_transaction(tx.raw, 65536)


def test_the_node_log_describes_staking_transactions():
    ok = Receipt(STATUS_SUCCESS, 50_000)
    assert "bond 7  from" in node_py.describe_tx(bond(SMALL[1], CHAIN, 0, 7), ok, 5)
    assert "unbond 3  from" in node_py.describe_tx(unbond(SMALL[1], CHAIN, 0, 3), ok, 5)
    line = node_py.describe_tx(submit_evidence(USER, CHAIN, 0, double_sign(SMALL[0], 3)),
                       Receipt(STATUS_FAILED, 100_000, "the double signer is not bonded"), 5)
    assert "evidence against 0x" in line and "at height 3" in line and "FAILED: the double signer" in line


def test_a_state_without_validator_sets_is_a_clear_error(tmp_path):
    """A data dir written before staking existed: the node refuses to start, saying why."""
    cfg = node_py.NodeConfig(data_dir=tmp_path / "old", verify_workers=0, quiet=True)
    node_py.Node(cfg).close()                                # a devnet data dir
    store = Store(cfg.data_dir)
    with store.read() as r:
        st = State(r.state)
        set_staking(st, staking.SETS, None)          # as an older gradchain left it
        ch = changes(st)
    assert list(ch) == [STAKING_PREFIX + staking.SETS]
    store._write(lambda txn: store._put_state(txn, ch, {}))
    store.close()
    with pytest.raises(node_py.NodeError, match="before staking.*empty --data-dir"):
        node_py.Node(cfg)
