"""Validator sets, commits, genesis parsing and the solo engine (consensus/)."""
from __future__ import annotations

import copy
import json
import os

import pytest

from ledger.genesis import (COIN, DEVNET_BALANCE, DEVNET_CHAIN_ID, Genesis, devnet_genesis,
                            devnet_keys, devnet_validator_key, load_genesis)
from consensus.solo import SoloEngine, SoloEngineStopped
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE, make_commit, sign_vote, verify_commit, vote_payload
from ledger import errors
from ledger.commit import Commit, CommitSig, commit_from_wire
from ledger.chain import Chain
from ledger.keys import TX_DOMAIN, PrivateKey, address_hex
from ledger.mempool import Mempool
from ledger.params import ChainParams
from ledger.state import Account
from ledger.store import Store
from ledger.trie import root_from_items
from ledger.tx import decode_transaction, transfer, verify_signature

CHAIN = "consensus-test"
VKEYS = [PrivateKey.from_label(f"validator {i}") for i in range(5)]
BLOCK = os.urandom(32)


def vset(keys, stakes=None) -> ValidatorSet:
    stakes = stakes or [1] * len(keys)
    return ValidatorSet(tuple(Validator(k.public_key, s) for k, s in zip(keys, stakes)))


# ---- validator sets -------------------------------------------------------------------

def test_validator_set_order_and_hash():
    keys = VKEYS[:4]
    fwd, rev = vset(keys, [1, 2, 3, 4]), vset(keys[::-1], [4, 3, 2, 1])
    assert [v.address for v in fwd.validators] == sorted(k.address for k in keys)
    assert fwd.validators == rev.validators and fwd.hash == rev.hash
    assert fwd.total_stake == 10
    assert fwd.get(keys[2].address) == Validator(keys[2].public_key, 3)
    assert fwd.get(VKEYS[4].address) is None
    assert vset(keys, [1, 2, 3, 5]).hash != fwd.hash  # stake is part of the hash
    assert vset(keys[:3], [1, 2, 3]).hash != fwd.hash
    assert vset(keys, [1, 2, 4, 3]).hash != fwd.hash  # who holds which stake matters


@pytest.mark.parametrize("vals", [
    (),
    "dup",
    ("stake", 0),
    ("stake", -1),
    ("stake", True),
    ("stake", 1.0),
    ("stake", "1"),
])
def test_validator_set_rejects_bad_sets(vals):
    k = VKEYS[0]
    if vals == "dup":
        vals = (Validator(k.public_key, 1), Validator(k.public_key, 2))
    elif vals and vals[0] == "stake":
        vals = (Validator(k.public_key, vals[1]),)
    with pytest.raises(ValueError):
        ValidatorSet(tuple(vals))


@pytest.mark.parametrize("stakes,signed,ok", [
    ([1, 1, 1, 1], 2, False),
    ([1, 1, 1, 1], 3, True),
    ([1, 1, 1], 2, False),          # exactly 2/3 is not enough
    ([1, 1, 1], 3, True),
    ([2, 2, 2], 4, False),
    ([2, 2, 2], 5, True),
    ([100], 67, True),
    ([100], 66, False),
    ([3, 3, 3, 1], 7, True),       # 21 > 20
    ([3, 3, 3, 1], 6, False),
])
def test_quorum_is_strictly_more_than_two_thirds(stakes, signed, ok):
    s = vset(VKEYS[:len(stakes)], stakes)
    assert s.has_quorum(signed) is ok


# ---- commits ---------------------------------------------------------------------------

FOUR = VKEYS[:4]
VSET4 = vset(FOUR)


