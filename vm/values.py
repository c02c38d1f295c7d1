"""Contract values and their one canonical byte form.

A contract keeps, stores, emits, passes and returns only these values: None, bool, int,
str, bytes, list, tuple, dict, this module's fixed-point `Decimal`, and its immutable ML
values `Tensor` and `Model` (the `ml` API of vm/ml.py computes with them).  Every node must
agree on each value's bytes, on every result of Decimal arithmetic, and on every error
(class and message), so nothing here depends on PYTHONHASHSEED, on the host's
int <-> str digit limit or on the CPython version (3.11, 3.12, 3.13), and no host
exception text ever reaches a receipt.

Contract code is hostile: a value may be cyclic (`L.append(L)`) or share sub-values so
that its logical size is exponential in its memory size.  The encoder and `measure`
therefore walk with a depth bound (MAX_VALUE_DEPTH) and stop as soon as the output or
count passes its budget: their work is bounded by the budget, never by the logical size.
The decoder is our own strict parser (not msgpack.unpackb), so the errors it raises and
their order depend on this file alone.

Wire format (valid msgpack with use_bin_type; `msgpack.unpackb` reads it, exts as ExtType):
  None, bool         nil, false/true
  int in [-2**63, 2**64)   msgpack int, minimal form (non-negative values as
                     fixint/uint8..uint64, negative as negative fixint/int8..int64)
  other int          ext 1: signed two's-complement big-endian, minimal length
  str, bytes         str (UTF-8) / bin, minimal headers
  list               array
  tuple              ext 2: the encoding of its items as an array
  dict               map, in the dict's insertion order
  Decimal            ext 3: its scaled int (value * 10**18), signed two's-complement
                     big-endian, minimal length
  Tensor             ext 4: [format code (0 = q16, 1 = int), [dims...], bin of the elements
                     as little-endian int32, row-major]
  Model              ext 5: [kind, [layers...], [params as ext 4...], [velocity as ext 4...]]
Ext headers are msgpack's minimal ones: fixext 1/2/4/8/16 when the data has that length,
else ext8/ext16/ext32.
"""
from __future__ import annotations

import struct
from typing import Any

import sys

import msgpack

from vm.errors import ContractRuntimeError, InvalidValue, LimitExceeded
from vm.limits import (MAX_SAME_HASH, DECIMAL_PLACES, MAX_INT_BITS, MAX_INT_DIGITS, MAX_MODEL_DIM,
                       MAX_TENSOR_ELEMENTS, MAX_TENSOR_RANK, MAX_VALUE_DEPTH)

__all__ = [
    "Decimal", "decimal_scaled", "int_to_str", "str_to_int", "Tensor", "Model",
    "encode_value", "decode_value", "measure", "to_json", "from_json_arg",
    "EXT_BIGINT", "EXT_TUPLE", "EXT_DECIMAL", "EXT_TENSOR", "EXT_MODEL",
]

EXT_BIGINT = 1
EXT_TUPLE = 2
EXT_DECIMAL = 3
EXT_TENSOR = 4
EXT_MODEL = 5

_SCALE = 10 ** DECIMAL_PLACES
_CHUNK = 600                      # digits per conversion step: under CPython's minimum limit of 640
_CHUNK_BASE = 10 ** _CHUNK
_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1
_UINT64_END = 1 << 64


def _type_name(v: Any) -> str:
    return "None" if v is None else type(v).__name__


def _check_int(n: int) -> int:
    if n.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"an int may have at most {MAX_INT_BITS} bits")
    return n


# ---------------------------------------------------------------------------
# int <-> str


def int_to_str(n: int) -> str:
    """Decimal digits of n, whatever the host's int <-> str digit limit."""
    _check_int(n)
    if -_CHUNK_BASE < n < _CHUNK_BASE:
        return str(n)
    sign, n = ("-", -n) if n < 0 else ("", n)
    chunks = []
    while n >= _CHUNK_BASE:
        n, r = divmod(n, _CHUNK_BASE)
        chunks.append(str(r).zfill(_CHUNK))
    chunks.append(str(n))
    return sign + "".join(reversed(chunks))


def _digits_to_int(digits: str) -> int:
    """The int of a non-empty string of ASCII digits, converted 600 digits at a time."""
    n = 0
    for i in range(0, len(digits), _CHUNK):
        chunk = digits[i:i + _CHUNK]
        n = n * 10 ** len(chunk) + int(chunk)
    return n


def _is_ascii_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def str_to_int(s: str) -> int:
    """Parse `[+-]digits` (ASCII 0-9 only; no spaces or underscores) into an int."""
    if type(s) is not str:
        raise ContractRuntimeError(f"expected a str, not {_type_name(s)}")
    body = s[1:] if s[:1] in ("+", "-") else s
    if not _is_ascii_digits(body):
        raise ContractRuntimeError("invalid int literal: expected an optional sign and the digits 0-9 only")
    if len(body) > MAX_INT_DIGITS:
        raise LimitExceeded(f"an int literal may have at most {MAX_INT_DIGITS} digits")
    n = _check_int(_digits_to_int(body))
    return -n if s[0] == "-" else n


# ---------------------------------------------------------------------------
# Decimal


def _round_half_even(n: int, d: int) -> int:
    """n / d rounded to the nearest int, ties to even (d != 0)."""
    if d < 0:
        n, d = -n, -d
    q, r = divmod(n, d)  # n/d = q + r/d with 0 <= r/d < 1
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
    return q


def _trunc_div(n: int, d: int) -> int:
    """n / d truncated toward zero (d != 0)."""
    q = abs(n) // abs(d)
    return q if (n < 0) == (d < 0) else -q


