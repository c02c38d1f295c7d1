"""Training jobs on chain (ledger/jobs.py): post, claim, result, challenge, bisection moves,
settle by re-executing one segment, timeouts, finalize; on a real LMDB chain with a real
blob store, trained with real mlcore."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ledger import jobs as J
from ledger.blob_records import BlobUnavailable
from ledger.blobs import BlobRef
from ledger.blobstore import BlobStore
from ledger.block import STATUS_SUCCESS
from ledger.chain import Chain
from ledger.datasets import DatasetHeader, encode_dataset
from ledger.encoding import encode
from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.merkle import merkle_proof, merkle_root
from ledger.params import ChainParams
from ledger.state import State
from ledger.store import Store
from ledger.tx import TxKind, job as job_tx, put_blob
from ledger.validators import Validator, ValidatorSet
from ledger.votes import make_commit
from mlcore import jobs as mj
from mlcore.models import Arch
from vm.codec import decode_value

CHAIN = "jobs-test"
VALIDATOR = PrivateKey.from_label("jobs validator")
REQ, WORKER, HONEST, LIAR = (PrivateKey.from_label(f"jobs {n}") for n in ("requester", "worker", "honest", "liar"))
FUNDS = 10**15
REWARD, BOND = 10**9, 4 * 10**8
ARCH = Arch("mlp", (6, 8, 3))
BATCH, K, STEPS = 4, 2, 16  # m = 8 segments of 2 steps
ROWS = 40                   # 10 batches
WORK, WINDOW, MOVE = 20, 6, 20
GAS = 450_000_000  # a settle pays ML_COMPILE (300 M) for the first use of its program


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.integers(-2**16, 2**16, size=(ROWS, ARCH.features), dtype=np.int32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)
    return x, y


X, Y = dataset()
DATA = encode_dataset(X, Y)
SPEC = mj.JobSpec(ARCH, 11, 1 << 14, 1 << 15, BATCH, STEPS, K, 5)


def trace(lie_at: int | None = None, final_garbage: bool = False) -> list[tuple]:
    """Every checkpoint (params, velocity) of the schedule; lie_at: one bit of w0 flipped in
    checkpoint lie_at (and training goes on from there)."""
    p, v = mj.initial_checkpoint(ARCH, SPEC.seed)
    cks = [(p, v)]
    for i in range(SPEC.segments):
        idx = mj.segment_rows(SPEC, ROWS, i)
        p, v, _ = mj.run_segment(ARCH, p, v, X[idx], Y[idx], SPEC.lr, SPEC.momentum, BATCH)
        if lie_at == i + 1:
            w0 = p[0].copy()
            w0.flat[3] ^= 1
            p = (w0,) + tuple(p[1:])
        cks.append((p, v))
    return cks


HONEST_TRACE = trace()


class Net:
    """One chain, one blob store; every action a block of its own."""

    def __init__(self, path, private: bool = False):
        params = ChainParams(blob_retention_blocks=500)
        g = Genesis(CHAIN, 1_700_000_000_000, params, ValidatorSet((Validator(VALIDATOR.public_key, 1),)),
                    tuple(sorted((k.address, FUNDS) for k in (REQ, WORKER, HONEST, LIAR))))
        store = Store(path / "chain", map_size=64 << 20)
        changes, root, nodes = g.initial_state()
        store.init_genesis(json.dumps({"genesis": g.to_json(), "devnet": False}).encode(), g.header(root),
                           changes, nodes)
        self.blobs = BlobStore(path / "blobs", map_size=64 << 20)
        self.chain = Chain(store, CHAIN, params, self.blobs)
        self.last = None
        self.fees: dict[bytes, int] = {}  # what each sender paid in fees (gas price 1)
        self.data = self.upload(REQ, DATA, record=not private)

    def nonce(self, key):
        return self.chain.account(key.address).nonce

    def block(self, txs=()):
        prop = self.chain.build_block(list(txs), VALIDATOR.address, self.chain.tip.time_ms + 1000, self.last)
        assert [e for _, e in prop.rejected] == []
        self.last = make_commit([VALIDATOR], CHAIN, prop.block.height, 0, prop.block.hash)
        self.chain.commit_block(prop.block, self.last, prop.output)
        for tx, r in zip(prop.block.txs, prop.output.receipts):
            self.fees[tx.sender_address] = self.fees.get(tx.sender_address, 0) + r.gas_used * tx.gas_price
        return prop.output.receipts

    def upload(self, key, data: bytes, record: bool = True) -> BlobRef:
        ref = self.blobs.put(data, 4096, self.chain.tip.height)
        if record:
            (r,) = self.block([put_blob(key, CHAIN, self.nonce(key), ref)])
            assert r.status == STATUS_SUCCESS
        return ref

    def act(self, key, action, body, value=0, ok=True, gas=GAS):
        (r,) = self.block([job_tx(key, CHAIN, self.nonce(key), action, body, value, gas)])
        assert (r.status == STATUS_SUCCESS) == ok, r.error
        return decode_value(r.events[0][2], 1 << 20) if ok else r.error

    def job(self, jid=0) -> J.Job:
        with self.chain.store.read() as rd:
            return J.get_job(State(rd.state), jid)

    def model(self, jid=0):
        with self.chain.store.read() as rd:
            return J.job_model(State(rd.state), jid)

    def balance(self, key):
        return self.chain.account(key.address).balance

    def net_of_fees(self, key) -> int:
        """Balance plus every fee it paid: what the job protocol alone did to the account."""
        return self.balance(key) + self.fees.get(key.address, 0)

    def wait(self, blocks):
        for _ in range(blocks):
            self.block()


def terms(data: BlobRef, private: bool = False) -> list:
    return J.Terms(ARCH.kind, ARCH.layers, SPEC.seed, SPEC.lr, SPEC.momentum, BATCH, STEPS, K, SPEC.order_seed,
                   data, DatasetHeader(0, ROWS, ARCH.features, 1), private, REWARD, BOND, WORK, WINDOW,
                   MOVE).to_wire()


class Party:
    """A worker or a challenger: its checkpoints, the hashes and the Merkle root of its trace."""

    def __init__(self, key, cks, hashes=None):
        self.key, self.cks = key, cks
        self.hashes = hashes or [mj.checkpoint_hash(ARCH, p, v) for p, v in cks]
        self.root = merkle_root(self.hashes)

    def proof(self, i):
        return merkle_proof(self.hashes, i)

    def blob(self, net, i) -> list:
        return net.upload(self.key, mj.encode_checkpoint(ARCH, *self.cks[i])).to_wire()


M = SPEC.segments


def post_and_claim(net, worker_key=WORKER):
    out = net.act(REQ, J.POST, [terms(net.data)], REWARD)
    assert out == {"job": 0} and net.job().status == J.OPEN
    net.act(worker_key, J.CLAIM, [0], BOND)
    assert net.job().status == J.CLAIMED and net.job().worker == worker_key.address


def deliver(net, w: Party):
    net.act(w.key, J.RESULT, [0, w.blob(net, M), w.root, w.proof(0), w.proof(M)])
    assert net.job().status == J.POSTED


def dispute(net, w: Party, c: Party) -> dict:
    """Challenge and bisect, both parties playing honestly by their own traces; returns the
    last answer.  Counts every move (the challenge included)."""
    out = net.act(c.key, J.CHALLENGE, [0, c.root, c.proof(0), c.hashes[M], c.proof(M), c.hashes[M // 2],
                                       c.proof(M // 2)], BOND)
    moves = 1
    while out["probe"] >= 0:
        d = net.job().dispute
        me = w if d.turn == w.key.address else c
        lo, hi, p = d.lo, d.hi, d.probe
        agree = me.hashes[p] == d.probe_hash
        lo, hi = (p, hi) if agree else (lo, p)
        nxt = (lo + hi) // 2
        body = [0, me.hashes[p], me.proof(p)] + ([me.hashes[nxt], me.proof(nxt)] if hi - lo > 1 else [b"", []])
        out = net.act(me.key, J.MOVE, body)
        moves += 1
    d = net.job().dispute
    assert d.hi == d.lo + 1 and d.moves == moves <= (M - 1).bit_length() + 1
    return out


# ---- the honest path ------------------------------------------------------------------------

def test_an_honest_worker_is_paid_after_the_window_and_the_job_model_is_mlcores(tmp_path):
    net = Net(tmp_path)
    post_and_claim(net)
    w = Party(WORKER, HONEST_TRACE)
    deliver(net, w)
    net.act(WORKER, J.FINALIZE, [0], ok=False)  # the window is open
    net.wait(WINDOW)
    out = net.act(HONEST, J.FINALIZE, [0])  # anyone may finalize
    assert out["paid"] == REWARD and net.job().status == J.FINAL
    kind, layers, data = net.model()
    # bit for bit the model trained in one process by mlcore with the same schedule
    p, v = mj.decode_checkpoint(ARCH, data)
    (fp, fv), hashes = mj.train_job(SPEC, X, Y)
    assert (kind, layers) == (ARCH.kind, ARCH.layers)
    assert all(np.array_equal(a, b) for a, b in zip(p + v, fp + fv)) and hashes == w.hashes
    # the worker got the reward and its bond back; the requester paid the reward
    assert net.net_of_fees(WORKER) == FUNDS + REWARD and net.net_of_fees(REQ) == FUNDS - REWARD
    # a contract serves the job's model like any other Model
    from ledger.tx import call, contract_address, deploy
    from mlcore import programs
    (r,) = net.block([deploy(REQ, CHAIN, net.nonce(REQ), SERVE, gas_limit=GAS)])
    addr = contract_address(REQ.address, net.nonce(REQ) - 1)
    x = ml_rows(X[:5])
    (r,) = net.block([call(REQ, CHAIN, net.nonce(REQ), addr, "classify", [x], gas_limit=2 * GAS)])
    assert r.status == STATUS_SUCCESS, r.error
    assert decode_value(r.output, 1 << 20) == programs.predict(ARCH, fp, X[:5]).tolist()


SERVE = """
@export
def classify(rows: list) -> list:
    m = ml.job_model(0)
    return ml.predict(m, ml.tensor(rows)).tolist()
