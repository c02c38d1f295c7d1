"""What sealing costs a p2p frame (issue 12 item 9): seal + open of one frame with
net/secret.py's ChaCha20-Poly1305 (counter nonce, length prefix as associated data), per
payload size, beside the baseline of the same run: framing without a seal (length prefix +
payload, what each frame cost before), and one msgpack encode of a vote-sized message.

    python bench/bench_secret.py [--repeat 7]

Medians of --repeat timings, each the mean over enough frames to take ~0.2 s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from net.p2p import frame  # noqa: E402
from net.secret import Ephemeral, derive  # noqa: E402

SIZES = {"1 KiB": 1 << 10, "64 KiB": 64 << 10, "1 MiB": 1 << 20}


def per_call_us(fn, repeat: int) -> float:
    """Median over `repeat` runs of the mean µs of one fn() call."""
    n, t = 1, 0.0
    while t < 0.05:          # calibrate: about 0.05 s per run at least
        n *= 2
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
    n = max(1, int(n * 0.2 / t))
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    x, y = Ephemeral.generate(), Ephemeral.generate()
    send, recv = derive(x, b"hello x", y.public, b"hello y").send, derive(y, b"hello y", x.public, b"hello x").recv

    def roundtrip(payload: bytes) -> None:
        wire = send.seal(payload)
        recv.open(wire[:4], wire[4:])   # as read_frame gets them: two bytes objects

    for name, size in SIZES.items():
        payload = bytes(size)
        sealed = per_call_us(lambda: roundtrip(payload), a.repeat)
        plain = per_call_us(lambda: frame(payload), a.repeat)
        print(f"RESULT {name} frame: seal + open {sealed:.1f} us ({size / sealed:.0f} MB/s); "
              f"baseline unsealed framing {plain:.2f} us", flush=True)
    handshake = per_call_us(lambda: derive(Ephemeral.generate(), b"hello x", y.public, b"hello y"), a.repeat)
    print(f"RESULT key agreement (ephemeral key pair + X25519 + transcript + KDF): {handshake:.0f} us per link")


if __name__ == "__main__":
    main()