class Decimal:
    """A fixed-point number with exactly DECIMAL_PLACES (18) fractional digits.

    Held as one scaled int q (the value is q / 10**18), immutable.  `*` and `/` round
    half-to-even to 18 places; `//` truncates toward zero and `%` takes the dividend's
    sign (as Python's decimal module does).  Operands may be Decimal or int, never bool.
    """

    __slots__ = ("_q",)
    _q: int

    def __init__(self, value: "Decimal | int | str"):
        t = type(value)
        if t is Decimal:
            q = value._q
        elif t is int:
            q = _check_int(value * _SCALE)
        elif t is str:
            q = _parse_decimal(value)
        else:
            raise ContractRuntimeError(f"Decimal() takes an int, a str or a Decimal, not {_type_name(value)}")
        object.__setattr__(self, "_q", q)

    @classmethod
    def from_scaled(cls, q: int) -> "Decimal":
        """The Decimal q / 10**18 (for the VM, not reachable from contracts)."""
        if type(q) is not int:
            raise ContractRuntimeError(f"a scaled Decimal is an int, not {_type_name(q)}")
        d = object.__new__(cls)
        object.__setattr__(d, "_q", _check_int(q))
        return d

    def __setattr__(self, name: str, value: Any) -> None:
        raise ContractRuntimeError("Decimal values are immutable")

    def __delattr__(self, name: str) -> None:
        raise ContractRuntimeError("Decimal values are immutable")

    def __reduce__(self) -> tuple:
        return (Decimal.from_scaled, (self._q,))

    # --- operands

    def _operand(self, other: Any, op: str, reflected: bool) -> int:
        t = type(other)
        if t is Decimal:
            return other._q
        if t is int:
            return other * _SCALE
        a, b = ("Decimal", _type_name(other))
        if reflected:
            a, b = b, a
        raise ContractRuntimeError(f"unsupported operand types for {op}: {a} and {b}")

    def _ordered(self, other: Any) -> int:
        t = type(other)
        if t is Decimal:
            return other._q
        if t is int:
            return other * _SCALE
        raise ContractRuntimeError(f"Decimal and {_type_name(other)} cannot be ordered")

    # --- arithmetic

    def __add__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._q + self._operand(other, "+", False))

    def __radd__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._operand(other, "+", True) + self._q)

    def __sub__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._q - self._operand(other, "-", False))

    def __rsub__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._operand(other, "-", True) - self._q)

    def __mul__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(_round_half_even(self._q * self._operand(other, "*", False), _SCALE))

    def __rmul__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(_round_half_even(self._operand(other, "*", True) * self._q, _SCALE))

    def __truediv__(self, other: Any) -> "Decimal":
        return _div(self._q, self._operand(other, "/", False))

    def __rtruediv__(self, other: Any) -> "Decimal":
        return _div(self._operand(other, "/", True), self._q)

    def __floordiv__(self, other: Any) -> "Decimal":
        return _floordiv(self._q, self._operand(other, "//", False))

    def __rfloordiv__(self, other: Any) -> "Decimal":
        return _floordiv(self._operand(other, "//", True), self._q)

    def __mod__(self, other: Any) -> "Decimal":
        return _mod(self._q, self._operand(other, "%", False))

    def __rmod__(self, other: Any) -> "Decimal":
        return _mod(self._operand(other, "%", True), self._q)

    def __divmod__(self, other: Any) -> "tuple[Decimal, Decimal]":
        b = self._operand(other, "divmod()", False)
        return _floordiv(self._q, b), _mod(self._q, b)

    def __rdivmod__(self, other: Any) -> "tuple[Decimal, Decimal]":
        a = self._operand(other, "divmod()", True)
        return _floordiv(a, self._q), _mod(a, self._q)

    def __neg__(self) -> "Decimal":
        return Decimal.from_scaled(-self._q)

    def __pos__(self) -> "Decimal":
        return self

    def __abs__(self) -> "Decimal":
        return self if self._q >= 0 else Decimal.from_scaled(-self._q)

    # --- comparisons and conversions

    def __eq__(self, other: Any) -> bool:
        t = type(other)
        if t is Decimal:
            return self._q == other._q
        if t is int or t is bool:  # as in Python, True == 1: keeps dict keys consistent with hash
            return self._q == other * _SCALE
        return NotImplemented

    def __lt__(self, other: Any) -> bool:
        return self._q < self._ordered(other)

    def __le__(self, other: Any) -> bool:
        return self._q <= self._ordered(other)

    def __gt__(self, other: Any) -> bool:
        return self._q > self._ordered(other)

    def __ge__(self, other: Any) -> bool:
        return self._q >= self._ordered(other)

    def __hash__(self) -> int:
        i, r = divmod(self._q, _SCALE)
        return hash(i) if r == 0 else hash(self._q)

    def __bool__(self) -> bool:
        return self._q != 0

    def __int__(self) -> int:
        return _trunc_div(self._q, _SCALE)

    def __str__(self) -> str:
        sign, q = ("-", -self._q) if self._q < 0 else ("", self._q)
        i, f = divmod(q, _SCALE)
        frac = str(f).zfill(DECIMAL_PLACES).rstrip("0")
        return sign + int_to_str(i) + ("." + frac if frac else "")

    def __repr__(self) -> str:
        return f"Decimal('{self}')"


def decimal_scaled(d: Decimal) -> int:
    """The scaled int q of d (d == q / 10**18): for the VM, not reachable from contracts."""
    return d._q


