"""Deterministic fixed-point ML kernels on JAX (docs/mlcore.md).

Consensus is exact two's-complement integer arithmetic; JAX is only a fast, provably exact way to
compute it.  Importing mlcore sets two process-wide JAX options:
- 64-bit mode: int64 is part of the specification, and without it JAX silently narrows int64 to
  int32;
- synchronous CPU dispatch: with JAX's default asynchronous dispatch every call hands its program
  to a worker thread and the result waits for it; for a small program that round trip was most of
  the call (a softmax 8 -> 4 predict: ~55 us of ~70 us, more when the caller worked in between
  and the worker went idle).  Every ML call blocks on its result anyway.  The CPU client reads
  this option once, when it is created, so it must be set before jax first runs anything.
  Bits, programs and gas do not depend on it.
"""
from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_enable_async_dispatch", False)
