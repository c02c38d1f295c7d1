"""mlcore.matmul: both exact lowerings equal the numpy int64 product bit for bit, the bounds that
select them are enforced, and the bits do not depend on jit, device count or XLA CPU flags."""
from __future__ import annotations

import hashlib

import jax
import numpy as np
import pytest

from mlcore.fixed import WEIGHTS, FixedFormat, digit_bound, rng_key
from mlcore.matmul import (F64_EXACT, K_CHUNK_MAX, check, choose_lowering, kernel, matmul,
                           matmul_digits, matmul_f64, split_digits)
from tests.test_mlcore_fixed import ref_round_shift, ref_saturate, ref_stochastic_shift
from tests.xla_configs import assert_same_everywhere

FULL32 = FixedFormat(0, 32, (1 << 31) - 1)


def ref_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ b.astype(np.int64)


def operand(rng: np.random.Generator, shape: tuple[int, int], fmt: FixedFormat) -> np.ndarray:
    """Random values of a format, with whole rows/columns at the bounds where overflow would show."""
    x = rng.integers(-fmt.max_abs, fmt.max_abs, shape, endpoint=True).astype(fmt.dtype)
    x.flat[: min(x.size, 64)] = fmt.max_abs
    x[-1] = -fmt.max_abs
    x[:, 0] = fmt.max_abs
    x[:, -1] = -fmt.max_abs
    return x


def ref_digits(x: np.ndarray, n: int) -> np.ndarray:
    out, v = [], x.astype(np.int64)
    for _ in range(n):
        d = ((v + 128) % 256) - 128
        out.append(d)
        v = (v - d) // 256
    assert not v.any()
    return np.stack(out)


def test_split_digits_are_balanced_int8_and_reconstruct():
    for n in (1, 2, 3, 4):
        m = digit_bound(n)
        edges = np.array([m, -m, 0, 1, -1, 127, -127, 128, -128, 129, -129], dtype=np.int64)
        x = np.concatenate([edges[np.abs(edges) <= m],
                            np.random.default_rng(n).integers(-m, m, 500, endpoint=True)])
        for dtype in (np.int32, np.int64):
            d = np.asarray(split_digits(jax.numpy.asarray(x.astype(dtype)), n))
            assert d.dtype == np.int8 and np.array_equal(d, ref_digits(x, n))
            weights = (256 ** np.arange(n, dtype=np.int64))[:, None]
            assert np.array_equal((d.astype(np.int64) * weights).sum(0), x)


@pytest.mark.parametrize("lowering", ["auto", "f64", "digits"])
@pytest.mark.parametrize("k", [1, 2, 7, 64, 128, 129, 130])
def test_weight_matmul_is_exact(lowering, k):
    rng = np.random.default_rng(k)
    a, b = operand(rng, (9, k), WEIGHTS), operand(rng, (k, 5), WEIGHTS)
    if lowering == "f64" and choose_lowering(WEIGHTS, WEIGHTS, k) != "f64":
        with pytest.raises(ValueError, match="2\\*\\*53"):
            matmul(a, b, WEIGHTS, WEIGHTS, lowering)
        return
    out = np.asarray(matmul(a, b, WEIGHTS, WEIGHTS, lowering))
    assert out.dtype == np.int64 and np.array_equal(out, ref_matmul(a, b))


@pytest.mark.parametrize("k", [1000, 3000])
def test_large_k_extremes_through_digits_and_chunks(k):
    rng = np.random.default_rng(k)
    a, b = operand(rng, (16, k), WEIGHTS), operand(rng, (k, 12), WEIGHTS)
    a[0], b[:, 1] = WEIGHTS.max_abs, WEIGHTS.max_abs  # one entry reaches the full bound max^2 * K
    ref = ref_matmul(a, b)
    assert ref[0, 1] == WEIGHTS.max_abs ** 2 * k
    assert choose_lowering(WEIGHTS, WEIGHTS, k) == "digits"
    for chunk in (K_CHUNK_MAX, 1024, 77):
        assert np.array_equal(np.asarray(matmul(a, b, WEIGHTS, WEIGHTS, k_chunk=chunk)), ref)


