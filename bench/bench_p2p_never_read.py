"""What peers that never read cost a validator (issue 12 item 7): four node.py validators on
this machine, the same load of transfers sent to node 0 in two modes, a fresh network each run:

- baseline: no intruders;
- attack: 10 outsiders (random keys) join node 0 with a 4 KiB receive buffer and never read.

Printed per mode: the median over runs of node 0's peak RSS growth during the load
(/proc/<pid>/status VmRSS, sampled every 0.1 s), and in attack mode how many intruders
were dropped and the median seconds from the first broadcast until the last was dropped.

    python bench/bench_p2p_never_read.py [--runs 3] [--txs 24000] [--intruders 10]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.genesis import devnet_keys  # noqa: E402
from ledger.tx import transfer  # noqa: E402
from net.p2p import Limits  # noqa: E402
from tests.nodeproc import heights, validator_processes, wait_until  # noqa: E402
from tests.test_hostile_p2p import KEYS, Intruder, intruder_keys, vm_rss  # noqa: E402


async def one_run(d: Path, txs_n: int, intruders_n: int) -> tuple[int, int, float]:
    """(peak RSS growth in bytes, intruders dropped, seconds until the last was dropped)."""
    nodes = validator_processes(d, KEYS, extra={0: ["--p2p-max-per-ip", str(max(8, intruders_n))]})
    try:
        for n in nodes:
            await asyncio.to_thread(n.start)
        await asyncio.to_thread(wait_until, lambda: min(heights(nodes)) >= 3, 60, "four validators")
        node, users = nodes[0], devnet_keys(4)
        with node.client() as c:
            chain_id = c.chain_id
        per = txs_n // 4
        txs = [transfer(u, chain_id, nonce, users[(i + 1) % 4].address, 1).raw.hex()
               for nonce in range(per) for i, u in enumerate(users)]
        intruders = [Intruder(k, node) for k in intruder_keys(intruders_n, f"bench {d.name}")]
        assert all([await x.join(rcvbuf=4096) for x in intruders])
        rss0 = peak = vm_rss(node)
        started = time.monotonic()
        dropped_at: list[float] = []

        async def watch(x: Intruder) -> None:  # reads only once the load is over (see below)
            if await x.closed_by_node(Limits.write_timeout + 15):
                dropped_at.append(time.monotonic() - started)

        with node.client() as c:
            for i in range(0, len(txs), 500):
                await asyncio.to_thread(c.batch, [("broadcast_tx", {"tx": t}) for t in txs[i:i + 500]])
                peak = max(peak, vm_rss(node))
            while c.status()["mempool_size"]:
                peak = max(peak, vm_rss(node))
                await asyncio.sleep(0.1)
        # the load is committed; an intruder still linked now starts reading (and is not dropped)
        await asyncio.gather(*(watch(x) for x in intruders))
        peak = max(peak, vm_rss(node))
        for x in intruders:
            x.close()
        return peak - rss0, len(dropped_at), max(dropped_at, default=0.0)
    finally:
        for n in nodes:
            n.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--txs", type=int, default=24_000)
    p.add_argument("--intruders", type=int, default=10)
    a = p.parse_args()
    results: dict[str, list[tuple[int, int, float]]] = {"baseline": [], "attack": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            for mode, n in (("baseline", 0), ("attack", a.intruders)):
                r = asyncio.run(one_run(Path(tmp) / f"{mode}-{run}", a.txs, n))
                results[mode].append(r)
                print(f"run {run} {mode:8s}: RSS +{r[0] / 2**20:.1f} MiB, dropped {r[1]}/{n}"
                      + (f", last after {r[2]:.1f} s" if n else ""), flush=True)
    for mode, rs in results.items():
        line = f"{mode:8s}: median peak RSS growth {statistics.median(r[0] for r in rs) / 2**20:.1f} MiB"
        if mode == "attack":
            line += (f", dropped {min(r[1] for r in rs)}-{max(r[1] for r in rs)} of {a.intruders}, the last "
                     f"after a median {statistics.median(r[2] for r in rs):.1f} s")
        print(line)


if __name__ == "__main__":
    main()
