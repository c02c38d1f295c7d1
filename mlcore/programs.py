"""What the VM calls: ML operations on numpy arrays, padded to bucketed shapes, run by jitted
programs cached per bucketed signature, with their gas (docs/mlcore.md section 8).

Shapes come from transactions, so an attacker could otherwise force a compile per call: every
shape (rows, batch, steps, features, hidden units, classes, models) is padded with zeros to a
bucket (`bucket`), and mlcore.models guarantees that padding changes no bit of the real results.
The number of programs is then bounded by the buckets, and `cost` prices the program that really
runs from the bucketed shapes alone.

The host path is kept lean because small calls are dominated by it: all inputs of a call are
packed into ONE int32 buffer (a jitted call pays several microseconds per argument) and the
results come back in one buffer, programs are found by a tuple key, and everything that depends
only on the real shapes (offsets, index maps, the step order) is planned once and cached.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from functools import lru_cache
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlcore import gas, models
from mlcore.activations import PROBS
from mlcore.limits import MAX_MODELS, MAX_PROGRAM_ELEMENTS, MAX_ROWS, MAX_STEPS, MAX_TENSOR_ELEMENTS
from mlcore.matmul import choose_lowering
from mlcore.models import DELTAS, INPUTS, LOGITS, WEIGHTS, Arch

OPS = ("train", "predict", "probabilities", "evaluate", "average")  # compiled programs
HOST_OPS = ("init",)  # numpy on the host: priced by `cost`, but no program (no id, no compile)
PROGRAM_VERSION = b"gradchain/mlcore/programs/v1"
MAX_PROGRAMS = 512  # compiled programs kept in memory (least recently used dropped; the disk cache keeps them)


# ---- buckets ------------------------------------------------------------------------------------

def bucket(n: int) -> int:
    """The smallest value >= n among {8, 10, 12, 14} * 2**k (k >= 0): 8, 10, 12, 14, 16, 20, 24,
    28, 32, 40, ... (padding wastes at most 25% per dimension)."""
    if n <= 8:
        if n < 1:
            raise ValueError(f"a dimension must be >= 1, got {n}")
        return 8
    step = 1 << ((n - 1).bit_length() - 3)  # n in (8 * 2**k, 16 * 2**k]: step 2**(k + 1)
    return -(-n // step) * step


def bucket_count(n: int) -> int:
    """Buckets for counts that are often tiny (training steps, batch slots, averaged models):
    1, 2, 4, then `bucket`.  A single-step train (one batch, one epoch) is the common call; padding
    it to 8 steps would price it 8x and hold 8 batch slots of x."""
    if n <= 4:
        if n < 1:
            raise ValueError(f"a count must be >= 1, got {n}")
        return 1 << (n - 1).bit_length()
    return bucket(n)


@lru_cache(maxsize=4096)
def _padded(arch: Arch) -> Arch:
    """The checked arch with every layer width bucketed (checked once per arch)."""
    arch.check()
    for a, b in zip(arch.layers, arch.layers[1:]):
        if a * b > MAX_TENSOR_ELEMENTS:
            raise ValueError(f"a {a} x {b} weight matrix exceeds {MAX_TENSOR_ELEMENTS} elements")
    return Arch(arch.kind, tuple(bucket(d) for d in arch.layers))


def _classes(arch: Arch) -> int:
    """The real class count: static in mlcore.models (masked padded classes), so part of the key."""
    return arch.outputs if arch.classifier else 0


class Schedule(NamedTuple):
    """How train splits rows: `batches` mini-batches of `batch` rows (the last has `last` rows),
    repeated `epochs` times = `steps`; bucketed: B = bucket(batch) rows a batch,
    S = bucket_count(batches + 1) batch slots (at least one empty: n = 0, for padding steps),
    T = bucket_count(steps) steps."""

    rows: int
    batch: int
    epochs: int
    batches: int
    last: int
    steps: int
    B: int
    S: int
    T: int


def _int(name: str, v, lo: int, hi: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {v!r}")
    return int(v)


@lru_cache(maxsize=4096)
def schedule(rows: int, batch: int, epochs: int) -> Schedule:
    """Split `rows` in order into batches of `batch` rows (0 or more than rows: all rows in one),
    `epochs` times; refused beyond MAX_ROWS rows or MAX_STEPS steps."""
    rows = _int("rows", rows, 1, MAX_ROWS)
    batch = _int("batch", batch, 0, MAX_ROWS)
    epochs = _int("epochs", epochs, 1, MAX_STEPS)
    batch = rows if batch == 0 or batch > rows else batch
    batches = -(-rows // batch)
    steps = batches * epochs
    if steps > MAX_STEPS:
        raise ValueError(f"{batches} batches x {epochs} epochs = {steps} steps, more than {MAX_STEPS}")
    return Schedule(rows, batch, epochs, batches, rows - (batches - 1) * batch, steps,
                    bucket(batch), bucket_count(batches + 1), bucket_count(steps))


# ---- program keys and ids ----------------------------------------------------------------------

def key(op: str, arch: Arch, rows: int = 0, batch: int = 0, epochs: int = 1, models: int = 0) -> tuple:
    """The bucketed signature of a program: what it compiles for, and all its gas depends on.

    train: (op, kind, padded layers, classes, B, S, T); predict, probabilities, evaluate:
    (op, kind, padded layers, classes, R) with R = bucket(rows); average: (op, "", padded layers,
    0, M) with M = bucket_count(models) (averaging depends on the parameter shapes only); init (host
    numpy, no program; for its gas): (op, kind, padded layers, classes)."""
    pa = _padded(arch)
    if op == "init":
        return (op, arch.kind, pa.layers, _classes(arch))
    if op == "train":
        s = schedule(rows, batch, epochs)
        _check_pass(arch, pa, rows, s.B)
        return (op, arch.kind, pa.layers, _classes(arch), s.B, s.S, s.T)
    if op in ("predict", "probabilities", "evaluate"):
        if op == "probabilities" and not arch.classifier:
            raise ValueError("probabilities need a classifier (softmax or mlp)")
        R = bucket(_int("rows", rows, 1, MAX_ROWS))
        _check_pass(arch, pa, rows, R)
        return (op, arch.kind, pa.layers, _classes(arch), R)
    if op == "average":
        M = bucket_count(_int("models", models, 1, MAX_MODELS))
        if M * sum(math.prod(s) for s in pa.shapes) > MAX_PROGRAM_ELEMENTS:
            raise ValueError(f"averaging {models} models of {arch.size} parameters is too large: padded, "
                             f"{M} x {sum(math.prod(s) for s in pa.shapes)} > {MAX_PROGRAM_ELEMENTS} elements")
        return (op, "", pa.layers, 0, M)
    raise ValueError(f"unknown ML operation {op!r}; expected one of {OPS + HOST_OPS}")


def _check_pass(arch: Arch, pa: Arch, rows: int, padded_rows: int) -> None:
    """x and y within MAX_TENSOR_ELEMENTS; one pass's activations within MAX_PROGRAM_ELEMENTS."""
    if rows * max(arch.features, 1 if arch.classifier else arch.outputs) > MAX_TENSOR_ELEMENTS:
        raise ValueError(f"{rows} rows of {arch.features} features (and targets) exceed "
                         f"{MAX_TENSOR_ELEMENTS} elements")
    if padded_rows * max(pa.layers) > MAX_PROGRAM_ELEMENTS:
        raise ValueError(f"{padded_rows} rows (padded) through a layer of {max(pa.layers)} units exceed "
                         f"{MAX_PROGRAM_ELEMENTS} elements: use fewer rows per call or batch")