def test_f64_carrier_is_used_and_exact_right_up_to_its_bound():
    fa, fb = FixedFormat(8, 32, (1 << 24) - 3), FixedFormat(8, 32, (1 << 20) + 5)
    k = (F64_EXACT - 1) // (fa.max_abs * fb.max_abs)
    assert fa.max_abs * fb.max_abs * k < F64_EXACT <= fa.max_abs * fb.max_abs * (k + 1)
    rng = np.random.default_rng(7)
    a, b = operand(rng, (6, k), fa), operand(rng, (k, 4), fb)
    a[0], b[:, 0] = fa.max_abs, fb.max_abs
    a[1, : k - 1], b[: k - 1, 1] = fa.max_abs, fb.max_abs  # an odd sum just under 2**53
    a[1, k - 1], b[k - 1, 1] = 1, 1
    assert choose_lowering(fa, fb, k) == "f64" and choose_lowering(fa, fb, k + 1) == "digits"
    ref = ref_matmul(a, b)
    assert ref[0, 0] == fa.max_abs * fb.max_abs * k and ref[1, 1] % 2 == 1
    assert np.array_equal(np.asarray(matmul(a, b, fa, fb, "f64")), ref)
    assert np.array_equal(np.asarray(matmul(a, b, fa, fb, "digits")), ref)


def test_full_int32_range_and_int64_operands():
    a = np.array([[FULL32.max_abs, FULL32.max_abs], [-FULL32.max_abs, 12345]], dtype=np.int32)
    b = np.array([[FULL32.max_abs, -FULL32.max_abs], [FULL32.max_abs, -1]], dtype=np.int32)
    assert FULL32.digits == 5 and check(a.shape, b.shape, FULL32, FULL32) == "digits"
    assert np.array_equal(np.asarray(matmul(a, b, FULL32, FULL32)), ref_matmul(a, b))
    wide = FixedFormat(20, 64, (1 << 34) + 3)  # int64 storage, 5 digits, max^2*K close to 2**62
    assert wide.digits == 5
    rng = np.random.default_rng(8)
    x, w = operand(rng, (7, 30), wide), operand(rng, (30, 3), WEIGHTS)
    assert np.array_equal(np.asarray(matmul(x, w, wide, WEIGHTS)), ref_matmul(x, w))


def test_overflowing_or_malformed_products_are_refused():
    a3, b3 = np.zeros((1, 3), np.int32), np.zeros((3, 1), np.int32)
    with pytest.raises(ValueError, match="int64 accumulator could overflow"):
        matmul(a3, b3, FULL32, FULL32)
    w = np.zeros((4, 4), np.int32)
    with pytest.raises(TypeError, match="dtype"):
        matmul(w.astype(np.int64), w, WEIGHTS, WEIGHTS)
    with pytest.raises(ValueError, match="\\(M, K\\) @ \\(K, N\\)"):
        matmul(w, np.zeros((3, 4), np.int32), WEIGHTS, WEIGHTS)
    with pytest.raises(ValueError, match="\\(M, K\\) @ \\(K, N\\)"):
        matmul(w[0], w, WEIGHTS, WEIGHTS)
    with pytest.raises(ValueError, match="K >= 1"):
        matmul(np.zeros((2, 0), np.int32), np.zeros((0, 2), np.int32), WEIGHTS, WEIGHTS)
    with pytest.raises(ValueError, match="lowering"):
        matmul(w, w, WEIGHTS, WEIGHTS, "int64")
    for chunk in (0, K_CHUNK_MAX + 1):
        with pytest.raises(ValueError, match="k_chunk"):
            matmul(w, w, WEIGHTS, WEIGHTS, k_chunk=chunk)
    assert K_CHUNK_MAX * 128 * 128 < 2 ** 31 <= (K_CHUNK_MAX + 1) * 128 * 128


def test_kernels_are_cached_per_shapes_and_formats():
    w = np.ones((3, 5), np.int32)
    matmul(w, w.T.copy(), WEIGHTS, WEIGHTS)
    before = kernel.cache_info()
    matmul(w * 2, w.T.copy(), WEIGHTS, WEIGHTS)
    after = kernel.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    assert kernel(3, 5, 3, WEIGHTS, WEIGHTS, "f64", 5) is kernel(3, 5, 3, WEIGHTS, WEIGHTS, "f64", 5)


