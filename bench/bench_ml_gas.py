"""Does ML gas track time?  Nanoseconds per gas unit for each ML operation over a spread of
shapes, the compile time of typical programs, and the host overhead of a call.

Each row runs one mlcore.programs call on one shape (hot: the program is compiled first) and
divides the median wall time by mlcore.programs.cost(...).  The target is the VM's rate, about
1 ns per gas (docs/benchmarks.md: 0.38-1.6 ns/gas across kinds of contract work), so that the
block gas limit bounds a block's time whatever it holds.  Baselines from the same run: a plain
jitted call of the smallest program with its input already packed (dispatch), and the compile
rows say how many ns one gas of gas.ML_COMPILE buys.

    python bench/bench_ml_gas.py [--runs 15] [--fit]

--fit also prints the milligas rates (mlcore/gas.py) that a non-negative least-squares fit of
the relative error would choose from this run's timings.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mlcore import gas, models  # noqa: E402
from mlcore import programs as P  # noqa: E402
from mlcore.models import Arch  # noqa: E402

# (op, arch, rows, batch, epochs, models)
CASES = [
    ("init", Arch("softmax", (4, 3)), 0, 0, 1, 0),
    ("init", Arch("mlp", (784, 128, 10)), 0, 0, 1, 0),
    ("init", Arch("mlp", (1024, 1024, 1024, 10)), 0, 0, 1, 0),
    ("predict", Arch("softmax", (4, 3)), 10, 0, 1, 0),
    ("predict", Arch("softmax", (64, 10)), 1000, 0, 1, 0),
    ("predict", Arch("softmax", (64, 10)), 20000, 0, 1, 0),
    ("predict", Arch("linear", (16, 1)), 20000, 0, 1, 0),
    ("predict", Arch("mlp", (64, 64, 10)), 10, 0, 1, 0),
    ("predict", Arch("mlp", (64, 64, 10)), 5000, 0, 1, 0),
    ("predict", Arch("mlp", (784, 128, 10)), 1000, 0, 1, 0),       # K = 784: int8 digits
    ("predict", Arch("mlp", (256, 256, 256, 10)), 2000, 0, 1, 0),  # digits in every layer
    ("predict", Arch("mlp", (2000, 100, 10)), 100, 0, 1, 0),
    ("probabilities", Arch("mlp", (64, 64, 10)), 5000, 0, 1, 0),
    ("probabilities", Arch("softmax", (32, 100)), 5000, 0, 1, 0),
    ("evaluate", Arch("softmax", (64, 10)), 20000, 0, 1, 0),
    ("evaluate", Arch("mlp", (784, 128, 10)), 1000, 0, 1, 0),
    ("evaluate", Arch("linear", (16, 4)), 20000, 0, 1, 0),
    ("train", Arch("softmax", (4, 3)), 10, 5, 2, 0),
    ("train", Arch("mlp", (10, 16, 16, 4)), 10, 5, 2, 0),
    ("train", Arch("softmax", (64, 10)), 1024, 32, 1, 0),
    ("train", Arch("softmax", (64, 10)), 4096, 1024, 2, 0),
    ("train", Arch("linear", (16, 4)), 2000, 100, 3, 0),
    ("train", Arch("mlp", (64, 32, 10)), 1024, 32, 1, 0),
    ("train", Arch("mlp", (64, 64, 10)), 4096, 512, 1, 0),         # batch 512: x^T g in digits
    ("train", Arch("mlp", (784, 128, 10)), 1024, 64, 1, 0),
    ("train", Arch("softmax", (16, 4)), 4000, 1, 1, 0),             # 4000 steps of one row
    ("train", Arch("mlp", (32, 64, 10)), 20000, 2000, 3, 0),
    ("train", Arch("softmax", (300, 20)), 2000, 200, 1, 0),         # K = 300: digits forward
    ("train", Arch("linear", (1000, 1)), 1000, 1000, 2, 0),
    ("train", Arch("mlp", (256, 256, 256, 10)), 512, 128, 1, 0),
    ("train", Arch("mlp", (20, 32, 32, 32, 5)), 2048, 64, 2, 0),       # 3 hidden layers
    ("train", Arch("linear", (64, 64)), 4096, 256, 1, 0),
    ("train", Arch("mlp", (200, 300, 10)), 640, 640, 1, 0),           # digits forward and backward
    ("predict", Arch("linear", (128, 128)), 10000, 0, 1, 0),
    ("evaluate", Arch("mlp", (20, 32, 32, 32, 5)), 30000, 0, 1, 0),
    ("average", Arch("mlp", (64, 64, 10)), 0, 0, 1, 40),
    ("average", Arch("softmax", (64, 10)), 0, 0, 1, 2),
    ("average", Arch("softmax", (64, 10)), 0, 0, 1, 200),
    ("average", Arch("mlp", (784, 128, 10)), 0, 0, 1, 8),
    ("average", Arch("mlp", (784, 128, 10)), 0, 0, 1, 128),          # 52 MB: memory-bound
]


def inputs(op: str, arch: Arch, rows: int, count: int, rng: np.random.Generator):
    if op == "init":
        return (arch, 5), {}
    params = P.init(arch, 1)
    if op == "average":
        return (arch, [params] * count, [1] * count), {}
    x = rng.integers(-2 << 16, 2 << 16, (rows, arch.features)).astype(np.int32)
    if arch.classifier:
        y = rng.integers(0, arch.outputs, rows).astype(np.int32)
    else:
        y = rng.integers(-1 << 16, 1 << 16, (rows, arch.outputs)).astype(np.int32)
    if op == "train":
        return (arch, params, params, x, y, 1 << 12, 58982), {}
    if op == "evaluate":
        return (arch, params, x, y), {}
    return (arch, params, x), {}


def timed(fn, args, kwargs, runs: int) -> float:
    """Seconds of one call: the fastest of `runs` samples, each repeating calls for >= 5 ms (the
    machine is shared: the fastest sample is the one least slowed by other processes)."""
    t = time.perf_counter()
    fn(*args, **kwargs)
    once = max(time.perf_counter() - t, 1e-6)
    reps = max(1, int(0.005 / once))
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(reps):
            fn(*args, **kwargs)
        samples.append((time.perf_counter() - t) / reps)
    return min(samples)


def host_overhead(op: str, arch: Arch, rng: np.random.Generator, n: int = 300, rounds: int = 15):
    """Medians (us) over alternating rounds of: programs.<op>; the time of it spent inside its
    jitted program (the call plus waiting for the result); and the raw alternative, a jit of
    mlcore.models.<op> called with the same padded inputs as separate numpy arguments."""
    params = P.init(arch, 1)
    x = rng.integers(-2 << 16, 2 << 16, (10, arch.features)).astype(np.int32)
    y = rng.integers(0, arch.outputs, 10).astype(np.int32)
    plan = P._train_plan(arch, 10, 5, 2) if op == "train" else P._rows_plan(op, arch, 10)
    pa = plan.ap.pa
    padded = []
    for p, shape in zip(params, pa.shapes):
        z = np.zeros(shape, np.int32)
        z[tuple(slice(0, d) for d in p.shape)] = p
        padded.append(z)
    padded = tuple(padded)
    if op == "train":
        def call():
            return P.train(arch, params, params, x, y, 1 << 12, 58982, batch=5, epochs=2)
        s = plan.s
        xs, ys = np.zeros((s.S, s.B, pa.features), np.int32), np.zeros((s.S, s.B), np.int32)
        xs[:2, :5, :arch.features], ys[:2, :5] = x.reshape(2, 5, -1), y.reshape(2, 5)
        meta = plan.meta
        jitted = jax.jit(partial(models.train, pa, classes=arch.outputs))
        args = (padded, padded, xs, ys, meta[2:2 + s.S].copy(), meta[2 + s.S:].copy(), np.int64(1 << 12),
                np.int64(58982))
    else:
        def call():
            return P.predict(arch, params, x)
        xr = np.zeros((plan.key[-1], pa.features), np.int32)
        xr[:10, :arch.features] = x
        jitted = jax.jit(partial(models.predict, pa, classes=arch.outputs))
        args = (padded, xr)

    def raw():
        return [np.asarray(o) for o in jax.tree_util.tree_leaves(jitted(*args))]
    call()
    raw()
    fn, inside = P._PROGRAMS[plan.key], [0.0]

    def timed_program(buf):
        t = time.perf_counter()
        out = np.asarray(fn(buf))
        inside[0] += time.perf_counter() - t
        return out
    full, bare, ins = [], [], []
    try:
        P._PROGRAMS[plan.key] = timed_program
        for _ in range(rounds):
            inside[0] = 0.0
            t = time.perf_counter()
            for _ in range(n):
                call()
            full.append((time.perf_counter() - t) / n * 1e6)
            ins.append(inside[0] / n * 1e6)
            t = time.perf_counter()
            for _ in range(n):
                raw()
            bare.append((time.perf_counter() - t) / n * 1e6)
    finally:
        P._PROGRAMS[plan.key] = fn
    return statistics.median(full), statistics.median(ins), statistics.median(bare)


def describe(op, arch, rows, batch, epochs, count) -> str:
    dims = "x".join(map(str, arch.layers))
    if op == "train":
        return f"train {arch.kind} {dims}, {rows} rows, batch {batch}, {epochs} ep"
    if op == "init":
        return f"init {arch.kind} {dims}"
    if op == "average":
        return f"average {arch.kind} {dims}, {count} models"
    return f"{op} {arch.kind} {dims}, {rows} rows"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--fit", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"python {sys.version.split()[0]}, jax {jax.__version__}, {jax.devices()[0].platform}")

    # small calls: programs.<op> against a raw jit of mlcore.models.<op> on padded numpy arguments
    print("call overhead (medians of alternating rounds):")
    for op, arch in (("predict", Arch("softmax", (4, 3))), ("train", Arch("softmax", (4, 3))),
                     ("predict", Arch("mlp", (10, 16, 16, 4))), ("train", Arch("mlp", (10, 16, 16, 4)))):
        full, inside, raw = host_overhead(op, arch, rng)
        print(f"  {op} {arch.kind} {'x'.join(map(str, arch.layers))}, 10 rows"
              f"{' (params and velocity)' if op == 'train' else ''}: programs.{op} {full:.1f} us "
              f"(host path {full - inside:.1f} us); raw jit of models.{op} {raw:.1f} us: {full - raw:+.1f} us")

    rows_out, compiles = [], []
    for op, arch, rows, batch, epochs, count in CASES:
        args, kwargs = inputs(op, arch, rows, count, rng)
        fn = getattr(P, op)
        if op == "train":
            kwargs = dict(batch=batch, epochs=epochs)
        before = P.stats()
        t = time.perf_counter()
        fn(*args, **kwargs)
        first = time.perf_counter() - t
        after = P.stats()
        seconds = timed(fn, args, kwargs, a.runs)
        k = P.key(op, arch, rows=rows, batch=batch, epochs=epochs, models=count)
        cost = P.cost(op, arch, rows=rows, batch=batch, epochs=epochs, models=count)
        name = describe(op, arch, rows, batch, epochs, count)
        if after["programs_built"] > before["programs_built"]:
            compiles.append((name, first - seconds, after["compile_seconds"] - before["compile_seconds"]))
        rows_out.append((seconds * 1e9 / cost, name, cost, seconds, P.work(k)))
        print(f"  {name:52s} {seconds * 1e3:9.3f} ms {cost:>14,} gas {seconds * 1e9 / cost:6.2f} ns/gas")
    fast, slow = min(rows_out), max(rows_out)
    print(f"RESULT ns per gas: {fast[0]:.2f} ({fast[1]}) to {slow[0]:.2f} ({slow[1]}): "
          f"slowest / fastest {slow[0] / fast[0]:.1f}x")

    print("compile (first call minus a hot call; of which XLA backend compile):")
    for name, first, backend in compiles:
        print(f"  {name:52s} {first:7.3f} s  ({backend:.3f} s XLA)  = "
              f"{first * 1e9 / gas.ML_COMPILE:.2f} ns per ML_COMPILE gas")
    worst = max(c[1] for c in compiles)
    print(f"RESULT compile: median {statistics.median(c[1] for c in compiles):.3f} s, max {worst:.3f} s; "
          f"ML_COMPILE = {gas.ML_COMPILE:,} gas")

    if a.fit:
        from scipy.optimize import nnls
        names = list(gas.RATES)
        A = np.array([[r[4][n] / 1000 for n in names] + [1.0] for r in rows_out]) / \
            np.array([r[3] * 1e9 for r in rows_out])[:, None]
        rates, _ = nnls(A, np.ones(len(rows_out)))
        print("fit (milligas per unit; last: ML_CALL gas):",
              {n: round(v) for n, v in zip(names + ["ML_CALL"], rates)})
        fitted = 1 / (A @ rates)
        print(f"with the fitted rates: {fitted.min():.2f} to {fitted.max():.2f} ns/gas")


if __name__ == "__main__":
    main()
