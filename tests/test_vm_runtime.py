"""The compiled VM computes what Python computes: differential tests.

Each snippet defines `f`; it runs once as a contract function (deployed on a
gradchain.testing.TestChain, called read-only) and once as plain CPython, and the two results
must have the same canonical encoding (so 1 vs True, list vs tuple and dict order all
count).  The VM's documented deviations from Python are tested on their own below, as
are gas (deterministic, proportional to work, charged before the work), the position
of errors in receipts, and the VM's own wording of errors (host exception text never
reaches a receipt: it differs between CPython releases).
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
import tracemalloc
import warnings

import pytest

from ledger.block import encode_receipt, failure_text
from ledger.contracts import read_only_call
from ledger.state import State
from ledger.tx import Call, TxKind, encode_args, intrinsic_gas
from vm import builtins, runtime, sizes
from vm.compiler import compile_contract
from vm.errors import VMError
from gradchain import ContractFailed, OutOfGas, TestChain
from vm.validate import BUILTINS, METHODS
from vm.codec import encode_value
from vm.decimals import Decimal


@pytest.fixture(scope="module")
def chain() -> TestChain:
    return TestChain()


def as_contract(source: str) -> str:
    """The snippet with its `f` exported (helpers stay private), on the blank line above
    `def f(`, so that line numbers stay the snippet's."""
    assert source.startswith("\ndef f(") or "\n\ndef f(" in source
    return source.replace("\ndef f(", "@export\ndef f(", 1)


def in_python(source: str, args: tuple = ()) -> object:
    ns: dict = {"Decimal": Decimal}
    exec(compile(source, "<snippet>", "exec"), ns)
    return _plain(ns["f"](*args))


def _plain(v: object) -> object:
    """Python's lazy views and iterators as the lists the VM returns."""
    if type(v).__name__ in ("dict_keys", "dict_values", "dict_items"):
        return [_plain(x) for x in v]
    if type(v) is list:
        return [_plain(x) for x in v]
    if type(v) is tuple:
        return tuple(_plain(x) for x in v)
    if type(v) is dict:
        return {k: _plain(x) for k, x in v.items()}
    return v


def in_vm(chain: TestChain, source: str, args: tuple = ()) -> object:
    return chain.deploy(as_contract(source)).view.f(*args)


def assert_same(chain: TestChain, source: str, *args: object) -> None:
    expected = in_python(source, args)
    got = in_vm(chain, source, args)
    assert encode_value(got, 1 << 20) == encode_value(expected, 1 << 20), (got, expected)


def vm_error(chain: TestChain, source: str, *args: object) -> ContractFailed:
    with pytest.raises(ContractFailed) as e:
        in_vm(chain, source, args)
    return e.value


# ---- expressions -------------------------------------------------------------------------

