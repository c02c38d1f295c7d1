"""The ML example contracts (examples/ml_*.py) through gradchain.testing.TestChain, and
examples/ml_demo.py against a real node process.

Every happy path, every require() with its exact message and line (found in the source, as in
tests/test_examples.py), coins moving, and events.  Where a contract computes with `ml`, its
results are checked bit for bit against mlcore.programs run on the host with the same inputs.

A program's first use on a chain costs ML_COMPILE gas (300M) on top of its work, so ML
transactions here run with GAS; the compiled programs themselves are cached in the process.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlcore import programs
from mlcore.models import Arch
from tests.test_examples import line, reverts
from gradchain import ContractFailed, TestChain
from vm.decimals import Decimal
from vm.tensors import Model, Tensor

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TRAINING = (EXAMPLES / "ml_training.py").read_text()
FEDERATED = (EXAMPLES / "ml_federated.py").read_text()
INFERENCE = (EXAMPLES / "ml_inference.py").read_text()
MARKET = (EXAMPLES / "ml_marketplace.py").read_text()

GAS = 950_000_000
FEATURES, CLASSES = 4, 3
ARCH = Arch("softmax", (FEATURES, CLASSES))
LR, MU = Decimal("0.5"), Decimal("0.875")
Q = 1 << 16


def blobs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform in [-2, 2]^4, labelled by the argmax of a fixed linear map (separable)."""
    w = np.random.default_rng(1).normal(size=(FEATURES, CLASSES))
    x = np.random.default_rng(seed).uniform(-2, 2, (n, FEATURES))
    return x, np.argmax(x @ w, -1).astype(np.int32)


def inputs(x: np.ndarray) -> Tensor:
    """Features as a q16 tensor (what a client sends)."""
    return Tensor.from_numpy(x)


def labels(y) -> Tensor:
    return Tensor.from_numpy(np.asarray(y, np.int32), "int")


def params(m: Model) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(t.raw()) for t in m.params)


def velocity(m: Model) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(t.raw()) for t in m.velocity)


def same(a: Model, b_params, b_velocity=None) -> bool:
    ok = all(np.array_equal(p, q) for p, q in zip(params(a), b_params))
    return ok and (b_velocity is None or all(np.array_equal(p, q) for p, q in zip(velocity(a), b_velocity)))


def q16_int(d: Decimal) -> int:
    """A Decimal exact in Q.16 (lr, momentum) as mlcore's int."""
    return int(d * Q)


def host_train(m: Model, x: Tensor, y: Tensor, lr: Decimal, mu: Decimal, batch: int, epochs: int = 1):
    arch = Arch(m.kind, tuple(m.layers))
    return programs.train(arch, params(m), velocity(m), x.raw(), y.raw(), q16_int(lr), q16_int(mu), batch, epochs)


def trained_model(seed: int, rows: int = 96, start: Model | None = None, lr: Decimal = LR) -> Model:
    """A softmax model trained on the host (what a participant does off chain)."""
    m = start or Model("softmax", (FEATURES, CLASSES), [Tensor.from_numpy(np.zeros((FEATURES, CLASSES))),
                                                          Tensor.from_numpy(np.zeros(CLASSES))])
    x, y = blobs(seed, rows)
    p = host_train(m, inputs(x), labels(y), lr, MU, 16, 2)[0]
    return Model("softmax", (FEATURES, CLASSES), [Tensor(a.shape, "q16", a) for a in p])


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


# ==== on-chain training =========================================================================

@pytest.fixture
def training(chain):
    return chain.deploy(TRAINING, "softmax", [FEATURES, CLASSES], 7, LR, MU, 16, gas=GAS)


def test_training_deploy(chain, training):
    alice = chain.accounts[0]
    assert training.view.config() == {"owner": alice.address, "kind": "softmax", "layers": [4, 3], "seed": 7,
                                      "lr": LR, "momentum": MU, "batch": 16, "open": False}
    m = training.view.model()
    assert (m.kind, m.layers) == ("softmax", (4, 3))
    assert same(m, programs.init(ARCH, 7))  # the seed's init, what anyone can recompute
    assert training.view.steps() == 0 and training.view.updates() == 0
    assert training.view.last_loss() is None
    assert training.view.losses(0, 10) == []
    assert training.view.data_size() == {"chunks": 0, "rows": 0}
    assert training.view.is_trainer(alice.address) is True
    assert training.view.is_trainer(chain.accounts[1].address) is False


@pytest.mark.parametrize("lr, mu, batch, message", [
    (Decimal(0), MU, 16, "lr must be above 0 and at most 16"),
    (Decimal("16.01"), MU, 16, "lr must be above 0 and at most 16"),
    (LR, Decimal(1), 16, "momentum must be from 0 to below 1"),
    (LR, Decimal("-0.1"), 16, "momentum must be from 0 to below 1"),
    (LR, MU, -1, "batch cannot be negative (0 means all rows in one step)"),
])
def test_training_constructor_checks(chain, lr, mu, batch, message):
    with reverts(TRAINING, "check_schedule", message):
        chain.deploy(TRAINING, "softmax", [4, 3], 7, lr, mu, batch, gas=GAS)


