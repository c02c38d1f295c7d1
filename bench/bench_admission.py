"""Mempool admission rate: decode + stateless checks + signature + mempool.add, for
signed transfers, in one process and with signatures checked by worker processes.
Baseline in the same run: the raw ed25519 verify rate on one core.

    python bench/bench_admission.py [--txs 40000] [--senders 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_genesis, bench_keys, open_chain, random_transfers  # noqa: E402
from ledger.keys import PrivateKey, TX_DOMAIN, verify  # noqa: E402
from ledger.mempool import Mempool  # noqa: E402
from ledger.sigverify import SignatureVerifier  # noqa: E402
from ledger.tx import decode_transaction, signed_body, validate_transaction  # noqa: E402

BATCH = 1000


async def admit_all(chain, raws: list[bytes], verifier: SignatureVerifier) -> float:
    """The node's admission pipeline (Node.submit) minus the network, batch by batch,
    with up to 4 batches in flight as the RPC server has them."""
    params = chain.params
    mp = Mempool(chain.chain_id, params.max_block_gas, chain.account, max_txs=len(raws) + 1)
    sem = asyncio.Semaphore(4)
    tail: list[asyncio.Future | None] = [None]

    async def one(batch: list[bytes]) -> None:
        async with sem:
            txs = []
            for raw in batch:
                tx = decode_transaction(raw, params.max_tx_bytes)
                validate_transaction(tx, chain.chain_id, params.max_block_gas)
                txs.append(tx)
            prev, done = tail[0], asyncio.get_running_loop().create_future()
            tail[0] = done
            oks = await verifier.verify(txs)
            if prev is not None:
                await prev
            for tx, ok in zip(txs, oks):
                assert ok
                mp.add(tx)
            done.set_result(None)

    t = time.perf_counter()
    await asyncio.gather(*(one(raws[i:i + BATCH]) for i in range(0, len(raws), BATCH)))
    dt = time.perf_counter() - t
    assert len(mp) == len(raws)
    return len(raws) / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=40_000)
    ap.add_argument("--senders", type=int, default=1000)
    a = ap.parse_args()
    keys = bench_keys(a.senders)
    genesis = bench_genesis(keys, PrivateKey.from_label("bench validator"))
    raws = [t.raw for t in random_transfers(keys, a.txs, {})]
    txs = [decode_transaction(r, 1 << 16) for r in raws[:5000]]
    t = time.perf_counter()
    for tx in txs:
        verify(tx.sender, tx.signature, TX_DOMAIN, tx.chain_id, signed_body(tx))
    base = len(txs) / (time.perf_counter() - t)
    print(f"baseline: ed25519 verify {base:,.0f}/s on one core")
    with tempfile.TemporaryDirectory() as d:
        chain = open_chain(Path(d) / "c", genesis)
        for workers in (0, 1, 2):
            v = SignatureVerifier(workers)
            v.warm_up()
            rate = asyncio.run(admit_all(chain, raws, v))
            v.close()
            where = "in-process" if workers == 0 else f"{workers} verify worker process(es)"
            print(f"RESULT admission, {where}: {rate:,.0f} tx/s ({rate / base:.2f}x the one-core verify rate)")


if __name__ == "__main__":
    main()