def canonical(k: tuple) -> bytes:
    """The canonical bytes of a key: fields joined by '|', layer widths by ','."""
    op, kind, layers, classes, *dims = k
    return "|".join([op, kind, ",".join(map(str, layers)), str(classes), *map(str, dims)]).encode()


def program_id(op: str, arch: Arch, **dims: int) -> bytes:
    """sha256(PROGRAM_VERSION | canonical bucketed signature): 32 bytes naming the program that
    an op on these shapes runs; the VM charges gas.ML_COMPILE the first time an id is used."""
    if op in HOST_OPS:
        raise ValueError(f"{op} runs on the host: it has no program")
    return _program_id(key(op, arch, **dims))


@lru_cache(maxsize=4096)
def _program_id(k: tuple) -> bytes:
    return hashlib.sha256(PROGRAM_VERSION + b"|" + canonical(k)).digest()


# ---- gas ---------------------------------------------------------------------------------------

def _matmul_units(units: dict, m: int, k: int, n: int, a_fmt, b_fmt, times: int = 1,
                  over_rows: bool = False) -> None:
    """Count one exact matmul (m, k) @ (k, n) the way mlcore.matmul lowers it.  `over_rows`: a
    weight gradient h^T @ g, contracting the rows, whose operands are read transposed."""
    if over_rows:
        units["element"] += times * (m * k + k * n)
    if choose_lowering(a_fmt, b_fmt, k) == "f64":
        units["f64_mac"] += times * m * k * n
        units["element"] += times * (m * k + k * n)  # operands to float64 (and transposed)
    else:
        na, nb = a_fmt.digits, b_fmt.digits
        units["i8_mac"] += times * m * k * n * na * nb
        units["element"] += times * (m * k * na + k * n * nb)  # splitting into digits
        units["partial"] += times * m * n * na * nb  # int32 partial products recombined in int64
    units["element"] += times * m * n  # the int64 result (bias, rescale)


