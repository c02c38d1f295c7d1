"""A fixed chain history, replayed from scratch: prints one digest of every block hash,
state root and receipt.  Run by tests/test_determinism.py in other processes, with other
PYTHONHASHSEED values and other CPython versions; all must print the same line.

Needs only msgpack, pynacl and lmdb (no aiohttp, no jax), so a small venv runs it.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.genesis import Genesis  # noqa: E402
from consensus.validators import Validator, ValidatorSet  # noqa: E402
from consensus.votes import make_commit  # noqa: E402
from ledger.block import encode_block  # noqa: E402
from ledger.chain import Chain  # noqa: E402
from ledger.encoding import encode  # noqa: E402
from ledger.hashing import hash_bytes  # noqa: E402
from ledger.keys import PrivateKey  # noqa: E402
from ledger.params import ChainParams  # noqa: E402
from ledger.store import Store  # noqa: E402
from ledger.tx import transfer  # noqa: E402

CHAIN = "gradchain-determinism"


def run() -> str:
    keys = [PrivateKey.from_label(f"det {i}") for i in range(12)]
    vkey = PrivateKey.from_label("det validator")
    # unequal balances, two accounts with little money so some txs are unpayable
    accounts = tuple(sorted((k.address, 10**12 + i * 7919 if i < 10 else 30_000) for i, k in enumerate(keys)))
    g = Genesis(CHAIN, 1_750_000_000_000, ChainParams(), ValidatorSet((Validator(vkey.public_key, 10),)), accounts)
    digest = hash_bytes(g.encode())
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d))
        changes, root, nodes = g.initial_state()
        store.init_genesis(b"{}", g.header(root), changes, nodes)
        chain = Chain(store, CHAIN, g.params, g.validators.hash)
        nonces = [0] * len(keys)
        last_commit = None
        for height in range(1, 21):
            cands = []
            for j in range(40):
                s = (height * 7 + j * 3) % len(keys)
                r = (s + 1 + j % 5) % len(keys)
                amount = (height * 1_000_003 + j * 97) % 10**9
                if j % 13 == 0:  # a wrong nonce now and then: must be skipped
                    cands.append(transfer(keys[s], CHAIN, nonces[s] + 5, keys[r].address, amount))
                    continue
                cands.append(transfer(keys[s], CHAIN, nonces[s], keys[r].address, amount, gas_price=1 + j % 3))
                nonces[s] += 1
            prop = chain.build_block(cands, vkey.address, g.genesis_time_ms + height * 1000, last_commit)
            commit = make_commit([vkey], CHAIN, height, 0, prop.block.hash)
            chain.commit_block(prop.block, commit, prop.output)
            last_commit = commit
            nonces = [chain.account(k.address).nonce for k in keys]
            digest = hash_bytes(digest + encode_block(prop.block) + encode([r.to_wire() for r in prop.output.receipts])
                                + prop.output.state_root)
        store.close()
    return digest.hex()


if __name__ == "__main__":
    print(run())
