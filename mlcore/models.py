"""Models on fixed-point tensors: softmax regression and a one-hidden-layer ReLU MLP, their exact
integer gradients, SGD with momentum, and many steps fused with `lax.scan` (docs/mlcore.md §7).

Parameters are NamedTuples of int32 arrays in `WEIGHTS`; gradients are NamedTuples of int64 arrays
in `GRADS`.  Every function is pure, integer-only and jit-compatible (the learning rate and the
momentum are static Python ints); tests/test_mlcore_models.py holds a numpy int64 reference of the
same rules and checks them bit for bit.  The loss itself (a log) is never evaluated: what a step
reports is the exact number of correct argmax predictions in its batch.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mlcore.activations import PROBS, cross_entropy_grad, relu, relu_mask, softmax
from mlcore.fixed import WEIGHTS, FixedFormat, random_bits, rescale, rng_key, round_shift, saturate
from mlcore.matmul import matmul, product_bound

INT64_MAX = (1 << 63) - 1
INPUTS = WEIGHTS  # inputs x: Q.16 int32, quantised by the client
LOGITS = WEIGHTS  # logits and hidden activations: Q.16 int32
DELTAS = WEIGHTS  # dL/d(hidden pre-activation) per example: Q.16 int32
# Mean gradients: Q.32 in int64, saturated to |g| <= 256 so that lr * g < 2**60 cannot overflow.
GRADS = FixedFormat(frac_bits=32, bits=64, max_abs=1 << 40)
# Learning rate: Q.16, 0 <= lr <= 16.  Momentum: Q.16, 0 <= mu < 1.
LR = FixedFormat(frac_bits=16, bits=32, max_abs=1 << 20)
MOMENTUM_MAX = (1 << 16) - 1
# lr (Q.16) * gradient (Q.32) back to WEIGHTS (Q.16).
STEP_SHIFT = LR.frac_bits + GRADS.frac_bits - WEIGHTS.frac_bits
ACC_SHIFT = INPUTS.frac_bits + WEIGHTS.frac_bits - LOGITS.frac_bits  # Q.32 accumulator -> Q.16


class SoftmaxRegression(NamedTuple):
    """logits = x @ w + b; w: (features, classes), b: (classes,), both WEIGHTS."""

    w: jnp.ndarray
    b: jnp.ndarray


class MLP(NamedTuple):
    """logits = relu(x @ w1 + b1) @ w2 + b2; w1: (features, hidden), w2: (hidden, classes)."""

    w1: jnp.ndarray
    b1: jnp.ndarray
    w2: jnp.ndarray
    b2: jnp.ndarray


Params = SoftmaxRegression | MLP


# ---- initialisation (host side, from an integer seed) -----------------------------------------

def default_scale(fan_in: int) -> int:
    """The init bound in Q.16: 2**16 / isqrt(fan_in), rounded half up (an integer rule, no floats)."""
    r = math.isqrt(fan_in)
    return (2 * (1 << 16) + r) // (2 * r)


def init_weights(seed: int, layer: int, shape: tuple[int, int], scale: int) -> jnp.ndarray:
    """Uniform weights in [-scale, scale) (Q.16) from SplitMix64 keyed by rng_key(seed, 0, 0, layer):

    u = (random_bits >> 47) - 2**16, uniform in [-2**16, 2**16);  w = round_shift(u * scale, 16).
    """
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= WEIGHTS.max_abs:
        raise ValueError(f"scale must be an int in [0, {WEIGHTS.max_abs}] (Q.16), got {scale!r}")
    key = rng_key(seed, 0, 0, layer)
    u = (random_bits(key, shape) >> 47).astype(jnp.int64) - (1 << 16)
    return rescale(u * scale, 16, WEIGHTS)


def _check_dims(**dims: int) -> None:
    for name, v in dims.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def init_softmax(seed: int, features: int, classes: int, scale: int | None = None) -> SoftmaxRegression:
    """Softmax regression with w uniform in ±scale (default 1/isqrt(features)) and b = 0."""
    _check_dims(features=features, classes=classes)
    scale = default_scale(features) if scale is None else scale
    return SoftmaxRegression(init_weights(seed, 0, (features, classes), scale),
                             jnp.zeros((classes,), jnp.int32))


def init_mlp(seed: int, features: int, hidden: int, classes: int) -> MLP:
    """One hidden ReLU layer; layer l's weights are uniform in ±1/isqrt(fan_in), biases 0."""
    _check_dims(features=features, hidden=hidden, classes=classes)
    return MLP(init_weights(seed, 0, (features, hidden), default_scale(features)),
               jnp.zeros((hidden,), jnp.int32),
               init_weights(seed, 1, (hidden, classes), default_scale(hidden)),
               jnp.zeros((classes,), jnp.int32))


