"""mlcore.activations against an independent numpy reference: elementwise ops, ReLU, integer exp,
softmax, sigmoid, the integer log and loss gradients, bit for bit; their accuracy against float64
math; and the same bits under jit, eager, 8 sharded devices and XLA CPU flags.

The references are the rules of docs/mlcore.md section 6 written naively (floor division and exact
Python integers instead of shifts and masks).
"""
from __future__ import annotations

import hashlib
import math
from decimal import Decimal, getcontext

import jax
import numpy as np
import pytest

from mlcore.activations import (EXP2_POLY, EXP_FRAC, LN2, LN_SERIES, LOG2E, PROBS, add,
                                cross_entropy_grad, div_round_half_up, exp2_frac, exp_nonpos,
                                ln_q16, mse_grad, mul, relu, relu_mask, sigmoid, softmax, sub)
from mlcore.fixed import WEIGHTS, FixedFormat, dequantize, quantize
from tests.test_mlcore_fixed import ref_round_shift, ref_saturate
from tests.xla_configs import assert_same_everywhere

Q8_64 = FixedFormat(8, 64, 1 << 40)
Q25_64 = FixedFormat(25, 64, 1 << 40)
Q0_32 = FixedFormat(0, 32, (1 << 31) - 1)
EXP_FORMATS = [WEIGHTS, Q8_64, Q25_64, Q0_32]


# ---- numpy reference -------------------------------------------------------------------------

