"""Deterministic fixed-point ML kernels on JAX (issue 4, part 1: the numeric foundation).

Consensus is exact two's-complement integer arithmetic (docs/mlcore.md); JAX is only a fast,
provably exact way to compute it.  int64 is part of the specification, so importing mlcore turns
on JAX's 64-bit mode for the process: without it JAX silently narrows int64 to int32.
"""
from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)
