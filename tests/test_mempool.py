"""The mempool (ledger/mempool.py): admission, ordering, bounds, and update after commits."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import errors
from ledger.keys import PrivateKey
from ledger.mempool import AlreadyKnown, FeeTooLow, Mempool, MempoolError, MempoolFull
from ledger.state import Account
from ledger.tx import INTRINSIC_GAS, TxKind, transfer

CHAIN = "mempool-test"
MAX_GAS = 1_000_000
GAS = INTRINSIC_GAS[TxKind.TRANSFER]
A, B, C, D = (PrivateKey.from_label(f"mempool {n}") for n in "abcd")
SINK = PrivateKey.from_label("mempool sink").address


class World:
    """Committed accounts the mempool reads, edited by the tests as if blocks were committed."""

    def __init__(self, **balances):
        self.accounts: dict[bytes, Account] = {}
        for key, bal in zip((A, B, C, D), (balances.get(n, 10**12) for n in "abcd")):
            self.accounts[key.address] = Account(bal, 0)

    def __call__(self, address: bytes) -> Account:
        return self.accounts.get(address, Account())

    def execute(self, tx, gas_used=GAS):
        """Apply tx's effect on its sender the way the STF does (fee = gas_used * price)."""
        s = self.accounts[tx.sender_address]
        self.accounts[tx.sender_address] = Account(s.balance - tx.value - gas_used * tx.gas_price, s.nonce + 1)
        r = self.accounts.get(tx.payload.to, Account())
        self.accounts[tx.payload.to] = Account(r.balance + tx.value, r.nonce)


def pool(world=None, **kw) -> tuple[Mempool, World]:
    w = world or World()
    return Mempool(CHAIN, MAX_GAS, w, **kw), w


def tx(key, nonce, amount=1, price=1, gas=None, to=SINK, chain=CHAIN):
    return transfer(key, chain, nonce, to, amount, gas_price=price, gas_limit=gas)


def cost(t) -> int:
    return t.max_fee + t.value


def pending(mp: Mempool, key) -> list[int]:
    return [t.nonce for t in mp._pending.get(key.address, [])]


def check_invariants(mp: Mempool, world: World) -> None:
    """Every sender's queue is contiguous from its account nonce and fits its balance."""
    total = 0
    for sender, q in mp._pending.items():
        assert q, "empty queues are removed"
        acct = world(sender)
        assert [t.nonce for t in q] == list(range(acct.nonce, acct.nonce + len(q)))
        assert mp._spent[sender] == sum(cost(t) for t in q) <= acct.balance
        assert all(t.hash in mp for t in q)
        assert mp.pending_nonce(sender) == acct.nonce + len(q)
        total += len(q)
    assert total == len(mp) == len(mp._arrival)
    assert mp.byte_size() == sum(len(t.raw) for q in mp._pending.values() for t in q)  # the running total


# ---- admission ------------------------------------------------------------------------

def test_admits_and_reports_reasons():
    mp, w = pool(min_gas_price=2)
    t0 = tx(A, 0, price=2)
    mp.add(t0)
    assert len(mp) == 1 and t0.hash in mp and mp.get(t0.hash) is t0
    cases = [
        (t0, AlreadyKnown, "already_known"),
        (tx(A, 1, price=2, chain="other"), errors.WrongChainId, "wrong_chain_id"),
        (tx(A, 1, price=2, gas=GAS - 1), errors.GasLimitTooLow, "gas_limit_too_low"),
        (tx(A, 1, price=2, gas=MAX_GAS + 1), errors.GasLimitTooHigh, "gas_limit_too_high"),
        (tx(A, 1, price=1), FeeTooLow, "fee_too_low"),
        (tx(A, 0, price=2, amount=2), errors.NonceTooLow, "nonce_too_low"),
        (tx(A, 2, price=2), errors.NonceTooHigh, "nonce_too_high"),
        (tx(A, 1, price=2, amount=10**12), errors.InsufficientFunds, "insufficient_funds"),
        (tx(PrivateKey.from_label("pauper"), 0, price=2), errors.InsufficientFunds, "insufficient_funds"),
    ]
    for t, err, reason in cases:
        with pytest.raises(err) as e:
            mp.add(t)
        assert e.value.reason == reason
        assert isinstance(e.value, errors.InvalidTransaction)
    assert len(mp) == 1 and pending(mp, A) == [0]
    check_invariants(mp, w)


def test_mempool_errors_are_invalid_transactions():
    for cls in (MempoolFull, AlreadyKnown, FeeTooLow):
        assert issubclass(cls, MempoolError) and issubclass(cls, errors.InvalidTransaction)


