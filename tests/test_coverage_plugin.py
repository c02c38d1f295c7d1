"""Contract line coverage through coverage.py (gradchain/coverage_plugin.py): a real
`pytest --cov` run in a subprocess on a tiny project, its report read back with
`coverage json`, and the same run without coverage to show that tracing changes no
receipt and no state."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradchain.coverage_plugin import measuring, statement_lines
from gradchain import Reverted, TestChain
from vm import runtime

# Lines: 1 decorator, 2 def, 3 store, 6 decorator, 7 def, 8 docstring, 9 if, 10-11 one
# emit over two lines, 12 return, 13 else, 14 print, 15 return, 18 def, 19 require.
CONTRACT = '''\
@constructor
def init(limit: int):
    storage["limit"] = limit


@export
def check(x: int) -> str:
    """Whether x is within the limit."""
    if x <= storage["limit"]:
        emit("ok",
             x=x)
        return "small"
    else:
        print("too big")
        return "big"


def helper(x: int) -> int:
    require(x > 100, "x too small")
    return x
'''
# the statements' first lines: every def runs when the contract is instantiated
EXECUTED = [2, 3, 7, 9, 10, 12, 18, 19]
MISSING = [14, 15, 20]

CONTRACT_EXPORTS_HELPER = CONTRACT + '''

@export
def fail(x: int) -> int:
    return helper(x)
'''
EXECUTED_ALL = EXECUTED + [24, 25]

PROJECT_TEST = '''\
import json
import os
from pathlib import Path

import pytest
from gradchain import Reverted, TestChain


def test_one_branch():
    chain = TestChain()
    c = chain.deploy(Path(__file__).with_name("limits.py"), 10)
    assert c.check(3) == "small"
    with pytest.raises(Reverted, match="x too small") as e:
        c.fail(5)
    assert (e.value.function, e.value.line) == ("helper", 19)
    out = {"receipts": [repr(r.to_wire()) for r in chain.receipts],
           "state": sorted([k.hex(), v.hex()] for k, v in chain.state.items())}
    Path(os.environ["RECEIPTS_OUT"]).write_text(json.dumps(out))
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("covproject")
    (d / "limits.py").write_text(CONTRACT_EXPORTS_HELPER)
    (d / "test_limits.py").write_text(PROJECT_TEST)
    (d / ".coveragerc").write_text("[run]\nplugins = gradchain.coverage_plugin\n")
    return d


def _run(project: Path, args: list[str], out: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECEIPTS_OUT": str(project / out)}
    env.pop("COVERAGE_PROCESS_START", None)
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)


def test_pytest_cov_reports_contract_lines_exactly(project: Path) -> None:
    r = _run(project, ["-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist",
                       "--cov=.", "--cov-report=", "test_limits.py"], "with.json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = _run(project, ["-m", "coverage", "json", "-o", "-"], "unused.json")
    assert report.returncode == 0, report.stderr
    files = json.loads(report.stdout)["files"]
    assert "limits.py" in files, sorted(files)  # by its real path, relative to the project
    f = files["limits.py"]
    assert f["executed_lines"] == EXECUTED_ALL
    assert f["missing_lines"] == MISSING
    assert f["summary"]["num_statements"] == len(EXECUTED_ALL) + len(MISSING)

    # the same test without coverage: the same receipts (gas, outputs, the revert's line) and state
    plain = _run(project, ["-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-p", "no:cov", "test_limits.py"], "without.json")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    with_cov = json.loads((project / "with.json").read_text())
    assert with_cov == json.loads((project / "without.json").read_text())
    assert len(with_cov["receipts"]) == 3


def test_statement_lines_of_the_contract() -> None:
    m = statement_lines(CONTRACT)
    assert sorted(set(m.values())) == sorted(EXECUTED + MISSING)
    assert m[11] == 10         # a continuation line counts for its statement
    assert 8 not in m          # a docstring is no statement
    assert 1 not in m and 6 not in m and 16 not in m  # decorators, a blank line
    assert m[13] == 9          # `else:` (no code of its own) is part of its `if`


def test_statement_lines_module_docstring_and_comments() -> None:
    src = '"""The module\'s docstring,\nover two lines."""\n# a comment\nA = 1\n\n@export\ndef f():\n    pass\n'
    assert statement_lines(src) == {4: 4, 7: 7, 8: 8}


def test_named_code_fails_and_charges_as_unnamed(tmp_path: Path) -> None:
    """name_code changes co_filename only: a revert keeps its function and line, gas is equal."""
    source = CONTRACT_EXPORTS_HELPER + "\n# test_named_code_fails_and_charges_as_unnamed\n"
    path = str(tmp_path / "limits.py")

    def scenario() -> list:
        chain = TestChain()
        c = chain.deploy(source, 10)
        c.check(3)
        with pytest.raises(Reverted):
            c.fail(5)
        return [r.to_wire() for r in chain.receipts]

    unnamed = scenario()
    assert runtime.load(source).factory.co_filename.startswith("<contract ")
    runtime.name_code(source, path)
    named = scenario()
    assert runtime.load(source).factory.co_filename == path
    assert named == unnamed
    assert unnamed[-1][6][2:] == ["helper", 19]


def test_plugin_is_off_without_coverage(tmp_path: Path) -> None:
    """Deployed from a file with no coverage running, a contract keeps its `<contract ...>` name."""
    f = tmp_path / "c.py"
    f.write_text(textwrap.dedent('''\
        @export
        def g() -> int:
            return 7  # test_plugin_is_off_without_coverage
        '''))
    if measuring():
        pytest.skip("this suite runs under coverage with gradchain.coverage_plugin")
    chain = TestChain()
    c = chain.deploy(f, gas=10_000_000)
    assert c.g() == 7
    assert str(f.resolve()) not in runtime.named_files()


def test_gas_profile_of_named_code_equals_unnamed(tmp_path: Path) -> None:
    """TestChain.gas_profile sees a contract compiled under a file's name (as while coverage
    measures) as it sees an unnamed one: the same rows, gas and source text per line."""
    source = CONTRACT_EXPORTS_HELPER + "\n# test_gas_profile_of_named_code_equals_unnamed\n"

    def profile() -> list:
        chain = TestChain()
        c = chain.deploy(source, 10)
        with chain.gas_profile() as prof:
            c.check(3)
        return prof.by_line()

    unnamed = profile()
    runtime.name_code(source, str(tmp_path / "limits.py"))
    named = profile()
    assert named == unnamed
    assert ("check", 10, 'emit("ok",', next(g for f, ln, _, g in unnamed if (f, ln) == ("check", 10))) in named
