"""GET /metrics scrape time on a long chain (issue 14, "Figures"), against a real node.

A manual-mode devnet is grown by `mine` calls (1,000 empty blocks each) for about --build-s
seconds; at each checkpoint height the median of --scrapes GET /metrics round trips is taken
beside the median of as many plain `status` RPCs (both over HTTP keep-alive on loopback),
so the printed ratio shows whether a scrape grows with height (it should not: every value
is read from the tip, the mempool and counters, never from history).

    python bench/bench_metrics.py [--build-s 180] [--scrapes 200]
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nodeproc import NodeProcess  # noqa: E402

STATUS = json.dumps({"jsonrpc": "2.0", "method": "status", "id": 1}).encode()


def request(c: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> bytes:
    c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
    r = c.getresponse()
    data = r.read()
    assert r.status == 200, (path, r.status, data[:200])
    return data


def median_ms(c: http.client.HTTPConnection, n: int, method: str, path: str, body: bytes | None = None) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        request(c, method, path, body)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-s", type=float, default=180.0, help="seconds of block building at most")
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        node = NodeProcess(Path(d) / "node", "--mining", "manual", "--verify-workers", "0").start()
        try:
            c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=600)
            mine = json.dumps({"jsonrpc": "2.0", "method": "mine", "params": [1000], "id": 1}).encode()
            rows, built, started = [], 0.0, time.perf_counter()
            checkpoints = [0, 1_000, 3_000, 10_000, 30_000, 100_000]
            height = 0
            for target in checkpoints:
                t = time.perf_counter()
                while height < target and time.perf_counter() - started < a.build_s:
                    request(c, "POST", "/", mine)
                    height += 1000
                built += time.perf_counter() - t
                text = request(c, "GET", "/metrics").decode()
                assert f"gradchain_height {float(height)}" in text, "the height metric follows the chain"
                status = median_ms(c, a.scrapes, "POST", "/", STATUS)
                scrape = median_ms(c, a.scrapes, "GET", "/metrics")
                rows.append((height, scrape, status, len(text)))
                print(f"height {height:>7}: /metrics median {scrape:.3f} ms, status median {status:.3f} ms "
                      f"(x{scrape / status:.2f}), {len(text)} bytes", flush=True)
                if height < target:  # out of building time: the last row is the height reached
                    break
        finally:
            node.kill()
    top = rows[-1][0]
    print(f"built {top} blocks in {built:.0f} s ({top / built:.0f} blocks/s with mine(1000))"
          if built and top else "no blocks built")
    first, last = rows[0], rows[-1]
    print(f"scrape at height {last[0]} / at height {first[0]}: x{last[1] / first[1]:.2f} "
          f"(status: x{last[2] / first[2]:.2f}); {a.scrapes} requests per median")


if __name__ == "__main__":
    main()