def _forward_units(units: dict, pa: Arch, rows: int, times: int = 1) -> None:
    L = pa.layers
    for l in range(len(L) - 1):
        _matmul_units(units, rows, L[l], L[l + 1], INPUTS if l == 0 else LOGITS, WEIGHTS, times)
    if pa.classifier:
        units["exp"] += times * rows * L[-1]


def work(k: tuple) -> dict[str, int]:
    """Units of work of the program with key k (see mlcore.gas): a function of the key only."""
    op, kind, layers, _, *dims = k
    pa = Arch(kind or "linear", layers)
    L = layers
    units = dict.fromkeys(gas.RATES, 0)
    params = sum(a * b + b for a, b in zip(L, L[1:]))
    if op == "init":
        units["init"] += params
        units["byte"] += 4 * params
    elif op == "train":
        B, S, T = dims
        _forward_units(units, pa, B, T)
        g_fmt = PROBS if pa.classifier else LOGITS
        for l in range(len(L) - 2, -1, -1):
            _matmul_units(units, L[l], B, L[l + 1], INPUTS if l == 0 else LOGITS, g_fmt, T, over_rows=True)
            if l:
                _matmul_units(units, B, L[l + 1], L[l], g_fmt, WEIGHTS, T)
                g_fmt = DELTAS
        units["exp"] += T * B  # the loss's log (classifiers) or squared error (linear)
        units["train"] += 1
        units["param"] += T * params
        units["step"] += T
        units["layer"] += T * (len(L) - 1)
        units["byte"] += 4 * (4 * params + S * B * (L[0] + (1 if pa.classifier else L[-1])) + S + 3 * T)
    elif op == "average":
        (M,) = dims
        units["average"] += M * params
        units["param"] += params  # the mean (an int64 division) and saturation
        units["layer"] += len(L) - 1
        units["byte"] += 4 * (M + 1) * params + 8 * M
    else:
        (R,) = dims
        _forward_units(units, pa, R)
        units["layer"] += len(L) - 1
        if op == "evaluate":
            units["exp"] += R
        units["byte"] += 4 * (params + R * L[0] + R * (1 if op != "probabilities" else L[-1]) + R)
    return units


def cost(op: str, arch: Arch, rows: int = 0, batch: int = 0, epochs: int = 1, models: int = 0) -> int:
    """Gas of one call: ML_CALL plus the priced work of the bucketed program (rounded up).
    Raises ValueError for shapes a call would refuse, so the VM can charge before running."""
    return _gas(key(op, arch, rows=rows, batch=batch, epochs=epochs, models=models))