def test_training_constructor_refuses_a_bad_architecture(chain):
    with pytest.raises(ContractFailed, match="ml.model: a model's kind is one of") as e:
        chain.deploy(TRAINING, "cnn", [4, 3], 7, LR, MU, 16, gas=GAS)
    assert e.value.code == "runtime_error"
    assert (e.value.function, e.value.line) == ("init", line(TRAINING, "ml.model(kind, layers, seed)"))
    with pytest.raises(ContractFailed, match="a mlp model has 3 to 5 layer sizes"):
        chain.deploy(TRAINING, "mlp", [4, 3], 7, LR, MU, 16, gas=GAS)


def test_training_steps_match_the_host_and_record_every_loss(chain, training):
    alice = chain.accounts[0]
    x, y = blobs(2, 80)
    m = training.view.model()
    expected = []
    for i in range(2):
        xs, ys = inputs(x[40 * i:40 * (i + 1)]), labels(y[40 * i:40 * (i + 1)])
        p, v, host_losses, _ = host_train(m, xs, ys, LR, MU, 16)
        got = training.train(xs, ys, sender=alice, gas=GAS)
        # 40 rows in batches of 16: 3 steps, the last of 8 rows
        assert got == [Decimal(k) / Q for k in host_losses] and len(got) == 3
        m = training.view.model()
        assert same(m, p, v)  # bit for bit what mlcore computes, velocity included
        expected += got
        assert chain.events[-1].name == "Trained"
        assert chain.events[-1].data == {"update": i, "trainer": alice.address, "rows": 40, "epochs": 1,
                                         "first_step": 3 * i, "steps": 3, "loss": got[-1]}
    assert training.view.steps() == 6
    assert training.view.losses(0, 100) == expected
    assert training.view.losses(2, 3) == expected[2:5]
    assert training.view.last_loss() == expected[-1]
    assert expected[-1] < expected[0] / 2  # it learns
    assert training.view.updates() == 2
    assert training.view.update(1) == {"trainer": alice.address, "rows": 40, "epochs": 1, "first_step": 3,
                                       "steps": 3, "loss": expected[-1], "height": chain.height}
    with reverts(TRAINING, "update", "no such update"):
        training.view.update(2)
    with reverts(TRAINING, "losses", "at most 512 losses per call", "str(MAX_PAGE)"):
        training.view.losses(0, 513)
    with reverts(TRAINING, "losses", "start and count cannot be negative"):
        training.view.losses(-1, 5)
    # free reads of the trained model: predictions and a held-out score
    xt, yt = blobs(3, 60)
    pred = training.view.predict(inputs(xt), gas=GAS)
    assert pred.format == "int" and pred.shape == (60,)
    assert np.array_equal(pred.raw(), programs.predict(ARCH, params(m), inputs(xt).raw()))
    score = training.view.evaluate(inputs(xt), labels(yt), gas=GAS)
    assert score["rows"] == 60 and score["correct"] == int(np.sum(pred.raw() == yt)) and score["correct"] >= 45


def test_training_trainers_and_open_mode(chain, training):
    alice, bob = chain.accounts[:2]
    x, y = inputs(blobs(2, 8)[0]), labels(blobs(2, 8)[1])
    with reverts(TRAINING, "require_trainer", "only admitted trainers can train or add data"):
        training.train(x, y, sender=bob, gas=GAS)
    with reverts(TRAINING, "require_trainer", "only admitted trainers can train or add data"):
        training.add_data(x, y, sender=bob, gas=GAS)
    with reverts(TRAINING, "only_owner", "only the owner can do this"):
        training.set_trainer(bob.address, True, sender=bob)
    training.set_trainer(bob.address, True, sender=alice)
    assert chain.events[-1].data == {"trainer": bob.address, "allowed": True}
    assert training.view.is_trainer(bob.address) is True
    training.train(x, y, sender=bob, gas=GAS)
    assert training.view.update(0)["trainer"] == bob.address
    training.set_trainer(bob.address, False, sender=alice)
    assert training.storage(("trainer", bob.address)) is None
    with reverts(TRAINING, "require_trainer", "only admitted trainers can train or add data"):
        training.train(x, y, sender=bob, gas=GAS)
    with reverts(TRAINING, "set_trainer", "not a valid address"):
        training.set_trainer(b"bob", True, sender=alice)
    with reverts(TRAINING, "only_owner", "only the owner can do this"):
        training.set_open(True, sender=bob)
    training.set_open(True, sender=alice)
    assert chain.events[-1].data == {"open": True}
    carol = chain.accounts[2]
    assert training.view.is_trainer(carol.address) is True
    training.train(x, y, sender=carol, gas=GAS)
    assert training.view.updates() == 2


def test_training_refuses_bad_batches(chain, training):
    x, y = blobs(2, 8)
    with reverts(TRAINING, "check_x", "x must be a q16 tensor of shape (rows, 4)", '"x must be'):
        training.train(Tensor.from_numpy(np.zeros((8, 5))), labels(y), gas=GAS)
    with reverts(TRAINING, "check_x", "x must be a q16 tensor of shape (rows, 4)", '"x must be'):
        training.train(labels(np.zeros((8, 4), np.int32)), labels(y), gas=GAS)
    with reverts(TRAINING, "check_batch", "y must be an int tensor of labels, one per row of x"):
        training.train(inputs(x), labels(y[:7]), gas=GAS)
    with reverts(TRAINING, "check_batch", "y must be an int tensor of labels, one per row of x"):
        training.train(inputs(x), inputs(y), gas=GAS)
    # a label outside the classes: ml.train's own check
    with pytest.raises(ContractFailed, match="y holds the label 3: labels of a model of 3 classes are 0 to 2"):
        training.train(inputs(x), labels([3] * 8), gas=GAS)
    # 4097 rows do not fit a 64 KiB transaction, but a read-only call takes them
    with reverts(TRAINING, "check_x", "at most 4096 rows per call", "str(MAX_ROWS)"):
        training.view.predict(inputs(np.zeros((4097, 4))))
    assert training.view.steps() == 0


