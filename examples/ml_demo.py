"""The four ML scenarios on a running node, through the SDK (gradchain.client.Client).

    python node.py                      # in another terminal: a devnet on port 8545
    python examples/ml_demo.py          # or: python examples/ml_demo.py http://HOST:PORT

1. on-chain training (examples/ml_training.py): alice deploys a softmax classifier and
   admits bob; both send batches of data in transactions and the contract takes the
   gradient steps; a stranger is refused; anyone reads the loss history and the model.
2. federated training (examples/ml_federated.py): bob, carol and dave train the global
   model on private data off chain (plain numpy float SGD, quantised with
   Model.from_float) and submit the parameters; a poisoned update is rejected on the
   contract's validation set; bob closes the round and the weighted average is published.
3. inference (examples/ml_inference.py): the trained model is deployed for inference; bob
   requests a prediction in a transaction, reads the stored record back, and gets more
   predictions free through read-only calls.
4. marketplace (examples/ml_marketplace.py): carol lists the federated model at a price per
   prediction; bob pays for predictions (carol is paid, the operator takes its fee, the
   excess is refunded); carol sells the listing to dave, who is paid from then on.

The training steps show as a bar on stderr on a terminal (plain lines in a pipe or a log).

The data are points in [-2, 2]^4 labelled by a fixed linear rule (3 classes), made with
numpy's seeded generator. Exit status 0 when every step did what it should.

A program's first use on a chain costs ML_COMPILE (300,000,000 gas) on top of its work,
more than a node simulates to estimate gas (50,000,000), so the ML transactions here carry
an explicit gas limit (ML_GAS; the unused part is refunded); those without ML calls let the
client estimate, and a call that would fail is then refused before anything is sent.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the repository, not examples/ (whose token.py would shadow the stdlib's)

import numpy as np  # noqa: E402

from gradchain import Client, ConnectionFailed, Decimal, Model, Reverted, Tensor, address_hex, devnet_keys, json_arg  # noqa: E402
from gradchain.progress import Progress  # noqa: E402
from vm.limits import MAX_OUTPUT_BYTES  # noqa: E402
from vm.codec import decode_value  # noqa: E402
from vm.json_values import to_json  # noqa: E402

ML_GAS = 900_000_000
FEATURES, CLASSES = 4, 3
RULE = np.random.default_rng(1).normal(size=(FEATURES, CLASSES))  # the hidden labelling rule


def blobs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(-2, 2, (n, FEATURES))
    return x, np.argmax(x @ RULE, -1).astype(np.int32)


def q16(x: np.ndarray) -> Tensor:
    return Tensor.from_numpy(x)


def labels(y: np.ndarray) -> Tensor:
    return Tensor.from_numpy(y, "int")


def num(d: Decimal) -> float:
    """A contract's Decimal (here a Q.16 loss, exact) as a float, for printing."""
    return float(str(d))


