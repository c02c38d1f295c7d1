"""The state-transition function (ledger/transition.py) and the journal of ledger/state.py."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.genesis import Genesis
from ledger.validators import Validator, ValidatorSet
from ledger.votes import make_commit
from ledger import errors
from ledger.block import STATUS_SUCCESS, Block, Receipt, encode_receipt
from ledger.keys import PrivateKey
from ledger.merkle import merkle_root
from ledger.params import ChainParams
from ledger.state import (ACCOUNT_PREFIX, Account, State, account_key, begin_transaction, changes,
                          commit_transaction, decode_account, encode_account, get_account,
                          rollback_transaction, set_account)
from ledger.transition import (BlockEnv, apply_body, build_body, finish_block, propose_block,
                               process_transaction, state_transition)
from ledger.trie import root_from_items
from ledger.tx import INTRINSIC_GAS, TxKind, transfer

CHAIN = "transition-test"
GAS = INTRINSIC_GAS[TxKind.TRANSFER]
BALANCE = 10**12
KEYS = [PrivateKey.from_label(f"transition account {i}") for i in range(4)]
A, B, C, D = KEYS
VALIDATOR = PrivateKey.from_label("transition validator")
PROPOSER = VALIDATOR.address
FRESH = PrivateKey.from_label("never funded").address


NO_REWARD = ChainParams(block_reward=0)  # balances below are exact: no coins minted per block


def genesis(params: ChainParams = NO_REWARD, balance: int = BALANCE) -> Genesis:
    return Genesis(CHAIN, 1_000, params, ValidatorSet((Validator(VALIDATOR.public_key, 1),)),
                   tuple(sorted((k.address, balance) for k in KEYS)))


class Mem:
    """An in-memory chain: committed state + trie nodes + tip, driven by the pure STF."""

    def __init__(self, g: Genesis | None = None):
        g = g or genesis()
        ch, root, nodes = g.initial_state()
        self.params = g.params
        self.kv = {k: v for k, v in ch.items() if v is not None}
        self.nodes = dict(nodes)
        self.tip = g.header(root)
        self.last_commit = None

    def read(self, key):
        return self.kv.get(key)

    def node(self, h):
        return self.nodes[h]

    def state(self) -> State:
        return State(self.read)

    def env(self, proposer=PROPOSER, time_ms=None) -> BlockEnv:
        return BlockEnv(CHAIN, self.tip.height + 1, time_ms or self.tip.time_ms + 1000, proposer, self.params)

    def account(self, address) -> Account:
        return get_account(self.state(), address)

    def build(self, candidates, proposer=PROPOSER):
        return propose_block(self.state(), self.node, self.tip, self.env(proposer), candidates, self.last_commit)

    def execute(self, block):
        return state_transition(self.read, self.node, self.tip, block, self.params)

    def apply(self, block, out):
        for k, v in out.changes.items():
            if v is None:
                self.kv.pop(k, None)
            else:
                self.kv[k] = v
        self.nodes.update(out.trie_nodes)
        self.tip = block.header
        self.last_commit = make_commit([VALIDATOR], CHAIN, block.height, 0, block.hash)

    def total_supply(self) -> int:
        return sum(decode_account(v).balance for k, v in self.kv.items() if k.startswith(ACCOUNT_PREFIX))


# ---- one transaction ------------------------------------------------------------------

def test_transfer_moves_value_and_fee_exactly():
    m = Mem()
    st_, env = m.state(), m.env()
    tx = transfer(A, CHAIN, 0, B.address, 5_000, gas_price=7, gas_limit=50_000)
    r = process_transaction(st_, env, tx)
    assert r == Receipt(STATUS_SUCCESS, GAS, "")
    fee = GAS * 7
    assert get_account(st_, A.address) == Account(BALANCE - 5_000 - fee, 1)
    assert get_account(st_, B.address) == Account(BALANCE + 5_000, 0)
    assert get_account(st_, PROPOSER) == Account(fee, 0)
    ch = changes(st_)
    assert set(ch) == {account_key(A.address), account_key(B.address), account_key(PROPOSER)}
    assert ch[account_key(PROPOSER)] == encode_account(Account(fee, 0))
    # a second one from the same sender: next nonce, same accounting
    tx2 = transfer(A, CHAIN, 1, C.address, 1, gas_price=1)
    process_transaction(st_, env, tx2)
    assert get_account(st_, A.address) == Account(BALANCE - 5_001 - fee - GAS, 2)
    assert get_account(st_, PROPOSER).balance == fee + GAS


def test_transfer_to_self():
    m = Mem()
    st_ = m.state()
    process_transaction(st_, m.env(), transfer(A, CHAIN, 0, A.address, 777, gas_price=2))
    assert get_account(st_, A.address) == Account(BALANCE - 2 * GAS, 1)
    assert get_account(st_, PROPOSER) == Account(2 * GAS, 0)


def test_proposer_is_sender():
    m = Mem()
    st_ = m.state()
    env = m.env(proposer=A.address)
    process_transaction(st_, env, transfer(A, CHAIN, 0, B.address, 100, gas_price=5, gas_limit=40_000))
    assert get_account(st_, A.address) == Account(BALANCE - 100, 1)  # pays the fee to itself
    assert get_account(st_, B.address) == Account(BALANCE + 100, 0)
    # proposer == sender == recipient: only the nonce moves
    process_transaction(st_, env, transfer(A, CHAIN, 1, A.address, 100, gas_price=5))
    assert get_account(st_, A.address) == Account(BALANCE - 100, 2)


def test_whole_balance_can_be_spent():
    m = Mem()
    st_ = m.state()
    tx = transfer(A, CHAIN, 0, B.address, BALANCE - 2 * GAS, gas_price=2)
    process_transaction(st_, m.env(), tx)
    assert get_account(st_, A.address) == Account(0, 1)  # kept: the nonce is not 0


def test_zero_transfer_to_fresh_address_creates_nothing():
    m = Mem()
    st_ = m.state()
    process_transaction(st_, m.env(), transfer(A, CHAIN, 0, FRESH, 0))
    assert get_account(st_, FRESH) == Account(0, 0)
    assert changes(st_)[account_key(FRESH)] is None  # the empty account is a deletion


@pytest.mark.parametrize("case", ["funds", "funds_by_one", "nonce_low", "nonce_high"])
def test_invalid_transactions_change_nothing(case):
    m = Mem()
    st_ = m.state()
    env = m.env()
    # one valid tx first, so "nonce too low" has something to be low against
    process_transaction(st_, env, transfer(A, CHAIN, 0, B.address, 1))
    before = changes(st_)
    acct_a, acct_p = get_account(st_, A.address), get_account(st_, PROPOSER)
    bal = acct_a.balance
    tx, err = {
        "funds": (transfer(A, CHAIN, 1, B.address, bal), errors.InsufficientFunds),
        "funds_by_one": (transfer(A, CHAIN, 1, B.address, bal - 2 * GAS + 1, gas_price=2),
                         errors.InsufficientFunds),
        "nonce_low": (transfer(A, CHAIN, 0, B.address, 1), errors.NonceTooLow),
        "nonce_high": (transfer(A, CHAIN, 2, B.address, 1), errors.NonceTooHigh),
    }[case]
    with pytest.raises(err) as e:
        process_transaction(st_, env, tx)
    assert isinstance(e.value, errors.InvalidTransaction)
    assert changes(st_) == before
    assert get_account(st_, A.address) == acct_a and get_account(st_, PROPOSER) == acct_p


def test_cost_counts_the_whole_gas_limit():
    m = Mem(genesis(balance=100_000))
    st_ = m.state()
    # 50_000 gas at price 2 = 100_000: the worst case must fit even though only 21_000 is used
    with pytest.raises(errors.InsufficientFunds):
        process_transaction(st_, m.env(), transfer(A, CHAIN, 0, B.address, 1, gas_price=2, gas_limit=50_000))
    process_transaction(st_, m.env(), transfer(A, CHAIN, 0, B.address, 0, gas_price=2, gas_limit=50_000))
    assert get_account(st_, A.address) == Account(100_000 - 2 * GAS, 1)


# ---- the journal ------------------------------------------------------------------------

def test_rollback_restores_values_and_written_set():
    m = Mem()
    st_ = m.state()
    set_account(st_, A.address, Account(5, 1))  # before any rollback point
    assert get_account(st_, B.address) == Account(BALANCE, 0)  # read (cached), not written
    begin_transaction(st_)
    set_account(st_, A.address, Account(6, 1))
    set_account(st_, B.address, Account(1, 1))
    begin_transaction(st_)
    set_account(st_, A.address, Account(7, 1))
    set_account(st_, C.address, Account(3, 3))  # never read before
    set_account(st_, FRESH, Account(9, 0))
    commit_transaction(st_)  # inner commit: still undone by the outer rollback
    assert get_account(st_, A.address) == Account(7, 1)
    rollback_transaction(st_)
    assert get_account(st_, A.address) == Account(5, 1)
    assert get_account(st_, B.address) == Account(BALANCE, 0)
    assert get_account(st_, C.address) == Account(BALANCE, 0)  # reloaded from committed state
    assert get_account(st_, FRESH) == Account(0, 0)
    assert changes(st_) == {account_key(A.address): encode_account(Account(5, 1))}


def test_inner_rollback_keeps_outer_writes():
    m = Mem()
    st_ = m.state()
    begin_transaction(st_)
    set_account(st_, A.address, Account(6, 0))
    begin_transaction(st_)
    set_account(st_, A.address, Account(7, 0))
    set_account(st_, B.address, Account(8, 0))
    rollback_transaction(st_)
    assert get_account(st_, A.address) == Account(6, 0)
    assert get_account(st_, B.address) == Account(BALANCE, 0)
    begin_transaction(st_)
    set_account(st_, C.address, Account(1, 0))
    commit_transaction(st_)
    commit_transaction(st_)
    assert changes(st_) == {account_key(A.address): encode_account(Account(6, 0)),
                            account_key(C.address): encode_account(Account(1, 0))}
    # once every rollback point is closed, a later rollback point starts clean
    begin_transaction(st_)
    set_account(st_, A.address, Account(1, 1))
    rollback_transaction(st_)
    assert get_account(st_, A.address) == Account(6, 0)


def test_rollback_of_a_key_written_twice_in_one_transaction():
    st_ = Mem().state()
    begin_transaction(st_)
    for i in range(5):
        set_account(st_, FRESH, Account(i + 1, 0))
    rollback_transaction(st_)
    assert get_account(st_, FRESH) == Account(0, 0)
    assert changes(st_) == {}


def test_changes_refuses_an_open_transaction():
    st_ = Mem().state()
    begin_transaction(st_)
    with pytest.raises(AssertionError):
        changes(st_)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "begin", "commit", "rollback"]),
                          st.integers(0, 4), st.integers(0, 3)), max_size=40))
def test_journal_matches_a_model(ops):
    """Random begin/commit/rollback/set against a stack-of-dicts model."""
    addrs = [k.address for k in KEYS] + [FRESH]
    m = Mem()
    st_ = m.state()
    committed = {a: m.account(a) for a in addrs}
    stack = [dict(committed)]  # views; the top is current
    written_stack = [set()]
    for op, ai, v in ops:
        if op == "set":
            a = addrs[ai]
            acct = Account(v, 0)
            set_account(st_, a, acct)
            stack[-1][a] = acct
            written_stack[-1].add(a)
        elif op == "begin":
            begin_transaction(st_)
            stack.append(dict(stack[-1]))
            written_stack.append(set(written_stack[-1]))
        elif op == "commit" and len(stack) > 1:
            commit_transaction(st_)
            top, wtop = stack.pop(), written_stack.pop()
            stack[-1], written_stack[-1] = top, wtop
        elif op == "rollback" and len(stack) > 1:
            rollback_transaction(st_)
            stack.pop()
            written_stack.pop()
        for a in addrs:
            assert get_account(st_, a) == stack[-1][a]
    while len(stack) > 1:
        commit_transaction(st_)
        top, wtop = stack.pop(), written_stack.pop()
        stack[-1], written_stack[-1] = top, wtop
    ch = changes(st_)
    assert set(ch) == {account_key(a) for a in written_stack[-1]}
    for a in written_stack[-1]:
        acct = stack[-1][a]
        assert ch[account_key(a)] == (None if acct == Account() else encode_account(acct))


# ---- a block body ---------------------------------------------------------------------

@pytest.mark.parametrize("case", ["nonce", "funds", "chain", "gas_low", "gas_high", "block_gas"])
def test_apply_body_rejects_a_block_holding_an_invalid_tx(case):
    params = ChainParams(max_block_gas=50_000)
    m = Mem(genesis(params))
    good = transfer(A, CHAIN, 0, B.address, 1)
    bad = {
        "nonce": transfer(A, CHAIN, 5, B.address, 1),
        "funds": transfer(B, CHAIN, 0, A.address, BALANCE),
        "chain": transfer(B, "other-chain", 0, A.address, 1),
        "gas_low": transfer(B, CHAIN, 0, A.address, 1, gas_limit=GAS - 1),
        "gas_high": transfer(B, CHAIN, 0, A.address, 1, gas_limit=50_001),
        "block_gas": transfer(B, CHAIN, 0, A.address, 1, gas_limit=GAS + 8_001),  # 21000 + 29001 > 50000
    }[case]
    with pytest.raises(errors.InvalidBlock) as e:
        apply_body(m.state(), m.env(), [good, bad])
    assert "transaction 1" in str(e.value)
    assert not isinstance(e.value, errors.InvalidTransaction)
    # the valid prefix alone is fine
    assert len(apply_body(m.state(), m.env(), [good])) == 1


def test_build_body_skips_and_reports_invalid_candidates():
    m = Mem()
    cands = [
        transfer(A, CHAIN, 0, B.address, 10),
        transfer(A, CHAIN, 5, B.address, 10),              # nonce gap
        transfer(B, CHAIN, 0, C.address, BALANCE),         # cannot pay the fee too
        transfer(C, "other-chain", 0, A.address, 1),       # wrong chain
        transfer(C, CHAIN, 0, A.address, 1, gas_limit=1),  # gas limit too low
        transfer(A, CHAIN, 1, C.address, 20),
        transfer(A, CHAIN, 1, C.address, 21),              # nonce 1 is used by now
        transfer(D, CHAIN, 0, A.address, 30, gas_price=4),
    ]
    included, receipts, rejected = build_body(m.state(), m.env(), cands)
    assert included == [cands[0], cands[5], cands[7]]
    assert len(receipts) == 3 and all(r.status == STATUS_SUCCESS and r.gas_used == GAS for r in receipts)
    assert [(t, type(e)) for t, e in rejected] == [
        (cands[1], errors.NonceTooHigh), (cands[2], errors.InsufficientFunds),
        (cands[3], errors.WrongChainId), (cands[4], errors.GasLimitTooLow),
        (cands[6], errors.NonceTooLow)]
    # what it built is exactly what apply_body executes
    st2 = m.state()
    assert apply_body(st2, m.env(), included) == receipts


def test_build_body_stops_at_the_block_gas_limit():
    m = Mem(genesis(ChainParams(max_block_gas=3 * GAS)))
    cands = [transfer(A, CHAIN, i, B.address, 1) for i in range(5)]
    included, receipts, rejected = build_body(m.state(), m.env(), cands)
    assert included == cands[:3] and rejected == []  # the rest waits for the next block


def test_build_body_skips_a_candidate_over_the_block_gas_limit():
    m = Mem(genesis(ChainParams(max_block_gas=100_000)))
    huge = transfer(A, CHAIN, 0, B.address, 1, gas_limit=100_001)
    good = transfer(B, CHAIN, 0, A.address, 1)
    included, _, rejected = build_body(m.state(), m.env(), [huge, good])
    assert included == [good]
    assert [(t, type(e)) for t, e in rejected] == [(huge, errors.GasLimitTooHigh)]


def test_block_size_limit_too_small_for_one_tx_is_refused():
    with pytest.raises(ValueError, match="max_block_bytes"):
        ChainParams(max_tx_bytes=1024, max_block_bytes=60_000)


def test_build_body_with_smallest_block_size_limit_still_includes_txs():
    from ledger.params import BLOCK_OVERHEAD_BYTES
    m = Mem(genesis(ChainParams(max_tx_bytes=1024, max_block_bytes=1024 + BLOCK_OVERHEAD_BYTES)))
    tx = transfer(A, CHAIN, 0, B.address, 1)
    included, _, _ = build_body(m.state(), m.env(), [tx])
    assert included == [tx]


def test_finish_block_roots():
    m = Mem()
    txs = [transfer(A, CHAIN, 0, B.address, 1), transfer(B, CHAIN, 0, C.address, 2)]
    st_ = m.state()
    receipts = apply_body(st_, m.env(), txs)
    out = finish_block(st_, receipts, txs, m.node, m.tip.state_root)
    assert out.tx_root == merkle_root([t.hash for t in txs])
    assert out.receipts_root == merkle_root([encode_receipt(r) for r in receipts])
    assert out.gas_used == 2 * GAS
    kv = dict(m.kv)
    for k, v in out.changes.items():
        kv.pop(k, None) if v is None else kv.__setitem__(k, v)
    assert out.state_root == root_from_items(kv)
    # no change: the parent root
    st2 = m.state()
    empty = finish_block(st2, [], [], m.node, m.tip.state_root)
    assert empty.state_root == m.tip.state_root and empty.changes == {} and empty.gas_used == 0


# ---- a whole block ---------------------------------------------------------------------

def _block_with_txs(m: Mem):
    txs = [transfer(A, CHAIN, 0, B.address, 10, gas_price=2), transfer(B, CHAIN, 0, FRESH, 0),
           transfer(C, CHAIN, 0, D.address, 99), transfer(A, CHAIN, 1, A.address, 5)]
    block, out, rejected = m.build(txs)
    assert rejected == [] and len(block.txs) == 4
    return block, out


def test_same_block_twice_gives_identical_output():
    m = Mem()
    block, built = _block_with_txs(m)
    one = m.execute(block)
    two = m.execute(block)
    for o in (one, two):
        assert o.receipts == built.receipts
        assert o.changes == built.changes
        assert o.state_root == built.state_root == block.header.state_root
        assert o.trie_nodes == built.trie_nodes
        assert (o.tx_root, o.receipts_root, o.gas_used) == (built.tx_root, built.receipts_root, built.gas_used)
    # and the state of a second chain that never saw the first run
    assert Mem().execute(block) == one


def test_state_transition_accepts_a_chain_with_last_commits():
    m = Mem()
    for i in range(3):
        block, out = m.build([transfer(A, CHAIN, i, B.address, 1)])[:2]
        assert (block.last_commit is None) == (i == 0)
        assert m.execute(block) == out
        m.apply(block, out)
    assert m.account(A.address).nonce == 3


BAD_HEADERS = {
    "state_root": lambda h, p: dataclasses.replace(h, state_root=bytes(32)),
    "state_root_parent": lambda h, p: dataclasses.replace(h, state_root=p.state_root),
    "tx_root": lambda h, p: dataclasses.replace(h, tx_root=merkle_root([])),
    "receipts_root": lambda h, p: dataclasses.replace(h, receipts_root=h.tx_root),
    "parent_hash": lambda h, p: dataclasses.replace(h, parent_hash=p.parent_hash),
    "height_same": lambda h, p: dataclasses.replace(h, height=p.height),
    "height_skip": lambda h, p: dataclasses.replace(h, height=p.height + 2),
    "time_equal": lambda h, p: dataclasses.replace(h, time_ms=p.time_ms),
    "time_earlier": lambda h, p: dataclasses.replace(h, time_ms=p.time_ms - 1),
    "chain_id": lambda h, p: dataclasses.replace(h, chain_id="other-chain"),
    "last_commit_hash": lambda h, p: dataclasses.replace(h, last_commit_hash=b"\x01" * 32),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
@pytest.mark.parametrize("with_commit", [False, True])
def test_state_transition_rejects_bad_headers(case, with_commit):
    m = Mem()
    if with_commit:  # move to height 1 so the block carries a last commit
        b, o = m.build([transfer(D, CHAIN, 0, C.address, 1)])[:2]
        m.apply(b, o)
    block, _ = _block_with_txs(m)
    assert m.execute(block).state_root == block.header.state_root
    bad = Block(BAD_HEADERS[case](block.header, m.tip), block.txs, block.last_commit)
    with pytest.raises(errors.InvalidBlock):
        m.execute(bad)


def test_state_transition_rejects_a_mismatched_last_commit():
    m = Mem()
    b1, o1 = m.build([])[:2]
    m.apply(b1, o1)
    block, _ = _block_with_txs(m)
    good_commit = block.last_commit
    assert good_commit is not None
    # block carries no commit but the header names one, and vice versa
    for lc in (None, make_commit([VALIDATOR], CHAIN, 1, 1, b1.hash)):
        with pytest.raises(errors.InvalidBlock):
            m.execute(Block(block.header, block.txs, lc))


def test_state_transition_rejects_changed_tx_list():
    m = Mem()
    block, _ = _block_with_txs(m)
    for txs in (block.txs[:-1], block.txs[::-1], block.txs + (transfer(D, CHAIN, 0, A.address, 1),)):
        with pytest.raises(errors.InvalidBlock):
            m.execute(Block(block.header, txs, block.last_commit))
    # an invalid tx inside the block is InvalidBlock, not InvalidTransaction
    bad = block.txs[:1] + (transfer(A, CHAIN, 9, B.address, 1),)
    with pytest.raises(errors.InvalidBlock):
        m.execute(Block(block.header, bad, block.last_commit))


def test_state_transition_rejects_a_different_proposer():
    """The proposer is part of execution: fees go to it, so the state root changes."""
    m = Mem()
    block, _ = _block_with_txs(m)
    h = dataclasses.replace(block.header, proposer=D.address)
    with pytest.raises(errors.InvalidBlock, match="state root"):
        m.execute(Block(h, block.txs, block.last_commit))


# ---- conservation ---------------------------------------------------------------------

tx_strategy = st.tuples(
    st.integers(0, 3),                     # sender
    st.integers(0, 5),                     # recipient: 4 = fresh address, 5 = proposer
    st.integers(0, 3 * BALANCE // 2),      # amount, sometimes unaffordable
    st.integers(0, 3),                     # gas price
    st.integers(21_000, 60_000),           # gas limit
    st.integers(-1, 1),                    # nonce offset: mostly right, sometimes wrong
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(tx_strategy, max_size=6), min_size=1, max_size=4))
def test_total_supply_is_conserved(blocks):
    m = Mem()
    supply = m.total_supply()
    assert supply == len(KEYS) * BALANCE
    recipients = [k.address for k in KEYS] + [FRESH, PROPOSER]
    for spec in blocks:
        nonces = {k.address: m.account(k.address).nonce for k in KEYS}
        cands = []
        for s, r, amount, price, limit, off in spec:
            key = KEYS[s]
            n = max(0, nonces[key.address] + off)
            if off == 0:
                nonces[key.address] += 1
            cands.append(transfer(key, CHAIN, n, recipients[r], amount, gas_price=price, gas_limit=limit))
        block, out, rejected = m.build(cands)
        assert len(block.txs) + len(rejected) == len(cands)
        assert m.execute(block) == out
        fees = sum(r.gas_used * t.gas_price for t, r in zip(block.txs, out.receipts))
        gifts = sum(t.payload.amount for t in block.txs if t.payload.to == PROPOSER)
        before = {a: m.account(a) for a in recipients}
        m.apply(block, out)
        assert m.account(PROPOSER).balance == before[PROPOSER].balance + fees + gifts
        assert m.total_supply() == supply
        assert root_from_items(m.kv) == m.tip.state_root
        for k in KEYS:  # each included tx bumped its sender's nonce by exactly one
            sent = sum(1 for t in block.txs if t.sender_address == k.address)
            assert m.account(k.address).nonce == before[k.address].nonce + sent
