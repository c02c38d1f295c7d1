"""LMDB store and Chain (ledger/store.py, ledger/chain.py) on real data dirs."""
from __future__ import annotations

import dataclasses
import json
import os
import random

import pytest

from ledger.genesis import Genesis
from ledger.validators import Validator, ValidatorSet
from ledger.votes import make_commit, verify_commit
from ledger import errors
from ledger.block import STATUS_SUCCESS, Block, decode_block, encode_block
from ledger.chain import Chain
from ledger.encoding import decode, encode
from ledger.hashing import EMPTY_HASH
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.state import ACCOUNT_PREFIX, Account, account_key
from ledger.store import Store
from ledger.trie import get as trie_get, root_from_items
from ledger.tx import INTRINSIC_GAS, TxKind, decode_transaction, transfer

CHAIN = "store-test"
GAS = INTRINSIC_GAS[TxKind.TRANSFER]
BALANCE = 10**15
KEYS = [PrivateKey.from_label(f"store account {i}") for i in range(5)]
VALIDATOR = PrivateKey.from_label("store validator")
VSET = ValidatorSet((Validator(VALIDATOR.public_key, 1),))
T0 = 1_700_000_000_000


def make_genesis() -> Genesis:
    return Genesis(CHAIN, T0, ChainParams(), VSET, tuple(sorted((k.address, BALANCE) for k in KEYS)))


def open_chain(path, genesis: Genesis | None = None) -> Chain:
    """Open a Store at path (writing genesis if it is new) and a Chain on it."""
    g = genesis or make_genesis()
    store = Store(path, map_size=16 << 20)
    if store.latest_height() < 0:
        changes, root, nodes = g.initial_state()
        doc = json.dumps({"genesis": g.to_json(), "devnet": False}, sort_keys=True).encode()
        store.init_genesis(doc, g.header(root), changes, nodes)
    return Chain(store, g.chain_id, g.params)


class Driver:
    """Proposes and commits blocks the way the solo engine does."""

    def __init__(self, chain: Chain):
        self.chain = chain
        self.last_commit = chain.store.commit(chain.tip.height) if chain.tip.height else None
        self.nonces = {k.address: chain.account(k.address).nonce for k in KEYS}

    def next_tx(self, key, to, amount, **kw):
        n = self.nonces[key.address]
        self.nonces[key.address] += 1
        return transfer(key, CHAIN, n, to, amount, **kw)

    def block(self, txs, time_ms=None):
        c = self.chain
        prop = c.build_block(txs, VALIDATOR.address, time_ms or c.tip.time_ms + 1000, self.last_commit)
        assert prop.rejected == []
        commit = make_commit([VALIDATOR], CHAIN, prop.block.height, 0, prop.block.hash)
        c.commit_block(prop.block, commit, prop.output)
        self.last_commit = commit
        return prop, commit


@pytest.fixture
def chain(tmp_path):
    c = open_chain(tmp_path / "node")
    yield c
    c.store.close()


def test_genesis_init(chain, tmp_path):
    g = make_genesis()
    store = chain.store
    assert store.latest_height() == 0
    _, root, _ = g.initial_state()
    assert chain.tip == g.header(root) == store.header(0)
    assert chain.tip.parent_hash == g.hash
    assert store.height_of(chain.tip.hash) == 0
    assert store.commit(0) is None
    b0 = store.block(0)
    assert b0 == Block(chain.tip, (), None)
    assert json.loads(store.genesis_doc())["genesis"] == g.to_json()
    for k in KEYS:
        assert chain.account(k.address) == Account(BALANCE, 0)
    assert chain.account(VALIDATOR.address) == Account(0, 0)
    assert root_from_items(dict(store.state_items())) == chain.tip.state_root


def test_chain_refuses_an_empty_store(tmp_path):
    store = Store(tmp_path / "empty", map_size=1 << 20)
    try:
        assert store.latest_height() == -1
        with pytest.raises(errors.LedgerError):
            Chain(store, CHAIN, ChainParams())
    finally:
        store.close()