def test_jit_and_eager_give_identical_bits():
    rng = np.random.default_rng(9)
    a, b = operand(rng, (8, 200), WEIGHTS), operand(rng, (200, 6), WEIGHTS)
    jitted = np.asarray(matmul(a, b, WEIGHTS, WEIGHTS, "digits", k_chunk=64))
    small = (a[:, :100] % 1000).astype(np.int32), (b[:100] % 1000).astype(np.int32)
    jitted_f64 = np.asarray(matmul(*small, WEIGHTS, WEIGHTS, "f64"))
    with jax.disable_jit():
        eager = np.asarray(matmul_digits(jax.numpy.asarray(a), jax.numpy.asarray(b), 3, 3, 64))
        eager_f64 = np.asarray(matmul_f64(*map(jax.numpy.asarray, small)))
    assert jitted.tobytes() == eager.tobytes() == ref_matmul(a, b).tobytes()
    assert jitted_f64.tobytes() == eager_f64.tobytes() == ref_matmul(*small).tobytes()


# ---- the same bits across device counts and XLA CPU flags (subprocesses) ----------------------

SCENARIO = r"""
import hashlib, json, sys
import numpy as np
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
from mlcore.fixed import WEIGHTS, rescale, stochastic_rescale, rng_key
from mlcore.matmul import matmul

def sha(x):
    return hashlib.sha256(np.asarray(x).tobytes()).hexdigest()

a, b, small_a, small_b = (np.load(sys.argv[1])[k] for k in ("a", "b", "sa", "sb"))
n = jax.device_count()
if n > 1:  # shard the batch (rows) over every device
    sh = NamedSharding(jax.make_mesh((n,), ("x",)), P("x", None))
    a, small_a = jax.device_put(a, sh), jax.device_put(small_a, sh)
acc = matmul(a, b, WEIGHTS, WEIGHTS, "digits", k_chunk=256)
acc64 = matmul(small_a, small_b, WEIGHTS, WEIGHTS, "f64")
key = np.uint64(rng_key(42, 3, 1))
r = jax.jit(rescale, static_argnums=(1, 2))(acc, 33, WEIGHTS)
s = jax.jit(stochastic_rescale, static_argnums=(1, 3))(acc, 33, key, WEIGHTS)
print(json.dumps({"devices": n, "shards": len(getattr(acc, "addressable_shards", [0])),
                  "digits": sha(acc), "f64": sha(acc64), "rescale": sha(r), "stochastic": sha(s)}))
"""



def test_same_bits_across_devices_and_cpu_flags(tmp_path):
    rng = np.random.default_rng(10)
    a, b = operand(rng, (64, 600), WEIGHTS), operand(rng, (600, 10), WEIGHTS)
    sa, sb = (a[:, :100] % 5000).astype(np.int32), (b[:100] % 5000).astype(np.int32)
    np.savez(tmp_path / "in.npz", a=a, b=b, sa=sa, sb=sb)
    acc = ref_matmul(a, b)
    key = rng_key(42, 3, 1)
    sha = lambda x: hashlib.sha256(x.tobytes()).hexdigest()  # noqa: E731
    rounded = ref_saturate(ref_round_shift(acc, 33), WEIGHTS)
    stochastic = ref_saturate(ref_stochastic_shift(acc, 33, key), WEIGHTS)
    assert np.mean(np.abs(rounded) < WEIGHTS.max_abs) > 0.8  # mostly not saturated: rounding shows
    assert np.mean(rounded != stochastic) > 0.2
    expected = {"digits": sha(acc), "f64": sha(ref_matmul(sa, sb)),
                "rescale": sha(rounded), "stochastic": sha(stochastic)}
    assert_same_everywhere(SCENARIO, tmp_path / "in.npz", expected)


@pytest.mark.parametrize("lowering", ["f64", "digits"])
@pytest.mark.parametrize("k", [1, 5, 64, 300])
def test_matmul_tn_is_matmul_of_the_transpose(lowering, k):
    """matmul_tn(a, b) (the batch-contracting h^T g of the gradients) equals matmul(a.T, b) and the
    exact reference, with operands at their formats' bounds."""
    from mlcore.activations import PROBS
    from mlcore.matmul import matmul_tn
    rng = np.random.default_rng(k + 17)
    a, b = operand(rng, (k, 9), WEIGHTS), operand(rng, (k, 6), PROBS)
    if lowering == "f64" and choose_lowering(WEIGHTS, PROBS, k) != "f64":
        return
    got = np.asarray(jax.jit(lambda x, y: matmul_tn(x, y, WEIGHTS, PROBS, lowering))(a, b))
    assert np.array_equal(got, np.asarray(matmul(a.T, b, WEIGHTS, PROBS, lowering)))
    assert np.array_equal(got, ref_matmul(a.T, b))