"""


def ml_rows(x: np.ndarray) -> list:
    """Q.16 integers as the exact Decimals ml.tensor takes."""
    from vm.decimals import Decimal
    return [[Decimal(int(v)) / Decimal(65536) for v in row] for row in x]


# ---- a lying worker always loses to an honest challenger ------------------------------------

@pytest.mark.parametrize("lie_at", [1, M, 4, random.Random(3).randrange(2, M)])
def test_a_worker_that_flips_one_bit_loses_and_the_reopened_job_is_done_honestly(tmp_path, lie_at):
    net = Net(tmp_path)
    post_and_claim(net)
    liar = Party(WORKER, trace(lie_at))
    deliver(net, liar)
    honest = Party(HONEST, HONEST_TRACE)
    dispute(net, liar, honest)
    d = net.job().dispute
    assert d.lo == lie_at - 1  # the bisection found the segment with the flipped bit
    # the settle is the worker's to do; an honest challenger may do it too (the data is public)
    out = net.act(HONEST, J.SETTLE, [0, honest.blob(net, d.lo), None])
    assert out["winner"] == "challenger"
    job = net.job()
    assert job.status == J.OPEN and job.worker == b"" and job.rounds == 1
    assert net.net_of_fees(HONEST) == FUNDS + BOND // 2  # its bond back plus half the liar's
    assert net.net_of_fees(WORKER) == FUNDS - BOND
    # the reopened job, done honestly by another worker
    net.act(HONEST, J.CLAIM, [0], BOND)
    deliver(net, Party(HONEST, HONEST_TRACE))
    net.wait(WINDOW)
    net.act(HONEST, J.FINALIZE, [0])
    assert mj.decode_checkpoint(ARCH, net.model()[2])[0][0].tobytes() == HONEST_TRACE[M][0][0].tobytes()


def test_a_trace_that_does_not_match_its_own_checkpoints_loses(tmp_path):
    """The worker's model is right but a leaf in the middle of its trace is garbage."""
    net = Net(tmp_path)
    post_and_claim(net)
    hashes = [mj.checkpoint_hash(ARCH, p, v) for p, v in HONEST_TRACE]
    hashes[3] = bytes(32)
    w = Party(WORKER, HONEST_TRACE, hashes)
    deliver(net, w)
    c = Party(HONEST, HONEST_TRACE)
    # the ends agree... so the challenger's trace must differ at m to challenge: it cannot
    net.act(HONEST, J.CHALLENGE, [0, c.root, c.proof(0), c.hashes[M], c.proof(M), c.hashes[M // 2],
                                  c.proof(M // 2)], BOND, ok=False)
    # a model that is right is the job's result, whatever the middle of the trace says
    net.wait(WINDOW)
    net.act(WORKER, J.FINALIZE, [0])


def test_a_wrong_final_blob_or_a_wrong_first_leaf_is_refused_at_posting(tmp_path):
    net = Net(tmp_path)
    post_and_claim(net)
    w = Party(WORKER, HONEST_TRACE)
    other = net.upload(WORKER, mj.encode_checkpoint(ARCH, *HONEST_TRACE[M - 1]))
    err = net.act(WORKER, J.RESULT, [0, other.to_wire(), w.root, w.proof(0), w.proof(M)], ok=False)
    assert "does not lead to the trace root" in err
    bad0 = Party(WORKER, HONEST_TRACE, [bytes(32)] + w.hashes[1:])
    err = net.act(WORKER, J.RESULT, [0, w.blob(net, M), bad0.root, bad0.proof(0), bad0.proof(M)], ok=False)
    assert "leaf 0" in err
    garbage = net.upload(WORKER, b"not a checkpoint" * 10)
    err = net.act(WORKER, J.RESULT, [0, garbage.to_wire(), w.root, w.proof(0), w.proof(M)], ok=False)
    assert "is not a checkpoint" in err
    assert net.job().status == J.CLAIMED
    deliver(net, w)


# ---- a lying challenger always loses against an honest worker -------------------------------

@pytest.mark.parametrize("lie_at", [1, M, 5])
def test_a_lying_challenger_loses_its_bond_and_the_window_starts_again(tmp_path, lie_at):
    net = Net(tmp_path)
    post_and_claim(net)
    w = Party(WORKER, HONEST_TRACE)
    deliver(net, w)
    liar = Party(LIAR, trace(lie_at))
    dispute(net, w, liar)
    d = net.job().dispute
    assert d.lo == lie_at - 1
    out = net.act(WORKER, J.SETTLE, [0, w.blob(net, d.lo), None])
    assert out["winner"] == "worker"
    assert net.job().status == J.POSTED and net.job().dispute is None
    assert net.net_of_fees(LIAR) == FUNDS - BOND and net.net_of_fees(WORKER) == FUNDS - BOND + BOND // 2
    net.wait(WINDOW)
    net.act(WORKER, J.FINALIZE, [0])
    assert net.job().status == J.FINAL


# ---- deadlines, turns, malformed moves ------------------------------------------------------

def test_a_silent_worker_loses_its_claim_and_the_job_reopens(tmp_path):
    net = Net(tmp_path)
    post_and_claim(net)
    net.act(HONEST, J.TIMEOUT, [0], ok=False)  # not yet
    net.wait(WORK)
    net.act(HONEST, J.TIMEOUT, [0])
    assert net.job().status == J.OPEN and net.net_of_fees(REQ) == FUNDS - REWARD + BOND // 2
    assert net.net_of_fees(WORKER) == FUNDS - BOND
    w = Party(WORKER, HONEST_TRACE)
    err = net.act(WORKER, J.RESULT, [0, w.blob(net, M), w.root, w.proof(0), w.proof(M)], ok=False)
    assert "is open" in err


def test_a_silent_challenger_loses_and_a_silent_worker_loses(tmp_path):
    net = Net(tmp_path)
    post_and_claim(net)
    liar = Party(WORKER, trace(3))
    deliver(net, liar)
    honest = Party(HONEST, HONEST_TRACE)
    net.act(HONEST, J.CHALLENGE, [0, honest.root, honest.proof(0), honest.hashes[M], honest.proof(M),
                                  honest.hashes[M // 2], honest.proof(M // 2)], BOND)
    assert net.job().dispute.turn == WORKER.address
    net.wait(MOVE)
    out = net.act(LIAR, J.TIMEOUT, [0])  # the worker never moved
    assert out["winner"] == "challenger" and net.job().status == J.OPEN
    # and the other way round: a challenger that stops answering
    net.act(WORKER, J.CLAIM, [0], BOND)
    w = Party(WORKER, HONEST_TRACE)
    deliver(net, w)
    lying = Party(LIAR, trace(2))
    net.act(LIAR, J.CHALLENGE, [0, lying.root, lying.proof(0), lying.hashes[M], lying.proof(M),
                                lying.hashes[M // 2], lying.proof(M // 2)], BOND)
    d = net.job().dispute
    net.act(WORKER, J.MOVE, [0, w.hashes[d.probe], w.proof(d.probe), w.hashes[2], w.proof(2)])
    assert net.job().dispute.turn == LIAR.address
    net.wait(MOVE)
    out = net.act(WORKER, J.TIMEOUT, [0])
    assert out["winner"] == "worker" and net.job().status == J.POSTED


def test_moves_out_of_turn_after_the_deadline_malformed_or_replayed_are_refused(tmp_path):
    net = Net(tmp_path)
    post_and_claim(net)
    w, c = Party(WORKER, trace(6)), Party(HONEST, HONEST_TRACE)
    deliver(net, w)
    net.act(HONEST, J.CHALLENGE, [0, c.root, c.proof(0), c.hashes[M], c.proof(M), c.hashes[M // 2],
                                  c.proof(M // 2)], BOND)
    before = net.job()
    p = before.dispute.probe
    good = [0, w.hashes[p], w.proof(p), w.hashes[(p + M) // 2], w.proof((p + M) // 2)]
    cases = [
        (HONEST, good, "move in the dispute"),                                 # out of turn
        (WORKER, [0, w.hashes[p]], "takes"),                                   # too few fields
        (WORKER, [0, w.hashes[p + 1], w.proof(p)] + good[3:], "does not lead"),  # a hash not there in its trace
        (WORKER, [0, w.hashes[p], w.proof(p + 1)] + good[3:], "does not lead"),
        (WORKER, [0, w.hashes[p][:31], w.proof(p)] + good[3:], "32-byte"),
        (WORKER, [0, w.hashes[p], "proof"] + good[3:], "list of at most 64"),
        (WORKER, [1] + good[1:], "no job 1"),
        (WORKER, [0, w.hashes[p], w.proof(p), w.hashes[1], w.proof(1)], "does not lead"),  # the wrong next probe
    ]
    for key, body, why in cases:
        err = net.act(key, J.MOVE, body, ok=False)
        assert why in err, (body, err)
    assert net.job().dispute == before.dispute  # nothing changed
    net.act(WORKER, J.SETTLE, [0, w.blob(net, 0), None], ok=False)  # not over yet
    net.act(WORKER, J.MOVE, good)
    err = net.act(WORKER, J.MOVE, good, ok=False)  # the same move again: no longer its turn
    assert "move in the dispute" in err
    net.wait(MOVE)
    d = net.job().dispute
    body = [0, c.hashes[d.probe], c.proof(d.probe), b"", []]
    assert "was due" in net.act(HONEST, J.MOVE, body, ok=False)


def test_post_refuses_bad_terms_and_a_node_without_the_data_leaves_the_job_out(tmp_path):
    net = Net(tmp_path)
    t = terms(net.data)
    bad = [
        (t[:5] + [3] + t[6:], "multiple of the batch"),            # batch 3: 40 rows
        (t[:7] + [3] + t[8:], "multiple of the checkpoint"),       # k 3: 16 steps
        (t[:1] + [[7, 8, 3]] + t[2:], "features"),
        (t[:10] + [[0, ROWS + 1, 6, 1]] + t[11:], "bytes, the data blob"),
        (t[:9] + [[bytes(32), len(DATA), 4096]] + t[10:], "not on chain"),
        (t[:16], "17 fields"),
        (t[:3] + [2**21] + t[4:], "lr"),
    ]
    for w, why in bad:
        err = net.act(REQ, J.POST, [w], REWARD, ok=False)
        assert why in err, (why, err)
    assert "reward as its value" in net.act(REQ, J.POST, [t], REWARD - 1, ok=False)
    assert net.job() is None
    # a node that lost the data (a recorded, unexpired blob): the block is not valid to it
    net.blobs.delete(net.data.root)
    tx = job_tx(REQ, CHAIN, net.nonce(REQ), J.POST, [t], REWARD, GAS)
    prop = net.chain.build_block([tx], VALIDATOR.address, net.chain.tip.time_ms + 1000, net.last)
    assert prop.block.txs == () and isinstance(prop.rejected[0][1], BlobUnavailable)
    assert net.nonce(REQ) == tx.nonce


def test_a_private_data_set_is_revealed_only_for_the_disputed_segment(tmp_path):
    net = Net(tmp_path, private=True)
    ref = net.data  # in the worker's and challenger's hands, not on chain
    assert net.chain.blob_expiry(ref.root) is None
    net.act(REQ, J.POST, [terms(ref, private=True)], REWARD)
    net.act(WORKER, J.CLAIM, [0], BOND)
    liar = Party(WORKER, trace(5))
    deliver(net, liar)
    honest = Party(HONEST, HONEST_TRACE)
    dispute(net, liar, honest)
    d = net.job().dispute
    err = net.act(HONEST, J.SETTLE, [0, honest.blob(net, d.lo), None], ok=False)
    assert "must reveal" in err
    # reveal exactly the chunks of the segment's batches (and chunk 0, the header)
    from ledger.blobs import chunk_leaves, chunk_proof, split
    from ledger.datasets import chunks_for_rows
    t = J.Terms.from_wire(terms(ref, private=True))
    idx = mj.segment_rows(SPEC, ROWS, d.lo)
    need = sorted({c for b in idx[::BATCH] for c in chunks_for_rows(t.shape, ref, int(b), int(b) + BATCH)})
    parts = split(DATA, 4096)
    leaves = chunk_leaves(parts)
    reveal = net.upload(HONEST, encode([[i, parts[i], chunk_proof(leaves, i)] for i in need]))
    out = net.act(HONEST, J.SETTLE, [0, honest.blob(net, d.lo), reveal.to_wire()])
    assert out["winner"] == "challenger"
    assert net.chain.blob_expiry(ref.root) is None  # the data set itself never went on chain


def test_the_job_transaction_is_strictly_decoded():
    from ledger import errors
    from ledger.tx import decode_transaction
    good = job_tx(REQ, CHAIN, 0, J.CLAIM, [0], BOND)
    assert decode_transaction(good.raw, 1 << 16).payload == good.payload
    assert good.value == BOND and good.kind == TxKind.JOB
    for wire in ([J.CLAIM, [0]], [0, [0], 0], [13, [0], 0], [J.CLAIM, "0", 0], [J.CLAIM, [0], -1], [True, [0], 0]):
        raw = encode([1, CHAIN, REQ.public_key, 0, good.gas_limit, 1, TxKind.JOB, wire, bytes(64)])
        with pytest.raises(errors.MalformedTransaction):
            decode_transaction(raw, 1 << 16)


# ---- inference jobs ---------------------------------------------------------------------------

SEG = 8  # rows per inference segment: 40 rows, 5 segments


def infer_terms(net, model_ref) -> list:
    return J.InferTerms(ARCH.kind, ARCH.layers, model_ref, net.data, DatasetHeader(0, ROWS, ARCH.features, 1), SEG,
                        REWARD, BOND, WORK, WINDOW).to_wire()


def outputs(params, wrong_row: int | None = None) -> bytes:
    from mlcore import programs
    labels = np.array(programs.predict(ARCH, params, X), dtype="<i4")
    if wrong_row is not None:
        labels[wrong_row] = (labels[wrong_row] + 1) % 3
    return labels.tobytes()


def test_an_inference_job_is_final_and_a_wrong_segment_loses_at_once(tmp_path):
    net = Net(tmp_path)
    params, velocity = HONEST_TRACE[M]
    model = net.upload(REQ, mj.encode_checkpoint(ARCH, params, velocity))
    assert net.act(REQ, J.INFER, [infer_terms(net, model)], REWARD) == {"job": 0}
    net.act(WORKER, J.CLAIM, [0], BOND)
    lied = net.upload(WORKER, outputs(params, wrong_row=3 * SEG + 5))
    net.act(WORKER, J.OUTPUT, [0, lied.to_wire()])
    # a challenger that names a right segment loses its bond; the one with the wrong row wins
    assert net.act(LIAR, J.CONTEST, [0, 1], BOND)["winner"] == "worker"
    out = net.act(HONEST, J.CONTEST, [0, 3], BOND)
    assert out["winner"] == "challenger" and net.job().status == J.OPEN and net.job().rounds == 1
    assert net.net_of_fees(HONEST) == FUNDS + BOND // 2 and net.net_of_fees(LIAR) == FUNDS - BOND
    assert net.net_of_fees(WORKER) == FUNDS - BOND + BOND // 2
    # done honestly, it is final after its window and the outputs stay recorded
    net.act(HONEST, J.CLAIM, [0], BOND)
    right = net.upload(HONEST, outputs(params))
    net.act(HONEST, J.OUTPUT, [0, right.to_wire()])
    net.act(LIAR, J.CONTEST, [0, 4], BOND)  # the last, short, segment is right too
    net.wait(WINDOW)
    net.act(REQ, J.FINALIZE, [0])
    assert net.job().status == J.FINAL and net.chain.blob_expiry(right.root) is not None
    # its winning contest, the liar's lost one against it, and the reward
    assert net.net_of_fees(HONEST) == FUNDS + BOND // 2 + BOND // 2 + REWARD


def test_inference_and_training_actions_do_not_mix_and_bad_outputs_are_refused(tmp_path):
    net = Net(tmp_path)
    params, velocity = HONEST_TRACE[M]
    model = net.upload(REQ, mj.encode_checkpoint(ARCH, params, velocity))
    bad = infer_terms(net, net.data)  # the data set is not a checkpoint
    assert "is not a checkpoint" in net.act(REQ, J.INFER, [bad], REWARD, ok=False)
    net.act(REQ, J.INFER, [infer_terms(net, model)], REWARD)
    net.act(WORKER, J.CLAIM, [0], BOND)
    short = net.upload(WORKER, outputs(params)[:-4])
    assert "bytes, not" in net.act(WORKER, J.OUTPUT, [0, short.to_wire()], ok=False)
    w = Party(WORKER, HONEST_TRACE)
    assert "inference job" in net.act(WORKER, J.RESULT, [0, w.blob(net, M), w.root, w.proof(0), w.proof(M)],
                                      ok=False)
    right = net.upload(WORKER, outputs(params))
    net.act(WORKER, J.OUTPUT, [0, right.to_wire()])
    assert "segment must be" in net.act(HONEST, J.CONTEST, [0, 5], BOND, ok=False)
    assert "cannot contest its own" in net.act(WORKER, J.CONTEST, [0, 0], BOND, ok=False)
    post_net = Net(tmp_path / "t")
    post_and_claim(post_net)
    assert "training job" in post_net.act(HONEST, J.CONTEST, [0, 0], BOND, ok=False)
