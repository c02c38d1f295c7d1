"""The hostile-input suite, area `host`: one verdict under every host setting (issue 12,
items 1 and 5).  Two validators configured differently must never commit different
states, so nothing of how Python was started may reach a receipt, gas or a state root.

1. tests/host_scenario.py (the determinism scenario and its contract run, a deploy and
   calls of every example contract, contracts at the edges of the VM's own limits, a
   genesis file with a non-ASCII chain id) in one subprocess per host setting and CPython
   3.11 / 3.12 / 3.13: the JSON it prints must equal this process's run, and the process
   must really have run under its setting (it reports them).  The ML examples need JAX,
   installed for this interpreter only: they run on it alone.
2. A real 4-validator network whose validators each run under other settings; a client
   deploys and calls the edge contracts over RPC; afterwards every node holds the same
   hash at every height, and every transaction is committed with the same receipt.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.validators import Validator, ValidatorSet
from tests import host_scenario
from tests.test_determinism import python_for

SCRIPT = Path(host_scenario.__file__)
NON_ASCII_CHAIN = "gradchain-hôst-日本"


def _locale(*candidates: str) -> str:
    """The first of `candidates` this machine has (`apt-get install locales` and
    locale-gen add tr_TR.UTF-8 and en_US.ISO-8859-1 on Debian)."""
    for name in candidates:
        ok = subprocess.run([sys.executable, "-c", f"import locale; locale.setlocale(locale.LC_ALL, {name!r})"],
                            capture_output=True)
        if ok.returncode == 0:
            return name
    pytest.skip(f"none of the locales {candidates} is installed")


# id -> (interpreter options, environment, recursion limit set by a wrapper, what the
# child must report about itself: proof that the setting applied)
SETTINGS: dict[str, tuple[list[str], dict[str, str], int | None, dict]] = {
    "default": ([], {}, None, {}),
    "digits640": ([], {"PYTHONINTMAXSTRDIGITS": "640"}, None, {"int_max_str_digits": 640}),
    "digits0": ([], {"PYTHONINTMAXSTRDIGITS": "0"}, None, {"int_max_str_digits": 0}),
    "X-digits640": (["-X", "int_max_str_digits=640"], {}, None, {"int_max_str_digits": 640}),
    "O": (["-O"], {}, None, {"optimize": 1}),
    "OO": (["-OO"], {}, None, {"optimize": 2}),
    "W-error": (["-W", "error"], {}, None, {"warnings": ["error"]}),
    "bb": (["-bb"], {}, None, {"bytes_warning": 2}),
    "X-dev": (["-X", "dev"], {}, None, {"dev_mode": True}),
    "X-utf8": (["-X", "utf8"], {}, None, {"utf8_mode": 1}),
    "utf8-off-latin1": ([], {"PYTHONUTF8": "0", "LC_ALL": "LATIN1"}, None, {"utf8_mode": 0, "encoding": "ISO-8859-1"}),
    "C-locale": ([], {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}, None, {"locale": "C"}),
    "tr-locale": ([], {"LC_ALL": "TURKISH"}, None, {"encoding": "UTF-8"}),
    "hashseed1": ([], {"PYTHONHASHSEED": "1"}, None, {"hash_seed": "1"}),
    "recursion-low": ([], {}, 200, {"recursion_limit": 200}),  # about the lowest at which JAX imports
    "recursion-high": ([], {}, 100_000, {"recursion_limit": 100_000}),
}
_LOCALES = {"LATIN1": ("en_US.ISO-8859-1", "en_US.iso88591", "en_US"),
            "TURKISH": ("tr_TR.UTF-8", "tr_TR.utf8")}
# python -c _WRAPPER LIMIT SCRIPT ARGS...: the script runs as __main__ under recursion limit LIMIT
_WRAPPER = ("import runpy, sys; del sys.argv[0]; sys.setrecursionlimit(int(sys.argv.pop(0))); "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def genesis_file(tmp_path_factory) -> Path:
    """A genesis file in UTF-8 whose chain id is not ASCII (read in the locale's encoding
    it would be another chain)."""
    g = Genesis(NON_ASCII_CHAIN, 1_750_000_000_000, ChainParams(),
                ValidatorSet((Validator(PrivateKey.from_label("host validator").public_key, 10),)), ())
    path = tmp_path_factory.mktemp("host") / "genesis.json"
    path.write_text(json.dumps(g.to_json(), ensure_ascii=False), encoding="utf-8")
    return path


def _has_jax() -> bool:
    import importlib.util
    return importlib.util.find_spec("jax") is not None


@pytest.fixture(scope="module")
def here(genesis_file) -> dict[bool, dict]:
    """This process's runs, without and (where JAX is installed) with the ML deploys: the yardsticks."""
    runs = {ml: host_scenario.main([str(genesis_file)] + (["--ml"] if ml else [])) for ml in {False, _has_jax()}}
    assert runs[False]["results"]["genesis"][0] == NON_ASCII_CHAIN
    return runs


