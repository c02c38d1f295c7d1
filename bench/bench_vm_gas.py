"""Does gas track time?  Nanoseconds per gas unit for each kind of priced work.

DESIGN 3a: when the slowest kind is within a small factor of the fastest, the block gas
limit bounds the time to execute a block.  Each row runs one kind of operation in a
contract loop (through vm.runtime, with storage over ledger.state) and divides the
median wall time by the gas the receipt charged.  The loop's own overhead is part of
every row; the plain transfer row (21,000 gas) is the ledger's baseline from the same
run.

    python bench/bench_vm_gas.py [--runs 5]
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
from ledger.state import Account, State, set_account  # noqa: E402
from ledger.transition import BlockEnv, process_transaction  # noqa: E402
from ledger import tx as txs  # noqa: E402
from vm import runtime  # noqa: E402

OTHER = '''
@export
def echo(x):
    return x
'''

# name -> loop body (runs `n` times; `big`, `text`, `items`, `nested`, `other` are set up)
KINDS = {
    "small-int arithmetic (raw)": "s = (s + i * 3) % 1000003",
    "big-int multiply (2048 x 2048 bits)": "x = half * half2",
    "big-int divide (4096 / 2048 bits)": "x = big // half",
    "int -> str (1,200 digits)": "t = str(big)",
    "str concatenation (1 KiB)": "t = text + text",
    "str.replace (1 KiB)": "t = text.replace('a', 'bb')",
    "list append + pop": "items.append(i)\n        items.pop()",
    "dict set + get (int key)": "d[i] = i\n        x = d[i]",
    "dict set (tuple key)": "d[('k', i)] = i",
    "sorted (100 ints)": "t = sorted(items)",
    "== on nested lists": "x = nested == nested2",
    "comprehension (10 items)": "t = [j * 2 for j in range(10)]",
    "storage write + read": "storage['k', i % 16] = i\n        x = storage['k', i % 16]",
    "emit (half the iterations)": "if i % 2 == 0:\n            emit('E', i=i, t=text[:64])",
    "cross-contract call": "x = call(other, 'echo', i)",
}

TEMPLATE = '''
@export
def run(n: int, other: bytes):
    s = 0
    big = 3 ** 2580
    half = big >> 2048
    half2 = half + 1
    text = "abc" * 341
    items = list(range(100))
    nested = [[j for j in range(10)] for k in range(10)]
    nested2 = [[j for j in range(10)] for k in range(10)]
    d = {{}}
    for i in range(n):
        {body}
    return s
'''


def measure(kind: str, body: str, runs: int) -> tuple[float, int]:
    state = State({}.get)
    host = StateHost(state)
    me, other = b"\x01" * 20, b"\x02" * 20
    state._cache[b"c" + me] = TEMPLATE.format(body=body)
    state._cache[b"c" + other] = OTHER
    env = runtime.Env("bench", 1, 0, b"\x03" * 20)
    n = 2000

    def once() -> runtime.Outcome:
        return runtime.execute(host, env, 10**10, lambda rt: runtime.call_function(rt, me, "run", [n, other], {}, 0))

    out = once()
    assert out.error is None, (kind, out.error)
    base = runtime.execute(host, env, 10**10, lambda rt: runtime.call_function(rt, me, "run", [0, other], {}, 0))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e9 / (out.gas_used - base.gas_used), (out.gas_used - base.gas_used) // n


def transfer_ns_per_gas(runs: int) -> float:
    keys = [PrivateKey.from_label(f"gas bench {i}") for i in range(2)]
    committed: dict[bytes, bytes] = {}
    rates = []
    for _ in range(runs):
        s = State(committed.get)
        for k in keys:
            set_account(s, k.address, Account(10**15, 0))
        env = BlockEnv("bench", 1, 1, b"\x00" * 20, ChainParams())
        batch = [txs.transfer(keys[0], "bench", i, keys[1].address, 1) for i in range(2000)]
        t = time.perf_counter()
        for tx in batch:
            process_transaction(s, env, tx)
        rates.append((time.perf_counter() - t) * 1e9 / (2000 * 21_000))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}")
    print(f"baseline: a plain transfer through process_transaction: {transfer_ns_per_gas(a.runs):.3f} ns/gas")
    rows = []
    for kind, body in KINDS.items():
        ns, per_iteration = measure(kind, body, a.runs)
        rows.append((ns, kind, per_iteration))
        print(f"  {kind:32s} {ns:7.3f} ns/gas  ({per_iteration:,} gas per iteration)")
    fast, slow = min(rows), max(rows)
    print(f"RESULT slowest / fastest ns per gas: {slow[0] / fast[0]:.1f}x ({slow[1]} / {fast[1]})")


if __name__ == "__main__":
    main()
