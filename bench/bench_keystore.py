"""What opening an encrypted key file costs (issue 14 item 10): load_key of a keystore at each
of the argon2id limits `gradchain keys new --kdf-limits` offers, beside the baseline of the
same run, load_key of the plaintext file of the same key.  Every CLI command that signs with
a keystore, and a validator at start, pays this once.

    python bench/bench_keystore.py [--repeat 7]

Medians of --repeat loads; argon2id runs on one thread (libsodium's parallelism is 1).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import keystore  # noqa: E402
from ledger.keys import PrivateKey, load_key, save_key  # noqa: E402

PASSWORD = "bench password"


def median_s(path: Path, password: str | None, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        load_key(path, password)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    key = PrivateKey.generate()
    with tempfile.TemporaryDirectory() as d:
        plain = Path(d) / "plain.json"
        save_key(key, plain)
        base = median_s(plain, None, a.repeat)
        print(f"BASELINE plaintext key file: load_key {base * 1e6:.0f} us")
        for name in ("min", "interactive", "moderate"):
            limits = keystore.LIMITS_BY_NAME[name]
            path = Path(d) / f"{name}.json"
            save_key(key, path, PASSWORD, limits)
            t = median_s(path, PASSWORD, a.repeat)
            print(f"RESULT keystore --kdf-limits {name} (opslimit {limits.opslimit}, memlimit "
                  f"{limits.memlimit >> 10} KiB): load_key {t * 1e3:.1f} ms, {t / base:.0f}x the plaintext file")


if __name__ == "__main__":
    main()
