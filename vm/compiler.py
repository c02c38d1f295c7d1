"""From a validated contract to a CPython code object with gas charges built in.

Why compile rather than interpret: CPython runs the contract's own bytecode at close to
native speed, where an interpreter in Python is 30-100x slower (DESIGN 3).  The price is
that every operation whose cost is not a constant must be routed through the runtime's
priced wrappers (vm/ops.py, vm/builtins.py, vm/world.py), and the gas counter must be cheap to decrement.

The shape of the generated module:

    def _outer():
        _g = 0      # gas left        -- three cells, replaced at instantiation by the
        _d = 0      # call depth         VM's own cells, so every contract in a
        _m = 0      # memory left        transaction shares one counter of each
        def _factory():
            CONSTANT = 1
            def f(a, b):
                nonlocal _g, _d, _m
                _d += 1
                if _d > MAX_CALL_DEPTH: _deep()
                try:
                    _g -= 17                 # the static cost of the basic block
                    if _g < 0: _oog()
                    ...                      # the body, with wrappers for priced work
                finally:
                    _d -= 1
            return {"f": f}
        return _factory

Lowering rules (one place each, below):
- gas: each basic block (a run of simple statements, with the header of the compound
  statement that ends it) is charged its static cost before it runs; a loop body adds
  ITERATION; a comprehension is charged per iteration through a walrus in its `if`s.
- ints: a local whose every assignment is an int expression (constants, int locals,
  `range` loop variables, parameters annotated `int`, len(), int()) is "int-typed";
  arithmetic and comparisons between int-typed operands run as plain CPython, and the
  result is size-checked when it leaves its expression (stored, passed, returned, put in
  a container), so no int grows past MAX_INT_BITS and one expression can only multiply
  the sizes of its leaves.  `**` and `<<` always go through priced wrappers.
- everything else (operators on values of unknown type, subscripts, methods, attribute
  reads, builtins) goes through a wrapper that checks the exact types and charges by
  size before doing the work.
"""
from __future__ import annotations

import ast
import hashlib
import types
from dataclasses import dataclass

from vm import gas
from vm.host import pinned
from vm.limits import MAX_CALL_DEPTH, MAX_INT_BITS, MAX_LEN
from vm.sizes import LIST_BYTES, LIST_SLOT, TUPLE_BYTES, dict_bytes
from vm.validate import ContractInfo, ContractInvalid, Issue, validate

FILENAME_PREFIX = "<contract "
GAS, DEPTH, MEMORY = "_g", "_d", "_m"

# Operators that run raw on two int-typed operands: their result is at most one bit
# wider than the wider operand, or the sum of both widths for *.
_RAW_INT_OPS = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.FloorDiv: "_floordiv",
                ast.Mod: "_mod", ast.BitAnd: "_and", ast.BitOr: "_or", ast.BitXor: "_xor",
                ast.RShift: "_rshift"}
# Of those, the ones whose time grows with the product of the operands' sizes run raw
# only while both operands are below SMALL (guarded inline); bigger ones are priced.
_QUADRATIC_OPS = {ast.Mult, ast.FloorDiv, ast.Mod}
SMALL = 1 << 64
_WRAPPED_OPS = {ast.Pow: "_pow", ast.LShift: "_lshift", ast.Div: "_truediv"}
_BINOP_WRAPPERS = {**_RAW_INT_OPS, **_WRAPPED_OPS}
_INPLACE_WRAPPERS = {ast.Add: "_iadd", ast.Mult: "_imul"}  # list += and *= mutate in place
_CMP_WRAPPERS = {ast.Eq: "_eq", ast.NotEq: "_ne", ast.Lt: "_lt", ast.LtE: "_le", ast.Gt: "_gt",
                 ast.GtE: "_ge", ast.In: "_in", ast.NotIn: "_notin"}
_UNARY_WRAPPERS = {ast.USub: "_neg", ast.UAdd: "_pos", ast.Invert: "_inv"}
_INT_RESULT_CALLS = {"len", "int"}
# Annotations that are checked when a function is entered, by exact type.
CHECKED_ANNOTATIONS = ("int", "str", "bytes", "bool", "list", "dict", "tuple", "Decimal")


@dataclass(frozen=True)
class Compiled:
    """A contract ready to instantiate; cached by code hash (compiling is the slow part)."""

    code_hash: bytes
    source: str
    factory: types.CodeType
    exports: dict[str, tuple[str, ...]]  # exported function -> parameter names
    constructor: str | None


