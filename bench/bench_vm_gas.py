"""Does gas bound time?  Nanoseconds per gas of blocks filled with one kind of contract
work, against a block of transfers at about the same gas, measured in the same run.

Issue 12, item 4: a block filled with the slowest kind of work must execute in at most
1.5x the time of a block of transfers of the same gas, so that the block gas limit bounds
a block's execution time whatever it holds.  Each kind is a contract loop whose body does
one kind of priced work (an operator, a builtin, a method, a comprehension, storage, a
call); a block holds BLOCK_TXS calls of it, each using about TX_GAS gas, and the
verifier's path (Chain.execute_block of a received block, signatures already checked, as
bench/bench_block.py times it) is timed; ns/gas is the median time over the block's gas.
The baseline is a block of transfers on the same chain, timed the same way.

    python bench/bench_vm_gas.py [--runs 5] [--only substring]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CHAIN_ID, bench_genesis, bench_keys, open_chain, random_transfers  # noqa: E402
from ledger.block import STATUS_SUCCESS  # noqa: E402
from ledger.chain import Chain  # noqa: E402
from ledger.keys import PrivateKey  # noqa: E402
from ledger.votes import make_commit  # noqa: E402
from ledger import tx as txs  # noqa: E402

TX_GAS = 4_000_000     # gas each call of a kind uses, about
BLOCK_TXS = 10         # calls in a block of one kind (about 40 M gas)
TRANSFERS = 2_000      # transfers in the baseline block (42 M gas)
GOAL = 1.5             # the slowest kind's ns/gas over the transfers'

OTHER = '''
@export
def echo(x):
    return x
'''

# name -> loop body, run n times; the template's locals are set up before the loop
KINDS = {
    # operators
    "small-int arithmetic (raw)": "s = (s + i * 3) % 1000003",
    "int + on unknown types": "x = one + i",
    "big-int multiply (2048 x 2048 bits)": "x = half * half2",
    "big-int divide (4096 / 2048 bits)": "x = big // half",
    "big-int add (4096 bits)": "x = big + big",
    "pow (mod 2048 bits)": "x = pow(half, 65537, half2)",
    "shift": "x = one << 100",
    "Decimal * and /": "y = dec * dec / dec",
    "== on small values": "x = one == i",
    "== on nested lists (10 x 10)": "x = nested == nested2",
    "< on str (1 KiB)": "x = text < text2",
    "in list (100 ints)": "x = 99 in items",
    "in dict": "x = 5 in d",
    "list[i]": "x = items[7]",
    "list slice (100)": "t = items[1:]",
    "str slice (1 KiB)": "t = text[1:]",
    "tuple literal + unpack": "a, b = (i, one)",
    "list literal (4 items)": "t = [i, one, i, one]",
    "dict literal (2 items)": "t = {'a': i, 'b': one}",
    "str concatenation (1 KiB)": "t = text + text",
    "str repeat (1 KiB)": "t = text * 2",
    "list + (100)": "t = items + items",
    "list * (100)": "t = items * 2",
    # comprehensions
    "comprehension (10 ints)": "t = [j * 2 for j in range(10)]",
    "comprehension (1,000 ints)": "t = [j for j in range(1000)]",
    "comprehension with if (1,000)": "t = [j for j in range(1000) if j > 10]",
    "comprehension of tuples (100)": "t = [(j, j) for j in range(100)]",
    "comprehension over a list (100)": "t = [x for x in items]",
    "nested comprehension (10 x 10)": "t = [[j for j in range(10)] for k in range(10)]",
    "dict comprehension (100)": "t = {j: j for j in range(100)}",
    "for loop, empty body": "pass",
    "while loop": "k = 0\n        while k < 10:\n            k += 1",
    # builtins
    "abs": "x = abs(neg)",
    "all (100)": "x = all(items)",
    "any (100)": "x = any(items)",
    "bool": "x = bool(i)",
    "bytes(list of 100)": "x = bytes(small)",
    "bytes(n)": "x = bytes(1000)",
    "dict(pairs of 10)": "x = dict(pairs)",
    "divmod": "x = divmod(i, 7)",
    "enumerate (100)": "x = enumerate(items)",
    "int(str)": "x = int('12345')",
    "int(str, 16)": "x = int('ff' * 100, 16)",
    "isinstance": "x = isinstance(i, int)",
    "len": "x = len(items)",
    "list(range(100))": "x = list(range(100))",
    "max (100)": "x = max(items)",
    "min with key (100)": "x = min(items, key=neg_of)",
    "print": "print(i)",
    "range": "x = range(i)",
    "reversed (100)": "x = reversed(items)",
    "sorted (100 ints)": "t = sorted(items)",
    "sorted with key (100)": "t = sorted(items, key=neg_of)",
    "str(int)": "t = str(i)",
    "str(list of 100)": "t = str(items)",
    "int -> str (1,200 digits)": "t = str(big)",
    "sum (100)": "x = sum(items)",
    "tuple(list of 100)": "x = tuple(items)",
    "zip (2 x 100)": "x = zip(items, items)",
    "Decimal(str)": "y = Decimal('1.5')",
    "function call": "x = helper(i)",
    # methods
    "list append + pop": "items.append(i)\n        items.pop()",
    "list extend + clear": "t = []\n        t.extend(items)",
    "list insert + pop(0)": "items.insert(0, i)\n        items.pop(0)",
    "list remove": "items.append(-1)\n        items.remove(-1)",
    "list index / count": "x = items.index(50)\n        x = items.count(50)",
    "list reverse": "items.reverse()",
    "list sort": "items.sort()",
    "list copy": "t = items.copy()",
    "dict set + get (int key)": "d[i] = i\n        x = d[i]",
    "dict set (tuple key)": "d[('k', i)] = i",
    "dict get / setdefault / pop": "x = d.get(i)\n        d.setdefault(i, 1)\n        d.pop(i)",
    "dict keys / values / items (10)": "x = pairs_d.keys()\n        x = pairs_d.values()\n        x = pairs_d.items()",
    "dict update + copy (10)": "t = pairs_d.copy()\n        t.update(pairs_d)",
    "str upper / lower (1 KiB)": "t = text.upper()\n        t = text.lower()",
    "str strip": "t = ' ab '.strip()",
    "str split (1 KiB)": "t = words.split()",
    "str join (100)": "t = ','.join(strs)",
    "str.replace (1 KiB)": "t = text.replace('a', 'bb')",
    "str startswith / endswith / find": "x = text.startswith('ab')\n        x = text.endswith('c')\n        "
                                        "x = text.find('zz')",
    "str encode / bytes decode (1 KiB)": "b = text.encode()\n        t = b.decode()",
    "bytes hex / fromhex (1 KiB)": "t = blob.hex()\n        b = bytes.fromhex(t)",
    "int to_bytes / from_bytes": "b = i.to_bytes(32, 'big')\n        x = int.from_bytes(b, 'big')",
    "int bit_length": "x = i.bit_length()",
    # the world
    "storage write + read": "storage['k', i % 16] = i\n        x = storage['k', i % 16]",
    "storage.get of a missing key": "x = storage.get(i)",
    "emit (one iteration in 16)": "if i % 16 == 0:\n            emit('E', i=i, t=text[:64])",
    "cross-contract call": "x = call(other, 'echo', i)",
    "ctx fields": "x = ctx.sender\n        x = ctx.block_height",
    "require": "require(i >= 0)",
}

TEMPLATE = '''
def helper(v):
    return v


def neg_of(v):
    return -v


@export
def run(n: int, other: bytes):
    s = 0
    one = 1
    neg = -5
    big = 3 ** 2580
    half = big >> 2048
    half2 = half + 1
    dec = Decimal('1.25')
    text = "abc" * 341
    text2 = "abc" * 340 + "abd"
    words = "lorem ipsum " * 85
    blob = b"xyz" * 341
    items = list(range(100))
    small = list(range(100))
    strs = ["word"] * 100
    pairs = [(k, k) for k in range(10)]
    pairs_d = dict(pairs)
    nested = [[j for j in range(10)] for k in range(10)]
    nested2 = [[j for j in range(10)] for k in range(10)]
    d = {{}}
    for i in range(n):
        {body}
    return s
'''


class Bench:
    """A chain with a contract per kind deployed, and blocks of calls built on its tip."""

    def __init__(self, path: Path):
        self.keys = bench_keys(200)
        self.vkey = PrivateKey.from_label("gas bench validator")
        self.deployer, self.caller = self.keys[0], self.keys[1]
        self.genesis = bench_genesis(self.keys, self.vkey)
        self.chain: Chain = open_chain(path, self.genesis)
        sources = [OTHER] + [TEMPLATE.format(body=b) for b in KINDS.values()]
        deploys = [txs.deploy(self.deployer, CHAIN_ID, i, s, gas_limit=5 * 10**6) for i, s in enumerate(sources)]
        self.commit(deploys)
        self.other = txs.contract_address(self.deployer.address, 0)
        self.address = {kind: txs.contract_address(self.deployer.address, i + 1) for i, kind in enumerate(KINDS)}

    def commit(self, batch: list[txs.Transaction]) -> None:
        prop = self.chain.build_block(batch, self.vkey.address, self.chain.tip.time_ms + 1000, None)
        assert len(prop.block.txs) == len(batch), prop.rejected[:3]
        assert all(r.status == STATUS_SUCCESS for r in prop.output.receipts), prop.output.receipts
        commit = make_commit([self.vkey], CHAIN_ID, prop.block.height, 0, prop.block.hash)
        self.chain.commit_block(prop.block, commit, prop.output)

    def build(self, batch: list[txs.Transaction]):
        prop = self.chain.build_block(batch, self.vkey.address, self.chain.tip.time_ms + 1000, None)
        assert len(prop.block.txs) == len(batch), prop.rejected[:3]
        for r in prop.output.receipts:
            assert r.status == STATUS_SUCCESS, r
        return prop.block

    def calls(self, kind: str, n: int, count: int, gas_limit: int = 2 * TX_GAS + 10**6) -> list[txs.Transaction]:
        return [txs.call(self.caller, CHAIN_ID, nonce, self.address[kind], "run", [n, self.other],
                         gas_limit=gas_limit) for nonce in range(count)]

    def iterations_for(self, kind: str) -> int:
        """Loop iterations that make one call use about TX_GAS: extrapolated from 16 and 32
        (16: a whole period of the emit kind), then corrected once by the gas of that many
        (a kind's gas per iteration need not be constant: allocation is charged per KiB)."""
        g1, g2 = self.gas_of(kind, 16), self.gas_of(kind, 32)
        n = max(int((TX_GAS - g1) * 16 / max(g2 - g1, 1)) + 16, 1)
        return max(n * TX_GAS // self.gas_of(kind, n), 1)

    def gas_of(self, kind: str, n: int) -> int:
        """Gas is a function of the code and values: one run says it exactly."""
        block = self.build(self.calls(kind, n, 1, gas_limit=100 * TX_GAS))
        return self.chain.execute_block(block).receipts[0].gas_used

    def timed(self, block) -> tuple[float, int]:
        """(seconds, gas) of the verifier executing `block`, its signatures already checked."""
        verified = {t.hash for t in block.txs}
        t = time.perf_counter()
        out = self.chain.execute_block(block, verified=verified)
        return time.perf_counter() - t, out.gas_used

    def transfer_block(self):
        return self.build(random_transfers(self.keys[2:], TRANSFERS, {}, seed=7))


def compare(b: Bench, block, transfers, runs: int) -> tuple[float, float, float]:
    """(ns/gas of block, ns/gas of transfers, median ratio): the two timed in turn, `runs`
    times, so that a busy machine slows both alike; the ratio is the median of the pairs'."""
    ns, base, ratios = [], [], []
    for _ in range(runs):
        t0, g0 = b.timed(transfers)
        t1, g1 = b.timed(block)
        base.append(t0 * 1e9 / g0)
        ns.append(t1 * 1e9 / g1)
        ratios.append(ns[-1] / base[-1])
    return statistics.median(ns), statistics.median(base), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="measure only the kinds whose name holds this")
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}; blocks of {BLOCK_TXS} calls of about {TX_GAS:,} gas each, "
          f"each timed in turn with a block of {TRANSFERS} transfers; medians of {a.runs}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        b = Bench(Path(d) / "chain")
        transfers = b.transfer_block()
        b.timed(transfers)  # warm
        rows = []
        print(f"  {'kind':40s} {'ns/gas':>7s} {'transfers':>9s} {'ratio':>6s}")
        for kind in KINDS:
            if a.only not in kind:
                continue
            n = b.iterations_for(kind)
            block = b.build(b.calls(kind, n, BLOCK_TXS))
            ns, base, ratio = compare(b, block, transfers, a.runs)
            rows.append((ratio, kind, ns, base))
            print(f"  {kind:40s} {ns:7.3f} {base:9.3f} {ratio:5.2f}x  ({n:,} iterations a call)", flush=True)
    worst, best = max(rows), min(rows)
    print(f"baseline: a block of {TRANSFERS} transfers, median over all pairs: "
          f"{statistics.median(r[3] for r in rows):.3f} ns/gas")
    print(f"RESULT slowest kind: {worst[1]}: {worst[0]:.2f}x the transfer block's ns/gas (goal <= {GOAL}x); "
          f"fastest: {best[1]}: {best[0]:.2f}x")


if __name__ == "__main__":
    main()