def _parse_decimal(s: str) -> int:
    """Scaled int of `[+-]digits[.digits]` (at most 18 fractional digits, no exponent)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    whole, point, frac = body.partition(".")
    if (not whole and not frac) or not all(_is_ascii_digits(p) for p in (whole, frac) if p):
        raise ContractRuntimeError(
            "invalid Decimal literal: expected an optional sign, digits 0-9 and an optional point "
            "(no exponent, spaces or underscores)")
    if len(frac) > DECIMAL_PLACES:
        raise ContractRuntimeError(f"a Decimal has at most {DECIMAL_PLACES} fractional digits")
    if len(whole) > MAX_INT_DIGITS:
        raise LimitExceeded(f"a Decimal literal may have at most {MAX_INT_DIGITS} integer digits")
    q = _check_int(_digits_to_int(whole + frac.ljust(DECIMAL_PLACES, "0")))
    return -q if s[0] == "-" else q


def _nonzero(d: int) -> None:
    if d == 0:
        raise ContractRuntimeError("division by zero")


def _div(a: int, b: int) -> Decimal:
    _nonzero(b)
    return Decimal.from_scaled(_round_half_even(a * _SCALE, b))


def _floordiv(a: int, b: int) -> Decimal:
    _nonzero(b)
    return Decimal.from_scaled(_trunc_div(a, b) * _SCALE)


def _mod(a: int, b: int) -> Decimal:
    _nonzero(b)
    return Decimal.from_scaled(a - b * _trunc_div(a, b))


# ---------------------------------------------------------------------------
# Tensor and Model


class _LazyNumpy:
    """numpy, imported on first use: the VM itself runs without it (contracts that never touch
    a tensor never need it, and tests/test_vm_determinism.py runs the VM under interpreters that
    lack it).  The first attribute read imports numpy and puts the module itself in the place of
    this stand-in in the modules that use it."""

    def __getattr__(self, name: str) -> Any:
        import numpy
        for mod in ("vm.values", "vm.ml"):
            module = sys.modules.get(mod)
            if module is not None and getattr(module, "np", None) is self:
                module.np = numpy  # type: ignore[attr-defined]
        return getattr(numpy, name)


np: Any = _LazyNumpy()


Q16_FRAC_BITS = 16
# The bound of every q16 element: mlcore.fixed.WEIGHTS.max_abs (digit_bound(3), about +-127.5),
# so any q16 tensor is a valid input, target or weight of mlcore's kernels.
Q16_MAX = 8355711
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
FORMATS = ("q16", "int")  # index = the format's code in the byte form
# kind -> (least, most) number of layer sizes (features, hidden..., outputs)
MODEL_KINDS = {"linear": (2, 2), "softmax": (2, 2), "mlp": (3, 5)}
_I32 = "<i4"  # little-endian int32: the elements' dtype on every host


def _shape_size(shape: Any, what: str) -> int:
    """Elements of a shape (a tuple of 1 to MAX_TENSOR_RANK ints >= 1), at most
    MAX_TENSOR_ELEMENTS: checked before anything of that size is allocated."""
    if type(shape) is not tuple or not 1 <= len(shape) <= MAX_TENSOR_RANK:
        raise InvalidValue(f"{what}'s shape must be a tuple of 1 to {MAX_TENSOR_RANK} dimensions")
    n = 1
    for d in shape:
        if type(d) is not int or d < 1:
            raise InvalidValue(f"{what}'s dimensions must be ints >= 1")
        n *= d
        if n > MAX_TENSOR_ELEMENTS:
            raise InvalidValue(f"{what} has more than {MAX_TENSOR_ELEMENTS} elements")
    return n


def _check_range(data: np.ndarray, fmt: str, what: str) -> None:
    if fmt == "q16" and data.size and (int(data.min()) < -Q16_MAX or int(data.max()) > Q16_MAX):
        raise InvalidValue(f"{what} holds a q16 element outside [-{Q16_MAX}, {Q16_MAX}] (about +-127.5)")


class Tensor:
    """An immutable array of int32 elements: `shape` (a tuple of 1 to 4 dims >= 1), `fmt`
    ("q16": Q.16 fixed point, value = element / 2**16, each within +-Q16_MAX; "int": plain
    int32, e.g. class labels) and the elements, row-major, as a read-only numpy array.

    Contracts reach it only through the VM's wrappers (vm/ml.py); clients make one with
    `Tensor.from_numpy` and read it with `to_numpy()` / `raw()`.
    """

    __slots__ = ("shape", "fmt", "_data")
    shape: tuple[int, ...]
    fmt: str
    _data: np.ndarray

    def __init__(self, shape: tuple[int, ...], fmt: str, data: Any):
        """A tensor of exactly these int32 elements (any int array-like of that shape)."""
        if fmt not in FORMATS:
            raise InvalidValue(f"a tensor's format is \"q16\" or \"int\", not {fmt!r}")
        n = _shape_size(shape, "a tensor")
        arr = np.asarray(data)
        if arr.dtype.kind not in "iub" or arr.size != n:
            raise InvalidValue(f"a tensor of shape {shape} needs {n} int elements")
        if arr.size and (int(arr.min()) < _INT32_MIN or int(arr.max()) > _INT32_MAX):
            raise InvalidValue("a tensor's elements are int32")
        arr = np.ascontiguousarray(arr, dtype=_I32).reshape(shape)
        _check_range(arr, fmt, "a tensor")
        _init_tensor(self, shape, fmt, arr)

    @classmethod
    def _trusted(cls, shape: tuple[int, ...], fmt: str, arr: np.ndarray) -> "Tensor":
        """A tensor of an int32 array the VM made and checked (no copy when it is
        contiguous little-endian int32 already)."""
        t = object.__new__(cls)
        _init_tensor(t, shape, fmt, np.ascontiguousarray(arr, dtype=_I32).reshape(shape))
        return t

    @classmethod
    def from_numpy(cls, arr: Any, fmt: str = "q16") -> "Tensor":
        """Host side (clients): q16 quantises real values with mlcore.fixed.quantize's rule
        (round half up, saturated to +-Q16_MAX); "int" takes integer values exactly."""
        a = np.asarray(arr)
        if fmt == "q16":
            from mlcore.fixed import WEIGHTS, quantize  # imports jax: clients only
            if a.dtype.kind not in "iubf":
                raise InvalidValue(f"a q16 tensor is made from numbers, not {a.dtype}")
            return cls(a.shape, fmt, quantize(a, WEIGHTS))
        if fmt == "int" and a.dtype.kind not in "iub":
            raise InvalidValue(f"an int tensor is made from integers, not {a.dtype}")
        return cls(a.shape, fmt, a)

    def to_numpy(self) -> np.ndarray:
        """Host side: q16 as float64 (mlcore.fixed.dequantize, exact), int as int32."""
        if self.fmt == "q16":
            return self._data.astype(np.float64) / float(1 << Q16_FRAC_BITS)
        return self._data.copy()

    def raw(self) -> np.ndarray:
        """The int32 elements (read-only, shape `shape`)."""
        return self._data

    @property
    def format(self) -> str:
        """`fmt`, under the name contracts read it by (t.format)."""
        return self.fmt

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def __setattr__(self, name: str, value: Any) -> None:
        raise ContractRuntimeError("tensors are immutable")

    def __delattr__(self, name: str) -> None:
        raise ContractRuntimeError("tensors are immutable")

    def __eq__(self, other: Any) -> bool:
        if type(other) is not Tensor:
            return NotImplemented
        return self.shape == other.shape and self.fmt == other.fmt and bool(np.array_equal(self._data, other._data))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and big: never a key

    def __reduce__(self) -> tuple:
        return (Tensor, (self.shape, self.fmt, self._data))

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, format={self.fmt!r})"


def _init_tensor(t: Tensor, shape: tuple[int, ...], fmt: str, arr: np.ndarray) -> None:
    arr.flags.writeable = False
    object.__setattr__(t, "shape", tuple(shape))
    object.__setattr__(t, "fmt", fmt)
    object.__setattr__(t, "_data", arr)


def a_kind(kind: str) -> str:
    """'a linear', 'a softmax', 'a mlp': a model kind with its article, for messages."""
    return "a " + kind


def param_shapes(layers: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of a model's parameters in order: (w0, b0, w1, b1, ...), w_l of shape
    (layers[l], layers[l + 1]) and b_l of shape (layers[l + 1],)."""
    out: list[tuple[int, ...]] = []
    for a, b in zip(layers, layers[1:]):
        out += [(a, b), (b,)]
    return out


def check_arch(kind: Any, layers: Any) -> tuple[str, tuple[int, ...]]:
    """The structural rules of a model (mlcore.models.Arch.check adds its overflow bounds
    when the model is used): a known kind, its number of layer sizes, each in
    [1, MAX_MODEL_DIM], and at most MAX_TENSOR_ELEMENTS parameters in all."""
    if type(kind) is not str or kind not in MODEL_KINDS:
        raise InvalidValue(f"a model's kind is one of {', '.join(map(repr, MODEL_KINDS))}, not "
                           f"{ascii(kind) if type(kind) is str else _type_name(kind)}")
    lo, hi = MODEL_KINDS[kind]
    if type(layers) not in (tuple, list) or not lo <= len(layers) <= hi:
        counts = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise InvalidValue(f"{a_kind(kind)} model has {counts} layer sizes (features, {'hidden..., ' if hi > 2 else ''}"
                           f"{'outputs' if kind == 'linear' else 'classes'})")
    if not all(type(d) is int and 1 <= d <= MAX_MODEL_DIM for d in layers):
        raise InvalidValue(f"a model's layer sizes are ints in [1, {MAX_MODEL_DIM}]")
    layers = tuple(layers)
    if sum(a * b + b for a, b in zip(layers, layers[1:])) > MAX_TENSOR_ELEMENTS:
        raise InvalidValue(f"a model may have at most {MAX_TENSOR_ELEMENTS} parameters")
    return kind, layers


