"""The `ml` API of contracts: tensors, models, training and inference, priced and checked.

Contract code reaches this module only through the VM's wrappers: `ml.train(...)` compiles to
`_m_train(ml, ...)` (vm/compiler.py), `t.shape` to `_attr(t, "shape")`, `t[i, j]` to
`_getitem(t, (i, j))`; each dispatches on the exact type of its receiver to a function here
(`method`, `FIELDS`, `item`, `rows`).  The heavy work runs in mlcore.programs (jitted integer
kernels, bit-identical on every node); this module checks every argument with the VM's own
messages, charges gas BEFORE the work, and counts the memory of results.

Gas of one `ml` function that runs a program (model, train, predict, probabilities, evaluate,
average): `BUILTIN`, then mlcore.programs.cost(op, arch, ...) (a function of the bucketed
shapes only, ML_CALL included), then a lookup of the program id in the chain's program registry
(STORAGE_READ + STORAGE_PER_BYTE per key byte) and, the first time the program is used on
chain, ML_COMPILE.  The registry is storage of the reserved SYSTEM_ADDRESS (key: the program id
as an encoded bytes value, value: the block height of its first use), written through the host
like any storage: part of state, rolled back with a failed transaction, the same on every node,
so gas never depends on what a node happens to have compiled or cached in memory.

mlcore (and with it jax, about 1 s to import) is imported on the first use of `ml` only:
contracts that never use it never pay for it.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from itertools import chain
from typing import Any, Callable, NamedTuple

from vm import errors as E
from vm import gas as G
from vm import meter
from vm.limits import DECIMAL_PLACES, MAX_TENSOR_ELEMENTS, MAX_TENSOR_RANK, MAX_TOLIST
from vm.meter import _GAS, allocate, charge
from vm.sizes import ML, _a, _err, _isint, type_name
from vm.codec import encode_value
from vm.decimals import Decimal, decimal_scaled
from vm.tensors import FORMATS, Q16_MAX, Model, Tensor, a_kind, check_arch, np, param_shapes

# The program registry's account: no key can sign for it and no code lives there.
SYSTEM_ADDRESS = b"\0" * 19 + b"\x01"

_Q = 1 << 16                                   # Q.16: value = k / 2**16
_UNIT = 10 ** DECIMAL_PLACES // _Q              # k / 2**16 == k * _UNIT / 10**18 exactly (4 * 5**18)
assert _UNIT * _Q == 10 ** DECIMAL_PLACES
_LR_MAX = 16 * _Q                               # mlcore.models.LR.max_abs: lr <= 16
_MOMENTUM_MAX = _Q - 1                          # mlcore.models.MOMENTUM_MAX: momentum < 1
_I32 = "<i4"
# Work per element of ml.tensor (type checks, conversion) and tolist() (a new Python object each),
# in gas, about 1 ns each as measured (docs/contracts.md, ML).
TENSOR_PER_ELEMENT = G.WALK_PER_ELEMENT
TENSOR_PER_DECIMAL = 400
TOLIST_PER_INT = 2 * G.PER_ELEMENT
TOLIST_PER_DECIMAL = 400


# ---- Q.16 <-> Decimal (exact) ----------------------------------------------------------------

def q16_to_decimal(k: int) -> Decimal:
    """The Decimal k / 2**16: exact, since 10**18 / 2**16 is an integer (k has at most 16
    fractional decimal digits)."""
    return Decimal.from_scaled(int(k) * _UNIT)


def decimal_to_q16(d: Decimal | int) -> int:
    """round(d * 2**16), half up (ties toward +infinity), in exact integers."""
    if type(d) is int:
        return d * _Q
    q = decimal_scaled(d)  # d = q / 10**18
    return (q * 2 * _Q + 10 ** DECIMAL_PLACES) // (2 * 10 ** DECIMAL_PLACES)


# ---- mlcore, imported on first use ------------------------------------------------------------

class _Lazy:
    programs: Any = None
    models: Any = None
    Arch: Any = None
    limits: Any = None
    gas: Any = None


    cache_dir: Any = None  # where compiled programs persist (the node's <datadir>/xla-cache)


def _mlcore() -> type[_Lazy]:
    if _Lazy.programs is None:
        from mlcore import gas as mgas, limits, models, programs
        _Lazy.limits, _Lazy.gas, _Lazy.models, _Lazy.Arch = limits, mgas, models, models.Arch
        if _Lazy.cache_dir is not None:
            programs.enable_persistent_cache(_Lazy.cache_dir)
        _Lazy.programs = programs
    return _Lazy


def use_compilation_cache(path: Any) -> None:
    """Persist compiled ML programs under `path`, so that a restarted node loads them instead of
    compiling.  Takes effect when a contract first uses `ml` (jax is not imported before)."""
    _Lazy.cache_dir = path
    if _Lazy.programs is not None:
        _Lazy.programs.enable_persistent_cache(path)


def preload() -> None:
    """Import mlcore (and jax, and start its CPU backend) now rather than in the first contract
    that uses `ml`: a node that ran ML before calls it in a background thread at start, so its
    first ML transaction after a restart does not wait for the import."""
    import jax

    _mlcore()
    jax.devices()


def stats() -> dict | None:
    """mlcore.programs.stats() (compiles, persistent-cache hits), or None while no contract of
    this process has used `ml`."""
    return None if _Lazy.programs is None else _Lazy.programs.stats()


def _arch(fn: str, kind: str, layers: tuple[int, ...]) -> Any:
    """mlcore's Arch of a structurally valid model, with its overflow bounds checked."""
    try:
        return _checked_arch(kind, tuple(layers))
    except ValueError as e:  # mlcore's own words about widths (ints only: the kind was checked)
        raise _err(f"ml.{fn}: {e}") from None


