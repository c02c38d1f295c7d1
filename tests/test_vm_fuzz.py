"""Fuzzing the contract VM end to end (issue 3, security): random bytes, random text and
random programs go through validation, compilation and execution.

The oracle: a source is either refused with a clean ContractInvalid (issues with lines
and columns) or compiles; a compiled contract deploys and runs in a TestChain with a
small gas limit and either succeeds or fails with one of the VM's error codes, never
with another exception, and never through a host exception the VM did not expect
(the VM turns those into runtime_error, which would hide its own bugs).  Running the
same contract twice on fresh chains gives identical receipts.
"""
from __future__ import annotations

import ast
import string

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from ledger import tx as txs
from vm import meter, runtime
from vm.compiler import Compiled, compile_contract
from gradchain import ContractFailed, TestChain
from vm.validate import ContractInvalid, Issue

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])

VM_CODES = {"revert", "out_of_gas", "limit_exceeded", "runtime_error", "invalid_value", "not_found",
            "invalid_arguments", "reentrancy", "invalid_contract"}
# Host exceptions that contract code causes in the normal course (a wrong argument count,
# a missing local, a huge range's len, deep recursion in C); any other one reaching the
# VM's translation means a bug in the VM itself.
EXPECTED_HOST_ERRORS = (TypeError, ValueError, ZeroDivisionError, KeyError, IndexError, NameError, OverflowError,
                        RecursionError, MemoryError, RuntimeError)
GAS = 300_000


def check_compile(source) -> Compiled | None:
    """compile_contract either returns or raises a ContractInvalid with sane issues."""
    try:
        return compile_contract(source)
    except ContractInvalid as e:
        assert e.issues
        for i in e.issues:
            assert isinstance(i, Issue) and i.line >= 1 and i.col >= 1 and i.message
        return None


@pytest.fixture
def host_errors(monkeypatch) -> list[BaseException]:
    """Every host exception the runtime translates, recorded."""
    seen: list[BaseException] = []
    translate = runtime._translate

    def recording(e: Exception):
        seen.append(e)
        return translate(e)
    monkeypatch.setattr(runtime, "_translate", recording)
    return seen


def run_once(source: str, args: list) -> tuple:
    """Deploy on a fresh chain and call f(*args): the receipts of both, as comparable
    tuples.  Each fails, if it does, with a VM error code and within its gas limit."""
    chain = TestChain()
    deploy_limit = txs.intrinsic_gas(txs.TxKind.DEPLOY, txs.Deploy(source, txs.encode_args([]), 0)) + GAS
    try:
        contract = chain.deploy(source, gas=GAS)
    except ContractFailed as e:
        assert e.code in VM_CODES, e
        assert chain.last_receipt.gas_used <= deploy_limit
        return (_receipt(chain),)
    outcomes = [_receipt(chain)]
    call_limit = txs.intrinsic_gas(txs.TxKind.CALL, txs.Call(contract.address, "f", txs.encode_args(args), 0)) + GAS
    try:
        chain.transact(contract, "f", *args, gas=GAS)
    except ContractFailed as e:
        assert e.code in VM_CODES, e
    assert chain.last_receipt.gas_used <= call_limit
    outcomes.append(_receipt(chain))
    assert meter.RT is None and meter._DEPTH.cell_contents == 0
    return tuple(outcomes)


def _receipt(chain: TestChain) -> tuple:
    r = chain.last_receipt
    return (r.status, r.gas_used, r.error, r.failure, r.output, r.events, r.logs)


def check_runs(source: str, args: list, host_errors: list) -> None:
    """Runs, twice, identically; host exceptions only of the expected kinds."""
    seen = len(host_errors)
    first = run_once(source, args)
    assert run_once(source, args) == first
    unexpected = [e for e in host_errors[seen:] if not isinstance(e, EXPECTED_HOST_ERRORS)]
    assert not unexpected, f"the VM translated {unexpected!r}"


# ---- random bytes and text --------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_cleanly(data):
    check_compile(data)  # not text at all
    for text in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        check_compile(text)


@FUZZ
@given(st.text(max_size=400))
def test_random_text_is_refused_or_compiled(text):
    check_compile(text)


