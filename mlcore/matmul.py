"""Exact integer matmul: int32/int64 fixed-point operands -> int64 accumulators, never an int64 dot.

The result is defined as the exact integer product a @ b (docs/mlcore.md); it must fit int64, which
is proven from the formats and K before anything runs.  Two lowerings compute it exactly:

- "f64": operands carried in float64.  Every partial sum, in any order XLA picks, is an integer of
  magnitude <= max_a * max_b * K, so it is exact while that bound is < 2**53.
- "digits": each operand splits into balanced signed 8-bit digits; all digit pairs multiply in one
  int8 x int8 -> int32 dot per K chunk (exact while chunk * 128 * 128 < 2**31), and the digit
  products recombine with int64 shifts and adds.

(XLA's int64 dot on CPU is about 300x slower than float32, hence neither lowering uses it.)
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from mlcore.fixed import FixedFormat, materialize

F64_EXACT = 1 << 53
INT64_MAX = (1 << 63) - 1
# |digit| <= 128, so one int32 dot of K_CHUNK_MAX digit products stays below 2**31.
K_CHUNK_MAX = ((1 << 31) - 1) // (128 * 128)
LOWERINGS = ("auto", "f64", "digits")


def product_bound(a_fmt: FixedFormat, b_fmt: FixedFormat, k: int) -> int:
    """The largest |(a @ b)[i, j]| the formats allow: max_abs_a * max_abs_b * K."""
    return a_fmt.max_abs * b_fmt.max_abs * k


def choose_lowering(a_fmt: FixedFormat, b_fmt: FixedFormat, k: int) -> str:
    """"f64" when the float64 carrier is provably exact, else "digits"."""
    return "f64" if product_bound(a_fmt, b_fmt, k) < F64_EXACT else "digits"


def split_digits(x: jnp.ndarray, n: int, axis: int = 0) -> jnp.ndarray:
    """Balanced base-256 digits of x, least significant first: x = sum d[i] * 256**i, d in [-128, 127].

    Each step takes d = low byte (minus 256 if >= 128) and continues with (x >> 8) + carry, which
    equals (x - d) / 256 without the overflow of x - d.  x must lie within ±digit_bound(n).
    """
    digits = []
    for _ in range(n):
        low = x & 255
        carry = (low >= 128).astype(x.dtype)
        digits.append((low - 256 * carry).astype(jnp.int8))
        x = (x >> 8) + carry
    return jnp.stack(digits, axis=axis)  # digit i at index i of `axis`


def matmul_f64(a: jnp.ndarray, b: jnp.ndarray, a_k: int = 1) -> jnp.ndarray:
    """a @ b (a^T @ b for a_k = 0: a is (K, M)) through a float64 carrier; exact only under the
    bound checked by `matmul`."""
    c = lax.dot_general(a.astype(jnp.float64), b.astype(jnp.float64), (((a_k,), (0,)), ((), ())),
                        precision=lax.Precision.HIGHEST)
    return c.astype(jnp.int64)


def matmul_digits(a: jnp.ndarray, b: jnp.ndarray, na: int, nb: int, k_chunk: int, a_k: int = 1) -> jnp.ndarray:
    """a @ b (a^T @ b for a_k = 0) from int8 digit products with int32 accumulation per chunk of K,
    recombined in int64.

    Terms with a shift of 64 bits or more vanish modulo 2**64 and are skipped; every other sum
    wraps modulo 2**64, so the result is exact whenever the true product fits int64.  For a^T, a
    is transposed into a buffer of its own first (`materialize`): XLA's int8 dot wants K minor,
    and fused into the digit split the transpose cost more than twice the whole product.
    """
    k = a.shape[a_k]
    if not a_k:
        a = materialize(a.T)
    # (na, M, K) and (K, nb, N): the layouts XLA's dot takes as they are ((na M, K) x (K, nb N));
    # digits of b stacked first, (nb, K, N), cost a transposing copy of all of them
    da, db = split_digits(a, na), split_digits(b, nb, axis=1)
    acc = None
    for start in range(0, k, k_chunk):
        # every digit pair in one dot: (na, M, K) x (K, nb, N) -> (na, M, nb, N), no reshapes,
        # so a batch sharded over M stays sharded
        part = lax.dot_general(
            da[:, :, start:start + k_chunk], db[start:start + k_chunk],
            (((2,), (0,)), ((), ())), preferred_element_type=jnp.int32).astype(jnp.int64)
        acc = part if acc is None else acc + part
    out = None
    for i in range(na):
        for j in range(nb):
            if 8 * (i + j) < 64:
                term = acc[i, :, j, :] * jnp.int64(1 << (8 * (i + j)))
                out = term if out is None else out + term
    return out


@lru_cache(maxsize=256)
def kernel(m: int, k: int, n: int, a_fmt: FixedFormat, b_fmt: FixedFormat,
           lowering: str, k_chunk: int, a_k: int = 1) -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
    """The jitted kernel for one (shapes, formats, lowering, layout of a), compiled once and cached."""
    if lowering == "f64":
        return jax.jit(lambda a, b: matmul_f64(a, b, a_k))
    na, nb = a_fmt.digits, b_fmt.digits
    return jax.jit(lambda a, b: matmul_digits(a, b, na, nb, k_chunk, a_k))


def check(a_shape: tuple, b_shape: tuple, a_fmt: FixedFormat, b_fmt: FixedFormat,
          lowering: str = "auto", k_chunk: int = K_CHUNK_MAX) -> str:
    """Validate shapes and prove the bounds; return the concrete lowering or raise ValueError."""
    if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[1] != b_shape[0]:
        raise ValueError(f"matmul needs (M, K) @ (K, N), got {tuple(a_shape)} @ {tuple(b_shape)}")
    k = a_shape[1]
    if k < 1:
        raise ValueError("matmul needs K >= 1")
    if lowering not in LOWERINGS:
        raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
    if not isinstance(k_chunk, int) or not 1 <= k_chunk <= K_CHUNK_MAX:
        raise ValueError(f"k_chunk must be an int in [1, {K_CHUNK_MAX}] so int32 sums cannot overflow")
    bound = product_bound(a_fmt, b_fmt, k)
    if bound > INT64_MAX:
        raise ValueError(f"int64 accumulator could overflow: max|a|*max|b|*K = {bound} > 2**63 - 1")
    if lowering == "auto":
        lowering = choose_lowering(a_fmt, b_fmt, k)
    if lowering == "f64" and bound >= F64_EXACT:
        raise ValueError(f"float64 carrier not exact: max|a|*max|b|*K = {bound} >= 2**53")
    return lowering


def matmul(a, b, a_fmt: FixedFormat, b_fmt: FixedFormat, lowering: str = "auto",
           k_chunk: int = K_CHUNK_MAX) -> jnp.ndarray:
    """The exact int64 product a @ b of operands saturated to their formats.

    Operands outside their formats' bounds void the proof; every mlcore op saturates its output, so
    only values entering from outside need checking, which is the caller's job.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    for name, x, fmt in (("a", a, a_fmt), ("b", b, b_fmt)):
        if x.dtype != fmt.dtype:
            raise TypeError(f"{name} has dtype {x.dtype}, its format stores {fmt.dtype}")
    lowering = check(a.shape, b.shape, a_fmt, b_fmt, lowering, k_chunk)
    (m, k), n = a.shape, b.shape[1]
    return kernel(m, k, n, a_fmt, b_fmt, lowering, min(k_chunk, k))(a, b)


def matmul_tn(a, b, a_fmt: FixedFormat, b_fmt: FixedFormat, lowering: str = "auto",
              k_chunk: int = K_CHUNK_MAX) -> jnp.ndarray:
    """a^T @ b for a of shape (K, M): exactly `matmul(a.T, b, ...)` (same checks, lowering and
    bits), for contracting the batch axis of activations: "f64" contracts a's axis 0 where it lies
    (sharing a's float64 copy with the forward product), "digits" transposes the int32 a once into
    a buffer of its own before the split (fused into the split, the transpose cost more than the
    whole product)."""
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    for name, x, fmt in (("a", a, a_fmt), ("b", b, b_fmt)):
        if x.dtype != fmt.dtype:
            raise TypeError(f"{name} has dtype {x.dtype}, its format stores {fmt.dtype}")
    if a.ndim != 2:
        raise ValueError(f"matmul_tn needs a of shape (K, M), got {tuple(a.shape)}")
    lowering = check(a.shape[::-1], b.shape, a_fmt, b_fmt, lowering, k_chunk)
    (k, m), n = a.shape, b.shape[1]
    return kernel(m, k, n, a_fmt, b_fmt, lowering, min(k_chunk, k), 0)(a, b)
