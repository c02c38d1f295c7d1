"""Contract execution is a function of the transactions only: the same deploys and calls
give bit-identical receipts, gas and state root in other processes, under other
PYTHONHASHSEED values, under CPython's smallest int <-> str digit limit
(PYTHONINTMAXSTRDIGITS=640), and on CPython 3.11, 3.12 and 3.13.

The transactions are tests/determinism_scenario.py's `run_contracts` (dicts with many str
keys, sorting, big ints past 640 digits, Decimal, keys with chosen hashes, events,
print, and every kind of failure); each process prints one line per receipt and the
final state root (ledger.trie.root_from_items over the state), compared line by line.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import determinism_scenario
from tests.test_determinism import SCRIPT, python_for


@pytest.fixture(scope="module")
def here() -> list[str]:
    """This process's run (its compiled-code caches are warm from other tests; the
    other processes start cold)."""
    return determinism_scenario.run_contracts()


def _run_elsewhere(python: str, **env: str) -> list[str]:
    out = subprocess.run([python, str(SCRIPT), "contracts"], env=dict(os.environ, **env), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split("\n")


def test_the_run_exercises_success_and_every_kind_of_failure(here):
    """So that the comparisons below compare something."""
    assert here[-1].startswith("root=")
    receipts = here[:-1]
    assert sum("status=1" in line for line in receipts) >= 10
    codes = {line.split("failure=('")[1].split("'")[0] for line in receipts if "failure=('" in line}
    assert codes >= {"revert", "out_of_gas", "limit_exceeded", "runtime_error", "not_found", "reentrancy"}


def test_the_run_repeats_in_this_process(here):
    assert determinism_scenario.run_contracts() == here


@pytest.mark.parametrize("env", [
    {"PYTHONHASHSEED": "0"},
    {"PYTHONHASHSEED": "1", "PYTHONINTMAXSTRDIGITS": "640"},
    {"PYTHONHASHSEED": "4242", "PYTHONINTMAXSTRDIGITS": "0"},
], ids=["seed0", "seed1-digits640", "seed4242-nodigitlimit"])
def test_same_receipts_gas_and_root_in_other_processes(here, env):
    assert _run_elsewhere(sys.executable, **env) == here


@pytest.mark.parametrize("minor", ["3.11", "3.12", "3.13"])
def test_same_receipts_gas_and_root_on_each_cpython(here, minor):
    python = python_for(minor)
    assert _run_elsewhere(python, PYTHONHASHSEED="7", PYTHONINTMAXSTRDIGITS="640") == here


# A contract is accepted or refused alike by every CPython, and none crashes on it:
# CPython 3.12.1 and 3.13.0 segfault compiling ~20 comprehensions nested in each other.
VERDICTS = r'''
import sys
sys.path.insert(0, sys.argv[1])
from vm.compiler import compile_contract
from vm.validate import ContractInvalid

def nest(template, n):
    e = "x"
    for _ in range(n):
        e = template.format(e)
    return "@export\ndef f(x):\n    return " + e + "\n"

for template in ("[{} for q in x]", "{{1: {} for q in x}}", "[[{}] for q in x]", "-({})", "(1 if {} else 2)",
                 "abs({})", "x[{}]"):
    for n in (8, 9, 25, 60, 98):
        try:
            compile_contract(nest(template, n))
            print(template, n, "ok")
        except ContractInvalid as e:
            print(template, n, ascii(str(e)))
'''


def _verdicts(python: str) -> list[str]:
    root = str(SCRIPT.resolve().parent.parent)
    out = subprocess.run([python, "-c", VERDICTS, root], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().split("\n")


@pytest.mark.parametrize("minor", ["3.12", "3.13"])
def test_every_cpython_gives_the_same_verdict_on_deeply_nested_code(minor):
    python = python_for(minor)
    here = _verdicts(sys.executable)
    assert "[{} for q in x] 8 ok" in here
    assert any(line.startswith("[{} for q in x] 25 ") and "comprehensions are nested more than 8 deep" in line
               for line in here)
    assert _verdicts(python) == here
