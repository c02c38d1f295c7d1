"""`status` latency and node RSS while another client attacks the RPC (issue 12, item 10).

One real node.py process.  A prober on 127.0.0.1 asks `status` 20 times a second, first
with no other load (the baseline), then while an attacker on 127.0.0.2 (another address of
loopback, so the per-IP connection limit does not shield the prober from it) sends the worst
batches the node accepts, back to back, from several threads: 1,000 cheap `account` reads,
1,000 `events` scans (stopped by the work bound), 1,000 `block` reads with full bodies, and
holds slowloris connections open.  Prints p50/p99 of `status` in both phases and the node's
peak RSS (VmHWM).  Goal: p99 under 50 ms and RSS under 150 MiB during the attack.

    python bench/bench_rpc_hostile.py [--seconds 20] [--threads 3]
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.nodeproc import NodeProcess  # noqa: E402

ATTACKER = "127.0.0.2"


def post(port: int, body: bytes, source: str = "127.0.0.1", timeout: float = 60) -> bytes:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        c.request("POST", "/", body, {"Content-Type": "application/json"})
        return c.getresponse().read()
    finally:
        c.close()


def batch(method: str, params: list, n: int = 1000) -> bytes:
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": method, "params": params} for i in range(n)]).encode()


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def probe(port: int, seconds: float) -> list[float]:
    """`status` latencies (s) at 20 Hz for `seconds`."""
    out, body = [], b'{"jsonrpc":"2.0","id":1,"method":"status"}'
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        reply = json.loads(post(port, body))
        assert "result" in reply, reply
        out.append(time.perf_counter() - t)
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - t)))
    return out


def attack(port: int, stop: threading.Event, kind: int, counts: dict) -> None:
    bodies = [batch("account", ["0x" + "11" * 20]), batch("events", []), batch("block", [0, None, True])]
    body = bodies[kind % len(bodies)]
    while not stop.is_set():
        try:
            post(port, body, source=ATTACKER)
            counts["batches"] += 1
        except OSError:
            counts["refused"] += 1


def slowloris(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), source_address=(ATTACKER, 0))
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            break
    return socks


def summary(lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100)
    return f"p50 {statistics.median(lat) * 1e3:7.2f} ms   p99 {q[98] * 1e3:7.2f} ms   max {max(lat) * 1e3:7.2f} ms  (n={len(lat)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--slowloris", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "data").start()
        try:
            assert node.proc is not None
            pid = node.proc.pid
            probe(node.port, 2)  # warm up
            base = probe(node.port, args.seconds)
            rss_idle = vm_kib(pid, "VmRSS") / 1024
            stop, counts = threading.Event(), {"batches": 0, "refused": 0}
            socks = slowloris(node.port, args.slowloris)
            threads = [threading.Thread(target=attack, args=(node.port, stop, i, counts), daemon=True)
                       for i in range(args.threads)]
            for t in threads:
                t.start()
            time.sleep(1)
            hit = probe(node.port, args.seconds)
            stop.set()
            for t in threads:
                t.join(60)
            for s in socks:
                s.close()
            peak = vm_kib(pid, "VmHWM") / 1024
        finally:
            node.kill()
    print(f"status, no attack:    {summary(base)}")
    print(f"status, under attack: {summary(hit)}")
    print(f"attack: {counts['batches']} batches of 1,000 answered, {counts['refused']} refused, "
          f"{len(socks)} slowloris connections held, {args.threads} threads from {ATTACKER}")
    print(f"node RSS: {rss_idle:.1f} MiB idle after the baseline, peak {peak:.1f} MiB (goal < 150 MiB)")
    p99 = statistics.quantiles(hit, n=100)[98] * 1e3
    print(f"goal p99 < 50 ms under attack: {'met' if p99 < 50 else 'NOT met'} ({p99:.1f} ms)")


if __name__ == "__main__":
    main()