@lru_cache(maxsize=4096)
def _gas(k: tuple) -> int:
    units = work(k)
    milli = sum(units[u] * rate for u, rate in gas.RATES.items())
    return gas.ML_CALL + -(-milli // 1000)


# ---- compiled programs -------------------------------------------------------------------------

_PROGRAMS: OrderedDict[tuple, Callable] = OrderedDict()
_COUNTS = {"programs_built": 0, "backend_compiles": 0, "compile_seconds": 0.0,
           "persistent_cache_hits": 0, "persistent_cache_writes": 0, "program_cache_hits": 0}
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # an executable built or loaded from disk
_CACHE_HIT = "/jax/compilation_cache/cache_hits"                  # loaded from the persistent cache
_CACHE_WRITE = "/jax/compilation_cache/cache_misses"              # compiled and written to it


def _on_event(event: str, **_) -> None:
    if event == _CACHE_HIT:
        _COUNTS["persistent_cache_hits"] += 1
    elif event == _CACHE_WRITE:
        _COUNTS["persistent_cache_writes"] += 1


def _on_duration(event: str, seconds: float, **_) -> None:
    if event == _BACKEND_COMPILE:
        _COUNTS["backend_compiles"] += 1
        _COUNTS["compile_seconds"] += seconds


jax.monitoring.register_event_listener(_on_event)
jax.monitoring.register_event_duration_secs_listener(_on_duration)


def stats() -> dict:
    """Counters of this process: programs built here (`programs_built`, `programs` held now),
    `backend_compiles` (every executable JAX built, eager ops included: an XLA compile or a load
    from the persistent cache) and their `compile_seconds`, `persistent_cache_hits` (loaded from
    disk), `persistent_cache_writes`, and `xla_compiles` = backend_compiles - hits (real compiles)."""
    out = dict(_COUNTS, programs=len(_PROGRAMS))
    out["xla_compiles"] = out["backend_compiles"] - out["persistent_cache_hits"]
    return out


def enable_persistent_cache(path) -> None:
    """Persist every compiled program under `path` (thresholds 0: even tiny, fast programs), so a
    restarted node loads executables instead of compiling them.  The node calls it with
    <datadir>/xla-cache before its first ML call; calling it later also works."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size threshold, no override
    cc.reset_cache()  # JAX decides once whether the cache is used: make it look again


def _program(k: tuple, build: Callable[[], Callable]) -> Callable:
    fn = _PROGRAMS.get(k)
    if fn is None:
        fn = _PROGRAMS[k] = jax.jit(build())
        _COUNTS["programs_built"] += 1
        if len(_PROGRAMS) > MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    else:
        _COUNTS["program_cache_hits"] += 1
        _PROGRAMS.move_to_end(k)
    return fn


# ---- one int32 buffer per call -----------------------------------------------------------------

class Layout(NamedTuple):
    """Where each packed array lies in a flat buffer: (start, end, shape) per array, total size."""

    slots: tuple[tuple[int, int, tuple[int, ...]], ...]
    size: int


def layout(shapes: Sequence[tuple[int, ...]]) -> Layout:
    slots, off = [], 0
    for s in shapes:
        slots.append((off, off + math.prod(s), tuple(s)))
        off += math.prod(s)
    return Layout(tuple(slots), off)


def unpack(buf: jnp.ndarray, lay: Layout, lead: tuple[int, ...] = ()) -> list[jnp.ndarray]:
    """Inside a program: the arrays of a packed buffer (static slices, free for XLA)."""
    ax = len(lead)
    return [jax.lax.slice_in_dim(buf, a, b, axis=ax).reshape(lead + s) for a, b, s in lay.slots]


I32 = np.dtype(np.int32)
SMALL_MODEL = 4096  # parameters: up to this many are packed by one index map, larger ones array by array


class _ArchPlan(NamedTuple):
    """How one architecture's parameters pad: the padded arch, the real class count the program
    masks (None for linear), the padded layout of one parameter set, and (small models) `idx`:
    for k = 1, 2 parameter sets side by side, the positions of their real elements (concatenated
    in order) in the padded blocks; larger models go array by array through `slices`."""

    pa: Arch
    classes: int | None
    shapes: list[tuple[int, ...]]
    signature: list[tuple[tuple[int, ...], np.dtype]]  # (shape, int32) per array
    lay: Layout
    idx: tuple[np.ndarray, np.ndarray] | None
    cuts: tuple[tuple[int, int], ...]
    slices: tuple


@lru_cache(maxsize=256)
def _arch_plan(arch: Arch) -> _ArchPlan:
    pa = _padded(arch)
    lay = layout(pa.shapes)
    slices = tuple(tuple(slice(0, d) for d in s) for s in arch.shapes)
    cuts, off, idx = [], 0, None
    for s in arch.shapes * 2:
        cuts.append((off, off + math.prod(s)))
        off += math.prod(s)
    if arch.size <= SMALL_MODEL:
        pos = np.arange(lay.size, dtype=np.int64)
        one = np.concatenate([pos[a:b].reshape(s)[sl].ravel() for (a, b, s), sl in zip(lay.slots, slices)])
        idx = (one, np.concatenate([one, one + lay.size]))
    return _ArchPlan(pa, arch.outputs if arch.classifier else None, list(arch.shapes),
                     [(s, I32) for s in arch.shapes], lay, idx, tuple(cuts), slices)


def _arrays(ap: _ArchPlan, sets: list) -> list[np.ndarray]:
    """The arrays of 1 or 2 parameter sets, checked: int32 numpy arrays of the real shapes."""
    arrays = [p for ps in sets for p in ps]
    try:
        ok = [(p.shape, p.dtype) for p in arrays] == ap.signature * len(sets)
    except AttributeError:
        ok = False
    if not ok:
        raise TypeError(f"parameters must be int32 numpy arrays of shapes {ap.shapes}")
    return arrays


def _pack(ap: _ArchPlan, block: np.ndarray, sets: list) -> None:
    """Write 1 or 2 parameter sets side by side into their zeroed padded blocks."""
    arrays = _arrays(ap, sets)
    if ap.idx is not None:
        block[ap.idx[len(sets) - 1]] = np.concatenate(arrays, axis=None)
        return
    size = ap.lay.size
    for k, ps in enumerate(sets):
        for p, (a, b, s), sl in zip(ps, ap.lay.slots, ap.slices):
            block[k * size + a:k * size + b].reshape(s)[sl] = p


def _unpack(ap: _ArchPlan, block: np.ndarray, count: int) -> list[tuple[np.ndarray, ...]]:
    """`count` parameter sets of the real shapes out of padded blocks side by side (new arrays,
    not views of the block)."""
    n = len(ap.shapes)
    if ap.idx is not None:
        flat = block[ap.idx[count - 1]]
        arrays = [flat[a:b].reshape(s) if len(s) > 1 else flat[a:b]
                  for (a, b), s in zip(ap.cuts, ap.shapes * count)]
    else:
        size = ap.lay.size
        arrays = [block[k * size + a:k * size + b].reshape(s)[sl].copy()
                  for k in range(count) for (a, b, s), sl in zip(ap.lay.slots, ap.slices)]
    return [tuple(arrays[k * n:(k + 1) * n]) for k in range(count)]


LR_MAX, MOMENTUM_MAX = models.LR.max_abs, models.MOMENTUM_MAX


def _check_rows(arch: Arch, x, y=None) -> int:
    if not isinstance(x, np.ndarray) or x.dtype != I32 or x.ndim != 2 or x.shape[1] != arch.features:
        raise TypeError(f"x must be an int32 numpy array of shape (rows, {arch.features})")
    rows = x.shape[0]
    if not 1 <= rows <= MAX_ROWS or x.size > MAX_TENSOR_ELEMENTS:
        raise ValueError(f"x has {rows} rows and {x.size} elements: at most {MAX_ROWS} rows and "
                         f"{MAX_TENSOR_ELEMENTS} elements")
    if y is not None:
        want = (rows,) if arch.classifier else (rows, arch.outputs)
        if not isinstance(y, np.ndarray) or y.dtype != I32 or y.shape != want:
            raise TypeError(f"y must be an int32 numpy array of shape {want}")
        if y.size > MAX_TENSOR_ELEMENTS:
            raise ValueError(f"y has more than {MAX_TENSOR_ELEMENTS} elements")
    return rows


# ---- operations ----------------------------------------------------------------------------------

def init(arch: Arch, seed: int) -> tuple[np.ndarray, ...]:
    """New parameters (numpy, real shapes) from an integer seed (mlcore.models.init)."""
    _padded(arch)
    return tuple(np.asarray(p, dtype=np.int32) for p in models.init(arch, seed))


class _TrainPlan(NamedTuple):
    """Everything about a train call that depends only on its real shapes."""

    key: tuple
    ap: _ArchPlan
    lay: Layout        # params, velocity, meta (lr, momentum, ns, order), ys, xs
    s: Schedule
    meta: np.ndarray   # the meta block with lr = momentum = 0
    # small model and data: for 1 and 2 parameter sets, the buffer positions of every element of
    # concatenate([*params, (*velocity,) x, y]): the whole input in one store
    idx: tuple[np.ndarray, np.ndarray] | None


@lru_cache(maxsize=1024)
def _train_plan(arch: Arch, rows: int, batch: int, epochs: int) -> _TrainPlan:
    k = key("train", arch, rows=rows, batch=batch, epochs=epochs)
    ap = _arch_plan(arch)
    pa, s = ap.pa, schedule(rows, batch, epochs)
    y_shape = (s.S, s.B) if arch.classifier else (s.S, s.B, pa.outputs)
    lay = layout(pa.shapes * 2 + ((2 + s.S + s.T,), y_shape, (s.S, s.B, pa.features)))
    meta = np.zeros(2 + s.S + s.T, np.int32)
    ns, order = meta[2:2 + s.S], meta[2 + s.S:]
    ns[:s.batches] = s.batch
    ns[s.batches - 1] = s.last
    order[:] = s.batches  # padding steps take the empty slot: n = 0, nothing changes
    order[:s.steps] = np.tile(np.arange(s.batches, dtype=np.int32), s.epochs)
    idx = None
    width = 1 if arch.classifier else arch.outputs
    if ap.idx is not None and rows * (arch.features + width) <= SMALL_MODEL:
        r = np.arange(rows)
        slot = (r // s.batch) * s.B + r % s.batch  # row r's place among the S * B batch rows
        (y0, _, _), (x0, _, _) = lay.slots[-2:]
        xpos = x0 + (slot[:, None] * pa.features + np.arange(arch.features)).ravel()
        ypos = y0 + (slot[:, None] * (1 if arch.classifier else pa.outputs) + np.arange(width)).ravel()
        idx = tuple(np.concatenate([one, xpos, ypos]) for one in ap.idx)
    return _TrainPlan(k, ap, lay, s, meta, idx)


def _build_train(ap: _ArchPlan, lay: Layout) -> Callable:
    pa, n = ap.pa, len(ap.shapes)
    S = lay.slots[-1][2][0]

    def train_program(buf):
        parts = unpack(buf, lay)
        meta, ys, xs = parts[2 * n:]
        p, v, losses, correct = models.train(pa, parts[:n], parts[n:2 * n], xs, ys, meta[2:2 + S],
                                             meta[2 + S:], meta[0], meta[1], classes=ap.classes)
        # one result buffer (each costs microseconds): the int64 losses travel as pairs of int32
        # (a bitcast: the host's own byte order both ways, read back with ndarray.view)
        halves = jax.lax.bitcast_convert_type(losses, jnp.int32).ravel()
        return jnp.concatenate([a.ravel() for a in p + v] + [correct, halves])

    return train_program


def train(arch: Arch, params: Sequence[np.ndarray], velocity: Sequence[np.ndarray] | None,
          x: np.ndarray, y: np.ndarray, lr: int, momentum: int, batch: int = 0, epochs: int = 1
          ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], list[int], list[int]]:
    """`epochs` passes of SGD with momentum over the rows of x in order, in mini-batches of `batch`
    rows (0: all rows; the last batch may be short), fused in one program.  lr, momentum: Q.16 ints.
    Returns (params, velocity, loss per step (Q.16 ints, before the step), correct per step)."""
    rows = _check_rows(arch, x, y)
    plan = _train_plan(arch, rows, batch, epochs)
    if not (type(lr) is int and type(momentum) is int and 0 <= lr <= LR_MAX and 0 <= momentum <= MOMENTUM_MAX):
        models.check_hyper(lr, momentum)  # other int types, or the error
    ap, lay, s = plan.ap, plan.lay, plan.s
    buf = np.zeros(lay.size, np.int32)
    sets = [params] if velocity is None else [params, velocity]
    (m0, m1, _), (y0, y1, y_shape), (x0, x1, x_shape) = lay.slots[-3:]
    buf[m0:m1] = plan.meta
    buf[m0], buf[m0 + 1] = lr, momentum
    if plan.idx is not None:
        buf[plan.idx[len(sets) - 1]] = np.concatenate(_arrays(ap, sets) + [x, y], axis=None)
        return _train_run(plan, buf)
    _pack(ap, buf, sets)
    xs, ys = buf[x0:x1].reshape(x_shape), buf[y0:y1].reshape(y_shape)
    b, f = s.batch, arch.features
    full = rows - s.last if s.last < b else rows  # rows in full batches
    nf = full // b
    xs[:nf, :b, :f] = x[:full].reshape(nf, b, f)
    if arch.classifier:
        ys[:nf, :b] = y[:full].reshape(nf, b)
    else:
        ys[:nf, :b, :arch.outputs] = y[:full].reshape(nf, b, arch.outputs)
    if full < rows:
        xs[nf, :s.last, :f] = x[full:]
        if arch.classifier:
            ys[nf, :s.last] = y[full:]
        else:
            ys[nf, :s.last, :arch.outputs] = y[full:]
    return _train_run(plan, buf)


def _train_run(plan: _TrainPlan, buf: np.ndarray):
    ap, s = plan.ap, plan.s
    out = np.asarray(_program(plan.key, lambda: _build_train(ap, plan.lay))(buf))
    end = 2 * ap.lay.size
    p, v = _unpack(ap, out, 2)
    losses = out[end + s.T:end + s.T + 2 * s.steps].view(np.int64).tolist()
    return p, v, losses, out[end:end + s.steps].tolist()


class _RowsPlan(NamedTuple):
    key: tuple
    ap: _ArchPlan
    lay: Layout  # params, [n, ys,] xs
    idx: np.ndarray | None  # small model and data: positions of concatenate([*params, x(, y)])


@lru_cache(maxsize=1024)
def _rows_plan(op: str, arch: Arch, rows: int) -> _RowsPlan:
    k = key(op, arch, rows=rows)
    ap, R = _arch_plan(arch), k[-1]
    pa = ap.pa
    extra = ((1,), (R,) if arch.classifier else (R, pa.outputs)) if op == "evaluate" else ()
    lay = layout(pa.shapes + extra + ((R, pa.features),))
    idx = None
    width = 0 if op != "evaluate" else 1 if arch.classifier else arch.outputs
    if ap.idx is not None and rows * (arch.features + width) <= SMALL_MODEL:
        r = np.arange(rows)[:, None]
        parts = [ap.idx[0], lay.slots[-1][0] + (r * pa.features + np.arange(arch.features)).ravel()]
        if width:
            y_width = 1 if arch.classifier else pa.outputs
            parts.append(lay.slots[-2][0] + (r * y_width + np.arange(width)).ravel())
        idx = np.concatenate(parts)
    return _RowsPlan(k, ap, lay, idx)


def _build_rows(op: str, ap: _ArchPlan, lay: Layout) -> Callable:
    pa, n, classes = ap.pa, len(ap.shapes), ap.classes

    def predict_program(buf):
        parts = unpack(buf, lay)
        return models.predict(pa, parts[:n], parts[n], classes=classes)

    def probabilities_program(buf):
        parts = unpack(buf, lay)
        return models.probabilities(pa, parts[:n], parts[n], classes=classes)

    def evaluate_program(buf):
        parts = unpack(buf, lay)
        count, y, x = parts[n:]
        loss, correct = models.evaluate(pa, parts[:n], x, y, count[0], classes=classes)
        return jnp.stack([loss, correct.astype(jnp.int64)])

    return {"predict": predict_program, "probabilities": probabilities_program,
            "evaluate": evaluate_program}[op]


def _run_rows(op: str, arch: Arch, params, x, y=None) -> tuple[np.ndarray, int]:
    rows = _check_rows(arch, x, y)
    plan = _rows_plan(op, arch, rows)
    ap, lay = plan.ap, plan.lay
    buf = np.zeros(lay.size, np.int32)
    if y is not None:
        buf[lay.slots[-3][0]] = rows
    if plan.idx is not None:
        buf[plan.idx] = np.concatenate(_arrays(ap, [params]) + ([x] if y is None else [x, y]), axis=None)
    else:
        _pack(ap, buf, [params])
        x0, x1, x_shape = lay.slots[-1]
        buf[x0:x1].reshape(x_shape)[:rows, :arch.features] = x
        if y is not None:
            y0, y1, y_shape = lay.slots[-2]
            ys = buf[y0:y1].reshape(y_shape)
            if arch.classifier:
                ys[:rows] = y
            else:
                ys[:rows, :arch.outputs] = y
    fn = _program(plan.key, lambda: _build_rows(op, ap, lay))
    return np.asarray(fn(buf)), rows


def predict(arch: Arch, params: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Labels (rows,) int32 (argmax, first on ties) for classifiers, outputs (rows, outputs) Q.16
    int32 for linear (read-only)."""
    out, rows = _run_rows("predict", arch, params, x)
    # read-only views of the program's result (a new buffer of each call, shared with nothing)
    return out[:rows] if arch.classifier else out[:rows, :arch.outputs]


def probabilities(arch: Arch, params: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class probabilities (rows, classes) in PROBS (Q.16 int32, read-only); classifiers only."""
    if not arch.classifier:
        raise ValueError("probabilities need a classifier (softmax or mlp)")
    out, rows = _run_rows("probabilities", arch, params, x)
    return out[:rows, :arch.outputs]


def evaluate(arch: Arch, params: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(mean loss over the rows, Q.16 int; correct predictions, int (0 for linear))."""
    out, _ = _run_rows("evaluate", arch, params, x, y)
    return int(out[0]), int(out[1])


def _build_average(ap: _ArchPlan, M: int) -> Callable:
    def average_program(stack, weights):
        return jnp.concatenate([a.ravel() for a in models.average(unpack(stack, ap.lay, (M,)), weights)])

    return average_program


def average(arch: Arch, params: Sequence[Sequence[np.ndarray]], weights: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Federated averaging: per parameter, sum_i w_i * p_i / sum_i w_i rounded half up (int32).
    weights: ints >= 0, 0 < sum <= mlcore.models.MAX_WEIGHT_SUM, one per model."""
    count = len(params)
    if count != len(weights):
        raise ValueError(f"{count} models but {len(weights)} weights")
    k = key("average", arch, models=count)
    models.check_weights(weights)
    ap, M = _arch_plan(arch), k[-1]
    stack = np.zeros((M, ap.lay.size), np.int32)
    w = np.zeros(M, np.int64)
    w[:count] = weights
    for i, ps in enumerate(params):
        _pack(ap, stack[i], [ps])
    fn = _program(k, lambda: _build_average(ap, M))
    return _unpack(ap, np.asarray(fn(stack, w)), 1)[0]
