"""The explorer's home page load time in headless Chromium on a long chain (issue 14,
"Figures"), against a real node.

A manual-mode devnet is grown by `mine` calls (1,000 empty blocks each, then a block of three
transfers so the page has transactions to list); at each checkpoint height a fresh load of
/explorer is timed --loads times, from navigation start to the latest blocks and
transactions drawn (the page's performance mark "explorer-home-drawn", set once its lists are
in the DOM), beside the load of a static page of the same node in the same browser (GET
/health: navigation start to its load event).  The page reads the tip's status, the latest 10
blocks and their transactions: never history in proportion to height, so the figure should
stay flat.  Needs Debian's chromium and chromium-driver and selenium.

    python bench/bench_explorer.py [--build-s 300] [--loads 15]
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

from gradchain import devnet_keys  # noqa: E402
from tests.nodeproc import NodeProcess  # noqa: E402
from tests.test_explorer_browser import chromium  # noqa: E402  (the tests' headless Chromium, system driver)

DRAWN = "return performance.getEntriesByName('explorer-home-drawn').map(e => e.startTime)"
LOADED = "const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd"


def rpc(c: http.client.HTTPConnection, method: str, params: list) -> dict:
    c.request("POST", "/", json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode(),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    doc = json.loads(r.read())
    assert "error" not in doc, doc
    return doc["result"]


def wait_for(driver, script: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while True:
        v = driver.execute_script(script)
        if v:
            return float(v[0] if isinstance(v, list) else v)
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.005)


def time_loads(driver, url: str, script: str, n: int) -> float:
    """Median ms of n fresh loads of url (a blank page between, so each is a navigation)."""
    times = []
    for _ in range(n):
        driver.get("about:blank")
        driver.get(url)
        times.append(wait_for(driver, script))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-s", type=float, default=300.0, help="seconds of block building at most")
    ap.add_argument("--loads", type=int, default=15)
    a = ap.parse_args()
    keys = devnet_keys(4)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        node = NodeProcess(Path(d) / "node", "--mining", "manual", "--verify-workers", "0").start()
        driver = chromium()
        try:
            c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=600)
            client = node.client()
            height, started, built = 0, time.perf_counter(), 0.0
            for target in (1_000, 10_000, 100_000):
                t = time.perf_counter()
                while height < target - 1 and time.perf_counter() - started < a.build_s:
                    n = min(1000, target - 1 - height)
                    rpc(c, "mine", [n])
                    height += n
                for i in range(3):  # a block of transfers at the tip: the page lists them
                    client.transfer(keys[i], keys[3].address, 1000 + i, wait=False)
                rpc(c, "mine", [1])
                height = rpc(c, "status", [])["height"]
                built += time.perf_counter() - t
                home = time_loads(driver, f"{node.url}/explorer", DRAWN, a.loads)
                assert driver.find_elements("css selector", "#latest-blocks tbody tr")[0].get_attribute(
                    "data-height") == str(height), "the page shows the tip"
                static = time_loads(driver, f"{node.url}/health", LOADED, a.loads)
                rows.append((height, home, static))
                print(f"height {height:>7}: explorer home median {home:.1f} ms, GET /health page median "
                      f"{static:.1f} ms (x{home / static:.1f}); {a.loads} loads each", flush=True)
                if height < target:  # out of building time
                    break
        finally:
            driver.quit()
            node.kill()
    print(f"built {rows[-1][0]} blocks in {built:.0f} s")
    first, last = rows[0], rows[-1]
    print(f"home page at height {last[0]} / at height {first[0]}: x{last[1] / first[1]:.2f} "
          f"(/health: x{last[2] / first[2]:.2f})")


if __name__ == "__main__":
    main()
