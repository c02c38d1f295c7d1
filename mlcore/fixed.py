"""Fixed-point formats, saturation, rounding and the keyed PRNG: the numeric rules of consensus.

Every function on device arrays is pure, integer-only and jit-compatible (shift amounts and formats
are static Python values); the exact formulas are in docs/mlcore.md and tests/test_mlcore_fixed.py
holds a numpy int64 reference that must match them bit for bit.  `quantize` and `dequantize` are
host-side helpers for clients; they are not part of consensus.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # the SplitMix64 increment
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MAX_SHIFT = 62


def digit_bound(n: int) -> int:
    """Largest M such that every integer in [-M, M] splits into n balanced int8 digits."""
    return 127 * ((1 << (8 * n)) - 1) // 255


@dataclass(frozen=True)
class FixedFormat:
    """A Q format: value = stored integer / 2**frac_bits, stored in int`bits`, saturated to ±max_abs.

    The bound is symmetric so that negation never overflows and so that matmul overflow bounds
    follow from max_abs alone.
    """

    frac_bits: int
    bits: int
    max_abs: int

    def __post_init__(self) -> None:
        if self.bits not in (32, 64):
            raise ValueError(f"bits must be 32 or 64, got {self.bits!r}")
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits < self.bits - 1:
            raise ValueError(f"frac_bits must be an int in [0, {self.bits - 2}], got {self.frac_bits!r}")
        top = (1 << (self.bits - 1)) - 1
        if not isinstance(self.max_abs, int) or not 1 <= self.max_abs <= top:
            raise ValueError(f"max_abs must be an int in [1, {top}], got {self.max_abs!r}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int32 if self.bits == 32 else np.int64)

    @property
    def digits(self) -> int:
        """How many balanced int8 digits a value of this format splits into."""
        n = 1
        while digit_bound(n) < self.max_abs:
            n += 1
        return n


# Weights: Q.16 in int32, saturated to the widest range that splits into 3 int8 digits (about ±127.5).
WEIGHTS = FixedFormat(frac_bits=16, bits=32, max_abs=digit_bound(3))


def quantize(x, fmt: FixedFormat) -> np.ndarray:
    """Host side: round(x * 2**frac_bits) half up (toward +inf on ties), saturated to fmt.

    Exact for every finite float64: the scaled value is split into floor and fraction (both exact)
    instead of adding 0.5, which would round twice.  NaN and infinities are refused.
    """
    y = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("cannot quantize NaN or infinite values")
    with np.errstate(over="ignore"):  # a product that overflows to ±inf saturates below
        y = np.clip(y * float(1 << fmt.frac_bits), -(2.0 ** 62), 2.0 ** 62)
    fl = np.floor(y)
    q = (fl + (y - fl >= 0.5)).astype(np.int64)
    return np.clip(q, -fmt.max_abs, fmt.max_abs).astype(fmt.dtype)


def dequantize(q, fmt: FixedFormat) -> np.ndarray:
    """Host side: the float64 nearest to each fixed-point value (for display and clients)."""
    return np.asarray(q).astype(np.float64) / float(1 << fmt.frac_bits)


def int_array(x) -> jnp.ndarray:
    """x as a jnp array, which must hold int32 or int64: no other dtype is a fixed-point value."""
    x = jnp.asarray(x)
    if x.dtype not in (jnp.int32, jnp.int64):
        raise TypeError(f"expected an int32 or int64 array, got {x.dtype}")
    return x


def _check_shift(s: int) -> None:
    if not isinstance(s, int) or not 0 <= s <= MAX_SHIFT:
        raise ValueError(f"shift must be an int in [0, {MAX_SHIFT}], got {s!r}")


def saturate(x, fmt: FixedFormat) -> jnp.ndarray:
    """clip(x, -max_abs, max_abs), stored in fmt's integer dtype."""
    x = int_array(x)
    return jnp.clip(x.astype(jnp.int64), -fmt.max_abs, fmt.max_abs).astype(fmt.dtype)


def round_shift(x, s: int) -> jnp.ndarray:
    """floor((x + 2**(s-1)) / 2**s) in int64: divide by 2**s, round half up (toward +inf on ties).

    Computed as (x >> s) + (((x & (2**s - 1)) + 2**(s-1)) >> s), equal to the formula above for
    every int64 x but free of the overflow of x + 2**(s-1) near the top of the range.
    """
    _check_shift(s)
    x = int_array(x).astype(jnp.int64)
    if s == 0:
        return x
    low = x & ((1 << s) - 1)
    return (x >> s) + ((low + (1 << (s - 1))) >> s)


