"""Deploy-time validation: the contract language is exactly what this file accepts.

Reject by default (as Vyper's analysis does): every AST node type needs an explicit rule
below, so a node type added by a future CPython is refused until someone decides on it.
Names, builtins and attribute names are whitelists, never blacklists: Python sandboxes
fall to attribute walks (`().__class__.__mro__`), generator frames, format strings,
exceptions that catch the VM's own errors, and builtins taken as values (DESIGN 3a).
Every error of a contract is reported at once, each with its line and column, what is
not allowed, and what to use instead.
"""
from __future__ import annotations

import ast
import bisect
import io
import re
import tokenize
from dataclasses import dataclass, field

from vm.host import pinned
from vm.limits import MAX_INT_BITS

MAX_SOURCE_BYTES = 64 * 1024
MAX_AST_DEPTH = 100
MAX_LOOP_NESTING = 16  # CPython refuses 20 statically nested blocks; stay clear of it
MAX_COMPREHENSION_NESTING = 8  # CPython 3.12.1 and 3.13.0 crash compiling about 20 (inlined since 3.12)

# Builtins a contract may call. The runtime provides each as its own wrapper, priced by
# its operands' size before it runs, so taking one as a value is harmless.
BUILTINS = frozenset({
    "abs", "all", "any", "bool", "bytes", "dict", "divmod", "enumerate", "int", "isinstance",
    "len", "list", "max", "min", "pow", "print", "range", "reversed", "sorted", "str", "sum",
    "tuple", "zip",
})
# Names the VM injects into every contract (DESIGN 3).
INJECTED = frozenset({"storage", "ctx", "emit", "require", "transfer", "call", "Decimal", "ml"})
DECORATORS = frozenset({"export", "constructor"})
# The only attribute names a contract may write, as methods of the value types
# (list, dict, str, bytes, int) and fields of `ctx`. The runtime dispatches each on the
# value's exact type to a priced implementation; anything else is an error at run time.
METHODS = frozenset({
    # list
    "append", "extend", "insert", "pop", "remove", "index", "count", "reverse", "sort", "copy", "clear",
    # dict
    "get", "keys", "values", "items", "setdefault", "update",
    # str and bytes
    "upper", "lower", "strip", "lstrip", "rstrip", "split", "join", "replace", "startswith",
    "endswith", "find", "encode", "decode", "hex", "fromhex",
    # int
    "to_bytes", "from_bytes", "bit_length",
})
# str.isalpha/isdigit are left out: their answers follow each CPython's Unicode tables.
CTX_FIELDS = frozenset({"sender", "caller", "this", "block_height", "block_time", "chain_id", "value",
                        "balance"})
# The ML API (vm/ml.py): the methods of `ml` and of tensors, and the fields of tensors and
# models.  Dispatched like the others, on the exact type, to priced implementations.
ML_METHODS = frozenset({"model", "tensor", "concat", "train", "predict", "probabilities", "evaluate", "average",
                        "job_model", "tolist"})
ML_FIELDS = frozenset({"shape", "format", "size", "kind", "layers", "params"})
ATTRIBUTES = METHODS | CTX_FIELDS | ML_METHODS | ML_FIELDS
# Names a type annotation may use (annotations are documentation; the compiler drops them).
TYPE_NAMES = frozenset({"int", "str", "bytes", "bool", "list", "dict", "tuple", "None", "Decimal"})

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

_BINOPS = {ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
           ast.BitOr, ast.BitXor, ast.BitAnd}
_UNARYOPS = {ast.Not, ast.USub, ast.UAdd, ast.Invert}
_CMPOPS = {ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot}

