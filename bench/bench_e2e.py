"""End to end on a running node.py: signed transfers submitted over JSON-RPC in batches,
committed per second (goal: 10,000/s on 2 cores), and the node's peak memory after
--total committed transfers.  Baseline in the same run: raw ed25519 verifies per second
on one core (the physical limit is that rate times the cores that verify).

    python bench/bench_e2e.py [--total 200000] [--batch 1000] [--senders 1000] [--streams 2]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CHAIN_ID, bench_genesis, bench_keys  # noqa: E402
from ledger.keys import PrivateKey, TX_DOMAIN, save_key, verify  # noqa: E402
from ledger.tx import transfer  # noqa: E402
from gradchain import Client  # noqa: E402
from tests.nodeproc import free_port  # noqa: E402


def proc_kib(pid: int, field: str = "VmHWM") -> int:
    """A memory figure of /proc/PID/status in KiB: VmHWM (peak RSS), RssAnon (heap and
    other private memory), RssFile (pages of mapped files: LMDB's map, libraries)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def sign_all(keys: list[PrivateKey], total: int) -> list[list[bytes]]:
    """Per sender, its transfers in nonce order (round-robin over senders)."""
    per: list[list[bytes]] = [[] for _ in keys]
    n = len(keys)
    for i in range(total):
        s = i % n
        k = keys[s]
        per[s].append(transfer(k, CHAIN_ID, len(per[s]), keys[(s + 1 + i // n) % n].address, 1).raw)
    return per


def bodies_for(per_sender: list[list[bytes]], senders: range, batch: int) -> list[bytes]:
    """JSON-RPC batch bodies, each sender's nonces in order, interleaving senders."""
    flat = []
    depth = max(len(per_sender[s]) for s in senders)
    for j in range(depth):
        for s in senders:
            if j < len(per_sender[s]):
                flat.append(per_sender[s][j])
    out = []
    for b in range(0, len(flat), batch):
        reqs = [{"jsonrpc": "2.0", "id": i, "method": "broadcast_tx", "params": [raw.hex()]}
                for i, raw in enumerate(flat[b:b + batch])]
        out.append(json.dumps(reqs, separators=(",", ":")).encode())
    return out


def stream(port: int, bodies: list[bytes], errors: list[str], max_pending: int, status_url: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c = Client(status_url)
    for body in bodies:
        while c.status()["mempool_size"] > max_pending:  # don't outrun the chain by too much
            time.sleep(0.02)
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        for r in json.loads(conn.getresponse().read()):
            if "error" in r:
                errors.append(r["error"]["message"])
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--max-pending", type=int, default=40_000)
    ap.add_argument("--verify-workers", type=int, default=None)
    a = ap.parse_args()

    keys = bench_keys(a.senders)
    vkey = PrivateKey.from_label("bench validator")
    t = time.perf_counter()
    per = sign_all(keys, a.total)
    print(f"signed {a.total} transfers in {time.perf_counter() - t:.1f}s", flush=True)
    sample = [PrivateKey.from_label("x").sign(TX_DOMAIN, CHAIN_ID, b"m" * 100)]
    pk = PrivateKey.from_label("x").public_key
    t = time.perf_counter()
    for _ in range(3000):
        verify(pk, sample[0], TX_DOMAIN, CHAIN_ID, b"m" * 100)
    raw_verify = 3000 / (time.perf_counter() - t)
    print(f"baseline: ed25519 verify {raw_verify:,.0f}/s on one core, x{os.cpu_count()} cores = "
          f"{raw_verify * (os.cpu_count() or 1):,.0f}/s ceiling", flush=True)

    with tempfile.TemporaryDirectory() as d:
        gpath, kpath = Path(d) / "genesis.json", Path(d) / "validator.json"
        gpath.write_text(json.dumps(bench_genesis(keys, vkey).to_json()))
        save_key(vkey, kpath)
        port = free_port()
        cmd = [sys.executable, str(ROOT / "node.py"), "--data-dir", str(Path(d) / "data"), "--rpc-port",
               str(port), "--genesis", str(gpath), "--key", str(kpath), "--quiet", "--block-time", "1"]
        if a.verify_workers is not None:
            cmd += ["--verify-workers", str(a.verify_workers)]
        node = subprocess.Popen(cmd, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        c = Client(url)
        for _ in range(300):
            try:
                c.status()
                break
            except Exception:
                time.sleep(0.1)
        try:
            groups = [range(i, a.senders, a.streams) for i in range(a.streams)]
            all_bodies = [bodies_for(per, g, a.batch) for g in groups]
            h0 = c.status()["height"]
            errors: list[str] = []
            t0 = time.perf_counter()
            threads = [threading.Thread(target=stream, args=(port, b, errors, a.max_pending, url)) for b in all_bodies]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            t_sent = time.perf_counter() - t0
            while c.status()["mempool_size"] > 0:
                time.sleep(0.05)
            t_all = time.perf_counter() - t0
            h1 = c.status()["height"]
            committed = sum(len(c.block(height=h)["tx_hashes"]) for h in range(h0 + 1, h1 + 1))
            peak_node = proc_kib(node.pid)
            anon, filed = proc_kib(node.pid, "RssAnon"), proc_kib(node.pid, "RssFile")
            peak_workers = [proc_kib(p) for p in children(node.pid)]
        finally:
            node.terminate()
            node.wait(30)
    if errors:
        print(f"{len(errors)} rejected, e.g. {errors[:3]}")
    print(f"submitted {a.total} in {t_sent:.1f}s ({a.total / t_sent:,.0f}/s admitted), "
          f"{committed} committed in {h1 - h0} blocks")
    print(f"RESULT end to end: {committed / t_all:,.0f} committed transfers/s "
          f"(goal >= 10,000/s; verify baseline {raw_verify:,.0f}/s per core)")
    print(f"RESULT peak RSS after {committed:,} committed transfers: node {peak_node / 1024:.0f} MiB, "
          f"signature workers {[round(p / 1024) for p in peak_workers]} MiB")
    print(f"       at the end: node private (RssAnon) {anon / 1024:.0f} MiB, mapped files (RssFile: the LMDB "
          f"map, shared libraries; the kernel reclaims these) {filed / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