def test_training_stored_data_epochs(chain, training):
    alice, bob = chain.accounts[:2]
    x, y = blobs(4, 100)
    with reverts(TRAINING, "train_stored", "no data stored: add_data() first"):
        training.train_stored(1, gas=GAS)
    assert training.add_data(inputs(x[:60]), labels(y[:60]), gas=GAS) == 0
    assert chain.events[-1].data == {"chunk": 0, "rows": 60, "sender": alice.address}
    assert training.add_data(inputs(x[60:]), labels(y[60:]), gas=GAS) == 1
    assert training.view.data_size() == {"chunks": 2, "rows": 100}
    assert training.view.chunk(1) == {"x": inputs(x[60:]), "y": labels(y[60:]), "from": alice.address}
    with reverts(TRAINING, "chunk", "no such chunk"):
        training.view.chunk(2)
    for bad in (0, 101):
        with reverts(TRAINING, "train_stored", "epochs must be from 1 to 100", '"epochs must be'):
            training.train_stored(bad, gas=GAS)
    start = training.view.model()
    losses = training.train_stored(3, gas=GAS)
    # 3 epochs over the 100 stored rows, in the order they were added: as on the host
    p, v, host_losses, _ = host_train(start, inputs(x), labels(y), LR, MU, 16, 3)
    assert losses == [Decimal(k) / Q for k in host_losses] and len(losses) == 3 * 7
    assert same(training.view.model(), p, v)
    assert training.view.update(0)["epochs"] == 3 and training.view.update(0)["rows"] == 100
    # one epoch at a time gives the same bits as three in one transaction
    with chain.snapshot():
        training2 = chain.deploy(TRAINING, "softmax", [4, 3], 7, LR, MU, 16, gas=GAS)
        training2.add_data(inputs(x[:60]), labels(y[:60]), gas=GAS)
        training2.add_data(inputs(x[60:]), labels(y[60:]), gas=GAS)
        for _ in range(3):
            training2.train_stored(1, gas=GAS)
        assert training2.view.model() == training.view.model()
    with reverts(TRAINING, "only_owner", "only the owner can do this"):
        training.clear_data(sender=bob)
    assert training.clear_data(sender=alice) == 2
    assert chain.events[-1].data == {"chunks": 2}
    assert training.view.data_size() == {"chunks": 0, "rows": 0}
    assert training.storage(("chunk", 0)) is None


def test_training_data_is_bounded(chain, training):
    x, y = inputs(blobs(2, 1)[0]), labels(blobs(2, 1)[1])
    for _ in range(64):
        training.add_data(x, y, gas=GAS)
    with reverts(TRAINING, "add_data", "the data is full: 64 chunks", "str(MAX_CHUNKS)"):
        training.add_data(x, y, gas=GAS)


def test_training_owner_sets_the_schedule_and_hands_over(chain, training):
    alice, bob = chain.accounts[:2]
    with reverts(TRAINING, "only_owner", "only the owner can do this"):
        training.set_schedule(LR, MU, 8, sender=bob)
    with reverts(TRAINING, "check_schedule", "lr must be above 0 and at most 16"):
        training.set_schedule(Decimal(0), MU, 8, sender=alice)
    training.set_schedule(Decimal("0.25"), Decimal(0), 0, sender=alice)
    assert chain.events[-1].data == {"lr": Decimal("0.25"), "momentum": Decimal(0), "batch": 0}
    x, y = blobs(2, 40)
    assert len(training.train(inputs(x), labels(y), gas=GAS)) == 1  # batch 0: all rows in one step
    with reverts(TRAINING, "transfer_ownership", "not a valid address"):
        training.transfer_ownership(b"", sender=alice)
    training.transfer_ownership(bob.address, sender=alice)
    assert chain.events[-1].data == {"owner": bob.address}
    assert training.view.config()["owner"] == bob.address
    with reverts(TRAINING, "only_owner", "only the owner can do this"):
        training.set_open(True, sender=alice)
    training.set_open(True, sender=bob)


def test_training_a_linear_model(chain):
    c = chain.deploy(TRAINING, "linear", [3, 2], 1, Decimal("0.25"), Decimal("0.5"), 8, gas=GAS)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (32, 3))
    t = x @ np.array([[1.0, -0.5], [0.25, 2.0], [-1.0, 0.0]]) + 0.5
    with reverts(TRAINING, "check_batch", "y must be a q16 tensor of shape (rows, 2), one row per row of x",
                 '"y must be a q16'):
        c.train(inputs(x), labels(np.zeros(32, np.int32)), gas=GAS)
    losses = []
    for _ in range(10):
        losses += c.train(inputs(x), inputs(t), gas=GAS)
    assert len(losses) == 40 and losses[-1] < losses[0] / 1000
    out = c.view.predict(inputs(x[:4]), gas=GAS)
    assert out.format == "q16" and out.shape == (4, 2)
    assert np.max(np.abs(out.to_numpy() - t[:4])) < 0.01
    assert c.view.evaluate(inputs(x), inputs(t), gas=GAS)["correct"] == 0  # no labels to get right


