"""Receipts, gas, block hashes and state roots are a function of the transactions only:
pinned, and identical across processes, hash seeds and CPython 3.11 / 3.12 / 3.13."""
from __future__ import annotations

import glob
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import determinism_scenario

SCRIPT = Path(determinism_scenario.__file__)
# The digest of the scenario's 20 blocks. It changes only when a consensus rule changes:
# then update it in the same commit and say why.
# Last change: staking (bonds, unbonds, a refused unbond, a slashing EVIDENCE tx, block
# rewards, the validator sets in state) and two staker accounts in genesis.  Before: the scenario gained contract deploys and calls (and their author's genesis
# account), so the digest now also pins the VM: its gas schedule (any change to vm/gas.py
# or to what a runtime wrapper charges moves it), receipts and error text.  Then: pow()
# with a modulus charged per exponent bit with a floor, storage reads charged by decoded
# element (tests/test_vm_attacks.py); then contract arguments paying intrinsic gas per element;
# then tuple keys priced at 3 x BUILTIN (bench/bench_vm_gas.py); then (issue 12) memory
# counted as CPython allocates it (vm/sizes.py: str/bytes/list/dict/int sizes), which moves
# the gas that allocate() charges per KiB; then (issue 12 item 4) the whole schedule repriced
# by time on 3.11-3.13 (NODE, ITERATION, BUILTIN x4, DECIMAL, CONVERT, RESULT, KEY, PRINT: bench_vm_gas.py).
GOLDEN = "c97902e59e130c1fc82dcd63d692aed41d001c515e41e36c9063f452f10f4ee1"


def test_scenario_matches_the_pinned_digest():
    assert determinism_scenario.run() == GOLDEN


@pytest.mark.parametrize("seed", ["0", "1", "4242"])
def test_same_digest_under_other_hash_seeds(seed):
    out = subprocess.run([sys.executable, str(SCRIPT)], env=dict(os.environ, PYTHONHASHSEED=seed),
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == GOLDEN


def _interpreter(minor: str) -> str | None:
    """A working CPython `minor` interpreter (pyenv's shims exist even for inactive ones)."""
    cands = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python")))
    which = shutil.which(f"python{minor}")
    for py in cands[::-1] + ([which] if which else []):
        ok = subprocess.run([py, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if ok.returncode == 0 and ok.stdout.strip() == str(tuple(int(x) for x in minor.split("."))):
            return py
    return None


def _venv_for(python: str, minor: str) -> Path:
    """A small cached venv with the scenario's three dependencies at our versions."""
    pins = [f"{d}=={importlib.metadata.version(d)}" for d in ("msgpack", "pynacl", "lmdb")]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gradchain-test-venvs"
    venv = root / f"{minor}-{'-'.join(pins)}"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *pins], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"cannot install {pins} for Python {minor}: {r.stderr.strip()[-300:]}")
    return py


def python_for(minor: str) -> str:
    """This interpreter if it is `minor`, else a venv of that CPython (skips if none)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        return sys.executable
    found = _interpreter(minor)
    if found is None:
        pytest.skip(f"Python {minor} is not installed")
    return str(_venv_for(found, minor))


@pytest.mark.parametrize("minor", ["3.11", "3.12", "3.13"])
def test_same_digest_on_each_cpython(minor):
    python = python_for(minor)
    out = subprocess.run([python, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == GOLDEN
