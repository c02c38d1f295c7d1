"""Untraced contract execution with the tracer hooks vs without them, in the same run (issue 14, traces).

trace_tx's hooks (vm/runtime.py invoke, vm/ml.py dispatch) are None in every consensus run; this
measures what their `is None` tests cost there.  The trees compared are the commit that added the hooks
(`--rev`, default: the one that added vm/trace.py) and its parent (`--base`), each exported with
`git archive`; each round runs one child process per tree, alternating, and every figure is a
median over rounds.  Workloads, through ledger.transition.process_transaction (signatures not
checked: they are checked once at admission):
  token   a token transfer per transaction (one contract call, storage, an event)
  calls   a contract making 50 call()s to another per transaction (51 contract calls)
  compute `s += i * i` 100,000 times in one call (no call boundary: the hooks' floor)
The same tree's traced run (a Tracer per transaction, as trace_tx makes) is printed beside, for
what a trace costs.

    python bench/bench_trace.py [--rounds 7] [--base REV]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAIN_ID = "gradchain-bench"

TOKEN = '''
@constructor
def init(holders: list, amount: int):
    for h in holders:
        storage["balance", h] = amount


@export
def transfer_to(to: bytes, amount: int) -> bool:
    balance = storage.get(("balance", ctx.sender), 0)
    require(amount > 0 and balance >= amount, "insufficient balance")
    storage["balance", ctx.sender] = balance - amount
    storage["balance", to] = storage.get(("balance", to), 0) + amount
    emit("Transfer", to=to, amount=amount)
    return True
'''
LEAF = '''
@export
def add(a: int, b: int) -> int:
    return a + b
'''
CALLER = '''
@export
def many(leaf: bytes, n: int) -> int:
    total = 0
    for i in range(n):
        total = call(leaf, "add", total, i)
    return total
'''
COMPUTE = '''
@export
def compute(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s
'''


def child(root: str, traced: bool) -> dict:
    """One tree's figures (seconds per transaction, medians of 3 passes)."""
    sys.path.insert(0, root)
    from ledger.keys import PrivateKey
    from ledger.params import ChainParams
    from ledger.state import Account, State, changes, set_account
    from ledger.transition import BlockEnv, process_transaction
    from ledger import tx as txs

    tracer_of = None
    if traced:
        from vm.trace import Tracer
        tracer_of = Tracer
    keys = [PrivateKey.from_label(f"bench trace {i}") for i in range(4)]
    params = ChainParams()
    env = BlockEnv(CHAIN_ID, 1, 1_700_000_000_000, bytes(20), params)
    base: dict = {}
    s = State(base.get)
    for k in keys:
        set_account(s, k.address, Account(10**18, 0))
    nonce = {k.address: 0 for k in keys}

    def run(tx: txs.Transaction, state: State):
        if tracer_of is None:
            return process_transaction(state, env, tx)
        return process_transaction(state, env, tx, tracer_of())

    def send(key: PrivateKey, make) -> None:
        r = process_transaction(s, env, make(nonce[key.address]))
        nonce[key.address] += 1
        assert r.status == 1, r

    a = keys[0]
    token = txs.contract_address(a.address, 0)
    send(a, lambda n: txs.deploy(a, CHAIN_ID, n, TOKEN, [[k.address for k in keys], 10**12], gas_limit=10**8))
    leaf = txs.contract_address(a.address, 1)
    send(a, lambda n: txs.deploy(a, CHAIN_ID, n, LEAF, gas_limit=10**8))
    caller = txs.contract_address(a.address, 2)
    send(a, lambda n: txs.deploy(a, CHAIN_ID, n, CALLER, gas_limit=10**8))
    comp = txs.contract_address(a.address, 3)
    send(a, lambda n: txs.deploy(a, CHAIN_ID, n, COMPUTE, gas_limit=10**8))
    base.update(changes(s))

    def batch(count: int, make) -> list:
        out, n = [], {k.address: nonce[k.address] for k in keys}
        for i in range(count):
            k = keys[i % len(keys)]
            out.append(make(k, n[k.address]))
            n[k.address] += 1
        return out

    work = {
        "token": batch(3000, lambda k, n: txs.call(k, CHAIN_ID, n, token, "transfer_to", [keys[0].address, 1],
                                                    gas_limit=200_000)),
        "calls": batch(300, lambda k, n: txs.call(k, CHAIN_ID, n, caller, "many", [leaf, 50], gas_limit=10**8)),
        "compute": batch(20, lambda k, n: txs.call(k, CHAIN_ID, n, comp, "compute", [100_000], gas_limit=10**9)),
    }
    out = {}
    for name, batch_txs in work.items():
        passes = []
        for _ in range(3):
            state = State(base.get)
            t0 = time.perf_counter()
            for tx in batch_txs:
                r = run(tx, state)
            passes.append((time.perf_counter() - t0) / len(batch_txs))
            assert r.status == 1, r
        out[name] = statistics.median(passes)
        out[name + "_gas"] = r.gas_used
    return out


def _hooks_rev() -> str:
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%h", "--", "vm/trace.py"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    if not added:
        raise SystemExit("no commit adds vm/trace.py: give --rev and --base")
    return added[-1]


def _export(rev: str, into: Path) -> Path:
    tar = into.with_suffix(".tar")
    subprocess.run(["git", "archive", "--format=tar", "-o", str(tar), rev], cwd=ROOT, check=True)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into


def _run_child(root: Path, traced: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(root)] + (["--traced"] if traced else [])
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--rev", help="the tree with the hooks (default: the commit that added vm/trace.py)")
    p.add_argument("--base", help="the tree without them (default: --rev's parent)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.traced)))
        return
    rev = a.rev or _hooks_rev()
    base = a.base or rev + "^"
    with tempfile.TemporaryDirectory() as tmp:
        base_root, hooks_root = _export(base, Path(tmp) / "base"), _export(rev, Path(tmp) / "hooks")
        runs: dict[str, list[dict]] = {"base": [], "hooks": [], "traced": []}
        for i in range(a.rounds):
            order = [("base", base_root, False), ("hooks", hooks_root, False)]
            for name, root, traced in (order if i % 2 == 0 else order[::-1]) + [("traced", hooks_root, True)]:
                runs[name].append(_run_child(root, traced))
    print(f"{base} (no hooks) vs {rev} (hooks, off and on), {a.rounds} rounds, medians of microseconds per "
          "transaction, one process per tree and round")
    print(f"{'workload':<10}{'base':>12}{'hooks off':>12}{'ratio':>8}{'traced':>12}{'gas equal':>11}")
    for w in ("token", "calls", "compute"):
        med = {k: statistics.median(r[w] for r in v) for k, v in runs.items()}
        gas_equal = runs["base"][0][w + "_gas"] == runs["hooks"][0][w + "_gas"] == runs["traced"][0][w + "_gas"]
        print(f"{w:<10}{med['base'] * 1e6:>12.1f}{med['hooks'] * 1e6:>12.1f}{med['hooks'] / med['base']:>8.3f}"
              f"{med['traced'] * 1e6:>12.1f}{str(gas_equal):>11}")


if __name__ == "__main__":
    main()