# ==== federated training ========================================================================

@pytest.fixture
def validation():
    x, y = blobs(10, 120)
    return inputs(x), labels(y)


@pytest.fixture
def federated(chain, validation):
    return chain.deploy(FEDERATED, "softmax", [FEATURES, CLASSES], 3, *validation, 2, gas=GAS)


def test_federated_deploy(chain, federated, validation):
    alice = chain.accounts[0]
    assert federated.view.config() == {"owner": alice.address, "kind": "softmax", "layers": [4, 3], "seed": 3,
                                       "quorum": 2}
    m = federated.view.model()
    assert same(m, programs.init(ARCH, 3))
    loss, correct = programs.evaluate(ARCH, params(m), validation[0].raw(), validation[1].raw())
    assert federated.view.baseline() == {"loss": Decimal(loss) / Q, "correct": correct}
    assert federated.view.validation() == {"x": validation[0], "y": validation[1]}
    assert federated.view.current_round() == {"round": 0, "accepted": 0, "quorum": 2}
    assert federated.view.participants() == 0


@pytest.mark.parametrize("kind, layers, y_val, quorum, message, text", [
    ("softmax", [4, 3], None, 0, "quorum must be from 1 to 32", '"quorum must'),
    ("softmax", [4, 3], None, 33, "quorum must be from 1 to 32", '"quorum must'),
    ("softmax", [5, 3], None, 1, "x_val must be a q16 tensor of shape (rows, 5)", '"x_val must'),
    ("softmax", [4, 3], labels(np.zeros(7, np.int32)), 1, "y_val must be an int tensor of labels, one per row",
     None),
    ("linear", [4, 3], None, 1, "y_val must be a q16 tensor of shape (rows, 3)", '"y_val must be a q16'),
])
def test_federated_constructor_checks(chain, validation, kind, layers, y_val, quorum, message, text):
    x_val = validation[0]
    with reverts(FEDERATED, "init", message, text):
        chain.deploy(FEDERATED, kind, layers, 3, x_val, validation[1] if y_val is None else y_val, quorum, gas=GAS)


def test_federated_registration(chain, federated):
    alice, bob, carol = chain.accounts[:3]
    with reverts(FEDERATED, "only_owner", "only the owner can do this"):
        federated.register(bob.address, sender=bob)
    federated.register(bob.address, sender=alice)
    assert chain.events[-1].data == {"participant": bob.address}
    assert federated.view.is_participant(bob.address) is True
    assert federated.view.participants() == 1
    with reverts(FEDERATED, "register", "already registered"):
        federated.register(bob.address, sender=alice)
    with reverts(FEDERATED, "register", "not a valid address"):
        federated.register(b"x" * 21, sender=alice)
    with reverts(FEDERATED, "unregister", "not a participant"):
        federated.unregister(carol.address, sender=alice)
    with reverts(FEDERATED, "only_owner", "only the owner can do this"):
        federated.unregister(bob.address, sender=bob)
    federated.unregister(bob.address, sender=alice)
    assert (chain.events[-1].name, chain.events[-1].data) == ("Unregistered", {"participant": bob.address})
    assert federated.view.is_participant(bob.address) is False
    assert federated.view.participants() == 0
    with reverts(FEDERATED, "submit", "only registered participants can submit"):
        federated.submit(trained_model(20), 10, sender=bob, gas=GAS)
    with reverts(FEDERATED, "transfer_ownership", "not a valid address"):
        federated.transfer_ownership(b"", sender=alice)
    federated.transfer_ownership(carol.address, sender=alice)
    assert chain.events[-1].data == {"owner": carol.address}
    assert federated.view.config()["owner"] == carol.address
    with reverts(FEDERATED, "only_owner", "only the owner can do this"):
        federated.register(bob.address, sender=alice)


