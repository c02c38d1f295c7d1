"""The on-chain cost of a dispute over a job of N = 10,000 steps (issue 13's figure).

A lying worker (one bit flipped at a checkpoint chosen at random) against an honest
challenger, on a real LMDB chain with a real blob store: every phase (post, claim, result,
challenge, each move, settle) is one block; for each it prints the gas and the wall time of
building the block (the proposer runs it) and of re-executing it on a second node (a
validator that checks it), beside an empty block measured in the same run.  Goal: at most
ceil(log2(N/k)) + 2 dispute transactions, and the settle fits in one block.

    python bench/bench_dispute.py [--steps 10000] [--k 100] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from ledger import jobs as J  # noqa: E402
from ledger.blobstore import BlobStore  # noqa: E402
from ledger.chain import Chain  # noqa: E402
from ledger.datasets import DatasetHeader, encode_dataset  # noqa: E402
from ledger.genesis import Genesis  # noqa: E402
from ledger.keys import PrivateKey  # noqa: E402
from ledger.merkle import merkle_proof, merkle_root  # noqa: E402
from ledger.params import ChainParams  # noqa: E402
from ledger.state import State  # noqa: E402
from ledger.store import Store  # noqa: E402
from ledger.tx import job as job_tx, put_blob  # noqa: E402
from ledger.validators import Validator, ValidatorSet  # noqa: E402
from ledger.votes import make_commit  # noqa: E402
from mlcore import jobs as mj  # noqa: E402
from mlcore.models import Arch  # noqa: E402

CHAIN = "dispute-bench"
VALIDATOR = PrivateKey.from_label("bench validator")
REQ, WORKER, CHALLENGER = (PrivateKey.from_label(f"bench {n}") for n in ("requester", "worker", "challenger"))
ARCH = Arch("mlp", (40, 64, 5))
BATCH, ROWS = 32, 4096
GAS = 480_000_000


class Node:
    def __init__(self, path: Path):
        g = Genesis(CHAIN, 1_700_000_000_000, ChainParams(), ValidatorSet((Validator(VALIDATOR.public_key, 1),)),
                    tuple(sorted((k.address, 10**15) for k in (REQ, WORKER, CHALLENGER))))
        store = Store(path / "chain", map_size=256 << 20)
        changes, root, nodes = g.initial_state()
        store.init_genesis(json.dumps({"genesis": g.to_json(), "devnet": False}).encode(), g.header(root),
                           changes, nodes)
        self.blobs = BlobStore(path / "blobs", map_size=256 << 20)
        self.chain = Chain(store, CHAIN, ChainParams(), self.blobs)


class Pair:
    """A proposer and a validator that re-executes every block."""

    def __init__(self, tmp: Path):
        self.a, self.b = Node(tmp / "a"), Node(tmp / "b")
        self.last = None

    def blob(self, key, data: bytes) -> list:
        ref = self.a.blobs.put(data, 1 << 16, 0)
        self.b.blobs.put(data, 1 << 16, 0)
        self.block([put_blob(key, CHAIN, self.a.chain.account(key.address).nonce, ref)])
        return ref.to_wire()

    def block(self, txs):
        a, b = self.a.chain, self.b.chain
        t0 = time.perf_counter()
        prop = a.build_block(txs, VALIDATOR.address, a.tip.time_ms + 1000, self.last)
        t1 = time.perf_counter()
        out = b.execute_block(prop.block)
        t2 = time.perf_counter()
        assert out.state_root == prop.output.state_root and not prop.rejected, prop.rejected
        self.last = make_commit([VALIDATOR], CHAIN, prop.block.height, 0, prop.block.hash)
        a.commit_block(prop.block, self.last, prop.output)
        b.commit_block(prop.block, self.last, out)
        return prop.output.receipts, t1 - t0, t2 - t1

    def act(self, key, action, body, value=0):
        tx = job_tx(key, CHAIN, self.a.chain.account(key.address).nonce, action, body, value, GAS)
        (r,), build, check = self.block([tx])
        assert r.status == 1, r.error
        return r.gas_used, build, check

    def job(self):
        with self.a.chain.store.read() as rd:
            return J.get_job(State(rd.state), 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    N, K = args.steps, args.k
    m = N // K
    rng = np.random.default_rng(5)
    x = rng.integers(-2**16, 2**16, size=(ROWS, ARCH.features), dtype=np.int32)
    y = (x[:, :5].argmax(axis=1)).astype(np.int32)
    spec = mj.JobSpec(ARCH, 3, 1 << 13, 1 << 15, BATCH, N, K, 9)
    lie = random.Random(args.seed).randrange(1, m + 1)

    t = time.perf_counter()
    p, v = mj.initial_checkpoint(ARCH, spec.seed)
    honest, liar = [(p, v)], [(p, v)]
    lp, lv = p, v
    for i in range(m):
        idx = mj.segment_rows(spec, ROWS, i)
        p, v, _ = mj.run_segment(ARCH, p, v, x[idx], y[idx], spec.lr, spec.momentum, BATCH)
        honest.append((p, v))
        lp, lv, _ = mj.run_segment(ARCH, lp, lv, x[idx], y[idx], spec.lr, spec.momentum, BATCH)
        if i + 1 == lie:
            w0 = lp[0].copy()
            w0.flat[0] ^= 1
            lp = (w0,) + tuple(lp[1:])
        liar.append((lp, lv))
    train_s = time.perf_counter() - t
    H = [mj.checkpoint_hash(ARCH, *c) for c in honest]
    L = [mj.checkpoint_hash(ARCH, *c) for c in liar]
    print(f"job: {ARCH.kind} {list(ARCH.layers)}, N = {N} steps of {BATCH} rows, k = {K}: m = {m} segments; "
          f"the worker lies at checkpoint {lie}; both traces trained off chain in {train_s:.1f} s")

    with tempfile.TemporaryDirectory() as d:
        net = Pair(Path(d))
        empties = [net.block([])[1:] for _ in range(5)]
        e_build = statistics.median(b for b, _ in empties)
        e_check = statistics.median(c for _, c in empties)
        data = net.blob(REQ, encode_dataset(x, y))
        terms = J.Terms(ARCH.kind, ARCH.layers, spec.seed, spec.lr, spec.momentum, BATCH, N, K, spec.order_seed,
                        J.BlobRef.from_wire(data), DatasetHeader(0, ROWS, ARCH.features, 1), False, 10**9, 10**8,
                        10_000, 1_000, 1_000).to_wire()
        rows: list[tuple[str, int, float, float]] = []
        rows.append(("post", *net.act(REQ, J.POST, [terms], 10**9)))
        rows.append(("claim", *net.act(WORKER, J.CLAIM, [0], 10**8)))
        model = net.blob(WORKER, mj.encode_checkpoint(ARCH, *liar[m]))
        wr, cr = merkle_root(L), merkle_root(H)
        rows.append(("result", *net.act(WORKER, J.RESULT, [0, model, wr, merkle_proof(L, 0), merkle_proof(L, m)])))
        dispute = [("challenge", *net.act(CHALLENGER, J.CHALLENGE, [0, cr, merkle_proof(H, 0), H[m], merkle_proof(H, m),
                                                                     H[m // 2], merkle_proof(H, m // 2)], 10**8))]
        while True:
            d_ = net.job().dispute
            if d_.probe < 0:
                break
            mine, me = (L, WORKER) if d_.turn == WORKER.address else (H, CHALLENGER)
            lo, hi, pr = d_.lo, d_.hi, d_.probe
            lo, hi = (pr, hi) if mine[pr] == d_.probe_hash else (lo, pr)
            nxt = (lo + hi) // 2
            body = [0, mine[pr], merkle_proof(mine, pr)] + ([mine[nxt], merkle_proof(mine, nxt)] if hi - lo > 1
                                                             else [b"", []])
            dispute.append((f"move [{d_.lo}, {d_.hi}]", *net.act(me, J.MOVE, body)))
        lo = net.job().dispute.lo
        ck = net.blob(CHALLENGER, mj.encode_checkpoint(ARCH, *honest[lo]))
        dispute.append((f"settle segment {lo}", *net.act(CHALLENGER, J.SETTLE, [0, ck, None])))
        assert net.job().status == J.OPEN and lo == lie - 1

    print(f"\nempty block (baseline, same run): build {e_build * 1e3:.1f} ms, re-execute {e_check * 1e3:.1f} ms")
    print(f"{'phase':<22} {'gas':>13} {'build ms':>9} {'re-exec ms':>10}")
    for name, gas, b, c in rows + dispute:
        print(f"{name:<22} {gas:>13,} {b * 1e3:>9.1f} {c * 1e3:>10.1f}")
    total = sum(g for _, g, _, _ in dispute)
    bound = math.ceil(math.log2(m)) + 2
    print(f"\ndispute: {len(dispute)} transactions (bound ceil(log2 {m}) + 2 = {bound}), {total:,} gas in all; "
          f"the settle used {dispute[-1][1]:,} gas of a {ChainParams().max_block_gas:,}-gas block")
    assert len(dispute) <= bound


if __name__ == "__main__":
    main()
