"""Accuracy of models trained THROUGH CONTRACTS, against the same models trained in float32 JAX.

The data set is scikit-learn's digits (1797 8x8 images, 64 features 0..16, 10 classes), which
ships with the package: no download.  Features are scaled to [0, 1]; every fifth image (index
% 5 == 0) is held out for testing, the other 1437 train.

Through the contract (examples/ml_training.py on a gradchain.testing.TestChain): the training rows are
uploaded in transactions of at most CHUNK rows (a transaction is at most 64 KiB), then each
`train_stored(1)` transaction runs one epoch over every stored row, in upload order, in
mini-batches of BATCH (the last one short), with the contract's learning rate and momentum.
The held-out accuracy is read back through the contract too (`evaluate`, read-only calls).

The float32 twin is mlcore/float32.py (plain jax.numpy): the same initial weights (the contract's
initial model, dequantised), the same dequantised inputs, the same batches in the same order,
the same learning rate and momentum, the mean cross-entropy gradient (jax.grad) and heavy-ball
SGD: v = mu * v + lr * g; p -= v.  The issue asks the two to end within one accuracy point.
"""
from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from mlcore import float32 as F
from gradchain import TestChain
from vm.decimals import Decimal
from vm.tensors import Model, Tensor

ROOT = Path(__file__).resolve().parent.parent
TRAINING = (ROOT / "examples" / "ml_training.py").read_text()

CHUNK = 200            # rows per upload transaction: 200 * 64 * 4 bytes = 51,200 bytes of x
EVAL_CHUNK = 180       # rows per read-only evaluate call
BATCH = 32
EPOCHS = 10
GAS = 950_000_000      # per transaction: a program's first use on chain costs ML_COMPILE (300M) more
# (kind, layers, lr, momentum): lr and momentum are exact in Q.16, so both sides use the same numbers
MODELS = {
    "softmax": ("softmax", [64, 10], Decimal("0.125"), Decimal("0.875")),
    "mlp": ("mlp", [64, 32, 10], Decimal("0.0625"), Decimal("0.875")),
}


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = load_digits()
    x = d.data / 16.0
    y = d.target.astype(np.int32)
    test = np.arange(len(y)) % 5 == 0
    return x[~test], y[~test], x[test], y[test]


# ---- float32 JAX (mlcore/float32.py) -------------------------------------------------------------

def f32_train(kind: str, params: list, x: np.ndarray, y: np.ndarray, lr: float, mu: float) -> tuple:
    """EPOCHS passes over the rows in order, mini-batches of BATCH (the last one short)."""
    p = tuple(jnp.asarray(a, jnp.float32) for a in params)
    v = tuple(jnp.zeros_like(a) for a in p)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y)
    for _ in range(EPOCHS):
        for s in range(0, len(y), BATCH):
            p, v, _ = F.step(kind, p, v, x[s:s + BATCH], y[s:s + BATCH], lr, mu)
    return p


# ---- through the contract ------------------------------------------------------------------------

def contract_training(kind: str, layers: list, lr: Decimal, mu: Decimal, xq: Tensor, y: np.ndarray):
    """Deploy, upload in chunks, train EPOCHS epochs in transactions: (contract, initial model, gas used by
    each epoch's transaction)."""
    chain = TestChain()
    c = chain.deploy(TRAINING, kind, layers, 42, lr, mu, BATCH, gas=GAS)
    start = c.view.model()
    x = xq.raw()
    for s in range(0, len(y), CHUNK):
        c.add_data(Tensor((min(CHUNK, len(y) - s), x.shape[1]), "q16", x[s:s + CHUNK]),
                   Tensor.from_numpy(y[s:s + CHUNK], "int"), gas=GAS)
    assert c.view.data_size() == {"chunks": -(-len(y) // CHUNK), "rows": len(y)}
    gas = []
    for _ in range(EPOCHS):
        c.train_stored(1, gas=GAS)
        gas.append(chain.last_receipt.gas_used)
    return c, start, gas


def contract_accuracy(c, x: Tensor, y: np.ndarray) -> float:
    correct = 0
    raw = x.raw()
    for s in range(0, len(y), EVAL_CHUNK):
        n = min(EVAL_CHUNK, len(y) - s)
        r = c.view.evaluate(Tensor((n, raw.shape[1]), "q16", raw[s:s + n]),
                            Tensor.from_numpy(y[s:s + n], "int"), gas=GAS)
        assert r["rows"] == n
        correct += r["correct"]
    return correct / len(y)


@pytest.mark.parametrize("name", list(MODELS))
def test_contract_training_matches_float32(name):
    kind, layers, lr, mu = MODELS[name]
    x_train, y_train, x_test, y_test = digits()
    xq, xq_test = Tensor.from_numpy(x_train), Tensor.from_numpy(x_test)

    t0 = time.perf_counter()
    c, start, gas = contract_training(kind, layers, lr, mu, xq, y_train)
    fixed = contract_accuracy(c, xq_test, y_test)
    t_fixed = time.perf_counter() - t0

    steps_per_epoch = -(-len(y_train) // BATCH)
    assert c.view.steps() == EPOCHS * steps_per_epoch
    losses = c.view.losses(0, EPOCHS * steps_per_epoch)
    first, last = losses[:steps_per_epoch], losses[-steps_per_epoch:]
    assert sum(last) < sum(first) / 4  # the mean training loss fell a lot

    t0 = time.perf_counter()
    # the float twin starts from the contract's own initial weights, and sees the same inputs
    floats = f32_train(kind, start.to_float(), xq.to_numpy(), y_train, float(str(lr)), float(str(mu)))
    ref = F.accuracy(floats, xq_test.to_numpy(), y_test)
    t_float = time.perf_counter() - t0
    trained = c.view.model()
    drift = max(float(np.max(np.abs(a - np.asarray(f)))) for a, f in zip(trained.to_float(), floats))

    print(f"\n{name} {layers} on digits ({len(y_train)} train / {len(y_test)} test rows, batch {BATCH}, "
          f"{EPOCHS} epochs, lr {lr}, momentum {mu}): held-out accuracy through the contract "
          f"{100 * fixed:.2f}%, float32 JAX {100 * ref:.2f}% (difference {round(100 * (fixed - ref), 2) + 0:+.2f} "
          f"points; largest parameter difference {drift:.4f}); "
          f"gas per epoch transaction {gas[-1]:,} (the first {gas[0]:,}); {t_fixed:.1f} s on chain, "
          f"{t_float:.1f} s float32")
    assert fixed >= 0.9 and ref >= 0.9, (fixed, ref)
    assert abs(fixed - ref) <= 0.01, (fixed, ref)
    # the trained model is what anyone reads from the contract
    assert type(trained) is Model and trained.kind == kind and list(trained.layers) == layers
