"""What naming a blob costs (issue 13): ledger.blobs.ref_of on a 64 MiB blob (1 MiB chunks:
one leaf hash per chunk over a memoryview, then the 127 inner hashes), beside the baseline
of the same run: one hashlib.sha256 over the same bytes, the least any content address can
cost. Also chunked() (split + hash once + keep the leaves; its baseline: the hash plus a copy
of the bytes into 1 MiB pieces) and check_chunk of every chunk with its proof, what a node
receiving the blob does.

    python bench/bench_blobs.py [--mib 64] [--repeat 7]

Medians of --repeat runs; MiB/s = size / median time.

With --replicate (issue 13 item 1, net/blob_reactor.py): four validators as real node.py
processes on this machine; a data set of --mib MiB (ledger/datasets.py layout, 1 MiB
chunks) is uploaded to ONE node's RPC (put_blob_chunk in JSON-RPC batches of 4 chunks, as
the SDK sends them), its BLOB transaction broadcast there, and the other three fetch it over
p2p when they check the block that records it.  Timed: the upload, the replication (BLOB
broadcast -> every node holds every chunk), and upload -> BLOB committed on all four.  The
baseline of the same run: a plain copy of the same bytes from one file to another
(shutil.copyfile, then fsync), once per validator that receives it.

    python bench/bench_blobs.py --replicate [--mib 64] [--repeat 3]
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


def dataset_of(mib: int, seed: int) -> bytes:
    """A data set blob of about `mib` MiB: int32 Q.16 rows of 64 features and a class label."""
    import numpy as np

    from gradchain.blobs import dataset_bytes
    rows = ((mib << 20) - 32) // (4 * 65)
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << 17), 1 << 17, size=(rows, 64), dtype=np.int32)
    return dataset_bytes(x, rng.integers(0, 10, size=rows, dtype=np.int64))


def copy_s(data: bytes, tmp: Path, copies: int) -> float:
    """Seconds to copy a file of `data` to `copies` files (each fsynced): the baseline."""
    import shutil
    src = tmp / "src.bin"
    src.write_bytes(data)
    t0 = time.perf_counter()
    for i in range(copies):
        dst = tmp / f"copy{i}.bin"
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
    took = time.perf_counter() - t0
    for p in tmp.glob("*.bin"):
        p.unlink()
    return took


def held(client, ref) -> bool:
    from gradchain import NotFound
    try:
        return client.blob(ref)["complete"]
    except NotFound:
        return False


def replicate(mib: int, repeat: int) -> None:
    import tempfile

    from gradchain import Client
    from gradchain.blobs import upload_of
    from ledger.genesis import devnet_keys
    from ledger.keys import PrivateKey
    from ledger.tx import put_blob
    from tests.nodeproc import validator_processes
    keys = [PrivateKey.from_label(f"bench blobs validator {i}") for i in range(4)]
    user = devnet_keys(1)[0]
    rows: dict[str, list[float]] = {"copy1": [], "copy3": [], "upload": [], "replicate": [], "committed": []}
    with tempfile.TemporaryDirectory(prefix="bench-blobs-") as d:
        tmp = Path(d)
        nodes = validator_processes(tmp / "tn", keys, block_time=0.5)
        try:
            for n in nodes:
                n.start()
            clients = [Client(n.url, timeout=120) for n in nodes]
            while min(c.status()["height"] for c in clients) < 1:
                time.sleep(0.2)
            for r in range(repeat):
                data = dataset_of(mib, r)
                size = len(data)
                rows["copy1"].append(copy_s(data, tmp, 1))
                rows["copy3"].append(copy_s(data, tmp, 3))
                up = upload_of(data, CHUNK_BYTES)
                ref = up.ref
                wire = {"root": ref.root.hex(), "size": ref.size, "chunk_bytes": ref.chunk_bytes}
                c0 = clients[0]
                t0 = time.perf_counter()
                for start in range(0, ref.chunks, 4):
                    calls = [("put_blob_chunk", {"blob": wire, "index": i, "chunk": up.read(i).hex(),
                                                 "proof": [h.hex() for h in up.proof(i)]})
                             for i in range(start, min(ref.chunks, start + 4))]
                    for res in c0.batch(calls):
                        if isinstance(res, Exception):
                            raise res
                t1 = time.perf_counter()
                nonce = c0.account(user.address).pending_nonce or 0
                tx_hash = c0.broadcast(put_blob(user, c0.chain_id, nonce, ref))
                waiting = set(range(1, 4))
                while waiting:
                    waiting = {i for i in waiting if not held(clients[i], ref)}
                    time.sleep(0.02)
                t2 = time.perf_counter()
                for c in clients:
                    c.wait_for_tx(tx_hash, timeout=120, poll=0.05)
                t3 = time.perf_counter()
                rows["upload"].append(t1 - t0)
                rows["replicate"].append(t2 - t1)
                rows["committed"].append(t3 - t0)
                print(f"run {r}: {size / 2**20:.1f} MiB: copy {rows['copy1'][-1]:.3f} s, 3 copies "
                      f"{rows['copy3'][-1]:.3f} s, upload {t1 - t0:.2f} s, replicate to 3 {t2 - t1:.2f} s, "
                      f"upload -> committed on 4 {t3 - t0:.2f} s", flush=True)
            for c in clients:
                c.close()
        finally:
            for n in nodes:
                n.kill()
    med = {k: statistics.median(v) for k, v in rows.items()}
    m = size / 2**20
    print(f"RESULT baseline file copy of {m:.1f} MiB (copyfile + fsync): {med['copy1']:.3f} s "
          f"({m / med['copy1']:.0f} MiB/s); 3 copies {med['copy3']:.3f} s ({3 * m / med['copy3']:.0f} MiB/s)")
    print(f"RESULT upload to one node's RPC: {med['upload']:.2f} s ({m / med['upload']:.1f} MiB/s), "
          f"{med['upload'] / med['copy1']:.1f}x the copy")
    print(f"RESULT replication over p2p to the other 3 validators: {med['replicate']:.2f} s "
          f"({m / med['replicate']:.1f} MiB/s of blob, {3 * m / med['replicate']:.1f} MiB/s moved), "
          f"{med['replicate'] / med['copy3']:.1f}x the 3 copies")
    print(f"RESULT upload -> BLOB committed on all 4: {med['committed']:.2f} s ({m / med['committed']:.1f} MiB/s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=None, help="runs (default 7; 3 with --replicate)")
    ap.add_argument("--replicate", action="store_true", help="four validator processes: upload and replication")
    a = ap.parse_args()
    if a.replicate:
        replicate(a.mib, a.repeat or 3)
        return
    a.repeat = a.repeat or 7
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