@settings(FUZZ, max_examples=60)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_random_text_deploys_cleanly(text):
    """Through a DEPLOY transaction: a receipt with invalid_contract and no code, or a
    contract (when the text happens to be one)."""
    chain = TestChain()
    sender = chain.default_sender.address
    address = txs.contract_address(sender, 0)
    try:
        chain.deploy(text, gas=GAS)
    except ContractFailed as e:
        assert e.code in VM_CODES, e
        assert chain.code(address) is None
    else:
        assert chain.code(address) == text


CODE_PIECES = ["@export\n", "def ", "f", "(", "a", ", ", "b", ")", ":", "\n", "    ", "return ", "x", " = ", "1",
               "[", "]", "{", "}", "'s'", "b'x'", "+", "*", "**", "//", "%", "<<", "==", " in ", " for ", " if ",
               "while True:", "storage", "['k']", "ctx", ".sender", "len", "sorted", "emit", "require", "call",
               "Decimal", ".append", ".__class__", "lambda", "yield", "import os", "try:", "except:", "(" * 30,
               ")" * 30, "ｅｖａｌ", "\t", "#", "\\", "'", '"', "10 ** 10 ** 8"]


@FUZZ
@given(source=st.lists(st.sampled_from(CODE_PIECES), min_size=1, max_size=60).map("".join),
       args=st.lists(st.integers(-3, 3), max_size=2))
def test_code_like_text_runs_cleanly(source, args, host_errors):
    if check_compile(source) is not None and "f" in compile_contract(source).exports:
        check_runs(source, args, host_errors)


# ---- random programs --------------------------------------------------------------------------
# A grammar of the language (and, mixed in, of what it leaves out), biased toward programs
# that validate: x, y, z are bound first; loops count with i; comprehensions bind c.

INTS = st.sampled_from([0, 1, 2, 3, -1, 7, 255, 256, 2 ** 31, 2 ** 61 - 1, 2 ** 64, -(2 ** 63), 10 ** 20])
CONSTANTS = st.one_of(INTS, st.sampled_from(["", "s", "ab", "é", "a b", "k", True, False, None, b"", b"xy"]))
NAMES = ["a", "b", "x", "y", "z"]
BUILTINS = ["len", "str", "int", "bool", "abs", "sorted", "list", "tuple", "sum", "max", "min", "any", "all",
            "reversed", "enumerate", "range", "bytes", "dict", "zip", "divmod", "pow", "isinstance", "print",
            "Decimal", "require"]
METHODS = ["append", "pop", "insert", "extend", "remove", "index", "count", "reverse", "sort", "copy", "clear",
           "get", "keys", "values", "items", "setdefault", "update", "upper", "lower", "strip", "split", "join",
           "replace", "startswith", "endswith", "find", "encode", "decode", "hex", "to_bytes", "bit_length"]
CTX = ["sender", "caller", "this", "block_height", "block_time", "chain_id", "value"]
BINOPS = [ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.BitAnd,
          ast.BitOr, ast.BitXor, ast.Div]
CMPOPS = [ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn]
FORBIDDEN_EXPRS = ["x.__class__", "getattr(x, 'y')", "(lambda: 0)", "(c for c in x)", "{1, 2}", "f'{x}'",
                   "type(x)", "x.format(1)", "eval('1')", "[*x]", "(y := 1)", "__import__('os')"]


def _name(n: str) -> ast.Name:
    return ast.Name(n, ast.Load())


def _call(func: ast.expr, args: list, keywords: list | None = None) -> ast.Call:
    return ast.Call(func, args, keywords or [])


