"""Two real node processes, started with different PYTHONHASHSEED values (and one with
CPython's int<->str digit limit at its minimum), run the same contract transactions:
every receipt and the state root after them must be bit-identical."""
from __future__ import annotations

import pytest

from ledger.genesis import devnet_keys
from gradchain import ContractFailed
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


ML_SOURCE = '''
@constructor
def init():
    storage["model"] = ml.model("mlp", [6, 16, 12, 3], 11)


@export
def fit(x, y) -> list:
    model, losses = ml.train(storage["model"], x, y, Decimal("0.25"), Decimal("0.9"), 16, 3)
    storage["model"] = model
    return losses


@export
def score(x, y) -> tuple:
    m = storage["model"]
    return ml.evaluate(m, x, y), ml.predict(m, x)


@export
def blend(x):
    other = ml.model("mlp", [6, 16, 12, 3], 12)
    storage["avg"] = ml.average([storage["model"], other], [3, 1])
    return ml.probabilities(storage["avg"], x)
'''


def _run_ml(node: NodeProcess) -> tuple[list, str]:
    import numpy as np
    from vm.tensors import Tensor

    key = devnet_keys()[0]
    rng = np.random.default_rng(20)
    x = rng.normal(size=(40, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1)
    xt, yt = Tensor.from_numpy(x), Tensor.from_numpy(y.astype(np.int32), "int")
    with node.client() as c:
        d = c.deploy(key, ML_SOURCE, [], gas_limit=900_000_000)
        receipts = [d["receipt"]]
        for _ in range(3):  # 3 transactions of 3 epochs of 3 batches: 27 steps with momentum
            receipts.append(c.send(key, d["address"], "fit", xt, yt, gas_limit=900_000_000)["receipt"])
        receipts.append(c.send(key, d["address"], "score", xt, yt, gas_limit=900_000_000)["receipt"])
        last = c.send(key, d["address"], "blend", xt, gas_limit=900_000_000)
        receipts.append(last["receipt"])
        root = c.block(height=last["height"])["header"]["state_root"]
    return receipts, root


def test_two_nodes_with_other_xla_settings_train_to_the_same_bits(tmp_path):
    """The same ML transactions on a node with default XLA and on one with fast math, SSE4.2
    code and 8 host devices: every receipt (losses, predictions, probabilities, gas) and the
    state root (the trained and averaged models) are bit-identical."""
    odd = "--xla_cpu_enable_fast_math=true --xla_cpu_max_isa=SSE4_2 --xla_force_host_platform_device_count=8"
    # no empty blocks (block time 1 h): each transaction lands at the same height on both nodes,
    # and heights are state here (the program registry records the height of a program's first use)
    nodes = [NodeProcess(tmp_path / "a", block_time=3600),
             NodeProcess(tmp_path / "b", block_time=3600, env={"XLA_FLAGS": odd})]
    try:
        results = [_run_ml(n.start()) for n in nodes]
    finally:
        for n in nodes:
            n.kill()
    (receipts_a, root_a), (receipts_b, root_b) = results
    assert [r["status"] for r in receipts_a] == ["success"] * 6
    assert receipts_a == receipts_b
    assert root_a == root_b