def test_commit_then_reopen_reads_everything_back(tmp_path):
    path = tmp_path / "node"
    chain = open_chain(path)
    d = Driver(chain)
    a, b, c = KEYS[:3]
    built = []
    for i in range(4):
        txs = [d.next_tx(a, b.address, 1000 + i, gas_price=2), d.next_tx(b, c.address, 7),
               d.next_tx(c, a.address, 0, gas_limit=30_000)] if i != 2 else []  # block 3 is empty
        prop, commit = d.block(txs)
        built.append((prop, commit))
    tip = chain.tip
    balances = {k.address: chain.account(k.address) for k in KEYS + [VALIDATOR]}
    chain.store.close()

    chain2 = open_chain(path)
    try:
        store = chain2.store
        assert store.latest_height() == 4
        assert chain2.tip == tip == store.header(4)
        for prop, commit in built:
            blk = prop.block
            h = blk.height
            got = store.block(h)
            assert got == blk
            assert [t.raw for t in got.txs] == [t.raw for t in blk.txs]
            assert [t.hash for t in got.txs] == [t.hash for t in blk.txs]
            assert encode_block(got) == encode_block(blk)
            assert store.header(h) == blk.header and store.height_of(blk.hash) == h
            assert store.commit(h) == commit
            verify_commit(VSET, CHAIN, store.commit(h), h, blk.hash)
            for i, (tx, r) in enumerate(zip(blk.txs, prop.output.receipts)):
                stx, sh, si, sr = store.tx(tx.hash)
                assert (stx, stx.raw, sh, si, sr) == (tx, tx.raw, h, i, r)
                assert sr.status == STATUS_SUCCESS
        # each block carries the commit of its parent
        for (p1, c1), (p2, _) in zip(built, built[1:]):
            assert p2.block.last_commit == c1
            assert p2.block.header.last_commit_hash == c1.hash
        assert built[0][0].block.last_commit is None
        assert built[0][0].block.header.last_commit_hash == EMPTY_HASH
        for addr, acct in balances.items():
            assert chain2.account(addr) == acct
        assert store.block(5) is None and store.header(5) is None and store.commit(5) is None
        assert store.block_summary(5) is None
        for h in range(1, 5):  # what RPC `block` answers without decoding a transaction
            full = store.block(h)
            assert store.block_summary(h) == (full.header, full.last_commit, [t.hash for t in full.txs])
        assert store.tx(os.urandom(32)) is None and store.height_of(os.urandom(32)) is None
        # a driver on the reopened chain continues where the old one stopped
        d2 = Driver(chain2)
        assert d2.last_commit == built[-1][1]
        prop, _ = d2.block([d2.next_tx(a, b.address, 1)])
        assert prop.block.height == 5 and prop.block.last_commit == built[-1][1]
    finally:
        chain2.store.close()


def test_state_root_from_scratch_after_many_blocks(chain):
    rnd = random.Random(1234)
    d = Driver(chain)
    fresh = [PrivateKey.from_label(f"store fresh {i}").address for i in range(6)]
    model = {k.address: Account(BALANCE, 0) for k in KEYS}
    model[VALIDATOR.address] = Account(0, 0)
    for height in range(1, 26):
        txs = []
        for _ in range(rnd.randrange(0, 8)):
            k = rnd.choice(KEYS)
            to = rnd.choice([x.address for x in KEYS] + fresh + [VALIDATOR.address])
            amount = rnd.choice([0, 1, rnd.randrange(1, 10**9)])
            price = rnd.randrange(0, 4)
            txs.append(d.next_tx(k, to, amount, gas_price=price))
            s = model[k.address]
            model[k.address] = Account(s.balance - amount - GAS * price, s.nonce + 1)
            r = model.get(to, Account())
            model[to] = Account(r.balance + amount, r.nonce)
            v = model[VALIDATOR.address]
            model[VALIDATOR.address] = Account(v.balance + GAS * price, 0)
        v = model[VALIDATOR.address]  # the only validator: the whole block reward
        model[VALIDATOR.address] = Account(v.balance + chain.params.block_reward, 0)
        d.block(txs)
        items = dict(chain.store.state_items())
        assert root_from_items(items) == chain.tip.state_root, f"height {height}"
    assert chain.store.latest_height() == 25
    expected = {addr: a for addr, a in model.items() if a != Account()}
    stored = {k[1:]: chain.account(k[1:]) for k, _ in chain.store.state_items() if k.startswith(ACCOUNT_PREFIX)}
    assert stored == expected
    for addr, acct in model.items():
        assert chain.account(addr) == acct
    # never-funded addresses that only received 0 are absent from state and trie
    items = dict(chain.store.state_items())
    with chain.store.read() as r:
        for addr in fresh:
            if model.get(addr, Account()) == Account():
                assert account_key(addr) not in items
                assert trie_get(r.node, chain.tip.state_root, account_key(addr)) is None
            else:
                assert trie_get(r.node, chain.tip.state_root, account_key(addr)) == items[account_key(addr)]
    assert sum(a.balance for a in model.values()) == len(KEYS) * BALANCE + 25 * chain.params.block_reward


