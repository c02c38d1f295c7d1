"""Blobs through the SDK and a running node.py (issue 13): `Client.put_blob` of a file (hash
pass, every chunk with its proof over JSON-RPC, the BLOB transaction and its commit) and
`Client.get_blob` to a file (every chunk's proof checked), in MiB/s, beside the baseline
of the same run: a plain copy of the same file (shutil.copyfile then fsync).

    python bench/bench_blob_rpc.py [--mib 64] [--chunk-kib 1024] [--repeat 3]

Each upload is a new blob (the file's first 8 bytes change), so no chunk is skipped.
Medians of --repeat runs; MiB/s = size / median time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradchain import devnet_keys  # noqa: E402
from tests.nodeproc import NodeProcess  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def copy_synced(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--chunk-kib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    key = devnet_keys()[0]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / "data.bin"
        src.write_bytes(os.urandom(a.mib << 20))
        node = NodeProcess(d / "node", block_time=0.2).start()
        try:
            c = node.client()
            copies, puts, gets = [], [], []
            for r in range(a.repeat):
                with open(src, "rb+") as f:
                    f.write(r.to_bytes(8, "little"))
                copies.append(timed(lambda: copy_synced(src, d / "copy.bin")))
                refs = []
                puts.append(timed(lambda: refs.append(c.put_blob(src, key, chunk_bytes=a.chunk_kib << 10))))
                gets.append(timed(lambda: c.get_blob(refs[0], d / "got.bin")))
                assert (d / "got.bin").read_bytes() == src.read_bytes()
            c.close()
        finally:
            node.kill()
    cp, put, get = (statistics.median(x) for x in (copies, puts, gets))
    mib = a.mib
    print(f"{mib} MiB in chunks of {a.chunk_kib} KiB, medians of {a.repeat} runs")
    print(f"  file copy + fsync (baseline)   {cp * 1e3:8.1f} ms  {mib / cp:8.1f} MiB/s")
    print(f"  put_blob (upload + BLOB tx)    {put * 1e3:8.1f} ms  {mib / put:8.1f} MiB/s  "
          f"{put / cp:5.1f}x the copy")
    print(f"  get_blob (every proof checked) {get * 1e3:8.1f} ms  {mib / get:8.1f} MiB/s  "
          f"{get / cp:5.1f}x the copy")


if __name__ == "__main__":
    main()