def expressions(bad: bool) -> st.SearchStrategy:
    leaves = st.one_of(st.sampled_from(NAMES).map(_name), CONSTANTS.map(ast.Constant),
                       st.sampled_from(CTX).map(lambda f: ast.Attribute(_name("ctx"), f, ast.Load())))
    if bad:
        leaves = st.one_of(leaves, st.sampled_from(FORBIDDEN_EXPRS).map(lambda s: ast.parse(s, mode="eval").body))

    def extend(child: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(
            st.builds(lambda l, op, r: ast.BinOp(l, op(), r), child, st.sampled_from(BINOPS), child),
            st.builds(lambda op, v: ast.UnaryOp(op(), v), st.sampled_from([ast.USub, ast.Not, ast.Invert]), child),
            st.builds(lambda op, vs: ast.BoolOp(op(), vs), st.sampled_from([ast.And, ast.Or]),
                      st.lists(child, min_size=2, max_size=3)),
            st.builds(lambda l, op, r: ast.Compare(l, [op()], [r]), child, st.sampled_from(CMPOPS), child),
            st.builds(lambda t, b, o: ast.IfExp(t, b, o), child, child, child),
            st.builds(lambda es: ast.List(es, ast.Load()), st.lists(child, max_size=3)),
            st.builds(lambda es: ast.Tuple(es, ast.Load()), st.lists(child, min_size=1, max_size=3)),
            st.builds(lambda ks, vs: ast.Dict(ks, vs[:len(ks)]), st.lists(child, max_size=2),
                      st.lists(child, min_size=2, max_size=2)),
            st.builds(lambda v, s: ast.Subscript(v, s, ast.Load()), child, child),
            st.builds(lambda v, lo, hi: ast.Subscript(v, ast.Slice(lo, hi, None), ast.Load()), child,
                      st.none() | child, st.none() | child),
            st.builds(lambda k: ast.Subscript(_name("storage"), k, ast.Load()), child),
            st.builds(lambda f, args: _call(_name(f), args), st.sampled_from(BUILTINS),
                      st.lists(child, max_size=2)),
            st.builds(lambda v, m, args: _call(ast.Attribute(v, m, ast.Load()), args), child,
                      st.sampled_from(METHODS), st.lists(child, max_size=2)),
            st.builds(lambda xs, key: _call(_name("sorted"), [xs], [ast.keyword("key", _name(key))]), child,
                      st.sampled_from(["len", "str", "abs", "g"])),
            st.builds(lambda e, it, cond: ast.ListComp(e, [ast.comprehension(ast.Name("c", ast.Store()), it,
                                                                             cond, 0)]),
                      child, child, st.lists(child, max_size=1)),
            st.builds(lambda k, v, it: ast.DictComp(k, v, [ast.comprehension(ast.Name("c", ast.Store()), it, [], 0)]),
                      child, child, child),
            st.builds(lambda args: _call(_name("g"), args), st.lists(child, min_size=1, max_size=1)),
            st.builds(lambda fn, args: _call(_name("call"), [ast.Attribute(_name("ctx"), "this", ast.Load()),
                                                             ast.Constant(fn), *args]),
                      st.sampled_from(["f", "ok", "missing"]), st.lists(child, max_size=1)),
        )
    return st.recursive(leaves, extend, max_leaves=6)


EXPRESSIONS = {False: expressions(False), True: expressions(True)}


@st.composite
def statements(draw, bad: bool, depth: int = 0, in_loop: bool = False) -> list[ast.stmt]:
    e = EXPRESSIONS[bad]
    out: list[ast.stmt] = []
    for _ in range(draw(st.integers(1, 3))):
        kinds = ["assign", "assign", "augassign", "subscript", "storage", "expr", "emit", "return", "require",
                 "unpack", "delete"]
        if depth < 2:
            kinds += ["if", "for", "while"]
        if in_loop:
            kinds += ["break", "continue"]
        if bad:
            kinds += ["try", "import", "global", "raise", "with"]
        kind = draw(st.sampled_from(kinds))
        target = ast.Name(draw(st.sampled_from(["x", "y", "z"])), ast.Store())
        if kind == "assign":
            out.append(ast.Assign([target], draw(e)))
        elif kind == "augassign":
            out.append(ast.AugAssign(target, draw(st.sampled_from(BINOPS))(), draw(e)))
        elif kind == "subscript":
            out.append(ast.Assign([ast.Subscript(_name(target.id), draw(e), ast.Store())], draw(e)))
        elif kind == "storage":
            out.append(ast.Assign([ast.Subscript(_name("storage"), draw(e), ast.Store())], draw(e)))
        elif kind == "expr":
            out.append(ast.Expr(draw(e)))
        elif kind == "emit":
            out.append(ast.Expr(_call(_name("emit"), [ast.Constant("E")], [ast.keyword("v", draw(e))])))
        elif kind == "return":
            out.append(ast.Return(draw(st.none() | e)))
        elif kind == "require":
            out.append(ast.Expr(_call(_name("require"), [draw(e), ast.Constant("no")])))
        elif kind == "unpack":
            out.append(ast.Assign([ast.Tuple([ast.Name("x", ast.Store()), ast.Name("y", ast.Store())], ast.Store())],
                                  draw(e)))
        elif kind == "delete":
            out.append(ast.Delete([ast.Subscript(_name(draw(st.sampled_from(["x", "y", "z", "storage"]))), draw(e),
                                                 ast.Del())]))
        elif kind == "if":
            out.append(ast.If(draw(e), draw(statements(bad, depth + 1, in_loop)),
                              draw(st.just([]) | statements(bad, depth + 1, in_loop))))
        elif kind == "for":
            out.append(ast.For(ast.Name("i", ast.Store()), draw(e), draw(statements(bad, depth + 1, True)), []))
        elif kind == "while":
            out.append(ast.While(draw(e), draw(statements(bad, depth + 1, True)), []))
        elif kind == "break":
            out.append(ast.Break())
        elif kind == "continue":
            out.append(ast.Continue())
        elif kind == "try":
            out.append(ast.Try(draw(statements(bad, depth + 1, in_loop)),
                               [ast.ExceptHandler(None, None, [ast.Pass()])], [], []))
        elif kind == "import":
            out.append(ast.Import([ast.alias("os")]))
        elif kind == "global":
            out.append(ast.Global(["LIMIT"]))
        elif kind == "raise":
            out.append(ast.Raise(draw(e), None))
        else:
            out.append(ast.With([ast.withitem(draw(e), None)], [ast.Pass()]))
    return out


SKELETON = '''
LIMIT = 3

@export
def f(a=0, b="s"):
    x = 0
    y = "t"
    z = [1, 2]
    i = 0


def g(v):
    return v


@export
def ok():
    return 1
'''


@st.composite
def programs(draw) -> str:
    bad = draw(st.integers(0, 3)) == 0  # a quarter mix in what the language leaves out
    module = ast.parse(SKELETON)
    module.body[1].body += draw(statements(bad))
    if draw(st.booleans()):
        module.body[2].body = draw(statements(bad)) + module.body[2].body
    ast.fix_missing_locations(module)
    try:
        return ast.unparse(module)
    except (ValueError, TypeError, AttributeError, RecursionError):  # a combination unparse cannot print
        reject()


ARGS = st.lists(st.one_of(INTS, st.text(string.ascii_letters, max_size=5), st.binary(max_size=4), st.none(),
                          st.lists(st.integers(-2, 2), max_size=3)), max_size=2)


@settings(FUZZ, max_examples=250)
@given(source=programs(), args=ARGS)
def test_random_programs_run_cleanly_and_reproducibly(source, args, host_errors):
    compiled = check_compile(source)
    if compiled is not None:
        check_runs(source, args, host_errors)


def test_the_program_grammar_reaches_the_runtime():
    """The oracle above has something to check: most clean programs validate and run."""
    valid = []

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(programs())
    def collect(source):
        valid.append(check_compile(source) is not None)
    collect()
    assert sum(valid) >= len(valid) // 3, f"{sum(valid)} of {len(valid)} programs validate"


# ---- int programs against CPython ----------------------------------------------------------------
# Locals that only ever hold ints run as raw CPython arithmetic, with inline guards and size
# checks (vm/compiler.py): when such a program succeeds in the VM, it must give what CPython
# gives; when CPython fails, the VM must fail too.

INT_LEAVES = st.one_of(st.sampled_from(["a", "b", "x", "y", "i"]).map(_name),
                       st.sampled_from([0, 1, 2, 3, -1, -7, 63, 64, 2 ** 31, 2 ** 63 - 1, 2 ** 64, -(2 ** 64),
                                        2 ** 100, 3 ** 90]).map(ast.Constant))
INT_OPS = [ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.BitAnd, ast.BitOr, ast.BitXor]


def _int_exprs(child: st.SearchStrategy) -> st.SearchStrategy:
    small = st.integers(0, 70).map(ast.Constant)
    return st.one_of(
        st.builds(lambda l, op, r: ast.BinOp(l, op(), r), child, st.sampled_from(INT_OPS), child),
        st.builds(lambda l, op, r: ast.BinOp(l, op(), r), child, st.sampled_from([ast.LShift, ast.RShift, ast.Pow]),
                  small),
        st.builds(lambda op, v: ast.UnaryOp(op(), v), st.sampled_from([ast.USub, ast.UAdd, ast.Invert]), child),
        st.builds(lambda l, op, r, b, o: ast.IfExp(ast.Compare(l, [op()], [r]), b, o), child,
                  st.sampled_from([ast.Lt, ast.Eq, ast.GtE]), child, child, child),
        st.builds(lambda f, xs: _call(_name(f), xs), st.sampled_from(["abs", "int"]), st.lists(child, min_size=1,
                                                                                              max_size=1)),
        st.builds(lambda f, xs: _call(_name(f), xs), st.sampled_from(["max", "min"]), st.lists(child, min_size=2,
                                                                                              max_size=3)),
    )


INT_EXPRS = st.recursive(INT_LEAVES, _int_exprs, max_leaves=5)


@st.composite
def int_statements(draw, depth: int = 0) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["assign", "assign", "augassign", "if", "for"] if depth < 2 else ["assign"]))
        target = ast.Name(draw(st.sampled_from(["x", "y"])), ast.Store())
        if kind == "assign":
            out.append(ast.Assign([target], draw(INT_EXPRS)))
        elif kind == "augassign":
            out.append(ast.AugAssign(target, draw(st.sampled_from(INT_OPS))(), draw(INT_EXPRS)))
        elif kind == "if":
            test = ast.Compare(draw(INT_EXPRS), [ast.Lt()], [draw(INT_EXPRS)])
            out.append(ast.If(test, draw(int_statements(depth + 1)), draw(st.just([]) | int_statements(depth + 1))))
        else:
            loop = ast.For(ast.Name("i", ast.Store()), _call(_name("range"), [ast.Constant(draw(st.integers(0, 6)))]),
                           draw(int_statements(depth + 1)), [])
            out.append(loop)
    return out