def test_federated_round(chain, federated, validation):
    alice, bob, carol, dave, eve = chain.accounts[:5]
    for p in (bob, carol, dave):
        federated.register(p.address, sender=alice)
    base = federated.view.baseline()
    start = federated.view.model()

    # a wrong architecture and a bad sample count are refused outright
    wrong = Model.from_float("mlp", (4, 5, 3), [np.zeros((4, 5)), np.zeros(5), np.zeros((5, 3)), np.zeros(3)])
    with reverts(FEDERATED, "submit", "the update must be a softmax model with layers [4, 3]", '"the update must'):
        federated.submit(wrong, 10, sender=bob, gas=GAS)
    for samples in (0, 10**9 + 1):
        with reverts(FEDERATED, "submit", "samples must be from 1 to 1000000000", '"samples must'):
            federated.submit(trained_model(20), samples, sender=bob, gas=GAS)

    # an update that does worse on the validation set is rejected: recorded, not kept
    bad = Model.from_float("softmax", (4, 3), [-5 * start.to_float()[0] + 3, np.array([4.0, -4.0, 0.0])])
    r = federated.submit(bad, 50, sender=carol, gas=GAS)
    assert r["accepted"] is False and r["loss"] > base["loss"] and r["baseline"] == base["loss"]
    assert chain.events[-1].name == "Rejected"
    assert chain.events[-1].data == {"round": 0, "participant": carol.address, "loss": r["loss"],
                                     "baseline": base["loss"]}
    assert federated.view.current_round()["accepted"] == 0

    with reverts(FEDERATED, "close_round", "the round has 0 accepted updates, the quorum is 2", "str(n)"):
        federated.close_round(sender=alice)

    # good updates are accepted, one per participant per round
    updates = {bob: (trained_model(20, start=start), 60), carol: (trained_model(21, start=start), 20)}
    for i, (p, (m, samples)) in enumerate(updates.items()):
        r = federated.submit(m, samples, sender=p, gas=GAS)
        loss, correct = programs.evaluate(ARCH, params(m), validation[0].raw(), validation[1].raw())
        assert r == {"accepted": True, "loss": Decimal(loss) / Q, "correct": correct, "baseline": base["loss"]}
        assert r["loss"] < base["loss"]
        assert chain.events[-1].name == "Accepted"
        assert chain.events[-1].data == {"round": 0, "index": i, "participant": p.address, "samples": samples,
                                         "loss": r["loss"], "correct": correct}
        assert federated.view.update(0, i) == {"participant": p.address, "samples": samples, "loss": r["loss"],
                                               "correct": correct}
    with reverts(FEDERATED, "submit", "your update for this round was already accepted"):
        federated.submit(trained_model(22, start=start), 5, sender=bob, gas=GAS)
    with reverts(FEDERATED, "update", "no such update"):
        federated.view.update(0, 2)
    with reverts(FEDERATED, "round_info", "round 0 is not closed", "str(r)"):
        federated.view.round_info(0)
    with reverts(FEDERATED, "round_model", "round 0 is not closed", "str(r)"):
        federated.view.round_model(0)

    # closing: the owner or a participant, once the quorum is there
    with reverts(FEDERATED, "close_round", "only the owner or a participant can close a round"):
        federated.close_round(sender=eve)
    info = federated.close_round(sender=dave, gas=GAS)
    expected = programs.average(ARCH, [params(m) for m, _ in updates.values()], [60, 20])
    avg = federated.view.model()
    assert same(avg, expected)
    assert all(not np.any(v) for v in velocity(avg))
    loss, correct = programs.evaluate(ARCH, expected, validation[0].raw(), validation[1].raw())
    assert info == {"updates": 2, "samples": 80, "loss": Decimal(loss) / Q, "correct": correct,
                    "height": chain.height}
    assert chain.events[-1].name == "RoundClosed"
    assert chain.events[-1].data == {"round": 0, "updates": 2, "samples": 80, "loss": info["loss"],
                                     "correct": correct}
    assert federated.view.round_info(0) == info
    assert federated.view.round_model(0) == avg
    assert federated.view.baseline() == {"loss": info["loss"], "correct": correct}
    assert federated.view.current_round() == {"round": 1, "accepted": 0, "quorum": 2}
    assert federated.storage(("update_model", 0, 0)) is None  # the updates' parameters are dropped
    assert info["loss"] < base["loss"]

    # round 1: bob may submit again, measured against the new global model
    r = federated.submit(trained_model(23, start=avg, lr=Decimal("0.125")), 40, sender=bob, gas=GAS)
    assert r["baseline"] == info["loss"]


def test_federated_rounds_are_bounded(validation):
    chain = TestChain(accounts=34)
    owner = chain.accounts[0]
    c = chain.deploy(FEDERATED, "softmax", [4, 3], 3, *validation, 32, gas=GAS)
    good = trained_model(20, start=c.view.model())
    for p in chain.accounts[1:34]:
        c.register(p.address, sender=owner)
    for p in chain.accounts[1:33]:
        assert c.submit(good, 1, sender=p, gas=GAS)["accepted"] is True
    with reverts(FEDERATED, "submit", "this round is full: wait for it to close"):
        c.submit(good, 1, sender=chain.accounts[33], gas=GAS)
    info = c.close_round(sender=owner, gas=GAS)
    assert info["updates"] == 32 and info["samples"] == 32
    assert c.view.model() == Model(good.kind, good.layers, good.params)  # the mean of 32 copies


# ==== inference =================================================================================

@pytest.fixture
def model() -> Model:
    return trained_model(30, rows=192)


@pytest.fixture
def inference(chain, model):
    return chain.deploy(INFERENCE, "digits-ish", model, gas=GAS)


def test_inference_deploy(chain, inference, model):
    alice = chain.accounts[0]
    assert inference.view.info() == {"name": "digits-ish", "owner": alice.address, "version": 0, "kind": "softmax",
                                     "layers": [4, 3], "parameters": 15, "predictions": 0}
    assert inference.view.model() == model
    assert chain.events[-1].data == {"version": 0, "kind": "softmax", "layers": [4, 3]}
    for name in ("", "x" * 65):
        with reverts(INFERENCE, "init", "name must be 1 to 64 characters"):
            chain.deploy(INFERENCE, name, model, gas=GAS)