# What to say about node types that are left out, and what to use instead.
_LEFT_OUT = {
    "Import": "import is not allowed: the VM injects storage, ctx, emit, require, transfer, call and Decimal",
    "ImportFrom": "import is not allowed: the VM injects storage, ctx, emit, require, transfer, call and Decimal",
    "ClassDef": "class definitions are not allowed: use functions, dicts and tuples",
    "Try": "try/except is not allowed: revert with require(condition, message)",
    "TryStar": "try/except* is not allowed: revert with require(condition, message)",
    "Raise": "raise is not allowed: revert with require(condition, message)",
    "Assert": "assert is not allowed: use require(condition, message)",
    "With": "with is not allowed",
    "AsyncWith": "async is not allowed",
    "AsyncFor": "async is not allowed",
    "AsyncFunctionDef": "async functions are not allowed",
    "Await": "await is not allowed",
    "Global": "global is not allowed: keep state in storage",
    "Nonlocal": "nonlocal is not allowed",
    "Lambda": "lambda is not allowed: define a module-level function",
    "Yield": "generators are not allowed: return a list",
    "YieldFrom": "generators are not allowed: return a list",
    "GeneratorExp": "generator expressions are not allowed: use a list comprehension [...]",
    "Set": "sets are not allowed (their order depends on hashing): use a dict or a list",
    "SetComp": "sets are not allowed (their order depends on hashing): use a dict or a list",
    "Match": "match is not allowed: use if/elif",
    "NamedExpr": "the walrus operator := is not allowed: assign on its own line",
    "Starred": "* unpacking is not allowed: pass the values one by one",
    "JoinedStr": "f-strings are not allowed: build text with str() and +",
    "FormattedValue": "f-strings are not allowed: build text with str() and +",
    "TypeAlias": "type aliases are not allowed",
    "Delete": "del is only allowed on a subscript: del d[key]",
}


@dataclass(frozen=True)
class Issue:
    line: int
    col: int  # 1-based, as editors count
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.col}: {self.message}"


class ContractInvalid(Exception):
    """A contract the VM refuses; `issues` holds every reason, in source order."""

    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues, key=lambda i: (i.line, i.col, i.message))
        super().__init__("invalid contract:\n" + "\n".join(f"  {i}" for i in self.issues))


@dataclass
class ContractInfo:
    """What deployment needs to know about a valid contract."""

    tree: ast.Module
    exports: dict[str, list[str]] = field(default_factory=dict)  # name -> parameter names
    constructor: str | None = None
    functions: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)


