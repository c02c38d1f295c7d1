"""The immutable ML values `Tensor` and `Model` (numpy inside, imported on first use) and
the structural rules of a model's architecture; the `ml` API of vm/ml.py computes with them."""
from __future__ import annotations

import sys
from typing import Any

from vm.errors import ContractRuntimeError, InvalidValue
from vm.limits import MAX_MODEL_DIM, MAX_TENSOR_ELEMENTS, MAX_TENSOR_RANK
from vm.values import _type_name

__all__ = ["Tensor", "Model", "FORMATS", "MODEL_KINDS", "Q16_MAX", "Q16_FRAC_BITS", "a_kind", "check_arch",
           "param_shapes"]


class _LazyNumpy:
    """numpy, imported on first use: the VM itself runs without it (contracts that never touch
    a tensor never need it, and tests/test_vm_determinism.py runs the VM under interpreters that
    lack it).  The first attribute read imports numpy and puts the module itself in the place of
    this stand-in in the modules that use it."""

    def __getattr__(self, name: str) -> Any:
        import numpy
        for mod in ("vm.tensors", "vm.codec", "vm.json_values", "vm.ml"):
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
