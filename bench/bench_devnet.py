"""devnet_revert on a state of 100,000 accounts (issue 14, "Figures"), against a real node.

A manual-mode devnet gets 100,000 extra accounts through one devnet_load (a dump built
here, one block).  Then, repeatedly: devnet_snapshot, k blocks of c devnet_set_balance
changes each, devnet_revert.  Printed: the median revert time of each case beside a plain
`status` RPC and a `devnet_snapshot` measured in the same run (all round trips over HTTP on
loopback), and one revert of the load itself (100,000 keys undone: the worst case).

    python bench/bench_devnet.py [--accounts 100000] [--reps 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradchain import Client  # noqa: E402
from ledger.devnet_dump import read_dump  # noqa: E402
from ledger.state import Account, account_key, encode_account  # noqa: E402
from ledger.trie import root_from_items  # noqa: E402
from tests.nodeproc import NodeProcess  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def med_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def big_dump(doc: dict, n: int) -> dict:
    """doc's state plus n accounts of 1..n base units (a valid version 1 dump)."""
    entries = read_dump(doc).entries
    for i in range(n):
        entries[account_key(i.to_bytes(4, "big") + bytes(16))] = encode_account(Account(1 + i, 0))
    items = sorted(entries.items())
    return dict(doc, entries=[[k.hex(), v.hex()] for k, v in items], state_root=root_from_items(entries).hex())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        node = NodeProcess(Path(d) / "node", "--mining", "manual", "--verify-workers", "0").start()
        try:
            c = Client(node.url, timeout=600)
            doc = big_dump(c.call("devnet_dump"), a.accounts)
            worst = c.call("devnet_snapshot")["id"]
            t_load = timed(lambda: c.call("devnet_load", [doc]))
            t_mine = timed(lambda: c.call("mine"))
            entries = len(c.call("devnet_dump")["entries"])
            print(f"state: {entries} entries ({a.accounts} accounts added by one devnet_load: "
                  f"load {t_load:.2f} s, its block {t_mine:.2f} s)")
            status = [timed(c.status) for _ in range(50)]
            cases = {}
            for blocks, changes in ((1, 1), (1, 100), (10, 100)):
                snaps, reverts = [], []
                for r in range(a.reps):
                    sid: list = []
                    snaps.append(timed(lambda: sid.append(c.call("devnet_snapshot")["id"])))
                    for b in range(blocks):
                        for j in range(changes):
                            addr = "0x" + (j.to_bytes(4, "big") + bytes(16)).hex()
                            c.call("devnet_set_balance", [addr, 10_000 + 100 * r + b])
                        c.call("mine")
                    reverts.append(timed(lambda: c.call("devnet_revert", [sid[0]])))
                cases[(blocks, changes)] = (snaps, reverts)
            t_worst = timed(lambda: c.call("devnet_revert", [worst]))
            after = len(c.call("devnet_dump")["entries"])
        finally:
            node.kill()
    base = med_ms(status)
    print(f"baseline: status RPC median {base:.2f} ms (50 calls)")
    for (blocks, changes), (snaps, reverts) in cases.items():
        rv = med_ms(reverts)
        print(f"revert of {blocks} block(s) x {changes} changed account(s): median {rv:.2f} ms "
              f"({rv / base:.1f}x status); devnet_snapshot median {med_ms(snaps):.2f} ms ({a.reps} reps)")
    print(f"revert of the load itself ({a.accounts} keys undone, one run): {t_worst * 1000:.0f} ms; "
          f"state after it: {after} entries")


if __name__ == "__main__":
    main()
