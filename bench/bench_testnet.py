"""Four validators as real node.py processes on this machine (issue 5), beside the
one-validator devnet measured in the same run with the same load:

- block interval with no load (median of consecutive block times, header clock);
- latency: median time from broadcast_tx to finality, one transfer at a time through
  `broadcast_tx_commit` (the client's send-and-wait), sent to each node in turn;
- committed transfers per second under load: pre-signed transfers from --senders
  accounts as JSON-RPC batches of `broadcast_tx`, one stream per node (disjoint senders,
  nonces in order), until every node's mempool is empty (goal: at least half of the devnet
  figure, on the same 2 cores that now run four validators).

    python bench/bench_testnet.py [--total 40000] [--runs 3] [--block-time 1] [--latency 20] [--workers 0]

Also printed: CPU seconds per committed transfer over all node processes (and their
signature workers) during the load, which says how far the figure is from what the cores
allow: four replicas each verify, execute and store every transfer.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_e2e import bodies_for, children, stream  # noqa: E402
from bench.common import BALANCE, bench_genesis, bench_keys  # noqa: E402
from ledger.keys import PrivateKey, save_key  # noqa: E402
from ledger.tx import transfer  # noqa: E402
from gradchain import Client  # noqa: E402
from net.testnet import TESTNET_CHAIN_ID  # noqa: E402
from tests.nodeproc import NodeProcess, validator_processes  # noqa: E402

VALIDATORS = 4


def latency_txs(keys: list[PrivateKey], chain_id: str, n: int) -> list[bytes]:
    """One transfer from each of the first n senders (their nonce 0)."""
    return [transfer(keys[i], chain_id, 0, keys[(i + 1) % len(keys)].address, 1).raw for i in range(n)]


def sign_load(keys: list[PrivateKey], chain_id: str, total: int, used: int) -> list[list[bytes]]:
    """Per sender, its transfers in nonce order (round-robin over senders); the first `used`
    senders start at nonce 1 (they sent a latency transfer)."""
    per: list[list[bytes]] = [[] for _ in keys]
    n = len(keys)
    for i in range(total):
        s = i % n
        nonce = (1 if s < used else 0) + len(per[s])
        per[s].append(transfer(keys[s], chain_id, nonce, keys[(s + 1 + i // n) % n].address, 1).raw)
    return per


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their live children
    (the signature workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        for p in [pid, *children(pid)]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def block_interval(c: Client, seconds: float) -> tuple[float, int]:
    """Median ms between consecutive blocks made during `seconds` of no load; (ms, blocks)."""
    h0 = c.status()["height"]
    time.sleep(seconds)
    h1 = c.status()["height"]
    times = [c.block(h)["header"]["time_ms"] for h in range(h0, h1 + 1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return (statistics.median(gaps) if gaps else float("nan")), len(gaps)


def latency(clients: list[Client], txs: list[bytes]) -> float:
    """Median seconds from broadcast_tx to finality, one transfer at a time, nodes in turn."""
    out = []
    for i, raw in enumerate(txs):
        t = time.perf_counter()
        clients[i % len(clients)].broadcast_commit(raw, timeout=60)
        out.append(time.perf_counter() - t)
        time.sleep(0.05 + 0.1 * (i % 5))   # land at different points of the block cycle
    return statistics.median(out)


def throughput(clients: list[Client], ports: list[int], per: list[list[bytes]], senders: int, batch: int,
               max_pending: int, pids: list[int]) -> tuple[float, int, int, list[str], float]:
    """Send every transfer, one stream per node; (committed/s, committed, blocks, errors,
    CPU seconds the node processes used meanwhile)."""
    c0 = clients[0]
    cpu0 = cpu_s(pids)
    h0 = c0.status()["height"]
    groups = [range(i, senders, len(ports)) for i in range(len(ports))]
    errors: list[str] = []
    total = sum(len(p) for p in per)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(port, bodies_for(per, g, batch), errors, max_pending,
                                                      f"http://127.0.0.1:{port}"))
               for port, g in zip(ports, groups)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    deadline = time.monotonic() + 300
    while any(c.status()["mempool_size"] > 0 for c in clients) and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    cpu = cpu_s(pids) - cpu0
    h1 = max(c.status()["height"] for c in clients)
    while min(c.status()["height"] for c in clients) < h1:
        time.sleep(0.05)
    committed = sum(len(c0.block(height=h)["tx_hashes"]) for h in range(h0 + 1, h1 + 1))
    if committed < total - len(errors):
        errors.append(f"only {committed} of {total} committed")
    return committed / elapsed, committed, h1 - h0, errors, cpu


def run_devnet(d: Path, keys: list[PrivateKey], a: argparse.Namespace) -> dict:
    vkey = PrivateKey.from_label("bench validator")
    gpath, kpath = d / "genesis.json", d / "validator.json"
    genesis = bench_genesis(keys, vkey)
    gpath.write_text(json.dumps(genesis.to_json()))
    save_key(vkey, kpath)
    node = NodeProcess(d / "devnet", "--genesis", str(gpath), "--key", str(kpath),
                       "--verify-workers", str(a.devnet_workers), block_time=a.block_time)
    try:
        node.start()
        c = Client(node.url)
        interval, nb = block_interval(c, a.idle)
        lat = latency([c], latency_txs(keys, genesis.chain_id, a.latency))
        per = sign_load(keys, genesis.chain_id, a.total, a.latency)
        assert node.proc is not None
        tps, committed, blocks, errors, cpu = throughput([c], [node.port] * a.streams, per, a.senders, a.batch,
                                                          a.max_pending, [node.proc.pid])
        c.close()
    finally:
        node.kill()
    return {"interval_ms": interval, "interval_n": nb, "latency_s": lat, "tps": tps, "committed": committed,
            "blocks": blocks, "errors": errors, "cpu_us": cpu / max(1, committed) * 1e6}


def run_testnet(d: Path, keys: list[PrivateKey], a: argparse.Namespace) -> dict:
    vkeys = [PrivateKey.from_label(f"bench testnet validator {i}") for i in range(VALIDATORS)]
    nodes = validator_processes(d / "tn", vkeys, block_time=a.block_time,
                              accounts=tuple((k.address, BALANCE) for k in keys), verify_workers=a.workers)
    try:
        for n in nodes:
            n.start()
        clients = [Client(n.url) for n in nodes]
        deadline = time.monotonic() + 60
        while min(c.status()["height"] for c in clients) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the testnet made no blocks")
            time.sleep(0.1)
        interval, nb = block_interval(clients[0], a.idle)
        lat = latency(clients, latency_txs(keys, TESTNET_CHAIN_ID, a.latency))
        per = sign_load(keys, TESTNET_CHAIN_ID, a.total, a.latency)
        tps, committed, blocks, errors, cpu = throughput(clients, [n.port for n in nodes], per, a.senders,
                                                          a.batch, a.max_pending, [n.proc.pid for n in nodes])
        top = min(c.status()["height"] for c in clients)
        for h in range(1, top + 1):   # the same block at every height on every node
            hashes = {c.block(height=h)["header"]["hash"] for c in clients}
            if len(hashes) != 1:
                errors.append(f"nodes disagree at height {h}: {hashes}")
        for c in clients:
            c.close()
    finally:
        for n in nodes:
            n.kill()
    return {"interval_ms": interval, "interval_n": nb, "latency_s": lat, "tps": tps, "committed": committed,
            "blocks": blocks, "errors": errors, "cpu_us": cpu / max(1, committed) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=40_000, help="transfers of the load phase")
    ap.add_argument("--senders", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--streams", type=int, default=4, help="devnet: client streams (the testnet has one per node)")
    ap.add_argument("--max-pending", type=int, default=20_000)
    ap.add_argument("--block-time", type=float, default=1.0, help="node.py --block-time for both")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of no load to time block intervals")
    ap.add_argument("--latency", type=int, default=20, help="transfers timed one at a time")
    ap.add_argument("--workers", type=int, default=0, help="--verify-workers of each testnet node")
    ap.add_argument("--devnet-workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=3, help="devnet and testnet runs, alternating")
    a = ap.parse_args()
    keys = bench_keys(a.senders)
    devs, tns = [], []
    for run in range(a.runs):   # alternate, so that both see the machine's same minutes
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            print(f"run {run + 1}/{a.runs}: devnet (1 validator, --block-time {a.block_time}) ...", flush=True)
            devs.append(run_devnet(d, keys, a))
            print(f"run {run + 1}/{a.runs}: testnet ({VALIDATORS} validators, --block-time {a.block_time}, "
                  f"verify workers {a.workers}) ...", flush=True)
            tns.append(run_testnet(d, keys, a))
        for name, r in (("devnet", devs[-1]), ("testnet", tns[-1])):
            if r["errors"]:
                print(f"{name}: {len(r['errors'])} errors, e.g. {r['errors'][:3]}")
        print(f"  tx/s: {VALIDATORS} validators {tns[-1]['tps']:,.0f}, devnet {devs[-1]['tps']:,.0f}", flush=True)

    def med(rs: list[dict], k: str) -> float:
        return statistics.median(r[k] for r in rs)

    tn_tps, dev_tps = med(tns, "tps"), med(devs, "tps")
    print(f"RESULT block interval, no load: {VALIDATORS} validators {med(tns, 'interval_ms'):.0f} ms, devnet "
          f"{med(devs, 'interval_ms'):.0f} ms (medians); --block-time {a.block_time * 1000:.0f} ms")
    print(f"RESULT broadcast_tx -> final, median of {a.latency} x {a.runs}: {VALIDATORS} validators "
          f"{med(tns, 'latency_s') * 1000:.0f} ms, devnet {med(devs, 'latency_s') * 1000:.0f} ms")
    print(f"RESULT committed transfers/s under load ({a.total:,}), median of {a.runs}: {VALIDATORS} validators "
          f"{tn_tps:,.0f} {[round(r['tps']) for r in tns]}, devnet {dev_tps:,.0f} {[round(r['tps']) for r in devs]}: "
          f"{tn_tps / dev_tps:.2f}x (goal >= 0.5x)")
    print(f"RESULT CPU per committed transfer (node processes and their workers): {VALIDATORS} validators "
          f"{med(tns, 'cpu_us'):.0f} us ({med(tns, 'cpu_us') / VALIDATORS:.0f} us per validator), devnet "
          f"{med(devs, 'cpu_us'):.0f} us; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
