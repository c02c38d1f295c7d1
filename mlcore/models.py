"""Models on fixed-point tensors: linear regression, softmax regression and ReLU MLPs with 1-3 hidden
layers; their exact integer gradients and losses, SGD with momentum, many steps fused with
`lax.scan`, and federated averaging (docs/mlcore.md section 7).

An `Arch(kind, layers)` names the model; parameters are a tuple (w0, b0, w1, b1, ...) of int32
arrays in `WEIGHTS`, gradients the same tuple in `GRADS` (int64).  Every function is pure,
integer-only and jit-compatible with `arch` (and `classes`) static; the learning rate, the momentum,
the real row count `n` and the step order are traced integers, so new values never recompile.
Padding is exact: rows >= n, classes >= `classes`, and zero feature / hidden columns change no bit
of the real results (that is what lets mlcore.programs bucket shapes).
tests/test_mlcore_models.py holds a numpy int64 reference of the same rules and checks them bit
for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, PartitionSpec

from mlcore.activations import (EXP_CLAMP, PROBS, cross_entropy_grad, ln_q16, mse_grad, relu, relu_mask,
                                softmax, softmax_divide, softmax_terms)
from mlcore.fixed import (GOLDEN, MIX1, MIX2, WEIGHTS, FixedFormat, materialize, rescale, rng_key,
                          round_shift, round_shift_small, saturate)
from mlcore.matmul import matmul, matmul_tn, product_bound

INT64_MAX = (1 << 63) - 1
INPUTS = WEIGHTS  # inputs x and regression targets: Q.16 int32, quantised by the client
LOGITS = WEIGHTS  # outputs, logits and hidden activations: Q.16 int32
DELTAS = WEIGHTS  # dL/d(hidden pre-activation) per example: Q.16 int32
# Mean gradients: Q.32 in int64, saturated to |g| <= 256 so that lr * g <= 2**60 cannot overflow.
GRADS = FixedFormat(frac_bits=32, bits=64, max_abs=1 << 40)
# Learning rate: Q.16, 0 <= lr <= 16.  Momentum: Q.16, 0 <= mu < 1.
LR = FixedFormat(frac_bits=16, bits=32, max_abs=1 << 20)
MOMENTUM_MAX = (1 << 16) - 1
# lr (Q.16) * gradient (Q.32) back to WEIGHTS (Q.16).
STEP_SHIFT = LR.frac_bits + GRADS.frac_bits - WEIGHTS.frac_bits
ACC_SHIFT = INPUTS.frac_bits + WEIGHTS.frac_bits - LOGITS.frac_bits  # Q.32 accumulator -> Q.16
# A padded class's logit: more than EXP_CLAMP below any real logit, so its exp is exactly 0.
MASKED_LOGIT = -(LOGITS.max_abs + (EXP_CLAMP << LOGITS.frac_bits))
# Losses: Q.16 in int64 (cross-entropy <= 16 ln 2; squared error up to outputs * 127.5**2 / 2).
LOSS_FRAC = 16

KINDS = ("linear", "softmax", "mlp")
MAX_DIM = 16384
MAX_HIDDEN = 3
# Rows of one batch: 2 * max|x| * max|delta| * rows + rows must fit int64 (the gradient mean).
MAX_BATCH_ROWS = (INT64_MAX - 1) // (2 * INPUTS.max_abs * DELTAS.max_abs + 1)
# average: sum(weights) below 2**39 keeps sum(w * p) * 2 + sum(w) < 2**63 for |p| <= WEIGHTS.max_abs.
MAX_WEIGHT_SUM = (1 << 39) - 1


# ---- architectures -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Arch:
    """A model's kind and layer widths: (features, outputs) for "linear" and "softmax",
    (features, h1[, h2[, h3]], classes) for "mlp".  Hashable, so it is a static jit argument."""

    kind: str
    layers: tuple[int, ...]

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def classifier(self) -> bool:
        return self.kind != "linear"

    @property
    def features(self) -> int:
        return self.layers[0]

    @property
    def outputs(self) -> int:
        return self.layers[-1]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """The parameter shapes: ((l0, l1), (l1,), (l1, l2), (l2,), ...)."""
        out = []
        for a, b in zip(self.layers, self.layers[1:]):
            out += [(a, b), (b,)]
        return tuple(out)

    @property
    def size(self) -> int:
        """The number of parameters."""
        return sum(math.prod(s) for s in self.shapes)

    def check(self) -> Arch:
        """Validate the kind and widths and prove every int64 bound of section 7 that depends only
        on them (the batch-size bound is checked when a batch is traced); returns self."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        layers = self.layers
        if not isinstance(layers, tuple) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                    for d in layers):
            raise ValueError(f"layers must be a tuple of ints, got {layers!r}")
        want = "2" if self.kind != "mlp" else f"3 to {MAX_HIDDEN + 2}"
        if (len(layers) != 2) if self.kind != "mlp" else not 3 <= len(layers) <= MAX_HIDDEN + 2:
            raise ValueError(f"a {self.kind} model needs {want} layer widths, got {len(layers)}: {layers}")
        for d in layers:
            if not 1 <= d <= MAX_DIM:
                raise ValueError(f"layer widths must be in [1, {MAX_DIM}], got {layers}")
        # forward: |x @ w + b * 2**16| <= max_abs**2 * fan_in + max_abs * 2**16 (Q.32)
        # backward: |delta @ w^T| <= max_abs**2 * fan_out; linear loss: sum over outputs of d**2
        for k in layers:
            bound = product_bound(INPUTS, WEIGHTS, k) + (WEIGHTS.max_abs << INPUTS.frac_bits)
            if bound > INT64_MAX:
                raise ValueError(f"layer width {k} could overflow the int64 accumulator")
        return self


