"""mlcore.models against an independent numpy reference: architectures, init, forward, gradients,
losses, SGD with momentum, fused training over an order of batches with real-row counts, and
federated averaging, for linear regression, softmax regression and MLPs with 1-3 hidden layers, bit
for bit; padding (rows, classes, features, hidden units, steps, models) that changes no bit; the
same bits under jit, eager, 8 sharded devices and XLA CPU flags; and training that learns, like
float32 training from the same start.

The references are the rules of docs/mlcore.md section 7 written naively (int64 matrix products,
divmod for means, the activations tests' softmax and log references).
"""
from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcore import models as M
from mlcore.activations import PROBS
from mlcore.fixed import WEIGHTS, dequantize, quantize, random_bits
from tests.test_mlcore_activations import ref_div_half_up, ref_ln_q16, ref_softmax
from tests.test_mlcore_fixed import ref_key, ref_random_bits, ref_round_shift, ref_saturate
from tests.xla_configs import CONFIGS, assert_same_everywhere

Arch = M.Arch
STATIC = {"static_argnums": 0, "static_argnames": "classes"}
TRAIN = jax.jit(M.train, **STATIC)
GRADS = jax.jit(M.grads, **STATIC)
FORWARD = jax.jit(M.forward, **STATIC)
PROBABILITIES = jax.jit(M.probabilities, **STATIC)
PREDICT = jax.jit(M.predict, **STATIC)
LOSS = jax.jit(M.loss, **STATIC)
EVALUATE = jax.jit(M.evaluate, **STATIC)
AVERAGE = jax.jit(M.average)
LR = 1 << 15  # 0.5
MU = 58982  # 0.9 in Q.16
BIG = WEIGHTS.max_abs
# a padded class's logit: 64 below the lowest real logit (-127.5), where exp is exactly 0
MASKED = -(BIG + 64 * 2 ** 16)

ARCHS = {
    "linear": Arch("linear", (5, 2)),
    "softmax": Arch("softmax", (5, 3)),
    "mlp1": Arch("mlp", (5, 8, 3)),
    "mlp2": Arch("mlp", (5, 8, 6, 3)),
    "mlp3": Arch("mlp", (5, 8, 6, 4, 3)),
}


# ---- numpy reference -------------------------------------------------------------------------

def ref_init(seed: int, layer: int, shape: tuple[int, int], scale: int) -> np.ndarray:
    u = (ref_random_bits(ref_key(seed, 0, 0, layer), shape) >> np.uint64(47)).astype(np.int64) - 2 ** 16
    return ref_saturate(ref_round_shift(u * scale, 16), WEIGHTS)


