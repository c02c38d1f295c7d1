"""A dispute settled by two validators that compute differently: one plain, one with XLA's
fast math and 8 host devices.  Both must execute the settle's re-executed segment to the
same bits, or the two-validator chain (each holds half the stake) could not commit."""
from __future__ import annotations

import threading

import numpy as np

from gradchain import Client, devnet_keys
from gradchain.jobs import Verifier, Worker, post_job
from ledger import jobs as J
from ledger.datasets import DatasetHeader
from ledger.keys import PrivateKey
from mlcore.models import Arch
from tests.nodeproc import validator_processes

KEYS = [PrivateKey.from_label(f"jobs bft validator {i}") for i in range(2)]
REQ, WORKER, VERIFIER = devnet_keys(3)
ARCH = Arch("mlp", (5, 8, 3))
ROWS, BATCH, STEPS, K = 48, 4, 24, 3
FAST_MATH = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true --xla_force_host_platform_device_count=8"}


def quiet(_: str) -> None:
    pass


def test_two_validators_one_with_fast_math_and_8_devices_settle_a_dispute_identically(tmp_path):
    nodes = validator_processes(tmp_path / "tn", KEYS, accounts=tuple((k.address, 10**15) for k in
                                                                       (REQ, WORKER, VERIFIER)))
    nodes[1].env = FAST_MATH
    try:
        for n in nodes:
            n.start()
        a, b = Client(nodes[0].url, timeout=60), Client(nodes[1].url, timeout=60)
        rng = np.random.default_rng(3)
        x = rng.integers(-2**16, 2**16, size=(ROWS, ARCH.features), dtype=np.int32)
        y = ((x[:, 0] > 0).astype(np.int32) + (x[:, 2] > 0).astype(np.int32))
        ref = a.put_blob((x, y), REQ, chunk_bytes=4096)
        terms = J.Terms(ARCH.kind, ARCH.layers, 9, 1 << 14, 1 << 15, BATCH, STEPS, K, 4, ref,
                        DatasetHeader(0, ROWS, ARCH.features, 1), False, 10**9, 10**8, 500, 30, 60)
        jid = post_job(a, REQ, terms)
        liar = Worker(Client(nodes[0].url, timeout=60), WORKER, jid, tmp_path / "w", log=quiet)
        liar.claim()

        def flip(i, p, v):
            if i == 6:
                w0 = p[0].copy()
                w0.flat[1] ^= 1 << 5
                p = (w0,) + tuple(p[1:])
            return p, v
        liar.train(tamper=flip)
        liar.post_result()  # the model and checkpoints go to node 0 only: node 1 fetches them
        outcome: dict = {}
        t = threading.Thread(target=lambda: outcome.setdefault("worker", liar.defend(timeout=240)))
        t.start()
        verdict = Verifier(b, VERIFIER, jid, tmp_path / "v", log=quiet).verify(timeout=240)
        t.join(250)
        assert not verdict.matches and verdict.outcome == "open" and outcome["worker"] == "open"
        # the settle ran on both; both hold the same chain, state and receipts
        (settle,) = a.events(name="JobSettle", from_height=0)
        b.wait_for_tx(settle.tx_hash, timeout=30)
        ba, bb = a.block(settle.height), b.block(settle.height)
        assert ba == bb  # the same header: hash, state root, receipts root
        ra, rb = a.tx(settle.tx_hash), b.tx(settle.tx_hash)
        assert ra["receipt"] == rb["receipt"] and ra["receipt"]["status"] == "success"
        assert settle.data["winner"] == "challenger"
        h = min(a.status()["height"], b.status()["height"])
        assert a.call("job", {"id": jid, "height": h}) == b.call("job", {"id": jid, "height": h})
    finally:
        for n in nodes:
            n.kill()