def _params(arch: Arch, params) -> tuple:
    """Check the count and shapes (static) and saturate to WEIGHTS: values entering from outside
    then cannot break the overflow proofs (a no-op for parameters mlcore produced)."""
    params = tuple(jnp.asarray(p) for p in params)
    shapes = tuple(tuple(p.shape) for p in params)
    if shapes != arch.shapes:
        raise ValueError(f"{arch.kind} {arch.layers} needs parameter shapes {arch.shapes}, got {shapes}")
    return tuple(saturate(p, WEIGHTS) for p in params)


def _rows(x, arch: Arch, name: str = "x", lead: int = 0, clip: bool = True) -> jnp.ndarray:
    """x (..., rows, features) as int32 saturated to INPUTS, with the batch bound checked
    (clip=False: checks only; the caller saturates each batch where it is used, which XLA fuses
    into the batch's first consumer instead of copying all the stacked batches)."""
    x = jnp.asarray(x)
    if x.dtype != INPUTS.dtype or x.ndim != 2 + lead:
        raise TypeError(f"{name} must be a {2 + lead}-d {INPUTS.dtype} array, got {x.dtype} with shape {x.shape}")
    if x.shape[-1] != arch.features:
        raise ValueError(f"{name} has {x.shape[-1]} features, the model takes {arch.features}")
    if x.shape[-2] > MAX_BATCH_ROWS:
        raise ValueError(f"batch of {x.shape[-2]} rows too large: gradient sums could overflow int64 "
                         f"(at most {MAX_BATCH_ROWS})")
    return saturate(x, INPUTS) if clip else x


def _targets(arch: Arch, y, rows: int, lead: int = 0) -> jnp.ndarray:
    """Labels (rows,) int32 for classifiers, Q.16 targets (rows, outputs) int32 for linear."""
    y = jnp.asarray(y)
    shape = y.shape[lead:]
    want = (rows,) if arch.classifier else (rows, arch.outputs)
    if y.dtype != jnp.int32 or shape != want:
        what = "labels" if arch.classifier else "targets"
        raise TypeError(f"{what} must be int32 with shape {want} per batch, got {y.dtype} {y.shape}")
    return y


def _classes(arch: Arch, classes: int | None) -> int:
    """The real class count (static); classes beyond it are padding."""
    if classes is None:
        return arch.outputs
    if not arch.classifier:
        raise ValueError("classes applies to classifiers only")
    if not isinstance(classes, int) or isinstance(classes, bool) or not 1 <= classes <= arch.outputs:
        raise ValueError(f"classes must be an int in [1, {arch.outputs}], got {classes!r}")
    return classes


