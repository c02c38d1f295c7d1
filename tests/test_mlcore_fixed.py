"""mlcore.fixed against an independent numpy reference: formats, rounding, saturation, the PRNG.

The references below are the specification of docs/mlcore.md written naively (exact Python
integers where the formula would overflow int64); the JAX kernels must match them bit for bit.
"""
from __future__ import annotations

from fractions import Fraction

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.fixed import (GOLDEN, WEIGHTS, FixedFormat, dequantize, digit_bound, mix64, quantize,
                          random_bits, rescale, rng_key, round_shift, saturate, stochastic_rescale,
                          stochastic_shift)

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


# ---- numpy reference -------------------------------------------------------------------------

def ref_round_shift(x: np.ndarray, s: int) -> np.ndarray:
    """floor((x + 2**(s-1)) / 2**s), in exact integers."""
    if s == 0:
        return x.astype(np.int64)
    ints = x.astype(np.int64).astype(object)
    return ((ints + (1 << (s - 1))) // (1 << s)).astype(np.int64)


def ref_saturate(x: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    return np.clip(x.astype(np.int64), -fmt.max_abs, fmt.max_abs).astype(fmt.dtype)


def ref_mix64(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def ref_key(block: int, tx: int, step: int, stream: int = 0) -> int:
    k = 0
    for v in (block, tx, step, stream):
        k = int(ref_mix64(np.array([((k ^ v) + GOLDEN) % (1 << 64)], dtype=np.uint64))[0])
    return k


def ref_random_bits(key: int, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.uint64).reshape(shape)
    return ref_mix64(np.uint64(key) + (i + np.uint64(1)) * np.uint64(GOLDEN))


def ref_stochastic_shift(x: np.ndarray, s: int, key: int) -> np.ndarray:
    if s == 0:
        return x.astype(np.int64)
    r = (ref_random_bits(key, x.shape) >> np.uint64(64 - s)).astype(object)
    return ((x.astype(np.int64).astype(object) + r) // (1 << s)).astype(np.int64)


def ref_quantize(v: float, fmt: FixedFormat) -> int:
    q = int(np.floor(Fraction(v) * (1 << fmt.frac_bits) + Fraction(1, 2)))
    return max(-fmt.max_abs, min(fmt.max_abs, q))


def extreme_int64(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random int64 values plus the edges where rounding and shifting go wrong."""
    edges = [I64_MIN, I64_MIN + 1, I64_MAX, I64_MAX - 1, 0, 1, -1, 2, -2, 3, -3,
             (1 << 31) - 1, -(1 << 31), 1 << 40, -(1 << 40), (1 << 40) + (1 << 39), -(1 << 40) - (1 << 39)]
    return np.concatenate([np.array(edges, dtype=np.int64),
                           rng.integers(I64_MIN, I64_MAX, n, dtype=np.int64, endpoint=True),
                           rng.integers(-5000, 5000, n, dtype=np.int64)])


def jx(x) -> np.ndarray:
    return np.asarray(x)


# ---- formats ---------------------------------------------------------------------------------

def test_digit_bounds_and_weight_format():
    assert [digit_bound(n) for n in (1, 2, 3, 4)] == [127, 32639, 8355711, 2139062143]
    assert WEIGHTS == FixedFormat(16, 32, 8355711) and WEIGHTS.digits == 3
    assert FixedFormat(16, 32, 8355712).digits == 4
    assert FixedFormat(0, 32, (1 << 31) - 1).digits == 5
    assert FixedFormat(8, 64, 1 << 40).dtype == np.int64


@pytest.mark.parametrize("args", [(16, 16, 100), (-1, 32, 10), (31, 32, 10), (16, 32, 0),
                                  (16, 32, 1 << 31), (16, 64, 1 << 63), (1.5, 32, 10), (16, 32, 2.0)])
def test_bad_formats_are_refused(args):
    with pytest.raises(ValueError):
        FixedFormat(*args)


# ---- quantize / dequantize (host side) -------------------------------------------------------

def test_quantize_rounds_half_up_exactly():
    ulp = 2.0 ** -16
    values = [0.5 * ulp, -0.5 * ulp, 1.5 * ulp, -1.5 * ulp, 2.5 * ulp, -2.5 * ulp,
              0.49999999999999994 * ulp, -0.49999999999999994 * ulp, 1.0, -1.0, 0.0, -0.0]
    assert quantize(values, WEIGHTS).tolist() == [1, 0, 2, -1, 3, -2, 0, 0, 65536, -65536, 0, 0]
    assert quantize(values, WEIGHTS).dtype == np.int32


def test_quantize_saturates_and_refuses_nonfinite():
    assert quantize([1e300, -1e300, 200.0, -200.0], WEIGHTS).tolist() == [8355711, -8355711] * 2
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            quantize([1.0, bad], WEIGHTS)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0, 1, 8, 16, 30]))
def test_quantize_matches_exact_rational_rounding(v, frac):
    fmt = FixedFormat(frac, 64, (1 << 62))
    assert int(quantize([v], fmt)[0]) == ref_quantize(v, fmt)


def test_dequantize_inverts_quantize_within_half_a_step():
    x = np.random.default_rng(1).uniform(-100, 100, 1000)
    assert np.max(np.abs(dequantize(quantize(x, WEIGHTS), WEIGHTS) - x)) <= 2.0 ** -17


# ---- saturate / round_shift / rescale --------------------------------------------------------

def test_saturate_matches_reference_and_checks_dtype():
    x = extreme_int64(np.random.default_rng(2), 500)
    for fmt in (WEIGHTS, FixedFormat(0, 32, (1 << 31) - 1), FixedFormat(4, 64, 1 << 50)):
        out = jx(saturate(x, fmt))
        assert out.dtype == fmt.dtype and np.array_equal(out, ref_saturate(x, fmt))
    with pytest.raises(TypeError, match="int32 or int64"):
        saturate(np.array([1.5]), WEIGHTS)


def test_round_shift_ties_go_toward_positive_infinity():
    x = np.array([-7, -6, -5, -3, -2, -1, 0, 1, 2, 3, 5, 6, 7], dtype=np.int64)
    assert jx(round_shift(x, 1)).tolist() == [-3, -3, -2, -1, -1, 0, 0, 1, 1, 2, 3, 3, 4]
    assert jx(round_shift(x, 2)).tolist() == [-2, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("s", [0, 1, 2, 7, 16, 31, 32, 40, 61, 62])
def test_round_shift_matches_reference_including_int64_edges(s):
    x = extreme_int64(np.random.default_rng(s), 300)
    assert np.array_equal(jx(round_shift(x, s)), ref_round_shift(x, s))
    x32 = np.array([-(1 << 31), (1 << 31) - 1, -5, 5], dtype=np.int32)
    assert np.array_equal(jx(round_shift(x32, s)), ref_round_shift(x32, s))


def test_rescale_rounds_then_saturates():
    x = extreme_int64(np.random.default_rng(3), 300)
    out = jx(rescale(x, 16, WEIGHTS))
    assert out.dtype == np.int32
    assert np.array_equal(out, ref_saturate(ref_round_shift(x, 16), WEIGHTS))


@pytest.mark.parametrize("s", [-1, 63, 1.0])
def test_bad_shifts_are_refused(s):
    with pytest.raises(ValueError, match="shift"):
        round_shift(np.array([1]), s)
    with pytest.raises(ValueError, match="shift"):
        stochastic_shift(np.array([1]), s, 0)


# ---- PRNG and stochastic rounding ------------------------------------------------------------

def test_random_bits_are_splitmix64():
    # Published SplitMix64 outputs for seed 0: our stream with key 0 is exactly that generator.
    assert [int(v) for v in jx(random_bits(0, (3,)))] == [
        0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_random_bits_match_reference():
    for key in (0, 1, rng_key(10, 3, 7), (1 << 64) - 1):
        bits = jx(random_bits(key, (17, 9)))
        assert bits.dtype == np.uint64 and np.array_equal(bits, ref_random_bits(key, (17, 9)))
    z = np.random.default_rng(4).integers(0, 1 << 64, 1000, dtype=np.uint64, endpoint=False)
    assert np.array_equal(jx(mix64(z)), ref_mix64(z))


def test_rng_key_is_the_documented_chain_and_separates_inputs():
    cases = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (5, 2, 9), (5, 2, 9, 1), ((1 << 64) - 1, 7, 0)]
    keys = [rng_key(*c) for c in cases]
    assert keys == [ref_key(*c) for c in cases]
    assert len(set(keys)) == len(keys)
    for bad in ((-1, 0, 0), (0, 1 << 64, 0), (0, 0, 1.0), (True, 0, 0)):
        with pytest.raises(ValueError):
            rng_key(*bad)


@pytest.mark.parametrize("s", [1, 2, 8, 16, 33, 62])
def test_stochastic_shift_matches_reference(s):
    x = extreme_int64(np.random.default_rng(100 + s), 300)
    key = rng_key(123, 4, s)
    assert np.array_equal(jx(stochastic_shift(x, s, key)), ref_stochastic_shift(x, s, key))
    assert np.array_equal(jx(stochastic_shift(x, 0, key)), x)


def test_stochastic_rounding_is_unbiased_and_keyed():
    x = np.full(20000, 5, dtype=np.int64)  # 5 / 4 = 1.25: rounds up to 2 a quarter of the time
    out = jx(stochastic_shift(x, 2, rng_key(1, 2, 3)))
    assert set(out.tolist()) == {1, 2}
    assert abs(out.mean() - 1.25) < 0.01
    exact = np.arange(-100, 100, dtype=np.int64) * 16  # multiples of 2**4 never move
    assert np.array_equal(jx(stochastic_shift(exact, 4, rng_key(9, 9, 9))), exact // 16)
    assert not np.array_equal(out, jx(stochastic_shift(x, 2, rng_key(1, 2, 4))))
    assert np.array_equal(out, jx(stochastic_shift(x, 2, rng_key(1, 2, 3))))


def test_stochastic_rescale_saturates():
    x = extreme_int64(np.random.default_rng(5), 200)
    key = rng_key(1, 1, 1)
    out = jx(stochastic_rescale(x, 16, key, WEIGHTS))
    assert out.dtype == np.int32
    assert np.array_equal(out, ref_saturate(ref_stochastic_shift(x, 16, key), WEIGHTS))


# ---- jit vs eager ----------------------------------------------------------------------------

def test_jit_and_eager_give_identical_bits():
    x = extreme_int64(np.random.default_rng(6), 500)
    key = np.uint64(rng_key(77, 1, 2))
    jit_r = jax.jit(rescale, static_argnums=(1, 2))
    jit_s = jax.jit(stochastic_rescale, static_argnums=(1, 3))
    a, b = jx(jit_r(x, 16, WEIGHTS)), jx(jit_s(x, 16, key, WEIGHTS))
    with jax.disable_jit():
        assert np.array_equal(a, jx(rescale(x, 16, WEIGHTS)))
        assert np.array_equal(b, jx(stochastic_rescale(x, 16, key, WEIGHTS)))
    assert a.tobytes() == ref_saturate(ref_round_shift(x, 16), WEIGHTS).tobytes()


def test_materialize_is_the_identity_for_every_integer():
    """materialize() only moves a value into its own buffer: the same bits for int32 and int64
    extremes (the most negative integer, whose -(-x) wraps back to itself), under jit and eagerly."""
    from mlcore.fixed import materialize
    for dt in (np.int32, np.int64):
        info = np.iinfo(dt)
        for first in (info.min, -1, 0, 1, info.max):  # the first element picks the branch
            x = np.array([[first, info.min, info.max], [0, -7, 7]], dt)
            assert np.array_equal(np.asarray(jax.jit(materialize)(x)), x)
            assert np.array_equal(np.asarray(materialize(x)), x)
    with pytest.raises(TypeError):
        materialize(np.zeros(3, np.float32))


def test_round_shift_small_equals_round_shift_within_its_bound():
    from mlcore.fixed import round_shift_small
    rng = np.random.default_rng(3)
    for s in (1, 14, 16, 30, 62):
        top = (1 << 63) - 1 - (1 << (s - 1))
        x = np.concatenate([rng.integers(-(1 << 62), 1 << 62, 500, dtype=np.int64),
                            np.array([-(1 << 63), -1, 0, 1, top], np.int64)])
        assert np.array_equal(np.asarray(jax.jit(lambda v: round_shift_small(v, s))(x)), ref_round_shift(x, s))
