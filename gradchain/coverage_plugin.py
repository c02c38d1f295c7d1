"""Line coverage of contract files, through coverage.py's own plugin interface.

Set-up, one line in the project's coverage configuration (.coveragerc, setup.cfg's
[coverage:run] or pyproject.toml's [tool.coverage.run]):

    [run]
    plugins = gradchain.coverage_plugin

then `pytest --cov=.` (pytest-cov) or `coverage run -m pytest` measures every contract
that a test deploys from a file, `TestChain().deploy(Path("token.py"), ...)`, and the
report lists that file with its statements run and missed.

How.  A contract runs as CPython bytecode compiled from a lowered module
(vm/compiler.py), whose code objects are named `<contract HASH>`; coverage.py never
traces a file name that starts with `<`.  While this plugin is enabled in the test
process, TestChain compiles a contract deployed from a file under that file's real path
instead (vm.runtime.name_code: the name only, never the bytecode, so gas, results and
state are the same; nodes never do it).  The lowering keeps the source's line numbers:
a statement's code, and the gas charges placed before it, carry its line.  This
plugin's file tracer claims those paths, and its reporter counts a contract's
statements from its own AST (every statement's first line; not blank lines, comments,
decorators or docstrings) and folds the lines that run onto them: a continuation line
onto its statement's first line, and the lines the generated set-up runs (line 1, a
function's docstring) onto nothing.  As with Python modules, a `def` line and a
module-level constant count as run when the contract is first instantiated.

Limits.  Contracts deployed from a string are not measured (they have no file to report
against: deploy them from a Path to measure them).  Lines only: with `branch = True`
contract files report no branches, and `# pragma: no cover` is not read in them.  A
contract file no test deploys is reported by coverage.py as a Python file (when it lies
under `source`), since nothing marks it as a contract.

Cores.  coverage.py runs plugins' file tracers only in its C tracer (`ctrace`); with
`sysmon` (COVERAGE_CORE=sysmon, Python 3.12+) or `pytrace` it disables them.  So this
plugin sets core=ctrace unless `pytrace` was asked for, and says so on stderr when it
overrides an explicit sysmon.  Where coverage.py still disables it (pytrace, no C
tracer), its own warning says so and contracts are not measured.

Why a coverage.py plugin and not a pytest plugin (`pytest11`): both `coverage run` and
pytest-cov load it from the same one line of configuration, while a pytest plugin would
load into every pytest session of every project that installs gradchain, and would still
need that line to reach pytest-cov's Coverage object.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Iterable

import coverage
from coverage.files import canonical_filename
from coverage.plugin import CoveragePlugin, FileReporter, FileTracer

_ENABLED: list["ContractPlugin"] = []  # the plugins coverage.py made in this process


def measuring() -> bool:
    """Whether coverage.py is measuring this process with this plugin enabled."""
    return coverage.Coverage.current() is not None and any(
        getattr(p, "_coverage_enabled", True) for p in _ENABLED)


class ContractPlugin(CoveragePlugin):
    """Claims the files TestChain compiled contracts under; reports them by their AST."""

    def configure(self, config: Any) -> None:
        core = config.get_option("run:core")
        if core in (None, "sysmon"):
            if core == "sysmon":
                sys.stderr.write("gradchain.coverage_plugin: core=sysmon cannot run plugins' file tracers; "
                                 "using core=ctrace\n")
            config.set_option("run:core", "ctrace")

    def file_tracer(self, filename: str) -> FileTracer | None:
        runtime = sys.modules.get("vm.runtime")  # not imported: no contract has run
        if runtime is None:
            return None
        if filename in {canonical_filename(n) for n in runtime.named_files()}:
            return _ContractTracer(filename)
        return None

    def file_reporter(self, filename: str) -> FileReporter:
        return ContractReporter(filename)


class _ContractTracer(FileTracer):
    def __init__(self, filename: str):
        self.filename = filename

    def source_filename(self) -> str:
        return self.filename


class ContractReporter(FileReporter):
    """A contract file's statements, and which recorded lines stand for which."""

    def __init__(self, filename: str):
        super().__init__(filename)
        self._statement_of: dict[int, int] | None = None

    def source(self) -> str:
        return Path(self.filename).read_text(encoding="utf-8")

    def _map(self) -> dict[int, int]:
        if self._statement_of is None:
            self._statement_of = statement_lines(self.source())
        return self._statement_of

    def lines(self) -> set[int]:
        return set(self._map().values())

    def translate_lines(self, lines: Iterable[int]) -> set[int]:
        m = self._map()
        return {m[n] for n in lines if n in m}


def statement_lines(source: str) -> dict[int, int]:
    """Each source line that belongs to a statement -> that statement's first line (the
    innermost statement: a compound statement's body lines go to their own statements).
    Docstrings are no statements: their lines map to nothing."""
    tree = ast.parse(source)
    out: dict[int, int] = {}
    docstrings: list[ast.stmt] = []

    def visit(body: list[ast.stmt], may_have_docstring: bool) -> None:
        for i, s in enumerate(body):
            if i == 0 and may_have_docstring and isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) \
                    and isinstance(s.value.value, str):
                docstrings.append(s)
                continue
            for line in range(s.lineno, (s.end_lineno or s.lineno) + 1):
                out[line] = s.lineno
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(s, field, None)
                if isinstance(inner, list):
                    visit(inner, field == "body" and isinstance(s, (ast.FunctionDef, ast.ClassDef)))
            for handler in getattr(s, "handlers", []):
                visit(handler.body, False)

    visit(tree.body, True)
    for d in docstrings:
        for line in range(d.lineno, (d.end_lineno or d.lineno) + 1):
            out.pop(line, None)
    return out


def coverage_init(reg: Any, options: dict) -> None:
    plugin = ContractPlugin()
    _ENABLED.append(plugin)
    reg.add_file_tracer(plugin)
    reg.add_configurer(plugin)