def test_good_commit_is_accepted():
    c = make_commit(FOUR[:3], CHAIN, 10, 2, BLOCK)
    assert (c.height, c.round, c.block_hash) == (10, 2, BLOCK)
    assert [s.validator for s in c.signatures] == sorted(k.address for k in FOUR[:3])
    verify_commit(VSET4, CHAIN, c, 10, BLOCK)
    verify_commit(VSET4, CHAIN, make_commit(FOUR, CHAIN, 10, 0, BLOCK), 10, BLOCK)
    # signature order does not matter to verification
    rev = Commit(c.height, c.round, c.block_hash, c.signatures[::-1])
    verify_commit(VSET4, CHAIN, rev, 10, BLOCK)


def _reject(commit, height=10, block=BLOCK, vs=VSET4, chain=CHAIN, match=None):
    with pytest.raises(errors.InvalidBlock, match=match):
        verify_commit(vs, chain, commit, height, block)


def test_commit_for_another_block_or_height():
    c = make_commit(FOUR, CHAIN, 10, 0, BLOCK)
    _reject(c, block=os.urandom(32), match="another block")
    _reject(c, height=11, match="another block")
    # relabelled: the signatures were for height 10, the commit claims 11
    _reject(Commit(11, 0, BLOCK, c.signatures), height=11, match="bad signature")
    _reject(Commit(10, 1, BLOCK, c.signatures), match="bad signature")  # another round
    other = os.urandom(32)
    _reject(Commit(10, 0, other, c.signatures), block=other, match="bad signature")


def test_commit_from_another_chain_or_vote_type():
    _reject(make_commit(FOUR, "other-chain", 10, 0, BLOCK), match="bad signature")
    prevotes = tuple(CommitSig(k.address, sign_vote(k, CHAIN, PREVOTE, 10, 0, BLOCK)) for k in FOUR)
    _reject(Commit(10, 0, BLOCK, prevotes), match="bad signature")
    # signatures of the right payload under the transaction domain
    txdom = tuple(CommitSig(k.address, k.sign(TX_DOMAIN, CHAIN, vote_payload(PRECOMMIT, 10, 0, BLOCK)))
                  for k in FOUR)
    _reject(Commit(10, 0, BLOCK, txdom), match="bad signature")


def test_commit_signed_by_a_non_validator():
    outsider = VKEYS[4]
    c = make_commit(FOUR[:3] + [outsider], CHAIN, 10, 0, BLOCK)
    _reject(c, match="non-validator")
    # the outsider signing with a validator's address is a bad signature
    sig = sign_vote(outsider, CHAIN, PRECOMMIT, 10, 0, BLOCK)
    good = make_commit(FOUR[:2], CHAIN, 10, 0, BLOCK)
    _reject(Commit(10, 0, BLOCK, good.signatures + (CommitSig(FOUR[3].address, sig),)), match="bad signature")


def test_commit_with_a_duplicate_signer():
    c = make_commit(FOUR[:2], CHAIN, 10, 0, BLOCK)
    dup = Commit(10, 0, BLOCK, c.signatures + (c.signatures[0],))  # 3 sigs, 2 signers
    _reject(dup, match="two signatures")
    # ed25519 signatures are deterministic; a second, different-looking copy is still one validator
    _reject(Commit(10, 0, BLOCK, c.signatures + c.signatures), match="two signatures")


def test_commit_with_a_bad_signature():
    c = make_commit(FOUR, CHAIN, 10, 0, BLOCK)
    for i in range(4):
        sigs = list(c.signatures)
        bad = bytearray(sigs[i].signature)
        bad[i * 7] ^= 0x01
        sigs[i] = CommitSig(sigs[i].validator, bytes(bad))
        _reject(Commit(10, 0, BLOCK, tuple(sigs)), match="bad signature")
    sigs = list(c.signatures)
    sigs[0] = CommitSig(sigs[0].validator, sigs[1].signature)  # someone else's signature
    _reject(Commit(10, 0, BLOCK, tuple(sigs)), match="bad signature")
    sigs[0] = CommitSig(sigs[0].validator, b"\x00" * 64)
    _reject(Commit(10, 0, BLOCK, tuple(sigs)), match="bad signature")


