"""mlcore.models against an independent numpy reference: init, forward, gradients, SGD with momentum
and fused training steps of softmax regression and a one-hidden-layer MLP, bit for bit; the same
bits under jit, eager, 8 sharded devices and XLA CPU flags; and training that actually learns, as
well as float32 training from the same start.

The references are the rules of docs/mlcore.md section 7 written naively (int64 matrix products,
divmod for the mean, the activations tests' softmax reference).
"""
from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcore import models as M
from mlcore.activations import PROBS
from mlcore.fixed import WEIGHTS, dequantize, quantize
from tests.test_mlcore_activations import ref_softmax
from tests.test_mlcore_fixed import ref_key, ref_random_bits, ref_round_shift, ref_saturate
from tests.xla_configs import CONFIGS, assert_same_everywhere

TRAIN = jax.jit(M.train_steps, static_argnames=("lr", "momentum"))
LR = 1 << 15  # 0.5
MU = 58982  # 0.9 in Q.16


# ---- numpy reference -------------------------------------------------------------------------

def ref_init(seed: int, layer: int, shape: tuple[int, int], scale: int) -> np.ndarray:
    u = (ref_random_bits(ref_key(seed, 0, 0, layer), shape) >> np.uint64(47)).astype(np.int64) - 2 ** 16
    return ref_saturate(ref_round_shift(u * scale, 16), WEIGHTS)


def ref_dense(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    acc = x.astype(np.int64) @ w.astype(np.int64) + b.astype(np.int64) * 2 ** 16
    return ref_saturate(ref_round_shift(acc, 16), WEIGHTS)


def ref_mean(total: np.ndarray, n: int) -> np.ndarray:
    """floor(total / n + 1/2) by divmod, saturated to GRADS."""
    q, r = np.vectorize(divmod, otypes=[object, object])(total.astype(object), n)
    return ref_saturate((q + (2 * r >= n)).astype(np.int64), M.GRADS)


def ref_forward(params, x: np.ndarray) -> np.ndarray:
    p = [np.asarray(a) for a in params]
    if len(p) == 2:
        return ref_dense(x, *p)
    return ref_dense(np.maximum(ref_dense(x, p[0], p[1]), 0), p[2], p[3])


def ref_grads(params: list, x: np.ndarray, labels: np.ndarray) -> tuple[list, np.ndarray]:
    """Mean gradients (GRADS) of every parameter and the logits, by the documented rules."""
    x64 = x.astype(np.int64)
    if len(params) == 2:
        logits = ref_dense(x, *params)
    else:
        pre = ref_dense(x, params[0], params[1])
        h = np.maximum(pre, 0)
        logits = ref_dense(h, params[2], params[3])
    y = np.eye(params[-1].shape[0], dtype=np.int64)[labels] * 2 ** 16
    g = ref_saturate(ref_softmax(logits, WEIGHTS).astype(np.int64) - y, PROBS).astype(np.int64)
    if len(params) == 2:
        sums = [x64.T @ g, g.sum(0) * 2 ** 16]
    else:
        back = ref_saturate(ref_round_shift(g @ params[2].astype(np.int64).T, 16), WEIGHTS).astype(np.int64)
        delta = back * (pre > 0)
        sums = [x64.T @ delta, delta.sum(0) * 2 ** 16, h.astype(np.int64).T @ g, g.sum(0) * 2 ** 16]
    return [ref_mean(t, x.shape[0]) for t in sums], logits


def ref_step(params: list, velocity: list, x: np.ndarray, labels: np.ndarray, lr: int, mu: int):
    """One training step of the documented rules; returns (params, velocity, correct)."""
    grads, logits = ref_grads(params, x, labels)
    new_p, new_v = [], []
    for p, v, g in zip(params, velocity, grads):
        step = ref_round_shift(g * lr, 32)
        v = ref_saturate(ref_round_shift(v.astype(np.int64) * mu, 16) + step, WEIGHTS)
        new_p.append(ref_saturate(p.astype(np.int64) - v, WEIGHTS))
        new_v.append(v)
    return new_p, new_v, int(np.sum(np.argmax(logits, -1) == labels))


def ref_train(params, xs, ys, lr, mu):
    p = [np.asarray(a) for a in params]
    v = [np.zeros_like(a) for a in p]
    hits = []
    for x, y in zip(xs, ys):
        p, v, c = ref_step(p, v, x, y, lr, mu)
        hits.append(c)
    return p, v, hits


def data(seed: int, steps: int, batch: int, features: int, classes: int, extreme: bool = False):
    rng = np.random.default_rng(seed)
    xs = quantize(rng.normal(0, 2, (steps, batch, features)), WEIGHTS)
    if extreme:  # rows at the format bounds drive logits, gradients and updates into saturation
        xs[0, 0], xs[0, 1] = WEIGHTS.max_abs, -WEIGHTS.max_abs
    ys = rng.integers(0, classes, (steps, batch)).astype(np.int32)
    return xs, ys


def np_tree(params) -> list[np.ndarray]:
    return [np.asarray(a) for a in params]


def sha(params) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in params)).hexdigest()