@lru_cache(maxsize=1024)
def _checked_arch(kind: str, layers: tuple[int, ...]) -> Any:
    return _mlcore().Arch(kind, layers).check()


class _Program(NamedTuple):
    """What running one program costs, a function of (op, arch, dims) alone, so worked out once:
    its gas (mlcore.programs.cost), its registry key (the encoded program id; None for host ops)
    and the gas of looking that key up."""

    op: str
    gas: int
    key: bytes | None
    read: int


_PROGRAM_CACHE: dict[tuple, _Program] = {}
_CACHE_MAX = 4096  # entries of each cache below (cleared when full: a cache, never state)


def _program_of(fn: str, op: str, arch: Any, **dims: int) -> _Program:
    """The _Program of op on arch and dims; ValueErrors (shapes mlcore refuses) as fn's error."""
    k = (op, arch, *dims.items())
    p = _PROGRAM_CACHE.get(k)
    if p is None:
        P = _mlcore().programs
        gas = _call(fn, P.cost, op, arch, **dims)
        if op in P.HOST_OPS:
            p = _Program(op, gas, None, 0)
        else:  # program_id refuses exactly what cost refuses (both check the same key)
            key = encode_value(_call(fn, P.program_id, op, arch, **dims), 64)
            p = _Program(op, gas, key, G.STORAGE_READ + len(key) * G.STORAGE_PER_BYTE)
        if len(_PROGRAM_CACHE) >= _CACHE_MAX:
            _PROGRAM_CACHE.clear()
        _PROGRAM_CACHE[k] = p
    return p


def program_key(op: str, arch: Any, **dims: int) -> bytes:
    """The storage key of a program in the chain's registry (SYSTEM_ADDRESS's storage): a
    program pays ML_COMPILE on its first use on chain, from a contract or a job's settle."""
    return encode_value(_mlcore().programs.program_id(op, arch, **dims), 64)


def _run_program(fn: str, op: str, arch: Any, **dims: int) -> None:
    """Charge a program's gas, and ML_COMPILE on its first use on chain (recorded in state).
    `init` (ml.model) runs on the host in numpy: it has a price but no program to compile."""
    _charge_program(fn, arch, _program_of(fn, op, arch, **dims))


def _charge_program(fn: str, arch: Any, p: _Program) -> None:
    charge(p.gas)
    if p.key is None:
        return
    charge(p.read)
    rt = meter.RT
    if rt.compile_fees and rt.host.storage_get(SYSTEM_ADDRESS, p.key) is None:
        fee = _Lazy.gas.ML_COMPILE
        if _GAS.cell_contents < fee:
            _GAS.cell_contents = -1
            raise E.OutOfGas(f"out of gas: ml.{fn} runs a program ({p.op} of {a_kind(arch.kind)} model {arch.layers}) "
                             f"not yet used on chain, whose first use costs ML_COMPILE = {fee} gas more")
        charge(fee)
        rt.compile_gas += fee
        rt.host.storage_set(SYSTEM_ADDRESS, p.key, encode_value(rt.env.block_height, 16))