def ref_dense(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    acc = x.astype(np.int64) @ w.astype(np.int64) + b.astype(np.int64) * 2 ** 16
    return ref_saturate(ref_round_shift(acc, 16), WEIGHTS)


def ref_mean(total, n: int) -> np.ndarray:
    """floor(total / n + 1/2) by divmod (n >= 1), as int64."""
    t = np.asarray(total, dtype=np.int64)
    return ref_div_half_up(t.reshape(-1), np.array([n], np.int64)).reshape(t.shape)


def ref_forward(arch: Arch, params, x: np.ndarray, classes: int | None = None):
    """(hidden pre-activations, layer inputs, outputs with the padded classes masked)."""
    p = [np.asarray(a) for a in params]
    pres, acts = [], [x]
    for i in range(len(p) // 2 - 1):
        pres.append(ref_dense(acts[-1], p[2 * i], p[2 * i + 1]))
        acts.append(np.maximum(pres[-1], 0))
    out = ref_dense(acts[-1], p[-2], p[-1])
    if arch.kind != "linear" and classes is not None:
        out[:, classes:] = MASKED
    return pres, acts, out


def ref_onehot(y: np.ndarray, width: int, classes: int) -> np.ndarray:
    return ((y[:, None] == np.arange(width)) & (y[:, None] < classes)).astype(np.int64) * 2 ** 16


def ref_grads(arch: Arch, params, x: np.ndarray, y: np.ndarray, n: int, classes: int | None = None):
    """Mean gradients over the first n rows (GRADS) and the outputs, by the documented rules."""
    p = [np.asarray(a).astype(np.int64) for a in params]
    classes = arch.outputs if classes is None else classes
    pres, acts, out = ref_forward(arch, params, x, classes)
    if arch.kind == "linear":
        g = ref_saturate(out.astype(np.int64) - y, WEIGHTS).astype(np.int64)
    else:
        g = ref_saturate(ref_softmax(out, WEIGHTS).astype(np.int64) - ref_onehot(y, out.shape[1], classes),
                         PROBS).astype(np.int64)
    n = min(max(n, 0), x.shape[0])
    g[n:] = 0
    sums = []
    for i in range(len(p) // 2 - 1, -1, -1):
        sums = [acts[i].astype(np.int64).T @ g, g.sum(0) * 2 ** 16] + sums
        if i:
            back = ref_saturate(ref_round_shift(g @ p[2 * i].T, 16), WEIGHTS).astype(np.int64)
            g = back * (pres[i - 1] > 0)
    return [ref_saturate(ref_mean(t, max(n, 1)), M.GRADS) for t in sums], out


def ref_loss(arch: Arch, out: np.ndarray, y: np.ndarray, n: int, classes: int | None = None) -> int:
    n = min(max(n, 0), out.shape[0])
    if arch.kind == "linear":
        d = ref_saturate(out.astype(np.int64) - y, WEIGHTS).astype(np.int64)
        row = ref_round_shift((d * d).sum(1), 17)
    else:
        classes = arch.outputs if classes is None else classes
        p = ref_softmax(out, WEIGHTS).astype(np.int64)
        ok = (y >= 0) & (y < classes)
        p_label = np.where(ok, p[np.arange(len(y)), np.clip(y, 0, out.shape[1] - 1)], 0)
        row = -ref_ln_q16(np.maximum(p_label, 1))
    return int(ref_mean(row[:n].sum(), max(n, 1)))


def ref_correct(arch: Arch, out: np.ndarray, y: np.ndarray, n: int) -> int:
    return 0 if arch.kind == "linear" else int(np.sum(np.argmax(out[:n], -1) == y[:n]))


def ref_sgd(params, velocity, grads, lr: int, mu: int):
    new_p, new_v = [], []
    for p, v, g in zip(params, velocity, grads):
        v = ref_saturate(ref_round_shift(v.astype(np.int64) * mu, 16) + ref_round_shift(g * lr, 32), WEIGHTS)
        new_p.append(ref_saturate(p.astype(np.int64) - v, WEIGHTS))
        new_v.append(v)
    return new_p, new_v


def ref_train(arch: Arch, params, xs, ys, ns, order, lr: int, mu: int, classes=None, velocity=None):
    """(params, velocity, losses, correct) of the documented step rules over `order`."""
    p = [np.asarray(a) for a in params]
    v = [np.zeros_like(a) for a in p] if velocity is None else [np.asarray(a) for a in velocity]
    losses, hits = [], []
    for i in order:
        x, y, n = xs[i], ys[i], int(ns[i])
        if n == 0:
            losses.append(0)
            hits.append(0)
            continue
        g, out = ref_grads(arch, p, x, y, n, classes)
        losses.append(ref_loss(arch, out, y, n, classes))
        hits.append(ref_correct(arch, out, y, n))
        p, v = ref_sgd(p, v, g, lr, mu)
    return p, v, losses, hits


def ref_average(stack, weights) -> list[np.ndarray]:
    w = np.asarray(weights, dtype=object)
    out = []
    for s in stack:
        total = np.tensordot(w, np.asarray(s).astype(object), axes=1)
        out.append(ref_div_half_up(total, np.asarray(sum(weights))).astype(np.int32))
    return out


# ---- data and helpers ------------------------------------------------------------------------

def data(seed: int, arch: Arch, batches: int, rows: int, extreme: bool = False):
    rng = np.random.default_rng(seed)
    xs = quantize(rng.normal(0, 2, (batches, rows, arch.features)), WEIGHTS)
    if extreme:  # rows at the format bounds drive outputs, gradients and updates into saturation
        xs[0, 0], xs[0, 1] = BIG, -BIG
    if arch.kind == "linear":
        ys = quantize(rng.normal(0, 2, (batches, rows, arch.outputs)), WEIGHTS)
    else:
        ys = rng.integers(0, arch.outputs, (batches, rows)).astype(np.int32)
    return xs, ys


def np_tree(params) -> list[np.ndarray]:
    return [np.asarray(a) for a in params]


def sha(params) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(np.asarray(a)).tobytes() for a in params)).hexdigest()


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() and
                                    np.asarray(x).shape == np.asarray(y).shape for x, y in zip(a, b))


# ---- architectures and init ------------------------------------------------------------------

def test_arch_check_refuses_bad_architectures():
    for arch in ARCHS.values():
        assert arch.check() is arch and hash(arch) == hash(Arch(arch.kind, tuple(arch.layers)))
    a = ARCHS["mlp2"]
    assert a.shapes == ((5, 8), (8,), (8, 6), (6,), (6, 3), (3,)) and a.size == 48 + 54 + 21
    assert Arch("mlp", [5, 8, 3]) == ARCHS["mlp1"] and not ARCHS["linear"].classifier
    Arch("mlp", (M.MAX_DIM,) * 5).check()  # the widest model's bounds hold: nothing allocated
    for kind, layers, match in [("cnn", (2, 2), "unknown model kind"), ("softmax", (5,), "2 layer"),
                                ("linear", (5, 3, 2), "2 layer"), ("mlp", (5, 3), "3 to 5"),
                                ("mlp", (5, 1, 1, 1, 1, 3), "3 to 5"), ("mlp", (5, 0, 3), "widths"),
                                ("linear", (M.MAX_DIM + 1, 1), "widths"), ("linear", (True, 2), "ints"),
                                ("linear", (2.0, 2), "ints")]:
        with pytest.raises(ValueError, match=match):
            Arch(kind, layers).check()