MODELS = {
    "softmax": lambda seed: M.init_softmax(seed, 5, 3),
    "mlp": lambda seed: M.init_mlp(seed, 5, 8, 3),
}


# ---- init and the rules ----------------------------------------------------------------------

def test_init_is_seeded_splitmix64():
    p = M.init_mlp(11, 6, 9, 4)
    assert [np.asarray(a).dtype for a in p] == [np.int32] * 4
    assert np.array_equal(np.asarray(p.w1), ref_init(11, 0, (6, 9), M.default_scale(6)))
    assert np.array_equal(np.asarray(p.w2), ref_init(11, 1, (9, 4), M.default_scale(9)))
    assert not np.asarray(p.b1).any() and not np.asarray(p.b2).any()
    assert M.default_scale(6) == 32768 and M.default_scale(9) == 21845  # 2**16 / isqrt(n), half up
    assert np.abs(np.asarray(p.w1)).max() <= 32768
    s = M.init_softmax(11, 6, 4, scale=1 << 16)
    assert np.array_equal(np.asarray(s.w), ref_init(11, 0, (6, 4), 1 << 16))
    assert sha(M.init_softmax(12, 6, 4)) != sha(M.init_softmax(11, 6, 4)) == sha(M.init_softmax(11, 6, 4))


def test_mean_rounds_half_up_for_both_signs():
    t = np.array([3, -3, 5, -5, 7, -7, 1, -1, 0, (1 << 61) - 1, -(1 << 61)], dtype=np.int64)
    got = np.asarray(M.mean_half_up(jnp.asarray(t), 2)).tolist()
    assert got[:9] == [2, -1, 3, -2, 4, -3, 1, 0, 0]  # 1.5 -> 2, -1.5 -> -1: ties toward +infinity
    assert got == [int(v) for v in ref_mean(t, 2)[:9]] + [1 << 60, -(1 << 60)]
    t4 = np.arange(-20, 21, dtype=np.int64)
    assert np.array_equal(np.asarray(M.mean_half_up(jnp.asarray(t4), 4)), np.floor(t4 / 4 + 0.5))


def test_forward_and_probabilities_match_reference():
    xs, _ = data(1, 1, 33, 5, 3, extreme=True)
    for name, make in MODELS.items():
        params = make(3)
        logits = np.asarray(jax.jit(M.forward)(params, xs[0]))
        assert logits.dtype == np.int32 and np.array_equal(logits, ref_forward(params, xs[0])), name
        p = np.asarray(jax.jit(M.probabilities)(params, xs[0]))
        assert np.array_equal(p, ref_softmax(logits, WEIGHTS)), name


def test_gradients_match_reference_and_saturate():
    xs, ys = data(6, 1, 16, 5, 3, extreme=True)
    mlp = MODELS["mlp"](4)
    big = M.MLP(mlp.w1, mlp.b1, jnp.full_like(mlp.w2, WEIGHTS.max_abs).at[:, 0].set(-WEIGHTS.max_abs), mlp.b2)
    at_bounds = np.where(xs[0] >= 0, WEIGHTS.max_abs, -WEIGHTS.max_abs).astype(np.int32)
    for params, x in ((MODELS["softmax"](4), xs[0]), (mlp, xs[0]), (big, at_bounds)):
        g, logits = jax.jit(M.grads)(params, x, ys[0])
        rg, rlogits = ref_grads(np_tree(params), x, ys[0])
        assert isinstance(g, type(params)) and [a.dtype for a in np_tree(g)] == [np.int64] * len(params)
        assert all(np.array_equal(a, b) for a, b in zip(np_tree(g), rg))
        assert np.array_equal(np.asarray(logits), rlogits)
    assert np.abs(np.asarray(g.w1)).max() == M.GRADS.max_abs  # |x * delta| up to 127.5**2 saturates


@pytest.mark.parametrize("model,lr,mu", [("softmax", LR, 0), ("mlp", LR, MU), ("softmax", M.LR.max_abs, MU),
                                         ("mlp", M.LR.max_abs, 0)])