def signature(source: str, function: str) -> str | None:
    """`transfer_to(to: bytes, amount: int) -> bool`: a top-level function's parameters and return
    annotation as written, for telling a caller what it should have passed (messages only: never
    in a receipt).  None where the source has no such function."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
            return f"{function}({ast.unparse(node.args)}){returns}"
    return None


def code_hash(source: str) -> bytes:
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()


def contract_filename(h: bytes) -> str:
    """The co_filename of a contract's code objects, `<contract HASH16>`: never a real path,
    so no tracer or traceback mistakes it for a file of the host."""
    return FILENAME_PREFIX + h.hex()[:16] + ">"


def compile_contract(source: str, filename: str | None = None) -> Compiled:
    """Validate and compile; raises ContractInvalid listing every problem.  The source
    itself is never given to CPython's compiler: only the lowered module.  The host's
    settings decide nothing (vm/host.py): compile() never inherits -O or future flags.
    `filename` names the code objects (co_filename) instead of `<contract HASH>`: only
    tests give one (vm.runtime.name_code), so that a tracer sees a contract deployed from
    a file as that file; the bytecode, and so gas and results, are the same."""
    with pinned():
        info = validate(source, check_compile=False)
        lowering = _Lowering(info)
        module = lowering.module()
        if lowering.issues:
            raise ContractInvalid(lowering.issues)
        h = code_hash(source)
        try:  # the safety net validate() keeps for callers that do not compile
            code = compile(module, filename or contract_filename(h), "exec", optimize=0, dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise ContractInvalid([Issue(getattr(e, "lineno", None) or 1, getattr(e, "offset", None) or 1,
                                         f"cannot compile: {getattr(e, 'msg', e)}")]) from None
    outer = _const_code(code, "_outer")
    factory = _const_code(outer, "_factory")
    return Compiled(h, source, factory, {k: tuple(v) for k, v in info.exports.items()}, info.constructor)


def _const_code(code: types.CodeType, name: str) -> types.CodeType:
    for c in code.co_consts:
        if isinstance(c, types.CodeType) and c.co_name == name:
            return c
    raise AssertionError(f"compiled module lacks {name}")


# ---- small AST builders ------------------------------------------------------------------

def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _call(fn: str, *args: ast.expr, keywords: list[ast.keyword] | None = None) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=keywords or [])


def _const(v: object) -> ast.Constant:
    return ast.Constant(value=v)


def _charge(counter: str, amount: int, raiser: str) -> list[ast.stmt]:
    """`counter -= amount; if counter < 0: raiser()`"""
    return [ast.AugAssign(target=_name(counter, True), op=ast.Sub(), value=_const(amount)),
            ast.If(test=ast.Compare(left=_name(counter), ops=[ast.Lt()], comparators=[_const(0)]),
                   body=[ast.Expr(_call(raiser))], orelse=[])]


def _inline_charge(counter: str, amount: int, raiser: str) -> ast.expr:
    """`(counter := counter - amount) >= 0 or raiser()`: a charge inside an expression."""
    walrus = ast.NamedExpr(target=_name(counter, True),
                           value=ast.BinOp(left=_name(counter), op=ast.Sub(), right=_const(amount)))
    return ast.BoolOp(op=ast.Or(), values=[
        ast.Compare(left=walrus, ops=[ast.GtE()], comparators=[_const(0)]), _call(raiser)])


def _inline_count(counter: str) -> ast.expr:
    """`(counter := counter + 1) <= MAX_LEN or _toolong()`: one more result of a
    comprehension, which may make no more than MAX_LEN."""
    walrus = ast.NamedExpr(target=_name(counter, True),
                           value=ast.BinOp(left=_name(counter), op=ast.Add(), right=_const(1)))
    return ast.BoolOp(op=ast.Or(), values=[
        ast.Compare(left=walrus, ops=[ast.LtE()], comparators=[_const(MAX_LEN)]), _call("_toolong")])


# ---- static costs ------------------------------------------------------------------------

_FREE = (ast.expr_context, ast.operator, ast.cmpop, ast.boolop, ast.unaryop, ast.arguments, ast.arg,
         ast.keyword, ast.comprehension)


def static_costs(node: ast.AST) -> tuple[int, int]:
    """(gas, memory) of a statement or expression: NODE per statement/expression node,
    and the bytes its list, tuple and dict literals allocate; the parts of a
    comprehension that run per iteration are charged inside it instead."""
    cost = mem = 0
    todo = [node]
    while todo:
        n = todo.pop()
        if not isinstance(n, _FREE):
            cost += gas.NODE
        if isinstance(n, (ast.List, ast.Tuple)) and isinstance(n.ctx, ast.Load):
            mem += (LIST_BYTES if isinstance(n, ast.List) else TUPLE_BYTES) + 8 * len(n.elts)
            cost += gas.RESULT * _kept_count(n.elts)
        elif isinstance(n, ast.Dict):
            mem += dict_bytes(len(n.keys))
            cost += gas.KEY * _kept_count(n.keys) + gas.RESULT * _kept_count(n.values)
        elif isinstance(n, (ast.ListComp, ast.DictComp)):
            todo.append(n.generators[0].iter)
            continue
        for field in n._fields:
            v = getattr(n, field, None)
            if isinstance(v, list):
                todo.extend(x for x in v if isinstance(x, ast.AST))
            elif isinstance(v, ast.AST):
                todo.append(v)
    return cost, mem


def static_cost(node: ast.AST) -> int:
    return static_costs(node)[0]


def _kept_count(elts: list) -> int:
    """The elements of a literal that go through a check as they are kept (Transformer.element,
    Transformer.key): all but constants."""
    return sum(1 for x in elts if x is not None and not isinstance(x, ast.Constant))


# ---- int-typed locals --------------------------------------------------------------------

def _is_range_call(e: ast.expr) -> bool:
    return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "range"


def is_int_expr(e: ast.expr, ints: set[str]) -> bool:
    """Whether `e` always evaluates to an int (never a bool), given int-typed locals."""
    if isinstance(e, ast.Constant):
        return type(e.value) is int
    if isinstance(e, ast.Name):
        return e.id in ints
    if isinstance(e, ast.BinOp):
        return (type(e.op) in _RAW_INT_OPS or type(e.op) in (ast.Pow, ast.LShift)) \
            and is_int_expr(e.left, ints) and is_int_expr(e.right, ints)
    if isinstance(e, ast.UnaryOp):
        return isinstance(e.op, (ast.USub, ast.UAdd, ast.Invert)) and is_int_expr(e.operand, ints)
    if isinstance(e, ast.IfExp):
        return is_int_expr(e.body, ints) and is_int_expr(e.orelse, ints)
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        return e.func.id in _INT_RESULT_CALLS
    return False


def int_locals(fn: ast.FunctionDef) -> set[str]:
    """The locals of `fn` that only ever hold ints (the greatest fixpoint)."""
    bindings: list[tuple[str, ast.expr | None]] = []  # None: bound to something unknown
    for p in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs:
        known = isinstance(p.annotation, ast.Name) and p.annotation.id == "int"
        bindings.append((p.arg, _const(0) if known else None))
    todo: list[ast.AST] = list(fn.body)
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.ListComp, ast.DictComp)):
            for g in n.generators:  # comprehension variables shadow locals: never int-typed
                bindings.extend((t.id, None) for t in ast.walk(g.target) if isinstance(t, ast.Name))
        if isinstance(n, ast.Assign):
            for t in n.targets:
                if isinstance(t, ast.Name):
                    bindings.append((t.id, n.value))
                else:
                    bindings.extend((x.id, None) for x in ast.walk(t) if isinstance(x, ast.Name))
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            bindings.append((n.target.id, n.value))
        elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            bindings.append((n.target.id, ast.BinOp(left=_name(n.target.id), op=n.op, right=n.value)))
        elif isinstance(n, ast.For):
            if isinstance(n.target, ast.Name):
                bindings.append((n.target.id, _const(0) if _is_range_call(n.iter) else None))
            else:
                bindings.extend((x.id, None) for x in ast.walk(n.target) if isinstance(x, ast.Name))
        todo.extend(ast.iter_child_nodes(n))
    ints = {name for name, _ in bindings}
    changed = True
    while changed:
        changed = False
        for name, value in bindings:
            if name in ints and (value is None or not is_int_expr(value, ints)):
                ints.discard(name)
                changed = True
    return ints


def _is_raw_arith(e: ast.expr, ints: set[str]) -> bool:
    """An int expression computed by plain CPython arithmetic, not yet size-checked."""
    if isinstance(e, ast.BinOp):
        return type(e.op) in _RAW_INT_OPS and is_int_expr(e, ints)
    if isinstance(e, ast.UnaryOp):
        return not isinstance(e.op, ast.Not) and is_int_expr(e, ints)
    if isinstance(e, ast.IfExp):  # only when both branches are ints: else see e_IfExp
        return is_int_expr(e, ints) and (_is_raw_arith(e.body, ints) or _is_raw_arith(e.orelse, ints))
    return False


# ---- the lowering ------------------------------------------------------------------------

class _Lowering:
    def __init__(self, info: ContractInfo):
        self.info = info
        self.issues: list[Issue] = []
        self.ints: set[str] = set()
        self.temps = 0

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def module(self) -> ast.Module:
        factory_body: list[ast.stmt] = []
        names = []
        for stmt in self.info.tree.body:
            if isinstance(stmt, ast.Assign):
                factory_body.append(ast.copy_location(ast.Assign(targets=stmt.targets, value=self.fold(stmt.value)),
                                                      stmt))
            elif isinstance(stmt, ast.FunctionDef):
                factory_body.append(self.function(stmt))
                names.append(stmt.name)
        factory_body.append(ast.Return(ast.Dict(keys=[_const(n) for n in names], values=[_name(n) for n in names])))
        factory = ast.FunctionDef(name="_factory", args=_no_args(), body=factory_body, decorator_list=[],
                                  returns=None, type_params=[])
        outer = ast.FunctionDef(
            name="_outer", args=_no_args(), decorator_list=[], returns=None, type_params=[],
            body=[ast.Assign(targets=[_name(c, True)], value=_const(0)) for c in (GAS, DEPTH, MEMORY)]
            + [factory, ast.Return(_name("_factory"))])
        for n in (outer, factory, *outer.body, factory_body[-1]):
            _locate(n, 1)
        return ast.fix_missing_locations(ast.Module(body=[outer], type_ignores=[]))

    def fold(self, e: ast.expr) -> ast.expr:
        """A constant (module level or a default value) computed now, within the VM's int
        limit: nothing runs unmetered when the contract is instantiated."""
        try:
            return ast.copy_location(_const(_fold(e)), e)
        except ValueError as err:
            self.issues.append(Issue(e.lineno, e.col_offset + 1, str(err)))
            return _const(None)

    # ---- functions and blocks --------------------------------------------------------

    def function(self, fn: ast.FunctionDef) -> ast.FunctionDef:
        self.ints = int_locals(fn)
        checks: list[ast.stmt] = []
        for p in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs:
            if isinstance(p.annotation, ast.Name) and p.annotation.id in CHECKED_ANNOTATIONS:
                checks.append(ast.Expr(_call("_argtype", _name(p.arg), _const(p.annotation.id), _const(p.arg))))
        body = self.block(fn.body, gas.CALL + gas.NODE * len(checks))
        entry = body[:2] + checks + body[2:]  # the charge first, then the checks it paid for
        enter = [ast.Nonlocal(names=[GAS, DEPTH, MEMORY]),
                 ast.AugAssign(target=_name(DEPTH, True), op=ast.Add(), value=_const(1)),
                 ast.If(test=ast.Compare(left=_name(DEPTH), ops=[ast.Gt()], comparators=[_const(MAX_CALL_DEPTH)]),
                        body=[ast.Expr(_call("_deep"))], orelse=[]),
                 ast.Try(body=entry, handlers=[], orelse=[],
                         finalbody=[ast.AugAssign(target=_name(DEPTH, True), op=ast.Sub(), value=_const(1))])]
        for s in enter:
            _locate(s, fn.lineno, fn.col_offset)
        args = fn.args
        for p in args.posonlyargs + args.args + args.kwonlyargs:
            p.annotation = None
        args.defaults = [self.fold(d) for d in args.defaults]
        args.kw_defaults = [None if d is None else self.fold(d) for d in args.kw_defaults]
        new = ast.FunctionDef(name=fn.name, args=args, body=enter, decorator_list=[], returns=None,
                              type_params=[])
        return ast.copy_location(new, fn)

    def block(self, stmts: list[ast.stmt], extra: int = 0) -> list[ast.stmt]:
        """Lower a statement list, charging each basic block before it runs."""
        out: list[ast.stmt] = []
        group: list[ast.stmt] = []

        def flush(cost: int, mem: int) -> None:
            anchor = group[0] if group else (stmts[0] if stmts else None)
            charge = _charge(GAS, cost, "_oog") + (_charge(MEMORY, mem, "_oom") if mem else [])
            if anchor is not None:
                for c in charge:
                    _locate(c, anchor.lineno, anchor.col_offset)
            out.extend(charge)
            for s in group:
                out.extend(self.stmt(s))

        cost, mem = extra, 0
        for s in stmts:
            group.append(s)
            if isinstance(s, (ast.If, ast.For, ast.While)):
                header = s.test if isinstance(s, (ast.If, ast.While)) else s.iter
                c, m = static_costs(header)
                cost += gas.NODE + c
                mem += m
                flush(cost, mem)
                group, cost, mem = [], 0, 0
            else:
                c, m = static_costs(s)
                cost += c
                mem += m
        if group or not out:
            flush(cost, mem)
        return out

    # ---- statements ----------------------------------------------------------------

    def stmt(self, s: ast.stmt) -> list[ast.stmt]:
        out = getattr(self, "s_" + type(s).__name__)(s)
        for n in out:
            _locate(n, s.lineno, s.col_offset)
        return out

    def s_Expr(self, s: ast.Expr) -> list[ast.stmt]:
        return [ast.Expr(self.expr(s.value))]

    def s_Pass(self, s: ast.stmt) -> list[ast.stmt]:
        return [s]

    s_Break = s_Continue = s_Pass

    def s_Return(self, s: ast.Return) -> list[ast.stmt]:
        return [ast.Return(None if s.value is None else self.value(s.value))]

    def s_Assign(self, s: ast.Assign) -> list[ast.stmt]:
        if len(s.targets) == 1:
            return self.assign(s.targets[0], s.value)
        t = self.temp()
        out: list[ast.stmt] = [ast.Assign(targets=[_name(t, True)], value=self.value(s.value))]
        for target in s.targets:
            out.extend(self.assign_from(target, _name(t)))
        return out

    def s_AnnAssign(self, s: ast.AnnAssign) -> list[ast.stmt]:
        assert s.value is not None
        return self.assign(s.target, s.value)

    def assign(self, target: ast.expr, value: ast.expr) -> list[ast.stmt]:
        if isinstance(target, ast.Name):
            out: list[ast.stmt] = [ast.Assign(targets=[_name(target.id, True)], value=self.expr(value))]
            if _is_raw_arith(value, self.ints):
                out.append(self.int_check(target.id))
            return out
        if _names_only(target):  # a, b = x: _unpack says what is wrong when x does not fit
            checked = _call("_unpack", self.value(value), _const(len(target.elts)))
            return [ast.Assign(targets=[self.store_target(target)], value=checked)]
        t = self.temp()
        return [ast.Assign(targets=[_name(t, True)], value=self.value(value))] + self.assign_from(target, _name(t))

    def assign_from(self, target: ast.expr, source: ast.expr) -> list[ast.stmt]:
        """Assign an already computed value to any target, in Python's order."""
        if isinstance(target, ast.Name):
            return [ast.Assign(targets=[_name(target.id, True)], value=source)]
        if isinstance(target, ast.Subscript):
            return [ast.Expr(self.setitem(target, source))]
        assert isinstance(target, (ast.Tuple, ast.List))
        t = self.temp()
        out: list[ast.stmt] = [ast.Assign(targets=[_name(t, True)],
                                          value=_call("_unpack", source, _const(len(target.elts))))]
        for i, e in enumerate(target.elts):
            out.extend(self.assign_from(e, ast.Subscript(value=_name(t), slice=_const(i), ctx=ast.Load())))
        return out

    def store_target(self, t: ast.expr) -> ast.expr:
        if isinstance(t, ast.Name):
            return _name(t.id, True)
        assert isinstance(t, (ast.Tuple, ast.List))
        return ast.Tuple(elts=[self.store_target(e) for e in t.elts], ctx=ast.Store())

    def setitem(self, target: ast.Subscript, value: ast.expr) -> ast.expr:
        obj, sl = target.value, target.slice
        if isinstance(sl, ast.Slice):
            return _call("_setslice", self.expr(obj), *self.slice_parts(sl), value)
        if _is_storage(obj):
            return _call("_sstore", self.value(sl), value)
        return _call("_setitem", self.expr(obj), self.value(sl), value)

    def int_check(self, name: str) -> ast.stmt:
        """`if name.bit_length() > 512: _ck(name)` for an int-typed local: _ck bounds it
        by MAX_INT_BITS and counts a big one as memory (`y = x + i` in a loop makes a new
        512-byte int each time for a 4096-bit x)."""
        bits = ast.Call(func=ast.Attribute(value=_name(name), attr="bit_length", ctx=ast.Load()), args=[],
                        keywords=[])
        return ast.If(test=ast.Compare(left=bits, ops=[ast.Gt()], comparators=[_const(512)]),
                      body=[ast.Expr(_call("_ck", _name(name)))], orelse=[])

    def s_AugAssign(self, s: ast.AugAssign) -> list[ast.stmt]:
        target, op = s.target, type(s.op)
        if isinstance(target, ast.Name):
            if op in _QUADRATIC_OPS and is_int_expr(target, self.ints) and is_int_expr(s.value, self.ints):
                return self.assign(target, ast.BinOp(left=_name(target.id), op=s.op, right=s.value))
            if is_int_expr(target, self.ints) and is_int_expr(s.value, self.ints) and op in _RAW_INT_OPS:
                return [ast.AugAssign(target=_name(target.id, True), op=s.op, value=self.expr(s.value)),
                        self.int_check(target.id)]
            fn = _INPLACE_WRAPPERS.get(op, _BINOP_WRAPPERS[op])
            new = _call(fn, _name(target.id), self.value(s.value))
            out: list[ast.stmt] = [ast.Assign(targets=[_name(target.id, True)], value=new)]
            if target.id in self.ints:  # the wrappers check sizes; keep the local an int
                out.append(self.int_check(target.id))
            return out
        assert isinstance(target, ast.Subscript)
        fn = _BINOP_WRAPPERS[op] if op not in _INPLACE_WRAPPERS else _INPLACE_WRAPPERS[op]
        obj, key = self.temp(), self.temp()
        out = [ast.Assign(targets=[_name(obj, True)], value=self.expr(target.value))]
        if isinstance(target.slice, ast.Slice):
            parts = [self.temp() for _ in range(3)]
            for p, e in zip(parts, self.slice_parts(target.slice)):
                out.append(ast.Assign(targets=[_name(p, True)], value=e))
            current = _call("_getslice", _name(obj), *map(_name, parts))
            out.append(ast.Expr(_call("_setslice", _name(obj), *map(_name, parts),
                                      _call(fn, current, self.value(s.value)))))
            return out
        out.append(ast.Assign(targets=[_name(key, True)], value=self.value(target.slice)))
        if _is_storage(target.value):
            current = _call("_sload", _name(key))
            out.append(ast.Expr(_call("_sstore", _name(key), _call(fn, current, self.value(s.value)))))
        else:
            current = _call("_getitem", _name(obj), _name(key))
            out.append(ast.Expr(_call("_setitem", _name(obj), _name(key), _call(fn, current, self.value(s.value)))))
        return out

    def s_Delete(self, s: ast.Delete) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for t in s.targets:
            assert isinstance(t, ast.Subscript)
            if isinstance(t.slice, ast.Slice):
                out.append(ast.Expr(_call("_delslice", self.expr(t.value), *self.slice_parts(t.slice))))
            elif _is_storage(t.value):
                out.append(ast.Expr(_call("_sdel", self.value(t.slice))))
            else:
                out.append(ast.Expr(_call("_delitem", self.expr(t.value), self.value(t.slice))))
        return out

    def s_If(self, s: ast.If) -> list[ast.stmt]:
        return [ast.If(test=self.expr(s.test), body=self.block(s.body),
                       orelse=self.block(s.orelse) if s.orelse else [])]

    def s_While(self, s: ast.While) -> list[ast.stmt]:
        per_iteration = gas.ITERATION + static_cost(s.test)
        return [ast.While(test=self.expr(s.test), body=self.block(s.body, per_iteration),
                          orelse=self.block(s.orelse) if s.orelse else [])]

    def s_For(self, s: ast.For) -> list[ast.stmt]:
        it = _call("_iter", self.expr(s.iter))  # a range too: its items may be big ints
        per_iteration = gas.ITERATION + static_cost(s.target)
        if _names_only(s.target):
            target, unpack = self.store_target(s.target), []
        else:
            t = self.temp()
            target, unpack = _name(t, True), self.assign_from(s.target, _name(t))
            for u in unpack:
                _locate(u, s.lineno, s.col_offset)
        body = self.block(s.body, per_iteration)
        body = body[:2] + unpack + body[2:]
        return [ast.For(target=target, iter=it, body=body, orelse=self.block(s.orelse) if s.orelse else [])]

    # ---- expressions --------------------------------------------------------------

    def value(self, e: ast.expr) -> ast.expr:
        """An expression whose value leaves its expression: size-check raw int arithmetic."""
        out = self.expr(e)
        if _is_raw_arith(e, self.ints):
            return _call("_ck", out)
        return out

    def expr(self, e: ast.expr) -> ast.expr:
        new = getattr(self, "e_" + type(e).__name__)(e)
        return ast.copy_location(new, e)

    def e_Constant(self, e: ast.Constant) -> ast.expr:
        if type(e.value) is int and e.value.bit_length() > MAX_INT_BITS:
            self.issues.append(Issue(e.lineno, e.col_offset + 1, f"integer constant over {MAX_INT_BITS} bits"))
        return e

    def e_Name(self, e: ast.Name) -> ast.expr:
        return e

    def e_BinOp(self, e: ast.BinOp) -> ast.expr:
        op = type(e.op)
        left, right = self.expr(e.left), self.expr(e.right)
        if op in _RAW_INT_OPS and is_int_expr(e.left, self.ints) and is_int_expr(e.right, self.ints):
            raw = ast.BinOp(left=left, op=e.op, right=right)
            if op not in _QUADRATIC_OPS:
                return raw  # linear in the operands' size, which is bounded: a static cost covers it
            unguarded = [x for x in (left, right) if not _small_constant(x)]
            if len(unguarded) == 2 and all(isinstance(x, ast.Name) for x in unguarded) \
                    and unguarded[0].id == unguarded[1].id:
                unguarded.pop()  # i * i: one check
            guards = [_is_small(x) for x in unguarded]
            if all(isinstance(x, (ast.Name, ast.Constant)) for x in (left, right)):
                if not guards:
                    return raw
                test = guards[0] if len(guards) == 1 else ast.BoolOp(op=ast.And(), values=guards)
                return ast.IfExp(test=test, body=raw, orelse=_call(_BINOP_WRAPPERS[op], left, right))
        return _call(_BINOP_WRAPPERS[op], left, right)

    def e_UnaryOp(self, e: ast.UnaryOp) -> ast.expr:
        if isinstance(e.op, ast.Not) or is_int_expr(e.operand, self.ints):
            return ast.UnaryOp(op=e.op, operand=self.expr(e.operand))
        return _call(_UNARY_WRAPPERS[type(e.op)], self.expr(e.operand))

    def e_BoolOp(self, e: ast.BoolOp) -> ast.expr:
        return ast.BoolOp(op=e.op, values=[self.expr(v) for v in e.values])

    def e_IfExp(self, e: ast.IfExp) -> ast.expr:
        if is_int_expr(e, self.ints):  # an int either way: checked where it leaves (value, int_check)
            return ast.IfExp(test=self.expr(e.test), body=self.expr(e.body), orelse=self.expr(e.orelse))
        # `-x if c else s` may be a str: a raw int branch is checked on its own
        return ast.IfExp(test=self.expr(e.test), body=self.value(e.body), orelse=self.value(e.orelse))

    def e_Compare(self, e: ast.Compare) -> ast.expr:
        operands = [e.left, *e.comparators]
        parts = []
        for i, op in enumerate(e.ops):
            a, b = operands[i], operands[i + 1]
            if isinstance(op, (ast.Is, ast.IsNot)) or (is_int_expr(a, self.ints) and is_int_expr(b, self.ints)):
                parts.append(ast.Compare(left=self.expr(a), ops=[op], comparators=[self.expr(b)]))
            else:
                parts.append(_call(_CMP_WRAPPERS[type(op)], self.expr(a), self.expr(b)))
        # the validator allows only names and constants in the middle of a chain, so
        # evaluating them twice is the same as Python's once
        return parts[0] if len(parts) == 1 else ast.BoolOp(op=ast.And(), values=parts)

    def element(self, e: ast.expr) -> ast.expr:
        """A value put in the container being built: the int or Decimal it may keep alive
        counts as memory (vm.sizes._kept); a constant is shared."""
        if isinstance(e, ast.Constant):
            return self.expr(e)
        return _call("_kept", self.value(e))

    def e_List(self, e: ast.List) -> ast.expr:
        return ast.List(elts=[self.element(x) for x in e.elts], ctx=ast.Load())

    def e_Tuple(self, e: ast.Tuple) -> ast.expr:
        return ast.Tuple(elts=[self.element(x) for x in e.elts], ctx=ast.Load())

    def key(self, k: ast.expr) -> ast.expr:
        if isinstance(k, ast.Constant) and (type(k.value) in (str, bytes, bool) or k.value is None or (
                type(k.value) is int and abs(k.value) < 2**61 - 1)):
            return k
        return _call("_key", self.element(k))

    def e_Dict(self, e: ast.Dict) -> ast.expr:
        return ast.Dict(keys=[self.key(k) for k in e.keys], values=[self.element(v) for v in e.values])

    def comprehension(self, gens: list[ast.comprehension], result_cost: int, result_mem: int,
                      counter: str) -> list[ast.comprehension]:
        """`result_mem`: the bytes each result takes (its slot and the literals that make it).
        Each iteration is charged before its `if`s; each result is counted (`counter`,
        at most MAX_LEN) and its memory charged after them, before it is made."""
        out = []
        for i, g in enumerate(gens):
            last = i == len(gens) - 1
            per = gas.ITERATION + static_cost(g.target) + sum(static_cost(c) for c in g.ifs)
            per += gas.RESULT + result_cost if last else static_cost(gens[i + 1].iter)
            it = _call("_iter", self.expr(g.iter))  # a range too: its items may be big ints
            ifs = [_inline_charge(GAS, per, "_oog")] + [self.expr(c) for c in g.ifs]
            if last:
                ifs += [_inline_count(counter), _inline_charge(MEMORY, result_mem, "_oom")]
            out.append(ast.comprehension(target=self.store_target(g.target) if _names_only(g.target) else g.target,
                                         iter=it, ifs=ifs, is_async=0))
        return out

    def counted(self, comp: ast.expr, counter: str) -> ast.expr:
        """`(counter := 0) or comp`: the comprehension's count of results starts at 0 (a
        local of the function: a walrus in a comprehension binds there)."""
        start = ast.NamedExpr(target=_name(counter, True), value=_const(0))
        return ast.BoolOp(op=ast.Or(), values=[start, comp])

    def e_ListComp(self, e: ast.ListComp) -> ast.expr:
        cost, mem = static_costs(e.elt)
        counter = self.temp()
        gens = self.comprehension(e.generators, cost, LIST_SLOT + mem, counter)
        return self.counted(ast.ListComp(elt=self.element(e.elt), generators=gens), counter)

    def e_DictComp(self, e: ast.DictComp) -> ast.expr:
        (kc, km), (vc, vm) = static_costs(e.key), static_costs(e.value)
        counter = self.temp()
        entry = dict_bytes(2) - dict_bytes(1)  # as d[k] = v counts
        gens = self.comprehension(e.generators, kc + vc + gas.KEY * _kept_count([e.key]), entry + km + vm, counter)
        comp = ast.DictComp(key=self.key(e.key), value=self.element(e.value), generators=gens)
        return self.counted(comp, counter)

    def e_Call(self, e: ast.Call) -> ast.expr:
        args = [self.value(a) for a in e.args]
        keywords = [ast.keyword(arg=k.arg, value=self.value(k.value)) for k in e.keywords]
        if isinstance(e.func, ast.Attribute):
            if e.func.attr == "get" and _is_storage(e.func.value) and not keywords and 1 <= len(args) <= 2:
                return _call("_sget_or", *args)  # storage.get(key, default): the hot path of most contracts
            return _call("_m_" + e.func.attr, self.expr(e.func.value), *args, keywords=keywords)
        return ast.Call(func=self.expr(e.func), args=args, keywords=keywords)

    def e_Attribute(self, e: ast.Attribute) -> ast.expr:
        return _call("_attr", self.expr(e.value), _const(e.attr))

    def slice_parts(self, s: ast.Slice) -> list[ast.expr]:
        return [_const(None) if p is None else self.value(p) for p in (s.lower, s.upper, s.step)]

    def e_Subscript(self, e: ast.Subscript) -> ast.expr:
        if isinstance(e.slice, ast.Slice):
            return _call("_getslice", self.expr(e.value), *self.slice_parts(e.slice))
        if _is_storage(e.value):
            return _call("_sload", self.value(e.slice))
        return _call("_getitem", self.expr(e.value), self.value(e.slice))