def test_init_is_seeded_splitmix64_and_unchanged():
    p = M.init(Arch("mlp", (6, 9, 4)), 11)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int32 for a in p)
    assert np.array_equal(p[0], ref_init(11, 0, (6, 9), M.default_scale(6)))
    assert np.array_equal(p[2], ref_init(11, 1, (9, 4), M.default_scale(9)))
    assert not p[1].any() and not p[3].any() and np.abs(p[0]).max() <= 32768
    assert M.default_scale(6) == 32768 and M.default_scale(9) == 21845  # 2**16 / isqrt(n), half up
    # the bytes of the former init_mlp(11, 6, 9, 4) and init_softmax(11, 6, 4)
    assert sha(p) == "6f050be56c881dbcac0c9ea63c175fd8fdef1b704630afcf0311bea5d49af5cd"
    assert sha(M.init(Arch("softmax", (6, 4)), 11)) == \
        "f7360fa6e16c08aebae06e4d6aa11b84783bed3ac5ac0625eda17ea9ac6e6b84"
    deep = M.init(ARCHS["mlp3"], 4)
    for layer, (fan_in, fan_out) in enumerate([(5, 8), (8, 6), (6, 4), (4, 3)]):
        assert np.array_equal(deep[2 * layer], ref_init(4, layer, (fan_in, fan_out), M.default_scale(fan_in)))
    assert sha(M.init(ARCHS["linear"], 12)) != sha(M.init(ARCHS["linear"], 11)) == sha(M.init(ARCHS["linear"], 11))
    # init's numpy SplitMix64 gives mlcore.fixed.random_bits' bits
    for key, shape in ((0, (7,)), (ref_key(3, 0, 0, 2), (5, 9)), (2 ** 64 - 1, (2, 3, 4))):
        assert np.array_equal(M.host_random_bits(key, shape), np.asarray(random_bits(key, shape)))


def test_mean_rounds_half_up_for_both_signs():
    t = np.array([3, -3, 5, -5, 7, -7, 1, -1, 0, (1 << 61) - 1, -(1 << 61)], dtype=np.int64)
    got = np.asarray(jax.jit(M.mean_half_up)(jnp.asarray(t), 2)).tolist()  # n traced
    assert got[:9] == [2, -1, 3, -2, 4, -3, 1, 0, 0]  # 1.5 -> 2, -1.5 -> -1: ties toward +infinity
    assert got == [int(v) for v in ref_mean(t, 2)[:9]] + [1 << 60, -(1 << 60)]
    t4 = np.arange(-20, 21, dtype=np.int64)
    assert np.array_equal(np.asarray(M.mean_half_up(jnp.asarray(t4), 4)), np.floor(t4 / 4 + 0.5))


# ---- forward, gradients, losses ----------------------------------------------------------------

def test_forward_predict_and_probabilities_match_reference():
    for name, arch in ARCHS.items():
        x = data(1, arch, 1, 33, extreme=True)[0][0]
        params = M.init(arch, 3)
        out = np.asarray(FORWARD(arch, params, x))
        assert out.dtype == np.int32 and np.array_equal(out, ref_forward(arch, params, x)[2]), name
        if name not in ("linear", "mlp2"):  # the other functions on two models (each compiles)
            continue
        pred = np.asarray(PREDICT(arch, params, x))
        if arch.kind == "linear":
            assert np.array_equal(pred, out)
            with pytest.raises(ValueError, match="classifier"):
                M.probabilities(arch, params, x)
        else:
            assert pred.dtype == np.int32 and np.array_equal(pred, np.argmax(out, -1)), name
            assert np.array_equal(np.asarray(PROBABILITIES(arch, params, x)), ref_softmax(out, WEIGHTS)), name


@pytest.mark.parametrize("name", list(ARCHS))
def test_gradients_match_reference_and_saturate(name):
    arch = ARCHS[name]
    xs, ys = data(6, arch, 1, 16, extreme=True)
    params = M.init(arch, 4)
    # weights at the bounds on inputs at the bounds: outputs, deltas and gradients saturate
    big = [np.where(np.arange(a.size).reshape(a.shape) % 3 == 0, -BIG, BIG).astype(np.int32) for a in params]
    at_bounds = np.where(xs[0] >= 0, BIG, -BIG).astype(np.int32)
    saturated = False
    for p, x in ((params, xs[0]), (big, at_bounds)):
        for n in (16, 5, 0, 99):  # all rows, a prefix, none, and more than there are (clipped)
            g, out = GRADS(arch, p, x, ys[0], n)
            rg, rout = ref_grads(arch, p, x, ys[0], n)
            assert [a.dtype for a in np_tree(g)] == [np.int64] * len(p)
            assert same(np_tree(g), rg) and np.array_equal(np.asarray(out), rout), (name, n)
            saturated |= max(np.abs(a).max() for a in rg) == M.GRADS.max_abs
            if n == 0:
                assert not any(a.any() for a in rg)
    assert saturated or arch.kind != "mlp"  # |x * delta| up to 127.5**2 saturates GRADS


