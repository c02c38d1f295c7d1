"""Elementwise ops, ReLU, integer exp / softmax / sigmoid and loss gradients on fixed-point tensors.

Every function is pure, integer-only and jit-compatible (formats are static Python values); the
exact rules are in docs/mlcore.md section 6 and tests/test_mlcore_activations.py holds a numpy int64
reference that must match them bit for bit.  exp is 2**(x * log2 e): the product splits into an
integer part (a shift) and a fraction whose power of two is a frozen integer polynomial; ln splits
its input into a power of two (the bit length) and a mantissa whose log is a series with integer
coefficients; so no float or transcendental function is ever evaluated on device.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from mlcore.fixed import FixedFormat, int_array, materialize, rescale, round_shift_small, saturate

INT64_MAX = (1 << 63) - 1
F64_EXACT = 1 << 53  # every integer of magnitude <= 2**53 is a float64

# Internal precision of exp: Q.30.  round(log2(e) * 2**30); log2(e) = 1.44269504088896340736...
EXP_FRAC = 30
ONE = 1 << EXP_FRAC
LOG2E = 1549082005
# 2**f for f = r / 2**30 in [0, 1), Horner in Q.30: p = c6; p = round_shift(p * r, 30) + c_k for k = 5..0.
# Fitted once (near-minimax, c0 fixed to 2**30 so exp(0) is exactly 1) and frozen; over all 2**30
# inputs p is monotone, in [2**30, 2**31) and within 6.58 Q.30 units of 2**f (tests re-measure it).
EXP2_POLY = (1073741824, 744260928, 257944889, 59573866, 10395077, 1333042, 234018)
# Inputs below -EXP_CLAMP (real value) are clamped there: exp(-64) < 2**-92 already rounds to 0 in
# every output format exp allows, so the clamp changes no result; it only keeps x * LOG2E in int64.
EXP_CLAMP = 64
EXP_MAX_IN_FRAC = 25  # 64 * 2**25 * LOG2E < 2**62

# ln: internal precision Q.30.  LN2 = round(ln(2) * 2**30), ln(2) = 0.69314718055994530941...
LN2 = 744261118
# ln(m) = 2 atanh(s) = sum_k 2 s**(2k+1) / (2k+1) with s = (m - 1) / (m + 1) in [0, 1/3) for m in
# [1, 2); LN_SERIES[k] = round(2**31 / (2k + 1)) half up, i.e. (2**32 + 2k + 1) // (4k + 2).  The
# first omitted term is below 2 * 3**-15 / 15 * 9/8 < 1.1e-8 (12 Q.30 units).
LN_SERIES = (2147483648, 715827883, 429496730, 306783378, 238609294, 195225786, 165191050)
LN_IN_MAX = (1 << 31) - 1  # ln_q16 takes Q.16 values in [1, 2**31 - 1] (smaller ones are clamped to 1)
# Inputs below 2**22 (bit length k <= 21) keep ln's division numerator 2**31 (x - 2**k) + x + 2**k
# below 2**53, so it runs in float64 (floor_div_nonneg).
LN_F64_MAX = 1 << 22

# Probabilities (softmax, sigmoid, one-hot targets, p - y): Q.16 in int32, |q| <= 1.0.
PROBS = FixedFormat(frac_bits=16, bits=32, max_abs=1 << 16)


def _check_sum_safe(fmt: FixedFormat) -> None:
    if 2 * fmt.max_abs > INT64_MAX:
        raise ValueError(f"format max_abs {fmt.max_abs} too large: a sum or difference could overflow int64")


def add(a, b, fmt: FixedFormat) -> jnp.ndarray:
    """saturate(a + b, fmt); a and b are in fmt (same fractional bits), broadcasting allowed."""
    _check_sum_safe(fmt)
    return saturate(int_array(a).astype(jnp.int64) + int_array(b).astype(jnp.int64), fmt)


def sub(a, b, fmt: FixedFormat) -> jnp.ndarray:
    """saturate(a - b, fmt); a and b are in fmt (same fractional bits), broadcasting allowed."""
    _check_sum_safe(fmt)
    return saturate(int_array(a).astype(jnp.int64) - int_array(b).astype(jnp.int64), fmt)


def mul(a, b, a_fmt: FixedFormat, b_fmt: FixedFormat, out_fmt: FixedFormat) -> jnp.ndarray:
    """rescale(a * b, fa + fb - f_out, out_fmt): the exact int64 product, rounded half up, saturated."""
    if a_fmt.max_abs * b_fmt.max_abs > INT64_MAX:
        raise ValueError("a_fmt.max_abs * b_fmt.max_abs exceeds int64: the product could overflow")
    s = a_fmt.frac_bits + b_fmt.frac_bits - out_fmt.frac_bits
    if s < 0:
        raise ValueError(f"out_fmt has more fractional bits ({out_fmt.frac_bits}) than the product")
    return rescale(int_array(a).astype(jnp.int64) * int_array(b).astype(jnp.int64), s, out_fmt)


def relu(x) -> jnp.ndarray:
    """max(x, 0), same dtype and format."""
    x = int_array(x)
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def relu_mask(x) -> jnp.ndarray:
    """The derivative of ReLU at the pre-activation x as 0/1 in x's dtype (0 at x = 0).

    Backprop multiplies the incoming gradient by it; that product is exact and needs no rescale.
    """
    x = int_array(x)
    return (x > 0).astype(x.dtype)


def exp2_frac(r: jnp.ndarray) -> jnp.ndarray:
    """2**(r / 2**30) in Q.30 for int64 r in [0, 2**30): Horner on EXP2_POLY with round-half-up.

    Every Horner value lies in [0, sum(EXP2_POLY)) within [0, 2**31) (positive coefficients, and
    p * r / 2**30 < p), so p * r + 2**29 < 2**61 never overflows and the plain
    (p * r + 2**29) >> 30 is round_shift(p * r, 30) without its overflow guard (a third of the work).
    """
    p = jnp.full(r.shape, EXP2_POLY[-1], jnp.int64)
    for c in EXP2_POLY[-2::-1]:
        p = round_shift_small(p * r, EXP_FRAC) + c
    return p


def _check_exp_formats(fmt: FixedFormat, out_frac: int) -> None:
    if fmt.frac_bits > EXP_MAX_IN_FRAC:
        raise ValueError(f"exp input may have at most {EXP_MAX_IN_FRAC} fractional bits, got {fmt.frac_bits}")
    if not isinstance(out_frac, int) or not 0 <= out_frac <= EXP_FRAC:
        raise ValueError(f"exp output fractional bits must be an int in [0, {EXP_FRAC}], got {out_frac!r}")


def exp_nonpos(x, fmt: FixedFormat, out_frac: int = EXP_FRAC) -> jnp.ndarray:
    """exp(min(x, 0)) as int64 with out_frac fractional bits, in [0, 2**out_frac]; exp(0) is exactly 1.

    x (in fmt, at most 25 fractional bits) is clamped to [-64, 0]; t = round_shift(x * LOG2E, f) is
    log2 of the result in Q.30; n = t >> 30 (<= 0) and r = t & (2**30 - 1) give
    2**t = 2**n * exp2_frac(r), and the shift by 30 - out_frac - n (capped at 62, where the result is
    already 0) rounds half up.
    """
    _check_exp_formats(fmt, out_frac)
    f = fmt.frac_bits
    x = jnp.clip(int_array(x).astype(jnp.int64), -(EXP_CLAMP << f), 0)
    t = round_shift_small(x * LOG2E, f)  # x * LOG2E <= 0: adding 2**(f-1) cannot overflow
    n = t >> EXP_FRAC
    p = exp2_frac(t & (ONE - 1))
    s = jnp.clip(EXP_FRAC - out_frac - n, 0, 62)
    return (p + (jnp.left_shift(jnp.int64(1), s) >> 1)) >> s


def div_round_half_up(num: jnp.ndarray, den: jnp.ndarray, num_max: int | None = None) -> jnp.ndarray:
    """floor(num / den + 1/2) = (2 num + den) // (2 den), for num >= 0, den > 0 and 2 num + den < 2**63.

    Those are the only signs softmax and sigmoid produce; the integer division is exact.  With a
    static bound `num_max >= num` and `den <= num_max` (so 2 num + den < 3 num_max), and
    3 num_max < 2**53, the quotient is computed by `floor_div_nonneg` through float64 (same bits).
    """
    a, b = 2 * num + den, 2 * den
    if num_max is not None and 3 * num_max < F64_EXACT:
        return floor_div_nonneg(a, b)
    return a // b


def floor_div_nonneg(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """a // b for int64 0 <= a < 2**53 and 0 < b < 2**53 (the caller proves the bounds), via float64.

    Integer division has no SIMD form on x86 (about 3x slower here); float64 division does.  a and
    b convert to float64 exactly; the float quotient w = fl(a / b) is within 1 of a / b (it is
    within 2**-52 relatively for a correctly rounded or a reciprocal-times-a quotient, and
    a / b < 2**53), so q = trunc(w) (= floor, w >= 0) lies in {q* - 1, q*, q* + 1} around the
    true q* = a // b.  r = a - q b is exact in int64 (|q b| <= a + b), and one step
    q -= (r < 0); q += (r >= b) lands on q*.  docs/mlcore.md section 6 has the proof.
    """
    q = (a.astype(jnp.float64) / b.astype(jnp.float64)).astype(jnp.int64)
    r = a - q * b
    return q - (r < 0).astype(jnp.int64) + (r >= b).astype(jnp.int64)


def _check_prob_format(out_fmt: FixedFormat) -> None:
    if out_fmt.frac_bits > EXP_FRAC:
        raise ValueError(f"output may have at most {EXP_FRAC} fractional bits, got {out_fmt.frac_bits}")


def softmax(x, fmt: FixedFormat, out_fmt: FixedFormat = PROBS) -> jnp.ndarray:
    """Softmax over the last axis: e = exp_nonpos(x - rowmax) in Q.30, exact int64 row sum S >= 2**30,
    p = div_round_half_up(e * 2**f_out, S), saturated to out_fmt.

    The row maximum maps to exactly 2**30, so S > 0; each p is within half an output unit (plus the
    exp error, below 2**-27 absolute) of the float softmax.
    """
    _check_prob_format(out_fmt)
    e, total = softmax_terms(x, fmt)
    return softmax_divide(e, total, e.shape[-1], out_fmt)


def softmax_terms(x, fmt: FixedFormat) -> tuple[jnp.ndarray, jnp.ndarray]:
    """softmax's parts: e = exp_nonpos(x - max(x, axis=-1), fmt) in Q.30 (int64, computed once:
    `materialize`) and its exact row sum S (keepdims), 2**30 <= S <= N * 2**30."""
    _check_sum_safe(fmt)
    x = int_array(x).astype(jnp.int64)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"softmax needs a non-empty last axis, got shape {x.shape}")
    e = materialize(exp_nonpos(x - jnp.max(x, axis=-1, keepdims=True), fmt))
    return e, jnp.sum(e, axis=-1, keepdims=True)


def softmax_divide(e: jnp.ndarray, total: jnp.ndarray, n: int, out_fmt: FixedFormat = PROBS) -> jnp.ndarray:
    """saturate(div_round_half_up(e * 2**f_out, S), out_fmt): the probabilities of entries e of
    softmax_terms over rows of n entries (all of a row, or entries gathered from rows, each with its
    row's S, broadcasting)."""
    _check_prob_format(out_fmt)
    return saturate(div_round_half_up(e << out_fmt.frac_bits, total, softmax_num_max(n, out_fmt)), out_fmt)


def softmax_num_max(n: int, out_fmt: FixedFormat) -> int:
    """A bound on softmax's numerator e * 2**f_out and denominator S over n entries: e <= 2**30 and
    2**30 <= S <= n * 2**30."""
    return ONE * max(1 << out_fmt.frac_bits, n)


def sigmoid(x, fmt: FixedFormat, out_fmt: FixedFormat = PROBS) -> jnp.ndarray:
    """1 / (1 + exp(-x)) through e = exp_nonpos(-|x|) in Q.30, for both signs without overflow:

    x >= 0: p = div_round_half_up(2**30 * 2**f_out, 2**30 + e)
    x <  0: p = div_round_half_up(e * 2**f_out, 2**30 + e)
    saturated to out_fmt.  The two numerators of x and -x add up to the denominator times 2**f_out.
    """
    _check_prob_format(out_fmt)
    x = int_array(x).astype(jnp.int64)
    e = exp_nonpos(-jnp.abs(x), fmt)
    num = jnp.where(x >= 0, ONE, e) << out_fmt.frac_bits
    # num <= 2**30 * 2**f_out and den = 2**30 + e <= 2**31
    num_max = ONE * max(1 << out_fmt.frac_bits, 2)
    return saturate(div_round_half_up(num, ONE + e, num_max), out_fmt)


def cross_entropy_grad(p, y, fmt: FixedFormat = PROBS) -> jnp.ndarray:
    """d(cross-entropy)/d(logits) of one example = p - y (softmax p, one-hot y, both in fmt); no log.

    With PROBS the difference lies in [-1, 1] and is exact.  Averaging over a batch is the caller's.
    """
    return sub(p, y, fmt)


def mse_grad(pred, target, fmt: FixedFormat) -> jnp.ndarray:
    """d(1/2 (pred - target)**2)/d(pred) = pred - target, saturated to fmt (both in fmt).

    The 1/2 in the loss absorbs the factor 2; averaging over a batch is the caller's.
    """
    return sub(pred, target, fmt)


def ln_q16(x, x_max: int = LN_IN_MAX) -> jnp.ndarray:
    """ln(x / 2**16) in Q.16 (int64) for a Q.16 value x, clamped to [1, 2**31 - 1] first.

    k = bit_length(x) - 1 (from clz), m = x * 2**(30 - k) in [2**30, 2**31) exactly (Q.30 mantissa);
    s = div_round_half_up((m - 2**30) * 2**30, m + 2**30)      (Q.30, (m - 1) / (m + 1) in [0, 1/3))
    z = round_shift(s * s, 30);  q = LN_SERIES[6];  q = round_shift(q * z, 30) + LN_SERIES[j], j = 5..0
    t = (k - 16) * LN2 + round_shift(q * s, 30)                  (ln(x / 2**16) in Q.30)
    result = round_shift(t, 14)
    Within 0.5 + 2**-10 Q.16 units of the exact log (docs/mlcore.md section 6; the tests measure it).

    `x_max` (static) is a bound the caller guarantees for x; below LN_F64_MAX the division runs in
    float64 (same bits, section 6).  Every product here is below 2**61, so the roundings take the
    plain form (round_shift_small).
    """
    x = jnp.clip(int_array(x).astype(jnp.int64), 1, min(LN_IN_MAX, max(x_max, 1)))
    k = 63 - lax.clz(x)
    if x_max < LN_F64_MAX:
        # m - 2**30 = (x - 2**k) 2**(30-k) and m + 2**30 = (x + 2**k) 2**(30-k): the common factor
        # 2**(30-k) cancels from floor((2 num + den) / (2 den)), leaving integers below 2**53
        top = jnp.left_shift(jnp.int64(1), k)
        s = floor_div_nonneg(((x - top) << (EXP_FRAC + 1)) + x + top, 2 * (x + top))
    else:
        m = x << (EXP_FRAC - k)
        s = div_round_half_up((m - ONE) << EXP_FRAC, m + ONE)
    z = round_shift_small(s * s, EXP_FRAC)
    q = jnp.full(x.shape, LN_SERIES[-1], jnp.int64)
    for c in LN_SERIES[-2::-1]:
        q = round_shift_small(q * z, EXP_FRAC) + c
    t = (k - 16) * LN2 + round_shift_small(q * s, EXP_FRAC)
    return round_shift_small(t, EXP_FRAC - 16)