def _fold(e: ast.expr) -> object:
    if isinstance(e, ast.Constant):
        v = e.value
    elif isinstance(e, ast.Tuple):
        return tuple(_fold(x) for x in e.elts)
    elif isinstance(e, ast.UnaryOp):
        v = _fold(e.operand)
        v = -v if isinstance(e.op, ast.USub) else ~v if isinstance(e.op, ast.Invert) else v
    else:
        assert isinstance(e, ast.BinOp)
        a, b = _fold(e.left), _fold(e.right)
        v = _fold_binop(type(e.op), a, b)
    if type(v) is int and v.bit_length() > MAX_INT_BITS:
        raise ValueError(f"integer constant over {MAX_INT_BITS} bits")
    return v


def _fold_binop(op: type, a: int, b: int) -> int:
    if op in (ast.FloorDiv, ast.Mod) and b == 0:
        raise ValueError("division by zero in a constant")
    if op in (ast.Pow, ast.LShift, ast.RShift) and b < 0:
        raise ValueError("negative exponent or shift count in a constant")
    if op is ast.Pow and abs(a) > 1 and (abs(a).bit_length() - 1) * b >= MAX_INT_BITS:
        raise ValueError(f"integer constant over {MAX_INT_BITS} bits")
    if op is ast.LShift and a and a.bit_length() + b > MAX_INT_BITS:
        raise ValueError(f"integer constant over {MAX_INT_BITS} bits")
    if op is ast.RShift:
        return a >> min(b, MAX_INT_BITS + 1)
    return {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__, ast.FloorDiv: int.__floordiv__,
            ast.Mod: int.__mod__, ast.Pow: int.__pow__, ast.LShift: int.__lshift__, ast.BitAnd: int.__and__,
            ast.BitOr: int.__or__, ast.BitXor: int.__xor__}[op](a, b)


def _small_constant(e: ast.expr) -> bool:
    return isinstance(e, ast.Constant) and type(e.value) is int and -SMALL < e.value < SMALL


def _is_small(e: ast.expr) -> ast.expr:
    """`-SMALL < e < SMALL` (e is a name or constant: evaluating it twice is harmless)."""
    return ast.Compare(left=_const(-SMALL), ops=[ast.Lt(), ast.Lt()], comparators=[e, _const(SMALL)])


def _is_storage(e: ast.expr) -> bool:
    return isinstance(e, ast.Name) and e.id == "storage"


def _names_only(t: ast.expr) -> bool:
    if isinstance(t, ast.Name):
        return True
    return isinstance(t, (ast.Tuple, ast.List)) and all(_names_only(x) for x in t.elts)


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                         defaults=[])


def _locate(node: ast.AST, line: int, col: int = 0) -> None:
    """Give a generated node the position of the source statement it stands for; its
    generated children inherit it in ast.fix_missing_locations (one pass at the end)."""
    if "lineno" in node._attributes and getattr(node, "lineno", None) is None:
        node.lineno, node.col_offset = line, col
        node.end_lineno, node.end_col_offset = line, col
