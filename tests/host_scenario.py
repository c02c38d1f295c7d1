"""Everything whose verdict must not depend on how Python was started, in one process:
run by tests/test_hostile_host.py under each host setting (digit limits, -O/-OO, -W error,
-X dev/utf8, locales, hash seeds, recursion limits) and each CPython, which compares the
JSON line it prints.

  python tests/host_scenario.py GENESIS_FILE [--ml]

prints {"settings": what this process runs under (so the caller can check its setting
really applied), "results": {...}}: the determinism scenario's digest and contract run,
the deploy (and a few calls) of every example contract, contracts at the edges of the
VM's own limits (long literals in every base, int <-> str of 1,233 digits, nesting, call
depth, warnings, hidden characters), all as receipts and a state root, and the hash of a
genesis file whose chain id is not ASCII.  With --ml (only where JAX is installed) also
the deploys of the ML examples.

Needs only msgpack, pynacl and lmdb without --ml, like tests/determinism_scenario.py.
"""
from __future__ import annotations

import json
import locale
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.genesis import load_genesis  # noqa: E402
from ledger.hashing import hash_bytes  # noqa: E402
from ledger.keys import PrivateKey  # noqa: E402
from ledger.tx import Transaction, call, contract_address, deploy  # noqa: E402
from tests.determinism_scenario import CHAIN, replay, run, run_contracts  # noqa: E402
from vm.decimals import Decimal  # noqa: E402
from vm.intstr import int_to_str  # noqa: E402

AUTHOR = PrivateKey.from_label("host scenario author")
BOB = PrivateKey.from_label("host scenario bob").address
GAS = 20_000_000
MAX = (1 << 4096) - 1
MAX_TEXT = int_to_str(MAX)  # this script, too, runs under the host digit limits
OVER_TEXT = MAX_TEXT[:-1] + "6"  # 2**4096, one bit over (2**4096 - 1 ends in 5)


def _example(name: str) -> str:
    return (ROOT / "examples" / name).read_text(encoding="utf-8")


def _fn(*lines: str, params: str = "") -> str:
    return f"@export\ndef f({params}):\n" + "".join(f"    {ln}\n" for ln in lines)


# Contracts at the edges of the VM's own limits: each deploys (or is refused) and its `f`
# is called; the receipts say which, and must agree on every host.
EDGES = [
    _fn("return " + "9" * 1000 + " % 7"),                                   # the 1,000 digits
    _fn(f"return [{MAX_TEXT}, {hex(MAX)}, {oct(MAX)}, {bin(MAX)}, " + "1_" * 600 + "1, " + "0" * 3000 + "]"),
    _fn("return " + OVER_TEXT),                                          # one bit over: refused
    _fn("return " + hex(MAX + 1)),
    _fn("return " + "9" * 60000),                                           # refused whatever the host
    _fn("x = 2 ** 4095 + 12345", "print(x)", "emit('Big', x=x, s=str(x))",
        "y = int(str(x) + '')", "d = Decimal('9' * 1200 + '.5')",
        "return [str(x), y == x, str(-x), str(d), str(int(d)), str([x, d])[-30:]]"),
    _fn("return int('9' * 1235)"),                                          # over MAX_INT_DIGITS: limit_exceeded
    _fn("return " + "-(" * 98 + "1" + ")" * 98),                            # the deepest expression allowed
    _fn("return " + "-(" * 99 + "1" + ")" * 99),                            # one deeper: refused
    _fn("return " + "-" * 30000 + "1"),                                     # deeper than any parser
    "@export\ndef f():\n    return down(60)\n\ndef down(n: int) -> int:\n    if n == 0:\n        return 0\n"
    "    return 1 + down(n - 1)\n",                                          # 61 frames: under MAX_CALL_DEPTH
    "@export\ndef f():\n    return down(80)\n\ndef down(n: int) -> int:\n    if n == 0:\n        return 0\n"
    "    return 1 + down(n - 1)\n",                                          # over it: limit_exceeded
    _fn("return ['\\d', 1 is None, ~True, b'a' == 'a', 'a' != b'a']"),     # SyntaxWarning, Deprecation, BytesWarning
    _fn("return 'abc\u202edef'"),                                           # Trojan Source: refused
    _fn("x = 1  # \u2066 hidden", "return x"),
    _fn("return 'zero\u200bwidth'"),
    _fn("return '\\u202e' + 'é 日本'"),                                      # written as an escape: fine
    _fn("return ['İ'.lower(), 'ß'.upper(), 'ı'.upper(), 'I'.lower()]"),      # the locale has no say
]