def round_shift_small(x, s: int) -> jnp.ndarray:
    """round_shift(x, s) for int64 x the caller proves to satisfy x + 2**(s-1) <= 2**63 - 1: then the
    plain (x + 2**(s-1)) >> s is the formula itself (no wrap), without the overflow guard's extra ops."""
    _check_shift(s)
    x = int_array(x).astype(jnp.int64)
    return x if s == 0 else (x + (1 << (s - 1))) >> s


def materialize(x) -> jnp.ndarray:
    """x itself, computed once into its own buffer: a speed hint, the value never changes.

    XLA CPU fuses a cheap elementwise producer into every consumer, so a softmax read by three
    consumers is computed three times, and it strips optimization barriers.  A conditional is a
    fusion boundary it keeps, as long as its branches differ: both branches here return x exactly
    (x, and -(-x), which is x for every two's-complement integer, the most negative one included),
    so the predicate (x[0, ..., 0] >= 0) only picks which identical value comes back.  An array
    sharded over an Explicit mesh axis is returned as it is (JAX cannot slice one element out of it).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"expected an integer array, got {x.dtype}")
    if x.size == 0 or any(a is not None for a in getattr(jax.typeof(x).sharding, "spec", ())):
        return x
    return lax.cond(x[(0,) * x.ndim] >= 0, lambda v: v, lambda v: -(-v), x)


def rescale(x, s: int, fmt: FixedFormat) -> jnp.ndarray:
    """Drop s fractional bits with round half up, then saturate to fmt."""
    return saturate(round_shift(x, s), fmt)


def mix64(z) -> jnp.ndarray:
    """The SplitMix64 finaliser on uint64 (wrapping multiplication, logical shifts)."""
    z = jnp.asarray(z, dtype=jnp.uint64)
    z = (z ^ (z >> 30)) * jnp.uint64(MIX1)
    z = (z ^ (z >> 27)) * jnp.uint64(MIX2)
    return z ^ (z >> 31)


def _mix64_int(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def rng_key(block: int, tx: int, step: int, stream: int = 0) -> int:
    """Host side: the 64-bit key of one stream of random bits, from consensus integers.

    k = 0; for v in (block, tx, step, stream): k = mix64(((k ^ v) + GOLDEN) mod 2**64).
    Each v must be in [0, 2**64).
    """
    k = 0
    for name, v in (("block", block), ("tx", tx), ("step", step), ("stream", stream)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MASK64:
            raise ValueError(f"{name} must be an int in [0, 2**64), got {v!r}")
        k = _mix64_int(((k ^ v) + GOLDEN) & MASK64)
    return k


def random_bits(key, shape: tuple[int, ...]) -> jnp.ndarray:
    """64 random bits per element: bits[i] = mix64(key + (i + 1) * GOLDEN), i the row-major index.

    Counter-based (SplitMix64 run from state key), so element i depends only on (key, i): any
    sharding or evaluation order gives the same bits.
    """
    n = 1
    for d in shape:
        n *= d
    i = jnp.arange(n, dtype=jnp.uint64).reshape(shape)
    return mix64(jnp.asarray(key, dtype=jnp.uint64) + (i + jnp.uint64(1)) * jnp.uint64(GOLDEN))


def stochastic_shift(x, s: int, key) -> jnp.ndarray:
    """floor((x + r) / 2**s) in int64 with r = random_bits(key) >> (64 - s), uniform in [0, 2**s).

    Rounds up with probability (x mod 2**s) / 2**s, so it is unbiased; computed overflow-free as
    (x >> s) + (((x & (2**s - 1)) + r) >> s).
    """
    _check_shift(s)
    x = int_array(x).astype(jnp.int64)
    if s == 0:
        return x
    r = (random_bits(key, x.shape) >> (64 - s)).astype(jnp.int64)
    return (x >> s) + (((x & ((1 << s) - 1)) + r) >> s)


def stochastic_rescale(x, s: int, key, fmt: FixedFormat) -> jnp.ndarray:
    """Drop s fractional bits with seeded stochastic rounding, then saturate to fmt."""
    return saturate(stochastic_shift(x, s, key), fmt)
