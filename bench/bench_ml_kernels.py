"""Fused training step of mlcore.models against the float32 JAX twin (mlcore.float32), same shapes.

    python bench/bench_ml_kernels.py [--steps 32] [--batch 1024] [--reps 21] [softmax:64,10 mlp:64,32,10 ...]
    python bench/bench_ml_kernels.py --small     (issue 13: MLP 40-64-5 and softmax 64x10, batch 32, 256 steps)

Both run `lax.scan` over `steps` stacked batches with momentum, jitted once, and are timed
alternately in one process.  The machine may be shared, so only ratios mean anything: of the
medians, and of the minima (the least disturbed runs).  The issue's target: softmax regression
1024 x 64 x 10 at most 1.5x float32.  XLA's thread pool makes the ratio swing with the load of
other jobs; XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" with
`taskset -c 1` gives the steadiest figure.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from mlcore import float32 as F
from mlcore import models as M
from mlcore.fixed import WEIGHTS, quantize


def bench(kind: str, layers: tuple[int, ...], steps: int, batch: int, reps: int) -> dict[str, np.ndarray]:
    """Per-step ms of each run ("fixed", "float32"), `reps` of each, timed alternately."""
    arch = M.Arch(kind, layers).check()
    rng = np.random.default_rng(0)
    xf = rng.random((steps, batch, layers[0]), dtype=np.float32)
    ys = rng.integers(0, layers[-1], (steps, batch)).astype(np.int32)
    xs = quantize(xf, WEIGHTS)
    params = M.init(arch, 1)
    vel = tuple(np.zeros_like(p) for p in params)
    ns, order = np.full(steps, batch, np.int32), np.arange(steps, dtype=np.int32)
    lr, mu = np.int32(6554), np.int32(58982)  # 0.1, 0.9
    fixed = jax.jit(M.train, static_argnums=0)
    fp = F.from_fixed(params)
    runs = {"fixed": lambda: fixed(arch, params, vel, xs, ys, ns, order, lr, mu),
            "float32": lambda: F.train(kind, fp, xf, ys, 0.1, 0.9)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        jax.block_until_ready(f())
    for _ in range(reps):
        for k, f in runs.items():
            t = time.perf_counter()
            jax.block_until_ready(f())
            times[k].append(time.perf_counter() - t)
    return {k: np.asarray(v) / steps * 1e3 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["softmax:64,10", "mlp:64,32,10"])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--small", action="store_true", help="the small-batch table: batch 32, 256 steps")
    a = ap.parse_args()
    if a.small:
        a.models, a.batch, a.steps = ["mlp:40,64,5", "softmax:64,10"], 32, 256
    for spec in a.models:
        kind, widths = spec.split(":")
        layers = tuple(int(v) for v in widths.split(","))
        t = bench(kind, layers, a.steps, a.batch, a.reps)
        fx, f32 = t["fixed"], t["float32"]
        print(f"{kind} {'-'.join(map(str, layers))} batch {a.batch}: fixed {np.median(fx):.3f} ms/step, "
              f"float32 {np.median(f32):.3f} ms/step, ratio of medians {np.median(fx) / np.median(f32):.2f}, "
              f"of minima {fx.min() / f32.min():.2f}")


if __name__ == "__main__":
    main()