class Model:
    """An immutable model: `kind` ("linear", "softmax" or "mlp"), `layers` (features,
    hidden sizes..., outputs or classes), `params` (w0, b0, w1, b1, ... as q16 tensors of
    param_shapes(layers)) and `velocity` (SGD momentum, the same shapes)."""

    __slots__ = ("kind", "layers", "params", "velocity")
    kind: str
    layers: tuple[int, ...]
    params: tuple[Tensor, ...]
    velocity: tuple[Tensor, ...]

    def __init__(self, kind: str, layers: tuple[int, ...], params: Any, velocity: Any = None):
        kind, layers = check_arch(kind, layers)
        shapes = param_shapes(layers)
        if velocity is None:
            velocity = [Tensor._trusted(s, "q16", np.zeros(s, _I32)) for s in shapes]
        for name, ts in (("params", params), ("velocity", velocity)):
            if type(ts) not in (tuple, list) or len(ts) != len(shapes):
                raise InvalidValue(f"{a_kind(kind)} model of {len(layers)} layer sizes has {len(shapes)} {name} tensors")
            for i, (t, s) in enumerate(zip(ts, shapes)):
                if type(t) is not Tensor or t.fmt != "q16" or t.shape != s:
                    raise InvalidValue(f"a model's {name}[{i}] must be a q16 tensor of shape {s}")
        for name, ts in (("kind", kind), ("layers", layers), ("params", tuple(params)),
                         ("velocity", tuple(velocity))):
            object.__setattr__(self, name, ts)

    @classmethod
    def from_float(cls, kind: str, layers: tuple[int, ...], arrays: Any, velocity: Any = None) -> "Model":
        """Host side: a model whose parameters are real numbers (e.g. trained with JAX or
        Keras: [w0, b0, w1, b1, ...]), quantised to q16 (Tensor.from_numpy)."""
        params = [Tensor.from_numpy(a) for a in arrays]
        vel = None if velocity is None else [Tensor.from_numpy(a) for a in velocity]
        return cls(kind, tuple(layers), params, vel)

    def to_float(self) -> list[np.ndarray]:
        """Host side: the parameters as float64 arrays [w0, b0, w1, b1, ...]."""
        return [t.to_numpy() for t in self.params]

    @property
    def size(self) -> int:
        """The number of parameters."""
        return sum(t.size for t in self.params)

    @property
    def nbytes(self) -> int:
        return 2 * sum(t.nbytes for t in self.params)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ContractRuntimeError("models are immutable")

    def __delattr__(self, name: str) -> None:
        raise ContractRuntimeError("models are immutable")

    def __eq__(self, other: Any) -> bool:
        if type(other) is not Model:
            return NotImplemented
        return (self.kind == other.kind and self.layers == other.layers and self.params == other.params
                and self.velocity == other.velocity)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (Model, (self.kind, self.layers, self.params, self.velocity))

    def __repr__(self) -> str:
        return f"Model(kind={self.kind!r}, layers={self.layers})"


# ---------------------------------------------------------------------------
# encoding


