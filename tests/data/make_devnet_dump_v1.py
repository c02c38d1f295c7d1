"""How tests/data/devnet_dump_v1.json was made (once, by the first version of the dump
format; tests/test_devnet.py loads it).  Do NOT regenerate it when the format changes: a
later version's reader must still load this file as it is.

    python tests/data/make_devnet_dump_v1.py   # a devnet in a temp dir, the dump to stdout
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gradchain import Client, devnet_keys  # noqa: E402
from tests.nodeproc import free_port  # noqa: E402
from tests.test_devnet import FIXTURE_STAMP, NOBODY, STAMP  # noqa: E402


def mined(c: Client, fn) -> dict:
    """Run fn (a call that waits for its commit) while mining its block (manual mode)."""
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn()))
    t.start()
    while c.status()["mempool_size"] == 0:
        time.sleep(0.05)
    c.call("mine")
    t.join()
    return out["r"]


def main() -> None:
    alice, bob = devnet_keys(2)
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "--data-dir", d, "--rpc-port", str(port),
                                 "--mining", "manual", "--verify-workers", "0", "--quiet"], cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    Client(url).status()
                    break
                except Exception:
                    time.sleep(0.1)
            c, sender = Client(url), Client(url)
            addr = mined(c, lambda: sender.deploy(alice, STAMP))["address"]
            mined(c, lambda: sender.transfer(alice, bob.address, 1_000))
            c.call("devnet_set_time", [FIXTURE_STAMP])
            mined(c, lambda: sender.send(alice, addr, "stamp"))
            c.call("devnet_set_balance", [NOBODY, 4242])
            c.call("mine")
            print(json.dumps(c.call("devnet_dump"), indent=1))
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