def test_nonces_must_be_contiguous_per_sender():
    mp, w = pool()
    w.accounts[A.address] = Account(10**12, 5)
    with pytest.raises(errors.NonceTooLow):
        mp.add(tx(A, 4))
    with pytest.raises(errors.NonceTooHigh):
        mp.add(tx(A, 6))
    for n in range(5, 9):
        assert mp.pending_nonce(A.address) == n
        mp.add(tx(A, n))
    with pytest.raises(errors.NonceTooHigh):
        mp.add(tx(A, 10))
    with pytest.raises(errors.NonceTooLow):
        mp.add(tx(A, 7, amount=99))  # a replacement of a pending nonce is refused
    assert pending(mp, A) == [5, 6, 7, 8]
    assert mp.pending_nonce(B.address) == 0
    mp.add(tx(B, 0))  # senders are independent
    check_invariants(mp, w)


def test_balance_counts_every_pending_tx():
    t = tx(A, 0, amount=500, price=3, gas=30_000)
    per_tx = cost(t)
    assert per_tx == 500 + 90_000
    mp, w = pool(World(a=3 * per_tx + per_tx - 1))
    for n in range(3):
        mp.add(tx(A, n, amount=500, price=3, gas=30_000))
    with pytest.raises(errors.InsufficientFunds):
        mp.add(tx(A, 3, amount=500, price=3, gas=30_000))  # one base unit short
    mp.add(tx(A, 3, amount=499, price=3, gas=30_000))  # exactly fits
    assert mp._spent[A.address] == w(A.address).balance
    with pytest.raises(errors.InsufficientFunds):
        mp.add(tx(A, 4, amount=0, price=1))
    check_invariants(mp, w)


def test_zero_price_tx_with_min_price_zero():
    mp, w = pool(World(a=0), min_gas_price=0)
    mp.add(tx(A, 0, amount=0, price=0))  # costs nothing, so an empty account may send it
    assert len(mp) == 1
    with pytest.raises(errors.InsufficientFunds):
        mp.add(tx(A, 1, amount=1, price=0))


def test_max_size():
    mp, w = pool(max_txs=3)
    mp.add(tx(A, 0))
    mp.add(tx(B, 0))
    mp.add(tx(A, 1))
    with pytest.raises(MempoolFull) as e:
        mp.add(tx(C, 0))
    assert e.value.reason == "mempool_full"
    assert len(mp) == 3
    mp.update([tx(A, 0)], [])  # nothing committed in World: A0 is simply forgotten...
    # ... but A's account nonce is still 0, so A1 now has a gap and is evicted too
    assert len(mp) == 1
    mp.add(tx(C, 0))
    assert len(mp) == 2


def test_per_sender_limit():
    mp, w = pool(max_per_sender=3)
    for n in range(3):
        mp.add(tx(A, n))
    with pytest.raises(MempoolFull):
        mp.add(tx(A, 3))
    mp.add(tx(B, 0))  # other senders are unaffected
    assert pending(mp, A) == [0, 1, 2]


# ---- reaping --------------------------------------------------------------------------

def test_reap_order():
    mp, w = pool()
    a0, a1 = tx(A, 0, price=1), tx(A, 1, price=10)
    b0, b1 = tx(B, 0, price=5), tx(B, 1, price=5)
    c0 = tx(C, 0, price=5)
    d0, d1, d2 = tx(D, 0, price=7), tx(D, 1, price=2), tx(D, 2, price=9)
    for t in (a0, a1, b0, c0, b1, d0, d1, d2):
        mp.add(t)
    order = mp.reap(100)
    # D0 (7) first; then B0 and C0 tie at 5 (B arrived first), B1 (5) arrived after C0;
    # D1 (2) waits behind them, then D2 (9) right after it; A0 (1) last, then A1 (10).
    assert order == [d0, b0, c0, b1, d1, d2, a0, a1]
    assert mp.reap(3) == order[:3]
    assert mp.reap(0) == []
    assert len(mp) == 8  # reaping removes nothing
    # every sender's txs come out in nonce order
    for key in (A, B, C, D):
        ns = [t.nonce for t in order if t.sender_address == key.address]
        assert ns == sorted(ns)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=25))
def test_reap_is_nonce_ordered_and_greedy_by_price(spec):
    mp, w = pool(min_gas_price=0)
    keys = (A, B, C, D)
    nonces = [0, 0, 0, 0]
    for s, price in spec:
        mp.add(tx(keys[s], nonces[s], price=price))
        nonces[s] += 1
    out = mp.reap(1000)
    assert len(out) == len(spec) == len(set(t.hash for t in out))
    heads = {k.address: 0 for k in keys}
    for t in out:
        assert t.nonce == heads[t.sender_address]  # nonce order per sender
        # no other sender's next tx was a strictly better choice
        for k in keys:
            q = mp._pending.get(k.address, [])
            i = heads[k.address]
            if k.address != t.sender_address and i < len(q):
                assert q[i].gas_price <= t.gas_price
                if q[i].gas_price == t.gas_price:
                    assert mp._arrival[q[i].hash] > mp._arrival[t.hash]
        heads[t.sender_address] += 1


# ---- update after a commit -----------------------------------------------------------