def test_commit_with_insufficient_stake():
    _reject(make_commit(FOUR[:2], CHAIN, 10, 0, BLOCK), match="2/3")      # 2 of 4
    _reject(make_commit([], CHAIN, 10, 0, BLOCK), match="2/3")            # nobody
    three = vset(VKEYS[:3])
    _reject(make_commit(VKEYS[:2], CHAIN, 10, 0, BLOCK), vs=three, match="2/3")  # exactly 2/3
    verify_commit(three, CHAIN, make_commit(VKEYS[:3], CHAIN, 10, 0, BLOCK), 10, BLOCK)
    # stake-weighted: one whale outweighs three minnows
    weighted = vset(FOUR, [7, 1, 1, 1])
    whale = next(k for k in FOUR if weighted.get(k.address).stake == 7)
    minnows = [k for k in FOUR if k is not whale]
    _reject(make_commit(minnows, CHAIN, 10, 0, BLOCK), vs=weighted, match="2/3")
    verify_commit(weighted, CHAIN, make_commit([whale], CHAIN, 10, 0, BLOCK), 10, BLOCK)


def test_commit_hash_and_wire():
    c = make_commit(FOUR, CHAIN, 3, 1, BLOCK)
    assert commit_from_wire(c.to_wire()) == c
    assert make_commit(FOUR, CHAIN, 3, 1, BLOCK).hash == c.hash
    assert make_commit(FOUR[:3], CHAIN, 3, 1, BLOCK).hash != c.hash


# ---- genesis -------------------------------------------------------------------------

ACCTS = [PrivateKey.from_label(f"genesis account {i}") for i in range(3)]


def good_doc() -> dict:
    return {
        "chain_id": CHAIN,
        "genesis_time_ms": 1_700_000_000_000,
        "params": {"max_tx_bytes": 4096, "max_block_gas": 10_000_000},
        "validators": [{"public_key": k.public_key.hex(), "stake": 10} for k in VKEYS[:2]],
        "accounts": [{"address": address_hex(k.address), "balance": (i + 1) * COIN}
                     for i, k in enumerate(ACCTS)],
    }


def test_genesis_parses_and_hashes_stably(tmp_path):
    g1, g2 = Genesis.from_json(good_doc()), Genesis.from_json(good_doc())
    assert g1 == g2 and g1.hash == g2.hash and g1.encode() == g2.encode()
    assert g1.chain_id == CHAIN and g1.params == ChainParams(max_tx_bytes=4096, max_block_gas=10_000_000)
    assert g1.accounts == tuple(sorted((k.address, (i + 1) * COIN) for i, k in enumerate(ACCTS)))
    assert g1.validators.total_stake == 20
    # the order of accounts and validators in the file does not matter
    doc = good_doc()
    doc["accounts"].reverse()
    doc["validators"].reverse()
    assert Genesis.from_json(doc).hash == g1.hash
    # to_json round trip, and the file loader
    assert Genesis.from_json(json.loads(json.dumps(g1.to_json()))).hash == g1.hash
    p = tmp_path / "genesis.json"
    p.write_text(json.dumps(good_doc()))
    assert load_genesis(p).hash == g1.hash
    # any change to content changes the hash
    doc = good_doc()
    doc["accounts"][0]["balance"] += 1
    assert Genesis.from_json(doc).hash != g1.hash
    doc = good_doc()
    doc["genesis_time_ms"] += 1
    assert Genesis.from_json(doc).hash != g1.hash
    # block 0 and the initial state follow from it
    changes, root, nodes = g1.initial_state()
    assert root == root_from_items({k: v for k, v in changes.items()})
    h = g1.header(root)
    assert h.height == 0 and h.parent_hash == g1.hash and h.state_root == root
    assert h.validators_hash == g1.validators.hash


def test_genesis_defaults():
    doc = good_doc()
    del doc["params"]
    del doc["accounts"]
    g = Genesis.from_json(doc)
    assert g.params == ChainParams() and g.accounts == ()


