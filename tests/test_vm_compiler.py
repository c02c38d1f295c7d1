"""The compiler's own rules: constants computed at compile time, int-typed locals, where
raw CPython arithmetic is allowed and where it is guarded."""
from __future__ import annotations

import ast

import pytest

from vm.compiler import SMALL, _Lowering, compile_contract, int_locals
from vm.limits import MAX_INT_BITS
from gradchain import TestChain
from vm.validate import ContractInvalid, validate


def lowered(src: str) -> str:
    return ast.unparse(_Lowering(validate(src)).module())


def test_constant_arithmetic_is_computed_at_compile_time():
    chain = TestChain()
    c = chain.deploy("WEEK = 7 * 24 * 3600 * 1000\nMASK = (1 << 64) - 1\nPAIR = (2 ** 100, -3, ~0)\n"
                     "@export\ndef f(x: int = 2 ** 10) -> list:\n    return [WEEK, MASK, PAIR, x]\n")
    assert c.f() == [604_800_000, 2**64 - 1, (2**100, -3, -1), 1024]
    src = lowered("WEEK = 7 * 24\n@export\ndef f(x=2 ** 3):\n    return WEEK\n")
    assert "WEEK = 168" in src and "x=8" in src  # nothing left to run when the contract is instantiated


@pytest.mark.parametrize("src, message", [
    ("X = 2 ** 5000", f"over {MAX_INT_BITS} bits"),
    ("X = 10 ** 10 ** 8", f"over {MAX_INT_BITS} bits"),  # refused before computing
    ("X = 1 << 10 ** 10", f"over {MAX_INT_BITS} bits"),
    ("X = (2 ** 4000) * (2 ** 4000)", f"over {MAX_INT_BITS} bits"),
    ("X = 1 // 0", "division by zero"),
    ("X = 5 % 0", "division by zero"),
    ("X = 2 ** -1", "negative"),
    ("X = 1 >> -1", "negative"),
])
def test_constants_out_of_the_int_limit_are_refused_at_deploy(src, message):
    with pytest.raises(ContractInvalid) as e:
        compile_contract(src + "\n@export\ndef f():\n    return X\n")
    assert message in str(e.value) and "line 1" in str(e.value)


def test_default_values_are_computed_at_compile_time_too():
    with pytest.raises(ContractInvalid, match="over 4096 bits"):
        compile_contract("@export\ndef f(x=10 ** 10 ** 8):\n    return x\n")


def test_constants_may_not_be_anything_but_literals_and_int_arithmetic():
    for bad in ("X = [1]", "X = 1 / 2", "X = 'a' * 3", "X = len('a')", "X = 2 ** 3.0"):
        with pytest.raises(ContractInvalid):
            compile_contract(bad + "\n@export\ndef f():\n    return 1\n")


def int_names(src: str) -> set[str]:
    fn = next(n for n in validate(src).tree.body if isinstance(n, ast.FunctionDef))
    return int_locals(fn)


def test_int_locals_are_the_greatest_fixpoint_of_int_assignments():
    src = ("@export\ndef f(n: int, m, t: str):\n    s = 0\n    u = m\n    w = 0\n    w = w + u\n"
           "    for i in range(n):\n        s += i * i\n    for x in [1]:\n        pass\n    k = len(t) + int(t)\n"
           "    a, b = 1, 2\n    y = [j for j in range(3)]\n    j = 1\n    return s\n")
    # n: annotated int; s, i, k: only ever ints; m/u/w: from an unannotated parameter;
    # x: a list's element; a, b: unpacked; j: also a comprehension variable
    assert int_names(src) == {"n", "s", "i", "k"}


def test_quadratic_int_operations_run_raw_only_below_small():
    src = lowered("@export\ndef f(n: int):\n    s = 1\n    for i in range(n):\n        s = s * i + i * i\n"
                  "        s = s % 7 + s // 3 + (s + 1) * 2\n    return s\n")
    assert f"-{SMALL} < s < {SMALL}" in src and f"-{SMALL} < i < {SMALL}" in src
    assert "_mul(s + 1, 2)" in src  # an operand that is not a name or a constant goes to the wrapper
    assert src.count(f"< i < {SMALL}") == 2  # i * i is checked once


def test_big_ints_in_int_typed_locals_are_priced_not_raw():
    chain = TestChain()
    c = chain.deploy("@export\ndef square(x: int, times: int) -> int:\n    for k in range(times):\n"
                     "        y = x * x\n    return y.bit_length()\n")
    assert c.square(3, 10) == 4
    small = chain.last_receipt.gas_used
    assert c.square(2**2000 + 1, 10) == 4001
    big = chain.last_receipt.gas_used
    assert big - small > 10 * 30 * 30  # the 2000-bit squares paid by machine words (32 x 32 per product)


def test_int_typed_values_are_size_checked_when_they_leave_their_expression():
    chain = TestChain()
    c = chain.deploy("@export\ndef grow(n: int) -> int:\n    s = 3\n    for k in range(n):\n        s = s + s\n"
                     "    return s.bit_length()\n\n@export\ndef keep(x: int) -> list:\n    return [x + x]\n")
    assert c.grow(100) == 102
    with pytest.raises(Exception) as e:
        c.grow(5000)
    assert e.value.code == "limit_exceeded" and e.value.line == 5
    with pytest.raises(Exception) as e:
        c.keep(2**4095 + 2**4094)
    assert e.value.code == "limit_exceeded"