def test_proposer_and_verifier_agree(tmp_path):
    proposer = open_chain(tmp_path / "proposer")
    verifier = open_chain(tmp_path / "verifier")
    try:
        assert proposer.tip == verifier.tip
        d = Driver(proposer)
        last_commit = None
        for i in range(5):
            txs = [d.next_tx(KEYS[j], KEYS[(j + 1) % 5].address, 100 * i + j, gas_price=1 + j)
                   for j in range(5) if (i + j) % 3]
            prop = proposer.build_block(txs, VALIDATOR.address, T0 + 1000 * (i + 1), last_commit)
            assert len(prop.block.txs) == len(txs)
            params = proposer.params
            wire = encode_block(prop.block)
            received = decode_block(wire, params.max_block_bytes, params.max_tx_bytes)
            assert received == prop.block and received.hash == prop.block.hash
            out = verifier.execute_block(received)
            assert out == prop.output
            assert out.receipts == prop.output.receipts and out.changes == prop.output.changes
            assert out.trie_nodes == prop.output.trie_nodes and out.state_root == prop.block.header.state_root
            commit = make_commit([VALIDATOR], CHAIN, prop.block.height, 0, prop.block.hash)
            proposer.commit_block(prop.block, commit, prop.output)
            verifier.commit_block(received, commit, out)
            last_commit = commit
            assert proposer.tip == verifier.tip
        assert list(proposer.store.state_items()) == list(verifier.store.state_items())
        for k in KEYS:
            assert proposer.account(k.address) == verifier.account(k.address)
    finally:
        proposer.store.close()
        verifier.store.close()


def test_verifier_rejects_a_tampered_block(tmp_path):
    proposer = open_chain(tmp_path / "p")
    verifier = open_chain(tmp_path / "v")
    try:
        d = Driver(proposer)
        prop = proposer.build_block([d.next_tx(KEYS[0], KEYS[1].address, 5)], VALIDATOR.address, T0 + 1, None)
        good = prop.block
        verifier.execute_block(good)
        fake = dataclasses.replace(good.header, state_root=os.urandom(32))
        with pytest.raises(errors.InvalidBlock):
            verifier.execute_block(Block(fake, good.txs, None))
        # a different amount signed by the same sender changes the tx root
        other = transfer(KEYS[0], CHAIN, 0, KEYS[1].address, 6)
        with pytest.raises(errors.InvalidBlock):
            verifier.execute_block(Block(good.header, (other,), None))
        assert verifier.store.latest_height() == 0
    finally:
        proposer.store.close()
        verifier.store.close()


