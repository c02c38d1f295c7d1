"""Where the time of a fused mlcore training step goes, kernel by kernel (issue 13's small-batch
figure): `mlcore.models.train` on random batches, profiled with JAX's own profiler, the
XLA CPU thunks summed per name and divided by the steps run.

    python bench/profile_ml_step.py [mlp:40,64,5] [--batch 32] [--steps 256] [--top 25] [--float32]

--float32 profiles the float32 twin (mlcore.float32.train) of the same shapes instead, for the
kernel count to compare with.

The profiler adds its own cost to every thunk (about 0.3-0.5 us here), so the absolute figures
are inflated and only their order and the kernel count mean much; bench_ml_kernels.py gives
the real step time.  A kernel with `outer_dimension_partitions` in the compiled HLO (printed
below) is split over XLA's thread pool: on a 2-core machine one of those cost more than ten
unsplit ones.
"""
from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile

import jax
import numpy as np
from jax.profiler import ProfileData

from mlcore import float32 as F
from mlcore import models as M
from mlcore.fixed import WEIGHTS, quantize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="mlp:40,64,5")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--float32", action="store_true", help="profile the float32 twin instead")
    a = ap.parse_args()
    kind, widths = a.model.split(":")
    layers = tuple(int(v) for v in widths.split(","))
    arch = M.Arch(kind, layers).check()
    rng = np.random.default_rng(0)
    xf = rng.random((a.steps, a.batch, layers[0]), dtype=np.float32)
    xs = quantize(xf, WEIGHTS)
    ys = rng.integers(0, layers[-1], (a.steps, a.batch)).astype(np.int32)
    params = M.init(arch, 1)
    vel = tuple(np.zeros_like(p) for p in params)
    ns, order = np.full(a.steps, a.batch, np.int32), np.arange(a.steps, dtype=np.int32)
    if a.float32:
        args = (kind, F.from_fixed(params), xf, ys, 0.1, 0.9)
        train = jax.jit(F.train, static_argnums=0)
    else:
        args = (arch, params, vel, xs, ys, ns, order, np.int32(6554), np.int32(58982))
        train = jax.jit(M.train, static_argnums=0)
    hlo = train.lower(*args).compile().as_text()
    jax.block_until_ready(train(*args))
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        for _ in range(a.runs):
            jax.block_until_ready(train(*args))
        jax.profiler.stop_trace()
        profile = ProfileData.from_file(glob.glob(f"{d}/**/*.xplane.pb", recursive=True)[0])
        total: collections.Counter[str] = collections.Counter()
        count: collections.Counter[str] = collections.Counter()
        for plane in profile.planes:
            for line in plane.lines:
                for ev in line.events:  # thunks run on the caller's thread or on XLA's pools
                    if not any(c in ev.name for c in " :(") and plane.name == "/host:CPU":  # thunks only
                        total[ev.name] += ev.duration_ns
                        count[ev.name] += 1
    per_step = a.runs * a.steps
    inclusive = {k for k in total if k.startswith(("while", "cond"))}  # their time holds their kernels'
    launches = sum(n for k, n in count.items() if k not in inclusive) / per_step
    print(f"{'float32' if a.float32 else 'fixed point'} {kind} {'-'.join(map(str, layers))} batch {a.batch}: {launches:.1f} kernel launches and "
          f"{sum(count[k] for k in inclusive) / per_step:.1f} conditionals/loops per step; "
          f"us per step (profiled), the costliest kernels:")
    for name, ns_ in [kv for kv in total.most_common() if kv[0] not in inclusive][:a.top]:
        print(f"  {ns_ / 1e3 / per_step:8.2f}  {name}")
    split = re.findall(r"%([\w.\-]+) = \S+ fusion\(.*outer_dimension_partitions\":\[\"(\d+)\"", hlo)
    print("split over the thread pool:", ", ".join(f"{n} ({p} parts)" for n, p in split) or "none")


if __name__ == "__main__":
    main()