# ---- hyperparameters and federated weights (host side) ------------------------------------------

def check_hyper(lr: int, momentum: int) -> None:
    """lr in LR (Q.16, [0, 16]) and momentum in Q.16 [0, 1), as plain ints (host side)."""
    for name, v, top in (("lr", lr, LR.max_abs), ("momentum", momentum, MOMENTUM_MAX)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or not 0 <= v <= top:
            raise ValueError(f"{name} must be an int in [0, {top}] (Q.16), got {v!r}")


def check_weights(weights) -> None:
    """Federated averaging weights: ints >= 0 with 0 < sum <= MAX_WEIGHT_SUM (host side)."""
    ws = list(weights)
    if not ws or not all(isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_)) and w >= 0
                         for w in ws):
        raise ValueError(f"weights must be a non-empty list of ints >= 0, got {weights!r}")
    if not 0 < sum(int(w) for w in ws) <= MAX_WEIGHT_SUM:
        raise ValueError(f"the weights must sum to an int in [1, {MAX_WEIGHT_SUM}], got {sum(ws)}")


def _hyper(lr, momentum) -> tuple[jnp.ndarray, jnp.ndarray]:
    """lr and momentum as int64 scalars: host scalars are validated by check_hyper; arrays (traced
    values) are clipped to the ranges (a no-op for valid ones) so the bounds hold for any input."""
    check_hyper(*(0 if isinstance(v, (jax.Array, np.ndarray)) else v for v in (lr, momentum)))
    lr = jnp.clip(jnp.asarray(lr).astype(jnp.int64), 0, LR.max_abs)
    mu = jnp.clip(jnp.asarray(momentum).astype(jnp.int64), 0, MOMENTUM_MAX)
    if lr.shape or mu.shape:
        raise ValueError("lr and momentum must be scalars")
    return lr, mu


# ---- initialisation (host side, from an integer seed) -------------------------------------------

def default_scale(fan_in: int) -> int:
    """The init bound in Q.16: 2**16 / isqrt(fan_in), rounded half up (an integer rule, no floats)."""
    r = math.isqrt(fan_in)
    return (2 * (1 << 16) + r) // (2 * r)


