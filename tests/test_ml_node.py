"""ML contracts on a real node process: the compiled programs persist in <data-dir>/xla-cache, so a
node restarted on the same data dir serves its first ML transaction without an XLA compile, and
gives the same results as before the restart."""
from __future__ import annotations

import numpy as np

from ledger.genesis import devnet_keys
from tests.nodeproc import NodeProcess
from mlcore import gas as mgas
from vm.tensors import Tensor

SOURCE = '''
@constructor
def init():
    storage["model"] = ml.model("mlp", [4, 8, 3], 7)


@export
def fit(x, y) -> list:
    model, losses = ml.train(storage["model"], x, y, Decimal("0.5"), Decimal("0.5"), 4, 2)
    storage["model"] = model
    return losses


@export
def predict(x):
    return ml.predict(storage["model"], x)
'''

GAS = 900_000_000  # room for ML_COMPILE: the first use of each program on chain


def data(seed: int) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 4))
    return Tensor.from_numpy(x), Tensor.from_numpy((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0), "int")


def test_a_restarted_node_serves_ml_from_its_warm_compilation_cache(tmp_path):
    key = devnet_keys()[0]
    node = NodeProcess(tmp_path / "node").start()
    try:
        c = node.client()
        assert c.status()["ml"] is None  # jax is not even imported before a contract uses ml
        contract = c.deploy(key, SOURCE, [], gas_limit=GAS)["address"]
        x, y = data(1)
        # no gas_limit: estimate_gas runs with a whole block's gas and charges ML_COMPILE (the
        # program is new to the chain), as the transaction will be
        est = c.estimate(key.address, contract, "fit", [x, y])
        estimate = est["gas"]
        assert estimate > mgas.ML_COMPILE and est["ml_compile_gas"] == mgas.ML_COMPILE  # one new program, told
        assert c.estimate_gas(key.address, contract, "fit", [x, y]) == estimate
        first = c.send(key, contract, "fit", x, y)
        assert mgas.ML_COMPILE < first["receipt"]["gas_used"] <= estimate
        assert first["estimate"] == est
        # the program is on chain now: the next use does not pay ML_COMPILE
        assert c.estimate(key.address, contract, "fit", [x, y])["ml_compile_gas"] == 0
        cold = c.status()["ml"]
        assert cold["xla_compiles"] > 0 and cold["persistent_cache_writes"] > 0
        assert (node.data_dir / "xla-cache").is_dir()
        assert node.stop() == 0

        node.start()
        c = node.client()
        x2, y2 = data(2)
        second = c.send(key, contract, "fit", x2, y2, gas_limit=GAS)
        warm = c.status()["ml"]
        assert warm["xla_compiles"] == 0, warm  # every program came from the disk cache
        assert warm["persistent_cache_hits"] > 0
        # the same program (already registered on chain) costs the same gas, with no ML_COMPILE
        assert second["receipt"]["gas_used"] < first["receipt"]["gas_used"]
        assert len(second["result"]) == 6 and all(v >= 0 for v in second["result"])
        labels = c.view(contract, "predict", x)
        assert labels.shape == (12,) and set(labels.to_numpy().tolist()) <= {0, 1, 2}
    finally:
        node.kill()
