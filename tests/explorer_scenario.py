"""The chain the explorer tests read (tests/test_explorer.py, tests/test_explorer_browser.py):
a short deterministic run of examples/ml_training.py (the softmax training of
examples/ml_demo.py, 3 batches of 32 rows = 6 recorded losses), a stranger's committed
revert, and a contract whose stored label, event and revert reason are HTML."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradchain import Client, Decimal, Reverted, Tensor, devnet_keys

ROOT = Path(__file__).resolve().parent.parent
ML_GAS = 900_000_000
FEATURES, CLASSES = 4, 3
BATCHES = 3  # 32 rows at mini-batch 16: two steps (two recorded losses) each
RULE = np.random.default_rng(1).normal(size=(FEATURES, CLASSES))
HOSTILE_LABEL = '<img id="pwn-label" src="x" onerror="document.title=\'pwned\'">'
HOSTILE_REASON = '<b id="pwn-reason">boom</b><script>document.title="pwned"</script>'
HOSTILE_SOURCE = '''
@constructor
def init(label: str):
    storage["label"] = label
    emit("Labelled", label=label)


@export
def label() -> str:
    return storage["label"]


@export
def fail(why: str):
    require(False, why)
'''


@dataclass(frozen=True)
class Scenario:
    training: str          # the ml_training.py contract
    steps: int             # its recorded losses
    failed_tx: str         # carol's train(): committed, reverted
    failed_reason: str
    failed_line: int
    hostile: str           # the contract with HTML in its storage, event and revert
    hostile_tx: str        # its reverted fail(HOSTILE_REASON)


def blobs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(-2, 2, (n, FEATURES))
    return x, np.argmax(x @ RULE, -1).astype(np.int32)


def build(client: Client) -> Scenario:
    alice, bob, carol = devnet_keys()[:3]
    src = (ROOT / "examples" / "ml_training.py").read_text()
    training = client.deploy(alice, src, ["softmax", [FEATURES, CLASSES], 7, Decimal("0.5"), Decimal("0.875"), 16],
                             gas_limit=ML_GAS)["address"]
    for i in range(BATCHES):
        x, y = blobs(10 + i, 32)
        client.send(alice, training, "train", Tensor.from_numpy(x), Tensor.from_numpy(y, "int"), gas_limit=ML_GAS)
    x, y = blobs(20, 32)
    try:
        client.send(carol, training, "train", Tensor.from_numpy(x), Tensor.from_numpy(y, "int"), gas_limit=ML_GAS)
        raise AssertionError("a stranger trained the model")
    except Reverted as e:
        failed = e
    hostile = client.deploy(bob, HOSTILE_SOURCE, [HOSTILE_LABEL], gas_limit=2_000_000)["address"]
    try:
        client.send(bob, hostile, "fail", HOSTILE_REASON, gas_limit=2_000_000)
        raise AssertionError("require(False) passed")
    except Reverted as e:
        hostile_tx = e.tx_hash
    assert failed.tx_hash and hostile_tx and failed.line
    return Scenario(training, client.view(training, "steps"), failed.tx_hash, failed.message, failed.line, hostile,
                    hostile_tx)