@pytest.mark.parametrize("name", ["linear", "softmax", "mlp2"])
def test_loss_and_evaluate_match_reference(name):
    arch = ARCHS[name]
    xs, ys = data(7, arch, 1, 16, extreme=True)
    x, y = xs[0], ys[0]
    if arch.classifier:
        y = y.copy()
        y[3], y[4] = -1, arch.outputs  # labels outside the classes: p = 0, clamped to one unit
    params = M.init(arch, 5)
    out = np.asarray(FORWARD(arch, params, x))
    for n in (16, 7, 0):
        want = ref_loss(arch, out, y, n)
        got = LOSS(arch, out, y, n)
        assert got.dtype == np.int64 and int(got) == want, (n, int(got), want)
        loss, correct = EVALUATE(arch, params, x, y, n)
        assert (int(loss), int(correct)) == (want, ref_correct(arch, out, y, n))
    assert int(LOSS(arch, out, y, 0)) == 0
    z = dequantize(out, WEIGHTS)
    if arch.classifier:  # against float64 cross-entropy of the same logits (rows with real labels)
        assert int(LOSS(arch, out[3:5], y[3:5], 2)) == 726817  # 16 ln 2 in Q.16
        lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
        nll = lse - z[np.arange(16), np.clip(y, 0, 2)]
        real = np.flatnonzero((nll < 6) & (y >= 0) & (y < 3))  # real labels, p > 0.25%: no clamping
        got = int(LOSS(arch, out[real], y[real], len(real))) / 2 ** 16
        # p is within half a Q.16 unit, so -ln p within 0.5 / (p 2**16); ln adds 0.5 unit, the mean 0.5
        bound = np.mean(0.5 / (np.exp(-nll[real]) * 2 ** 16 - 0.5) + 0.51 / 2 ** 16) + 0.5 / 2 ** 16
        assert len(real) >= 8 and abs(got - np.mean(nll[real])) < bound
    else:
        exact = np.mean(np.sum((z - dequantize(y, WEIGHTS)) ** 2, -1) / 2)
        assert abs(int(LOSS(arch, out, y, 16)) / 2 ** 16 - exact) <= 2 ** -16


# ---- training ----------------------------------------------------------------------------------

NS = np.array([16, 11, 0, 16], np.int32)  # a short batch and an empty one (a no-op step)
ORDER = np.array([0, 1, 2, 3, 1, 0, 2, 3], np.int32)