def _set(path, value):
    def f(doc):
        target = doc
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
    return f


def _del(path):
    def f(doc):
        target = doc
        for p in path[:-1]:
            target = target[p]
        del target[path[-1]]
    return f


MALFORMED_GENESIS = {
    "not an object": None,
    "no chain_id": _del(["chain_id"]),
    "chain_id empty": _set(["chain_id"], ""),
    "chain_id too long": _set(["chain_id"], "c" * 65),
    "chain_id int": _set(["chain_id"], 5),
    "chain_id unprintable": _set(["chain_id"], "chain\n1"),
    "no time": _del(["genesis_time_ms"]),
    "time negative": _set(["genesis_time_ms"], -1),
    "time str": _set(["genesis_time_ms"], "1700000000000"),
    "time float": _set(["genesis_time_ms"], 1.5),
    "time bool": _set(["genesis_time_ms"], True),
    "time too big": _set(["genesis_time_ms"], 2**64),
    "no validators": _del(["validators"]),
    "validators empty": _set(["validators"], []),
    "validators not a list": _set(["validators"], 5),
    "validators a string": _set(["validators"], "abc"),
    "validator no key": _del(["validators", 0, "public_key"]),
    "validator bad hex": _set(["validators", 0, "public_key"], "zz" * 32),
    "validator key short": _set(["validators", 0, "public_key"], "ab" * 31),
    "validator key long": _set(["validators", 0, "public_key"], "ab" * 33),
    "validator key int": _set(["validators", 0, "public_key"], 7),
    "validator no stake": _del(["validators", 0, "stake"]),
    "validator stake 0": _set(["validators", 0, "stake"], 0),
    "validator stake negative": _set(["validators", 0, "stake"], -5),
    "validator stake str": _set(["validators", 0, "stake"], "10"),
    "validator stake bool": _set(["validators", 0, "stake"], True),
    "validator duplicate": lambda d: d["validators"].append(dict(d["validators"][0])),
    "accounts not a list": _set(["accounts"], 7),
    "account no address": _del(["accounts", 0, "address"]),
    "account no balance": _del(["accounts", 0, "balance"]),
    "account address short": _set(["accounts", 0, "address"], "0x" + "ab" * 19),
    "account address bad hex": _set(["accounts", 0, "address"], "0x" + "zz" * 20),
    "account address int": _set(["accounts", 0, "address"], 12),
    "account balance 0": _set(["accounts", 0, "balance"], 0),
    "account balance negative": _set(["accounts", 0, "balance"], -1),
    "account balance str": _set(["accounts", 0, "balance"], "1"),
    "account balance bool": _set(["accounts", 0, "balance"], True),
    "account balance too big": _set(["accounts", 0, "balance"], 2**64),
    "account duplicate": lambda d: d["accounts"].append(dict(d["accounts"][0])),
    "supply over 2**64": lambda d: [a.__setitem__("balance", 2**63) for a in d["accounts"]],
    "params unknown": _set(["params", "max_txs"], 5),
    "params zero": _set(["params", "max_tx_bytes"], 0),
    "params negative": _set(["params", "max_block_gas"], -1),
    "params str": _set(["params", "max_block_bytes"], "big"),
    "params bool": _set(["params", "max_block_bytes"], True),
}


@pytest.mark.parametrize("name", list(MALFORMED_GENESIS))
def test_genesis_rejects_malformed_fields(name):
    mutate = MALFORMED_GENESIS[name]
    if mutate is None:
        doc = ["not", "an", "object"]
    else:
        doc = copy.deepcopy(good_doc())
        mutate(doc)
    with pytest.raises(ValueError) as e:
        Genesis.from_json(doc)
    assert str(e.value)  # says something


