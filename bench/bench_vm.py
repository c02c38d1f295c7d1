"""The contract VM's three figures of issue 3, each beside plain CPython in the same run.

1. compute: `s += i * i` for i in range(100_000) inside a contract (through vm.runtime,
   gas metered) vs the same function in plain Python.  Goal: at most 3x.
2. token transfers (two storage reads, two writes, one event) through the transaction
   path (ledger.transition.process_transaction: nonce, fee, refund, the VM, receipts)
   with signatures not checked (they are checked once at admission, as for transfers).
   Goal: at least 20,000 calls/s on one core.  Baseline: the same logic on a dict.
3. validation + compile of a 500-line contract.  Goal: at most 50 ms.  Baseline:
   CPython's own compile() of the same source.

    python bench/bench_vm.py [--runs 7] [--transfers 20000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.contracts import StateHost  # noqa: E402
from ledger.keys import PrivateKey  # noqa: E402
from ledger.params import ChainParams  # noqa: E402
from ledger.state import Account, State, changes, set_account  # noqa: E402
from ledger.transition import BlockEnv, process_transaction  # noqa: E402
from ledger import tx as txs  # noqa: E402
from vm import runtime  # noqa: E402
from vm.compiler import compile_contract  # noqa: E402
from vm.codec import decode_value  # noqa: E402

CHAIN_ID = "gradchain-bench"

COMPUTE = '''
@export
def compute(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s
'''

TOKEN = '''
"""A token: balances in storage, one event per transfer."""


@constructor
def init(holders: list, amount: int):
    for h in holders:
        storage["balance", h] = amount


@export
def transfer_to(to: bytes, amount: int) -> bool:
    sender = ctx.sender
    balance = storage.get(("balance", sender), 0)
    require(amount > 0 and balance >= amount, "insufficient balance")
    storage["balance", sender] = balance - amount
    storage["balance", to] = storage.get(("balance", to), 0) + amount
    emit("Transfer", frm=sender, to=to, amount=amount)
    return True
'''


def plain_compute(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def best_and_median(fn, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def bench_compute(runs: int) -> None:
    host = StateHost(State({}.get))
    address = b"\x01" * 20
    host.state._cache[b"c" + address] = COMPUTE  # the code, as a deploy would leave it
    env = runtime.Env(CHAIN_ID, 1, 0, b"\x02" * 20)
    expected = plain_compute(100_000)

    def in_contract() -> None:
        out = runtime.execute(host, env, 10**9, lambda rt: runtime.call_function(
            rt, address, "compute", [100_000], {}, 0))
        assert out.error is None and decode_value(out.output, 1 << 10) == expected

    in_contract()  # compile and warm
    base_best, base_med = best_and_median(lambda: plain_compute(100_000), runs)
    vm_best, vm_med = best_and_median(in_contract, runs)
    out = runtime.execute(host, env, 10**9, lambda rt: runtime.call_function(rt, address, "compute", [100_000], {}, 0))
    print(f"baseline: plain Python compute(100_000) median {base_med * 1e3:.2f} ms (best {base_best * 1e3:.2f})")
    print(f"RESULT compute in a contract: median {vm_med * 1e3:.2f} ms = {vm_med / base_med:.2f}x plain "
          f"(best {vm_best / base_best:.2f}x); gas {out.gas_used:,} ({vm_med * 1e9 / out.gas_used:.2f} ns/gas)")


def bench_token(n: int, runs: int) -> None:
    keys = [PrivateKey.from_label(f"bench token holder {i}") for i in range(100)]
    deployer = keys[0]
    params = ChainParams()
    committed: dict[bytes, bytes] = {}
    state = State(committed.get)
    for k in keys:
        set_account(state, k.address, Account(10**15, 0))
    env = BlockEnv(CHAIN_ID, 1, 1_700_000_000_000, b"\x00" * 20, params)
    deploy = txs.deploy(deployer, CHAIN_ID, 0, TOKEN, [[k.address for k in keys], 10**12], gas_limit=50_000_000)
    r = process_transaction(state, env, deploy)
    assert r.status == 1, r.error
    token = decode_value(r.output, 64)
    committed.update(changes(state))
    nonces = {k.address: (1 if k is deployer else 0) for k in keys}
    calls = []
    for i in range(n):
        a, b = keys[i % 100], keys[(i * 7 + 3) % 100]
        calls.append(txs.call(a, CHAIN_ID, nonces[a.address], token, "transfer_to", [b.address, 1],
                              gas_limit=200_000))
        nonces[a.address] += 1
    rates = []
    for _ in range(runs):
        s = State(committed.get)
        t = time.perf_counter()
        for tx in calls:
            process_transaction(s, env, tx)
        rates.append(n / (time.perf_counter() - t))
    check = State(committed.get)
    receipts = [process_transaction(check, env, tx) for tx in calls[:100]]
    assert all(r.status == 1 and len(r.events) == 1 for r in receipts), receipts[0]

    balances = {(("balance", k.address)): 10**12 for k in keys}
    log = []

    def plain_transfer(sender: bytes, to: bytes, amount: int) -> bool:
        balance = balances.get(("balance", sender), 0)
        if not (amount > 0 and balance >= amount):
            raise ValueError("insufficient balance")
        balances["balance", sender] = balance - amount
        balances["balance", to] = balances.get(("balance", to), 0) + amount
        log.append(("Transfer", sender, to, amount))
        return True

    pairs = [(keys[i % 100].address, keys[(i * 7 + 3) % 100].address) for i in range(n)]
    t = time.perf_counter()
    for a, b in pairs:
        plain_transfer(a, b, 1)
    plain_rate = n / (time.perf_counter() - t)
    print(f"baseline: the same transfer logic on a Python dict: {plain_rate:,.0f}/s")
    print(f"RESULT token transfers through process_transaction (no signature checks): median "
          f"{statistics.median(rates):,.0f} calls/s (best {max(rates):,.0f}); gas per call {receipts[0].gas_used:,}")


def contract_of_500_lines() -> str:
    parts = ['"""A contract of 500 lines, made of typical functions."""', "FEE = 3", "NAME = 'bench'", ""]
    i = 0
    while sum(p.count("\n") + 1 for p in parts) < 490:
        parts.append(f'''
@export
def op{i}(who: bytes, amount: int, items: list) -> dict:
    """Function {i}."""
    total = 0
    seen = {{}}
    for k, item in enumerate(items):
        if k % 2 == 0 and item > amount:
            total += item * FEE
        elif item in seen:
            continue
        else:
            seen[item] = k
    require(total >= 0, "negative total")
    key = ("op{i}", who)
    storage[key] = storage.get(key, 0) + total
    names = [str(x) + NAME for x in range(3) if x != amount]
    emit("Op{i}", who=who, total=total, names=names)
    return {{"total": total, "seen": len(seen), "name": NAME}}''')
        i += 1
    return "\n".join(parts) + "\n"


def bench_compile(runs: int) -> None:
    src = contract_of_500_lines()
    lines = src.count("\n")
    base_best, base_med = best_and_median(lambda: compile(src, "<bench>", "exec"), runs)
    best, med = best_and_median(lambda: compile_contract(src), runs)
    print(f"baseline: CPython compile() of the same {lines}-line source: median {base_med * 1e3:.2f} ms")
    print(f"RESULT validate + instrument + compile of a {lines}-line contract: median {med * 1e3:.2f} ms "
          f"(best {best * 1e3:.2f}; {med / base_med:.1f}x CPython's compile)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--transfers", type=int, default=20_000)
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}")
    bench_compute(a.runs)
    bench_token(a.transfers, max(3, a.runs // 2))
    bench_compile(a.runs)


if __name__ == "__main__":
    main()
