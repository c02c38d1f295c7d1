"""apply_block + LMDB commit + new state root for a block of 10,000 transfers among
1,000 accounts (goal: at most 0.5 s), for the verifier path (execute a received block)
and the proposer path (build a block from candidates).  Baseline in the same run: the
raw ed25519 verify rate, and a bare LMDB write of the same number of puts.

    python bench/bench_block.py [--blocks 5] [--txs 10000] [--accounts 1000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lmdb  # noqa: E402

from bench.common import bench_genesis, bench_keys, median, open_chain, random_transfers  # noqa: E402
from ledger.votes import make_commit  # noqa: E402
from ledger.keys import PrivateKey, TX_DOMAIN, verify  # noqa: E402
from ledger.tx import signed_body  # noqa: E402


def verify_rate(txs) -> float:
    sample = txs[:3000]
    t = time.perf_counter()
    for tx in sample:
        verify(tx.sender, tx.signature, TX_DOMAIN, tx.chain_id, signed_body(tx))
    return len(sample) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--txs", type=int, default=10_000)
    ap.add_argument("--accounts", type=int, default=1_000)
    a = ap.parse_args()
    keys = bench_keys(a.accounts)
    vkey = PrivateKey.from_label("bench validator")
    genesis = bench_genesis(keys, vkey)
    nonces: dict[bytes, int] = {}
    print(f"signing {a.blocks} x {a.txs} transfers among {a.accounts} accounts ...", flush=True)
    blocks_txs = [random_transfers(keys, a.txs, nonces, seed=i) for i in range(a.blocks)]
    print(f"baseline: ed25519 verify {verify_rate(blocks_txs[0]):,.0f}/s on one core")

    with tempfile.TemporaryDirectory() as d:
        proposer = open_chain(Path(d) / "p", genesis)
        verifier = open_chain(Path(d) / "v", genesis)
        build, commit_p, execute, commit_v, cold = [], [], [], [], []
        for txs in blocks_txs:
            t0 = time.perf_counter()
            prop = proposer.build_block(txs, vkey.address, proposer.tip.time_ms + 1000, None)
            t1 = time.perf_counter()
            assert len(prop.block.txs) == len(txs), prop.rejected[:3]
            commit = make_commit([vkey], genesis.chain_id, prop.block.height, 0, prop.block.hash)
            t2 = time.perf_counter()
            proposer.commit_block(prop.block, commit, prop.output)
            t3 = time.perf_counter()
            cold_out = verifier.execute_block(prop.block)  # every signature checked too
            t4 = time.perf_counter()
            # the normal case: these txs were verified when this node's mempool admitted them
            out = verifier.execute_block(prop.block, verified={t.hash for t in prop.block.txs})
            t5 = time.perf_counter()
            verifier.commit_block(prop.block, commit, out)
            t6 = time.perf_counter()
            assert out.state_root == cold_out.state_root == prop.block.header.state_root
            build.append(t1 - t0); commit_p.append(t3 - t2); cold.append(t4 - t3)
            execute.append(t5 - t4); commit_v.append(t6 - t5)
            print(f"  block {prop.block.height}: build {t1-t0:.3f}s commit {t3-t2:.3f}s | "
                  f"execute {t5-t4:.3f}s (cold {t4-t3:.3f}s) commit {t6-t5:.3f}s  "
                  f"({len(prop.output.changes)} state keys, {len(prop.output.trie_nodes)} trie nodes)", flush=True)
        env = lmdb.open(str(Path(d) / "raw"), map_size=1 << 30)
        t = time.perf_counter()
        with env.begin(write=True) as txn:
            for i in range(3 * a.txs):
                txn.put(i.to_bytes(8, "big"), b"x" * 100)
        raw_put = time.perf_counter() - t
    pv = median(build) + median(commit_p)
    vv = median(execute) + median(commit_v)
    print(f"baseline: bare LMDB, {3 * a.txs} puts of 100 bytes in one write txn: {raw_put:.3f}s")
    print(f"RESULT proposer path (build + commit), median of {a.blocks}: {pv:.3f}s per {a.txs}-tx block")
    print(f"RESULT verifier path (apply_block + roots + commit), median of {a.blocks}: {vv:.3f}s "
          f"(goal <= 0.5 s) -> {a.txs / vv:,.0f} tx/s")
    print(f"       the same block when none of its signatures was seen before (all {a.txs} checked "
          f"in one process): {median(cold) + median(commit_v):.3f}s")


if __name__ == "__main__":
    main()