def accuracy(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    """A model read from the chain, used off chain: its dequantised weights in numpy."""
    w, b = model.to_float()
    return float(np.mean(np.argmax(x @ w + b, -1) == y))


def local_training(model: Model, x: np.ndarray, y: np.ndarray, epochs: int = 5, lr: float = 0.5) -> Model:
    """What a participant does at home: float SGD of softmax regression from the global model."""
    w, b = model.to_float()
    onehot = np.eye(CLASSES)[y]
    for _ in range(epochs):
        for s in range(0, len(y), 16):
            xb, tb = x[s:s + 16], onehot[s:s + 16]
            z = xb @ w + b
            p = np.exp(z - z.max(-1, keepdims=True))
            g = p / p.sum(-1, keepdims=True) - tb
            w = w - lr * xb.T @ g / len(xb)
            b = b - lr * g.mean(0)
    return Model.from_float("softmax", (FEATURES, CLASSES), [w, b])


def view(client: Client, contract: str, function: str, *args):
    """Client.view, passing Tensor and Model arguments in the RPC's JSON form ({"tensor": ...},
    {"model": ...}), which gradchain.client.json_arg does not produce itself."""
    params = {"contract": contract, "function": function,
              "args": [to_json(a) if isinstance(a, (Tensor, Model)) else json_arg(a) for a in args]}
    return decode_value(bytes.fromhex(client.call("call", params)["output"]), MAX_OUTPUT_BYTES)


def main(url: str) -> int:
    alice, bob, carol, dave = devnet_keys()[:4]
    client = Client(url)
    try:
        print(f"node {url}: chain {client.chain_id}, height {client.status()['height']}")
    except ConnectionFailed:
        print(f"error: no node answers at {url}; start one with `python node.py`", file=sys.stderr)
        return 1

    def deploy(key, name: str, *args) -> str:
        r = client.deploy(key, (ROOT / "examples" / name).read_text(), list(args), gas_limit=ML_GAS)
        print(f"deployed {name} at {r['address']} ({r['receipt']['gas_used']:,} gas)")
        return r["address"]

    def send(key, contract: str, function: str, *args, value: int = 0) -> dict:
        return client.send(key, contract, function, *args, value=value, gas_limit=ML_GAS)

    x_test, y_test = blobs(99, 300)

    # ---- 1. on-chain training ------------------------------------------------------------------
    print("\n== on-chain training")
    training = deploy(alice, "ml_training.py", "softmax", [FEATURES, CLASSES], 7, Decimal("0.5"),
                      Decimal("0.875"), 16)
    client.send(alice, training, "set_trainer", bob.address, True)
    start = view(client, training, "model")
    batches, per_batch = 6, 2  # each train call takes 2 gradient steps (32 rows in batches of 16)
    with Progress("  on-chain training", batches * per_batch, "step", sys.stderr) as shown:
        for i in range(batches):
            key = (alice, bob)[i % 2]
            x, y = blobs(10 + i, 32)
            r = send(key, training, "train", q16(x), labels(y))
            shown.update((i + 1) * per_batch, batch=f"{i + 1}/{batches} from {('alice', 'bob')[i % 2]}",
                         loss=f"{num(r['result'][-1]):.3f}", block=r["height"])
    try:
        x, y = blobs(20, 32)
        send(carol, training, "train", q16(x), labels(y))
        raise AssertionError("a stranger trained the model")
    except Reverted as e:
        print(f"  carol is not a trainer: {e.message!r} (in {e.function}, line {e.line}; she paid {e.gas_used:,} gas)")
    steps = client.view(training, "steps")
    losses = client.view(training, "losses", 0, steps)
    assert steps == 12 and len(losses) == 12 and losses[-1] < losses[0]
    print(f"  {steps} steps; loss history {num(losses[0]):.3f} -> {num(losses[-1]):.3f}")
    trained = view(client, training, "model")
    before, after = accuracy(start, x_test, y_test), accuracy(trained, x_test, y_test)
    assert after >= 0.85 and after > before, (before, after)
    print(f"  held-out accuracy of the model read from the chain: {before:.1%} at deploy, {after:.1%} now")
    events = client.events(contract=training, name="Trained")
    assert [e.data["update"] for e in events] == list(range(6))

    # ---- 2. federated training -----------------------------------------------------------------
    print("\n== federated training")
    x_val, y_val = blobs(50, 120)
    federated = deploy(alice, "ml_federated.py", "softmax", [FEATURES, CLASSES], 3, q16(x_val), labels(y_val), 2)
    for key in (bob, carol, dave):
        client.send(alice, federated, "register", key.address)
    base = client.view(federated, "baseline")
    print(f"  validation loss of the initial model: {num(base['loss']):.3f} ({base['correct']}/120 correct)")
    glob = view(client, federated, "model")
    w, b = glob.to_float()
    poisoned = Model.from_float("softmax", (FEATURES, CLASSES), [-4 * w + 2, b + np.array([5.0, -5.0, 0.0])])
    r = send(dave, federated, "submit", poisoned, 500)["result"]
    assert r["accepted"] is False
    print(f"  dave's poisoned update: rejected (validation loss {num(r['loss']):.3f} > {num(r['baseline']):.3f})")
    for key, name, seed, n in ((bob, "bob", 60, 96), (carol, "carol", 61, 48)):
        x, y = blobs(seed, n)
        r = send(key, federated, "submit", local_training(glob, x, y), n)["result"]
        assert r["accepted"] is True
        print(f"  {name}'s update from {n} private samples: accepted (validation loss {num(r['loss']):.3f}, "
              f"{r['correct']}/120 correct)")
    info = send(bob, federated, "close_round")["result"]
    assert info["updates"] == 2 and info["samples"] == 144 and info["loss"] < base["loss"]
    glob = view(client, federated, "model")
    assert glob == client.view(federated, "round_model", 0)
    print(f"  round 0 closed by bob: average of 2 updates weighted by 144 samples, validation loss "
          f"{num(info['loss']):.3f} ({info['correct']}/120 correct); held-out accuracy "
          f"{accuracy(glob, x_test, y_test):.1%}")
    names = [e.name for e in client.events(contract=federated)]
    assert names.count("Rejected") == 1 and names.count("Accepted") == 2 and names[-1] == "RoundClosed"

    # ---- 3. inference ------------------------------------------------------------------------
    print("\n== inference")
    inference = deploy(alice, "ml_inference.py", "blobs classifier", trained)
    x, y = blobs(70, 5)
    r = send(bob, inference, "request", q16(x))
    request_id = r["result"]
    record = client.view(inference, "prediction", request_id)
    stored = record["output"].raw().tolist()
    assert record["requester"] == bob.address and record["input"] == q16(x)
    print(f"  bob's request {request_id} in block {r['height']}: labels {stored} (true {y.tolist()}), "
          f"kept on the ledger with its input and model version {record['version']}")
    free = view(client, inference, "predict", q16(x))
    assert free.raw().tolist() == stored
    x2, y2 = blobs(71, 8)
    more = view(client, inference, "predict", q16(x2)).raw().tolist()
    print(f"  the same answer free by a read-only call, and 8 more: {more} (true {y2.tolist()})")
    [event] = client.events(contract=inference, name="Predicted")
    assert event.data["id"] == request_id and event.data["output"] == record["output"]

    # ---- 4. marketplace ------------------------------------------------------------------------
    print("\n== marketplace")
    market = deploy(alice, "ml_marketplace.py", Decimal("0.05"))
    price = 1_000
    listing = send(carol, market, "list_model", "federated blobs", glob, price)["result"]
    print(f"  carol lists the federated model as listing {listing} at {price} units per prediction")
    x, _ = blobs(80, 4)
    before = {k.address: client.balance(k.address) for k in (alice, bob, carol)}
    r = send(bob, market, "buy_prediction", listing, q16(x), value=5_000)
    paid, fee = 4 * price, 4 * price * 5 // 100
    after = {k.address: client.balance(k.address) for k in (alice, bob, carol)}
    assert after[carol.address] - before[carol.address] == paid - fee
    assert after[alice.address] - before[alice.address] == fee
    assert before[bob.address] - after[bob.address] == paid + r["receipt"]["gas_used"]
    print(f"  bob bought 4 predictions {r['result'].raw().tolist()} sending 5,000: carol got {paid - fee:,}, "
          f"the operator {fee:,}, bob got 1,000 back")
    try:
        client.send(bob, market, "buy_listing", listing, value=10**6)
        raise AssertionError("bought a listing that is not for sale")
    except Reverted as e:
        print(f"  bob tries to buy the listing: refused before sending: {e.message!r}")
    client.send(carol, market, "offer_listing", listing, 10**9)
    before = client.balance(carol.address)
    client.send(dave, market, "buy_listing", listing, value=10**9)
    assert client.balance(carol.address) - before == 10**9 - 10**9 * 5 // 100
    assert client.view(market, "listing", listing)["owner"] == dave.address
    print(f"  carol sells the listing to dave for 1 GRAD; the owner is now {address_hex(dave.address)}")
    before = client.balance(dave.address)
    send(bob, market, "buy_prediction", listing, q16(x[:1]), value=price)
    assert client.balance(dave.address) - before == price - price * 5 // 100
    print(f"  bob's next purchase pays dave: {price - price * 5 // 100:,} units")
    sold = client.events(contract=market, name="Sold")
    assert [e.data["rows"] for e in sold] == [4, 1]
    print("\ndone: every step did what it should")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GRADCHAIN_RPC", "http://127.0.0.1:8545")))