def test_update_drops_included():
    mp, w = pool()
    a = [tx(A, n, amount=10) for n in range(4)]
    b = [tx(B, n) for n in range(2)]
    for t in a + b:
        mp.add(t)
    for t in a[:2] + b[:1]:
        w.execute(t)
    assert mp.update(a[:2] + b[:1], []) == []
    assert pending(mp, A) == [2, 3] and pending(mp, B) == [1]
    assert a[0].hash not in mp and a[2].hash in mp
    check_invariants(mp, w)
    mp.add(tx(A, 4))  # the sender continues from its pending tail
    for t in b[1:]:
        w.execute(t)
    assert mp.update(b[1:], []) == []
    assert B.address not in mp._pending and mp.pending_nonce(B.address) == 2
    check_invariants(mp, w)


def test_update_evicts_rejected_and_later_nonces():
    mp, w = pool()
    a = [tx(A, n) for n in range(4)]
    b = [tx(B, n) for n in range(3)]
    for t in a + b:
        mp.add(t)
    w.execute(a[0])
    evicted = mp.update([a[0]], [a[1], b[0]])
    assert set(t.hash for t in evicted) == {t.hash for t in a[1:] + b}
    assert len(evicted) == 6
    assert len(mp) == 0 and mp._pending == {} and mp._spent == {}
    check_invariants(mp, w)
    # the senders may start again from their account nonces
    mp.add(tx(A, 1))
    mp.add(tx(B, 0))
    check_invariants(mp, w)


def test_update_with_unknown_rejected_is_harmless():
    mp, w = pool()
    mp.add(tx(A, 0))
    assert mp.update([], [tx(A, 0, amount=5), tx(C, 3)]) == []
    assert pending(mp, A) == [0]


def test_update_evicts_what_the_balance_no_longer_covers():
    # B's own three pending txs each cost c; a block from another node includes a
    # different nonce-0 tx of B (never seen here) that spends much more.
    b_pending = [tx(B, n, amount=100) for n in range(3)]
    c = cost(b_pending[0])
    mp, w = pool(World(b=3 * c))
    for t in b_pending:
        mp.add(t)
    elsewhere = tx(B, 0, amount=c)  # cost 21_000 + c
    w.execute(elsewhere)
    assert w(B.address) == Account(3 * c - c - GAS, 1)
    evicted = mp.update([elsewhere], [])
    # b0: nonce used by the other tx; b1 fits (c <= 2c - 21000); b2 does not
    assert [t.hash for t in evicted] == [b_pending[0].hash, b_pending[2].hash]
    assert pending(mp, B) == [1]
    check_invariants(mp, w)


def test_update_evicts_a_queue_left_with_a_gap():
    mp, w = pool()
    a = [tx(A, n) for n in range(3)]
    for t in a:
        mp.add(t)
    # the account jumps to nonce 2 through txs this pool never saw
    w.accounts[A.address] = Account(10**12, 2)
    evicted = mp.update([tx(A, 0, amount=7), tx(A, 1, amount=7)], [])
    assert [t.hash for t in evicted] == [a[0].hash, a[1].hash]
    assert pending(mp, A) == [2]
    check_invariants(mp, w)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40_000), st.integers(0, 3)),
                min_size=1, max_size=30),
       st.lists(st.integers(0, 8), min_size=1, max_size=6),
       st.sets(st.integers(0, 40), max_size=6))
def test_random_add_reap_commit_cycles_keep_invariants(adds, block_sizes, refuse):
    """Add, reap, 'execute' what fits, update: the pool stays consistent and drains."""
    keys = (A, B, C, D)
    w = World(a=200_000, b=120_000, c=80_000, d=10**9)
    mp = Mempool(CHAIN, MAX_GAS, w, min_gas_price=0)
    it = iter(adds)
    seen = 0  # reaped so far: the ones numbered in `refuse` are rejected by the 'proposer'
    for size in block_sizes:
        for s, amount, price in [x for _, x in zip(range(6), it)]:
            key = keys[s]
            try:
                mp.add(tx(key, mp.pending_nonce(key.address), amount=amount, price=price))
            except errors.InsufficientFunds:
                pass
        check_invariants(mp, w)
        included, rejected = [], []
        for t in mp.reap(size):
            acct = w(t.sender_address)
            seen += 1
            if seen not in refuse and t.nonce == acct.nonce and acct.balance >= cost(t):
                w.execute(t)
                included.append(t)
            else:  # as build_body would: cannot pay, or an earlier tx of its sender was rejected
                rejected.append(t)
        evicted = mp.update(included, rejected)
        for t in included + evicted:
            assert t.hash not in mp
        assert {t.hash for t in rejected} <= {t.hash for t in evicted}
        check_invariants(mp, w)
    while len(mp):
        included = []
        for t in mp.reap(10):
            w.execute(t)
            included.append(t)
        mp.update(included, [])
        check_invariants(mp, w)
        mp.recheck()
        check_invariants(mp, w)