EXPRESSIONS = [
    # int and bool arithmetic
    "1 + 2", "7 - 10", "3 * -4", "7 // 2", "-7 // 2", "7 // -2", "-7 % 3", "7 % -3", "2 ** 10", "2 ** 100",
    "(-3) ** 3", "1 << 70", "-5 >> 1", "12 & 10", "12 | 3", "12 ^ 10", "~5", "-(-5)", "+3", "10 ** 30 // 7",
    "(10 ** 30) % 7", "(2 ** 64) * (2 ** 64)", "-(2 ** 64) // 3", "True + True", "True & False", "True | False",
    "True ^ True", "~True", "-True", "+True", "True * 3", "True // 1", "True << 2", "False >> 1",
    # str, bytes, list, tuple operators
    '"ab" + "cd"', '"ab" * 3', '3 * "ab"', '"ab" * -1', '"ab" * 0', 'b"ab" + b"c"', 'b"ab" * 2', "[1] + [2, 3]",
    "[1, 2] * 2", "2 * [0]", "(1,) + (2,)", "(1, 2) * 2", '"b" in "abc"', '"" in "abc"', "1 in [1, 2]",
    "3 not in [1, 2]", "(1, 2) in [(1, 2)]", '97 in b"abc"', 'b"b" in b"abc"', '"a" in {"a": 1}',
    '"b" not in {"a": 1}', "5 in range(10)", "10 in range(10)", "[1] in [[1], 2]",
    # comparisons and chains
    '"abc" < "abd"', '"abc" < "ab"', '"Z" < "a"', 'b"a" < b"b"', "[1, 2] < [1, 3]", "[1, 2] == [1, 2]",
    "(1, 2) < (1, 2, 0)", "(1, 2) >= (1, 2)", '{"a": 1} == {"a": 1}', '{"a": 1} != {"a": 2}', "1 == True",
    '"a" == b"a"', "None == 0", "None is None", "[1, [2, 3]] == [1, [2, 3]]", "{1: 2} == {True: 2}",
    "1 < 2 < 3", "1 < 3 < 2", "3 > 2 > 1 >= 1", "1 == 1 == True", '"a" < "b" < "c"', "1 < 2 > 0",
    "0 <= 0 < 1 != 2", "2 ** 65 > 0 < 2 ** 64",
    # slicing and indexing
    '"abcdef"[1:4]', '"abcdef"[::-1]', '"abcdef"[-2:]', '"abcdef"[::2]', '"abcdef"[10:]', '"abcdef"[-100:2]',
    '"abcdef"[5:1:-2]', 'b"abcdef"[1:3]', 'b"abc"[1]', 'b"abc"[-1]', "[1, 2, 3, 4][1::2]", "(1, 2, 3)[::-1]",
    "[1, 2, 3][-1]", '"abc"[0]', '"abc"[True]', "range(10)[3]", "list(range(10)[2:8:2])", "[1, 2, 3][:]",
    "[1, 2, 3][1:1]", '"héllo"[1:3]',
    # Decimal
    "Decimal(1) + 2", 'Decimal("1.5") * 2', "Decimal(7) / 2", "Decimal(1) / 3", '2 - Decimal("0.5")',
    "Decimal(7) // 2", "Decimal(-7) // 2", "Decimal(7) % 3", "Decimal(-7) % 3", "divmod(Decimal(7), 2)",
    '-Decimal("1.5")', '+Decimal("1.5")', 'abs(Decimal("-1.5"))', 'Decimal("1.5") < 2', "Decimal(2) == 2",
    'Decimal("0.1") + Decimal("0.2") == Decimal("0.3")', 'int(Decimal("2.7"))', 'int(Decimal("-2.7"))',
    'str(Decimal("2.50"))', 'str([Decimal("2.5")])', 'Decimal("1.5") > Decimal("1.25")', "2 / Decimal(8)",
    'Decimal("-0.000000000000000001") < 0', 'bool(Decimal("0.0"))',
    # boolean operators and conditional expressions
    "not 1", "not []", "[] or [1]", "0 and 5", "1 and 5", 'None or "x"', "1 if 2 > 1 else 0", '"y" if [] else "n"',
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_expression(chain, expr):
    assert_same(chain, f"\ndef f():\n    return {expr}\n")


# ---- builtins ----------------------------------------------------------------------------

BUILTIN_CALLS = [
    "abs(-5)", "abs(True)", "abs(-(2 ** 80))",
    "all([1, 2, 0])", "all([])", 'all({"a": 1})', "all(range(1, 4))",
    'any([0, "", None])', 'any("a")', "any(range(3))", "any(())",
    "bool(0)", 'bool("x")', "bool([])", "bool(Decimal(0))", "bool()", "bool(None)",
    "bytes(3)", "bytes([1, 2, 255])", "bytes((65, 66))", 'bytes(b"ab")', "bytes()",
    "dict([(1, 2), (3, 4)])", 'dict({"a": 1}, b=2)', "dict(a=1, b=2)", "dict()", 'dict([["k", "v"]])',
    "divmod(17, 5)", "divmod(-17, 5)", "divmod(17, -5)", "divmod(True, 2)",
    'list(enumerate("abc"))', "list(enumerate([5, 6], 1))", 'list(enumerate({"x": 1, "y": 2}, -3))',
    'int("123")', 'int("-45")', 'int("+7")', "int(True)", "int()", "int(7)", 'int("ff", 16)', 'int("-101", 2)',
    'int("777", 8)', 'int("FF", 16)', 'int("12", 10)', 'int("0" * 50 + "1")', 'int("9" * 700)',
    "isinstance(1, int)", "isinstance(True, int)", "isinstance(True, bool)", 'isinstance("a", (int, str))',
    "isinstance([], list)", "isinstance((), tuple)", "isinstance({}, dict)", 'isinstance(b"", bytes)',
    "isinstance(Decimal(1), Decimal)", "isinstance(None, int)",
    'len("abc")', "len([1, 2])", 'len({"a": 1})', 'len(b"ab")', "len(range(0, 10, 3))", "len((1,))",
    'len("héllo")',
    'list("abc")', "list((1, 2))", 'list({"a": 1, "b": 2})', "list(range(5))", 'list(b"ab")', "list()",
    "max(3, 1, 2)", "max([3, 1, 2])", 'max("bca")', "max([], default=7)", 'max({"a": 1, "z": 0})', "max(range(4))",
    "max((1, 2), (1, 3))",
    "min(3, 1, 2)", 'min(["b", "a"])', "min([(2, 1), (1, 5)])", 'min([Decimal(1), 2, Decimal("0.5")])',
    "min([], default=None)",
    "pow(2, 10)", "pow(3, 4, 5)", "pow(3, -1, 7)", "pow(-2, 3)", "pow(0, 0)", "pow(2, 300, 10 ** 9 + 7)",
    "print()",
    "list(range(3))", "list(range(2, 8))", "list(range(8, 2, -2))", "list(range(-3))", "range(5)[-1]",
    "list(reversed([1, 2, 3]))", 'list(reversed("abc"))', "list(reversed((1, 2)))", "list(reversed(range(4)))",
    'list(reversed({"a": 1, "b": 2}))',
    "sorted([3, 1, 2])", 'sorted("bca")', "sorted([3, 1, 2], reverse=True)", 'sorted({"b": 1, "a": 2})',
    'sorted([(2, "b"), (1, "z"), (2, "a")])', 'sorted(["B", "a", "C"])', "sorted([Decimal(2), 1, Decimal(-1)])",
    'sorted(["é", "e", "z"])',
    "str(12)", "str(-12)", "str(True)", "str(None)", "str(b\"a\\x00'\")", 'str([1, "a", b"b", None, True])',
    "str((1,))", "str(())", 'str({"a": [1, (2,)]})', 'str("x")', "str()", "str(range(3))", "str(range(1, 9, 2))",
    'str(["it\'s"])', "str(['say \"hi\"'])", "str([\"both ' and \\\"\"])", 'str(["tab\\there", "nl\\n", "bs\\\\"])',
    'str(["\\x01\\x7f"])', 'str([Decimal("1.50")])', 'str(Decimal("-0.000000000000000001"))', "str(10 ** 50)",
    "str([[], {}, ()])", "str(-(10 ** 700))", 'str({"k\'": ("v",)})',
    "sum([1, 2, 3])", "sum([1, 2], 10)", 'sum([Decimal("0.5"), 1])', "sum(range(101))", "sum([])",
    "sum([True, True])", "sum((2 ** 70, 2 ** 70))",
    "tuple([1, 2])", 'tuple("ab")', "tuple()", "tuple((1,))", 'tuple({"a": 1})',
    'list(zip([1, 2, 3], "ab"))', "list(zip())", "list(zip([1], [2], [3]))", 'list(zip({"a": 1}, range(9)))',
]


@pytest.mark.parametrize("call", BUILTIN_CALLS)
def test_builtin(chain, call):
    assert_same(chain, f"\ndef f():\n    return {call}\n")


def test_every_builtin_has_a_differential_case():
    called = {m.group(1) for c in BUILTIN_CALLS for m in re.finditer(r"\b([a-z]+)\(", c)}
    assert BUILTINS <= called, sorted(BUILTINS - called)


def test_builtins_are_values_and_keys(chain):
    """A builtin taken as a value (key=len) is the VM's priced wrapper."""
    assert_same(chain, """
def f():
    words = ["ccc", "a", "bb"]
    g = len
    return sorted(words, key=len), max(words, key=g), min(words, key=len), g("abcd")
""")


# ---- methods, by the type that has them ------------------------------------------------------

# (type, receiver, call): the differential snippet returns [receiver after the call, result]
METHOD_CASES = [
    ("list", "[1, 2]", "append(3)"), ("list", "[1, 2]", "append([3])"),
    ("list", "[1, 2]", "extend([3, 4])"), ("list", "[1, 2]", "extend((3,))"),
    ("list", "[1, 2]", "insert(0, 9)"), ("list", "[1, 2]", "insert(-1, 9)"), ("list", "[1, 2]", "insert(100, 9)"),
    ("list", "[1, 2, 3]", "pop()"), ("list", "[1, 2, 3]", "pop(0)"), ("list", "[1, 2, 3]", "pop(-2)"),
    ("list", "[1, 2, 1]", "remove(1)"), ("list", "[[1], 2]", "remove([1])"),
    ("list", "[1, 2, 1]", "index(1)"), ("list", "[1, 2, 1]", "index(1, 1)"), ("list", "[1, 2, 1, 1]", "index(1, 1, 3)"),
    ("list", "[1, 2, 1]", "count(1)"), ("list", "[1, True, 2]", "count(1)"),
    ("list", "[1, 2, 3]", "reverse()"), ("list", "[3, 1, 2]", "sort()"), ("list", "[3, 1, 2]", "sort(reverse=True)"),
    ("list", '["bb", "a", "ccc"]', "sort(key=len)"), ("list", '["b", "B", "a"]', "sort()"),
    ("list", "[1, [2]]", "copy()"), ("list", "[1, 2]", "clear()"),
    ("tuple", "(1, 2, 1)", "index(2)"), ("tuple", "(1, 2, 1)", "index(1, 1)"), ("tuple", "(1, 2, 1)", "count(1)"),
    ("dict", '{"a": 1}', 'get("a")'), ("dict", '{"a": 1}', 'get("b")'), ("dict", '{"a": 1}', 'get("b", 5)'),
    ("dict", "{(1, 2): 3}", "get((1, 2))"),
    ("dict", '{"a": 1, "b": 2}', "keys()"), ("dict", '{"a": 1, "b": 2}', "values()"),
    ("dict", '{"a": 1, "b": 2}', "items()"), ("dict", "{}", "items()"),
    ("dict", '{"a": 1, "b": 2}', 'pop("a")'), ("dict", '{"a": 1}', 'pop("z", 0)'),
    ("dict", '{"a": 1}', 'setdefault("a", 5)'), ("dict", '{"a": 1}', 'setdefault("b", 5)'),
    ("dict", '{"a": 1}', 'setdefault("b")'),
    ("dict", '{"a": 1}', 'update({"b": 2, "a": 0})'), ("dict", '{"a": 1}', 'update([("c", 3)])'),
    ("dict", '{"a": [1]}', "copy()"), ("dict", '{"a": 1}', "clear()"),
    ("str", '"aBc"', "upper()"), ("str", '"aBc"', "lower()"), ("bytes", 'b"aBc"', "upper()"),
    ("bytes", 'b"aBc"', "lower()"),
    ("str", '"  a b  "', "strip()"), ("str", '"xxaxx"', 'strip("x")'), ("str", '"\\t\\n a \\r"', "strip()"),
    ("str", '"  a  "', "lstrip()"), ("str", '"xyaxy"', 'lstrip("yx")'),
    ("str", '"  a  "', "rstrip()"), ("str", '"axyx"', 'rstrip("xy")'),
    ("bytes", 'b"  a  "', "strip()"), ("bytes", 'b"xax"', 'strip(b"x")'),
    ("bytes", 'b" a "', "lstrip()"), ("bytes", 'b" a "', "rstrip()"),
    ("str", '" a  b c "', "split()"), ("str", '"a,b,,c"', 'split(",")'), ("str", '"a,b,,c"', 'split(",", 1)'),
    ("str", '"a b c"', "split(None, 1)"), ("str", '"a b c"', "split(maxsplit=1)"),
    ("str", '" a b c "', "split(None, 0)"),
    ("str", '""', "split()"), ("str", '"   "', "split()"), ("str", '""', 'split(",")'),
    ("str", '"a\\tb\\nc"', "split()"), ("str", '"a  b  "', "split(None, 5)"), ("str", '"a<>b<>c"', 'split("<>")'),
    ("bytes", 'b"a b"', "split()"), ("bytes", 'b"a,b"', 'split(b",")'),
    ("str", '","', 'join(["a", "b", "c"])'), ("str", '""', 'join(("x", "y"))'), ("str", '"-"', "join([])"),
    ("bytes", 'b"-"', 'join([b"a", b"b"])'),
    ("str", '"hello"', 'replace("l", "L")'), ("str", '"hello"', 'replace("l", "L", 1)'),
    ("str", '"hello"', 'replace("", "-")'), ("str", '"aaa"', 'replace("a", "bb")'),
    ("bytes", 'b"hello"', 'replace(b"l", b"")'),
    ("str", '"hello"', 'startswith("he")'), ("str", '"hello"', 'startswith(("x", "h"))'),
    ("str", '"hello"', 'startswith("l", 2)'), ("bytes", 'b"hello"', 'startswith(b"he")'),
    ("str", '"hello"', 'endswith("lo")'), ("str", '"hello"', 'endswith("l", 0, 3)'),
    ("bytes", 'b"hello"', 'endswith(b"o")'),
    ("str", '"hello"', 'find("l")'), ("str", '"hello"', 'find("z")'), ("str", '"hello"', 'find("l", 3)'),
    ("str", '"hello"', 'find("")'), ("str", '"hello"', 'find("l", -2, 10)'), ("bytes", 'b"hello"', 'find(b"l")'),
    ("str", '"abcabc"', 'index("c")'), ("str", '"abcabc"', 'index("c", 3)'),
    ("bytes", 'b"abcabc"', 'index(b"c")'), ("bytes", 'b"abcabc"', "index(99)"),
    ("str", '"abcabc"', 'count("bc")'), ("str", '"aaaa"', 'count("aa")'), ("bytes", 'b"abcabc"', 'count(b"a")'),
    ("str", '"héllo"', "encode()"), ("str", '"abc"', 'encode("utf-8")'),
    ("bytes", 'b"h\\xc3\\xa9"', "decode()"), ("bytes", 'b"abc"', 'decode("utf-8")'),
    ("bytes", 'b"\\x00\\xff"', "hex()"), ("bytes", 'b""', "hex()"),
    ("int", "255", 'to_bytes(2, "big")'), ("int", "255", 'to_bytes(2, "little")'),
    ("int", "-1", 'to_bytes(2, "big", signed=True)'), ("int", "1", "to_bytes()"),
    ("int", "1", 'to_bytes(4, byteorder="little")'), ("bool", "True", "to_bytes(2)"),
    ("int", "255", "bit_length()"), ("int", "-256", "bit_length()"), ("int", "0", "bit_length()"),
    ("int", "2 ** 4000", "bit_length()"), ("bool", "True", "bit_length()"),
    ("bytes", "bytes", 'fromhex("0a0b")'), ("bytes", "bytes", 'fromhex("0a 0B")'), ("bytes", "bytes", 'fromhex("")'),
    ("int", "int", 'from_bytes(b"\\x01\\x00", "big")'), ("int", "int", 'from_bytes(b"\\x01\\x00", "little")'),
    ("int", "int", 'from_bytes(b"\\xff", "big", signed=True)'), ("int", "int", 'from_bytes(b"")'),
]


@pytest.mark.parametrize("kind, receiver, call", METHOD_CASES)
def test_method(chain, kind, receiver, call):
    if receiver in ("bytes", "int"):  # bytes.fromhex, int.from_bytes
        assert_same(chain, f"\ndef f():\n    return {receiver}.{call}\n")
    else:
        assert_same(chain, f"\ndef f():\n    x = {receiver}\n    r = x.{call}\n    return [x, r]\n")


def test_every_method_of_every_type_has_a_differential_case():
    """A method the runtime implements for a type must have a case above for that type."""
    names = {list: "list", tuple: "tuple", dict: "dict", str: "str", bytes: "bytes", int: "int", bool: "bool"}
    covered = {(kind, call.split("(")[0]) for kind, _, call in METHOD_CASES}
    implemented = set()
    for t, method in builtins._IMPL:
        if t is sizes.Storage:
            continue  # storage.get is tested with storage (tests/test_vm_transactions.py)
        kind = names.get(t) or {"fromhex": "bytes", "from_bytes": "int"}[method]  # bytes.fromhex, int.from_bytes
        implemented.add((kind, method))
    assert implemented - covered == set()
    assert {m for _, m in implemented} == METHODS  # and every method the validator allows is implemented


def test_methods_chain(chain):
    assert_same(chain, '\ndef f():\n    return "  Ab ".strip().upper().lower().split("b"), b"ab".hex().upper()\n')


# ---- statements ----------------------------------------------------------------------------

STATEMENTS = {
    "comprehension_generators_and_ifs": """
def f():
    return [x * y for x in range(4) for y in range(x) if y % 2 == 0 if x > 1]
""",
    "dict_comprehension": """
def f():
    return {k: v for k, v in [("a", 1), ("b", 2), ("a", 3)] if v != 2}
""",
    "nested_comprehensions": """
def f():
    return [[c + str(i) for c in "ab"] for i in range(3)], {i: [j for j in range(i)] for i in range(3)}
""",
    "comprehension_over_dicts": """
def f():
    d = {"x": 1, "y": 2}
    return [k for k in d], [(k, v) for k, v in d.items()], {v: k for k, v in d.items()}
""",
    "comprehension_variables_stay_inside": """
def f():
    x = 10
    r = [x for x in range(3)]
    return x, r
""",
    "comprehension_nested_targets": """
def f():
    return [a + b for a, (b, c) in [(1, (2, 3)), (4, (5, 6))] if c > 3]
""",
    "comprehension_reads_outer_locals": """
def f(n: int):
    k = n * 2
    return [i * k for i in range(n) if i != k]
""",
    "for_break_continue_else": """
def f():
    out = []
    for i in range(10):
        if i == 2:
            continue
        if i == 6:
            break
        out.append(i)
    else:
        out.append("else")
    for i in range(3):
        out.append(i)
    else:
        out.append("else")
    return out
""",
    "while_break_continue_else": """
def f():
    n = 0
    out = []
    while n < 10:
        n += 1
        if n % 2:
            continue
        out.append(n)
    else:
        out.append(-1)
    while True:
        n -= 3
        if n < 0:
            break
    else:
        out.append(-2)
    return out, n
""",
    "nested_loops": """
def f():
    out = []
    for i in range(4):
        for j in range(4):
            if j > i:
                break
            out.append((i, j))
        else:
            out.append("inner-else")
    return out
""",
    "iterating_every_kind": """
def f():
    total = []
    for c in "abc":
        for b in b"xy":
            total.append((c, b))
    for k, v in {"a": 1, "b": 2}.items():
        total.append(k)
    for t in (1, 2):
        total.append(t)
    for i in range(10, 0, -4):
        total.append(i)
    for k in {"z": 0}:
        total.append(k)
    return total
""",
    "iadd_on_lists_mutates_in_place": """
def f():
    x = [1, 2]
    y = x
    x += [3]
    x += (4,)
    z = x
    x *= 2
    t = (1,)
    u = t
    t += (2,)
    s = "a"
    s += "b"
    s *= 2
    return x, y, z, t, u, s
""",
    "augmented_subscripts_and_slices": """
def f():
    d = {"a": 1, "l": [1]}
    d["a"] += 5
    d["a"] *= 2
    d["a"] -= 1
    d["a"] //= 3
    d["a"] %= 3
    d["a"] **= 3
    d["a"] <<= 2
    d["a"] >>= 1
    d["a"] |= 64
    d["a"] &= 127
    d["a"] ^= 1
    alias = d["l"]
    d["l"] += [2]
    L = [1, 2, 3, 4, 5]
    L[1:3] += [9]
    L[0] += 10
    L[-1] *= 3
    M = [[1], [2]]
    M[0] += [5]
    return d, alias, L, M
""",
    "augmented_names": """
def f():
    a = 7
    a += 1
    a -= 2
    a *= 3
    a //= 4
    a %= 5
    a **= 3
    a <<= 3
    a >>= 1
    a |= 1
    a &= 0xff
    a ^= 0x10
    b = "x"
    b += "y"
    c = Decimal(1)
    c += 2
    c *= Decimal("1.5")
    c -= 1
    c /= 2
    c //= 1
    return a, b, c
""",
    "tuple_unpacking": """
def f():
    a, b = 1, 2
    a, b = b, a
    (c, d), e = (3, 4), 5
    [g, h] = [6, 7]
    L = [0, 0, 0]
    L[0], L[2] = "x", "z"
    dd = {}
    dd["k"], m = 1, 2
    p = q = [1]
    p.append(2)
    s, t = "st"
    u, v = {"u": 1, "v": 2}
    w, x = b"wx"
    return a, b, c, d, e, g, h, L, dd, m, p, q, s, t, u, v, w, x
""",
    "unpacking_in_for": """
def f():
    out = []
    for i, (a, b) in enumerate([(1, 2), (3, 4)]):
        out.append(i + a * b)
    for k, v in sorted({"b": 1, "a": 2}.items()):
        out.append(k * v)
    return out
""",
    "keyword_and_default_arguments": """
def g(a, b=2, c=3):
    return [a, b, c]

def h(a, *, k=5):
    return a * k

def f():
    return g(1), g(1, 5), g(1, c=9), g(c=1, b=2, a=3), h(2), h(2, k=3), g(a="x", c=None)
""",
    "recursion": """
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

def fact(n: int):
    return 1 if n <= 1 else n * fact(n - 1)

def even(n):
    return True if n == 0 else odd(n - 1)

def odd(n):
    return False if n == 0 else even(n - 1)

def f():
    return fib(15), fact(30), even(21), odd(21)
""",
    "int_locals_annotated": """
def f(n: int):
    s = 0
    p = 1
    for i in range(n):
        s += i * i
        p = p * 3 % 1000003
    m: int = s // 7
    k = -s
    j = ~n
    q = n if n > 3 else -n
    return s, p, m, k, j, q, n >> 1, n << 3, n ** 2, n & 5 | 2 ^ 1, -7 // n, -7 % n, n * n * n * n * n
""",
    "int_locals_unannotated": """
def f(n):
    s = 0
    p = 1
    for i in range(n):
        s += i * i
        p = p * 3 % 1000003
    t = len("abc") + n
    u = int("5") * 2
    u -= t
    return s, p, t, u
""",
    "ints_that_stop_being_ints": """
def f(n: int):
    x = 1
    x = x * n
    y = 2
    y = "now a str"
    z = 0
    for z in "ab":
        pass
    return x, y, z
""",
    "big_ints": """
def f():
    n = 10 ** 40
    m = n * n
    big = 2 ** 4000
    return m, m // 3, -m % 7, m >> 100, str(m), big.bit_length(), len(str(big)), -big < big, big % 97
""",
    "module_constants": """
LIMIT = 3
NAMES = ("a", "b")
NEG = -5
NESTED = ((1, "x"), b"y", None, True)

def f():
    return LIMIT * 2, NAMES, NEG, [n for n in NAMES], NESTED
""",
    "is_none": """
def f():
    x = None
    return x is None, [] is not None, (1 if x is None else 2)
""",
    "docstring_and_pass": '''
def f():
    """doc"""
    pass
''',
    "del_and_slice_assignment": """
def f():
    L = [5, 3, 8, 1]
    del L[0]
    del L[-1]
    d = {"a": 1, "b": 2}
    del d["a"]
    M = list(range(10))
    del M[::3]
    N = list(range(5))
    N[1:3] = [9, 9, 9]
    O = list(range(6))
    O[::2] = ["a", "b", "c"]
    P = [1, 2, 3]
    P[1:] = (7,)
    return L, d, M, N, O, P
""",
    "key_functions": """
def key(p):
    return p[1]

def neg(x):
    return -x

def f():
    pairs = [("a", 3), ("b", 1), ("c", 2), ("d", 1)]
    return (sorted(pairs, key=key), max(pairs, key=key), min(pairs, key=key),
            sorted([3, 1, 2], key=neg, reverse=True), sorted(pairs, key=key, reverse=True))
""",
    "non_ascii_text": """
def f():
    s = "héllo wörld ✓"
    return s[1:4], s.find("w"), len(s), s.split(" "), s.replace("ö", "o"), s.encode(), s < "hz", str([s])
""",
    "dict_order_and_overwrite": """
def f():
    d = {}
    for k in ["b", "a", "c", "a"]:
        d[k] = len(d)
    del d["b"]
    d["b"] = 9
    d.update({"a": 0})
    return d, list(d), {1: "x", True: "y"}
""",
    "many_str_keys": """
def f():
    d = {}
    for i in range(300):
        d["k" + str(i * 7919 % 1000)] = i
    return d, sorted(d)[:5], len(d)
""",
    "mutation_through_aliases": """
def f():
    inner = [1]
    outer = [inner, inner]
    inner.append(2)
    d = {"l": inner}
    d["l"].append(3)
    return outer, d
""",
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statements(chain, name):
    source = STATEMENTS[name]
    args = (7,) if "def f(n" in source else ()
    assert_same(chain, source, *args)


def test_comprehensions_nest_at_most_eight_deep(chain):
    """CPython 3.12.1 / 3.13.0 segfault compiling ~20 nested comprehensions (see
    tests/test_vm_determinism.py): the validator refuses more than 8 before CPython sees them."""
    def nested(n: int) -> str:
        e = "x"
        for _ in range(n):
            e = f"[{e} for q in x]"
        return f"\ndef f(x):\n    return {e}\n"
    assert_same(chain, nested(8), [1, 2])
    with pytest.raises(ContractFailed) as e:
        chain.deploy(as_contract(nested(9)))
    assert str(e.value) == ("invalid_contract: line 3, column 20: comprehensions are nested more than 8 deep: "
                               "build the inner values in a loop or a helper function")


def test_annotated_parameters_of_every_checked_type(chain):
    source = """
def f(a: int, b: str, c: bytes, d: bool, e: list, g: dict, h: tuple, i: Decimal, j: int | None, k):
    return a, b, c, d, e, g, h, i, j, k
"""
    assert_same(chain, source, 1, "b", b"c", True, [1], {"a": 1}, (1,), Decimal("1.5"), None, [2])


def test_comparison_chains_with_arguments(chain):
    source = "\ndef f(x, y):\n    return x < y < 10, x == y, x != y, 0 <= x < y <= 100, x < y > x\n"
    for x, y in [(3, 5), (5, 3), (5, 5), (-1, 50), (7, 200), (Decimal("0.5"), 1)]:
        assert_same(chain, source, x, y)


def test_print_lines_match_python(chain):
    source = """
def f():
    print("a", 1, [1, "b", b"c"], None, True, Decimal("2.5"), (1,), {"k": "v"})
    print("x", "y", sep="-")
    print()
    print("it's", ["it's", "é"])
    return 1
"""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        in_python(source)
    c = chain.deploy(as_contract(source))
    c.f()
    assert list(chain.last_receipt.logs) == out.getvalue().split("\n")[:-1]


# ---- where the VM deviates from Python, on purpose ---------------------------------------------

def test_str_case_strip_and_split_without_arguments_are_ascii_only(chain):
    """Unicode case and whitespace tables change between CPython releases; the VM's do not."""
    source = """
def f():
    return ["ßé".upper(), "ÉÀ".lower(), "\\u00a0x\\u2003".strip(), "a\\u2003b c".split(),
            "\\u00a0y".lstrip(), "y\\u00a0".rstrip(), "aZ".upper(), " q ".strip()]
"""
    assert in_vm(chain, source) == ["ßé", "ÉÀ", "\u00a0x\u2003", ["a\u2003b", "c"], "\u00a0y", "y\u00a0", "AZ", "q"]
    assert in_python(source) != in_vm(chain, source)  # Python would use Unicode


def test_repr_of_str_in_containers_keeps_non_ascii(chain):
    """CPython escapes what its Unicode tables call unprintable, and those tables change."""
    source = '\ndef f():\n    return str(["\\u200b", "é", "\\U0001f6dc", "\\x7f", "\\n"])\n'
    assert in_vm(chain, source) == "['\u200b', 'é', '\U0001f6dc', '\\x7f', '\\n']"
    assert in_python(source) != in_vm(chain, source)


def test_dict_views_are_list_snapshots(chain):
    """keys()/values()/items() return lists (their copy is priced before it is made)."""
    source = """
def f():
    d = {"a": 1, "b": 2}
    ks = d.keys()
    d["c"] = 3
    for k in d.keys():
        del d[k]
    return ks, d
"""
    assert in_vm(chain, source) == (["a", "b"], {})
    with pytest.raises(RuntimeError):  # Python's live view: the dict changed size while iterated
        in_python(source)


def test_encode_and_decode_know_only_utf8(chain):
    for call in ('"é".encode("latin-1")', 'b"\\xe9".decode("latin-1")'):
        e = vm_error(chain, f"\ndef f():\n    return {call}\n")
        assert e.code == "runtime_error" and "only supports utf-8" in str(e)


def test_true_division_of_ints_is_an_error(chain):
    e = vm_error(chain, "\ndef f(a, b):\n    return a / b\n", 7, 2)
    assert e.code == "runtime_error"
    assert str(e) == ("runtime_error: / between two ints would make a float: use // for integer division "
                         "or Decimal for fractions (in f, line 3)")
    e = vm_error(chain, "\ndef f(a: int):\n    return a / 2\n", 7)  # the int-typed path too
    assert "use // for integer division" in e.message
    assert in_vm(chain, "\ndef f(a):\n    return a / 2\n", (Decimal(7),)) == Decimal("3.5")
    e = vm_error(chain, "\ndef f(a):\n    return pow(2, a)\n", -1)  # Python: 0.5, a float
    assert str(e) == "runtime_error: negative exponents make fractions: use Decimal (in f, line 3)"


def test_percent_formatting_is_refused(chain):
    e = vm_error(chain, '\ndef f(z):\n    return "%d" % z\n', 0)
    assert str(e) == "runtime_error: % formatting is not allowed: build text with str() and + (in f, line 3)"


def test_annotated_parameters_are_checked_on_entry(chain):
    source = """
def g(n: int, s: str = "x"):
    return n

def f(a: int, mode):
    if mode == 1:
        return g(True)
    if mode == 2:
        return g(1, s=b"x")
    return g(a)
"""
    c = chain.deploy(as_contract(source))
    assert c.view.f(5, 0) == 5
    with pytest.raises(ContractFailed) as e:
        c.view.f("5", 0)
    assert (e.value.code, str(e.value)) == ("invalid_arguments", "invalid_arguments: argument 'a' must be int, not str "
                                                                   "(in f, line 5)")
    with pytest.raises(ContractFailed) as e:
        c.view.f(5, 1)  # a bool is not an int here, unlike isinstance(True, int)
    assert (e.value.code, e.value.function) == ("invalid_arguments", "g")
    assert "argument 'n' must be int, not bool" in e.value.message
    with pytest.raises(ContractFailed) as e:
        c.view.f(5, 2)
    assert "argument 's' must be str, not bytes" in e.value.message


def test_int_parsing_is_strict(chain):
    """int() takes an optional sign and digits: no spaces, underscores or base prefixes
    (Python's rules for those follow its Unicode tables)."""
    for text, base in [(" 12", None), ("1_000", None), ("0x1f", 16), ("١٢", None)]:
        call = f"int({text!r})" if base is None else f"int({text!r}, {base})"
        e = vm_error(chain, f"\ndef f():\n    return {call}\n")
        assert e.code == "runtime_error"
        assert "invalid" in e.message


def test_ints_are_bounded(chain):
    e = vm_error(chain, "\ndef f(n: int):\n    x = n\n    for i in range(20):\n        x = x * x\n    return 0\n", 3)
    assert (e.code, str(e)) == ("limit_exceeded", "limit_exceeded: integer over 4096 bits (in f, line 5)")
    e = vm_error(chain, "\ndef f(n):\n    return n ** n\n", 2000)
    assert e.code == "limit_exceeded"


# ---- errors: codes, positions, and the VM's own words -----------------------------------------

ERRORS = [  # (expression with z == 0, the receipt's message)
    ("1 // z", "division by zero"),
    ("1 % z", "division by zero"),
    ("divmod(1, z)", "division by zero"),
    ("{}[z]", "key not found in dict"),
    ("[][z]", "list index out of range"),
    ('"abc"[z + 10]', "str index out of range"),
    ("None + z", "unsupported operand types for +: None and int"),
    ('"a" + z', "unsupported operand types for +: str and int"),
    ('"a" < z', "cannot compare str < int"),
    ("[z] < [\"a\"]", "cannot compare list < list"),
    ("len(z)", "an int has no len()"),
    ("max([])", "max() of an empty sequence"),
    ('sorted([z, "a"])', "sorted() of values that cannot be compared"),
    ("[1].index(z)", "value not found"),
    ("[].pop(z)", "pop from an empty list or index out of range"),
    ("{}.pop(z)", "key not found in dict"),
    ("[1][::z]", "slice step cannot be zero"),
    ('b"\\xff".decode()', "bytes are not valid UTF-8"),
    ("(300 + z).to_bytes(1)", "int too big to convert to that many bytes"),
    ("range(1, 2, z)", "range() step cannot be zero"),
    ("z.upper()", "an int has no method upper()"),
    ("{[z]: 2}", "a list cannot be a dict key: keys are int, str, bytes, bool, None, Decimal or tuples of them"),
    ('"a" in z', "'in' needs a list, tuple, dict, str, bytes, range or storage on the right, not int"),
    ("-\"a\"", "bad operand type for unary -: str"),
]


@pytest.mark.parametrize("expr, message", ERRORS)
def test_runtime_errors_use_the_vms_own_words(chain, expr, message):
    source = f"\ndef f(z):\n    return {expr}\n"
    with pytest.raises(Exception):
        in_python(source, (0,))
    e = vm_error(chain, source, 0)
    assert (e.code, str(e), e.function, e.line) == ("runtime_error", f"runtime_error: {message} (in f, line 3)",
                                                       "f", 3)


@pytest.mark.parametrize("source, args, code, message", [
    # raw arithmetic on int-typed locals raises host exceptions, translated
    ("\ndef f(n: int):\n    return 1 // n\n", (0,), "runtime_error", "division by zero"),
    ("\ndef f(n: int):\n    return n % 0\n", (5,), "runtime_error", "division by zero"),
    ("\ndef f(c):\n    if c:\n        x = 1\n    return x\n", (0,), "runtime_error",
     "a local variable was used before it was assigned"),
    ("\ndef g(a):\n    return a\n\ndef f():\n    return g(1, 2)\n", (), "runtime_error",
     "a value of the wrong type, or the wrong number of arguments"),
])
def test_host_exceptions_are_translated(chain, source, args, code, message):
    e = vm_error(chain, source, *args)
    assert e.code == code
    assert str(e).startswith(f"{code}: {message} (in ")


def test_unbound_local_read_by_a_comprehension_is_reported_as_in_its_function(chain):
    """3.11 runs a comprehension as its own code object (NameError, '<listcomp>'); 3.12+
    inlines it (UnboundLocalError, the function): receipts must be the same on both."""
    source = "\ndef f():\n    r = [x + y for x in range(3)]\n    y = 1\n    return r\n"
    e = vm_error(chain, source)
    assert (e.code, str(e), e.function, e.line) == (
        "runtime_error", "runtime_error: a local variable was used before it was assigned (in f, line 3)", "f", 3)


@pytest.mark.parametrize("body", [
    "return [d[k] for k in [\"a\", \"zz\"]]",
    "return {k: 1 // k for k in [1, 0]}",
    "return [[1 // (i - j) for j in range(2)] for i in range(3)]",
])
def test_errors_inside_comprehensions_name_the_enclosing_function(chain, body):
    e = vm_error(chain, f"\ndef f(d):\n    x = 1\n    {body}\n", {"a": 1})
    assert (e.function, e.line) == ("f", 4)


def test_error_receipts_carry_code_function_and_line(chain):
    source = """
def helper(x):
    y = x + 1
    require(y < 5, "too big")
    return y

def f(n):
    a = 1
    b = helper(
        n)
    return b + a
"""
    c = chain.deploy(as_contract(source))
    assert c.view.f(1) == 3
    with pytest.raises(ContractFailed) as e:
        c.f(10)
    r = chain.last_receipt
    assert r.failure == ("revert", c.address, "helper", 4)
    assert r.error == "too big"
    assert failure_text(r) == "revert: too big (in helper, line 4)"
    assert (e.value.code, e.value.function, e.value.line, e.value.contract) == ("revert", "helper", 4, c.address)


def test_multi_line_statements_report_the_failing_line(chain):
    source = """
def f(a):
    x = len(
        a) + int(
            "q")
    return x
"""
    e = vm_error(chain, source, [])
    assert (e.function, e.line) == ("f", 4)  # where the failing call starts


def test_key_function_errors_name_the_key_function(chain):
    source = "\ndef bad(x):\n    return 1 // 0\n\ndef f():\n    return sorted([1, 2], key=bad)\n"
    e = vm_error(chain, source)
    assert (e.code, e.function, e.line) == ("runtime_error", "bad", 3)


def test_recursion_is_bounded_by_the_vms_depth_limit(chain):
    e = vm_error(chain, "\ndef f(n):\n    return f(n + 1)\n", 0)
    assert (e.code, str(e)) == ("limit_exceeded", "limit_exceeded: call depth over 64 (in f, line 2)")
    assert in_vm(chain, "\ndef g(n):\n    return 0 if n == 0 else 1 + g(n - 1)\n\ndef f(n):\n    return g(n)\n",
                 (62,)) == 62


def test_compiling_ignores_the_hosts_warning_filters():
    """`1 is not None` is a SyntaxWarning when compiled; with warnings as errors (python -W
    error) it used to escape compile_contract as a SyntaxError and crash the node."""
    source = "@export\ndef f():\n    return 1 is not None\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_contract(source)


def test_lone_surrogates_never_reach_a_receipt(chain):
    """A receipt with a lone surrogate cannot be encoded: the node building the block
    would crash.  Revert messages are escaped; event names are refused."""
    c = chain.deploy(r'''
@export
def rv():
    require(False, "bad \ud800 thing")

@export
def ev():
    emit("\ud800", a=1)
''')
    with pytest.raises(ContractFailed):
        c.rv()
    assert failure_text(chain.last_receipt) == "revert: bad \\ud800 thing (in rv, line 4)"
    encode_receipt(chain.last_receipt)
    with pytest.raises(ContractFailed) as e:
        c.ev()
    assert e.value.code == "runtime_error"
    assert "without lone surrogates" in e.value.message
    encode_receipt(chain.last_receipt)


def test_error_text_does_not_depend_on_the_hosts_int_digit_limit(chain):
    """CPython refuses f"{n}" past PYTHONINTMAXSTRDIGITS digits (640 at the least);
    messages built that way made receipts depend on the host's setting."""
    c = chain.deploy(r'''
@export
def rep():
    return len("a" * (10 ** 700))

@export
def tr():
    transfer(ctx.sender, 10 ** 700)
''')
    messages = []
    for limit in (0, 640):
        old = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(limit)
        try:
            for fn in ("rep", "tr"):
                with pytest.raises(ContractFailed) as e:
                    chain.transact(c, fn)
                messages.append(str(e.value))
        finally:
            sys.set_int_max_str_digits(old)
    assert messages[:2] == messages[2:]
    assert messages[0] == "limit_exceeded: value of over 2**64 elements is over the limit of 1000000 (in rep, line 4)"
    assert messages[1].startswith("runtime_error: insufficient balance: the contract holds 0, cannot transfer 1000")


def test_a_missing_function_name_is_quoted_the_same_on_every_cpython(chain):
    """repr() keeps what the running CPython's Unicode tables call printable (U+1F6DC is
    escaped by 3.11, kept by 3.12): the receipt text would differ between nodes."""
    c = chain.deploy("@export\ndef f():\n    return 1\n")
    for name, shown in [("\U0001f6dc", "'\\U0001f6dc'"), ("é", "'\\xe9'"), ("nope", "'nope'")]:
        with pytest.raises(ContractFailed) as e:
            chain.transact(c, name)
        assert str(e.value) == f"not_found: contract 0x{c.address.hex()} exports no function {shown}"


# ---- gas ------------------------------------------------------------------------------------

LOOPS = """
@export
def count(n: int):
    s = 0
    for i in range(n):
        s += i
    return s

@export
def walk(n):
    s = []
    i = 0
    while i < n:
        s.append(str(i))
        i = i + 1
    return len(s)

@export
def comp(n):
    return len([i * 2 for i in range(n) if i % 3])
"""


def _gas(chain: TestChain, contract, fn: str, *args) -> int:
    chain.transact(contract, fn, *args)
    return chain.last_receipt.gas_used


def test_gas_is_deterministic(chain):
    c = chain.deploy(LOOPS)
    for fn in ("count", "walk", "comp"):
        assert _gas(chain, c, fn, 50) == _gas(chain, c, fn, 50)
    again = chain.deploy(LOOPS)  # a second copy of the code: the compiled cache is shared
    assert _gas(chain, again, "walk", 50) == _gas(chain, c, "walk", 50)


@pytest.mark.parametrize("fn", ["count", "walk", "comp"])
def test_gas_grows_with_work(chain, fn):
    """Loop costs are static per iteration: twice the iterations, twice the loop's gas."""
    c = chain.deploy(LOOPS)
    base, one, two = (_gas(chain, c, fn, n) for n in (0, 30, 60))
    assert one > base
    assert two - base == 2 * (one - base)


def test_gas_grows_with_operand_size(chain):
    c = chain.deploy("""
@export
def mul(a, b):
    return len(str(a * b))

@export
def rep(n):
    return len("ab" * n)
""")
    small, big = _gas(chain, c, "mul", 3, 5), _gas(chain, c, "mul", 10 ** 500, 10 ** 500)
    assert big > small + 1000
    assert _gas(chain, c, "rep", 100_000) > _gas(chain, c, "rep", 10) + 10_000


def test_read_only_calls_cost_what_the_transaction_costs(chain):
    """estimate_gas runs a read-only call: it must see the transaction's gas, less intrinsic."""
    c = chain.deploy(LOOPS)
    tx_gas = _gas(chain, c, "walk", 40)
    out = read_only_call(State(chain.state.get), "gradchain-test", chain.height, chain.time_ms,
                         chain.accounts[0].address, c.address, "walk", [40], 10 ** 8)
    assert out.error is None
    assert tx_gas == out.gas_used + intrinsic_gas(TxKind.CALL, Call(c.address, "walk", encode_args([40]), 0))


class RecordingHost:
    """A Host over dicts that records every write the VM asks for."""

    def __init__(self, code: dict[bytes, str]):
        self.code, self.storage, self.writes, self.transfers = code, {}, [], []
        self.balances = {a: 10 ** 6 for a in code}

    def get_code(self, address: bytes) -> str | None:
        return self.code.get(address)

    def storage_get(self, address: bytes, key: bytes) -> bytes | None:
        return self.storage.get((address, key))

    def storage_set(self, address: bytes, key: bytes, value: bytes | None) -> None:
        self.writes.append((address, key, value))

    def balance(self, address: bytes) -> int:
        return self.balances.get(address, 0)

    def transfer(self, sender: bytes, to: bytes, amount: int) -> bool:
        self.transfers.append((sender, to, amount))
        return True


def _run(host: RecordingHost, address: bytes, fn: str, args: list, gas: int) -> runtime.Outcome:
    env = runtime.Env("gradchain-test", 1, 1_700_000_000_000, b"\x01" * 20)
    return runtime.execute(host, env, gas, lambda rt: runtime.call_function(rt, address, fn, args, {}, 0))


def _gas_for(host: RecordingHost, address: bytes, fn: str, args: list) -> int:
    out = _run(host, address, fn, args, 10 ** 8)
    assert out.error is None, out.error
    return out.gas_used


@pytest.mark.parametrize("fn, done", [
    ("store", lambda h, o: h.writes),
    ("pay", lambda h, o: h.transfers),
    ("event", lambda h, o: o.events),
])
def test_gas_is_charged_before_the_effect(fn, done):
    """With just too little gas for the operation, the host never sees it."""
    address = b"\xaa" * 20
    host = RecordingHost({address: """
@export
def store(n):
    v = "x" * n
    storage["k"] = v

@export
def pay(n):
    v = "x" * n
    transfer(ctx.sender, 5)

@export
def event(n):
    v = "x" * n
    emit("E", v=v)
"""})
    need = _gas_for(host, address, fn, [1000])
    host.writes.clear()
    host.transfers.clear()
    out = _run(host, address, fn, [1000], need - 1)
    assert out.error is not None and out.error.code == "out_of_gas"
    assert not done(host, out)


def test_big_allocations_are_charged_before_they_happen():
    """'a' * n with gas for the setup only fails before allocating the string."""
    address = b"\xbb" * 20
    host = RecordingHost({address: "@export\ndef f(n):\n    return len('a' * n)\n"})
    assert _gas_for(host, address, "f", [10]) < 30_000
    tracemalloc.start()
    try:
        out = _run(host, address, "f", [900_000], 30_000)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        enough = _run(host, address, "f", [900_000], 10 ** 8)
        peak_enough = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.error is not None and out.error.code == "out_of_gas"
    assert peak < 300_000
    assert enough.error is None and peak_enough > 900_000  # tracemalloc does see the allocation


def test_sorting_is_charged_before_the_key_function_runs(chain):
    """The key function prints: a sort that ran out of gas after sorting would log."""
    c = chain.deploy("""
def key(x):
    print("key", x)
    return -x

@export
def f(n):
    items = list(range(n))
    return sorted(items, key=key)[0]
""")
    assert c.f(3) == 2
    need = chain.last_receipt.gas_used
    assert chain.last_receipt.logs == ("key 0", "key 1", "key 2")
    with pytest.raises(OutOfGas):
        c.f(3000, gas=need)
    assert chain.last_receipt.logs == ()


def test_print_is_charged_before_its_text_is_built():
    """print(s, s, ...) of 30 strings of 1 MB used to join 30 MB before charging for it."""
    address = b"\xee" * 20
    args = ", ".join(["s"] * 30)
    host = RecordingHost({address: f"@export\ndef f(n):\n    s = 'a' * n\n    print({args})\n"})
    tracemalloc.start()
    try:
        out = _run(host, address, "f", [1_000_000], 100_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.error is not None and out.error.code == "out_of_gas"
    assert peak < 5_000_000
    # what is kept is the text's first 16 KiB, as before; long lines cost what they did
    out = _run(host, address, "f", [1000], 10 ** 8)
    assert out.logs == [" ".join(["a" * 1000] * 30)[:16 * 1024]]
    assert _gas_for(host, address, "f", [2000]) - _gas_for(host, address, "f", [1000]) >= 30 * 1000 * 10


def test_print_escapes_lone_surrogates(chain):
    c = chain.deploy('@export\ndef f():\n    print("a\\ud800", "é")\n    return 1\n')
    assert c.f() == 1
    assert chain.last_receipt.logs == ("a\\ud800 é",)
    encode_receipt(chain.last_receipt)


def test_huge_results_fail_at_once_with_a_limit():
    """Results too big to compute are refused from their sizes, before any work."""
    address = b"\xcc" * 20
    host = RecordingHost({address: """
@export
def f(k):
    if k == 0:
        return 10 ** 10 ** 8
    if k == 1:
        return len([0] * 10 ** 9)
    if k == 2:
        return sum(range(10 ** 12))
    return len(str(10 ** 100000))
"""})
    for k, code in [(0, "limit_exceeded"), (1, "limit_exceeded"), (2, "out_of_gas"), (3, "limit_exceeded")]:
        out = _run(host, address, "f", [k], 10 ** 7)
        assert out.error is not None and out.error.code == code, (k, out.error)


def test_out_of_gas_uses_the_whole_limit_and_reports_where(chain):
    c = chain.deploy("@export\ndef f():\n    x = [1, 2, 3]\n    return len(x * 100000)\n")
    with pytest.raises(OutOfGas) as e:
        c.f(gas=10_000)
    assert (e.value.code, e.value.function, e.value.line) == ("out_of_gas", "f", 4)
    limit = chain.receipts[-1].gas_used
    with pytest.raises(OutOfGas) as e:
        c.f(gas=20_000)
    assert chain.receipts[-1].gas_used == limit + 10_000


def test_vm_errors_are_vm_error_subclasses():
    """What execute() reports is always a VMError with a stable code."""
    address = b"\xdd" * 20
    host = RecordingHost({address: "@export\ndef f(x):\n    return x[0]\n"})
    out = _run(host, address, "f", [5], 10 ** 6)
    assert isinstance(out.error, VMError)
    assert (out.error.code, out.error.message) == ("runtime_error", "an int cannot be indexed")