def test_training_steps_match_reference_bit_for_bit(model, lr, mu):
    params = MODELS[model](5)
    xs, ys = data(2, 4, 16, 5, 3, extreme=True)
    p, v, hits = TRAIN(params, xs, ys, lr=lr, momentum=mu)
    rp, rv, rhits = ref_train(params, xs, ys, lr, mu)
    assert isinstance(p, type(params)) and [a.dtype for a in np_tree(p)] == [np.int32] * len(params)
    for got, want in zip(np_tree(p) + np_tree(v), rp + rv):
        assert np.array_equal(got, want)
    assert np.asarray(hits).dtype == np.int32 and np.asarray(hits).tolist() == rhits
    if lr == M.LR.max_abs:  # lr = 16 on inputs at the bounds: updates and weights saturate
        assert any(np.abs(a).max() == WEIGHTS.max_abs for a in rp + rv)
    else:
        assert all(np.abs(a).max() < WEIGHTS.max_abs for a in rp)
    # one step through the single-step API equals the first step of the scan
    p1, v1, c1 = jax.jit(M.train_step, static_argnames=("lr", "momentum"))(
        params, M.zeros_like(params), xs[0], ys[0], lr=lr, momentum=mu)
    rp1, rv1, rc1 = ref_step(np_tree(params), [np.zeros_like(a) for a in np_tree(params)],
                             xs[0], ys[0], lr, mu)
    assert [a.tobytes() for a in np_tree(p1) + np_tree(v1)] == [a.tobytes() for a in rp1 + rv1]
    assert int(c1) == rc1


def test_velocity_carries_over_between_calls():
    params = MODELS["mlp"](6)
    xs, ys = data(3, 4, 16, 5, 3)
    p_all, v_all, _ = TRAIN(params, xs, ys, lr=LR, momentum=MU)
    p2, v2, _ = TRAIN(params, xs[:2], ys[:2], lr=LR, momentum=MU)
    p4, v4, _ = TRAIN(p2, xs[2:], ys[2:], lr=LR, momentum=MU, velocity=v2)
    assert sha(np_tree(p4) + np_tree(v4)) == sha(np_tree(p_all) + np_tree(v_all))


def test_jit_and_eager_give_identical_bits():
    # the MLP path runs every op softmax regression does; eager compiles each primitive (~4 s here)
    xs, ys = data(4, 1, 8, 5, 3, extreme=True)
    params = MODELS["mlp"](7)
    jitted = TRAIN(params, xs, ys, lr=LR, momentum=MU)
    with jax.disable_jit():
        eager = M.train_steps(params, xs, ys, LR, MU)
    assert sha(np_tree(jitted[0]) + np_tree(jitted[1])) == sha(np_tree(eager[0]) + np_tree(eager[1]))
    assert np.asarray(jitted[2]).tolist() == np.asarray(eager[2]).tolist()


def test_bad_hyperparameters_and_inputs_are_refused():
    params = MODELS["softmax"](1)
    xs, ys = data(5, 1, 4, 5, 3)
    for kw in ({"lr": -1}, {"lr": M.LR.max_abs + 1}, {"lr": 1.5}, {"momentum": 1 << 16},
               {"momentum": True}):
        args = {"lr": LR, "momentum": 0, **kw}
        with pytest.raises(ValueError, match="lr|momentum"):
            M.train_steps(params, xs, ys, **args)
    with pytest.raises(TypeError, match="int32"):
        M.forward(params, xs[0].astype(np.float32))
    with pytest.raises(TypeError, match="2-d"):
        M.forward(params, xs)
    with pytest.raises(ValueError, match="positive int"):
        M.init_mlp(1, 5, 0, 3)
    with pytest.raises(ValueError, match="scale"):
        M.init_softmax(1, 5, 3, scale=WEIGHTS.max_abs + 1)
    huge = jax.ShapeDtypeStruct((70000, 5), jnp.int32)  # checked while tracing: nothing runs
    with pytest.raises(ValueError, match="too large"):
        jax.eval_shape(M.grads, params, huge, jax.ShapeDtypeStruct((70000,), jnp.int32))


# ---- the same bits across device counts and XLA CPU flags (subprocesses) ----------------------

SCENARIO = r"""
import hashlib, json, sys
import numpy as np
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
from mlcore import models as M

def sha(params):
    return hashlib.sha256(b"".join(np.ascontiguousarray(np.asarray(a)).tobytes() for a in params)).hexdigest()

d = np.load(sys.argv[1])
xs, ys = d["xs"], d["ys"]
n = jax.device_count()
if n > 1:  # shard the batch (axis 1) over every device; Auto: XLA inserts the gradient all-reduce
    mesh = jax.make_mesh((n,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
    xs = jax.device_put(xs, NamedSharding(mesh, P(None, "x", None)))
    ys = jax.device_put(ys, NamedSharding(mesh, P(None, "x")))
train = jax.jit(M.train_steps, static_argnames=("lr", "momentum"))
out = {"devices": n, "shards": len(getattr(xs, "addressable_shards", [0]))}
for name, params in (("softmax", M.init_softmax(9, 6, 3)), ("mlp", M.init_mlp(9, 6, 16, 3))):
    p, v, hits = train(params, xs, ys, lr=int(d["lr"]), momentum=int(d["mu"]))
    out[name] = sha(list(p) + list(v))
    out[name + " hits"] = np.asarray(hits).tolist()
print(json.dumps(out))
"""