def _example_txs(start: int) -> list[Transaction]:
    """Deploy every non-ML example contract, then a few calls of each."""
    token, registry, escrow, market = (contract_address(AUTHOR.address, start + i) for i in range(4))
    txs = [deploy(AUTHOR, CHAIN, start, _example("token.py"), ("Grad Token", "GT", 1_000 * 10**18), 0, GAS),
           deploy(AUTHOR, CHAIN, start + 1, _example("registry.py"), (1_000,), 0, GAS),
           deploy(AUTHOR, CHAIN, start + 2, _example("escrow.py"), (BOB, Decimal("0.025")), 0, GAS),
           deploy(AUTHOR, CHAIN, start + 3, _example("ml_marketplace.py"), (Decimal("0.05"),), 0, GAS)]
    calls = [(token, "transfer_to", (BOB, 250 * 10**18), 0), (token, "balance_of", (BOB,), 0),
             (registry, "register", ("alice",), 1_000), (registry, "resolve", ("alice",), 0),
             (escrow, "open_deal", (BOB,), 5_000), (escrow, "arbiter_fee", (10**6,), 0)]
    return txs + [call(AUTHOR, CHAIN, start + 4 + i, c, fn, args, value, GAS)
                  for i, (c, fn, args, value) in enumerate(calls)]


def _edge_txs(start: int) -> list[Transaction]:
    txs = []
    for i, src in enumerate(EDGES):
        txs.append(deploy(AUTHOR, CHAIN, start + 2 * i, src, (), 0, GAS))
        txs.append(call(AUTHOR, CHAIN, start + 2 * i + 1, contract_address(AUTHOR.address, start + 2 * i), "f", (),
                        0, GAS))
    return txs


def _ml_txs(start: int) -> list[Transaction]:
    """The ML examples' deploys (they run JAX: only where it is installed)."""
    from vm.tensors import Model, Tensor
    import numpy as np

    x_val = Tensor.from_numpy(np.arange(24).reshape(6, 4) % 5 / 4)
    y_val = Tensor.from_numpy(np.arange(6, dtype=np.int32) % 3, "int")
    model = Model.from_float("softmax", (4, 3), [np.full((4, 3), 0.25), np.zeros(3)])
    return [deploy(AUTHOR, CHAIN, start, _example("ml_training.py"),
                   ("softmax", [4, 3], 7, Decimal("0.5"), Decimal("0.9"), 16), 0, 10**9),
            deploy(AUTHOR, CHAIN, start + 1, _example("ml_federated.py"),
                   ("softmax", [4, 3], 3, x_val, y_val, 2), 0, 10**9),
            deploy(AUTHOR, CHAIN, start + 2, _example("ml_inference.py"), ("host-test", model), 0, 10**9)]


def settings() -> dict:
    """What this process runs under, as the caller sets it (to check the setting applied)."""
    return {"python": "%d.%d" % sys.version_info[:2], "int_max_str_digits": sys.get_int_max_str_digits(),
            "optimize": sys.flags.optimize, "dev_mode": sys.flags.dev_mode, "utf8_mode": sys.flags.utf8_mode,
            "bytes_warning": sys.flags.bytes_warning, "warnings": [f[0] for f in warnings.filters[:1]],
            "recursion_limit": sys.getrecursionlimit(), "hash_seed": os.environ.get("PYTHONHASHSEED"),
            "locale": locale.setlocale(locale.LC_ALL, ""), "encoding": locale.getpreferredencoding(False)}


def main(argv: list[str]) -> dict:
    host = settings()
    txs = _example_txs(0)
    txs += _edge_txs(len(txs))
    if "--ml" in argv:
        txs += _ml_txs(len(txs))
    results = {"scenario": run(), "contracts": hash_bytes("\n".join(run_contracts()).encode()).hex(),
               "receipts": replay(txs, {AUTHOR.address: 10**15}),
               "genesis": [load_genesis(argv[0]).chain_id, load_genesis(argv[0]).hash.hex()]}
    return {"settings": host, "results": results}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
