"""Shared set-up for the benchmarks: a chain with many funded accounts, signed transfers."""
from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from ledger.genesis import Genesis
from ledger.validators import Validator, ValidatorSet
from ledger.chain import Chain
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.store import Store
from ledger.tx import Transaction, transfer

CHAIN_ID = "gradchain-bench"
BALANCE = 10**15


def bench_keys(n: int) -> list[PrivateKey]:
    return [PrivateKey.from_label(f"bench account {i}") for i in range(n)]


def bench_genesis(keys: list[PrivateKey], validator: PrivateKey) -> Genesis:
    return Genesis(CHAIN_ID, 1_700_000_000_000, ChainParams(),
                   ValidatorSet((Validator(validator.public_key, 1),)),
                   tuple(sorted((k.address, BALANCE) for k in keys)))


def open_chain(path: Path, genesis: Genesis) -> Chain:
    store = Store(path)
    if store.latest_height() < 0:
        changes, root, nodes = genesis.initial_state()
        store.init_genesis(b"{}", genesis.header(root), changes, nodes)
    return Chain(store, genesis.chain_id, genesis.params)


def random_transfers(keys: list[PrivateKey], n: int, nonces: dict[bytes, int], seed: int = 1) -> list[Transaction]:
    """n signed transfers between random pairs of keys, nonces continuing from `nonces`."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(keys, 2)
        nonce = nonces.get(a.address, 0)
        nonces[a.address] = nonce + 1
        out.append(transfer(a, CHAIN_ID, nonce, b.address, rng.randrange(1, 1000)))
    return out


def timed(fn, *args):
    t = time.perf_counter()
    r = fn(*args)
    return time.perf_counter() - t, r


def median(xs: list[float]) -> float:
    return statistics.median(xs)