def host_random_bits(key: int, shape: tuple[int, ...]) -> np.ndarray:
    """mlcore.fixed.random_bits computed with numpy on the host (uint64 arithmetic wraps mod 2**64
    the same way): the same bits without an XLA compile per shape, which made init slow (~1 s for a
    new architecture).  tests/test_mlcore_models.py checks both against each other."""
    i = np.arange(1, math.prod(shape) + 1, dtype=np.uint64).reshape(shape)
    z = np.uint64(key) + i * np.uint64(GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def init_weights(seed: int, layer: int, shape: tuple[int, int], scale: int) -> np.ndarray:
    """Uniform weights in [-scale, scale) (Q.16) from SplitMix64 keyed by rng_key(seed, 0, 0, layer):

    u = (random_bits >> 47) - 2**16, uniform in [-2**16, 2**16);  w = round_shift(u * scale, 16)
    (|u * scale| < 2**40, so floor((u * scale + 2**15) / 2**16) in int64 is that rounding exactly).
    """
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= WEIGHTS.max_abs:
        raise ValueError(f"scale must be an int in [0, {WEIGHTS.max_abs}] (Q.16), got {scale!r}")
    u = (host_random_bits(rng_key(seed, 0, 0, layer), shape) >> np.uint64(47)).astype(np.int64) - (1 << 16)
    w = (u * scale + (1 << 15)) >> 16
    return np.clip(w, -WEIGHTS.max_abs, WEIGHTS.max_abs).astype(np.int32)


def init(arch: Arch, seed: int) -> tuple[np.ndarray, ...]:
    """Layer l's weights uniform in +-default_scale(fan_in) from rng_key(seed, 0, 0, l); biases 0."""
    arch.check()
    out = []
    for l, (a, b) in enumerate(zip(arch.layers, arch.layers[1:])):
        out += [init_weights(seed, l, (a, b), default_scale(a)), np.zeros((b,), np.int32)]
    return tuple(out)


def zeros_like(params) -> tuple:
    """A zero velocity for `params` (WEIGHTS, int32)."""
    return tuple(jnp.zeros_like(p) for p in params)


# ---- forward -------------------------------------------------------------------------------------

def dense(x: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """rescale(x @ w + b * 2**16, 16, LOGITS): exact Q.32 accumulator, round half up, saturated."""
    acc = matmul(x, w, INPUTS, WEIGHTS) + (b.astype(jnp.int64) << INPUTS.frac_bits)
    return rescale(acc, ACC_SHIFT, LOGITS)


def mask_classes(logits: jnp.ndarray, classes: int) -> jnp.ndarray:
    """Logits of classes >= `classes` (padding) set to MASKED_LOGIT: exp gives exactly 0 there."""
    if classes == logits.shape[-1]:
        return logits
    keep = jnp.arange(logits.shape[-1]) < classes
    return jnp.where(keep, logits, jnp.int32(MASKED_LOGIT))


def _forward(arch: Arch, params: tuple, x: jnp.ndarray, classes: int):
    """(pre-activations of the hidden layers, inputs of every layer, outputs)."""
    pres, acts = [], [x]
    for l in range(len(params) // 2 - 1):
        pres.append(dense(acts[-1], params[2 * l], params[2 * l + 1]))
        acts.append(relu(pres[-1]))
    out = dense(acts[-1], params[-2], params[-1])
    return pres, acts, mask_classes(out, classes) if arch.classifier else out


def forward(arch: Arch, params, x, classes: int | None = None) -> jnp.ndarray:
    """Outputs (rows, outputs) in LOGITS for x (rows, features) in INPUTS: regression outputs, or
    logits with the padded classes' set to MASKED_LOGIT."""
    arch.check()
    return _forward(arch, _params(arch, params), _rows(x, arch), _classes(arch, classes))[2]


def probabilities(arch: Arch, params, x, classes: int | None = None) -> jnp.ndarray:
    """softmax(forward(...)) in PROBS; padded classes get exactly 0."""
    if not arch.classifier:
        raise ValueError("probabilities need a classifier (softmax or mlp)")
    return softmax(forward(arch, params, x, classes), LOGITS, PROBS)


def predict(arch: Arch, params, x, classes: int | None = None) -> jnp.ndarray:
    """Labels (argmax, the first index on ties; int32) for classifiers, outputs (Q.16) for linear."""
    out = forward(arch, params, x, classes)
    return jnp.argmax(out, axis=-1).astype(jnp.int32) if arch.classifier else out


def one_hot(labels: jnp.ndarray, width: int, classes: int) -> jnp.ndarray:
    """Targets in PROBS: 2**16 at the label, 0 elsewhere; a label outside [0, classes) gives a zero row."""
    hit = (labels[:, None] == jnp.arange(width, dtype=labels.dtype)[None, :]) & (labels[:, None] < classes)
    return hit.astype(jnp.int32) << PROBS.frac_bits


# ---- gradients and losses ---------------------------------------------------------------------

def mean_half_up(total: jnp.ndarray, n) -> jnp.ndarray:
    """floor(total / n + 1/2) = (2 total + n) // (2 n) with floor division, for either sign of total."""
    return (2 * total + n) // (2 * n)


def _real_rows(n, rows: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(mask of the real rows, the divisor max(n, 1)) for a traced n clipped to [0, rows]."""
    n = jnp.clip(jnp.asarray(n).astype(jnp.int64), 0, rows)
    return jnp.arange(rows) < n, jnp.maximum(n, 1)


def _contract_rows(a: jnp.ndarray, a_fmt: FixedFormat, b: jnp.ndarray, b_fmt: FixedFormat) -> jnp.ndarray:
    """a^T @ b, contracting the batch axis exactly.  When that axis is sharded over an Explicit mesh
    axis, the product runs with the mesh's axes made Auto (the exact int64 partial sums are
    all-reduced by XLA) and comes back replicated, like the parameters it updates."""
    mesh = jax.typeof(a).sharding.mesh
    if not any(t == AxisType.Explicit for t in getattr(mesh, "axis_types", ())):
        return matmul_tn(a, b, a_fmt, b_fmt)
    with jax.sharding.use_abstract_mesh(mesh):
        return jax.sharding.auto_axes(lambda a, b: matmul_tn(a, b, a_fmt, b_fmt),
                                      out_sharding=PartitionSpec())(a, b)


def _output_grad(arch: Arch, out, y, classes: int):
    """dL/d(outputs) per row and its format, and softmax_terms (e, S) of the logits (classifiers;
    the loss reuses them) or None."""
    if arch.classifier:
        e, total = softmax_terms(out, LOGITS)
        p = softmax_divide(e, total, out.shape[-1], PROBS)
        return cross_entropy_grad(p, one_hot(y, out.shape[-1], classes)), PROBS, (e, total)
    return mse_grad(out, y, LOGITS), LOGITS, None


def _grad_sums(arch: Arch, params: tuple, x, y, mask, classes: int):
    """The exact Q.32 gradient sums over the real rows (int64, the params' structure), the outputs
    and the softmax terms (or None)."""
    pres, acts, out = _forward(arch, params, x, classes)
    g, g_fmt, terms = _output_grad(arch, out, y, classes)
    g = jnp.where(mask[:, None], g, jnp.zeros((), g.dtype))  # padded rows: no gradient
    sums = []
    for l in range(len(params) // 2 - 1, -1, -1):
        # g is read by two or three products and sums: computed once, not inside each of them
        g = materialize(g)
        gw = _contract_rows(acts[l], INPUTS if l == 0 else LOGITS, g, g_fmt)
        gb = jnp.sum(g.astype(jnp.int64), axis=0) << (GRADS.frac_bits - g_fmt.frac_bits)
        sums = [gw, gb] + sums
        if l:
            back = matmul(g, params[2 * l].T, g_fmt, WEIGHTS)  # Q.32 (PROBS) or Q.32 (DELTAS)
            shift = g_fmt.frac_bits + WEIGHTS.frac_bits - DELTAS.frac_bits
            g, g_fmt = rescale(back, shift, DELTAS) * relu_mask(pres[l - 1]), DELTAS
    return tuple(sums), out, terms


def grad_mean(total: jnp.ndarray, den) -> jnp.ndarray:
    """A gradient sum's mean over `den` rows: mean_half_up, saturated to GRADS."""
    return saturate(mean_half_up(total, den), GRADS)


def grads(arch: Arch, params, x, y, n, classes: int | None = None) -> tuple[tuple, jnp.ndarray]:
    """Mean gradients of the loss over the first n rows (GRADS, int64, the params' structure) and
    the outputs.  Every parameter's gradient is an exact Q.32 sum over the real rows, then
    `mean_half_up` over n, then saturated to GRADS; n == 0 gives zero gradients."""
    arch.check()
    params, x = _params(arch, params), _rows(x, arch)
    y = _targets(arch, y, x.shape[0])
    mask, den = _real_rows(n, x.shape[0])
    sums, out, _ = _grad_sums(arch, params, x, y, mask, _classes(arch, classes))
    return tuple(grad_mean(t, den) for t in sums), out


def _label_prob(e: jnp.ndarray, total: jnp.ndarray, y: jnp.ndarray, classes: int) -> jnp.ndarray:
    """p[r, y_r] of the softmax with terms (e, S) (PROBS, int64), 0 for a label outside [0, classes).

    The same bits as gathering from the softmax (the label's e over its row's S, the same
    rounding), with the division done for one entry per row instead of all of them."""
    width = e.shape[-1]
    hit = y[:, None] == jnp.arange(width, dtype=y.dtype)[None, :]
    p = softmax_divide(jnp.sum(jnp.where(hit, e, 0), axis=-1), total[:, 0], width, PROBS)
    return jnp.where((y >= 0) & (y < classes), p.astype(jnp.int64), 0)


def _loss(arch: Arch, out, y, mask, den, classes: int, terms=None) -> jnp.ndarray:
    """The mean loss; `terms`: softmax_terms of the (masked) logits when the caller has them."""
    if arch.classifier:
        e, total = softmax_terms(mask_classes(out, classes), LOGITS) if terms is None else terms
        p_label = _label_prob(e, total, y, classes)
        row = -ln_q16(jnp.maximum(p_label, 1), x_max=PROBS.max_abs)  # Q.16, in [0, 16 ln 2]
    else:
        d = mse_grad(out, y, LOGITS).astype(jnp.int64)  # saturated to WEIGHTS
        row = round_shift(jnp.sum(d * d, axis=-1), 2 * LOGITS.frac_bits + 1 - LOSS_FRAC)  # /2, Q.16
    return mean_half_up(jnp.sum(jnp.where(mask, row, 0)), den)


def _correct(arch: Arch, out, y, mask) -> jnp.ndarray:
    if not arch.classifier:
        return jnp.int32(0)
    hit = (jnp.argmax(out, axis=-1).astype(y.dtype) == y) & mask
    return jnp.sum(hit).astype(jnp.int32)


def loss(arch: Arch, outputs, y, n, classes: int | None = None) -> jnp.ndarray:
    """The mean loss over the first n rows, Q.16 int64 (0 when n == 0).

    classifiers: -ln_q16(max(p[label], 1)) with p = softmax(logits) in PROBS (a label outside the
    real classes has p = 0, so the row costs 16 ln 2); linear: round_shift(sum over outputs of
    saturate(out - y)**2, 17), i.e. half the squared error in Q.16.  Then mean_half_up over n.
    """
    arch.check()
    out = jnp.asarray(outputs)
    rows = out.shape[0]
    y = _targets(arch, y, rows)
    mask, den = _real_rows(n, rows)
    return _loss(arch, out, y, mask, den, _classes(arch, classes))


def evaluate(arch: Arch, params, x, y, n, classes: int | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(mean loss, Q.16 int64; correct predictions, int32) over the first n rows (0 for linear)."""
    arch.check()
    params, x = _params(arch, params), _rows(x, arch)
    y = _targets(arch, y, x.shape[0])
    classes = _classes(arch, classes)
    mask, den = _real_rows(n, x.shape[0])
    out = _forward(arch, params, x, classes)[2]
    return _loss(arch, out, y, mask, den, classes), _correct(arch, out, y, mask)


# ---- the SGD step and fused training ----------------------------------------------------------

def sgd(params, velocity, g, lr, momentum) -> tuple[tuple, tuple]:
    """Heavy-ball SGD per array (lr, momentum: Q.16 ints, possibly traced), for params and
    velocity in WEIGHTS and g in GRADS (as `grads` and `train` give them):

    v = saturate(round_shift(momentum * v, 16) + round_shift(lr * g, 32), WEIGHTS)
    p = saturate(p - v, WEIGHTS)
    (momentum = 0 is plain SGD: v is the rounded, saturated lr * g.)

    Those bounds keep every term far from int64's edge (|lr g| <= 2**60, |momentum v| < 2**39),
    so the plain shift of round_shift_small is round_shift itself, and p - v (|.| < 2**24) is
    exact in int32.  v is computed once into its own buffer (`materialize`): XLA would
    otherwise compute it again inside p's update.
    """
    lr, mu = _hyper(lr, momentum)

    def leaf(p, v, gl):
        step = round_shift_small(gl * lr, STEP_SHIFT)
        v = materialize(saturate(round_shift_small(v.astype(jnp.int64) * mu, 16) + step, WEIGHTS))
        return jnp.clip(p.astype(WEIGHTS.dtype) - v, -WEIGHTS.max_abs, WEIGHTS.max_abs), v

    pairs = [leaf(p, v, gl) for p, v, gl in zip(params, velocity, g)]
    return tuple(p for p, _ in pairs), tuple(v for _, v in pairs)


def _flat(arrays) -> jnp.ndarray:
    """Arrays raveled into one vector, in order."""
    return jnp.concatenate([a.reshape(-1) for a in arrays])


def _unflat(v: jnp.ndarray, shapes: tuple[tuple[int, ...], ...]) -> tuple:
    """The inverse of `_flat` for arrays of these shapes."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(v[start:start + size].reshape(shape))
        start += size
    return tuple(out)


def train(arch: Arch, params, velocity, xs, ys, ns, order, lr, momentum,
          classes: int | None = None) -> tuple[tuple, tuple, jnp.ndarray, jnp.ndarray]:
    """SGD steps over stacked batches, fused in one `lax.scan` over `order`.

    xs: (batches, rows, features), ys: (batches, rows) labels or (batches, rows, outputs) targets,
    ns: (batches,) real rows per batch, order: (steps,) int32 batch indices.  Step s trains on batch
    order[s]; a step whose n is 0 changes nothing (padding steps).  Returns (params, velocity, loss
    per step (int64 Q.16, on the batch before the step), correct per step (int32)).
    """
    arch.check()
    classes = _classes(arch, classes)
    params, velocity = _params(arch, params), _params(arch, velocity)
    xs = _rows(xs, arch, "xs", lead=1, clip=False)
    rows = xs.shape[1]
    ys = _targets(arch, ys, rows, lead=1)
    ns, order = jnp.asarray(ns), jnp.asarray(order)
    if ns.shape != xs.shape[:1] or order.ndim != 1 or ys.shape[0] != xs.shape[0]:
        raise ValueError(f"xs {xs.shape}, ys {ys.shape} and ns {ns.shape} must stack the same batches; "
                         f"order must be 1-d, got {order.shape}")
    lr, mu = _hyper(lr, momentum)
    shapes = arch.shapes

    # The parameters and velocity are carried as one flat vector each, so the gradient means
    # and the update are one elementwise pass over all parameters, not one per array (the
    # passes, not their arithmetic, are most of a small batch's step).
    def step(pf, vf, i):
        # the batch is sliced inside the branch: sliced outside, XLA copies it into the cond's
        # operands instead of fusing the slice into its consumers (a quarter of a step)
        x, y = saturate(xs[i], INPUTS), ys[i]
        mask, den = _real_rows(ns[i], rows)
        sums, out, terms = _grad_sums(arch, _unflat(pf, shapes), x, y, mask, classes)
        (pf,), (vf,) = sgd((pf,), (vf,), (grad_mean(_flat(sums), den),), lr, mu)
        stats = (_loss(arch, out, y, mask, den, classes, terms), _correct(arch, out, y, mask))
        return (pf, vf), stats

    def skip(pf, vf, i):
        return (pf, vf), (jnp.int64(0), jnp.int32(0))

    def body(carry, i):
        return lax.cond(ns[i] > 0, step, skip, *carry, i)

    (pf, vf), (losses, correct) = lax.scan(body, (_flat(params), _flat(velocity)), order)
    return _unflat(pf, shapes), _unflat(vf, shapes), losses, correct


# ---- federated averaging ----------------------------------------------------------------------

def average(stack, weights) -> tuple:
    """Weighted mean of models stacked on a leading axis (one entry per model) per parameter:
    p = (sum_i w_i * p_i) / sum_i w_i rounded half up (mean_half_up), exact in int64; int32.

    weights: int64 >= 0 (traced), 0 < sum <= MAX_WEIGHT_SUM (checked host side by check_weights:
    the int64 bound rests on it); a model of weight 0 (padding) contributes nothing.  Negative
    weights count as 0 and a zero sum gives zeros.
    """
    w = jnp.maximum(jnp.asarray(weights).astype(jnp.int64), 0)
    den = jnp.maximum(jnp.sum(w), 1)
    out = []
    for s in stack:
        s = saturate(jnp.asarray(s), WEIGHTS).astype(jnp.int64)
        if s.shape[:1] != w.shape:
            raise ValueError(f"{w.shape[0]} weights for a stack of {s.shape[0]} models")
        total = jnp.sum(s * w.reshape((-1,) + (1,) * (s.ndim - 1)), axis=0)
        out.append(saturate(mean_half_up(total, den), WEIGHTS))
    return tuple(out)
