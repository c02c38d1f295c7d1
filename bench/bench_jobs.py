"""Worker throughput of a training job (mlcore.jobs.train_job) against the same training without
the job machinery, in the same run.

    python bench/bench_jobs.py [--steps 2000] [--reps 9] [--k 10 100]

job:      train_job over N steps with a checkpoint every k steps: per segment the rows gathered by
          fancy indexing, one programs.train call, the checkpoint hashed, and a callback that
          appends its bytes to one file in a temporary directory (no fsync), as the SDK's worker does.
segments: the same segments without the job machinery (nothing hashed or written), to tell the
          cost of hashing and writing from that of training in calls of k steps.
baseline: the same number of steps of the same shapes in ONE programs.train call (the data set's
          rows in order, N / batches epochs): the fewest calls programs allows.
Timed alternately after a warm-up (every program compiled); medians of `reps` repeats, in steps/s,
and the ratio of the job's throughput to the baseline's (the goal: >= 0.8): of the medians, the
median of each repeat's ratio (a job run and the baseline run of the same repeat: paired, so slow
drifts of the load cancel), of the fastest runs (the least disturbed), and of the CPU time this
process used (all its threads: what a shared machine's load disturbs least).  The machine may be shared: only the ratios of
one run mean much.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mlcore import jobs, programs
from mlcore.models import Arch

CASES = (("mlp", (40, 64, 5), 32, 200), ("mlp", (64, 128, 10), 256, 40))  # kind, layers, batch, batches
LR, MU = 1 << 12, 58982  # 1/16, 0.9


def data(arch: Arch, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(-2 << 16, 2 << 16, (rows, arch.features)).astype(np.int32)
    return x, rng.integers(0, arch.outputs, rows).astype(np.int32)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of fn()."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def run_job(spec: jobs.JobSpec, x: np.ndarray, y: np.ndarray, folder: Path) -> tuple[float, float]:
    def job() -> None:
        with open(folder / "checkpoints.bin", "wb") as out:  # as gradchain.jobs.Party keeps them
            jobs.train_job(spec, x, y, lambda i, data, losses: out.write(data))

    return timed(job)


def run_segments(spec: jobs.JobSpec, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """train_job's loop without the job machinery: the same segments, nothing hashed or written."""
    def loop() -> None:
        p, v = jobs.initial_checkpoint(spec.arch, spec.seed)
        for i in range(spec.segments):
            idx = jobs.segment_rows(spec, x.shape[0], i)
            p, v, _ = jobs.run_segment(spec.arch, p, v, x[idx], y[idx], spec.lr, spec.momentum, spec.batch)

    return timed(loop)


def run_baseline(spec: jobs.JobSpec, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p0, v0 = jobs.initial_checkpoint(spec.arch, spec.seed)
    epochs = spec.steps // spec.batches(x.shape[0])
    return timed(lambda: programs.train(spec.arch, p0, v0, x, y, spec.lr, spec.momentum,
                                        batch=spec.batch, epochs=epochs))


def bench(kind: str, layers: tuple[int, ...], batch: int, batches: int, steps: int, ks: list[int],
          reps: int) -> None:
    arch = Arch(kind, layers).check()
    if steps % batches:
        raise SystemExit(f"steps ({steps}) must be a multiple of the {batches} batches for the baseline")
    x, y = data(arch, batch * batches)
    specs = {k: jobs.JobSpec(arch, 1, LR, MU, batch, steps, k, 7).check(x.shape[0]) for k in ks}
    runs = {"baseline": lambda: run_baseline(specs[ks[0]], x, y)}
    times: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, s in specs.items():
            runs[f"k={k}"] = lambda s=s: run_job(s, x, y, folder)
            runs[f"segments k={k}"] = lambda s=s: run_segments(s, x, y)
        for f in runs.values():  # warm-up: compile every program
            f()
        for _ in range(reps):
            for name, f in runs.items():
                times.setdefault(name, []).append(f())
    base = [w for w, _ in times["baseline"]]
    base_cpu = statistics.median(c for _, c in times["baseline"])
    print(f"{kind} {'-'.join(map(str, layers))}, batch {batch}, {batches} batches, {steps} steps "
          f"(medians of {reps}; CPU = this process's CPU time, all threads):")
    print(f"  baseline, one programs.train call : {steps / statistics.median(base):6.0f} steps/s "
          f"({statistics.median(base) * 1e3:6.1f} ms wall, {base_cpu * 1e3:6.1f} ms CPU)")
    for k in ks:
        wall = [w for w, _ in times[f"k={k}"]]
        cpu = statistics.median(c for _, c in times[f"k={k}"])
        t = statistics.median(wall)
        paired = statistics.median(b / j for b, j in zip(base, wall))
        print(f"  train_job k={k:<4d} ({steps // k:4d} segments) : {steps / t:6.0f} steps/s "
              f"({t * 1e3:6.1f} ms wall, {cpu * 1e3:6.1f} ms CPU): {statistics.median(base) / t:.2f}x the "
              f"baseline's throughput (paired {paired:.2f}x, best runs {min(base) / min(wall):.2f}x, "
              f"CPU {base_cpu / cpu:.2f}x), {(cpu - base_cpu) / (steps // k) * 1e6:5.0f} us CPU per segment over it")
        seg = statistics.median(w for w, _ in times[f"segments k={k}"])
        print(f"    the same segments, nothing hashed or written: {steps / seg:6.0f} steps/s ({seg / t:.2f}x "
              f"the job's time: hashing and writing cost {1 - seg / t:.0%}; the segment calls themselves "
              f"{statistics.median(base) / seg:.2f}x the baseline's throughput)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--k", type=int, nargs="+", default=[10, 100])
    args = ap.parse_args()
    for kind, layers, batch, batches in CASES:
        bench(kind, layers, batch, batches, args.steps, args.k, args.reps)


if __name__ == "__main__":
    main()