class _RowsCall(NamedTuple):
    """predict, probabilities, evaluate of one architecture on x of one shape: the checked arch,
    the program, and the result's shape, format and memory (nbytes None: nothing counted)."""

    arch: Any
    program: _Program
    shape: tuple[int, ...]
    fmt: str
    nbytes: int | None


_ROWS_CALLS: dict[tuple, _RowsCall] = {}


def _rows_call(fn: str, m: Model, xs: np.ndarray, shape: tuple[int, ...] = (), fmt: str = "",
               nbytes: int | None = None) -> _RowsCall:
    """Check the arch, count the result's memory and charge the program of ml.<fn>(m, xs), xs a
    checked x, in that order.  Cached per (fn, kind, layers, x's shape): the first call's checks
    raise where they would; a cached call passed them all, and every later step is the same."""
    k = (fn, m.kind, m.layers, xs.shape)
    c = _ROWS_CALLS.get(k)
    if c is None:
        arch = _arch(fn, m.kind, m.layers)
        if nbytes is not None:
            allocate(nbytes)
        c = _RowsCall(arch, _program_of(fn, fn, arch, rows=xs.shape[0]), shape, fmt, nbytes)
        if len(_ROWS_CALLS) >= _CACHE_MAX:
            _ROWS_CALLS.clear()
        _ROWS_CALLS[k] = c
    elif c.nbytes is not None:
        allocate(c.nbytes)
    _charge_program(fn, c.arch, c.program)
    return c