def test_inference_requests_are_kept_on_the_ledger(chain, inference, model):
    alice, bob = chain.accounts[:2]
    x, y = blobs(31, 5)
    expected = programs.predict(ARCH, params(model), inputs(x).raw())
    assert inference.request(inputs(x), sender=bob, gas=GAS) == 0
    record = inference.view.prediction(0)
    assert record == {"requester": bob.address, "version": 0, "rows": 5, "input": inputs(x),
                      "output": labels(expected), "height": chain.height}
    assert chain.events[-1].name == "Predicted"
    assert chain.events[-1].data == {"id": 0, "requester": bob.address, "version": 0, "rows": 5,
                                     "output": labels(expected)}
    assert np.mean(expected == y) >= 0.8
    # the same answer, free, through a read-only call (the program is on chain now)
    assert inference.view.predict(inputs(x)) == record["output"]
    probs = inference.view.probabilities(inputs(x), gas=GAS)
    assert probs.format == "q16" and probs.shape == (5, 3)
    assert np.array_equal(probs.raw(), programs.probabilities(ARCH, params(model), inputs(x).raw()))
    assert np.array_equal(np.argmax(probs.raw(), -1), expected)
    assert inference.request(inputs(x[:2]), sender=alice, gas=GAS) == 1
    assert inference.view.predictions() == 2
    with reverts(INFERENCE, "prediction", "no such prediction"):
        inference.view.prediction(2)


def test_inference_input_checks(chain, inference):
    with reverts(INFERENCE, "check_x", "x must be a q16 tensor of shape (rows, 4)", '"x must be'):
        inference.request(inputs(np.zeros((2, 3))), gas=GAS)
    with reverts(INFERENCE, "check_x", "at most 256 rows per request", "str(MAX_ROWS)"):
        inference.request(inputs(np.zeros((257, 4))), gas=GAS)
    with reverts(INFERENCE, "check_x", "at most 256 rows per request", "str(MAX_ROWS)"):
        inference.view.predict(inputs(np.zeros((257, 4))))
    assert inference.view.predictions() == 0


def test_inference_model_versions(chain, inference, model):
    alice, bob = chain.accounts[:2]
    x = inputs(blobs(31, 3)[0])
    inference.request(x, gas=GAS)
    newer = trained_model(32, rows=96)
    with reverts(INFERENCE, "only_owner", "only the owner can do this"):
        inference.set_model(newer, sender=bob)
    assert inference.set_model(newer, sender=alice) == 1
    assert chain.events[-1].data == {"version": 1, "kind": "softmax", "layers": [4, 3]}
    assert inference.view.model() == newer and inference.view.model_at(0) == model
    assert inference.request(x, gas=GAS) == 1
    assert inference.view.prediction(1)["version"] == 1
    assert inference.view.prediction(0)["version"] == 0  # the old record still names its model
    with reverts(INFERENCE, "model_at", "no such model version"):
        inference.view.model_at(2)
    # a linear model: outputs, and no probabilities
    line_model = Model.from_float("linear", (4, 2), [np.ones((4, 2)), np.zeros(2)])
    assert inference.set_model(line_model, sender=alice) == 2
    out = inference.view.predict(inputs(np.ones((1, 4))), gas=GAS)
    assert out.format == "q16" and out.to_numpy().tolist() == [[4.0, 4.0]]
    with reverts(INFERENCE, "probabilities", "a linear model has no class probabilities"):
        inference.view.probabilities(inputs(np.ones((1, 4))))
    with reverts(INFERENCE, "transfer_ownership", "not a valid address"):
        inference.transfer_ownership(b"1", sender=alice)
    inference.transfer_ownership(bob.address, sender=alice)
    assert chain.events[-1].data == {"owner": bob.address}
    assert inference.view.info()["owner"] == bob.address
    with reverts(INFERENCE, "only_owner", "only the owner can do this"):
        inference.set_model(model, sender=alice)


def test_inference_loads_the_model_of_the_training_contract(chain, inference, training):
    alice, bob = chain.accounts[:2]
    x, y = blobs(2, 48)
    training.train(inputs(x), labels(y), gas=GAS)
    with reverts(INFERENCE, "only_owner", "only the owner can do this"):
        inference.load_from(training.address, sender=bob)
    assert inference.load_from(training.address, sender=alice, gas=GAS) == 1
    assert inference.view.model() == training.view.model()


# ==== marketplace ===============================================================================

PRICE = 1_000
FEE_RATE = Decimal("0.05")


@pytest.fixture
def market(chain):
    return chain.deploy(MARKET, FEE_RATE)


@pytest.fixture
def listed(chain, market, model):
    """listing 0: accounts[1]'s model at PRICE per row"""
    assert market.list_model("blobs", model, PRICE, sender=chain.accounts[1]) == 0
    return 0