def _run(python: str, setting: str, genesis: Path, ml: bool) -> dict:
    options, env, recursion, _ = SETTINGS[setting]
    env = {k: _locale(*_LOCALES[v]) if v in _LOCALES else v for k, v in env.items()}
    script = ["-c", _WRAPPER, str(recursion), str(SCRIPT)] if recursion else [str(SCRIPT)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LC_", "LANG"))}
    out = subprocess.run([python, *options, *script, str(genesis), *(["--ml"] if ml else [])],
                         env=dict(clean, **env), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_yardstick_exercises_every_verdict(here):
    """So that the comparisons compare something: deploys that succeed and fail, calls
    that succeed, revert, run out of call depth or break the VM's int-literal limit."""
    receipts = here[False]["results"]["receipts"]
    assert receipts[-1].startswith("root=")
    assert sum("status=1" in r for r in receipts) >= 20
    codes = {r.split("failure=('")[1].split("'")[0] for r in receipts if "failure=('" in r}
    assert codes >= {"invalid_contract", "limit_exceeded", "not_found"}
    # the contract: a 1,000-digit literal deploys and its call succeeds
    assert receipts[10].split()[1] == receipts[11].split()[1] == "status=1"


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("minor", ["3.11", "3.12", "3.13"])
def test_same_receipts_and_roots_under_every_host_setting(here, genesis_file, minor, setting):
    python = python_for(minor)
    ml = python == sys.executable and _has_jax()
    got = _run(python, setting, genesis_file, ml)
    for key, want in SETTINGS[setting][3].items():
        assert got["settings"][key] == want, f"{setting} did not apply: {got['settings']}"
    assert got["settings"]["python"] == minor
    assert got["results"] == here[ml]["results"]


# ---- 2. a network of validators started differently ----------------------------------------

N = 4
KEYS = [PrivateKey.from_label(f"host test validator {i}") for i in range(N)]
NODE_ENVS = [  # what each validator's Python runs under (environment variables only: node.py is the script)
    {"PYTHONINTMAXSTRDIGITS": "640", "PYTHONHASHSEED": "1"},
    {"PYTHONINTMAXSTRDIGITS": "0", "PYTHONOPTIMIZE": "2", "PYTHONHASHSEED": "2"},
    {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONWARNINGS": "error::SyntaxWarning,"
     "error::DeprecationWarning,error::BytesWarning"},
    {},
]
MAX_RSS_MIB = 400  # a validator's resident memory after the run (about 120 MiB here)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_validators_under_different_host_settings_commit_the_same_chain(tmp_path):
    """The issue's fork: a validator run with PYTHONINTMAXSTRDIGITS=640 refused the
    1,000-digit literal its peers deployed.  Four validators under four host setups, the
    edge contracts deployed and called from outside over RPC, in a seeded order: every
    transaction commits with the same receipt on every node, every node holds the same
    hash at every height, blocks keep coming, memory stays bounded."""
    import random

    from ledger.tx import call, contract_address, deploy
    from tests.nodeproc import check_agreement, heights, validator_processes, wait_until

    author = PrivateKey.from_label("host network author")
    nodes = validator_processes(tmp_path / "tn", KEYS, block_time=0.2, accounts=((author.address, 10**15),))
    for node, env in zip(nodes, NODE_ENVS):
        node.env = env
    try:
        for n in nodes:
            n.start()
        order = list(range(len(host_scenario.EDGES)))
        random.Random(12).shuffle(order)
        with nodes[0].client() as c:
            chain_id = c.chain_id
            hashes, expect = [], {}
            for nonce, i in enumerate(order):
                src = host_scenario.EDGES[i]
                tx = deploy(author, chain_id, 2 * nonce, src, (), 0, host_scenario.GAS)
                hashes.append(c.broadcast(tx))
                fn = call(author, chain_id, 2 * nonce + 1, contract_address(author.address, 2 * nonce), "f", (), 0,
                          host_scenario.GAS)
                hashes.append(c.broadcast(fn))
                expect[hashes[-2]] = i
        clients = [n.client() for n in nodes]
        try:
            committed = {}
            for h in hashes:
                answers = [c.wait_for_tx(h, timeout=90) for c in clients]
                assert len({json.dumps(a["receipt"], sort_keys=True) for a in answers}) == 1, (h, answers)
                assert len({a["height"] for a in answers}) == 1
                committed[h] = answers[0]
        finally:
            for c in clients:
                c.close()
        first = {expect[h]: committed[h]["receipt"]["status"] for h in expect}
        assert first[0] == "success"  # the 1,000-digit literal deploys on every host
        assert first[2] != "success" and first[13] != "success"  # 2**4096 and a bidi control are refused
        top = check_agreement(nodes)
        assert top >= max(a["height"] for a in committed.values())
        before = min(heights(nodes))
        wait_until(lambda: min(heights(nodes)) >= before + 3, 30, "three more blocks on every node")
        check_agreement(nodes)
        for n in nodes:
            assert _rss_mib(n.proc.pid) < MAX_RSS_MIB
    finally:
        for n in nodes:
            n.kill()