def _call(fn: str, f: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run an mlcore.programs function on checked arguments: a ValueError left is mlcore's own
    refusal (its words, never CPython's), reported as this function's error."""
    try:
        return f(*args, **kwargs)
    except ValueError as e:
        raise _err(f"ml.{fn}: {e}") from None


# ---- argument checks ----------------------------------------------------------------------------

def _model_arg(fn: str, m: Any, name: str = "model") -> Model:
    if type(m) is not Model:
        raise _err(f"ml.{fn}: {name} must be a Model, not {type_name(m)}")
    return m


def _tensor_arg(fn: str, t: Any, name: str) -> Tensor:
    if type(t) is not Tensor:
        raise _err(f"ml.{fn}: {name} must be a Tensor, not {type_name(t)}")
    return t


def _x_arg(fn: str, m: Model, x: Any) -> np.ndarray:
    x = _tensor_arg(fn, x, "x")
    features = m.layers[0]
    if x.fmt != "q16" or len(x.shape) != 2 or x.shape[1] != features:
        raise _err(f"ml.{fn}: x must be a q16 tensor of shape (rows, {features}) for this model, "
                   f"not {_describe(x)}")
    rows = x.shape[0]
    top = _mlcore().limits.MAX_ROWS
    if rows > top:
        raise E.LimitExceeded(f"ml.{fn}: x has {rows} rows, over the limit of {top} per call")
    return x.raw()


def _y_arg(fn: str, m: Model, y: Any, rows: int) -> np.ndarray:
    y = _tensor_arg(fn, y, "y")
    outputs = m.layers[-1]
    if m.kind == "linear":
        if y.fmt != "q16" or y.shape != (rows, outputs):
            raise _err(f"ml.{fn}: y must be a q16 tensor of shape ({rows}, {outputs}) (targets, one row per row "
                       f"of x), not {_describe(y)}")
        return y.raw()
    if y.fmt != "int" or y.shape != (rows,):
        raise _err(f"ml.{fn}: y must be an int tensor of shape ({rows},) (a class label per row of x), "
                   f"not {_describe(y)}")
    labels = y.raw()
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= outputs:
        bad = lo if lo < 0 else hi
        raise _err(f"ml.{fn}: y holds the label {bad}: labels of a model of {outputs} classes are 0 to {outputs - 1}")
    return labels


def _describe(t: Tensor) -> str:
    return f"{'an int' if t.fmt == 'int' else 'a q16'} tensor of shape {_shape_text(t.shape)}"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _fraction(fn: str, name: str, v: Any, top: int, rule: str) -> int:
    """A Decimal (or int) hyperparameter as Q.16, rounded half up, within [0, top]."""
    if not (type(v) is Decimal or type(v) is int):
        raise _err(f"ml.{fn}: {name} must be a Decimal, not {type_name(v)}")
    if v < 0 or v > Decimal.from_scaled(top * _UNIT + _UNIT // 2 - 1):  # before scaling a huge value
        raise _err(f"ml.{fn}: {name} must be {rule}")
    k = decimal_to_q16(v)
    if not 0 <= k <= top:
        raise _err(f"ml.{fn}: {name} must be {rule}")
    return k


def _count(fn: str, name: str, v: Any, lo: int) -> int:
    if type(v) is not int:
        raise _err(f"ml.{fn}: {name} must be an int, not {type_name(v)}")
    if v < lo:
        raise _err(f"ml.{fn}: {name} must be an int >= {lo}")
    return v


def _model_result(kind: str, layers: tuple[int, ...], params: Any, velocity: Any = None) -> Model:
    """A Model of arrays mlcore made (int32, saturated to WEIGHTS by the kernels)."""
    shapes = param_shapes(layers)
    ps = tuple(Tensor._trusted(s, "q16", np.asarray(p)) for s, p in zip(shapes, params))
    vs = tuple(Tensor._trusted(s, "q16", np.asarray(v)) for s, v in zip(shapes, velocity)) if velocity is not None \
        else tuple(Tensor._trusted(s, "q16", np.zeros(s, _I32)) for s in shapes)
    m = object.__new__(Model)
    for name, v in (("kind", kind), ("layers", layers), ("params", ps), ("velocity", vs)):
        object.__setattr__(m, name, v)
    return m


def _model_bytes(layers: tuple[int, ...]) -> int:
    """Memory of a model: params and velocity, int32 each."""
    return 8 * sum(a * b + b for a, b in zip(layers, layers[1:])) + 256


def _params(m: Model) -> tuple[np.ndarray, ...]:
    return tuple([t.raw() for t in m.params])


# ---- the functions of `ml` ----------------------------------------------------------------------

def ml_model(kind: Any, layers: Any, seed: Any) -> Model:
    """ml.model(kind, layers, seed): a new model, weights from mlcore's seeded init rule."""
    try:
        kind, layers = check_arch(kind, layers)
    except E.InvalidValue as e:
        raise _err(f"ml.model: {e.message}") from None
    if type(seed) is not int or not 0 <= seed < 1 << 64:
        raise _err("ml.model: seed must be an int from 0 to 2**64 - 1")
    arch = _arch("model", kind, layers)
    allocate(_model_bytes(layers))
    _run_program("model", "init", arch)
    params = _call("model", _mlcore().programs.init, arch, seed)
    return _model_result(kind, layers, params)


def ml_tensor(values: Any, format: Any = "q16") -> Tensor:  # noqa: A002 - the documented keyword
    """ml.tensor(values, format="q16"): a tensor of nested lists (or tuples) of numbers, all
    rows of one level the same length.  q16 takes ints and Decimals, rounded half up to
    multiples of 2**-16 and within +-127.5 (exactly: +-8355711 / 65536); int takes int32s."""
    if format not in FORMATS:
        raise _err(f"ml.tensor: format must be \"q16\" or \"int\", not {_text_of(format)}")
    level: list = [values]
    shape: list[int] = []
    while type(level[0]) in (list, tuple):
        n = len(level[0])
        if n == 0:
            raise _err("ml.tensor: values must not hold an empty list")
        if len(shape) == MAX_TENSOR_RANK:
            raise _err(f"ml.tensor: a tensor has at most {MAX_TENSOR_RANK} dimensions")
        if len(level) * n > MAX_TENSOR_ELEMENTS:
            raise E.LimitExceeded(f"ml.tensor: a tensor has at most {MAX_TENSOR_ELEMENTS} elements")
        charge(len(level) * n * G.PER_ELEMENT)  # the next level, before it is built
        allocate(8 * len(level) * n)
        for row in level:
            if type(row) not in (list, tuple) or len(row) != n:
                raise _err(f"ml.tensor: the lists of level {len(shape) + 1} must all have {n} items (a rectangular "
                           "array of numbers)")
        shape.append(n)
        level = list(chain.from_iterable(level))
    if not shape:
        raise _err("ml.tensor: values must be a list (of lists) of numbers")
    count = len(level)
    charge(count * TENSOR_PER_ELEMENT)  # the type checks and conversion below, in C
    allocate(12 * count)
    kinds = list(map(type, level))
    types = set(kinds)
    if format == "int":
        if not types <= {int}:
            raise _err(f"ml.tensor: an int tensor holds ints, not {type_name(_first_other(level, (int,)))}")
        arr = _int64s(level, -(1 << 31), (1 << 31) - 1)
        if arr is None:
            raise _err("ml.tensor: an int tensor's elements are int32: from -2**31 to 2**31 - 1")
        return Tensor._trusted(tuple(shape), format, arr.astype(_I32).reshape(shape))
    if not types <= {int, Decimal}:
        raise _err(f"ml.tensor: a q16 tensor holds ints and Decimals, not "
                   f"{type_name(_first_other(level, (int, Decimal)))}")
    decimals = kinds.count(Decimal)
    if decimals:  # exact: the scaled ints, rounded half up in Python integers
        charge(decimals * TENSOR_PER_DECIMAL)
        arr = _int64s([_q16_of(x) for x in level], -Q16_MAX, Q16_MAX)
    else:
        arr = _int64s(level, -(Q16_MAX >> 16), Q16_MAX >> 16)
        if arr is not None:
            arr <<= 16
    if arr is None:
        raise _err(f"ml.tensor: a q16 value must round to within +-{q16_to_decimal(Q16_MAX)} (about 127.5)")
    return Tensor._trusted(tuple(shape), format, arr.astype(_I32).reshape(shape))


def _q16_of(x: Any) -> int:
    return x << 16 if type(x) is int else (decimal_scaled(x) * 2 * _Q + 10 ** DECIMAL_PLACES) // (2 * 10 ** DECIMAL_PLACES)


def _int64s(xs: list, lo: int, hi: int) -> Any:
    """xs (ints) as an int64 array, or None when one lies outside [lo, hi]."""
    try:
        arr = np.array(xs, dtype=np.int64)
    except OverflowError:
        return None
    if int(arr.min()) < lo or int(arr.max()) > hi:
        return None
    return arr


def _first_other(items: list, types: tuple) -> Any:
    return next(x for x in items if type(x) not in types)


def _text_of(v: Any) -> str:
    return ascii(v) if type(v) is str and len(v) <= 32 else _a(v)


def ml_concat(tensors: Any) -> Tensor:
    """ml.concat(tensors): the rows of several tensors of one format and row shape, in order."""
    if type(tensors) not in (list, tuple) or not tensors:
        raise _err("ml.concat: takes a non-empty list of tensors")
    charge(len(tensors) * G.PER_ELEMENT)
    first = tensors[0]
    for i, t in enumerate(tensors):
        if type(t) is not Tensor:
            raise _err(f"ml.concat: item {i} is {_a(t)}, not a Tensor")
        if t.fmt != first.fmt or t.shape[1:] != first.shape[1:]:
            raise _err(f"ml.concat: item {i} is {_describe(t)}; item 0 is {_describe(first)}: the format and every "
                       "dimension but the first must agree")
    rows = sum(t.shape[0] for t in tensors)
    per_row = first.size // first.shape[0]
    if rows * per_row > MAX_TENSOR_ELEMENTS:
        raise E.LimitExceeded(f"ml.concat: a tensor has at most {MAX_TENSOR_ELEMENTS} elements")
    nbytes = 4 * rows * per_row
    allocate(nbytes)
    charge((nbytes >> 5) * G.PER_32_BYTES)
    return Tensor._trusted((rows,) + first.shape[1:], first.fmt, np.concatenate([t.raw() for t in tensors]))


def ml_train(model: Any, x: Any, y: Any, lr: Any, momentum: Any = 0, batch: Any = 0,
             epochs: Any = 1) -> tuple[Model, list]:
    """ml.train(model, x, y, lr, momentum=0, batch=0, epochs=1) -> (model, losses): SGD with
    momentum over the rows of x in order, in mini-batches of `batch` rows (0, or more than the
    rows: one batch of all rows; the last batch of an epoch may be short), `epochs` times.
    losses: each step's mean loss on its batch before the step, Decimals."""
    m = _model_arg("train", model)
    xs = _x_arg("train", m, x)
    rows = xs.shape[0]
    ys = _y_arg("train", m, y, rows)
    k_lr = _fraction("train", "lr", lr, _LR_MAX, "from 0 to 16")
    k_mu = _fraction("train", "momentum", momentum, _MOMENTUM_MAX, "from 0 to below 1 (at most 65535/65536 once "
                     "rounded to Q.16)")
    batch = _count("train", "batch", batch, 0)
    epochs = _count("train", "epochs", epochs, 1)
    if batch == 0 or batch > rows:
        batch = rows
    top = _mlcore().limits.MAX_STEPS
    if epochs > top or -(-rows // batch) * epochs > top:
        raise E.LimitExceeded(f"ml.train: {-(-rows // batch)} batches x {epochs} epochs is over the limit of {top} "
                              "steps per call")
    arch = _arch("train", m.kind, m.layers)
    allocate(_model_bytes(m.layers) + 64 * (-(-rows // batch) * epochs))
    _run_program("train", "train", arch, rows=rows, batch=batch, epochs=epochs)
    params, velocity, losses, _correct = _call(
        "train", _mlcore().programs.train, arch, _params(m), tuple(t.raw() for t in m.velocity), xs, ys, k_lr, k_mu,
        batch, epochs)
    return _model_result(m.kind, m.layers, params, velocity), [q16_to_decimal(k) for k in losses]


def ml_predict(model: Any, x: Any) -> Tensor:
    """ml.predict(model, x): a classifier's labels (an int tensor (rows,)); a linear model's
    outputs (a q16 tensor (rows, outputs))."""
    # the common small call is dominated by overheads: a model and x seen before (same kind,
    # layers and x shape, x in q16, so every check of _x_arg passed) go straight to the cached call
    if type(model) is Model and type(x) is Tensor and x.fmt == "q16" and \
            (c := _ROWS_CALLS.get(("predict", model.kind, model.layers, x.shape))) is not None:
        allocate(c.nbytes)
        _charge_program("predict", c.arch, c.program)
    else:
        m = _model_arg("predict", model)
        xs = _x_arg("predict", m, x)
        rows = xs.shape[0]
        if m.kind == "linear":
            c = _rows_call("predict", m, xs, (rows, m.layers[-1]), "q16", 4 * rows * m.layers[-1])
        else:
            c = _rows_call("predict", m, xs, (rows,), "int", 4 * rows)
    try:  # _call, inlined
        out = _Lazy.programs.predict(c.arch, _params(model), x.raw())
    except ValueError as e:
        raise _err(f"ml.predict: {e}") from None
    return Tensor._trusted(c.shape, c.fmt, out)


def ml_probabilities(model: Any, x: Any) -> Tensor:
    """ml.probabilities(model, x): a classifier's class probabilities, a q16 tensor
    (rows, classes) whose rows sum to about 1."""
    m = _model_arg("probabilities", model)
    if m.kind == "linear":
        raise _err("ml.probabilities: a linear model has no class probabilities: use ml.predict")
    xs = _x_arg("probabilities", m, x)
    rows = xs.shape[0]
    c = _rows_call("probabilities", m, xs, (rows, m.layers[-1]), "q16", 4 * rows * m.layers[-1])
    out = _call("probabilities", _Lazy.programs.probabilities, c.arch, _params(m), xs)
    return Tensor._trusted(c.shape, c.fmt, out)


def ml_evaluate(model: Any, x: Any, y: Any) -> tuple[Decimal, int]:
    """ml.evaluate(model, x, y) -> (loss, correct): the mean loss over the rows (a Decimal)
    and, for classifiers, how many rows the model labels right (0 for a linear model)."""
    m = _model_arg("evaluate", model)
    xs = _x_arg("evaluate", m, x)
    rows = xs.shape[0]
    ys = _y_arg("evaluate", m, y, rows)
    c = _rows_call("evaluate", m, xs)
    loss, correct = _call("evaluate", _Lazy.programs.evaluate, c.arch, _params(m), xs, ys)
    return q16_to_decimal(loss), int(correct)


def ml_average(models: Any, weights: Any) -> Model:
    """ml.average(models, weights): the weighted mean of models of one architecture, each
    parameter rounded half up (federated averaging); the result's velocity is zero."""
    if type(models) not in (list, tuple) or not models:
        raise _err("ml.average: models must be a non-empty list of models")
    top = _mlcore().limits.MAX_MODELS
    if len(models) > top:
        raise E.LimitExceeded(f"ml.average: at most {top} models per call")
    charge(len(models) * G.PER_ELEMENT)
    first = _model_arg("average", models[0], "models[0]")
    for i, m in enumerate(models):
        _model_arg("average", m, f"models[{i}]")
        if m.kind != first.kind or m.layers != first.layers:
            raise _err(f"ml.average: models[{i}] is {a_kind(m.kind)} model {_shape_text(m.layers)}, models[0] "
                       f"{a_kind(first.kind)} model {_shape_text(first.layers)}: all must have one architecture")
    if type(weights) not in (list, tuple) or len(weights) != len(models):
        raise _err(f"ml.average: weights must be a list of {len(models)} ints, one per model")
    for w in weights:
        if type(w) is not int or w < 0:
            raise _err("ml.average: weights must be ints >= 0")
    total = sum(weights)
    if total == 0:
        raise _err("ml.average: the weights sum to 0: at least one must be positive")
    most = _mlcore().models.MAX_WEIGHT_SUM
    if total > most:
        raise _err(f"ml.average: the weights sum to more than {most} (2**39 - 1)")
    arch = _arch("average", first.kind, first.layers)
    allocate(_model_bytes(first.layers))
    _run_program("average", "average", arch, models=len(models))
    params = _call("average", _mlcore().programs.average, arch, [_params(m) for m in models], list(weights))
    return _model_result(first.kind, first.layers, params)


def ml_job_model(job: Any) -> Model:
    """ml.job_model(job): the model a final training job delivered (ledger/jobs.py: trained off
    chain, its result unchallenged or upheld), with its velocity: a Model like any other."""
    if type(job) is not int or not 0 <= job < 1 << 64:
        raise _err("ml.job_model: job must be a job id, an int from 0 to 2**64 - 1")
    charge(G.BUILTIN)
    found = meter.RT.host.job_model(job)
    if found is None:
        raise _err(f"ml.job_model: job {job} has no final model (no such job, or it is not final yet)")
    kind, layers, data = found
    charge((len(data) >> 5) * G.PER_32_BYTES)
    allocate(_model_bytes(layers))
    from mlcore import jobs
    params, velocity = jobs.decode_checkpoint(_mlcore().Arch(kind, layers), data)
    return _model_result(kind, layers, params, velocity)


ML_FUNCTIONS: dict[str, Callable] = {
    "model": ml_model, "tensor": ml_tensor, "concat": ml_concat, "train": ml_train, "predict": ml_predict,
    "probabilities": ml_probabilities, "evaluate": ml_evaluate, "average": ml_average, "job_model": ml_job_model,
}


# ---- tensor and model fields, items, tolist ------------------------------------------------------

def _tensor_tolist(t: Tensor) -> list:
    """t.tolist(): nested lists of the elements (q16 as exact Decimals, int as ints)."""
    n = t.size
    if n > MAX_TOLIST:
        raise E.LimitExceeded(f"tolist() of a tensor of {n} elements: at most {MAX_TOLIST} (read rows with t[i])")
    charge(n * (TOLIST_PER_DECIMAL if t.fmt == "q16" else TOLIST_PER_INT))
    allocate(64 * n)
    data = t.raw().tolist()
    return _decimals(data, len(t.shape)) if t.fmt == "q16" else data


def _decimals(v: list, depth: int) -> list:
    if depth == 1:
        return [Decimal.from_scaled(k * _UNIT) for k in v]
    return [_decimals(x, depth - 1) for x in v]


def _element(t: Tensor, k: int) -> Any:
    return q16_to_decimal(k) if t.fmt == "q16" else int(k)


FIELDS: dict[tuple[type, str], Callable[[Any], Any]] = {
    (Tensor, "shape"): lambda t: t.shape,
    (Tensor, "format"): lambda t: t.fmt,
    (Tensor, "size"): lambda t: t.size,
    (Model, "kind"): lambda m: m.kind,
    (Model, "layers"): lambda m: m.layers,
    (Model, "params"): lambda m: m.params,  # tensors are immutable: shared, not copied
    (Model, "size"): lambda m: m.size,
}
TENSOR_METHODS: dict[str, Callable] = {"tolist": _tensor_tolist}


def item(t: Tensor, k: Any) -> Any:
    """t[i], t[i, j], ...: an element (q16 as a Decimal, int as an int) when every dimension
    is indexed, else the sub-tensor (a copy); negative indexes count from the end."""
    idx = k if type(k) is tuple else (k,)
    if not 1 <= len(idx) <= len(t.shape):
        raise _err(f"a tensor of {len(t.shape)} dimensions takes 1 to {len(t.shape)} indexes, not {len(idx)}")
    for i, d in zip(idx, t.shape):
        if not _isint(i):
            raise _err(f"tensor indexes must be ints, not {type_name(i)}")
        if not -d <= i < d:
            raise _err("tensor index out of range")
    idx = tuple(int(i) for i in idx)
    charge(G.BUILTIN)
    if len(idx) == len(t.shape):
        return _element(t, t.raw()[idx])
    sub = t.raw()[idx]
    allocate(sub.nbytes + 64)
    charge((sub.nbytes >> 5) * G.PER_32_BYTES)
    return Tensor._trusted(sub.shape, t.fmt, sub)


def rows(t: Tensor, lo: Any, hi: Any, st: Any) -> Tensor:
    """t[a:b:c]: the rows of a slice of the first dimension (a copy; at least one row)."""
    for p in (lo, hi, st):
        if p is not None and not _isint(p):
            raise _err(f"slice indices must be ints or None, not {type_name(p)}")
    if st == 0:
        raise _err("slice step cannot be zero")
    sel = range(*slice(lo, hi, st).indices(t.shape[0]))
    if not sel:
        raise _err("a tensor slice must hold at least one row")
    sub = t.raw()[sel.start:sel.stop if sel.stop >= 0 else None:sel.step]
    allocate(sub.nbytes + 64)
    charge(G.BUILTIN + (sub.nbytes >> 5) * G.PER_32_BYTES)
    return Tensor._trusted(sub.shape, t.fmt, sub)


def text(v: Tensor | Model) -> str:
    """str() of a tensor or model: what it is, not its elements (use tolist())."""
    if type(v) is Tensor:
        return f"Tensor(shape={_shape_text(v.shape)}, format='{v.fmt}')"
    return f"Model(kind='{v.kind}', layers={_shape_text(v.layers)})"


# ---- dispatch ------------------------------------------------------------------------------------

def _signature_text(name: str, f: Callable) -> str:
    params = []
    for p in inspect.signature(f).parameters.values():
        params.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return f"ml.{name}({', '.join(params)})"


_SIGNATURES = {name: _signature_text(name, f) for name, f in ML_FUNCTIONS.items()}


def method(name: str) -> Callable:
    """The wrapper compiled code calls for `x.name(...)`, name one of validate.ML_METHODS or
    ML_FIELDS: ml's functions, tensor methods, and a clear error for anything else."""
    fn = ML_FUNCTIONS.get(name)
    tm = TENSOR_METHODS.get(name)

    def dispatch(obj: Any, *args: Any, **kwargs: Any) -> Any:
        t = type(obj)
        if fn is not None and t is ML:
            charge(G.BUILTIN)
            rt = meter.RT
            tr = rt.tracer  # vm/trace.py: trace_tx only (the call stays here: its TypeError test reads this frame)
            try:
                if tr is None:
                    return fn(*args, **kwargs)
                m = tr.ml_enter(rt, name, args, kwargs)
                out = fn(*args, **kwargs)
            except TypeError as e:
                if tr is not None:
                    tr.ml_exit(rt, m, None, e)
                if e.__traceback__ is not None and e.__traceback__.tb_next is None:  # the call's own binding
                    raise _err(f"{_SIGNATURES[name]} was called with the wrong arguments") from None
                raise
            except Exception as e:
                if tr is not None:
                    tr.ml_exit(rt, m, None, e)
                raise
            tr.ml_exit(rt, m, out, None)
            return out
        if tm is not None and t is Tensor:
            charge(G.BUILTIN)
            if args or kwargs:
                raise _err(f"{name}() takes no arguments")
            return tm(obj)
        if (t, name) in FIELDS:
            raise _err(f".{name} of {_a(obj)} is not a method: read it as x.{name}")
        raise _err(f"{_a(obj)} has no method {name}()")
    dispatch.__name__ = "_m_" + name
    return dispatch