def validate(source: str, check_compile: bool = True) -> ContractInfo:
    """Parse and check a contract; ContractInvalid lists every problem.  `check_compile`
    runs CPython's compiler as a final safety net (vm.compiler compiles anyway)."""
    if not isinstance(source, str):
        raise ContractInvalid([Issue(1, 1, "contract source must be text")])
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise ContractInvalid([Issue(1, 1, f"contract source is over {MAX_SOURCE_BYTES} bytes")])
    # Line endings are \n (\r\n is read as \n): CPython versions disagree on a lone \r.
    source = source.replace("\r\n", "\n")
    for ch, what in (("\x00", "a NUL character"), ("\r", "a carriage return without a line feed")):
        if ch in source:
            line = source.count("\n", 0, source.index(ch)) + 1
            raise ContractInvalid([Issue(line, 1, f"contract source holds {what}")])
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as e:
        line = source.count("\n", 0, e.start) + 1
        raise ContractInvalid([Issue(line, 1, "contract source is not valid UTF-8 text (a lone surrogate)")]) from None
    hidden = _invisible_characters(source)
    if hidden:
        raise ContractInvalid(hidden)
    # Python NFKC-normalises identifiers, so `ｅｖａｌ` would reach the AST as `eval`
    ascii_issues = [] if source.isascii() else _check_identifiers_ascii(source)
    with pinned():  # the host's digit limit, recursion limit and warning filters must not decide
        try:
            tree = ast.parse(source, mode="exec")
        except SyntaxError as e:
            raise ContractInvalid(ascii_issues + [Issue(e.lineno or 1, e.offset or 1, f"syntax error: {e.msg}")]) \
                from None
        except (RecursionError, MemoryError, ValueError):
            raise ContractInvalid([Issue(1, 1, "contract is nested too deeply to parse")]) from None
        checker = _Checker(source)
        info = checker.module(tree)
        if checker.issues or ascii_issues:
            raise ContractInvalid(ascii_issues + checker.issues)
        try:  # a safety net: every rule CPython's compiler enforces should be ours already
            if check_compile:
                compile(tree, "<contract>", "exec", optimize=0, dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise ContractInvalid([Issue(getattr(e, "lineno", None) or 1, getattr(e, "offset", None) or 1,
                                         f"cannot compile: {getattr(e, 'msg', e)}")]) from None
    return info


# Characters a contract's source may not hold anywhere, comments and string literals
# included (docs/contracts.md "Source text"): they are invisible or move text in an editor
# or a terminal, so the code a reviewer reads is not the code that runs (Trojan Source,
# CVE-2021-42574).  Every format character (category Cf: the bidi controls U+202A-202E,
# U+2066-2069, U+200E/200F and U+061C, zero-width U+200B-200D, U+2060, U+FEFF, soft hyphen,
# tags ...), the line and paragraph separators U+2028/2029 (editors break the line there,
# Python does not), and the control characters other than tab and line feed (ANSI escapes
# rewrite a terminal).  A string that needs one writes it as an escape ("\u200d").
# The table is fixed (Cf as of Unicode 15.1, CPython 3.13): unicodedata would answer each
# CPython's own Unicode version (3.11 has 14.0, where U+13439-1343F are unassigned).
_HIDDEN_RANGES = (
    (0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x2028, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
_HIDDEN = re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _HIDDEN_RANGES) + "]")
_HIDDEN_NAMES = {
    0x061C: "ARABIC LETTER MARK", 0x200B: "ZERO WIDTH SPACE", 0x200C: "ZERO WIDTH NON-JOINER",
    0x200D: "ZERO WIDTH JOINER", 0x200E: "LEFT-TO-RIGHT MARK", 0x200F: "RIGHT-TO-LEFT MARK",
    0x2028: "LINE SEPARATOR", 0x2029: "PARAGRAPH SEPARATOR", 0x202A: "LEFT-TO-RIGHT EMBEDDING",
    0x202B: "RIGHT-TO-LEFT EMBEDDING", 0x202C: "POP DIRECTIONAL FORMATTING", 0x202D: "LEFT-TO-RIGHT OVERRIDE",
    0x202E: "RIGHT-TO-LEFT OVERRIDE", 0x2060: "WORD JOINER", 0x2066: "LEFT-TO-RIGHT ISOLATE",
    0x2067: "RIGHT-TO-LEFT ISOLATE", 0x2068: "FIRST STRONG ISOLATE", 0x2069: "POP DIRECTIONAL ISOLATE",
    0xFEFF: "ZERO WIDTH NO-BREAK SPACE (BOM)",
}


def _invisible_characters(source: str) -> list[Issue]:
    """Every hidden character of the source (the table above), with its line and column."""
    if _HIDDEN.search(source) is None:
        return []
    issues = []
    line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
    for m in _HIDDEN.finditer(source):
        cp = ord(m.group())
        line = bisect.bisect_right(line_starts, m.start())
        name = _HIDDEN_NAMES.get(cp)
        escape = f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"
        issues.append(Issue(line, m.start() - line_starts[line - 1] + 1,
                            f"contract source holds U+{cp:04X}" + (f" ({name})" if name else "")
                            + ", an invisible or control character: the text a reviewer sees would not be the "
                            f"code that runs; remove it (in a string, write it as the escape \"{escape}\")"))
    return issues


def _check_identifiers_ascii(source: str) -> list[Issue]:
    issues = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and not tok.string.isascii():
                issues.append(Issue(tok.start[0], tok.start[1] + 1,
                                    f"identifier {tok.string!r} is not ASCII: names are ASCII letters, digits and _"))
    except Exception:  # noqa: BLE001 - ast.parse reports the real problem with its position
        pass
    return issues




class _Checker:
    """Walks a module; each visit_<Node> method is the rule for that node type."""

    def __init__(self, source: str) -> None:
        self.lines = source.split("\n")
        self.issues: list[Issue] = []
        self.module_names: set[str] = set()
        self.local_names: set[str] = set()
        self.depth = 0
        self.loops = 0  # loops around the statement being checked
        self.comprehensions = 0  # comprehensions around the expression being checked

    def err(self, node: ast.AST, message: str) -> None:
        """Record an issue at node, its column counted in characters as editors do
        (the AST counts UTF-8 bytes)."""
        line, offset = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        col = len(text.encode()[:offset].decode("utf-8", "ignore")) + 1
        self.issues.append(Issue(line, col, message))

    # ---- module level -----------------------------------------------------------------

    def module(self, tree: ast.Module) -> ContractInfo:
        info = ContractInfo(tree)
        for stmt in tree.body:  # first pass: what the module defines
            if isinstance(stmt, ast.FunctionDef):
                info.functions.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                info.constants.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        self.module_names = info.functions | info.constants
        seen: set[str] = set()
        for i, stmt in enumerate(tree.body):
            if isinstance(stmt, ast.FunctionDef):
                self.function(stmt, info, seen)
            elif isinstance(stmt, ast.Assign):
                self.constant(stmt, seen)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                pass  # a docstring
            else:
                self.err(stmt, _LEFT_OUT.get(type(stmt).__name__,
                                             f"{_what(stmt)} is not allowed at module level: only functions, "
                                             "constants (NAME = value) and docstrings"))
        if not info.exports:
            self.issues.append(Issue(1, 1, "the contract exports nothing: mark entry points with @export"))
        return info

    def _define(self, node: ast.AST, name: str, seen: set[str]) -> None:
        self.name(node, name, store=True)
        if name in seen:
            self.err(node, f"{name!r} is defined twice at module level")
        seen.add(name)

    def constant(self, stmt: ast.Assign, seen: set[str]) -> None:
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            self.err(stmt, "a module-level assignment must be NAME = value")
            return
        self._define(stmt.targets[0], stmt.targets[0].id, seen)
        if not _is_literal(stmt.value):
            self.err(stmt.value, "module-level values must be constants (numbers, text, bytes, True, False, None, "
                     "tuples of them, or int arithmetic on int constants): keep mutable state in storage")

    def function(self, fn: ast.FunctionDef, info: ContractInfo, seen: set[str]) -> None:
        self._define(fn, fn.name, seen)
        if getattr(fn, "type_params", None):
            self.err(fn, "type parameters are not allowed")
        if fn.returns is not None:
            self.annotation(fn.returns)
        kinds = []
        for d in fn.decorator_list:
            if isinstance(d, ast.Name) and d.id in DECORATORS:
                kinds.append(d.id)
            else:
                self.err(d, "the only decorators are @export and @constructor")
        if len(kinds) > 1:
            self.err(fn, "a function is @export or @constructor, not both")
        a = fn.args
        if a.vararg or a.kwarg:
            self.err(a.vararg or a.kwarg, "*args and **kwargs are not allowed: name each parameter")
        params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
        for p in a.posonlyargs + a.args + a.kwonlyargs:
            self.name(p, p.arg, store=True)
            if p.annotation is not None:
                self.annotation(p.annotation)
        if len(set(params)) != len(params):
            self.err(fn, "a parameter name appears twice")
        for dflt in a.defaults + [d for d in a.kw_defaults if d is not None]:
            if not _is_literal(dflt):
                self.err(dflt, "a default value must be a constant (a list or dict default would be shared "
                         "between calls): default to None and build it inside")
        if "export" in kinds:
            info.exports[fn.name] = params
        if "constructor" in kinds:
            if info.constructor is not None:
                self.err(fn, "a contract has at most one @constructor")
            info.constructor = fn.name
        self.local_names = set(params) | _assigned_names(fn.body)
        self.body(fn.body)
        self.local_names = set()

    def annotation(self, node: ast.expr) -> None:
        """Type hints are documentation: the names in TYPE_NAMES, subscripts and | of them."""
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id not in TYPE_NAMES:
                self.err(n, f"{n.id!r} is not a type a contract can name: use {', '.join(sorted(TYPE_NAMES))}")
            elif not (isinstance(n, (ast.Name, ast.Subscript, ast.Tuple, ast.BinOp, ast.BitOr, ast.Load))
                      or (isinstance(n, ast.Constant) and (n.value is None or isinstance(n.value, str)))):
                self.err(n, "a type annotation may only name types (int, str, list[int], int | None, ...)")
                return

    # ---- statements -------------------------------------------------------------------

    def body(self, stmts: list[ast.stmt]) -> None:
        for s in stmts:
            self.visit(s)

    def visit(self, node: ast.AST) -> None:
        self.depth += 1
        try:
            if self.depth > MAX_AST_DEPTH:
                self.err(node, f"code is nested more than {MAX_AST_DEPTH} levels deep")
                return
            rule = getattr(self, "visit_" + type(node).__name__, None)
            if rule is None:
                self.err(node, _LEFT_OUT.get(type(node).__name__, f"{_what(node)} is not allowed"))
                return
            rule(node)
        finally:
            self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.err(node, "functions inside functions are not allowed: define them at module level")

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None:
            self.visit(node.value)

    def target(self, t: ast.expr) -> None:
        self.depth += 1
        try:
            if self.depth > MAX_AST_DEPTH:
                self.err(t, f"code is nested more than {MAX_AST_DEPTH} levels deep")
            else:
                self._target(t)
        finally:
            self.depth -= 1

    def _target(self, t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            self.name(t, t.id, store=True)
        elif isinstance(t, ast.Subscript):
            self.visit(t)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self.target(e)
        elif isinstance(t, ast.Attribute):
            self.err(t, "assigning to an attribute is not allowed: values are plain data (use a dict)")
        else:
            self.visit(t)

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            self.target(t)
        self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.binop(node, node.op)
        if not isinstance(node.target, (ast.Name, ast.Subscript)):
            self.err(node.target, "augmented assignment works on a name or a subscript")
        else:
            self.target(node.target)
        self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None or not isinstance(node.target, ast.Name):
            self.err(node, "an annotated assignment must be NAME: type = value")
            return
        self.annotation(node.annotation)
        self.target(node.target)
        self.visit(node.value)

    def loop_body(self, node: ast.For | ast.While) -> None:
        if self.loops >= MAX_LOOP_NESTING:
            self.err(node, f"loops are nested more than {MAX_LOOP_NESTING} deep")
            return
        self.loops += 1
        self.body(node.body)
        self.loops -= 1
        self.body(node.orelse)  # the else of a loop is outside it: break there leaves an outer loop

    def visit_For(self, node: ast.For) -> None:
        self.target(node.target)
        self.visit(node.iter)
        self.loop_body(node)

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self.loop_body(node)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self.body(node.body)
        self.body(node.orelse)

    def visit_Expr(self, node: ast.Expr) -> None:
        self.visit(node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for t in node.targets:
            if isinstance(t, ast.Subscript):
                self.visit(t)
            else:
                self.err(t, _LEFT_OUT["Delete"])

    def visit_Pass(self, node: ast.Pass) -> None:
        pass

    def visit_Break(self, node: ast.Break | ast.Continue) -> None:
        if not self.loops:
            self.err(node, f"{type(node).__name__.lower()} outside a loop")

    visit_Continue = visit_Break

    # ---- expressions ------------------------------------------------------------------

    def binop(self, node: ast.AST, op: ast.operator) -> None:
        if type(op) not in _BINOPS:
            self.err(node, f"the operator {type(op).__name__} is not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self.binop(node, node.op)
        self.visit(node.left)
        self.visit(node.right)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for v in node.values:
            self.visit(v)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if type(node.op) not in _UNARYOPS:
            self.err(node, f"the operator {type(node.op).__name__} is not allowed")
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            if type(op) not in _CMPOPS:
                self.err(node, f"the comparison {type(op).__name__} is not allowed")
            elif isinstance(op, (ast.Is, ast.IsNot)) and not any(
                    isinstance(x, ast.Constant) and x.value is None for x in operands[i:i + 2]):
                self.err(node, "'is' only compares with None (x is None): use == for values")
        for x in node.comparators[:-1]:
            if not isinstance(x, (ast.Name, ast.Constant)):
                self.err(x, "the middle of a chained comparison must be a name or a constant "
                         "(a < x < b): write a < f(x) and f(x) < b as two comparisons")
        for x in operands:
            self.visit(x)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self.visit(node.body)
        self.visit(node.orelse)

    def visit_Dict(self, node: ast.Dict) -> None:
        for k, v in zip(node.keys, node.values):
            if k is None:
                self.err(v, "** unpacking is not allowed: use d.update(other)")
            else:
                self.visit(k)
            self.visit(v)

    def visit_List(self, node: ast.List) -> None:
        for e in node.elts:
            self.visit(e)

    visit_Tuple = visit_List

    def comprehension(self, node: ast.expr, gens: list[ast.comprehension], *results: ast.expr) -> None:
        """A comprehension is its own scope: its variables exist only inside it."""
        outer = self.local_names
        self.local_names = set(outer)
        self.comprehensions += 1
        if self.comprehensions == MAX_COMPREHENSION_NESTING + 1:
            self.err(node, f"comprehensions are nested more than {MAX_COMPREHENSION_NESTING} deep: "
                     "build the inner values in a loop or a helper function")
        try:
            for g in gens:
                if g.is_async:
                    self.err(g.target, "async is not allowed")
                self.visit(g.iter)  # evaluated before this generator's variables exist
                self.target(g.target)
                self.local_names |= {n.id for n in ast.walk(g.target) if isinstance(n, ast.Name)}
                for cond in g.ifs:
                    self.visit(cond)
            for r in results:
                self.visit(r)
        finally:
            self.local_names = outer
            self.comprehensions -= 1

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self.comprehension(node, node.generators, node.elt)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self.comprehension(node, node.generators, node.key, node.value)

    def visit_Call(self, node: ast.Call) -> None:
        if not isinstance(node.func, (ast.Name, ast.Attribute)):
            self.err(node.func, "only functions and methods can be called, by name")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in ML_FIELDS:
            # fields are read, never called: this also keeps str.format out of every contract
            self.err(node.func, f"the attribute .{node.func.attr} is a field of tensors and models, not a method: "
                     f"read it as x.{node.func.attr}" + (" (str.format is not allowed: build text with str() and +)"
                                                         if node.func.attr == "format" else ""))
        self.visit(node.func)
        for a in node.args:
            self.visit(a)
        names = [kw.arg for kw in node.keywords if kw.arg is not None]
        if len(set(names)) != len(names):
            self.err(node, "a keyword argument is given twice")
        for kw in node.keywords:
            if kw.arg is None:
                self.err(kw.value, "** unpacking is not allowed: pass each keyword argument")
            else:
                self.name(kw, kw.arg, store=False, keyword=True)
            self.visit(kw.value)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, float):
            self.err(node, "floats are not allowed (they are not reproducible): use integers or Decimal")
        elif type(v) is int and v.bit_length() > MAX_INT_BITS:
            self.err(node, f"integer constant over {MAX_INT_BITS} bits")
        elif not (v is None or isinstance(v, (bool, int, str, bytes))):
            self.err(node, f"the constant {v!r} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_") or node.attr not in ATTRIBUTES:
            self.err(node, f"the attribute .{node.attr} is not allowed: contracts may use the methods of "
                     "list, dict, str, bytes and int listed in docs/contracts.md, the fields of ctx, and the ml API")
        self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.visit(node.value)
        self.visit(node.slice)

    def visit_Slice(self, node: ast.Slice) -> None:
        for part in (node.lower, node.upper, node.step):
            if part is not None:
                self.visit(part)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.name(node, node.id, store=False)
            if not (node.id in self.local_names or node.id in self.module_names or node.id in BUILTINS
                    or node.id in INJECTED or node.id in ("True", "False", "None")):
                self.err(node, f"name {node.id!r} is not defined (a contract sees its own functions and "
                         "constants, its locals, the allowed builtins and the injected names)")
        else:
            self.name(node, node.id, store=True)

    def name(self, node: ast.AST, name: str, store: bool, keyword: bool = False) -> None:
        if name.startswith("_"):
            self.err(node, f"names starting with _ are not allowed ({name!r})")
        elif not _IDENT.match(name):
            self.err(node, f"name {name!r} is not allowed: use ASCII letters, digits and _")
        elif store and not keyword and (name in BUILTINS or name in INJECTED or name in DECORATORS):
            self.err(node, f"{name!r} is a name the VM provides: choose another name")


_OWN_SCOPES = (ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp, ast.Lambda,
               ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _assigned_names(body: list[ast.stmt]) -> set[str]:
    """Every name a function body binds (Python makes them local to the whole function),
    not counting the variables of comprehensions, which live in their own scope."""
    out: set[str] = set()
    todo: list[ast.AST] = list(body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
        todo.extend(c for c in ast.iter_child_nodes(n) if not isinstance(c, _OWN_SCOPES))
    return out


_CONSTANT_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
                 ast.BitAnd, ast.BitOr, ast.BitXor)


def _is_literal(node: ast.expr, depth: int = 0) -> bool:
    """A constant: None, bool, int, str, bytes, a tuple of constants, or int arithmetic
    on int constants (`WEEK = 7 * 24 * 3600 * 1000`), which vm.compiler computes at
    compile time within the VM's int limit."""
    if depth > MAX_AST_DEPTH:
        return False
    if isinstance(node, ast.Constant):
        return node.value is None or isinstance(node.value, (bool, int, str, bytes))
    if isinstance(node, ast.Tuple):
        return all(_is_literal(e, depth + 1) for e in node.elts)
    return _is_int_arithmetic(node, depth)


def _is_int_arithmetic(node: ast.expr, depth: int) -> bool:
    if depth > MAX_AST_DEPTH:
        return False
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
        return _is_int_arithmetic(node.operand, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _CONSTANT_OPS):
        return _is_int_arithmetic(node.left, depth + 1) and _is_int_arithmetic(node.right, depth + 1)
    return False


_WHAT = {"Expr": "an expression statement", "For": "a for loop", "While": "a while loop",
         "If": "an if statement", "AugAssign": "an augmented assignment", "AnnAssign": "an annotated assignment",
         "Return": "return", "Pass": "pass", "Break": "break", "Continue": "continue"}


def _what(node: ast.AST) -> str:
    return _WHAT.get(type(node).__name__, type(node).__name__)