def test_verifier_rejects_a_forged_signature(tmp_path):
    proposer = open_chain(tmp_path / "p")
    verifier = open_chain(tmp_path / "v")
    try:
        thief = PrivateKey.from_label("thief")
        honest = transfer(KEYS[0], CHAIN, 0, thief.address, BALANCE // 2)
        f = decode(honest.raw)
        f[8] = bytes(64)  # not a signature of anything
        forged = decode_transaction(encode(f), proposer.params.max_tx_bytes)
        prop = proposer.build_block([forged], VALIDATOR.address, T0 + 1, None)
        with pytest.raises(errors.InvalidBlock):
            verifier.execute_block(prop.block)
    finally:
        proposer.store.close()
        verifier.store.close()


def test_block_not_extending_the_tip_is_refused(chain):
    d = Driver(chain)
    tx = d.next_tx(KEYS[0], KEYS[1].address, 1)
    p1 = chain.build_block([tx], VALIDATOR.address, T0 + 1000, None)
    p1b = chain.build_block([], VALIDATOR.address, T0 + 2000, None)  # a rival for height 1
    c1 = make_commit([VALIDATOR], CHAIN, 1, 0, p1.block.hash)
    chain.commit_block(p1.block, c1, p1.output)
    tip = chain.tip
    with pytest.raises(errors.InvalidBlock):
        chain.commit_block(p1b.block, make_commit([VALIDATOR], CHAIN, 1, 0, p1b.block.hash), p1b.output)
    with pytest.raises(errors.InvalidBlock):
        chain.execute_block(p1b.block)
    # committing the same block twice is refused too
    with pytest.raises(errors.InvalidBlock):
        chain.commit_block(p1.block, c1, p1.output)
    assert chain.tip == tip and chain.store.latest_height() == 1
    assert chain.store.block(1) == p1.block
    assert chain.account(KEYS[0].address).nonce == 1
    # the chain still grows normally afterwards
    p2 = chain.build_block([d.next_tx(KEYS[0], KEYS[1].address, 1)], VALIDATOR.address, T0 + 3000, c1)
    chain.execute_block(p2.block)
    chain.commit_block(p2.block, make_commit([VALIDATOR], CHAIN, 2, 0, p2.block.hash), p2.output)
    assert chain.store.latest_height() == 2


def test_build_block_time_is_strictly_increasing(chain):
    p = chain.build_block([], VALIDATOR.address, 5, None)  # a clock far behind genesis
    assert p.block.header.time_ms == chain.tip.time_ms + 1
    chain.execute_block(p.block)


def test_build_block_reports_rejected_and_keeps_the_rest(chain):
    a, b = KEYS[:2]
    txs = [transfer(a, CHAIN, 0, b.address, 1), transfer(a, CHAIN, 3, b.address, 1),
           transfer(b, "elsewhere", 0, a.address, 1), transfer(b, CHAIN, 0, a.address, 2)]
    prop = chain.build_block(txs, VALIDATOR.address, T0 + 1, None)
    assert prop.block.txs == (txs[0], txs[3])
    assert [(t, type(e)) for t, e in prop.rejected] == [(txs[1], errors.NonceTooHigh),
                                                         (txs[2], errors.WrongChainId)]
    # building does not write anything
    assert chain.store.latest_height() == 0 and chain.account(a.address) == Account(BALANCE, 0)


def test_store_grows_its_map_when_full(tmp_path):
    g = make_genesis()
    store = Store(tmp_path / "small", map_size=256 << 10)
    try:
        changes, root, nodes = g.initial_state()
        store.init_genesis(b"{}", g.header(root), changes, nodes)
        chain = Chain(store, CHAIN, g.params)
        d = Driver(chain)
        for _ in range(3):
            d.block([d.next_tx(k, KEYS[0].address, 1) for k in KEYS for _ in range(60)])
        assert store.latest_height() == 3
        assert store.env.info()["map_size"] > 256 << 10
        assert root_from_items(dict(store.state_items())) == chain.tip.state_root
        assert len(store.block(3).txs) == 300
    finally:
        store.close()


@pytest.mark.parametrize("field", ["validators_hash", "next_validators_hash"])
def test_execute_block_checks_the_validators_hash(chain, field):
    prop = chain.build_block([], VALIDATOR.address, T0 + 1, None)
    h = dataclasses.replace(prop.block.header, **{field: os.urandom(32)})
    with pytest.raises(errors.InvalidBlock):
        chain.execute_block(Block(h, prop.block.txs, None))


def test_decode_block_rejects_a_boolean_version(chain):
    prop = chain.build_block([], VALIDATOR.address, T0 + 1, None)
    params = chain.params
    w = decode(encode_block(prop.block))
    w[1][0] = True  # header version
    with pytest.raises(errors.InvalidBlock):
        decode_block(encode(w), params.max_block_bytes, params.max_tx_bytes)
