"""WebSocket subscriptions under load (issue 14): notifications delivered per second to 100
subscribers while a node.py commits transfers at full rate, and what they cost the node:
committed transfers/s with the subscribers beside the same run without them (goal: at most
10% fewer), alternating phases on one node, medians of the rounds.

Each subscriber is one WebSocket connection holding two subscriptions: `blocks`, and `txs`
of one sender (the transfers come from 100 senders, so every committed transfer is one
notification and every block 100).  The subscribers run in a child process (asyncio,
aiohttp, each notification parsed as JSON); on a small machine it shares the cores with the
node, so the node's own CPU time per committed transfer is printed too.

    python bench/bench_ws.py [--total 20000] [--rounds 3] [--subscribers 100]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_e2e import bodies_for, stream  # noqa: E402
from bench.common import CHAIN_ID, bench_genesis, bench_keys, median  # noqa: E402
from gradchain import Client  # noqa: E402
from ledger.keys import PrivateKey, address_hex, save_key  # noqa: E402
from ledger.tx import transfer  # noqa: E402
from tests.nodeproc import free_port  # noqa: E402


# ---- the subscribers (a child process) ------------------------------------------------------------

async def subscribers(url: str, addresses: list[str]) -> None:
    """One connection per address (blocks + its txs); prints the counts when stdin says so."""
    import aiohttp
    counts = {"blocks": 0, "txs": 0, "closed": 0}

    async def one(session: aiohttp.ClientSession, addr: str) -> None:
        async with session.ws_connect(url + "/ws", max_msg_size=64 << 20) as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["blocks"]})
            await ws.send_json({"jsonrpc": "2.0", "id": 2, "method": "subscribe", "params": ["txs", {"sender": addr}]})
            kinds: dict[str, str] = {}
            async for msg in ws:
                doc = json.loads(msg.data)
                if "id" in doc:
                    kinds[doc["result"]] = "blocks" if doc["id"] == 1 else "txs"
                else:
                    counts[kinds[doc["params"]["subscription"]]] += 1
            counts["closed"] += 1

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(one(session, a)) for a in addresses]
        await asyncio.sleep(1)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "quit":
                break
            print(json.dumps(counts), flush=True)
        for t in tasks:
            t.cancel()


# ---- the run ----------------------------------------------------------------------------------------

def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/PID/stat; clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def phase(port: int, url: str, node_pid: int, bodies: list[list[bytes]], max_pending: int) -> tuple[int, float, float]:
    """Send the bodies and wait for every transfer to commit: (committed, seconds, node CPU s)."""
    c = Client(url)
    h0 = c.status()["height"]
    cpu0, t0 = cpu_s(node_pid), time.perf_counter()
    errors: list[str] = []
    threads = [threading.Thread(target=stream, args=(port, b, errors, max_pending, url)) for b in bodies]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    while c.status()["mempool_size"] > 0:
        time.sleep(0.02)
    dt, cpu = time.perf_counter() - t0, cpu_s(node_pid) - cpu0
    h1 = c.status()["height"]
    committed = sum(len(c.block(height=h)["tx_hashes"]) for h in range(h0 + 1, h1 + 1))
    assert not errors, errors[:3]
    return committed, dt, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=20_000, help="transfers per phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (without, with) subscribers")
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    n = a.subscribers
    keys = bench_keys(n)
    per_phase = a.total // n
    phases = 2 * a.rounds
    t = time.perf_counter()
    signed = [[transfer(k, CHAIN_ID, j, keys[(s + 1 + j) % n].address, 1).raw for j in range(per_phase * phases)]
              for s, k in enumerate(keys)]
    print(f"signed {per_phase * phases * n} transfers in {time.perf_counter() - t:.1f}s", flush=True)
    vkey = PrivateKey.from_label("bench validator")
    with tempfile.TemporaryDirectory() as d:
        gpath, kpath = Path(d) / "genesis.json", Path(d) / "validator.json"
        gpath.write_text(json.dumps(bench_genesis(keys, vkey).to_json()))
        save_key(vkey, kpath)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        node = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "--data-dir", str(Path(d) / "data"),
                                 "--rpc-port", str(port), "--genesis", str(gpath), "--key", str(kpath), "--quiet",
                                 "--block-time", "1", "--rpc-max-per-ip", str(n + 20),
                                 "--ws-max-connections", str(n + 10)], cwd=ROOT)
        c = Client(url)
        for _ in range(300):
            try:
                c.status()
                break
            except Exception:
                time.sleep(0.1)
        child = None
        rows: list[tuple[str, int, float, float, dict | None]] = []
        try:
            for p in range(phases):
                with_subs = p % 2 == 1
                chunk = [s[p * per_phase:(p + 1) * per_phase] for s in signed]
                groups = [range(i, n, a.streams) for i in range(a.streams)]
                bodies = [bodies_for(chunk, g, a.batch) for g in groups]
                if with_subs:
                    child = subprocess.Popen([sys.executable, __file__, "--child", url, *[address_hex(k.address)
                                                                                       for k in keys]],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                    assert child.stdout is not None and child.stdin is not None
                    assert child.stdout.readline().strip() == "ready"
                    child.stdin.write("count\n")
                    child.stdin.flush()
                    before = json.loads(child.stdout.readline())
                committed, dt, cpu = phase(port, url, node.pid, bodies, 40_000)
                got = None
                if with_subs:
                    assert child is not None and child.stdin is not None and child.stdout is not None
                    last: dict = {}
                    for _ in range(100):  # until the subscribers have read what was sent
                        time.sleep(0.1)
                        child.stdin.write("count\n")
                        child.stdin.flush()
                        now = json.loads(child.stdout.readline())
                        if now == last and now["txs"] - before["txs"] >= committed:
                            break
                        last = now
                    got = {k: now[k] - before[k] for k in now} | {"child_cpu": cpu_s(child.pid)}
                    child.stdin.write("quit\n")
                    child.stdin.flush()
                    child.wait(30)
                    child = None
                rows.append(("with" if with_subs else "without", committed, dt, cpu, got))
                extra = "" if got is None else (f", delivered {got['txs']} tx + {got['blocks']} block notifications "
                                                f"({(got['txs'] + got['blocks']) / dt:,.0f}/s), {got['closed']} dropped; "
                                                f"the subscribers' process used {got['child_cpu']:.1f} CPU s")
                print(f"phase {p}: {'with' if with_subs else 'without'} {n} subscribers: {committed} committed in "
                      f"{dt:.2f}s = {committed / dt:,.0f}/s, node CPU {cpu / committed * 1e6:.0f} us/transfer{extra}",
                      flush=True)
        finally:
            if child is not None:
                child.kill()
            node.terminate()
            node.wait(30)
    base = [r[1] / r[2] for r in rows if r[0] == "without"]
    subs = [r[1] / r[2] for r in rows if r[0] == "with"]
    notes = [(r[4]["txs"] + r[4]["blocks"]) / r[2] for r in rows if r[4] is not None]
    cpu_base = [r[3] / r[1] * 1e6 for r in rows if r[0] == "without"]
    cpu_subs = [r[3] / r[1] * 1e6 for r in rows if r[0] == "with"]
    exact = all(r[4]["txs"] == r[1] and r[4]["closed"] == 0 for r in rows if r[4] is not None)
    print(f"RESULT baseline without subscribers: {median(base):,.0f} committed transfers/s "
          f"(node CPU {median(cpu_base):.0f} us/transfer)")
    print(f"RESULT with {n} subscribers: {median(subs):,.0f} committed transfers/s "
          f"(node CPU {median(cpu_subs):.0f} us/transfer), {median(notes):,.0f} notifications/s delivered; "
          f"every committed transfer delivered once, none dropped: {exact}")
    print(f"RESULT ratio with/without: {median(subs) / median(base):.3f} (goal >= 0.90); node CPU per transfer "
          f"{median(cpu_subs) / median(cpu_base):.3f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(subscribers(sys.argv[2], sys.argv[3:]))
    else:
        main()