@pytest.mark.parametrize("name,lr,mu", [("linear", LR // 16, MU), ("softmax", LR, 0), ("mlp1", LR, MU),
                                        ("mlp2", M.LR.max_abs, MU), ("mlp3", LR, MU)])
def test_training_matches_reference_bit_for_bit(name, lr, mu):
    arch = ARCHS[name]
    params = M.init(arch, 5)
    xs, ys = data(2, arch, 4, 16, extreme=True)
    p, v, losses, hits = TRAIN(arch, params, M.zeros_like(params), xs, ys, NS, ORDER, jnp.int32(lr),
                               jnp.int32(mu))
    rp, rv, rlosses, rhits = ref_train(arch, params, xs, ys, NS, ORDER, lr, mu)
    assert [a.dtype for a in np_tree(p) + np_tree(v)] == [np.int32] * 2 * len(params)
    assert same(np_tree(p) + np_tree(v), rp + rv)
    assert np.asarray(losses).dtype == np.int64 and np.asarray(losses).tolist() == rlosses
    assert np.asarray(hits).dtype == np.int32 and np.asarray(hits).tolist() == rhits
    assert rlosses[2] == rlosses[6] == rhits[2] == 0 and rlosses[0] > 0
    if lr == M.LR.max_abs:  # lr = 16 on inputs at the bounds: updates and weights saturate
        assert any(np.abs(a).max() == BIG for a in rp + rv)
    # sgd on its own is the update of one step
    g, _ = GRADS(arch, params, xs[0], ys[0], 16)
    p1, v1 = jax.jit(M.sgd)(params, M.zeros_like(params), g, lr, mu)
    rp1, rv1 = ref_sgd(params, [np.zeros_like(a) for a in params], ref_grads(arch, params, xs[0], ys[0], 16)[0],
                       lr, mu)
    assert same(np_tree(p1) + np_tree(v1), rp1 + rv1)


def test_velocity_carries_over_and_hyperparameters_never_recompile():
    arch = ARCHS["mlp2"]
    params, zero = M.init(arch, 6), M.zeros_like(M.init(arch, 6))
    xs, ys = data(3, arch, 4, 16)
    full = TRAIN(arch, params, zero, xs, ys, NS, ORDER, LR, MU)
    p2, v2, l2, _ = TRAIN(arch, params, zero, xs, ys, NS, ORDER[:4], LR, MU)  # halves of one shape:
    p4, v4, l4, _ = TRAIN(arch, p2, v2, xs, ys, NS, ORDER[4:], LR, MU)      # one compile
    assert same(np_tree(p4) + np_tree(v4), np_tree(full[0]) + np_tree(full[1]))
    assert np.asarray(l2).tolist() + np.asarray(l4).tolist() == np.asarray(full[2]).tolist()
    compiled = TRAIN._cache_size()
    other = TRAIN(arch, params, zero, xs, ys, NS, ORDER, LR // 3, 0)  # new lr and momentum: no compile
    assert TRAIN._cache_size() == compiled and sha(other[0]) != sha(full[0])
    # traced values outside the ranges are clipped to them (the overflow bounds hold for any input)
    hi = TRAIN(arch, params, zero, xs, ys, NS, ORDER, M.LR.max_abs + 12345, 1 << 20)
    top = TRAIN(arch, params, zero, xs, ys, NS, ORDER, M.LR.max_abs, M.MOMENTUM_MAX)
    assert same(np_tree(hi[0]) + np_tree(hi[1]), np_tree(top[0]) + np_tree(top[1]))
    for lr, mu in ((-1, 0), (M.LR.max_abs + 1, 0), (1.5, 0), (LR, 1 << 16), (LR, True)):
        with pytest.raises(ValueError, match="lr|momentum"):
            M.check_hyper(lr, mu)
        with pytest.raises(ValueError, match="lr|momentum"):
            M.train(arch, params, zero, xs, ys, NS, ORDER, lr, mu)


def pad(a: np.ndarray, shape: tuple[int, ...], fill=None, rng=None) -> np.ndarray:
    """a in the corner of zeros of `shape` (or of random ints in [0, fill), where `fill` is given)."""
    out = np.zeros(shape, a.dtype) if fill is None else rng.integers(0, fill, shape).astype(a.dtype)
    out[tuple(slice(0, d) for d in a.shape)] = a
    return out


@pytest.mark.parametrize("real,padded", [(Arch("mlp", (5, 8, 6, 3)), Arch("mlp", (8, 10, 8, 5))),
                                         (Arch("linear", (5, 2)), Arch("linear", (7, 4)))])
def test_padding_changes_no_bit(real, padded):
    """Zero features, hidden units and outputs, extra classes, garbage rows beyond n and empty steps:
    20 steps with momentum give the unpadded model's bits, and the padding stays exactly zero."""
    rng = np.random.default_rng(9)
    params = M.init(real, 8)
    xs, ys = data(10, real, 3, 16)
    ns = np.array([16, 16, 9], np.int32)
    order = np.tile(np.arange(3, dtype=np.int32), 7)[:20]
    lr = LR // 2 if real.classifier else LR // 16
    want = TRAIN(real, params, M.zeros_like(params), xs, ys, ns, order, lr, MU)

    pp = tuple(pad(a, s) for a, s in zip(params, padded.shapes))
    pxs = pad(xs, (4, 20, padded.features))
    pxs[:, :, :] = np.where(np.arange(20)[None, :, None] < np.r_[ns, 0][:, None, None], pxs,
                            rng.integers(-BIG, BIG, pxs.shape))  # garbage beyond n, every feature
    if real.classifier:
        pys = pad(ys, (4, 20), fill=padded.outputs, rng=rng)  # garbage labels beyond, padded classes too
    else:
        pys = pad(ys, (4, 20, padded.outputs))
        pys[:, 16:] = rng.integers(-BIG, BIG, pys[:, 16:].shape)
    pns = np.array([16, 16, 9, 0], np.int32)
    porder = np.insert(order, [0, 5, 20], 3).astype(np.int32)  # empty steps inserted (batch 3 has n = 0)
    classes = real.outputs if real.classifier else None
    got = TRAIN(padded, pp, M.zeros_like(pp), pxs, pys, pns, porder, lr, MU, classes=classes)

    real_steps = porder != 3
    assert np.asarray(got[2])[real_steps].tolist() == np.asarray(want[2]).tolist()
    assert np.asarray(got[3])[real_steps].tolist() == np.asarray(want[3]).tolist()
    assert not np.asarray(got[2])[~real_steps].any() and not np.asarray(got[3])[~real_steps].any()
    for trained, reference in ((got[0], want[0]), (got[1], want[1])):
        for a, r in zip(np_tree(trained), np_tree(reference)):
            assert np.array_equal(a[tuple(slice(0, d) for d in r.shape)], r)
            assert np.abs(a).sum() == np.abs(r).sum()  # the padding stayed exactly zero
    # evaluation and prediction on padded rows and classes agree too
    x_eval, y_eval = pxs[2], pys[2]
    assert [int(v) for v in EVALUATE(padded, got[0], x_eval, y_eval, 9, classes=classes)] == \
        [int(v) for v in EVALUATE(real, want[0], xs[2], ys[2], 9)]
    if real.classifier:
        probs = np.asarray(PROBABILITIES(padded, got[0], x_eval, classes=classes))
        assert np.array_equal(probs[:9, :3], np.asarray(PROBABILITIES(real, want[0], xs[2]))[:9])
        assert not probs[:, 3:].any()
    else:
        out = np.asarray(PREDICT(padded, got[0], x_eval))[:9]
        assert np.array_equal(out[:, :2], np.asarray(PREDICT(real, want[0], xs[2]))[:9]) and not out[:, 2:].any()


def test_padded_classes_get_exactly_zero_probability():
    """Even when every real logit is at the lower bound -127.5 and a padded one would be higher."""
    arch = Arch("softmax", (2, 5))
    w = np.zeros((2, 5), np.int32)
    b = np.array([-BIG, -BIG, -BIG, BIG, 0], np.int32)
    x = np.zeros((2, 2), np.int32)
    logits = np.asarray(FORWARD(arch, (w, b), x, classes=3))
    assert logits[0].tolist() == [-BIG] * 3 + [MASKED] * 2 and M.MASKED_LOGIT == MASKED
    p = np.asarray(PROBABILITIES(arch, (w, b), x, classes=3))
    assert p[0].tolist() == [21845, 21845, 21845, 0, 0]  # 1/3 each, rounded half up
    assert np.asarray(PREDICT(arch, (w, b), x, classes=3)).tolist() == [0, 0]
    y = np.array([1, 3], np.int32)  # a label of a padded class costs like any label outside [0, 3)
    assert int(EVALUATE(arch, (w, b), x, y, 2, classes=3)[0]) == ref_loss(Arch("softmax", (2, 3)),
                                                                          logits[:, :3], y, 2)


# ---- federated averaging ---------------------------------------------------------------------

def test_average_matches_reference():
    arch = ARCHS["mlp2"]
    rng = np.random.default_rng(11)
    models = [M.init(arch, s) for s in range(5)]
    models[1] = tuple(rng.integers(-BIG, BIG, a.shape, endpoint=True).astype(np.int32) for a in models[1])
    stack = tuple(np.stack(layer) for layer in zip(*models))
    for weights in ([3, 0, 1, 7, 2], [1, 1, 1, 1, 1], [0, 0, 5, 0, 0], [2 ** 37, 2 ** 37, 1, 0, 3]):
        M.check_weights(weights)
        got = AVERAGE(stack, np.array(weights, np.int64))
        assert [a.dtype for a in np_tree(got)] == [np.int32] * 6
        assert same(np_tree(got), ref_average(stack, weights)), weights
    assert same(np_tree(AVERAGE(stack, np.array([0, 0, 5, 0, 0]))), np_tree(models[2]))  # one model: itself
    # a padding model of weight 0 with garbage in it changes nothing
    junk = tuple(np.concatenate([s, np.full((1,) + s.shape[1:], BIG, np.int32)]) for s in stack)
    assert same(np_tree(AVERAGE(junk, np.array([3, 0, 1, 7, 2, 0]))),
                np_tree(AVERAGE(stack, np.array([3, 0, 1, 7, 2]))))
    ties = (np.array([[1, -1, 3, -3], [0, 0, 0, 0]], np.int32),)  # 0.5, -0.5, 1.5, -1.5
    assert np.asarray(AVERAGE(ties, np.array([1, 1]))[0]).tolist() == [1, 0, 2, -1]
    for bad in ([], [-1, 2], [True, 1], [0, 0], [M.MAX_WEIGHT_SUM, 1], [1.0]):
        with pytest.raises(ValueError, match="weights"):
            M.check_weights(bad)


# ---- refusals ------------------------------------------------------------------------------------

def test_bad_inputs_are_refused():
    arch = ARCHS["softmax"]
    params = M.init(arch, 1)
    xs, ys = data(5, arch, 1, 4)
    with pytest.raises(TypeError, match="int32"):
        M.forward(arch, params, xs[0].astype(np.float32))
    with pytest.raises(TypeError, match="2-d"):
        M.forward(arch, params, xs)
    with pytest.raises(ValueError, match="features"):
        M.forward(arch, params, xs[0][:, :4])
    with pytest.raises(ValueError, match="parameter shapes"):
        M.forward(arch, params[:1], xs[0])
    with pytest.raises(ValueError, match="parameter shapes"):
        M.forward(ARCHS["mlp1"], params, xs[0])
    with pytest.raises(TypeError, match="labels"):
        M.grads(arch, params, xs[0], ys[0].astype(np.int64), 4)
    with pytest.raises(TypeError, match="targets"):
        M.grads(ARCHS["linear"], M.init(ARCHS["linear"], 1), xs[0], ys[0], 4)
    with pytest.raises(ValueError, match="classes"):
        M.forward(arch, params, xs[0], classes=4)
    with pytest.raises(ValueError, match="classifiers"):
        M.forward(ARCHS["linear"], M.init(ARCHS["linear"], 1), xs[0], classes=1)
    with pytest.raises(ValueError, match="stack the same batches"):
        M.train(arch, params, params, xs, ys, np.array([4, 4], np.int32), ORDER, LR, 0)
    with pytest.raises(ValueError, match="weights for a stack"):
        M.average((np.zeros((2, 3), np.int32),), np.array([1, 2, 3]))
    huge = jax.ShapeDtypeStruct((M.MAX_BATCH_ROWS + 1, 5), jnp.int32)  # checked while tracing: nothing runs
    assert 65536 <= M.MAX_BATCH_ROWS < 66054
    with pytest.raises(ValueError, match="too large"):
        jax.eval_shape(lambda x, y: M.grads(arch, params, x, y, 1), huge,
                       jax.ShapeDtypeStruct((M.MAX_BATCH_ROWS + 1,), jnp.int32))


# ---- determinism: a 2-hidden-layer MLP, 20 steps with momentum, everywhere ---------------------

DET_ARCH = Arch("mlp", (6, 16, 12, 3))
DET_LINEAR = Arch("linear", (6, 2))


def det_case(arch: Arch):
    xs, ys = data(8, arch, 20, 32, extreme=True)
    ns = np.full(20, 32, np.int32)
    ns[7] = 19  # one short batch
    order = np.arange(20, dtype=np.int32)[::-1].copy()
    lr = LR // 4 if arch.classifier else LR // 32
    return M.init(arch, 9), xs, ys, ns, order, lr


@pytest.fixture(scope="module")
def det_expected():
    """The numpy reference's hashes (computed once: ~3 s)."""
    out = {}
    for name, arch in (("mlp", DET_ARCH), ("linear", DET_LINEAR)):
        params, xs, ys, ns, order, lr = det_case(arch)
        p, v, losses, hits = ref_train(arch, params, xs, ys, ns, order, lr, MU)
        out[name] = sha(p + v)
        out[name + " losses"] = losses
        out[name + " hits"] = hits
    return out


def test_mlp_jit_eager_and_reference_give_the_same_bits(det_expected):
    params, xs, ys, ns, order, lr = det_case(DET_ARCH)
    jitted = TRAIN(DET_ARCH, params, M.zeros_like(params), xs, ys, ns, order, lr, MU)
    with jax.disable_jit():
        eager = M.train(DET_ARCH, params, M.zeros_like(params), xs, ys, ns, order, lr, MU)
    for run in (jitted, eager):
        assert sha(np_tree(run[0]) + np_tree(run[1])) == det_expected["mlp"]
        assert np.asarray(run[2]).tolist() == det_expected["mlp losses"]
        assert np.asarray(run[3]).tolist() == det_expected["mlp hits"]


SCENARIO = r"""
import hashlib, json, sys
import numpy as np
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
from mlcore import models as M

def sha(params):
    return hashlib.sha256(b"".join(np.ascontiguousarray(np.asarray(a)).tobytes() for a in params)).hexdigest()

d = np.load(sys.argv[1])
n = jax.device_count()
mesh = jax.make_mesh((n,), ("x",)) if n > 1 else None  # the default (Explicit) axis types
train = jax.jit(M.train, static_argnums=0)
out = {"devices": n}
for name, kind, layers in (("mlp", "mlp", (6, 16, 12, 3)), ("linear", "linear", (6, 2))):
    xs, ys = d[name + " xs"], d[name + " ys"]
    if mesh is not None:  # shard every batch's rows over all devices
        xs = jax.device_put(xs, NamedSharding(mesh, P(None, "x", None)))
        ys = jax.device_put(ys, NamedSharding(mesh, P(None, "x", *([None] * (ys.ndim - 2)))))
    out["shards"] = len(getattr(xs, "addressable_shards", [0]))
    params = [d[f"{name} p{i}"] for i in range(len(layers) * 2 - 2)]
    p, v, losses, hits = train(M.Arch(kind, layers), params, M.zeros_like(params), xs, ys,
                               d[name + " ns"], d[name + " order"], int(d[name + " lr"]), int(d["mu"]))
    out[name] = sha(list(p) + list(v))
    out[name + " losses"] = np.asarray(losses).tolist()
    out[name + " hits"] = np.asarray(hits).tolist()
print(json.dumps(out))
"""


def test_twenty_steps_same_bits_across_devices_and_cpu_flags(tmp_path, det_expected):
    arrays = {"mu": MU}
    for name, arch in (("mlp", DET_ARCH), ("linear", DET_LINEAR)):
        params, xs, ys, ns, order, lr = det_case(arch)
        arrays.update({f"{name} xs": xs, f"{name} ys": ys, f"{name} ns": ns, f"{name} order": order,
                       f"{name} lr": lr, **{f"{name} p{i}": a for i, a in enumerate(params)}})
    np.savez(tmp_path / "in.npz", **arrays)
    assert_same_everywhere(SCENARIO, tmp_path / "in.npz", det_expected, CONFIGS)


# ---- it learns, like float32 from the same start ---------------------------------------------

def separable(seed: int, n: int, features: int = 4, classes: int = 3):
    """Points uniform in [-2, 2]^features labelled by the argmax of a fixed random linear map."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(features, classes))
    x = rng.uniform(-2, 2, (n, features))
    return x, np.argmax(x @ w, -1).astype(np.int32)


def float_forward(p: list[np.ndarray], x: np.ndarray):
    pres, acts = [], [x]
    for i in range(len(p) // 2 - 1):
        pres.append(acts[-1] @ p[2 * i] + p[2 * i + 1])
        acts.append(np.maximum(pres[-1], 0))
    return pres, acts, acts[-1] @ p[-2] + p[-1]


def float_train(arch: Arch, params, xs, ys, lr: float, mu: float):
    """float32 training of the same model from the dequantised start, same schedule and rules:
    mean gradients of cross-entropy or half the squared error, v = mu v + lr g, p -= v.
    Returns the parameters and the loss of every step."""
    p = [dequantize(a, WEIGHTS).astype(np.float32) for a in params]
    v = [np.zeros_like(a) for a in p]
    lr, mu, n = np.float32(lr), np.float32(mu), np.float32(xs.shape[1])
    losses = []
    for x, y in zip(xs, ys):
        pres, acts, z = float_forward(p, x)
        if arch.classifier:
            e = np.exp(z - z.max(-1, keepdims=True))
            sm = e / e.sum(-1, keepdims=True)
            losses.append(float(np.mean(-np.log(sm[np.arange(len(y)), y]))))
            g = sm - np.eye(z.shape[1], dtype=np.float32)[y]
        else:
            g = z - y
            losses.append(float(np.mean(np.sum(g * g, -1) / 2)))
        gs = []
        for i in range(len(p) // 2 - 1, -1, -1):
            gs = [acts[i].T @ g / n, g.mean(0)] + gs
            if i:
                g = (g @ p[2 * i].T) * (pres[i - 1] > 0)
        v = [mu * vi + lr * gi for vi, gi in zip(v, gs)]
        p = [pi - vi for pi, vi in zip(p, v)]
    return p, losses


@pytest.mark.parametrize("arch,lr", [(Arch("softmax", (4, 3)), LR), (Arch("mlp", (4, 16, 3)), LR // 4),
                                     (Arch("mlp", (4, 16, 16, 3)), LR // 4)])
def test_classifiers_learn_like_float32(arch, lr):
    """20 steps of 32 on a linearly separable 3-class problem: the fixed-point model reaches > 90%
    held-out accuracy, within 2 points of float32 from the same start (measured: equal), and its
    losses follow float32's."""
    x, y = separable(21, 1440)
    steps, batch = 20, 32
    xq = quantize(x, WEIGHTS)
    xs, ys = xq[: steps * batch].reshape(steps, batch, -1), y[: steps * batch].reshape(steps, batch)
    test_x, test_y = xq[steps * batch:], y[steps * batch:]
    params = M.init(arch, 3)
    p, _, losses, hits = TRAIN(arch, params, M.zeros_like(params), xs, ys, np.full(steps, batch, np.int32),
                               np.arange(steps, dtype=np.int32), lr, MU)
    acc = float(np.mean(np.asarray(PREDICT(arch, p, test_x)) == test_y))
    fp, flosses = float_train(arch, params, dequantize(xs, WEIGHTS).astype(np.float32), ys, lr / 2 ** 16,
                              MU / 2 ** 16)
    facc = float(np.mean(np.argmax(float_forward(fp, dequantize(test_x, WEIGHTS).astype(np.float32))[2], -1)
                         == test_y))
    hits, losses = np.asarray(hits), np.asarray(losses) / 2 ** 16
    assert hits[:3].mean() < hits[-3:].mean() and losses[:3].mean() > 2 * losses[-3:].mean()
    assert acc > 0.9 and abs(acc - facc) <= 0.02, (acc, facc)
    assert np.max(np.abs(losses - flosses)) < 0.01
    # and the parameters themselves stay close to the float32 ones
    assert max(np.max(np.abs(dequantize(a, WEIGHTS) - f)) for a, f in zip(p, fp)) < 0.05


def test_linear_regression_learns_a_known_map():
    """y = x @ W + c with a fixed W (4 x 2) and c plus noise of 0.01; 150 steps of 32 with momentum:
    the loss falls 1000-fold to the noise, W and c are recovered within 0.01 (measured 0.003), and
    float32 from the same start agrees within 0.001 (measured 0.0001)."""
    rng = np.random.default_rng(5)
    w_true = np.array([[1.5, -0.5], [0.25, 2.0], [-1.0, 0.75], [0.5, -1.25]])
    c_true = np.array([0.5, -1.0])
    steps, batch = 150, 32
    x = rng.uniform(-2, 2, (steps * batch, 4))
    y = x @ w_true + c_true + rng.normal(0, 0.01, (steps * batch, 2))
    xs = quantize(x, WEIGHTS).reshape(steps, batch, 4)
    ys = quantize(y, WEIGHTS).reshape(steps, batch, 2)
    arch, lr = Arch("linear", (4, 2)), LR // 8
    params = M.init(arch, 1)
    p, _, losses, hits = TRAIN(arch, params, M.zeros_like(params), xs, ys, np.full(steps, batch, np.int32),
                               np.arange(steps, dtype=np.int32), lr, MU)
    losses = np.asarray(losses) / 2 ** 16
    assert not np.asarray(hits).any() and losses[0] > 1000 * losses[-5:].mean()
    assert np.abs(dequantize(p[0], WEIGHTS) - w_true).max() < 0.01
    assert np.abs(dequantize(p[1], WEIGHTS) - c_true).max() < 0.01
    fp, flosses = float_train(arch, params, dequantize(xs, WEIGHTS).astype(np.float32),
                              dequantize(ys, WEIGHTS).astype(np.float32), lr / 2 ** 16, MU / 2 ** 16)
    assert max(np.max(np.abs(dequantize(a, WEIGHTS) - f)) for a, f in zip(p, fp)) < 0.001
    assert np.max(np.abs(losses - flosses) / np.maximum(flosses, 1e-3)) < 0.05


def test_sgd_at_the_corners_of_its_bounds():
    """sgd's plain rounding shifts and int32 p - v are exact only under its stated bounds (g in
    GRADS, p and v in WEIGHTS, lr <= LR.max_abs, momentum <= MOMENTUM_MAX): every corner of
    them, and values next to the rounding ties, against the formula in int64 with the
    overflow-safe shift."""
    g_vals = [-M.GRADS.max_abs, -M.GRADS.max_abs + 1, -(1 << 31), -(1 << 31) + 1, -1, 0, 1, (1 << 31) - 1,
              1 << 31, M.GRADS.max_abs - 1, M.GRADS.max_abs]
    w_vals = [-BIG, -BIG + 1, -(1 << 15), -1, 0, 1, 1 << 15, BIG - 1, BIG]
    g, p, v = (np.array(a, np.int64) for a in zip(*[(a, b, c) for a in g_vals for b in w_vals for c in w_vals]))
    p, v = p.astype(np.int32), v.astype(np.int32)
    for lr in (0, 1, 6554, M.LR.max_abs - 1, M.LR.max_abs):
        for mu in (0, 1, 1 << 15, M.MOMENTUM_MAX):
            (got_p,), (got_v,) = jax.jit(M.sgd)((p,), (v,), (g,), lr, mu)
            (ref_p,), (ref_v,) = ref_sgd([p], [v], [g], lr, mu)
            assert np.array_equal(np.asarray(got_v), ref_v) and np.asarray(got_v).dtype == np.int32, (lr, mu)
            assert np.array_equal(np.asarray(got_p), ref_p) and np.asarray(got_p).dtype == np.int32, (lr, mu)