def zeros_like(params: Params) -> Params:
    """A zero velocity for `params` (WEIGHTS, int32)."""
    return jax.tree_util.tree_map(jnp.zeros_like, params)


# ---- forward ---------------------------------------------------------------------------------

def dense(x: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """rescale(x @ w + b * 2**16, 16, LOGITS): exact Q.32 accumulator, round half up, saturated."""
    bound = product_bound(INPUTS, WEIGHTS, x.shape[1]) + (WEIGHTS.max_abs << INPUTS.frac_bits)
    if bound > INT64_MAX:
        raise ValueError(f"x @ w + b could overflow int64 with {x.shape[1]} inputs")
    acc = matmul(x, w, INPUTS, WEIGHTS) + (b.astype(jnp.int64) << INPUTS.frac_bits)
    return rescale(acc, ACC_SHIFT, LOGITS)


def forward(params: Params, x) -> jnp.ndarray:
    """Logits (batch, classes) in LOGITS for x (batch, features) in INPUTS."""
    x = jnp.asarray(x)
    if x.dtype != INPUTS.dtype or x.ndim != 2:
        raise TypeError(f"x must be a 2-d {INPUTS.dtype} array, got {x.dtype} with shape {x.shape}")
    if isinstance(params, SoftmaxRegression):
        return dense(x, params.w, params.b)
    return dense(relu(dense(x, params.w1, params.b1)), params.w2, params.b2)


def probabilities(params: Params, x) -> jnp.ndarray:
    """softmax(forward(params, x)) in PROBS."""
    return softmax(forward(params, x), LOGITS, PROBS)


def one_hot(labels: jnp.ndarray, classes: int) -> jnp.ndarray:
    """Targets in PROBS: 2**16 at the label, 0 elsewhere (a label outside [0, classes) gives a zero row)."""
    hit = labels[:, None] == jnp.arange(classes, dtype=labels.dtype)[None, :]
    return hit.astype(jnp.int32) << PROBS.frac_bits


def correct(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """How many rows' argmax (the first index on ties) equals the label, as int32."""
    return jnp.sum(jnp.argmax(logits, axis=-1) == labels).astype(jnp.int32)


# ---- gradients -------------------------------------------------------------------------------

def mean_half_up(total: jnp.ndarray, n: int) -> jnp.ndarray:
    """floor(total / n + 1/2) = (2 total + n) // (2 n) with floor division, for either sign of total."""
    return (2 * total + n) // (2 * n)


def _mean_grad(total: jnp.ndarray, batch: int) -> jnp.ndarray:
    """An exact Q.32 batch sum -> the mean over the batch, rounded half up, saturated to GRADS."""
    return saturate(mean_half_up(total, batch), GRADS)


def _dense_grads(x: jnp.ndarray, x_fmt: FixedFormat, delta: jnp.ndarray, d_fmt: FixedFormat):
    """Batch sums of dL/dw = x^T delta (exact, Q.32) and dL/db = sum(delta) * 2**(32 - f_delta)."""
    gw = matmul(x.T, delta, x_fmt, d_fmt)
    gb = jnp.sum(delta.astype(jnp.int64), axis=0) << (GRADS.frac_bits - d_fmt.frac_bits)
    return gw, gb


def grads(params: Params, x, labels) -> tuple[Params, jnp.ndarray]:
    """Mean cross-entropy gradients (GRADS, int64, same structure as params) and the logits.

    g = softmax(logits) - one_hot(labels) in PROBS (exact); every parameter's gradient is first an
    exact Q.32 batch sum, then `mean_half_up` over the batch, then saturated to GRADS.  Through the
    hidden layer: delta = rescale(g @ w2^T, 16, DELTAS) * relu_mask(pre-activation).
    """
    x = jnp.asarray(x)
    batch = x.shape[0]
    if batch < 1:
        raise ValueError("a batch needs at least one row")
    # the largest batch sum (x^T delta with both operands in WEIGHTS' bound) must stay in int64 after 2*s + n
    if 2 * product_bound(INPUTS, WEIGHTS, batch) + batch > INT64_MAX:
        raise ValueError(f"batch of {batch} rows too large: gradient sums could overflow int64")
    if isinstance(params, SoftmaxRegression):
        logits = forward(params, x)
        g = cross_entropy_grad(softmax(logits, LOGITS, PROBS), one_hot(labels, params.b.shape[0]))
        gw, gb = _dense_grads(x, INPUTS, g, PROBS)
        return SoftmaxRegression(_mean_grad(gw, batch), _mean_grad(gb, batch)), logits
    pre = dense(x, params.w1, params.b1)
    h = relu(pre)
    logits = dense(h, params.w2, params.b2)
    g = cross_entropy_grad(softmax(logits, LOGITS, PROBS), one_hot(labels, params.b2.shape[0]))
    gw2, gb2 = _dense_grads(h, LOGITS, g, PROBS)
    back = matmul(g, params.w2.T, PROBS, WEIGHTS)  # Q.32
    delta = rescale(back, PROBS.frac_bits + WEIGHTS.frac_bits - DELTAS.frac_bits, DELTAS) * relu_mask(pre)
    gw1, gb1 = _dense_grads(x, INPUTS, delta, DELTAS)
    return MLP(*(_mean_grad(t, batch) for t in (gw1, gb1, gw2, gb2))), logits


# ---- the SGD step ----------------------------------------------------------------------------

def check_hyper(lr: int, momentum: int) -> None:
    """lr in LR (Q.16, [0, 16]) and momentum in Q.16 [0, 1), as plain ints."""
    for name, v, top in (("lr", lr, LR.max_abs), ("momentum", momentum, MOMENTUM_MAX)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
            raise ValueError(f"{name} must be an int in [0, {top}] (Q.16), got {v!r}")


def sgd(params: Params, velocity: Params, g: Params, lr: int, momentum: int = 0) -> tuple[Params, Params]:
    """Heavy-ball SGD per leaf, all WEIGHTS:

    v = saturate(round_shift(momentum * v, 16) + round_shift(lr * g, 32), WEIGHTS)
    p = saturate(p - v, WEIGHTS)
    (momentum = 0 is plain SGD: v is the rounded, saturated lr * g.)
    """
    check_hyper(lr, momentum)

    def leaf(p, v, gl):
        step = round_shift(gl * lr, STEP_SHIFT)
        v = saturate(round_shift(v.astype(jnp.int64) * momentum, 16) + step, WEIGHTS)
        return saturate(p.astype(jnp.int64) - v, WEIGHTS), v

    pairs = [leaf(p, v, gl) for p, v, gl in zip(params, velocity, g)]
    return type(params)(*(p for p, _ in pairs)), type(params)(*(v for _, v in pairs))


def train_step(params: Params, velocity: Params, x, labels, lr: int, momentum: int = 0):
    """One gradient step on a batch: (params, velocity, correct predictions before the step)."""
    g, logits = grads(params, x, labels)
    params, velocity = sgd(params, velocity, g, lr, momentum)
    return params, velocity, correct(logits, labels)


def train_steps(params: Params, xs, ys, lr: int, momentum: int = 0, velocity: Params | None = None):
    """Steps over mini-batches stacked on a leading axis (xs: (steps, batch, features), ys: (steps,
    batch) int labels) fused in one `lax.scan`: (params, velocity, correct per step as int32)."""
    check_hyper(lr, momentum)
    velocity = zeros_like(params) if velocity is None else velocity

    def body(carry, batch):
        p, v, c = train_step(*carry, *batch, lr, momentum)
        return (p, v), c

    (params, velocity), hits = lax.scan(body, (params, velocity), (jnp.asarray(xs), jnp.asarray(ys)))
    return params, velocity, hits