@st.composite
def int_programs(draw) -> str:
    module = ast.parse("@export\ndef f(a: int, b: int):\n    x = a\n    y = b\n    i = 0\n")
    module.body[0].body += draw(int_statements()) + [ast.parse("return [x, y, i]").body[0]]
    ast.fix_missing_locations(module)
    return ast.unparse(module)


class _Bounded(ast.NodeTransformer):
    """The plain CPython twin of an int program: each assignment is followed by a size
    check, so that `x = x * x` in a loop stops long before it could take minutes."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        prologue, rest = node.body[:3], node.body[3:]  # x = a; y = b; i = 0
        node.body = prologue + [s for stmt in rest for s in _as_list(self.visit(stmt))]
        return node

    def visit_Assign(self, node: ast.stmt) -> list[ast.stmt]:
        return [node, ast.parse("_bounded(x, y)").body[0]]

    visit_AugAssign = visit_Assign


def _as_list(x: ast.AST | list) -> list:
    return x if isinstance(x, list) else [x]


class TooBig(Exception):
    pass


def _bounded(*values: int) -> None:
    if any(abs(v).bit_length() > 4 * 4096 for v in values):
        raise TooBig


def _cpython(source: str, a: int, b: int) -> tuple[str, object]:
    tree = ast.fix_missing_locations(_Bounded().visit(ast.parse(source)))
    namespace: dict = {"export": lambda fn: fn, "_bounded": _bounded}
    exec(compile(tree, "<plain>", "exec"), namespace)
    try:
        return "ok", namespace["f"](a, b)
    except TooBig:
        return "too big", None
    except (ZeroDivisionError, ValueError) as e:
        return "error", type(e).__name__


SIZES = st.sampled_from([0, 1, -1, 5, -13, 2 ** 62, 2 ** 64 + 1, -(2 ** 200), 7 ** 300])


@settings(FUZZ, max_examples=200)
@given(source=int_programs(), a=SIZES, b=SIZES)
def test_int_programs_match_cpython(source, a, b, host_errors):
    if check_compile(source) is None:
        return
    kind, expected = _cpython(source, a, b)
    chain = TestChain()
    contract = chain.deploy(source)
    try:
        got = contract.f(a, b, gas=2_000_000)
    except ContractFailed as e:
        # division by zero or a negative shift count is a runtime_error, unless the VM
        # stopped before at its own limits (which it may do only there)
        allowed = ("runtime_error", "limit_exceeded", "out_of_gas") if kind == "error" else \
            ("limit_exceeded", "out_of_gas")
        assert e.code in allowed, (e, kind, expected)
        return
    assert kind == "ok", f"CPython: {kind} {expected}; the VM returned {got}"
    assert got == expected
