"""A training job far larger than a block: trained off chain, verified, settled, then served.

    python node.py                          # in another terminal: a devnet on port 8545
    python examples/ml_jobs.py              # or: python examples/ml_jobs.py http://HOST:PORT [--blocks 100]

Against a local testnet (`gradchain testnet 4 --dir tn`, then its start script) give any
validator's RPC URL.  Three parties, devnet accounts 0-2:

1. the requester uploads a data set (a blob, docs/jobs.md "Data sets") and posts a job: an
   MLP trained for as many steps as `--blocks` blocks of gas would hold (100 by default: the
   job has 100x the multiply-adds that fit in one block), a checkpoint every K steps;
2. the worker claims it, trains it natively with mlcore (checkpoints on disk), and posts the
   model and the Merkle root of its checkpoint hashes;
3. a verifier re-runs the job and compares; it would challenge a wrong result (the bisection
   of docs/jobs.md); here the result is right, so the window passes and the job is final;
4. the loss curve at the checkpoints is printed, and the job's model is served by the
   inference contract (examples/ml_inference.py `load_job`) and listed on the marketplace
   (examples/ml_marketplace.py `list_job_model`), whose predictions equal mlcore's.

Exit status 0 when every step did what it should.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the repository, not examples/ (whose token.py would shadow the stdlib's)

import numpy as np  # noqa: E402

from gradchain import Client, Decimal, Model, Tensor, address_hex, devnet_keys  # noqa: E402
from gradchain.jobs import Verifier, Worker, job_model, post_job  # noqa: E402
from ledger import jobs as J  # noqa: E402
from ledger.datasets import DatasetHeader  # noqa: E402
from mlcore import programs  # noqa: E402
from mlcore.models import Arch  # noqa: E402

REQUESTER, WORKER, VERIFIER = devnet_keys(3)
ARCH = Arch("mlp", (64, 32, 10))
BATCH, K, ROWS = 32, 200, 8192
WINDOW = 30  # blocks to challenge a result (the verifier is ready when it is posted)
ML_GAS = 400_000_000  # a contract's first ML program pays ML_COMPILE (300,000,000)


def make_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """64 features in Q.16; 10 classes from a fixed random linear rule."""
    rng = np.random.default_rng(2026)
    w = rng.normal(size=(ARCH.features, ARCH.outputs))
    xf = rng.uniform(-1, 1, size=(rows, ARCH.features))
    y = np.argmax(xf @ w, axis=1).astype(np.int32)
    return np.round(xf * 65536).astype(np.int32), y


def steps_for(blocks: int, max_block_gas: int) -> int:
    """As many steps as `blocks` blocks of gas would train on chain, rounded up to K."""
    per_step = programs.cost("train", ARCH, rows=BATCH * K, batch=BATCH) / K
    steps = int(blocks * max_block_gas / per_step)
    return -(-steps // K) * K


def macs(steps: int) -> int:
    """Multiply-adds of the training: forward, both backward products, every step."""
    return 3 * BATCH * sum(a * b for a, b in zip(ARCH.layers, ARCH.layers[1:])) * steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", default="http://127.0.0.1:8545")
    ap.add_argument("--blocks", type=float, default=100, help="the job's size in blocks of gas (default 100)")
    ap.add_argument("--workdir", default=None, help="where the worker and verifier keep checkpoints")
    args = ap.parse_args()
    client = Client(args.url, timeout=60)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gradchain-jobs-"))
    steps = steps_for(args.blocks, client.max_block_gas)
    block_steps = steps_for(1, client.max_block_gas)
    print(f"job: {ARCH.kind} {list(ARCH.layers)}, {steps} steps of {BATCH} rows ({macs(steps):.3g} multiply-adds, "
          f"{macs(steps) / macs(block_steps):.0f}x what one block's gas trains on chain), a checkpoint every {K}")

    x, y = make_data(ROWS)
    t = time.perf_counter()
    data = client.put_blob((x, y), REQUESTER, chunk_bytes=1 << 16)
    print(f"1. data set: {ROWS} rows, blob {data.root.hex()[:16]} ({data.size} bytes, "
          f"{time.perf_counter() - t:.1f} s to upload and record)")
    terms = J.Terms(ARCH.kind, ARCH.layers, 7, 1 << 12, 1 << 15, BATCH, steps, K, 11, data,  # lr 1/16, momentum 0.5
                    DatasetHeader(0, ROWS, ARCH.features, 1), False, 50 * 10**9, 5 * 10**9, 100_000, WINDOW, 50)
    jid = post_job(client, REQUESTER, terms)
    print(f"   job {jid} posted by {address_hex(REQUESTER.address)[:10]}: reward 50 GRAD, bond 5 GRAD")

    # the verifier trains at the same time as the worker, so its verdict comes early in the window
    verifier = Verifier(Client(args.url, timeout=60), VERIFIER, jid, workdir / "verifier",
                        log=lambda s: print("   verifier:", s))
    verifying = threading.Thread(target=verifier.prepare)
    verifying.start()
    worker = Worker(Client(args.url, timeout=60), WORKER, jid, workdir / "worker", log=lambda s: print("   worker:", s))
    worker.claim()
    t = time.perf_counter()
    worker.train()
    train_s = time.perf_counter() - t
    print(f"2. worker trained {steps} steps in {train_s:.1f} s ({steps / train_s:.0f} steps/s, beside the verifier)")
    worker.post_result()
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("status", worker.defend(timeout=3600)))
    thread.start()
    verifying.join()
    verdict = verifier.verify(timeout=3600)
    print(f"3. verifier: {'the model matches' if verdict.matches else 'DIFFERS'} ({verdict.outcome})")
    thread.join()
    if outcome.get("status") != "final" or not verdict.matches:
        print(f"FAILED: the job ended {outcome.get('status')}")
        return 1

    print("4. loss at the checkpoints (mean of the segment's steps):")
    losses = np.array(worker.losses, dtype=np.float64) / 65536
    per = losses.reshape(-1, K).mean(axis=1)
    for i in list(range(0, len(per), max(1, len(per) // 10))) + [len(per) - 1]:
        print(f"   checkpoint {i + 1:>5} (step {(i + 1) * K:>7}): {per[i]:.4f}  {'#' * int(per[i] * 20)}")

    params, _ = job_model(client, jid)
    sample = x[:8]
    expected = programs.predict(ARCH, params, sample).tolist()
    rows = Tensor.from_numpy(sample / 65536)  # exact: Q.16 values are multiples of 2**-16
    placeholder = Model.from_float(ARCH.kind, ARCH.layers, [np.zeros(s) for s in ARCH.shapes])
    source = (ROOT / "examples" / "ml_inference.py").read_text()
    inference = client.deploy(REQUESTER, source, ["job model", placeholder], gas_limit=ML_GAS)["address"]
    client.send(REQUESTER, inference, "load_job", jid, gas_limit=ML_GAS)
    served = client.view(inference, "predict", rows).to_numpy().tolist()
    print(f"   inference contract {inference[:10]} serves the job's model: {served}")
    market = client.deploy(REQUESTER, (ROOT / "examples" / "ml_marketplace.py").read_text(), [Decimal("0.05")],
                           gas_limit=ML_GAS)["address"]
    listing = client.send(REQUESTER, market, "list_job_model", "job model", jid, 1000, gas_limit=ML_GAS)["result"]
    bought = client.send(VERIFIER, market, "buy_prediction", listing, rows, value=8 * 1000, gas_limit=ML_GAS)
    print(f"   listed on the marketplace {market[:10]} at 1,000 base units per row; a buyer got "
          f"{bought['result'].to_numpy().tolist()}")
    if served != expected or bought["result"].to_numpy().tolist() != expected:
        print(f"FAILED: the contract predicts {served}, mlcore {expected}")
        return 1
    print("every step did what it should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
