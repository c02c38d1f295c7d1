"""Two real node processes, started with different PYTHONHASHSEED values (and one with
CPython's int<->str digit limit at its minimum), run the same contract transactions:
every receipt and the state root after them must be bit-identical."""
from __future__ import annotations

import pytest

from consensus.genesis import devnet_keys
from net.client import ContractFailed
from tests.nodeproc import NodeProcess

SOURCE = '''
"""Work whose CPython internals depend on the hash seed: dicts of text keys, sorting,
big ints, Decimal, events, a failure."""


@constructor
def init(n: int):
    index = {}
    for i in range(n):
        index["key-" + str(i * 7919 % 1000)] = i
    storage["index"] = index


@export
def churn(salt: str) -> list:
    index = storage["index"]
    seen = {}
    for k, v in index.items():
        seen[salt + k] = v * v
    keys = sorted(seen.keys(), key=len)
    big = 3 ** 2000 + len(keys)
    storage["big", salt] = str(big)[:50]
    emit("Churned", salt=salt, first=keys[0], count=len(keys), fee=Decimal("1.25") * len(keys))
    return [keys[:3], big % 1000003, Decimal(len(keys)) / 7]


@export
def fail(x: int) -> int:
    storage["before"] = x
    require(x < 10, "x must be below " + str(10 ** 700)[:30])
    return x
'''


def _run(node: NodeProcess) -> tuple[list, str]:
    key = devnet_keys()[0]
    with node.client() as c:
        d = c.deploy(key, SOURCE, [300], gas_limit=50_000_000)
        receipts = [d["receipt"]]
        for salt in ("a", "bb", "ccc"):
            receipts.append(c.send(key, d["address"], "churn", salt, gas_limit=50_000_000)["receipt"])
        with pytest.raises(ContractFailed) as e:
            c.send(key, d["address"], "fail", 11, gas_limit=1_000_000)
        receipts.append(e.value.receipt)
        root = c.block(height=e.value.height)["header"]["state_root"]
    return receipts, root


def test_two_nodes_with_other_hash_seeds_agree_bit_for_bit(tmp_path):
    nodes = [NodeProcess(tmp_path / "a", env={"PYTHONHASHSEED": "1"}),
             NodeProcess(tmp_path / "b", env={"PYTHONHASHSEED": "4242", "PYTHONINTMAXSTRDIGITS": "640"})]
    try:
        results = [_run(n.start()) for n in nodes]
    finally:
        for n in nodes:
            n.kill()
    (receipts_a, root_a), (receipts_b, root_b) = results
    assert [r["status"] for r in receipts_a] == ["success"] * 4 + ["failed"]
    assert receipts_a == receipts_b  # gas, events, outputs, errors, failure places, logs
    assert root_a == root_b