def test_market_deploy_and_list(chain, market, model, listed):
    operator, seller = chain.accounts[:2]
    assert market.view.operator() == operator.address
    assert market.view.fee_rate() == FEE_RATE
    assert market.view.fee(1_999) == 99  # rounded down
    assert market.view.listings() == 1
    assert market.view.listing(0) == {"owner": seller.address, "name": "blobs", "price": PRICE, "version": 0,
                                      "kind": "softmax", "layers": [4, 3], "active": True, "asking": None,
                                      "sales": 0, "earned": 0}
    assert chain.events[-1].data == {"listing": 0, "owner": seller.address, "name": "blobs", "price": PRICE}
    assert market.storage(("model", 0)) == model
    assert market.view.quote(0, 7) == 7 * PRICE
    for rows in (0, 257):
        with reverts(MARKET, "quote", "rows must be from 1 to 256", '"rows must'):
            market.view.quote(0, rows)
    with reverts(MARKET, "load", "no such listing"):
        market.view.listing(1)
    with reverts(MARKET, "list_model", "name must be 1 to 64 characters"):
        market.list_model("", model, PRICE)
    for price in (-1, 10**30 + 1):
        with reverts(MARKET, "check_price", "price must be from 0 to " + str(10**30) + " base units per row",
                     '"price must'):
            market.list_model("m", model, price)


@pytest.mark.parametrize("rate", [Decimal("-0.01"), Decimal("0.21")])
def test_market_constructor_checks(chain, rate):
    with reverts(MARKET, "init", "fee rate must be from 0 to 0.2"):
        chain.deploy(MARKET, rate)


def test_market_buy_prediction_pays_the_owner_and_the_operator(chain, market, model, listed):
    operator, seller, buyer = chain.accounts[:3]
    x = blobs(40, 3)[0]
    before = [chain.balance(a.address) for a in (operator, seller, buyer)]
    out = market.buy_prediction(0, inputs(x), sender=buyer, value=5_000, gas=GAS)
    gas_used = chain.last_receipt.gas_used
    expected = labels(programs.predict(ARCH, params(model), inputs(x).raw()))
    assert out == expected
    cost, cut = 3 * PRICE, 3 * PRICE * 5 // 100
    after = [chain.balance(a.address) for a in (operator, seller, buyer)]
    assert after[0] == before[0] + cut
    assert after[1] == before[1] + cost - cut
    assert after[2] == before[2] - cost - gas_used  # the 2,000 sent beyond the price came back
    assert chain.balance(market.address) == 0
    assert chain.events[-1].name == "Sold"
    assert chain.events[-1].data == {"purchase": 0, "listing": 0, "buyer": buyer.address, "rows": 3, "paid": cost,
                                     "fee": cut, "output": expected}
    assert market.view.purchase(0) == {"listing": 0, "buyer": buyer.address, "version": 0, "rows": 3,
                                       "paid": cost, "input": inputs(x), "output": expected, "height": chain.height}
    assert market.view.purchases() == 1
    d = market.view.listing(0)
    assert (d["sales"], d["earned"]) == (1, cost - cut)
    with reverts(MARKET, "purchase", "no such purchase"):
        market.view.purchase(1)


def test_market_buy_prediction_checks(chain, market, listed):
    seller, buyer = chain.accounts[1:3]
    x = inputs(blobs(40, 3)[0])
    before = chain.balance(buyer.address)
    with reverts(MARKET, "buy_prediction", "send the price as the transaction's value: 3000", "str(cost)") as e:
        market.buy_prediction(0, x, sender=buyer, value=2_999, gas=GAS)
    assert chain.balance(buyer.address) == before - e.value.gas_used  # the value came back
    with reverts(MARKET, "buy_prediction", "x must be a q16 tensor of shape (rows, 4)", '"x must be'):
        market.buy_prediction(0, inputs(np.zeros((3, 2))), sender=buyer, value=3_000, gas=GAS)
    with reverts(MARKET, "buy_prediction", "at most 256 rows per purchase", "str(MAX_ROWS)"):
        market.buy_prediction(0, inputs(np.zeros((257, 4))), sender=buyer, value=10**6, gas=GAS)
    with reverts(MARKET, "load", "no such listing"):
        market.buy_prediction(5, x, sender=buyer, value=3_000, gas=GAS)
    with reverts(MARKET, "owned", "only the listing's owner can do this"):
        market.set_active(0, False, sender=buyer)
    market.set_active(0, False, sender=seller)
    assert chain.events[-1].data == {"listing": 0, "active": False}
    with reverts(MARKET, "buy_prediction", "the listing is paused"):
        market.buy_prediction(0, x, sender=buyer, value=3_000, gas=GAS)
    market.set_active(0, True, sender=seller)
    # a free listing needs no coins
    market.set_price(0, 0, sender=seller)
    assert chain.events[-1].data == {"listing": 0, "price": 0}
    market.buy_prediction(0, x, sender=buyer, gas=GAS)
    assert market.view.purchase(0)["paid"] == 0
    with reverts(MARKET, "owned", "only the listing's owner can do this"):
        market.set_price(0, 5, sender=buyer)
    with reverts(MARKET, "check_price", "price must be from 0 to " + str(10**30) + " base units per row",
                 '"price must'):
        market.set_price(0, -5, sender=seller)


def test_market_update_model(chain, market, listed):
    seller, buyer = chain.accounts[1:3]
    newer = Model.from_float("mlp", (4, 8, 3), [np.ones((4, 8)), np.zeros(8), np.ones((8, 3)), np.zeros(3)])
    with reverts(MARKET, "owned", "only the listing's owner can do this"):
        market.update_model(0, newer, sender=buyer)
    assert market.update_model(0, newer, sender=seller) == 1
    assert chain.events[-1].data == {"listing": 0, "version": 1}
    d = market.view.listing(0)
    assert (d["kind"], d["layers"], d["version"]) == ("mlp", [4, 8, 3], 1)
    market.buy_prediction(0, inputs(np.ones((1, 4))), sender=buyer, value=PRICE, gas=GAS)
    assert market.view.purchase(0)["version"] == 1
    assert market.view.purchase(0)["output"] == labels([0])  # equal logits: the first class


