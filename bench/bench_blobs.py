"""What naming a blob costs (issue 13): ledger.blobs.ref_of on a 64 MiB blob (1 MiB chunks:
one leaf hash per chunk over a memoryview, then the 127 inner hashes), beside the baseline
of the same run: one hashlib.sha256 over the same bytes, the least any content address can
cost. Also chunked() (split + hash once + keep the leaves; its baseline: the hash plus a copy
of the bytes into 1 MiB pieces) and check_chunk of every chunk with its proof, what a node
receiving the blob does.

    python bench/bench_blobs.py [--mib 64] [--repeat 7]

Medians of --repeat runs; MiB/s = size / median time.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.blobs import CHUNK_BYTES, check_chunk, chunked, ref_of  # noqa: E402


def median_s(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    data = os.urandom(a.mib << 20)
    blob = chunked(data)
    assert ref_of(data) == blob.ref and blob.ref.chunks == -(-len(data) // CHUNK_BYTES)
    proofs = [blob.proof(i) for i in range(blob.ref.chunks)]

    def check_all() -> None:
        for i, c in enumerate(blob.chunks):
            check_chunk(blob.ref, i, c, proofs[i])

    def copy_pieces() -> list[bytes]:
        view = memoryview(data)
        return [bytes(view[i:i + CHUNK_BYTES]) for i in range(0, len(view), CHUNK_BYTES)]

    base = median_s(lambda: hashlib.sha256(data).digest(), a.repeat)
    copy = median_s(copy_pieces, a.repeat)
    named = median_s(lambda: ref_of(data), a.repeat)
    split = median_s(lambda: chunked(data), a.repeat)
    checked = median_s(check_all, a.repeat)
    mib = a.mib
    print(f"RESULT baseline hashlib.sha256 of {mib} MiB: {base * 1e3:.1f} ms ({mib / base:.0f} MiB/s)")
    print(f"RESULT ref_of {mib} MiB ({blob.ref.chunks} chunks of 1 MiB): {named * 1e3:.1f} ms "
          f"({mib / named:.0f} MiB/s), {named / base:.3f}x the baseline")
    print(f"RESULT baseline copy of {mib} MiB into 1 MiB bytes objects: {copy * 1e3:.1f} ms ({mib / copy:.0f} MiB/s)")
    print(f"RESULT chunked (split + leaves + root) {mib} MiB: {split * 1e3:.1f} ms "
          f"({mib / split:.0f} MiB/s), {split / (base + copy):.3f}x hash + copy")
    print(f"RESULT check_chunk of all {blob.ref.chunks} chunks with proofs: {checked * 1e3:.1f} ms "
          f"({mib / checked:.0f} MiB/s), {checked / base:.3f}x the baseline")


if __name__ == "__main__":
    main()