# fast-math and the SSE4.2 code path share one process to keep the test short: each alone is
# checked for the kernels in test_mlcore_matmul.py and test_mlcore_activations.py
FLAGS = {"default": CONFIGS["default"], "8 devices": CONFIGS["8 devices"],  # fast math and SSE4.2 in one
         "fast math, sse4.2": f"{CONFIGS['fast math']} {CONFIGS['sse4.2']}"}     # process, to save time


def test_twenty_steps_same_bits_across_devices_and_cpu_flags(tmp_path):
    xs, ys = data(8, 20, 32, 6, 3, extreme=True)
    np.savez(tmp_path / "in.npz", xs=xs, ys=ys, lr=LR, mu=MU)
    expected = {}
    for name, params in (("softmax", M.init_softmax(9, 6, 3)), ("mlp", M.init_mlp(9, 6, 16, 3))):
        p, v, hits = ref_train(params, xs, ys, LR, MU)
        expected[name], expected[name + " hits"] = sha(p + v), hits
    assert_same_everywhere(SCENARIO, tmp_path / "in.npz", expected, FLAGS)


# ---- it learns, like float32 from the same start ---------------------------------------------

def separable(seed: int, n: int, features: int = 4, classes: int = 3):
    """Points uniform in [-2, 2]^features labelled by the argmax of a fixed random linear map."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(features, classes))
    x = rng.uniform(-2, 2, (n, features))
    return x, np.argmax(x @ w, -1).astype(np.int32)


def float_train(params, xs, ys, lr: float, mu: float) -> list[np.ndarray]:
    """float32 training of the same model from the dequantised start, same schedule and rules:
    mean cross-entropy gradients, v = mu v + lr g, p -= v."""
    p = [dequantize(a, WEIGHTS).astype(np.float32) for a in params]
    v = [np.zeros_like(a) for a in p]
    lr, mu, n = np.float32(lr), np.float32(mu), np.float32(xs.shape[1])
    for x, y in zip(xs, ys):
        h = x
        if len(p) == 4:
            pre = x @ p[0] + p[1]
            h = np.maximum(pre, 0)
        z = h @ p[-2] + p[-1]
        e = np.exp(z - z.max(-1, keepdims=True))
        g = e / e.sum(-1, keepdims=True) - np.eye(z.shape[1], dtype=np.float32)[y]
        gs = [h.T @ g / n, g.mean(0)]
        if len(p) == 4:
            d = (g @ p[2].T) * (pre > 0)
            gs = [x.T @ d / n, d.mean(0)] + gs
        v = [mu * vi + lr * gi for vi, gi in zip(v, gs)]
        p = [pi - vi for pi, vi in zip(p, v)]
    return p


def float_forward(p: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ p[0] + p[1], 0) if len(p) == 4 else x
    return h @ p[-2] + p[-1]


@pytest.mark.parametrize("model,lr", [("softmax", LR), ("mlp", LR // 4)])
def test_training_learns_like_float32(model, lr):
    """20 steps of 32 on a linearly separable 3-class problem: the fixed-point model reaches > 90%
    held-out accuracy, within 2 points of float32 from the same start (measured: equal)."""
    x, y = separable(21, 1440)
    steps, batch = 20, 32
    xq = quantize(x, WEIGHTS)
    xs, ys = xq[: steps * batch].reshape(steps, batch, -1), y[: steps * batch].reshape(steps, batch)
    test_x, test_y = xq[steps * batch:], y[steps * batch:]
    params = M.init_softmax(3, 4, 3) if model == "softmax" else M.init_mlp(3, 4, 16, 3)
    p, _, hits = TRAIN(params, xs, ys, lr=lr, momentum=MU)
    acc = float(np.mean(np.argmax(np.asarray(jax.jit(M.forward)(p, test_x)), -1) == test_y))
    fp = float_train(params, dequantize(xs, WEIGHTS).astype(np.float32), ys, lr / 2 ** 16, MU / 2 ** 16)
    facc = float(np.mean(np.argmax(float_forward(fp, dequantize(test_x, WEIGHTS).astype(np.float32)), -1)
                         == test_y))
    hits = np.asarray(hits)
    assert hits[:3].mean() < hits[-3:].mean()  # training accuracy rises
    assert acc > 0.9 and abs(acc - facc) <= 0.02, (acc, facc)
    # and the parameters themselves stay close to the float32 ones
    assert max(np.max(np.abs(dequantize(a, WEIGHTS) - f)) for a, f in zip(p, fp)) < 0.05