def test_genesis_errors_name_the_problem():
    doc = good_doc()
    del doc["chain_id"]
    with pytest.raises(ValueError, match="chain_id"):
        Genesis.from_json(doc)
    doc = good_doc()
    doc["accounts"].append(dict(doc["accounts"][0]))
    with pytest.raises(ValueError, match="twice"):
        Genesis.from_json(doc)
    doc = good_doc()
    doc["params"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        Genesis.from_json(doc)


def test_load_genesis_bad_files(tmp_path):
    with pytest.raises(ValueError):
        load_genesis(tmp_path / "missing.json")
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError):
        load_genesis(p)


@pytest.mark.parametrize("params", [None, 5, [], ["max_tx_bytes"]])
def test_genesis_rejects_non_object_params(params):
    doc = good_doc()
    doc["params"] = params
    with pytest.raises(ValueError):
        Genesis.from_json(doc)


def test_genesis_rejects_stake_over_u64():
    doc = good_doc()
    doc["validators"][0]["stake"] = 2**64
    with pytest.raises(ValueError):
        Genesis.from_json(doc)


def test_genesis_chain_id_is_usable_for_signing():
    doc = good_doc()
    doc["chain_id"] = "\U0001F600" * 64
    try:
        g = Genesis.from_json(doc)
    except ValueError:
        return  # rejecting it up front is a fine fix too
    make_commit(VKEYS[:1], g.chain_id, 1, 0, BLOCK)
    transfer(ACCTS[0], g.chain_id, 0, ACCTS[1].address, 1)


def test_devnet_genesis():
    g = devnet_genesis(1234)
    assert g.chain_id == DEVNET_CHAIN_ID and g.genesis_time_ms == 1234
    assert g.validators.get(devnet_validator_key().address) is not None
    assert dict(g.accounts) == {k.address: DEVNET_BALANCE for k in devnet_keys()}
    assert Genesis.from_json(g.to_json()).hash == g.hash == devnet_genesis(1234).hash


# ---- the solo engine -------------------------------------------------------------------

SOLO_KEY = PrivateKey.from_label("solo validator")
USERS = [PrivateKey.from_label(f"solo user {i}") for i in range(3)]
FUNDS = 10**12


def open_node(path):
    g = Genesis(CHAIN, 1_000, ChainParams(), vset([SOLO_KEY]),
                tuple(sorted((u.address, FUNDS) for u in USERS)))
    store = Store(path, map_size=16 << 20)
    if store.latest_height() < 0:
        changes, root, nodes = g.initial_state()
        store.init_genesis(json.dumps(g.to_json()).encode(), g.header(root), changes, nodes)
    chain = Chain(store, g.chain_id, g.params)
    mempool = Mempool(g.chain_id, g.params.max_block_gas, chain.account)
    commits: list = []
    engine = SoloEngine(chain, mempool, SOLO_KEY, block_time=1.0, max_block_txs=1000,
                        on_commit=lambda b, p, ev: commits.append((b, p, ev)))
    return g, chain, mempool, engine, commits


def submit(mempool, chain, t):
    d = decode_transaction(t.raw, chain.params.max_tx_bytes)  # as it arrives from the wire
    verify_signature(d)
    mempool.add(d)