def test_market_listing_ownership_can_be_sold(chain, market, listed):
    operator, seller, buyer, carol = chain.accounts[:4]
    with reverts(MARKET, "buy_listing", "the listing is not for sale"):
        market.buy_listing(0, sender=buyer, value=10**6)
    with reverts(MARKET, "owned", "only the listing's owner can do this"):
        market.offer_listing(0, 10**6, sender=buyer)
    for asking in (0, 10**30 + 1):
        with reverts(MARKET, "offer_listing", "asking price must be from 1 to " + str(10**30), '"asking price'):
            market.offer_listing(0, asking, sender=seller)
    market.offer_listing(0, 100_000, sender=seller)
    assert chain.events[-1].data == {"listing": 0, "asking": 100_000}
    assert market.view.listing(0)["asking"] == 100_000
    with reverts(MARKET, "buy_listing", "you already own this listing"):
        market.buy_listing(0, sender=seller, value=100_000)
    with reverts(MARKET, "buy_listing", "send the asking price as the transaction's value: 100000", "str(asking)"):
        market.buy_listing(0, sender=buyer, value=99_999)
    before = [chain.balance(a.address) for a in (operator, seller, buyer)]
    assert market.buy_listing(0, sender=buyer, value=120_000) == 95_000
    gas_used = chain.last_receipt.gas_used
    after = [chain.balance(a.address) for a in (operator, seller, buyer)]
    assert after == [before[0] + 5_000, before[1] + 95_000, before[2] - 100_000 - gas_used]
    assert chain.events[-1].data == {"listing": 0, "seller": seller.address, "buyer": buyer.address,
                                     "price": 100_000, "fee": 5_000}
    d = market.view.listing(0)
    assert (d["owner"], d["asking"]) == (buyer.address, None)
    # the new owner is paid for predictions; the old one can no longer manage the listing
    before = chain.balance(buyer.address)
    market.buy_prediction(0, inputs(np.ones((2, 4))), sender=carol, value=2 * PRICE, gas=GAS)
    assert chain.balance(buyer.address) == before + 2 * PRICE - 2 * PRICE * 5 // 100
    with reverts(MARKET, "owned", "only the listing's owner can do this"):
        market.set_price(0, 1, sender=seller)
    # an offer can be withdrawn
    market.offer_listing(0, 7, sender=buyer)
    market.offer_listing(0, None, sender=buyer)
    assert chain.events[-1].data == {"listing": 0, "asking": None}
    with reverts(MARKET, "buy_listing", "the listing is not for sale"):
        market.buy_listing(0, sender=carol, value=7)


def test_market_without_a_fee_pays_the_owner_everything(chain, model):
    market = chain.deploy(MARKET, Decimal(0))
    seller, buyer = chain.accounts[1:3]
    market.list_model("m", model, 333, sender=seller)
    before = chain.balance(seller.address)
    market.buy_prediction(0, inputs(np.ones((3, 4))), sender=buyer, value=999, gas=GAS)
    assert chain.balance(seller.address) == before + 999


# ==== the README session and the demo on a real node ==============================================

def test_readme_ml_session(monkeypatch):
    """The ML session of examples/README.md (its ```py block) runs and prints what it says."""
    readme = (EXAMPLES / "README.md").read_text()
    [block] = re.findall(r"```py\n(.*?)\n```", readme, re.S)
    monkeypatch.chdir(ROOT)
    printed = []
    exec(block, {"print": lambda *a: printed.append(a)})
    assert printed == [(4, True), ([0, 1],), ([1, 0], 950)]
    assert "# 4 True" in block and "# [0, 1]" in block and "# [1, 0] 950" in block


def test_ml_demo_against_a_node(devnet):
    """examples/ml_demo.py runs all four scenarios against a real node and exits 0."""
    demo = subprocess.run([sys.executable, str(EXAMPLES / "ml_demo.py"), devnet.url], cwd="/",
                          capture_output=True, text=True, timeout=240)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    for scenario in ("on-chain training", "federated training", "inference", "marketplace"):
        assert f"== {scenario}" in out, out
    assert "done: every step did what it should" in out
    # the training steps' progress: plain lines on stderr in a pipe (gradchain/progress.py), no bar codes
    assert "\r" not in demo.stderr and "\x1b[" not in demo.stderr, demo.stderr
    steps = [ln for ln in demo.stderr.splitlines() if "on-chain training: step" in ln]
    assert 2 <= len(steps) <= 7 and "step 12/12 (100%), batch 6/6 from bob, loss " in steps[-1], demo.stderr


def test_the_top_readme_ml_example_runs_and_learns(capsys):
    """The classifier of README.md's "Machine learning on chain" runs as printed: the loss falls
    and the model then labels its training rows right."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("### Machine learning on chain"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    losses, labels = capsys.readouterr().out.splitlines()[:2]
    first, last = (float(v) for v in losses.split(" -> "))
    assert last < first
    assert labels == "[0 1 0 1]"