def ref_div_half_up(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """floor(num / den + 1/2) by divmod: round up when the remainder is at least half of den."""
    num, den = np.broadcast_arrays(num.astype(object), den.astype(object))
    q, rem = np.vectorize(divmod, otypes=[object, object])(num, den)
    return (q + (2 * rem >= den)).astype(np.int64)


def ref_exp2_frac(r: np.ndarray) -> np.ndarray:
    p = np.full(r.shape, EXP2_POLY[-1], dtype=np.int64)
    for c in EXP2_POLY[-2::-1]:
        p = (p * r + (1 << 29)) // (1 << 30) + c  # p * r < 2**61: no overflow
    return p


def ref_exp(x: np.ndarray, f: int, out_frac: int = EXP_FRAC) -> np.ndarray:
    x = np.clip(x.astype(np.int64), -64 * 2 ** f, 0)
    t = ref_round_shift(x * LOG2E, f)
    n = t // 2 ** 30
    p = ref_exp2_frac(t - n * 2 ** 30)
    s = np.minimum(30 - out_frac - n, 62)
    out = [(int(pi) + 2 ** int(si) // 2) // 2 ** int(si) for pi, si in zip(p.ravel(), s.ravel())]
    return np.array(out, dtype=np.int64).reshape(x.shape)


def ref_softmax(x: np.ndarray, fmt: FixedFormat, out_fmt: FixedFormat = PROBS) -> np.ndarray:
    x = x.astype(np.int64)
    e = ref_exp(x - x.max(-1, keepdims=True), fmt.frac_bits)
    p = ref_div_half_up(e * 2 ** out_fmt.frac_bits, e.sum(-1, keepdims=True))
    return ref_saturate(p, out_fmt)


def ref_sigmoid(x: np.ndarray, fmt: FixedFormat, out_fmt: FixedFormat = PROBS) -> np.ndarray:
    x = x.astype(np.int64)
    e = ref_exp(-np.abs(x), fmt.frac_bits)
    num = np.where(x >= 0, 2 ** 30, e) * 2 ** out_fmt.frac_bits
    return ref_saturate(ref_div_half_up(num, 2 ** 30 + e), out_fmt)


def ref_ln_q16(x: np.ndarray) -> np.ndarray:
    """ln(x / 2**16) in Q.16 by the documented steps, on exact Python integers."""
    def one(v: int) -> int:
        v = min(max(v, 1), 2 ** 31 - 1)
        k = v.bit_length() - 1
        m = v * 2 ** (30 - k)
        s = (2 * (m - 2 ** 30) * 2 ** 30 + (m + 2 ** 30)) // (2 * (m + 2 ** 30))
        z = (s * s + 2 ** 29) // 2 ** 30
        q = LN_SERIES[-1]
        for c in LN_SERIES[-2::-1]:
            q = (q * z + 2 ** 29) // 2 ** 30 + c
        t = (k - 16) * LN2 + (q * s + 2 ** 29) // 2 ** 30
        return (t + 2 ** 13) // 2 ** 14
    return np.array([one(int(v)) for v in np.ravel(x)], dtype=np.int64).reshape(np.shape(x))


def ref_mul(a, b, a_fmt, b_fmt, out_fmt) -> np.ndarray:
    prod = a.astype(object) * b.astype(object)
    s = a_fmt.frac_bits + b_fmt.frac_bits - out_fmt.frac_bits
    return ref_saturate(ref_round_shift(prod.astype(np.int64), s), out_fmt)


def logits(rng: np.random.Generator, rows: int, n: int, fmt: FixedFormat = WEIGHTS) -> np.ndarray:
    """Random logits plus the hard rows: equal values, saturation bounds, very negative entries."""
    x = rng.integers(-8 << fmt.frac_bits, 8 << fmt.frac_bits, (rows, n), endpoint=True)
    x[0] = 0
    x[1] = fmt.max_abs
    x[2] = -fmt.max_abs
    x[3, :] = -fmt.max_abs
    x[3, 0] = fmt.max_abs  # everything else underflows to 0
    x[4] = rng.integers(-fmt.max_abs, fmt.max_abs, n, endpoint=True)
    x[5, :] = 17
    x[5, -1] = 18  # ties broken by one unit
    return x.astype(fmt.dtype)


# The production path is jitted; eager dispatch compiles every primitive separately (~0.7 s a call).
SOFTMAX = jax.jit(softmax, static_argnames=("fmt", "out_fmt"))
SIGMOID = jax.jit(sigmoid, static_argnames=("fmt", "out_fmt"))
EXP = jax.jit(exp_nonpos, static_argnames=("fmt", "out_frac"))
MUL = jax.jit(mul, static_argnames=("a_fmt", "b_fmt", "out_fmt"))


def jx(x) -> np.ndarray:
    return np.asarray(x)


# ---- constants and the 2**f polynomial -------------------------------------------------------

def test_frozen_constants():
    getcontext().prec = 50
    log2e = Decimal(1).exp().ln() / Decimal(2).ln()
    assert LOG2E == int((log2e * 2 ** 30).to_integral_value())
    assert EXP2_POLY[0] == 2 ** 30 and PROBS == FixedFormat(16, 32, 1 << 16)
    assert LN2 == int((Decimal(2).ln() * 2 ** 30).to_integral_value())
    assert LN_SERIES == tuple((2 ** 32 + 2 * k + 1) // (4 * k + 2) for k in range(7))  # 2**31 / (2k+1)


def test_exp2_polynomial_matches_reference_and_is_accurate():
    r = np.concatenate([np.arange(0, 1 << 30, 1 << 11), np.arange((1 << 30) - 4096, 1 << 30),
                        np.random.default_rng(0).integers(0, 1 << 30, 50000)]).astype(np.int64)
    r.sort()
    p = jx(exp2_frac(jax.numpy.asarray(r)))
    assert np.array_equal(p, ref_exp2_frac(r))
    err = np.abs(p - np.exp2(r / 2 ** 30) * 2 ** 30)
    assert err.max() < 6.6  # Q.30 units; 6.58 over all 2**30 inputs (checked once, 48 s)
    assert p[0] == 2 ** 30 and p.max() < 2 ** 31 and np.all(np.diff(p) >= 0)


# ---- elementwise -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [WEIGHTS, Q0_32, Q8_64])
def test_add_sub_saturate_and_match_reference(fmt):
    rng = np.random.default_rng(fmt.frac_bits)
    edges = np.array([fmt.max_abs, -fmt.max_abs, 0, 1, -1], dtype=fmt.dtype)
    a = np.concatenate([np.repeat(edges, 5), rng.integers(-fmt.max_abs, fmt.max_abs, 500, endpoint=True)])
    b = np.concatenate([np.tile(edges, 5), rng.integers(-fmt.max_abs, fmt.max_abs, 500, endpoint=True)])
    a, b = a.astype(fmt.dtype), b.astype(fmt.dtype)
    s, d = jx(add(a, b, fmt)), jx(sub(a, b, fmt))
    assert s.dtype == d.dtype == fmt.dtype
    assert np.array_equal(s, ref_saturate(a.astype(np.int64) + b, fmt))
    assert np.array_equal(d, ref_saturate(a.astype(np.int64) - b, fmt))
    assert s[0] == fmt.max_abs and d[1] == fmt.max_abs and d[5] == -fmt.max_abs  # saturated
    assert np.array_equal(jx(add(a[:, None], b[None, :3], fmt)),
                          ref_saturate(a[:, None].astype(np.int64) + b[None, :3], fmt))


def test_mul_rounds_half_up_and_saturates():
    rng = np.random.default_rng(11)
    edges = np.array([WEIGHTS.max_abs, -WEIGHTS.max_abs, 0, 1, -1, 1 << 15, -(1 << 15), 3 << 15],
                     dtype=np.int32)
    a = np.concatenate([np.repeat(edges, 8), rng.integers(-WEIGHTS.max_abs, WEIGHTS.max_abs, 2000)])
    b = np.concatenate([np.tile(edges, 8), rng.integers(-WEIGHTS.max_abs, WEIGHTS.max_abs, 2000)])
    a, b = a.astype(np.int32), b.astype(np.int32)
    for out in (WEIGHTS, Q8_64, FixedFormat(32, 64, 1 << 60)):
        got = jx(MUL(a, b, WEIGHTS, WEIGHTS, out))
        assert got.dtype == out.dtype and np.array_equal(got, ref_mul(a, b, WEIGHTS, WEIGHTS, out))
    half = jx(MUL(np.array([1, -1, 3, -3], np.int32), np.array([1 << 15] * 4, np.int32),
                  WEIGHTS, WEIGHTS, WEIGHTS))
    assert half.tolist() == [1, 0, 2, -1]  # 0.5, -0.5, 1.5, -1.5 units: ties toward +infinity
    assert jx(MUL(a[:1], a[:1], WEIGHTS, WEIGHTS, WEIGHTS))[0] == WEIGHTS.max_abs  # 127.5**2 saturates


def test_relu_and_its_mask():
    x = np.array([WEIGHTS.max_abs, -WEIGHTS.max_abs, 0, 1, -1, 7], dtype=np.int32)
    assert jx(relu(x)).tolist() == [WEIGHTS.max_abs, 0, 0, 1, 0, 7]
    mask = jx(relu_mask(x))
    assert mask.dtype == np.int32 and mask.tolist() == [1, 0, 0, 1, 0, 1]
    wide = np.array([-(1 << 62), 1 << 62], dtype=np.int64)
    assert jx(relu(wide)).tolist() == [0, 1 << 62] and jx(relu(wide)).dtype == np.int64


def test_bad_formats_and_inputs_are_refused():
    big = FixedFormat(0, 64, (1 << 62) + 1)
    z = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="overflow"):
        add(z, z, big)
    with pytest.raises(ValueError, match="overflow"):
        softmax(z, big)
    with pytest.raises(ValueError, match="overflow"):
        mul(z, z, Q8_64, Q8_64, Q8_64)
    with pytest.raises(ValueError, match="more fractional bits"):
        mul(z, z, Q0_32, Q0_32, WEIGHTS)
    with pytest.raises(ValueError, match="at most 25"):
        exp_nonpos(z, FixedFormat(26, 64, 1 << 40))
    with pytest.raises(ValueError, match="output fractional bits"):
        exp_nonpos(z, WEIGHTS, 31)
    with pytest.raises(ValueError, match="at most 30"):
        sigmoid(z, WEIGHTS, FixedFormat(31, 64, 1 << 40))
    with pytest.raises(ValueError, match="non-empty last axis"):
        softmax(np.zeros((2, 0), np.int32), WEIGHTS)
    with pytest.raises(TypeError, match="int32 or int64"):
        relu(np.array([1.5]))


# ---- exp -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", EXP_FORMATS)
def test_exp_matches_reference(fmt):
    rng = np.random.default_rng(20 + fmt.frac_bits)
    lo = max(-fmt.max_abs, -(80 << fmt.frac_bits))
    x = np.concatenate([np.array([0, -1, 1, -fmt.max_abs, fmt.max_abs, -(64 << fmt.frac_bits),
                                  -(64 << fmt.frac_bits) - 1], dtype=np.int64),
                        rng.integers(lo, 0, 3000, endpoint=True),
                        rng.integers(-(1 << fmt.frac_bits), 0, 500, endpoint=True)])
    x = np.clip(x, -fmt.max_abs, fmt.max_abs).astype(fmt.dtype)
    for out_frac in (30, 16, 0):
        got = jx(EXP(x, fmt, out_frac))
        assert got.dtype == np.int64 and np.array_equal(got, ref_exp(x, fmt.frac_bits, out_frac))
        assert got[0] == got[2] == 2 ** out_frac and got.min() >= 0  # exp(0) = 1; x > 0 clamps to 0


def test_exp_accuracy_against_math_exp():
    x = np.concatenate([np.arange(-(20 << 16), 1, 37), [-(64 << 16), -(70 << 16)]]).astype(np.int32)
    got = jx(EXP(x, WEIGHTS)).astype(np.float64) / 2 ** 30
    exact = np.array([math.exp(v) for v in dequantize(x, WEIGHTS)])
    # x < 0 shifts the polynomial's 6.58 units right by >= 1 bit; plus the final half unit and the
    # rounding of x * log2 e (< 0.4 units): < 4.2 in theory, 2.4 measured
    assert np.max(np.abs(got - exact)) * 2 ** 30 < 4.2
    assert got[-1] == got[-2] == 0.0


# ---- softmax / sigmoid -----------------------------------------------------------------------

@pytest.mark.parametrize("fmt,n", [(WEIGHTS, 10), (WEIGHTS, 1), (WEIGHTS, 257), (Q8_64, 5),
                                   (Q0_32, 4)])
def test_softmax_matches_reference(fmt, n):
    x = logits(np.random.default_rng(n), 300, n, fmt)
    got = jx(SOFTMAX(x, fmt))
    assert got.dtype == np.int32 and np.array_equal(got, ref_softmax(x, fmt))
    if n == 1:
        assert np.all(got == 1 << 16)


def test_softmax_special_rows_and_other_shapes():
    x = logits(np.random.default_rng(3), 8, 4)
    p = jx(SOFTMAX(x, WEIGHTS))
    assert p[0].tolist() == p[1].tolist() == p[2].tolist() == [1 << 14] * 4  # equal rows: exactly 1/4
    assert p[3].tolist() == [1 << 16, 0, 0, 0]  # very negative logits underflow to exactly 0
    far = jx(SOFTMAX(quantize(np.array([[0.0, -11.5, -12.0]]), WEIGHTS), WEIGHTS))[0]
    assert far[1] > 0 and far[2] == 0  # exactly 0 once exp(d) < 2**-17, i.e. d < -11.78
    x3 = logits(np.random.default_rng(4), 12, 6).reshape(2, 6, 6)
    assert np.array_equal(jx(SOFTMAX(x3, WEIGHTS)), ref_softmax(x3, WEIGHTS))
    out = FixedFormat(30, 64, 1 << 30)
    assert np.array_equal(jx(SOFTMAX(x, WEIGHTS, out)), ref_softmax(x, WEIGHTS, out))


def test_softmax_accuracy_against_float64():
    x = logits(np.random.default_rng(5), 2000, 10)
    z = dequantize(x, WEIGHTS)
    exact = np.exp(z - z.max(-1, keepdims=True))
    exact /= exact.sum(-1, keepdims=True)
    p = jx(SOFTMAX(x, WEIGHTS)).astype(np.int64)
    err = np.max(np.abs(p / 2 ** 16 - exact)) * 2 ** 16
    assert err < 0.5 + 1e-3  # half a Q.16 unit from rounding; the exp error is ~2**-27
    assert np.max(np.abs(p.sum(-1) - (1 << 16))) <= 5  # 10 roundings of at most half a unit


@pytest.mark.parametrize("fmt", EXP_FORMATS)
def test_sigmoid_matches_reference_for_both_signs(fmt):
    rng = np.random.default_rng(30 + fmt.frac_bits)
    x = np.concatenate([np.array([0, 1, -1, fmt.max_abs, -fmt.max_abs], dtype=np.int64),
                        rng.integers(-(20 << fmt.frac_bits), 20 << fmt.frac_bits, 3000, endpoint=True)])
    x = np.clip(x, -fmt.max_abs, fmt.max_abs).astype(fmt.dtype)
    got = jx(SIGMOID(x, fmt))
    assert got.dtype == np.int32 and np.array_equal(got, ref_sigmoid(x, fmt))
    assert got[0] == 1 << 15 and got[3] == 1 << 16 and got[4] == 0
    pair = got + jx(SIGMOID(-x, fmt))  # sigma(x) + sigma(-x) = 1, up to one tie rounding up twice
    assert np.all((pair == 1 << 16) | (pair == (1 << 16) + 1))


def test_sigmoid_accuracy_against_float64():
    x = np.arange(-(16 << 16), 16 << 16, 101).astype(np.int32)
    z = dequantize(x, WEIGHTS)
    got = jx(SIGMOID(x, WEIGHTS)) / 2 ** 16
    assert np.max(np.abs(got - 1 / (1 + np.exp(-z)))) * 2 ** 16 < 0.5 + 1e-3


def test_div_round_half_up():
    num = np.array([0, 1, 2, 3, 5, 7, 1 << 60, (1 << 60) + 1, 10], dtype=np.int64)
    den = np.array([1, 2, 4, 2, 10, 2, 3, 2, 1 << 40], dtype=np.int64)
    got = jx(div_round_half_up(jax.numpy.asarray(num), jax.numpy.asarray(den)))
    assert got.tolist() == ref_div_half_up(num, den).tolist()
    assert got.tolist()[:6] == [0, 1, 1, 2, 1, 4]  # ties (1/2, 3/2, 5/10, 7/2) round up


# ---- ln ----------------------------------------------------------------------------------------

LN = jax.jit(ln_q16)


def test_ln_exhaustive_over_probabilities():
    """Every Q.16 probability 1..2**16: bit for bit the reference, within 0.5 + 2**-10 units of the
    float64 log (measured 0.50060), monotone, exact at 1 and at powers of two up to rounding."""
    p = np.arange(1, (1 << 16) + 1, dtype=np.int32)
    got = jx(LN(p))
    assert got.dtype == np.int64 and np.array_equal(got, ref_ln_q16(p))
    err = np.abs(got - np.log(p / 2 ** 16) * 2 ** 16)
    assert err.max() < 0.5 + 2 ** -10
    assert got[-1] == 0 and got[0] == -726817 and np.all(np.diff(got) >= 0)  # ln(2**-16) = -11.09
    assert np.array_equal(got[(1 << np.arange(17)) - 1], np.round(np.log(2.0) * np.arange(-16, 1) * 2 ** 16))


def test_ln_over_int32_and_clamps():
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.integers(1, 2 ** 31 - 1, 3000), [2 ** 31 - 1, 2 ** 30, 0, -5, 1]])
    for dt in (np.int32, np.int64):
        got = jx(LN(x.astype(dt)))
        assert np.array_equal(got, ref_ln_q16(x))
    assert got[-3] == got[-2] == got[-1] == -726817  # inputs below 1 unit count as 1
    assert np.abs(got[:-3] - np.log(x[:-3] / 2 ** 16) * 2 ** 16).max() < 0.5 + 2 ** -10
    assert jx(LN(np.array([2 ** 40], np.int64)))[0] == got[-5]  # clamped to 2**31 - 1


# ---- loss gradients --------------------------------------------------------------------------

def test_cross_entropy_grad_is_p_minus_y():
    rng = np.random.default_rng(6)
    x = logits(rng, 200, 10)
    labels = rng.integers(0, 10, 200)
    y = (np.eye(10, dtype=np.int32)[labels] << 16).astype(np.int32)
    p = jx(SOFTMAX(x, WEIGHTS))
    g = jx(cross_entropy_grad(p, y))
    assert g.dtype == np.int32 and np.array_equal(g, p.astype(np.int64) - y)
    # against the float64 gradient of -log softmax(z)[label]
    z = dequantize(x, WEIGHTS)
    sm = np.exp(z - z.max(-1, keepdims=True))
    sm /= sm.sum(-1, keepdims=True)
    assert np.max(np.abs(g / 2 ** 16 - (sm - np.eye(10)[labels]))) * 2 ** 16 < 0.5 + 1e-3


def test_mse_grad_is_pred_minus_target_saturated():
    rng = np.random.default_rng(7)
    pred = rng.integers(-WEIGHTS.max_abs, WEIGHTS.max_abs, 1000, endpoint=True).astype(np.int32)
    target = rng.integers(-WEIGHTS.max_abs, WEIGHTS.max_abs, 1000, endpoint=True).astype(np.int32)
    pred[0], target[0] = WEIGHTS.max_abs, -WEIGHTS.max_abs
    g = jx(mse_grad(pred, target, WEIGHTS))
    assert np.array_equal(g, ref_saturate(pred.astype(np.int64) - target, WEIGHTS))
    assert g[0] == WEIGHTS.max_abs


# ---- jit vs eager ----------------------------------------------------------------------------

def test_jit_and_eager_give_identical_bits():
    x = logits(np.random.default_rng(8), 64, 10)
    for fn, jitted, args in [(softmax, SOFTMAX, (x, WEIGHTS)), (sigmoid, SIGMOID, (x, WEIGHTS)),
                             (mul, MUL, (x, x, WEIGHTS, WEIGHTS, WEIGHTS))]:
        with jax.disable_jit():
            eager = jx(fn(*args))
        assert jx(jitted(*args)).tobytes() == eager.tobytes(), fn.__name__
    assert jx(SOFTMAX(x, WEIGHTS)).tobytes() == ref_softmax(x, WEIGHTS).tobytes()


# ---- the same bits across device counts and XLA CPU flags (subprocesses) ----------------------

SCENARIO = r"""
import hashlib, json, sys
import numpy as np
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
from mlcore.fixed import WEIGHTS
from mlcore.activations import cross_entropy_grad, exp_nonpos, ln_q16, mul, sigmoid, softmax

def sha(x):
    return hashlib.sha256(np.asarray(x).tobytes()).hexdigest()

d = np.load(sys.argv[1])
x, y = d["x"], d["y"]
n = jax.device_count()
if n > 1:  # shard the batch (rows) over every device
    sh = NamedSharding(jax.make_mesh((n,), ("x",)), P("x", None))
    x, y = jax.device_put(x, sh), jax.device_put(y, sh)
p = jax.jit(softmax, static_argnums=(1,))(x, WEIGHTS)
out = {"devices": n, "shards": len(getattr(p, "addressable_shards", [0])),
       "softmax": sha(p), "grad": sha(jax.jit(cross_entropy_grad)(p, y)),
       "sigmoid": sha(jax.jit(sigmoid, static_argnums=(1,))(x, WEIGHTS)),
       "exp": sha(jax.jit(exp_nonpos, static_argnums=(1,))(-abs(x), WEIGHTS)),
       "mul": sha(jax.jit(mul, static_argnums=(2, 3, 4))(x, x, WEIGHTS, WEIGHTS, WEIGHTS)),
       "ln": sha(jax.jit(ln_q16)(p))}
print(json.dumps(out))
"""



def test_same_bits_across_devices_and_cpu_flags(tmp_path):
    rng = np.random.default_rng(12)
    x = logits(rng, 64, 10)
    y = (np.eye(10, dtype=np.int32)[rng.integers(0, 10, 64)] << 16).astype(np.int32)
    np.savez(tmp_path / "in.npz", x=x, y=y)
    sha = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()  # noqa: E731
    p = ref_softmax(x, WEIGHTS)
    expected = {"softmax": sha(p), "grad": sha((p.astype(np.int64) - y).astype(np.int32)),
                "sigmoid": sha(ref_sigmoid(x, WEIGHTS)), "exp": sha(ref_exp(-np.abs(x), 16)),
                "mul": sha(ref_mul(x, x, WEIGHTS, WEIGHTS, WEIGHTS)), "ln": sha(ref_ln_q16(p))}
    assert_same_everywhere(SCENARIO, tmp_path / "in.npz", expected)


# ---- the fast exact lowerings behind softmax and the loss -------------------------------------

def test_ln_with_the_float64_division_bound_gives_the_same_bits():
    """ln_q16(p, x_max=2**16) (the loss's call, float64 division) equals the default path for every
    probability the loss can see."""
    from mlcore.activations import ln_q16
    p = np.arange(1, (1 << 16) + 1, dtype=np.int32)
    fast = jax.jit(lambda v: ln_q16(v, x_max=1 << 16))(p)
    assert np.array_equal(np.asarray(fast), np.asarray(jax.jit(ln_q16)(p)))
    assert np.array_equal(np.asarray(fast), ref_ln_q16(p))


def test_floor_div_nonneg_is_exact_at_its_edges():
    """a // b through float64 plus one correction step, against Python's exact //, where a float
    quotient rounds across an integer: a = q*b - 1, q*b, q*b + 1 with a, b up to 2**53 - 1."""
    from mlcore.activations import floor_div_nonneg
    top = (1 << 53) - 1
    rng = np.random.default_rng(5)
    bs = [1, 2, 3, 7, (1 << 26) + 1, (1 << 52) - 1, top, *rng.integers(1, top, 40).tolist()]
    pairs = []
    for b in bs:
        for q in (0, 1, 2, (top // b) // 2, top // b):
            for d in (-1, 0, 1):
                a = q * b + d
                if 0 <= a <= top:
                    pairs.append((a, b))
    pairs += [(int(a), int(b)) for a, b in zip(rng.integers(0, top, 2000), rng.integers(1, top, 2000))]
    a = np.array([p[0] for p in pairs], np.int64)
    b = np.array([p[1] for p in pairs], np.int64)
    got = np.asarray(jax.jit(floor_div_nonneg)(a, b))
    assert got.tolist() == [x // y for x, y in pairs]