def _signed_bytes(n: int) -> bytes:
    """Minimal signed two's-complement big-endian bytes of n (at least one byte)."""
    bits = n.bit_length() if n >= 0 else (~n).bit_length()
    return n.to_bytes(bits // 8 + 1, "big", signed=True)


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _ext_header(code: int, n: int) -> bytes:
    if n in _FIXEXT:
        return bytes((_FIXEXT[n], code))
    if n < 0x100:
        return bytes((0xC7, n, code))
    if n < 0x10000:
        return struct.pack(">BHB", 0xC8, n, code)
    return struct.pack(">BIB", 0xC9, n, code)


# Minimal msgpack length headers: (fix base, fix max, 8-bit, 16-bit, 32-bit) type bytes.
_STR = (0xA0, 31, 0xD9, 0xDA, 0xDB)
_BIN = (None, -1, 0xC4, 0xC5, 0xC6)
_ARRAY = (0x90, 15, None, 0xDC, 0xDD)
_MAP = (0x80, 15, None, 0xDE, 0xDF)


def _header(out: bytearray, kind: tuple, n: int) -> None:
    """Append the minimal header of a str/bin/array/map (`kind`) of length n."""
    fix, fix_max, b8, b16, b32 = kind
    if n <= fix_max:
        out.append(fix | n)
    elif b8 is not None and n < 0x100:
        out += bytes((b8, n))
    elif n < 0x10000:
        out += struct.pack(">BH", b16, n)
    elif n < 0x100000000:
        out += struct.pack(">BI", b32, n)
    else:
        raise LimitExceeded("a value has more than 2**32 - 1 elements")


def _encode_int(out: bytearray, n: int) -> None:
    if n >= 0:
        if n < 0x80:
            out.append(n)
        elif n < 0x100:
            out += bytes((0xCC, n))
        elif n < 0x10000:
            out += struct.pack(">BH", 0xCD, n)
        elif n < 0x100000000:
            out += struct.pack(">BI", 0xCE, n)
        elif n < _UINT64_END:
            out += struct.pack(">BQ", 0xCF, n)
        else:
            _encode_ext(out, EXT_BIGINT, _signed_bytes(_check_int(n)))
    elif n >= -32:
        out.append(n & 0xFF)
    elif n >= -0x80:
        out += struct.pack(">Bb", 0xD0, n)
    elif n >= -0x8000:
        out += struct.pack(">Bh", 0xD1, n)
    elif n >= -0x80000000:
        out += struct.pack(">Bi", 0xD2, n)
    elif n >= _INT64_MIN:
        out += struct.pack(">Bq", 0xD3, n)
    else:
        _encode_ext(out, EXT_BIGINT, _signed_bytes(_check_int(n)))


def _encode_ext(out: bytearray, code: int, data: bytes) -> None:
    out += _ext_header(code, len(data))
    out += data


def _too_big(max_bytes: int) -> LimitExceeded:
    return LimitExceeded(f"the encoded value is over the limit of {max_bytes} bytes")


def _not_a_value(v: Any) -> InvalidValue:
    return InvalidValue(
        f"a value of type {_type_name(v)} cannot be stored, emitted, passed or returned "
        "(only None, bool, int, str, bytes, list, tuple, dict, Decimal, Tensor and Model can)")


def _encode(out: bytearray, v: Any, depth: int, max_bytes: int) -> None:
    """Append v's encoding; depth counts the containers around v."""
    t = type(v)
    if v is None:
        out.append(0xC0)
    elif t is bool:
        out.append(0xC3 if v else 0xC2)
    elif t is int:
        _encode_int(out, v)
    elif t is str:
        if len(v) > max_bytes:  # every character takes at least one byte
            raise _too_big(max_bytes)
        try:
            data = v.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValue("a str with a lone surrogate cannot be encoded") from None
        _header(out, _STR, len(data))
        out += data
    elif t is bytes:
        if len(v) > max_bytes:
            raise _too_big(max_bytes)
        _header(out, _BIN, len(v))
        out += v
    elif t is Decimal:
        _encode_ext(out, EXT_DECIMAL, _signed_bytes(v._q))
    elif t is Tensor or t is Model:
        if v.nbytes > max_bytes:  # before copying the elements
            raise _too_big(max_bytes)
        if t is Tensor:
            _encode_ext(out, EXT_TENSOR, _tensor_payload(v))
        else:
            _encode_ext(out, EXT_MODEL, _model_payload(v))
    elif t is list or t is tuple or t is dict:
        depth += 1
        if depth > MAX_VALUE_DEPTH:
            raise LimitExceeded(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
        if len(v) > max_bytes:  # every element takes at least one byte
            raise _too_big(max_bytes)
        start = len(out)
        if t is dict:
            _header(out, _MAP, len(v))
            for k, x in v.items():  # keys are hashable, so any key that is a value is a valid key
                _encode(out, k, depth, max_bytes)
                _encode(out, x, depth, max_bytes)
        else:
            _header(out, _ARRAY, len(v))
            for x in v:
                _encode(out, x, depth, max_bytes)
            if t is tuple:
                out[start:start] = _ext_header(EXT_TUPLE, len(out) - start)
    else:
        raise _not_a_value(v)
    if len(out) > max_bytes:
        raise _too_big(max_bytes)


def _tensor_payload(t: Tensor) -> bytearray:
    out = bytearray((0x93, FORMATS.index(t.fmt)))
    _header(out, _ARRAY, len(t.shape))
    for d in t.shape:
        _encode_int(out, d)
    _header(out, _BIN, t._data.nbytes)
    out += t._data.tobytes()  # '<i4': little-endian on every host
    return out


def _model_payload(m: Model) -> bytearray:
    out = bytearray((0x94,))
    kind = m.kind.encode("ascii")
    _header(out, _STR, len(kind))
    out += kind
    _header(out, _ARRAY, len(m.layers))
    for d in m.layers:
        _encode_int(out, d)
    for ts in (m.params, m.velocity):
        _header(out, _ARRAY, len(ts))
        for t in ts:
            _encode_ext(out, EXT_TENSOR, _tensor_payload(t))
    return out


def encode_value(v: Any, max_bytes: int) -> bytes:
    """The canonical bytes of v; LimitExceeded as soon as they pass max_bytes.

    Work is O(max_bytes * MAX_VALUE_DEPTH) at worst, whatever v's logical size (shared or
    cyclic sub-values are walked as often as they occur, and stop at the budget or depth).
    """
    t = type(v)
    if _flat(v) or (t is list or t is dict or t is tuple) and _all_flat(v):
        try:  # msgpack's own packer: the same bytes as the walk below, faster
            if t is tuple:
                inner = _pack(list(v))
                data = _ext_header(EXT_TUPLE, len(inner)) + inner
            else:
                data = _pack(v)
        except (UnicodeEncodeError, ValueError, OverflowError):
            data = None  # the walk below says what is wrong
        if data is not None:
            if len(data) > max_bytes:
                raise _too_big(max_bytes)
            return data
    out = bytearray()
    _encode(out, v, 0, max_bytes)
    return bytes(out)


_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_FLAT_TYPES = (str, bytes, bool, type(None))
_KEY_INT = 1 << 60  # flat dict keys: ints whose hash no author can make collide


def _flat(x: Any) -> bool:
    """A scalar that msgpack's packer encodes exactly as _encode does."""
    t = type(x)
    return t in _FLAT_TYPES or t is int and _INT64_MIN <= x <= _UINT64_MAX


def _all_flat(v: list | tuple | dict) -> bool:
    if type(v) is not dict:
        return all(map(_flat, v))
    return all(map(_flat, v.values())) and all(
        type(k) in _FLAT_TYPES or type(k) is int and -_KEY_INT < k < _KEY_INT for k in v)


# ---------------------------------------------------------------------------
# decoding


_HASH_MODULUS = (1 << 61) - 1  # CPython hashes ints modulo this prime on 64-bit machines


# hash(None) on CPython 3.12 and later.  3.11 derives it from None's address, which no
# author can predict: grouping None as this constant on every version covers both.
_NONE_HASH = 0xFCA86420


def hash_group(k: Any) -> Any:
    """The group of dict keys that certainly share k's hash, the same on every node and
    hash seed; None when no author can build many keys with k's hash.

    CPython hashes ints modulo 2**61-1, Decimals through ints and tuples by combining
    their items' hashes (xxHash lanes, the same on 3.11 to 3.13), so an author can make
    any number of such keys collide, turning each dict operation into a walk over all of
    them.  str and bytes hashes are keyed per process, but not every key that holds text
    is safe: a str hashes as the bytes of its buffer ("x" as b"x", "" as 0), so ("a", n)
    for every multiple n of 2**61-1, or tuples of "x" and b"x" in any order, collide on
    every node too.  Keys are grouped by what their hash is certainly a function of; the
    VM caps the distinct keys of one group at MAX_SAME_HASH (vm.sizes, _decode_map)."""
    t = type(k)
    if t is int:
        return None if -_HASH_MODULUS < k < _HASH_MODULUS else hash(k)
    if t is Decimal:
        return hash(k)
    if t is tuple:
        if len(k) <= 6 and _few_share(k):
            return None
        head, rest = _lanes(k)
        # an unknown lane first: the group itself cannot be made to collide in a dict
        return hash(head) if rest is None else (rest, hash(head), len(head))
    return None


def _few_share(k: tuple) -> bool:
    """Whether at most 2**len(k) keys (64 for 6 items) can share the hash of k, a tuple
    of text, None, bools and ints below the modulus with at most one item before its
    first non-empty text: each item then has at most two values of one hash ("x" and
    b"x", -1 and -2), and the hash of what precedes the text cannot be steered.  The
    common ("balance", owner) key needs no group."""
    known = 0
    for x in k:
        t = type(x)
        if (t is str or t is bytes) and x:
            break
        if not (t is str or t is bytes or x is None or t is bool or t is int and -_HASH_MODULUS < x < _HASH_MODULUS):
            return False
        known += 1
    else:
        return False  # no text: only ints and the like, whose combined hash can be steered
    if known > 1:
        return False
    return all(type(x) in _FEW_SHARE or type(x) is int and -_HASH_MODULUS < x < _HASH_MODULUS for x in k)


_FEW_SHARE = (str, bytes, bool, type(None))


def _lanes(k: tuple) -> tuple[tuple, tuple | None]:
    """(head, rest): head stands for k's leading items whose hash anyone can compute, by
    values with exactly their hash on CPython 3.12+ (None becomes _NONE_HASH); rest, from
    the first item whose hash is keyed per process on, identifies each item's lane: its
    hash where known, else the bytes CPython hashes, or the group of a tuple of them."""
    head: list = []
    rest: list | None = None
    for x in k:
        t = type(x)
        if t is str or t is bytes:
            known, lane = not x, (0 if not x else _hashed_bytes(x) if t is str else x)
        elif t is tuple:
            h, r = _lanes(x)
            known, lane = r is None, (h if r is None else (r, hash(h), len(h)))
        else:
            known, lane = True, (_NONE_HASH if x is None else x)
        if rest is None and known:
            head.append(lane)
        elif rest is None:
            rest = [lane]
        else:
            rest.append(hash(lane) if known else lane)
    return tuple(head), None if rest is None else tuple(rest)


def _hashed_bytes(s: str) -> bytes:
    """The buffer CPython hashes for s: 1, 2 or 4 bytes a character, by its widest."""
    if s.isascii():
        return s.encode("ascii")
    top = max(s)
    if top < "\u0100":
        return s.encode("latin-1")
    if top < "\U00010000":
        return s.encode("utf-16-le", "surrogatepass")
    return s.encode("utf-32-le", "surrogatepass")


def _is_key(k: Any) -> bool:
    """Whether k may be a dict key: a scalar value (not a Tensor or Model) or a tuple of keys."""
    t = type(k)
    if t is tuple:
        return all(_is_key(x) for x in k)
    return t is not list and t is not dict and t is not Tensor and t is not Model


class _Reader:
    """A cursor over the bytes being decoded; every read is bounds-checked."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, end: int) -> bytes:
        if n > end - self.pos:
            raise InvalidValue("truncated value")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self, size: int, end: int) -> int:
        return int.from_bytes(self.take(size, end), "big")


def _decode(r: _Reader, end: int, depth: int) -> Any:
    """Read one value ending at or before `end`; depth counts the containers around it."""
    b = r.take(1, end)[0]
    if b <= 0x7F:
        return b
    if b >= 0xE0:
        return b - 0x100
    if b <= 0x8F:
        return _decode_map(r, b & 0x0F, end, depth)
    if b <= 0x9F:
        return _decode_items(r, b & 0x0F, end, depth)
    if b <= 0xBF:
        return _decode_str(r, b & 0x1F, end)
    if b == 0xC0:
        return None
    if b == 0xC2:
        return False
    if b == 0xC3:
        return True
    if 0xC4 <= b <= 0xC6:
        return r.take(r.uint(1 << (b - 0xC4), end), end)
    if 0xC7 <= b <= 0xC9:
        n = r.uint(1 << (b - 0xC7), end)
        return _decode_ext(r, n, end, depth)
    if b == 0xCA or b == 0xCB:
        raise InvalidValue("floats are not allowed")
    if 0xCC <= b <= 0xCF:
        return r.uint(1 << (b - 0xCC), end)
    if 0xD0 <= b <= 0xD3:
        return int.from_bytes(r.take(1 << (b - 0xD0), end), "big", signed=True)
    if 0xD4 <= b <= 0xD8:
        return _decode_ext(r, 1 << (b - 0xD4), end, depth)
    if 0xD9 <= b <= 0xDB:
        return _decode_str(r, r.uint(1 << (b - 0xD9), end), end)
    if b == 0xDC or b == 0xDD:
        return _decode_items(r, r.uint(2 if b == 0xDC else 4, end), end, depth)
    if b == 0xDE or b == 0xDF:
        return _decode_map(r, r.uint(2 if b == 0xDE else 4, end), end, depth)
    raise InvalidValue("invalid msgpack type byte 0xc1")  # the only byte left


def _decode_str(r: _Reader, n: int, end: int) -> str:
    try:
        return r.take(n, end).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValue("a str is not valid UTF-8") from None


def _enter(depth: int) -> int:
    depth += 1
    if depth > MAX_VALUE_DEPTH:
        raise InvalidValue(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
    return depth


def _decode_items(r: _Reader, n: int, end: int, depth: int) -> list:
    depth = _enter(depth)
    return [_decode(r, end, depth) for _ in range(n)]


def _decode_map(r: _Reader, n: int, end: int, depth: int) -> dict:
    depth = _enter(depth)
    d: dict = {}
    same_hash: dict[Any, int] = {}
    for _ in range(n):
        k = _decode(r, end, depth)
        if not _is_key(k):
            raise InvalidValue("a map key is not hashable (a list or dict, or a tuple holding one)")
        group = hash_group(k)
        if group is not None:
            same_hash[group] = same_hash.get(group, 0) + 1
            if same_hash[group] > MAX_SAME_HASH:
                raise InvalidValue(f"more than {MAX_SAME_HASH} map keys share one hash")
        if k in d:
            raise InvalidValue("duplicate map key")
        d[k] = _decode(r, end, depth)
    return d


def _decode_ext(r: _Reader, n: int, end: int, depth: int) -> Any:
    code = int.from_bytes(r.take(1, end), "big", signed=True)
    if n > end - r.pos:
        raise InvalidValue("truncated value")
    if code == EXT_TUPLE:
        ext_end = r.pos + n
        b = r.take(1, ext_end)[0] if n else None
        if b is not None and 0x90 <= b <= 0x9F:
            count = b & 0x0F
        elif b == 0xDC or b == 0xDD:
            count = r.uint(2 if b == 0xDC else 4, ext_end)
        else:
            raise InvalidValue("a tuple's data is not an array")
        items = _decode_items(r, count, ext_end, depth)
        if r.pos != ext_end:
            raise InvalidValue("trailing bytes inside a tuple")
        return tuple(items)
    if code == EXT_BIGINT or code == EXT_DECIMAL:
        if n > MAX_INT_BITS // 8 + 1:
            raise InvalidValue(f"an int may have at most {MAX_INT_BITS} bits")
        q = int.from_bytes(r.take(n, end), "big", signed=True)
        if q.bit_length() > MAX_INT_BITS:
            raise InvalidValue(f"an int may have at most {MAX_INT_BITS} bits")
        return q if code == EXT_BIGINT else Decimal.from_scaled(q)
    if code == EXT_TENSOR or code == EXT_MODEL:
        ext_end = r.pos + n
        v = _decode_tensor(r, ext_end) if code == EXT_TENSOR else _decode_model(r, ext_end)
        if r.pos != ext_end:
            raise InvalidValue(f"trailing bytes inside a {'tensor' if code == EXT_TENSOR else 'model'}")
        return v
    raise InvalidValue(f"unknown msgpack ext type {code}")


# The parts of a tensor's and a model's data are read by these strict readers (never by
# _decode): every count and size is checked against the limits before anything of that
# size is allocated, and decode_value's final re-encoding rejects non-minimal forms.

def _array_len(r: _Reader, end: int, what: str) -> int:
    b = r.take(1, end)[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC or b == 0xDD:
        return r.uint(2 if b == 0xDC else 4, end)
    raise InvalidValue(f"{what} is not an array")


def _small_uint(r: _Reader, end: int, what: str) -> int:
    b = r.take(1, end)[0]
    if b <= 0x7F:
        return b
    if 0xCC <= b <= 0xCF:
        return r.uint(1 << (b - 0xCC), end)
    raise InvalidValue(f"{what} is not an int >= 0")


def _decode_tensor(r: _Reader, end: int) -> Tensor:
    if r.take(1, end)[0] != 0x93:
        raise InvalidValue("a tensor's data is not [format, shape, elements]")
    code = _small_uint(r, end, "a tensor's format")
    if code >= len(FORMATS):
        raise InvalidValue(f"unknown tensor format code {code}")
    rank = _array_len(r, end, "a tensor's shape")
    if not 1 <= rank <= MAX_TENSOR_RANK:
        raise InvalidValue(f"a tensor has 1 to {MAX_TENSOR_RANK} dimensions, not {rank}")
    shape = tuple(_small_uint(r, end, "a tensor's dimension") for _ in range(rank))
    count = _shape_size(shape, "a tensor")
    b = r.take(1, end)[0]
    if not 0xC4 <= b <= 0xC6:
        raise InvalidValue("a tensor's elements are not bytes")
    nbytes = r.uint(1 << (b - 0xC4), end)
    if nbytes != 4 * count:
        raise InvalidValue(f"a tensor of shape {shape} has {4 * count} bytes of elements, not {nbytes}")
    arr = np.frombuffer(r.take(nbytes, end), dtype=_I32).reshape(shape)  # read-only, no copy
    fmt = FORMATS[code]
    _check_range(arr, fmt, "a tensor")
    t = object.__new__(Tensor)
    _init_tensor(t, shape, fmt, arr)
    return t


def _decode_model(r: _Reader, end: int) -> Model:
    if r.take(1, end)[0] != 0x94:
        raise InvalidValue("a model's data is not [kind, layers, params, velocity]")
    b = r.take(1, end)[0]
    if not 0xA0 <= b <= 0xBF:  # kinds are short
        raise InvalidValue("a model's kind is not a short str")
    kind = _decode_str(r, b & 0x1F, end)
    if kind not in MODEL_KINDS:
        raise InvalidValue(f"unknown model kind {ascii(kind)}")
    n = _array_len(r, end, "a model's layers")
    if n > MODEL_KINDS[kind][1]:
        raise InvalidValue(f"{a_kind(kind)} model has at most {MODEL_KINDS[kind][1]} layer sizes")
    layers = tuple(_small_uint(r, end, "a model's layer size") for _ in range(n))
    kind, layers = check_arch(kind, layers)  # bounds the parameters before any is read
    shapes = param_shapes(layers)
    parts = []
    for name in ("params", "velocity"):
        if _array_len(r, end, f"a model's {name}") != len(shapes):
            raise InvalidValue(f"{a_kind(kind)} model of {len(layers)} layer sizes has {len(shapes)} {name} tensors")
        ts = []
        for i, s in enumerate(shapes):
            b = r.take(1, end)[0]
            if b == 0xC7 or b == 0xC8 or b == 0xC9:
                size = r.uint(1 << (b - 0xC7), end)
            elif 0xD4 <= b <= 0xD8:
                size = 1 << (b - 0xD4)
            else:
                raise InvalidValue(f"a model's {name}[{i}] is not a tensor")
            if int.from_bytes(r.take(1, end), "big", signed=True) != EXT_TENSOR or size > end - r.pos:
                raise InvalidValue(f"a model's {name}[{i}] is not a tensor")
            t_end = r.pos + size
            t = _decode_tensor(r, t_end)
            if r.pos != t_end:
                raise InvalidValue("trailing bytes inside a tensor")
            if t.fmt != "q16" or t.shape != s:
                raise InvalidValue(f"a model's {name}[{i}] must be a q16 tensor of shape {s}")
            ts.append(t)
        parts.append(tuple(ts))
    m = object.__new__(Model)
    for name, v in (("kind", kind), ("layers", layers), ("params", parts[0]), ("velocity", parts[1])):
        object.__setattr__(m, name, v)
    return m


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("ext")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, ext_hook=_no_ext, timestamp=0)


def decode_value(data: bytes, max_bytes: int) -> Any:
    """The value whose canonical encoding is data (fresh objects).

    LimitExceeded when data is longer than max_bytes; InvalidValue for anything else that
    is not exactly the canonical encoding of a value (malformed or trailing bytes, floats,
    unknown ext types, non-minimal forms, nesting over MAX_VALUE_DEPTH, unhashable or
    duplicate map keys, invalid UTF-8).
    """
    if type(data) is not bytes:
        raise InvalidValue(f"expected bytes to decode, not {_type_name(data)}")
    if len(data) > max_bytes:
        raise LimitExceeded(f"the encoded value is {len(data)} bytes, over the limit of {max_bytes}")
    try:  # msgpack's own unpacker, for values that hold no ext type and no nesting
        v = _unpack(data)
    except Exception:  # noqa: BLE001 - anything odd goes to the strict parser below
        v = _unpack
    if v is not _unpack and (_flat(v) or type(v) in (list, dict) and _all_flat(v)) \
            and encode_value(v, max_bytes) == data:
        return v
    r = _Reader(data)
    v = _decode(r, len(data), 0)
    if r.pos != len(data):
        raise InvalidValue("trailing bytes after the value")
    # Every value has exactly one encoding; this rejects non-minimal ints, lengths and ext
    # headers, and ints in ext 1 that msgpack can hold natively.
    if encode_value(v, max_bytes) != data:
        raise InvalidValue("the value is not in canonical form")
    return v


# ---------------------------------------------------------------------------
# size


def _measure(v: Any, depth: int, left: int, limit: int) -> int:
    """Units left of the budget after counting v (depth counts the containers around it)."""
    t = type(v)
    if v is None or t is bool:
        left -= 1
    elif t is int:
        left -= 1 + v.bit_length() // 64
    elif t is str or t is bytes:
        left -= 1 + len(v) // 32
    elif t is Decimal:
        left -= 1 + v._q.bit_length() // 64
    elif t is Tensor or t is Model:  # read in C (np.frombuffer, a range check): by the KiB
        left -= 1 + v.nbytes // 1024
    elif t is list or t is tuple or t is dict:
        depth += 1
        if depth > MAX_VALUE_DEPTH:
            raise LimitExceeded(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
        if len(v) >= left:  # every item counts at least one unit: fail before walking
            raise LimitExceeded(f"the value is over the size limit of {limit} units")
        left -= 1
        if t is dict:
            for k, x in v.items():
                left = _measure(x, depth, _measure(k, depth, left, limit), limit)
        else:
            for x in v:
                left = _measure(x, depth, left, limit)
    else:
        raise _not_a_value(v)
    if left < 0:
        raise LimitExceeded(f"the value is over the size limit of {limit} units")
    return left


def measure(v: Any, limit: int) -> int:
    """A deterministic size of v in units, at most `limit` (else LimitExceeded).

    Each value counts 1 unit, plus: an int bit_length // 64, a Decimal its scaled int's
    bit_length // 64, a str len(s) // 32 (characters), a bytes len(b) // 32, a Tensor or
    Model its element bytes // 1024 (params and velocity for a model); a list or tuple
    counts 1 plus its items, a dict 1 plus its keys and values.  A shared or cyclic
    sub-value counts each time it is reached; nesting over MAX_VALUE_DEPTH raises
    LimitExceeded, a type that is not a value raises InvalidValue.  Work is O(limit).
    """
    return limit - _measure(v, 0, limit, limit)


# ---------------------------------------------------------------------------
# JSON views for RPC and the CLI


def to_json(v: Any) -> Any:
    """A JSON-ready view of a value (for RPC answers; not consensus).

    None, bool, int and str stay as they are; bytes become "0x" + hex, lists and tuples
    lists, a Decimal its str, a dict an object when every key is a str and otherwise a
    list of [key, value] pairs; a Tensor and a Model their tagged forms of from_json_arg
    (so from_json_arg(to_json(t)) == t for them).
    """
    return _to_json(v, 0)


def _to_json(v: Any, depth: int) -> Any:
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is bytes:
        return "0x" + v.hex()
    if t is Decimal:
        return str(v)
    if t is Tensor:
        return {"tensor": _tensor_json(v)}
    if t is Model:
        return {"model": {"kind": v.kind, "layers": list(v.layers), "params": [_tensor_json(p) for p in v.params],
                          "velocity": [_tensor_json(p) for p in v.velocity]}}
    if t is list or t is tuple or t is dict:
        depth = _enter_json(depth)
        if t is not dict:
            return [_to_json(x, depth) for x in v]
        if all(type(k) is str for k in v):
            return {k: _to_json(x, depth) for k, x in v.items()}
        return [[_to_json(k, depth), _to_json(x, depth)] for k, x in v.items()]
    raise _not_a_value(v)


def _tensor_json(t: Tensor) -> dict:
    return {"format": t.fmt, "shape": list(t.shape), "data": t._data.ravel().tolist()}


def _enter_json(depth: int) -> int:
    depth += 1
    if depth > MAX_VALUE_DEPTH:
        raise LimitExceeded(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
    return depth


def from_json_arg(x: Any) -> Any:
    """A value from a call argument given as parsed JSON (CLI and RPC).

    null, true/false, integers, strings, arrays and objects become None, bool, int, str,
    list and dict.  A string is always a str, even "0x..." hex.  An object with exactly one
    key, and that key one of these, is read as a tagged value instead of a dict:
      {"bytes": "0x0a0b"}              bytes ("0x" and an even number of hex digits)
      {"decimal": "1.5"}               Decimal (the syntax of Decimal(str))
      {"tuple": [...]}                 tuple
      {"dict": [[key, value], ...]}    dict, for keys that are not all str
      {"tensor": {"format": "q16", "shape": [2, 3], "data": [...]}}
                                       Tensor: its int32 elements, row-major (q16: the Q.16
                                       integers, value * 65536)
      {"model": {"kind": "mlp", "layers": [4, 8, 3], "params": [...], "velocity": [...]}}
                                       Model: params and velocity as lists of the inner
                                       tensor objects above ("velocity" may be left out: zero)
    (so a dict whose only key is one of these six must be given in the "dict" form).
    Floats are refused: give {"decimal": "..."}.  Errors are InvalidValue, or
    LimitExceeded for an int over MAX_INT_BITS or nesting over MAX_VALUE_DEPTH.
    """
    return _from_json(x, 0)


def _from_json(x: Any, depth: int) -> Any:
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return _check_int(x)
    if t is list:
        depth = _enter_json(depth)
        return [_from_json(i, depth) for i in x]
    if t is dict:
        depth = _enter_json(depth)
        if len(x) == 1:
            (tag, arg), = x.items()
            if tag == "bytes":
                return _json_bytes(arg)
            if tag == "decimal":
                return _json_decimal(arg)
            if tag == "tensor":
                return _json_tensor(arg)
            if tag == "model":
                return _json_model(arg)
            if tag in ("tuple", "dict"):
                if type(arg) is not list:
                    raise InvalidValue(f'a {{"{tag}": ...}} argument takes a JSON array')
                if tag == "tuple":
                    return tuple(_from_json(i, depth) for i in arg)
                return _json_dict(arg, depth)
        if not all(type(k) is str for k in x):
            raise InvalidValue("a JSON object's keys are strings")
        return {k: _from_json(i, depth) for k, i in x.items()}
    if t is float:
        raise InvalidValue('floats are not allowed: give a Decimal as {"decimal": "1.5"}')
    raise InvalidValue(f"an argument of type {_type_name(x)} is not JSON")


def _json_bytes(arg: Any) -> bytes:
    h = arg[2:] if type(arg) is str and arg.startswith("0x") else None
    if h is None or len(h) % 2 or not all(c in "0123456789abcdefABCDEF" for c in h):
        raise InvalidValue('a {"bytes": ...} argument takes "0x" and an even number of hex digits')
    return bytes.fromhex(h)


def _json_decimal(arg: Any) -> Decimal:
    if type(arg) is not str:
        raise InvalidValue('a {"decimal": ...} argument takes a str such as "1.5"')
    try:
        return Decimal(arg)
    except ContractRuntimeError as e:
        raise InvalidValue(e.message) from None


def _json_dict(pairs: list, depth: int) -> dict:
    d: dict = {}
    for p in pairs:
        if type(p) is not list or len(p) != 2:
            raise InvalidValue('a {"dict": ...} argument takes a list of [key, value] pairs')
        k = _from_json(p[0], depth)
        if not _is_key(k):
            raise InvalidValue("a dict key is not hashable (a list or dict, or a tuple holding one)")
        if k in d:
            raise InvalidValue("duplicate dict key")
        d[k] = _from_json(p[1], depth)
    return d


def _json_tensor(arg: Any) -> Tensor:
    if type(arg) is not dict or set(arg) != {"format", "shape", "data"} or type(arg["shape"]) is not list \
            or type(arg["data"]) is not list:
        raise InvalidValue('a {"tensor": ...} argument takes {"format": "q16" or "int", "shape": [dims...], '
                           '"data": [ints...]}')
    shape = tuple(arg["shape"])
    n = _shape_size(shape, "a tensor")
    data = arg["data"]
    if len(data) != n or not all(type(x) is int for x in data):
        raise InvalidValue(f"a tensor of shape {shape} needs {n} ints in \"data\"")
    if not all(_INT32_MIN <= x <= _INT32_MAX for x in data):
        raise InvalidValue("a tensor's elements are int32")
    return Tensor(shape, arg["format"], np.array(data, dtype=np.int64))


def _json_model(arg: Any) -> Model:
    if type(arg) is not dict or not {"kind", "layers", "params"} <= set(arg) <= {"kind", "layers", "params",
                                                                                 "velocity"} \
            or type(arg["params"]) is not list or type(arg.get("velocity", [])) is not list:
        raise InvalidValue('a {"model": ...} argument takes {"kind": ..., "layers": [...], "params": [tensors...], '
                           '"velocity": [tensors...]}')
    kind, layers = check_arch(arg["kind"], arg["layers"])
    params = [_json_tensor(t) for t in arg["params"]]
    velocity = [_json_tensor(t) for t in arg["velocity"]] if "velocity" in arg else None
    return Model(kind, layers, params, velocity)
