"""The three ML figures of issue 4, each beside plain float32 JAX (or the raw jitted call) in
the same run.

1. training step: softmax regression, batch 1024 x 64 features x 10 classes, momentum 0.9,
   run through a contract transaction (examples/ml_training.py `train_stored`: 1024 stored
   rows, E epochs of one full batch = E steps fused in one call; E = 32 and 100, the example's
   most) vs mlcore/float32.py's scan of E steps (same shapes, same heavy-ball rule).  Goal: at
   most 1.5x per step.
   Also the bare kernel (mlcore.programs.train, no VM) for the breakdown.
2. the overhead of one `ml` call from a contract over the raw jitted call: a contract loop
   of ml.predict on a small model, minus the same loop doing nothing, minus the jitted
   predict program called directly on the same (padded) arrays.  Goal: at most 20 us.
3. a node restarted with a warm compilation cache: its first ML transaction (the same
   program as before the restart) compiles nothing (status().ml.xla_compiles == 0), and
   the latency of that transaction beside the cold node's first one.

    python bench/bench_ml.py [--runs 7] [--epochs 32,100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mlcore import float32 as F, programs  # noqa: E402
from mlcore.fixed import WEIGHTS, quantize  # noqa: E402
from mlcore.models import Arch  # noqa: E402
from gradchain import TestChain  # noqa: E402
from vm.decimals import Decimal  # noqa: E402
from vm.tensors import Tensor  # noqa: E402

GAS = 900_000_000
TRAINING = (ROOT / "examples" / "ml_training.py").read_text()
LOOP = '''
@constructor
def init():
    storage["model"] = ml.model("softmax", [8, 4], 1)


@export
def predicts(x, n: int) -> int:
    m = storage["model"]
    for i in range(n):
        ml.predict(m, x)
    return n


@export
def nothing(x, n: int) -> int:
    m = storage["model"]
    for i in range(n):
        len(x)
    return n
'''


def median_of(runs: int, fn) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def training_step(runs: int, epochs: int) -> None:
    rows, features, classes = 1024, 64, 10
    rng = np.random.default_rng(0)
    xf = rng.random((rows, features))
    labels = rng.integers(0, classes, rows).astype(np.int32)
    chain = TestChain()
    owner = chain.accounts[0]
    c = chain.deploy(TRAINING, "softmax", [features, classes], 1, Decimal("0.1"), Decimal("0.9"), rows,
                     sender=owner, gas=GAS)
    for lo in range(0, rows, 200):  # a transaction holds at most 64 KiB
        c.add_data(Tensor.from_numpy(xf[lo:lo + 200]), Tensor.from_numpy(labels[lo:lo + 200], "int"),
                   sender=owner, gas=GAS)
    c.train_stored(epochs, sender=owner, gas=GAS)  # pays the compile once
    contract = median_of(runs, lambda: c.train_stored(epochs, sender=owner, gas=GAS)) / epochs
    gas = chain.last_receipt.gas_used

    arch = Arch("softmax", (features, classes))
    params = programs.init(arch, 1)
    xq, lr, mu = quantize(xf, WEIGHTS), 6554, 58982
    programs.train(arch, params, None, xq, labels, lr, mu, rows, epochs)
    kernel = median_of(runs, lambda: programs.train(arch, params, None, xq, labels, lr, mu, rows, epochs)) / epochs

    fp = F.from_fixed(params)
    xs = np.broadcast_to(xf.astype(np.float32), (epochs, rows, features))
    ys = np.broadcast_to(labels, (epochs, rows))
    jax.block_until_ready(F.train("softmax", fp, xs, ys, 0.1, 0.9))
    base = median_of(runs, lambda: jax.block_until_ready(F.train("softmax", fp, xs, ys, 0.1, 0.9))) / epochs

    print(f"1. softmax regression step, batch {rows} x {features} x {classes}, {epochs} steps fused, momentum 0.9")
    print(f"   through a contract tx : {contract * 1e3:7.3f} ms/step  ({contract / base:.2f}x float32; goal <= 1.5x)"
          f"  {gas:,} gas per tx")
    print(f"   mlcore kernel alone   : {kernel * 1e3:7.3f} ms/step  ({kernel / base:.2f}x float32)")
    print(f"   float32 JAX (baseline): {base * 1e3:7.3f} ms/step")


def raw_program_call(run) -> tuple:
    """The jitted program that `run()` calls inside mlcore.programs and the arguments it passes
    (its packed input buffer): the raw call, with nothing of ours around it."""
    seen = {}
    build = programs._program

    def spy(k, make):
        fn = build(k, make)

        def call(*args):
            seen["call"] = (fn, args)
            return fn(*args)
        return call

    programs._program = spy
    try:
        run()
    finally:
        programs._program = build
    return seen["call"]


def call_overhead(runs: int, n: int = 2000) -> None:
    chain = TestChain()
    c = chain.deploy(LOOP, gas=GAS)
    x = Tensor.from_numpy(np.random.default_rng(1).random((1, 8)))
    c.predicts(x, 1, gas=GAS)  # registers the program on chain, compiles it
    ml_loop = median_of(runs, lambda: c.view.predicts(x, n, gas=GAS)) / n
    empty = median_of(runs, lambda: c.view.nothing(x, n, gas=GAS)) / n

    arch = Arch("softmax", (8, 4))
    params = programs.init(arch, 1)
    xr = x.raw()
    programs.predict(arch, params, xr)
    host = median_of(runs, lambda: [programs.predict(arch, params, xr) for _ in range(n)]) / n
    fn, args = raw_program_call(lambda: programs.predict(arch, params, xr))
    raw = median_of(runs, lambda: [np.asarray(fn(*args)) for _ in range(n)]) / n
    over = ml_loop - empty - raw
    print(f"2. one ml.predict from a contract (softmax 8 -> 4, 1 row), {n} calls a run")
    print(f"   overhead over the raw jitted call: {over * 1e6:6.1f} us (goal <= 20 us)")
    print(f"   contract loop {ml_loop * 1e6:.1f} us - empty loop {empty * 1e6:.1f} us - raw jitted call "
          f"{raw * 1e6:.1f} us; mlcore.programs.predict from Python: {host * 1e6:.1f} us")


RESTART = '''
@constructor
def init():
    storage["model"] = ml.model("mlp", [64, 64, 32, 10], 7)


@export
def fit(x, y) -> list:
    model, losses = ml.train(storage["model"], x, y, Decimal("0.1"), Decimal("0.9"), 50, 2)
    storage["model"] = model
    return losses
'''


def warm_restart() -> None:
    from ledger.genesis import devnet_keys
    from tests.nodeproc import NodeProcess

    key = devnet_keys()[0]
    rng = np.random.default_rng(3)
    x = Tensor.from_numpy(rng.random((200, 64)))
    y = Tensor.from_numpy(rng.integers(0, 10, 200).astype(np.int32), "int")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node").start()
        try:
            contract = node.client().deploy(key, RESTART, [], gas_limit=GAS)["address"]
            for label in ("new node, empty cache", "restarted, warm cache", "same process, hot"):
                c = node.client()
                t = time.perf_counter()
                c.send(key, contract, "fit", x, y, gas_limit=GAS)
                times[label] = (time.perf_counter() - t, c.status()["ml"])
                if label.startswith("new"):
                    node.stop()
                    node.start()
        finally:
            node.kill()
    print("3. first training transaction of a node process (MLP 64-64-32-10, 200 rows, 8 steps)")
    for label, (t, st) in times.items():
        print(f"   {label:22s}: {t * 1e3:7.1f} ms to commit; XLA compiles {st['xla_compiles']}, "
              f"loaded from the cache {st['persistent_cache_hits']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--epochs", default="32,100", help="steps fused per transaction, comma-separated")
    a = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    for epochs in (int(e) for e in a.epochs.split(",")):
        training_step(a.runs, epochs)
    call_overhead(a.runs)
    warm_restart()


if __name__ == "__main__":
    main()
