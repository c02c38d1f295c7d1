"""The float32 twin of mlcore.models: the same architectures trained with plain float32 JAX.

Not consensus.  It is the yardstick the issue measures us against: the accuracy tests train
the same model from the same (dequantised) start, on the same batches with the same learning
rate and momentum, and compare held-out accuracy; the benchmarks time its fused step beside
ours.  Gradients come from `jax.grad` of the mean loss (cross-entropy for classifiers, half the
squared error for linear models), the update is the same heavy-ball rule as mlcore.models.sgd:
v = momentum * v + lr * g;  p = p - v.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mlcore.fixed import WEIGHTS, dequantize


def from_fixed(params) -> tuple[jnp.ndarray, ...]:
    """Q.16 int32 parameters (w0, b0, w1, b1, ...) as float32 arrays."""
    return tuple(jnp.asarray(dequantize(np.asarray(p), WEIGHTS), jnp.float32) for p in params)


def forward(params, x: jnp.ndarray) -> jnp.ndarray:
    """Outputs (linear) or logits: dense layers, ReLU between them."""
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h


def loss(kind: str, params, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    out = forward(params, x)
    if kind == "linear":
        return jnp.mean(jnp.sum((out - y) ** 2, axis=-1)) / 2
    logp = jax.nn.log_softmax(out, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))


def _step(kind: str, params, velocity, x, y, lr, momentum):
    value, g = jax.value_and_grad(partial(loss, kind))(params, x, y)
    velocity = tuple(momentum * vi + lr * gi for vi, gi in zip(velocity, g))
    return tuple(pi - vi for pi, vi in zip(params, velocity)), velocity, value


@partial(jax.jit, static_argnums=0)
def step(kind: str, params, velocity, x: jnp.ndarray, y: jnp.ndarray, lr: float, momentum: float):
    """One step on one batch (any batch size): (params, velocity, loss before the step)."""
    return _step(kind, tuple(params), tuple(velocity), x, y, lr, momentum)


@partial(jax.jit, static_argnums=0)
def train(kind: str, params, xs: jnp.ndarray, ys: jnp.ndarray, lr: float, momentum: float):
    """Steps over batches stacked on axis 0, fused in one lax.scan: (params, velocity, losses)."""
    def body(carry, batch):
        p, v, value = _step(kind, *carry, *batch, lr, momentum)
        return (p, v), value

    velocity = tuple(jnp.zeros_like(p) for p in params)
    (params, velocity), losses = jax.lax.scan(body, (tuple(params), velocity), (xs, ys))
    return params, velocity, losses


def accuracy(params, x: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax logit is the label."""
    logits = forward(params, jnp.asarray(x, jnp.float32))
    return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(labels)))