def test_solo_engine_commits_mempool_txs(tmp_path):
    g, chain, mempool, engine, seen = open_node(tmp_path / "solo")
    try:
        txs = [transfer(u, CHAIN, n, USERS[(i + 1) % 3].address, 1000 + n, gas_price=1 + i)
               for i, u in enumerate(USERS) for n in range(3)]
        for t in txs:
            submit(mempool, chain, t)
        assert len(mempool) == 9
        b1 = engine.produce_block()
        assert b1.height == 1 and chain.tip == b1.header and chain.store.latest_height() == 1
        assert {t.hash for t in b1.txs} == {t.hash for t in txs}
        assert len(mempool) == 0
        assert b1.last_commit is None
        assert len(seen) == 1 and seen[0][0] == b1 and seen[0][2] == []
        c1 = chain.store.commit(1)
        verify_commit(g.validators, CHAIN, c1, 1, b1.hash)
        with pytest.raises(errors.InvalidBlock):
            verify_commit(g.validators, CHAIN, c1, 1, os.urandom(32))
        fee = sum(21_000 * t.gas_price for t in txs)
        assert chain.account(SOLO_KEY.address) == Account(fee + g.params.block_reward, 0)  # the sole validator
        for i, u in enumerate(USERS):
            assert chain.account(u.address).nonce == 3
        assert sum(chain.account(u.address).balance for u in USERS) + fee == 3 * FUNDS
        for i, t in enumerate(b1.txs):
            stx, h, idx, r = chain.store.tx(t.hash)
            assert (h, idx, r) == (1, i, seen[0][1].output.receipts[i])
        # an empty block carries the previous commit
        b2 = engine.produce_block()
        assert b2.height == 2 and b2.txs == () and b2.last_commit == c1
        assert b2.header.last_commit_hash == c1.hash and b2.header.time_ms > b1.header.time_ms
        verify_commit(g.validators, CHAIN, chain.store.commit(2), 2, b2.hash)
        assert root_from_items(dict(chain.store.state_items())) == chain.tip.state_root
    finally:
        chain.store.close()


def test_solo_engine_resumes_after_restart(tmp_path):
    _, chain, mempool, engine, _ = open_node(tmp_path / "solo")
    submit(mempool, chain, transfer(USERS[0], CHAIN, 0, USERS[1].address, 5))
    b1 = engine.produce_block()
    chain.store.close()
    g, chain, mempool, engine, _ = open_node(tmp_path / "solo")
    try:
        assert chain.tip == b1.header
        assert mempool.pending_nonce(USERS[0].address) == 1
        submit(mempool, chain, transfer(USERS[0], CHAIN, 1, USERS[1].address, 5))
        b2 = engine.produce_block()
        assert b2.height == 2 and len(b2.txs) == 1
        assert b2.last_commit == chain.store.commit(1)
        verify_commit(g.validators, CHAIN, b2.last_commit, 1, b1.hash)
    finally:
        chain.store.close()


def test_solo_engine_reports_and_evicts_rejected(tmp_path):
    """A tx admitted against a stale view that the block then refuses is evicted and reported."""
    _, chain, mempool, engine, seen = open_node(tmp_path / "solo")
    try:
        u = USERS[0]
        # admit with a lying account view: pretend u is far richer than it is
        real = mempool._account
        mempool._account = lambda a: Account(10 * FUNDS, 0) if a == u.address else real(a)
        too_big = transfer(u, CHAIN, 0, USERS[1].address, 2 * FUNDS)
        follow = transfer(u, CHAIN, 1, USERS[1].address, 1)
        ok = transfer(USERS[2], CHAIN, 0, USERS[1].address, 1)
        for t in (too_big, follow, ok):
            submit(mempool, chain, t)
        mempool._account = real
        b = engine.produce_block()
        assert b.txs == (ok,)
        _, prop, evicted = seen[-1]
        assert [(t, type(e)) for t, e in prop.rejected] == [(too_big, errors.InsufficientFunds),
                                                            (follow, errors.NonceTooHigh)]
        assert {t.hash for t in evicted} == {too_big.hash, follow.hash}
        assert len(mempool) == 0
        assert chain.account(u.address) == Account(FUNDS, 0)
    finally:
        chain.store.close()


def test_solo_engine_refuses_to_finalise_without_two_thirds_of_the_stake(tmp_path):
    _, chain, mempool, _, _ = open_node(tmp_path / "solo")
    try:
        noop = lambda *a: None  # noqa: E731
        engine = SoloEngine(chain, mempool, VKEYS[0], 1.0, 10, noop)  # not the chain's validator
        with pytest.raises(SoloEngineStopped, match="2/3"):
            engine.produce_block()
        assert chain.tip.height == 0
    finally:
        chain.store.close()
