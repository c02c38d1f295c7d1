"""What gas metering costs in CPython: candidate lowerings of the issue-3 compute loop
(`s += i * i` for i in range(100_000)), each as a ratio to the plain loop measured in
the same run.  An exploration for the VM's compiler, not a figure of shipped code:
it shows which instrumentation can meet the goal of at most 3x plain CPython.

    python bench/bench_metering.py
"""
from __future__ import annotations

import time

N = 100_000
CELL = [10**15]
LIM = 1 << 4096  # a cap on int size that a priced operation would enforce


def out_of_gas() -> None:
    raise RuntimeError("out of gas")


def _mul(a: int, b: int) -> int:
    """A priced multiplication: check operand types and sizes, then multiply."""
    if type(a) is int and type(b) is int and -LIM < a < LIM and -LIM < b < LIM:
        return a * b
    raise RuntimeError("priced path")


def _add(a: int, b: int) -> int:
    if type(a) is int and type(b) is int and -LIM < a < LIM and -LIM < b < LIM:
        return a + b
    raise RuntimeError("priced path")


def plain() -> int:
    s = 0
    for i in range(N):
        s += i * i
    return s


def counter_in_a_cell() -> int:
    """Gas in a shared list cell, charged at each back-edge."""
    g = CELL
    s = 0
    for i in range(N):
        g[0] -= 6
        if g[0] < 0:
            out_of_gas()
        s += i * i
    return s


def counter_in_a_local() -> int:
    """Gas in a local int (synced with the meter only at calls and returns)."""
    g = 10**15
    s = 0
    for i in range(N):
        g -= 6
        if g < 0:
            out_of_gas()
        s += i * i
    return s


def local_counter_and_result_size_check() -> int:
    """Plus a check of the stored int's size after each assignment."""
    g = 10**15
    s = 0
    for i in range(N):
        g -= 6
        if g < 0:
            out_of_gas()
        s += i * i
        if s.bit_length() > 4096:
            out_of_gas()
    return s


def local_counter_and_inline_guards() -> int:
    """Plus each * and + guarded inline (type and size), falling back to a priced call."""
    g = 10**15
    s = 0
    for i in range(N):
        g -= 6
        if g < 0:
            out_of_gas()
        t = i * i if type(i) is int and -LIM < i < LIM else _mul(i, i)
        s = s + t if type(s) is int and type(t) is int and -LIM < s < LIM and -LIM < t < LIM else _add(s, t)
    return s


def cell_counter_and_priced_calls() -> int:
    """Plus each * and + through a priced function call."""
    g = CELL
    s = 0
    for i in range(N):
        g[0] -= 6
        if g[0] < 0:
            out_of_gas()
        s = _add(s, _mul(i, i))
    return s


def best_of(fn, runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    base = best_of(plain)
    print(f"baseline: plain loop {base * 1e3:.2f} ms (best of 9)")
    for fn in (counter_in_a_cell, counter_in_a_local, local_counter_and_result_size_check,
               local_counter_and_inline_guards, cell_counter_and_priced_calls):
        assert fn() == plain()
        print(f"RESULT {fn.__name__}: {best_of(fn) / base:.2f}x plain")


if __name__ == "__main__":
    main()
