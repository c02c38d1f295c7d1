"""Training jobs from the user's side (docs/jobs.md): post one, work one, verify one.

`post_job` opens a job; a `Worker` claims it, trains it natively with mlcore (the fused
programs, on the best device JAX finds), keeps every checkpoint on disk (never more than
the current one in memory), posts the model and its trace root, and defends the result;
a `Verifier` re-runs a posted job and, where its checkpoints differ, challenges and plays
the bisection down to one segment that the chain re-executes.  Both are a `Party`: its
trace (the checkpoint hashes), their Merkle tree, and the moves it makes from them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Callable

from gradchain.client import Client
from gradchain.errors import GradchainError
from gradchain.progress import Out, Progress
from ledger import jobs as J
from ledger.blobs import BlobRef, chunk_leaves, chunk_proof, split
from ledger.datasets import DatasetHeader, chunks_for_rows, decode_dataset
from ledger.encoding import encode
from ledger.keys import PrivateKey, address_hex
from ledger.merkle import merkle_proof, merkle_root
from ledger.tx import job as job_tx

HEAVY_GAS = 450_000_000  # the actions that read blobs or run mlcore (ML_COMPILE on a program's first use)
LIGHT_GAS = 2_000_000    # post, claim, move, timeout, cancel
CHECKPOINT_CHUNK = 1 << 16  # chunk size of the checkpoint blobs a party uploads


class JobError(GradchainError):
    """A job action the chain refused (its receipt's error), or a job that is not as expected."""


def _terms_wire(job: dict) -> J.Terms:
    t = job["terms"]
    if t["task"] != "train":
        raise JobError(f"job {job['id']} is an inference job (InferenceWorker, InferenceVerifier)")
    d, s = t["data"], t["data_shape"]
    return J.Terms(t["kind"], tuple(t["layers"]), t["seed"], t["lr"], t["momentum"], t["batch"], t["steps"], t["k"],
                   t["order_seed"], BlobRef(bytes.fromhex(d["root"]), d["size"], d["chunk_bytes"]),
                   DatasetHeader(s["kind"], s["rows"], s["features"], s["width"]), t["private"], t["reward"],
                   t["bond"], t["work_blocks"], t["window"], t["move_blocks"])


def act(client: Client, key: PrivateKey, action: int, body: list, value: int = 0, gas: int | None = None,
        timeout: float = 120) -> dict:
    """Send one JOB action and wait for its commit; returns the action's answer (its event's
    data).  JobError with the chain's reason if the action failed."""
    gas = gas or (HEAVY_GAS if action in (J.RESULT, J.CHALLENGE, J.SETTLE, J.FINALIZE, J.INFER, J.OUTPUT, J.CONTEST)
                  else LIGHT_GAS)
    gas = min(gas, client.max_block_gas)
    r = client._sign_and_send(key, lambda n: job_tx(key, client.chain_id, n, action, body, value, gas), None, True,
                              timeout)
    receipt = r["receipt"]
    if receipt["status"] != "success":
        raise JobError(f"job {J.ACTION_NAMES[action]} failed in block {r['height']}: {receipt.get('error')}")
    return receipt["events"][0]["data"]


def post_job(client: Client, key: PrivateKey, terms: J.Terms) -> int:
    """Open a job (the reward leaves key's balance until the job is final); returns its id."""
    return act(client, key, J.POST, [terms.to_wire()], terms.reward)["job"]


def get_job(client: Client, job_id: int) -> dict:
    return client.call("job", {"id": job_id})


def job_model(client: Client, job_id: int) -> tuple[Any, Any] | None:
    """A final job's (params, velocity) as numpy int32 arrays, or None."""
    from mlcore import jobs as mj
    j = client.call("job", {"id": job_id, "model": True})
    if j["model_checkpoint"] is None:
        return None
    return mj.decode_checkpoint(_terms_wire(j).arch(), bytes.fromhex(j["model_checkpoint"]))


def load_data(client: Client, terms: J.Terms, data: tuple | None) -> tuple[Any, Any]:
    """The job's rows: given (x, y) for a private data set, else its blob from the node."""
    if data is not None:
        return data
    if terms.private:
        raise JobError("the job's data set is private: give its (x, y) arrays")
    header, x, y = decode_dataset(client.get_blob(terms.data))
    return x, y


class Party:
    """One side of a job: its checkpoints on disk, their hashes, the trace root; the moves it
    makes from them.  A worker and a verifier differ only in how they enter the dispute."""

    def __init__(self, client: Client, key: PrivateKey, job_id: int, workdir: str | Path,
                 data: tuple | None = None, log: Callable[[str], None] = print, progress: Out = None):
        self.client, self.key, self.job_id, self.log = client, key, job_id, log
        # training's progress (gradchain/progress.py): a stream (a bar on a terminal), else lines through log
        self.progress = log if progress is None else progress
        self.job = get_job(client, job_id)
        self.terms = _terms_wire(self.job)
        self.dir = Path(workdir) / f"job-{job_id}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.x, self.y = load_data(client, self.terms, data)
        self.hashes: list[bytes] = []
        self.losses: list[int] = []   # each step's loss (Q.16), before the step

    @property
    def checkpoints(self) -> Path:
        """This party's checkpoints, one file: checkpoint i is the record of mlcore's
        checkpoint_size bytes at offset i * checkpoint_size (one append per checkpoint: a file
        per checkpoint cost 15 times as much at k = 10, docs/benchmarks.md)."""
        return self.dir / "checkpoints.bin"

    def train(self, tamper: Callable[[int, Any, Any], tuple[Any, Any]] | None = None) -> None:
        """The whole schedule with mlcore (mlcore.jobs.train_job); every checkpoint to disk as
        it is made, its progress shown (segments and steps done, the last loss).  `tamper`
        (tests only) may change a checkpoint before it is kept."""
        from mlcore import jobs as mj
        arch = self.terms.arch()
        spec = self.terms.spec()
        self.hashes, self.losses = [], []
        t = self.terms
        with open(self.checkpoints, "wb") as out, \
                Progress(f"job {self.job_id} training", t.segments, "checkpoint", self.progress) as shown:
            def show(i: int, losses: list[int]) -> None:
                shown.update(i, step=f"{i * t.k}/{t.steps}", **({"loss": f"{losses[-1] / 65536:.4f}"} if losses else {}))
            if tamper is None:
                def keep(i: int, data: bytes, losses: list[int]) -> None:
                    out.write(data)
                    self.losses += losses
                    show(i, losses)
                _, self.hashes = mj.train_job(spec, self.x, self.y, keep)
                return
            p, v = mj.initial_checkpoint(arch, spec.seed)
            losses: list[int] = []
            for i in range(spec.segments + 1):
                if i:
                    idx = mj.segment_rows(spec, self.x.shape[0], i - 1)
                    p, v, losses = mj.run_segment(arch, p, v, self.x[idx], self.y[idx], spec.lr, spec.momentum,
                                                  spec.batch)
                    self.losses += losses
                p, v = tamper(i, p, v)
                data = mj.encode_checkpoint(arch, p, v)
                out.write(data)
                self.hashes.append(sha256(data).digest())
                show(i, losses)

    def checkpoint(self, i: int) -> bytes:
        """The canonical bytes of this party's checkpoint i, from its checkpoints file."""
        from mlcore import jobs as mj
        size = mj.checkpoint_size(self.terms.arch())
        with open(self.checkpoints, "rb") as f:
            f.seek(i * size)
            data = f.read(size)
        if len(data) != size:
            raise JobError(f"checkpoint {i} is not in {self.checkpoints} (train first)")
        return data

    @property
    def root(self) -> bytes:
        return merkle_root(self.hashes)

    def proof(self, i: int) -> list[bytes]:
        return merkle_proof(self.hashes, i)

    def checkpoint_blob(self, i: int) -> BlobRef:
        return self.client.put_blob(self.checkpoint(i), self.key, chunk_bytes=CHECKPOINT_CHUNK)

    def refresh(self) -> dict:
        self.job = get_job(self.client, self.job_id)
        return self.job

    # ---- the dispute -------------------------------------------------------------------------

    def move(self) -> dict:
        """Answer the probe with this party's hash there, and open the next one."""
        d = self.job["dispute"]
        lo, hi, p = d["lo"], d["hi"], d["probe"]
        if self.hashes[p].hex() == d["probe_hash"]:
            lo = p
        else:
            hi = p
        nxt = (lo + hi) // 2
        body = [self.job_id, self.hashes[p], self.proof(p)]
        body += [self.hashes[nxt], self.proof(nxt)] if hi - lo > 1 else [b"", []]
        out = act(self.client, self.key, J.MOVE, body)
        self.log(f"move: [{out['lo']}, {out['hi']}]" + (f", probe {out['probe']}" if out["probe"] >= 0 else ", settle"))
        return out

    def settle(self) -> dict:
        """Re-execute segment lo on chain from the agreed checkpoint (and reveal the segment's
        chunks of a private data set)."""
        lo = self.job["dispute"]["lo"]
        reveal = self.reveal(lo).to_wire() if self.terms.private else None
        out = act(self.client, self.key, J.SETTLE, [self.job_id, self.checkpoint_blob(lo).to_wire(), reveal])
        self.log(f"settled segment {lo}: the {out['winner']} was right")
        return out

    def reveal(self, segment: int) -> BlobRef:
        """The chunks of the private data set that segment's batches need, each with its proof,
        as a blob (docs/jobs.md "Privacy": exactly these chunks become public)."""
        from ledger.datasets import encode_dataset
        from mlcore import jobs as mj
        t = self.terms
        data = encode_dataset(self.x, self.y)
        parts = split(data, t.data.chunk_bytes)
        leaves = chunk_leaves(parts)
        idx = mj.segment_rows(t.spec(), t.shape.rows, segment)
        need = sorted({c for b in idx[::t.batch] for c in chunks_for_rows(t.shape, t.data, int(b), int(b) + t.batch)})
        return self.client.put_blob(encode([[i, parts[i], chunk_proof(leaves, i)] for i in need]), self.key)

    def play(self, poll: float = 0.2, timeout: float = 600) -> str:
        """Make every move that is this party's until the dispute ends; returns the job's status."""
        me = address_hex(self.key.address)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            j = self.refresh()
            d = j["dispute"]
            if j["status"] != "disputed":
                return j["status"]
            try:
                if d["turn"] == me:
                    self.settle() if d["probe"] is None else self.move()
                    continue
                if d["probe"] is None and self.hashes[d["hi"]].hex() == d["challenger_hi"]:
                    self.settle()  # the worker's to do; a challenger sure of its hash may do it first
                    continue
            except JobError:
                if self.refresh()["status"] != "disputed":  # the other side settled first
                    return self.job["status"]
                raise
            time.sleep(poll)
        raise JobError(f"the dispute of job {self.job_id} did not end within {timeout} s")


class Worker(Party):
    """Claim, train, post the result, defend it, collect."""

    def claim(self) -> dict:
        out = act(self.client, self.key, J.CLAIM, [self.job_id], self.terms.bond)
        self.log(f"claimed job {self.job_id}; the result is due by height {out['deadline']}")
        return out

    def post_result(self) -> dict:
        m = self.terms.segments
        model = self.checkpoint_blob(m)
        out = act(self.client, self.key, J.RESULT, [self.job_id, model.to_wire(), self.root, self.proof(0),
                                                    self.proof(m)])
        self.log(f"posted the result: model {model.root.hex()[:16]}, trace {self.root.hex()[:16]}; "
                 f"the window ends at height {out['window_ends']}")
        return out

    def run(self, poll: float = 0.2, timeout: float = 3600) -> str:
        """claim -> train -> result -> defend every challenge -> finalize; returns the final status."""
        self.claim()
        self.train()
        self.post_result()
        return self.defend(poll, timeout)

    def defend(self, poll: float = 0.2, timeout: float = 3600) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            j = self.refresh()
            if j["status"] == "disputed":
                self.log("challenged: playing the bisection")
                self.play(poll, end - time.monotonic())
                continue
            if j["status"] != "posted":
                return j["status"]
            if self.client.status()["height"] > j["deadline"]:
                act(self.client, self.key, J.FINALIZE, [self.job_id])
                self.log(f"job {self.job_id} is final: paid {self.terms.reward}")
                return "final"
            time.sleep(poll)
        raise JobError(f"job {self.job_id} was not final within {timeout} s")


@dataclass
class Verdict:
    """What a verifier found: the job's model hash, its own, and what it did."""

    matches: bool
    worker_hash: str
    own_hash: str
    outcome: str  # "agreed", or the job's status after the dispute


class Verifier(Party):
    """Re-run a posted job in full; on a mismatch, challenge and play the dispute."""

    def prepare(self) -> None:
        """Train now, before the worker posts (the verdict then comes early in the window)."""
        self.train()

    def verify(self, challenge: bool = True, poll: float = 0.2, timeout: float = 3600) -> Verdict:
        """Compare the posted model with this party's own run (made now unless `prepare` ran),
        waiting up to `timeout` for a result to be posted; challenge on a mismatch."""
        end = time.monotonic() + timeout
        while self.refresh()["status"] in ("open", "claimed") and time.monotonic() < end:
            time.sleep(poll)
        j = self.job
        if j["status"] != "posted":
            raise JobError(f"job {self.job_id} is {j['status']}, not posted: nothing to verify")
        if not self.hashes:
            self.train()
        m = self.terms.segments
        worker_model = sha256(self.client.get_blob(BlobRef(bytes.fromhex(j["model"]["root"]), j["model"]["size"],
                                                            j["model"]["chunk_bytes"]))).hexdigest()
        mine = self.hashes[m].hex()
        if worker_model == mine:
            self.log(f"job {self.job_id}: the model matches ({mine[:16]})")
            return Verdict(True, worker_model, mine, "agreed")
        self.log(f"job {self.job_id}: the model differs (worker {worker_model[:16]}, here {mine[:16]})")
        if not challenge:
            return Verdict(False, worker_model, mine, "not challenged")
        p = m // 2
        act(self.client, self.key, J.CHALLENGE, [self.job_id, self.root, self.proof(0), self.hashes[m], self.proof(m),
                                                 self.hashes[p], self.proof(p)], self.terms.bond)
        self.log("challenged")
        return Verdict(False, worker_model, mine, self.play(poll, timeout))


# ---- inference jobs ----------------------------------------------------------------------------

def post_inference(client: Client, key: PrivateKey, terms: J.InferTerms) -> int:
    """Open an inference job (a model blob applied to a data set's rows); returns its id."""
    return act(client, key, J.INFER, [terms.to_wire()], terms.reward)["job"]


def _ref_of(w: dict) -> BlobRef:
    return BlobRef(bytes.fromhex(w["root"]), w["size"], w["chunk_bytes"])


class InferenceParty:
    """The model and the input rows of an inference job, and the outputs mlcore gives for them."""

    def __init__(self, client: Client, key: PrivateKey, job_id: int, log: Callable[[str], None] = print):
        self.client, self.key, self.job_id, self.log = client, key, job_id, log
        self.job = get_job(client, job_id)
        t = self.job["terms"]
        if t["task"] != "infer":
            raise JobError(f"job {job_id} is a training job")
        self.terms = t

    def outputs(self) -> bytes:
        """Every row's prediction as the job's outputs blob holds it (int32 little-endian)."""
        import numpy as np
        from mlcore import jobs as mj
        from mlcore import programs
        from mlcore.models import Arch
        arch = Arch(self.terms["kind"], tuple(self.terms["layers"]))
        params, _ = mj.decode_checkpoint(arch, self.client.get_blob(_ref_of(self.terms["model"])))
        _, x, _ = decode_dataset(self.client.get_blob(_ref_of(self.terms["data"])))
        seg = self.terms["segment_rows"]
        parts = [np.ascontiguousarray(programs.predict(arch, params, x[i:i + seg]), dtype="<i4")
                 for i in range(0, x.shape[0], seg)]
        return b"".join(p.tobytes() for p in parts)


class InferenceWorker(InferenceParty):
    def run(self, poll: float = 0.2, timeout: float = 3600) -> str:
        """claim -> predict every row -> post the outputs -> finalize after the window."""
        act(self.client, self.key, J.CLAIM, [self.job_id], self.terms["bond"])
        ref = self.client.put_blob(self.outputs(), self.key)
        out = act(self.client, self.key, J.OUTPUT, [self.job_id, ref.to_wire()])
        self.log(f"posted the outputs {ref.root.hex()[:16]}; the window ends at height {out['window_ends']}")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            j = get_job(self.client, self.job_id)
            if j["status"] != "posted":
                return j["status"]
            if self.client.status()["height"] > j["deadline"]:
                act(self.client, self.key, J.FINALIZE, [self.job_id])
                return "final"
            time.sleep(poll)
        raise JobError(f"job {self.job_id} was not final within {timeout} s")


class InferenceVerifier(InferenceParty):
    def verify(self, challenge: bool = True) -> Verdict:
        """Recompute every output; contest the first segment that differs."""
        j = get_job(self.client, self.job_id)
        if j["status"] != "posted":
            raise JobError(f"job {self.job_id} is {j['status']}, not posted: nothing to verify")
        mine, theirs = self.outputs(), self.client.get_blob(_ref_of(j["outputs"]))
        a, b = sha256(theirs).hexdigest(), sha256(mine).hexdigest()
        if mine == theirs:
            return Verdict(True, a, b, "agreed")
        step = 4 * self.terms["outputs_per_row"] * self.terms["segment_rows"]
        seg = next(i for i in range(self.terms["segments"]) if mine[i * step:(i + 1) * step] != theirs[i * step:(i + 1) * step])
        if not challenge:
            return Verdict(False, a, b, f"segment {seg} differs; not contested")
        out = act(self.client, self.key, J.CONTEST, [self.job_id, seg], self.terms["bond"])
        self.log(f"contested segment {seg}: the {out['winner']} was right")
        return Verdict(False, a, b, get_job(self.client, self.job_id)["status"])
