"""Training jobs: trained off chain, paid on chain, settled by bisection (docs/jobs.md).

A built-in module like staking, for three reasons: it holds escrow and bonds (ledger
balances), it reads blob data (which contracts see only with proofs), and it runs mlcore
natively for the one segment a dispute comes down to (gas from mlcore.programs.cost).

The life of a job (one JOB transaction per arrow; heights are deadlines):

    post -> OPEN -claim-> CLAIMED -result-> POSTED -(window passes) finalize-> FINAL
              ^              |                 |  ^
              |  (work_blocks pass) timeout    challenge  the challenger lost
              +----<---------+                 v  |
              +--------<------ the worker lost - DISPUTED  (move ... move, settle | timeout)

A worker's result is the final model (a blob holding mlcore.jobs.encode_checkpoint) and
the Merkle root (ledger/merkle.py) of its trace: the checkpoint hashes after 0, k, 2k, ...
N steps.  A challenger posts its own trace root.  Both roots agree at leaf 0 (the chain
checks it against the initial checkpoint) and differ at leaf m.  Every move reveals the
mover's hash at the probe the other party opened, which halves [lo, hi] (equal: lo moves
up; else hi moves down), and opens the next probe with the mover's own hash there.  When
hi = lo + 1, `settle` re-executes the k steps of segment lo from the agreed checkpoint
(a blob whose hash is the agreed leaf), with the batches read from the data set, and
compares the result with the worker's leaf hi.  Whoever was wrong loses its bond (half to
the other party, the rest burned); a job whose worker lost is open again.  A party that
lets its deadline pass loses as if it had been wrong (`timeout`; the settle is the
worker's to do or lose).

Records, canonical msgpack under b"j": b"j" + b"next" -> the next job id; b"j" + id (8
bytes BE) -> the job (Job.to_wire); b"j" + id + b"/model" -> a final job's model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from ledger import blob_records
from ledger.blob_records import BlobSource
from ledger.blobs import BlobError, BlobRef, check_chunk
from ledger.datasets import KIND_CLASSES, KIND_TARGETS, DatasetError, DatasetHeader, chunks_for_rows, \
    decode_header, rows_from_chunks
from ledger.encoding import DecodeError, decode
from ledger.merkle import verify_merkle_proof
from ledger.params import ChainParams
from ledger.state import (JOB_PREFIX, Account, State, get_account, get_record, get_storage, set_account, set_record,
                          set_storage)
from vm.gas import STORAGE_PER_BYTE, STORAGE_READ
from vm.codec import encode_value
from vm.limits import MAX_OUTPUT_BYTES

JOB_VERSION = 1
U64_MAX = 2**64 - 1
MAX_DEADLINE_BLOCKS = 2**32 - 1
SLASH_TO_WINNER_PERCENT = 50  # of a loser's bond, to the other party; the rest is burned

# gas (beside the JOB transaction's intrinsic gas, ledger.tx.intrinsic_gas)
JOB_ACTION = 40_000           # a job record read and written
BLOB_READ_PER_KIB = 400       # each KiB of blob data a job action reads (LMDB read, copy)
HASH_PER_KIB = 200            # each KiB hashed (checkpoints, revealed chunks)
MODEL_PER_BYTE = 16           # each byte of a final model kept in state

# statuses
OPEN, CLAIMED, POSTED, DISPUTED, FINAL, CANCELLED = range(6)
STATUS_NAMES = ("open", "claimed", "posted", "disputed", "final", "cancelled")

# actions (the first element of a JOB payload)
POST, CLAIM, RESULT, CHALLENGE, MOVE, SETTLE, TIMEOUT, FINALIZE, CANCEL = range(1, 10)
INFER, OUTPUT, CONTEST = range(10, 13)  # inference jobs
ACTION_NAMES = {POST: "post", CLAIM: "claim", RESULT: "result", CHALLENGE: "challenge", MOVE: "move",
                SETTLE: "settle", TIMEOUT: "timeout", FINALIZE: "finalize", CANCEL: "cancel", INFER: "infer",
                OUTPUT: "output", CONTEST: "contest"}


class JobFailure(Exception):
    """A valid JOB transaction that cannot take effect: it fails with this message."""


class JobFailed(Exception):
    """What `run` raises: the action failed after `gas_used` gas (ledger.transition makes it a
    failed receipt, code "job_failed" or "out_of_gas")."""

    def __init__(self, message: str, gas_used: int, code: str):
        super().__init__(message)
        self.gas_used, self.code = gas_used, code


def _mljobs() -> Any:
    """mlcore.jobs, imported on first use: a node that never settles a job never loads JAX."""
    from mlcore import jobs
    return jobs


# ---- the job ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Terms:
    """What the requester posts: the training run, the data, the money and the deadlines."""

    kind: str                 # mlcore Arch kind ("linear", "softmax", "mlp")
    layers: tuple[int, ...]
    seed: int                 # mlcore init seed
    lr: int                   # Q.16
    momentum: int             # Q.16
    batch: int
    steps: int
    k: int                    # checkpoint interval
    order_seed: int
    data: BlobRef             # the data set (docs/jobs.md "Data sets")
    shape: DatasetHeader      # its header (checked against chunk 0 when the data is public)
    private: bool             # the data is not on chain; a dispute reveals the chunks it needs
    reward: int
    bond: int                 # the worker's bond, and a challenger's
    work_blocks: int          # a claimed job's result is due within this many blocks
    window: int               # blocks in which a result may be challenged
    move_blocks: int          # blocks for each dispute move (and for the settle)

    def to_wire(self) -> list:
        s = self.shape
        return [self.kind, list(self.layers), self.seed, self.lr, self.momentum, self.batch, self.steps, self.k,
                self.order_seed, self.data.to_wire(), [s.kind, s.rows, s.features, s.width], self.private,
                self.reward, self.bond, self.work_blocks, self.window, self.move_blocks]

    @classmethod
    def from_wire(cls, w: Any) -> Terms:
        if not (isinstance(w, list) and len(w) == 17):
            raise JobFailure("job terms must be a list of 17 fields (docs/jobs.md)")
        kind, layers, *ints1, data, shape, private, reward, bond, work, window, move = w
        if type(kind) is not str or not isinstance(layers, list) or any(type(v) is not int for v in layers):
            raise JobFailure("job terms: kind must be text and layers a list of ints")
        for name, v in zip(("seed", "lr", "momentum", "batch", "steps", "k", "order_seed"), ints1):
            if type(v) is not int or not 0 <= v <= U64_MAX:
                raise JobFailure(f"job terms: {name} must be an integer in [0, 2**64)")
        for name, v in (("reward", reward), ("bond", bond)):
            if type(v) is not int or not 0 <= v <= U64_MAX:
                raise JobFailure(f"job terms: {name} must be an integer in [0, 2**64)")
        for name, v in (("work_blocks", work), ("window", window), ("move_blocks", move)):
            if type(v) is not int or not 1 <= v <= MAX_DEADLINE_BLOCKS:
                raise JobFailure(f"job terms: {name} must be an integer in [1, 2**32)")
        if type(private) is not bool:
            raise JobFailure("job terms: private must be true or false")
        try:
            ref = BlobRef.from_wire(data)
        except BlobError as e:
            raise JobFailure(f"job terms: data: {e}") from None
        if not (isinstance(shape, list) and len(shape) == 4 and all(type(v) is int for v in shape)):
            raise JobFailure("job terms: the data shape is [label kind, rows, features, width]")
        return cls(kind, tuple(layers), *ints1, ref, DatasetHeader(*shape), private, reward, bond, work,
                   window, move)

    def arch(self) -> Any:
        from mlcore.models import Arch
        return Arch(self.kind, self.layers)

    def spec(self) -> Any:
        """The mlcore.jobs.JobSpec of this training run."""
        return _mljobs().JobSpec(self.arch(), self.seed, self.lr, self.momentum, self.batch, self.steps, self.k,
                                 self.order_seed)

    @property
    def segments(self) -> int:
        return self.steps // self.k


@dataclass(frozen=True, slots=True)
class InferTerms:
    """An inference job: a model (a blob of mlcore.jobs.encode_checkpoint) applied to every row
    of a public data set (its labels are ignored); the outputs are a blob of int32 little-
    endian values, one label per row (classifiers) or `outputs` Q.16 values (linear), in row
    order.  A dispute names one segment of `segment_rows` rows: the chain predicts them and
    compares, in one transaction (rows are independent: no bisection is needed)."""

    kind: str
    layers: tuple[int, ...]
    model: BlobRef
    data: BlobRef
    shape: DatasetHeader
    segment_rows: int
    reward: int
    bond: int
    work_blocks: int
    window: int

    private = False  # inference reads its input on chain

    def to_wire(self) -> list:
        s = self.shape
        return ["infer", self.kind, list(self.layers), self.model.to_wire(), self.data.to_wire(),
                [s.kind, s.rows, s.features, s.width], self.segment_rows, self.reward, self.bond, self.work_blocks,
                self.window]

    @classmethod
    def from_wire(cls, w: Any) -> InferTerms:
        if not (isinstance(w, list) and len(w) == 11 and w[0] == "infer"):
            raise JobFailure("inference terms must be a list of 11 fields, \"infer\" first (docs/jobs.md)")
        _, kind, layers, model, data, shape, seg, reward, bond, work, window = w
        if type(kind) is not str or not isinstance(layers, list) or any(type(v) is not int for v in layers):
            raise JobFailure("inference terms: kind must be text and layers a list of ints")
        for name, v, lo, hi in (("segment_rows", seg, 1, U64_MAX), ("reward", reward, 0, U64_MAX),
                                ("bond", bond, 0, U64_MAX), ("work_blocks", work, 1, MAX_DEADLINE_BLOCKS),
                                ("window", window, 1, MAX_DEADLINE_BLOCKS)):
            if type(v) is not int or not lo <= v <= hi:
                raise JobFailure(f"inference terms: {name} must be an integer in [{lo}, {hi}]")
        try:
            refs = BlobRef.from_wire(model), BlobRef.from_wire(data)
        except BlobError as e:
            raise JobFailure(f"inference terms: {e}") from None
        if not (isinstance(shape, list) and len(shape) == 4 and all(type(v) is int for v in shape)):
            raise JobFailure("inference terms: the data shape is [label kind, rows, features, width]")
        return cls(kind, tuple(layers), *refs, DatasetHeader(*shape), seg, reward, bond, work, window)

    def arch(self) -> Any:
        from mlcore.models import Arch
        return Arch(self.kind, self.layers)

    @property
    def width(self) -> int:
        """int32 values per row of the outputs."""
        return 1 if self.kind != "linear" else self.layers[-1]

    @property
    def segments(self) -> int:
        return -(-self.shape.rows // self.segment_rows)


def terms_from_wire(w: Any) -> Terms | InferTerms:
    return InferTerms.from_wire(w) if isinstance(w, list) and w[:1] == ["infer"] else Terms.from_wire(w)


@dataclass(frozen=True, slots=True)
class Dispute:
    """A bisection in progress: both traces agree at lo and differ at hi."""

    challenger: bytes         # address
    root: bytes               # the challenger's trace root
    lo: int
    hi: int
    lo_hash: bytes            # the agreed hash at lo
    worker_hi: bytes          # each side's hash at hi
    challenger_hi: bytes
    probe: int                # the index the party on turn must answer (-1: bisection over, settle)
    probe_hash: bytes         # the other party's hash at probe
    turn: bytes               # who must move next (the worker settles)
    deadline: int
    moves: int                # moves so far, the challenge included

    def to_wire(self) -> list:
        return [self.challenger, self.root, self.lo, self.hi, self.lo_hash, self.worker_hi, self.challenger_hi,
                self.probe, self.probe_hash, self.turn, self.deadline, self.moves]


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    requester: bytes
    terms: Terms | InferTerms
    status: int
    worker: bytes = b""       # address; b"" while open
    deadline: int = 0         # of the current phase (claim's result, window, or a move)
    model: BlobRef | None = None   # the worker's result: the final checkpoint, or an inference's outputs
    trace: bytes = b""        # the worker's trace root
    dispute: Dispute | None = None
    posted_at: int = 0
    rounds: int = 0           # results that lost a dispute or were never delivered

    def to_wire(self) -> list:
        return [JOB_VERSION, self.id, self.requester, self.terms.to_wire(), self.status, self.worker, self.deadline,
                None if self.model is None else self.model.to_wire(), self.trace,
                None if self.dispute is None else self.dispute.to_wire(), self.posted_at, self.rounds]

    @classmethod
    def from_wire(cls, w: list) -> Job:
        _, jid, req, terms, status, worker, deadline, model, trace, dispute, posted, rounds = w
        return cls(jid, req, terms_from_wire(terms), status, worker, deadline,
                   None if model is None else BlobRef.from_wire(model), trace,
                   None if dispute is None else Dispute(*dispute), posted, rounds)


def _name(job_id: int) -> bytes:
    return job_id.to_bytes(8, "big")


def get_job(state: State, job_id: int) -> Job | None:
    if type(job_id) is not int or not 0 <= job_id <= U64_MAX:
        return None
    w = get_record(state, JOB_PREFIX, _name(job_id))
    return None if w is None else Job.from_wire(w)


def _put(state: State, job: Job) -> None:
    set_record(state, JOB_PREFIX, _name(job.id), job.to_wire())


def job_model(state: State, job_id: int) -> tuple[str, tuple[int, ...], bytes] | None:
    """A final job's model: (kind, layers, the mlcore.jobs checkpoint bytes), else None."""
    w = get_record(state, JOB_PREFIX, _name(job_id) + b"/model") if type(job_id) is int and job_id >= 0 else None
    return None if w is None else (w[0], tuple(w[1]), w[2])


# ---- money --------------------------------------------------------------------------------

def _take(state: State, address: bytes, amount: int, what: str) -> None:
    a = get_account(state, address)
    if a.balance < amount:
        raise JobFailure(f"{what}: balance {a.balance} cannot pay {amount}")
    set_account(state, address, Account(a.balance - amount, a.nonce))


def _give(state: State, address: bytes, amount: int) -> None:
    if amount:
        a = get_account(state, address)
        set_account(state, address, Account(a.balance + amount, a.nonce))


def _slash(state: State, bond: int, winner: bytes) -> int:
    """A loser's bond: SLASH_TO_WINNER_PERCENT to the winner, the rest burned; returns the share paid."""
    share = bond * SLASH_TO_WINNER_PERCENT // 100
    _give(state, winner, share)
    return share


# ---- reading blobs ------------------------------------------------------------------------

class Meter:
    """Gas of one JOB action beyond its intrinsic gas; stops before the limit is passed."""

    def __init__(self, used: int, limit: int):
        self.used, self.limit = used, limit

    def charge(self, gas: int, what: str) -> None:
        self.used += gas
        if self.used > self.limit:
            raise JobFailed(f"out of gas: {what} needs {self.used} gas, the limit is {self.limit}", self.limit,
                            "out_of_gas")


def _kib(n: int) -> int:
    return -(-n // 1024)


def _blob_ref(w: Any, what: str) -> BlobRef:
    """A blob name from a JOB body; JobFailure naming the field if it is malformed."""
    try:
        return BlobRef.from_wire(w)
    except BlobError as e:
        raise JobFailure(f"{what}: {e}") from None


def _chunk(ctx: Ctx, root: bytes, index: int) -> bytes:
    """A chunk of a blob that `check_available` made sure, before the fee, this node holds."""
    c = ctx.blobs.chunk(root, index)
    if c is None:  # pruned by hand, or a bug: never a verdict of this node alone
        raise RuntimeError(f"blob {root.hex()} vanished from this node's blob store")
    return c


def _on_chain(state: State, ref: BlobRef, height: int, what: str) -> None:
    """The blob is recorded and not expired: every node holds it (data availability), so
    reading it is deterministic.  An expired one may be gone anywhere: refused everywhere."""
    rec = blob_records.record(state, ref.root)
    if rec is None or (rec[0].size, rec[0].chunk_bytes) != (ref.size, ref.chunk_bytes):
        raise JobFailure(f"{what}: blob {ref.root.hex()} is not on chain (send a BLOB transaction first)")
    if rec[1] < height:
        raise JobFailure(f"{what}: blob {ref.root.hex()} expired at height {rec[1]}")


def _read_blob(state: State, ctx: Ctx, ref: BlobRef, what: str) -> bytes:
    """A recorded blob's bytes from this node's blob data (checked against its root on the
    way in; `check_available` made sure, before the fee, that this node holds it)."""
    _on_chain(state, ref, ctx.height, what)
    ctx.meter.charge(_kib(ref.size) * BLOB_READ_PER_KIB, f"reading {what}")
    return b"".join(_chunk(ctx, ref.root, i) for i in range(ref.chunks))


def _refs(state: State, action: int, body: list) -> list[BlobRef]:
    """The blobs a JOB action reads (for check_available); malformed fields are skipped
    (the action itself refuses them)."""
    refs: list[Any] = []
    job = get_job(state, body[0]) if body and type(body[0]) is int else None
    try:
        if action == POST and len(body) == 1:
            t = Terms.from_wire(body[0])
            refs += [] if t.private else [t.data]
        elif action == RESULT and len(body) == 5:
            refs.append(BlobRef.from_wire(body[1]))
        elif action in (CHALLENGE, FINALIZE) and job is not None and job.model is not None \
                and isinstance(job.terms, Terms):
            refs.append(job.model)
        elif action == INFER and len(body) == 1:
            t2 = InferTerms.from_wire(body[0])
            refs += [t2.model, t2.data]
        elif action == OUTPUT and len(body) == 2:
            refs.append(BlobRef.from_wire(body[1]))
        elif action == CONTEST and job is not None and isinstance(job.terms, InferTerms) and job.model is not None:
            refs += [job.terms.model, job.terms.data, job.model]
        elif action == SETTLE and len(body) == 3 and job is not None:
            refs.append(BlobRef.from_wire(body[1]))
            if body[2] is not None:
                refs.append(BlobRef.from_wire(body[2]))
            if isinstance(job.terms, Terms) and not job.terms.private:
                refs.append(job.terms.data)
    except (BlobError, JobFailure):
        pass
    return refs


def check_available(state: State, height: int, blobs: BlobSource, action: int, body: list) -> None:
    """Before the fee: every unexpired recorded blob the action reads is held by this node,
    else BlobUnavailable (the block is invalid to this node; a proposer leaves it out)."""
    for ref in _refs(state, action, body):
        rec = blob_records.record(state, ref.root)
        if rec is not None and rec[1] >= height and not blobs.has(ref):
            raise blob_records.BlobUnavailable(f"this node does not hold every chunk of blob {ref.root.hex()}")


def _checkpoint_of(terms: Terms, data: bytes, meter: Meter, what: str) -> tuple[Any, bytes]:
    """(params, velocity) decoded from a checkpoint blob's bytes, and their hash."""
    meter.charge(_kib(len(data)) * HASH_PER_KIB, f"hashing {what}")
    try:
        ck = _mljobs().decode_checkpoint(terms.arch(), data)
    except ValueError as e:
        raise JobFailure(f"{what} is not a checkpoint of {terms.kind} {list(terms.layers)}: {e}") from None
    return ck, sha256(data).digest()


def initial_hash(terms: Terms) -> bytes:
    """Leaf 0 of every honest trace: the hash of (init(arch, seed), zero velocity)."""
    jobs = _mljobs()
    return jobs.checkpoint_hash(terms.arch(), *jobs.initial_checkpoint(terms.arch(), terms.seed))


def segment_gas(terms: Terms) -> int:
    """Gas of re-executing one segment (k steps), at most: the mlcore training program (and its
    first use on chain), the data read, the two checkpoints decoded and hashed."""
    from mlcore import programs
    rows = terms.k * terms.batch
    ck = _mljobs().checkpoint_size(terms.arch())
    from mlcore.gas import ML_COMPILE
    return (JOB_ACTION + ML_COMPILE + programs.cost("train", terms.arch(), rows=rows, batch=terms.batch, epochs=1)
            + _kib(rows * terms.shape.row_bytes + terms.k * terms.data.chunk_bytes) * (BLOB_READ_PER_KIB + HASH_PER_KIB)
            + _kib(ck) * (BLOB_READ_PER_KIB + 2 * HASH_PER_KIB))


# ---- the actions ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ctx:
    """What an action may know: the block, the sender, the value it sent, the gas meter."""

    params: ChainParams
    height: int
    sender: bytes
    value: int
    blobs: BlobSource
    meter: Meter


def post(state: State, ctx: Ctx, body: list) -> dict:
    """[terms]: open a job; the reward (the transaction's value) is held until the job is final."""
    if len(body) != 1:
        raise JobFailure("post takes [terms]")
    terms = Terms.from_wire(body[0])
    _check_terms(state, ctx, terms)
    return _open(state, ctx, terms, "post")


def _open(state: State, ctx: Ctx, t: Terms | InferTerms, what: str) -> dict:
    """A new job with checked terms: the reward (the transaction's value) held, the next id."""
    if ctx.value != t.reward:
        raise JobFailure(f"{what} must send the reward as its value: {t.reward}, not {ctx.value}")
    _take(state, ctx.sender, t.reward, "the reward")
    next_id = get_record(state, JOB_PREFIX, b"next") or 0
    set_record(state, JOB_PREFIX, b"next", next_id + 1)
    job = Job(next_id, ctx.sender, t, OPEN)
    _put(state, job)
    _keep_data(state, ctx, job, ctx.height + t.work_blocks + t.window)
    return {"job": next_id}


def _check_terms(state: State, ctx: Ctx, t: Terms) -> None:
    s = t.shape
    if not (0 <= s.kind < 2**16 and 0 <= s.rows <= U64_MAX and 0 <= s.features < 2**32 and 0 <= s.width < 2**32):
        raise JobFailure("job terms: the data shape's fields are out of range")
    try:
        decode_header(s.encode())  # the data-set header rules (docs/jobs.md "Data sets")
        arch = t.arch().check()
        spec = t.spec()
        if t.shape.size != t.data.size:
            raise JobFailure(f"the data shape ({t.shape.rows} rows of {t.shape.row_bytes} bytes) is "
                             f"{t.shape.size} bytes, the data blob {t.data.size}")
        spec.check(t.shape.rows)
    except (ValueError, DatasetError) as e:
        raise JobFailure(f"job terms: {e}") from None
    if t.shape.features != arch.features:
        raise JobFailure(f"the data set has {t.shape.features} features, the model takes {arch.features}")
    if arch.classifier and (t.shape.kind, t.shape.width) != (KIND_CLASSES, 1):
        raise JobFailure("a classifier trains on class labels (data set kind 0)")
    if not arch.classifier and (t.shape.kind, t.shape.width) != (KIND_TARGETS, arch.outputs):
        raise JobFailure(f"a linear model trains on {arch.outputs} targets per row (data set kind 1)")
    need = segment_gas(t)
    if need > ctx.params.max_block_gas // 2:
        raise JobFailure(f"one segment of k={t.k} steps would cost {need} gas to re-execute, more than half a "
                         f"block ({ctx.params.max_block_gas // 2}): lower k")
    if not t.private:  # the data is on chain: its header must be the one declared
        _on_chain(state, t.data, ctx.height, "the data set")
        first = ctx.blobs.chunk(t.data.root, 0)
        try:
            if decode_header(first) != t.shape:
                raise JobFailure("the data blob's header is not the declared data shape")
        except DatasetError as e:
            raise JobFailure(f"the data blob is not a data set: {e}") from None


def _keep_data(state: State, ctx: Ctx, job: Job, until: int) -> None:
    """Public data (and the posted model) stay on every node while the job may need them."""
    if not job.terms.private:
        blob_records.keep_until(state, job.terms.data, until)
    if isinstance(job.terms, InferTerms):
        blob_records.keep_until(state, job.terms.model, until)
    if job.model is not None:
        blob_records.keep_until(state, job.model, until)


def _job(state: State, body: list, n: int, what: str) -> tuple[Job, list]:
    if len(body) != n or type(body[0]) is not int:
        raise JobFailure(f"{what} takes [job id{', ...' if n > 1 else ''}] ({n} fields)")
    job = get_job(state, body[0])
    if job is None:
        raise JobFailure(f"no job {body[0]}")
    return job, body[1:]


def _status(job: Job, *allowed: int) -> None:
    if job.status not in allowed:
        raise JobFailure(f"job {job.id} is {STATUS_NAMES[job.status]}")


def _training(job: Job) -> Terms:
    if not isinstance(job.terms, Terms):
        raise JobFailure(f"job {job.id} is an inference job (output, contest)")
    return job.terms


def _inference(job: Job) -> InferTerms:
    if not isinstance(job.terms, InferTerms):
        raise JobFailure(f"job {job.id} is a training job (result, challenge, move, settle)")
    return job.terms


def _no_value(ctx: Ctx, what: str) -> None:
    if ctx.value:
        raise JobFailure(f"{what} sends no value")


def claim(state: State, ctx: Ctx, body: list) -> dict:
    """[id]: take an open job; the bond (the value) is held until the job is final or lost."""
    job, _ = _job(state, body, 1, "claim")
    _status(job, OPEN)
    if ctx.value != job.terms.bond:
        raise JobFailure(f"claim must send the worker bond as its value: {job.terms.bond}, not {ctx.value}")
    _take(state, ctx.sender, job.terms.bond, "the worker bond")
    job = dataclasses.replace(job, status=CLAIMED, worker=ctx.sender, deadline=ctx.height + job.terms.work_blocks)
    _put(state, job)
    _keep_data(state, ctx, job, job.deadline + job.terms.window)
    return {"job": job.id, "deadline": job.deadline}


def _proof(w: Any, what: str) -> list[bytes]:
    if not (isinstance(w, list) and len(w) <= 64 and all(type(p) is bytes for p in w)):
        raise JobFailure(f"{what} must be a list of at most 64 hashes")
    return w


def _leaf(root: bytes, leaf: Any, index: int, count: int, proof: Any, what: str) -> bytes:
    """A trace leaf checked against its root; JobFailure if the proof does not hold."""
    if type(leaf) is not bytes or len(leaf) != 32:
        raise JobFailure(f"{what} must be a 32-byte hash")
    if not verify_merkle_proof(root, leaf, index, count, _proof(proof, f"the proof of {what}")):
        raise JobFailure(f"{what}: the proof of leaf {index} of {count} does not lead to the trace root")
    return leaf


def result(state: State, ctx: Ctx, body: list) -> dict:
    """[id, model, trace root, proof of leaf 0, proof of leaf m]: the worker's result.  The
    model blob must hash to leaf m, and leaf 0 must be the initial checkpoint's hash."""
    job, (model_w, trace, proof0, proof_m) = _job(state, body, 5, "result")
    _training(job)
    _status(job, CLAIMED)
    _no_value(ctx, "result")
    if ctx.sender != job.worker:
        raise JobFailure(f"only the worker of job {job.id} posts its result")
    if ctx.height > job.deadline:
        raise JobFailure(f"the result of job {job.id} was due by height {job.deadline}")
    if type(trace) is not bytes or len(trace) != 32:
        raise JobFailure("the trace root must be a 32-byte hash")
    model = _blob_ref(model_w, "model")
    t, m = job.terms, job.terms.segments
    _, h_m = _checkpoint_of(t, _read_blob(state, ctx, model, "the model"), ctx.meter, "the model")
    ctx.meter.charge(_init_gas(t), "the initial checkpoint")
    _leaf(trace, initial_hash(t), 0, m + 1, proof0, "leaf 0 (the initial checkpoint)")
    _leaf(trace, h_m, m, m + 1, proof_m, f"leaf {m} (the model)")
    job = dataclasses.replace(job, status=POSTED, model=model, trace=trace, posted_at=ctx.height,
                              deadline=ctx.height + t.window)
    _put(state, job)
    _keep_data(state, ctx, job, job.deadline + t.move_blocks * (m.bit_length() + 2))
    return {"job": job.id, "window_ends": job.deadline}


def _init_gas(t: Terms) -> int:
    from mlcore import programs
    return programs.cost("init", t.arch())


def challenge(state: State, ctx: Ctx, body: list) -> dict:
    """[id, trace root, leaf 0 proof, leaf m hash, its proof, probe hash, its proof]: contest
    a posted result with the challenger's own trace; the bond is the transaction's value."""
    job, (root, proof0, c_m, proof_m, c_probe, proof_probe) = _job(state, body, 7, "challenge")
    _training(job)
    _status(job, POSTED)
    t, m = job.terms, job.terms.segments
    if ctx.sender == job.worker:
        raise JobFailure("a worker cannot challenge its own result")
    if ctx.height > job.deadline:
        raise JobFailure(f"the challenge window of job {job.id} closed at height {job.deadline}")
    if ctx.value != t.bond:
        raise JobFailure(f"challenge must send the bond as its value: {t.bond}, not {ctx.value}")
    if type(root) is not bytes or len(root) != 32:
        raise JobFailure("the challenger's trace root must be a 32-byte hash")
    ctx.meter.charge(_init_gas(t), "the initial checkpoint")
    h0 = initial_hash(t)
    _leaf(root, h0, 0, m + 1, proof0, "leaf 0 (the initial checkpoint)")
    _, w_m = _checkpoint_of(t, _read_blob(state, ctx, job.model, "the model"), ctx.meter,
                            "the model")
    _leaf(root, c_m, m, m + 1, proof_m, f"leaf {m}")
    if c_m == w_m:
        raise JobFailure("the challenger's trace ends where the worker's does: nothing to dispute")
    _take(state, ctx.sender, t.bond, "the challenge bond")
    probe, probe_hash = -1, b""
    if m > 1:
        probe = m // 2
        probe_hash = _leaf(root, c_probe, probe, m + 1, proof_probe, f"leaf {probe}")
    d = Dispute(ctx.sender, root, 0, m, h0, w_m, c_m, probe, probe_hash, job.worker,
                ctx.height + t.move_blocks, 1)
    job = dataclasses.replace(job, status=DISPUTED, dispute=d, deadline=d.deadline)
    _put(state, job)
    _keep_data(state, ctx, job, d.deadline + t.move_blocks * (m.bit_length() + 2))
    return {"job": job.id, "lo": d.lo, "hi": d.hi, "probe": d.probe, "turn": d.turn, "deadline": d.deadline}


def move(state: State, ctx: Ctx, body: list) -> dict:
    """[id, hash at the probe, its proof, hash at the next probe, its proof]: the party on
    turn answers the probe with its own hash there, which halves the interval, and opens the
    next probe (the last two fields are ignored, and may be empty, when none is left)."""
    job, (h, proof, h_next, proof_next) = _job(state, body, 5, "move")
    _training(job)
    _status(job, DISPUTED)
    _no_value(ctx, "move")
    d, t, m = job.dispute, job.terms, job.terms.segments
    assert d is not None
    if d.probe < 0:
        raise JobFailure(f"the bisection of job {job.id} is over: the worker settles segment {d.lo}")
    if ctx.sender != d.turn:
        raise JobFailure(f"it is {d.turn.hex()}'s move in the dispute of job {job.id}")
    if ctx.height > d.deadline:
        raise JobFailure(f"the move was due by height {d.deadline}")
    by_worker = ctx.sender == job.worker
    root = job.trace if by_worker else d.root
    mine = _leaf(root, h, d.probe, m + 1, proof, f"leaf {d.probe}")
    worker_h, challenger_h = (mine, d.probe_hash) if by_worker else (d.probe_hash, mine)
    if worker_h == challenger_h:
        d = dataclasses.replace(d, lo=d.probe, lo_hash=worker_h)
    else:
        d = dataclasses.replace(d, hi=d.probe, worker_hi=worker_h, challenger_hi=challenger_h)
    other = d.challenger if by_worker else job.worker
    if d.hi - d.lo == 1:
        d = dataclasses.replace(d, probe=-1, probe_hash=b"", turn=job.worker)
    else:
        probe = (d.lo + d.hi) // 2
        d = dataclasses.replace(d, probe=probe, probe_hash=_leaf(root, h_next, probe, m + 1, proof_next,
                                                                 f"leaf {probe}"), turn=other)
    d = dataclasses.replace(d, deadline=ctx.height + t.move_blocks, moves=d.moves + 1)
    job = dataclasses.replace(job, dispute=d, deadline=d.deadline)
    _put(state, job)
    return {"job": job.id, "lo": d.lo, "hi": d.hi, "probe": d.probe, "turn": d.turn, "deadline": d.deadline}


def settle(state: State, ctx: Ctx, body: list) -> dict:
    """[id, checkpoint blob, revealed chunks blob or None]: re-execute segment lo from the
    agreed checkpoint and decide.  Anyone may send it; it is the worker's to send in time."""
    job, (ck_w, reveal_w) = _job(state, body, 3, "settle")
    _training(job)
    _status(job, DISPUTED)
    _no_value(ctx, "settle")
    d, t = job.dispute, job.terms
    assert d is not None
    if d.probe >= 0:
        raise JobFailure(f"the bisection of job {job.id} is not over: [{d.lo}, {d.hi}], probe {d.probe}")
    if ctx.height > d.deadline:
        raise JobFailure(f"the settle was due by height {d.deadline}")
    ck_ref = _blob_ref(ck_w, "checkpoint")
    (params, velocity), h_lo = _checkpoint_of(t, _read_blob(state, ctx, ck_ref, "the checkpoint"),
                                              ctx.meter, "the checkpoint")
    if h_lo != d.lo_hash:
        raise JobFailure(f"the checkpoint's hash is not the agreed hash at {d.lo}")
    x, y = _segment_data(state, ctx, job, d.lo, reveal_w)
    from mlcore import programs
    ctx.meter.charge(programs.cost("train", t.arch(), rows=t.k * t.batch, batch=t.batch, epochs=1),
                     f"re-executing segment {d.lo}")
    _register_program(state, ctx, t)
    jobs = _mljobs()
    p, v, _ = jobs.run_segment(t.arch(), params, velocity, x, y, t.lr, t.momentum, t.batch)
    h = jobs.checkpoint_hash(t.arch(), p, v)
    return _decide(state, ctx, job, worker_right=(h == d.worker_hi), challenger_right=(h == d.challenger_hi),
                   why=f"segment {d.lo} re-executed")


def vm_program_key(op: str, arch: Any, **dims: int) -> bytes:
    from vm import ml as vm_ml
    return vm_ml.program_key(op, arch, **dims)


def _register(state: State, ctx: Ctx, key: bytes) -> None:
    """A program pays ML_COMPILE on its first use on chain, as in a contract (vm/ml.py: one
    registry of programs, in SYSTEM_ADDRESS's storage)."""
    from mlcore.gas import ML_COMPILE
    from vm.ml import SYSTEM_ADDRESS
    ctx.meter.charge(STORAGE_READ + len(key) * STORAGE_PER_BYTE, "the program registry")
    if get_storage(state, SYSTEM_ADDRESS, key) is None:
        ctx.meter.charge(ML_COMPILE, "the first use on chain of the program")
        set_storage(state, SYSTEM_ADDRESS, key, encode_value(ctx.height, 16))


def _register_program(state: State, ctx: Ctx, t: Terms) -> None:
    _register(state, ctx, vm_program_key("train", t.arch(), rows=t.k * t.batch, batch=t.batch, epochs=1))


def _segment_data(state: State, ctx: Ctx, job: Job, segment: int, reveal_w: Any) -> tuple[Any, Any]:
    """The rows of a segment's batches in step order, read from the data set's chunks: this
    node's blob data (public) or the chunks revealed in a blob, each proved against the
    data set's root (private)."""
    t = job.terms
    idx = _mljobs().segment_rows(t.spec(), t.shape.rows, segment)
    batches = [int(b) // t.batch for b in idx[::t.batch]]
    need = sorted({c for b in batches for c in chunks_for_rows(t.shape, t.data, b * t.batch, (b + 1) * t.batch)})
    chunks: dict[int, bytes] = {}
    if t.private:
        if reveal_w is None:
            raise JobFailure("the data set is private: the settle must reveal the chunks of the segment's batches")
        reveal = _blob_ref(reveal_w, "reveal")
        raw = _read_blob(state, ctx, reveal, "the revealed chunks")
        try:
            items = decode(raw)
        except DecodeError as e:
            raise JobFailure(f"the revealed chunks are not canonical msgpack: {e}") from None
        if not isinstance(items, list):
            raise JobFailure("the revealed chunks are a list of [index, chunk, proof]")
        ctx.meter.charge(_kib(len(raw)) * HASH_PER_KIB, "checking the revealed chunks")
        for it in items:
            if not (isinstance(it, list) and len(it) == 3 and type(it[0]) is int and type(it[1]) is bytes):
                raise JobFailure("each revealed chunk is [index, chunk, proof]")
            try:
                check_chunk(t.data, it[0], it[1], _proof(it[2], "a chunk proof"))
            except BlobError as e:
                raise JobFailure(f"a revealed chunk: {e}") from None
            chunks[it[0]] = it[1]
    else:
        _on_chain(state, t.data, ctx.height, "the data set")
        ctx.meter.charge(len(need) * _kib(t.data.chunk_bytes) * BLOB_READ_PER_KIB, "reading the segment's data")
        for i in need:
            c = _chunk(ctx, t.data.root, i)
            chunks[i] = c
    import numpy as np
    xs, ys = [], []
    try:
        for b in batches:
            x, y = rows_from_chunks(t.shape, t.data, b * t.batch, (b + 1) * t.batch, chunks)
            xs.append(x)
            ys.append(y)
    except (BlobError, DatasetError) as e:
        raise JobFailure(f"the segment's data: {e}") from None
    return np.ascontiguousarray(np.concatenate(xs)), np.ascontiguousarray(np.concatenate(ys))


def _decide(state: State, ctx: Ctx, job: Job, worker_right: bool, challenger_right: bool, why: str) -> dict:
    """End a dispute.  The worker right: the challenger's bond is slashed (its share to the
    worker) and the window starts again.  The worker wrong: its bond is slashed (its share to
    the challenger if the challenger was right, else all burned, and the challenger's bond
    too), and the job is open again.  A right challenger gets its bond back."""
    d, t = job.dispute, job.terms
    assert d is not None
    if worker_right:
        paid = _slash(state, t.bond, job.worker)
        job = dataclasses.replace(job, status=POSTED, dispute=None, deadline=ctx.height + t.window)
        _put(state, job)
        _keep_data(state, ctx, job, job.deadline + t.move_blocks * (t.segments.bit_length() + 2))
        return {"job": job.id, "winner": "worker", "why": why, "paid": paid}
    if challenger_right:
        paid = _slash(state, t.bond, d.challenger)
        _give(state, d.challenger, t.bond)
    else:  # both wrong: both bonds burned
        paid = 0
    job = dataclasses.replace(job, status=OPEN, worker=b"", deadline=0, model=None, trace=b"", dispute=None,
                              posted_at=0, rounds=job.rounds + 1)
    _put(state, job)
    return {"job": job.id, "winner": "challenger" if challenger_right else "nobody", "why": why, "paid": paid}


def timeout(state: State, ctx: Ctx, body: list) -> dict:
    """[id]: a deadline passed.  A claimed job whose result never came is open again (the
    worker's bond: its share to the requester); in a dispute, the party on turn loses."""
    job, _ = _job(state, body, 1, "timeout")
    _status(job, CLAIMED, DISPUTED)
    _no_value(ctx, "timeout")
    if ctx.height <= job.deadline:
        raise JobFailure(f"job {job.id}'s deadline is height {job.deadline}; this is {ctx.height}")
    if job.status == CLAIMED:
        paid = _slash(state, job.terms.bond, job.requester)
        job = dataclasses.replace(job, status=OPEN, worker=b"", deadline=0, rounds=job.rounds + 1)
        _put(state, job)
        return {"job": job.id, "winner": "requester", "why": "no result in time", "paid": paid}
    d = job.dispute
    assert d is not None
    late = "worker" if d.turn == job.worker else "challenger"
    return _decide(state, ctx, job, worker_right=late == "challenger", challenger_right=late == "worker",
                   why=f"the {late} missed its deadline")


def finalize(state: State, ctx: Ctx, body: list) -> dict:
    """[id]: the window passed without a challenge standing: the worker is paid the reward
    and its bond, and the model becomes the job's (job_model; contracts: ml.job_model)."""
    job, _ = _job(state, body, 1, "finalize")
    _status(job, POSTED)
    _no_value(ctx, "finalize")
    if ctx.height <= job.deadline:
        raise JobFailure(f"the challenge window of job {job.id} is open until height {job.deadline}")
    assert job.model is not None
    if isinstance(job.terms, InferTerms):  # the outputs stay on every node for a retention window
        _on_chain(state, job.model, ctx.height, "the outputs")
        blob_records.keep_until(state, job.model, ctx.height + ctx.params.blob_retention_blocks)
        set_record(state, JOB_PREFIX, _name(job.id) + b"/output", job.model.to_wire())
    else:
        data = _read_blob(state, ctx, job.model, "the model")
        ctx.meter.charge(len(data) * MODEL_PER_BYTE, "keeping the model")
        set_record(state, JOB_PREFIX, _name(job.id) + b"/model", [job.terms.kind, list(job.terms.layers), data])
    _give(state, job.worker, job.terms.reward + job.terms.bond)
    job = dataclasses.replace(job, status=FINAL, deadline=0)
    _put(state, job)
    return {"job": job.id, "worker": job.worker, "paid": job.terms.reward}


def cancel(state: State, ctx: Ctx, body: list) -> dict:
    """[id]: the requester withdraws an open job and its reward."""
    job, _ = _job(state, body, 1, "cancel")
    _status(job, OPEN)
    _no_value(ctx, "cancel")
    if ctx.sender != job.requester:
        raise JobFailure("only the requester cancels a job")
    _give(state, job.requester, job.terms.reward)
    _put(state, dataclasses.replace(job, status=CANCELLED))
    return {"job": job.id}


# ---- inference jobs -------------------------------------------------------------------------

def infer(state: State, ctx: Ctx, body: list) -> dict:
    """[inference terms]: open an inference job; the reward (the value) is held until final."""
    if len(body) != 1:
        raise JobFailure("infer takes [inference terms]")
    t = InferTerms.from_wire(body[0])
    try:
        arch = t.arch().check()
        decode_header(t.shape.encode())
    except (ValueError, DatasetError) as e:
        raise JobFailure(f"inference terms: {e}") from None
    if t.shape.size != t.data.size or t.shape.features != arch.features:
        raise JobFailure(f"the data shape does not fit the input blob ({t.data.size} bytes) and the model "
                         f"({arch.features} features)")
    _on_chain(state, t.model, ctx.height, "the model")
    _on_chain(state, t.data, ctx.height, "the input data set")
    first = ctx.blobs.chunk(t.data.root, 0)
    try:
        if first is None or decode_header(first) != t.shape:
            raise JobFailure("the input blob's header is not the declared data shape")
    except DatasetError as e:
        raise JobFailure(f"the input blob is not a data set: {e}") from None
    need = contest_gas(t)
    if need > ctx.params.max_block_gas // 2:
        raise JobFailure(f"re-checking one segment of {t.segment_rows} rows would cost {need} gas, more than half a "
                         f"block ({ctx.params.max_block_gas // 2}): lower segment_rows")
    _model_of(state, ctx, t)  # the model blob must be a checkpoint of this architecture
    return _open(state, ctx, t, "infer")


def contest_gas(t: InferTerms) -> int:
    """Gas of re-checking one segment, at most: the predict program (and its first use on
    chain), the model, the segment's input and output chunks read."""
    from mlcore import programs
    from mlcore.gas import ML_COMPILE
    rows = t.segment_rows
    ck = _mljobs().checkpoint_size(t.arch())
    return (JOB_ACTION + ML_COMPILE + programs.cost("predict", t.arch(), rows=rows)
            + _kib(ck) * (BLOB_READ_PER_KIB + HASH_PER_KIB)
            + _kib(rows * (t.shape.row_bytes + 4 * t.width) + 2 * (t.data.chunk_bytes + (1 << 20)))
            * BLOB_READ_PER_KIB)


def _model_of(state: State, ctx: Ctx, t: InferTerms) -> Any:
    (params, _), _ = _checkpoint_of(t, _read_blob(state, ctx, t.model, "the model"), ctx.meter, "the model")  # type: ignore[arg-type]
    return params


def output(state: State, ctx: Ctx, body: list) -> dict:
    """[id, outputs blob]: the worker's outputs, every row's prediction; the window opens."""
    job, (out_w,) = _job(state, body, 2, "output")
    t = _inference(job)
    _status(job, CLAIMED)
    _no_value(ctx, "output")
    if ctx.sender != job.worker:
        raise JobFailure(f"only the worker of job {job.id} posts its outputs")
    if ctx.height > job.deadline:
        raise JobFailure(f"the outputs of job {job.id} were due by height {job.deadline}")
    out = _blob_ref(out_w, "outputs")
    _on_chain(state, out, ctx.height, "the outputs")
    want = 4 * t.width * t.shape.rows
    if out.size != want:
        raise JobFailure(f"the outputs of {t.shape.rows} rows are {want} bytes, not {out.size}")
    job = dataclasses.replace(job, status=POSTED, model=out, posted_at=ctx.height, deadline=ctx.height + t.window)
    _put(state, job)
    _keep_data(state, ctx, job, job.deadline + 1)
    return {"job": job.id, "window_ends": job.deadline}


def _blob_range(state: State, ctx: Ctx, ref: BlobRef, start: int, end: int) -> bytes:
    """Bytes [start, end) of a recorded blob, reading only the chunks that hold them."""
    cb = ref.chunk_bytes
    first, last = start // cb, (end - 1) // cb
    ctx.meter.charge((last - first + 1) * _kib(cb) * BLOB_READ_PER_KIB, "reading the outputs")
    parts = []
    for i in range(first, last + 1):
        c = _chunk(ctx, ref.root, i)
        parts.append(c)
    joined = b"".join(parts)
    return joined[start - first * cb:end - first * cb]


def contest(state: State, ctx: Ctx, body: list) -> dict:
    """[id, segment]: the chain predicts that segment's rows with the job's model and compares
    with the worker's outputs; the bond (the value) is the challenger's.  Decided at once."""
    job, (seg,) = _job(state, body, 2, "contest")
    t = _inference(job)
    _status(job, POSTED)
    if ctx.sender == job.worker:
        raise JobFailure("a worker cannot contest its own outputs")
    if ctx.height > job.deadline:
        raise JobFailure(f"the window of job {job.id} closed at height {job.deadline}")
    if type(seg) is not int or not 0 <= seg < t.segments:
        raise JobFailure(f"segment must be an integer in [0, {t.segments})")
    if ctx.value != t.bond:
        raise JobFailure(f"contest must send the bond as its value: {t.bond}, not {ctx.value}")
    assert job.model is not None
    _on_chain(state, job.model, ctx.height, "the outputs")
    _on_chain(state, t.data, ctx.height, "the input data set")
    lo, hi = seg * t.segment_rows, min((seg + 1) * t.segment_rows, t.shape.rows)
    need = chunks_for_rows(t.shape, t.data, lo, hi)
    ctx.meter.charge(len(need) * _kib(t.data.chunk_bytes) * BLOB_READ_PER_KIB, "reading the segment's input")
    chunks = {}
    for i in need:
        c = _chunk(ctx, t.data.root, i)
        chunks[i] = c
    x, _ = rows_from_chunks(t.shape, t.data, lo, hi, chunks)
    params = _model_of(state, ctx, t)
    from mlcore import programs
    ctx.meter.charge(programs.cost("predict", t.arch(), rows=hi - lo), f"predicting segment {seg}")
    _register(state, ctx, vm_program_key("predict", t.arch(), rows=hi - lo))
    import numpy as np
    mine = np.ascontiguousarray(programs.predict(t.arch(), params, x), dtype="<i4").tobytes()
    theirs = _blob_range(state, ctx, job.model, 4 * t.width * lo, 4 * t.width * hi)
    _take(state, ctx.sender, t.bond, "the contest bond")
    if mine == theirs:  # the worker was right: the challenger's bond is slashed, the window goes on
        paid = _slash(state, t.bond, job.worker)
        return {"job": job.id, "winner": "worker", "segment": seg, "paid": paid}
    paid = _slash(state, t.bond, ctx.sender)
    _give(state, ctx.sender, t.bond)
    job = dataclasses.replace(job, status=OPEN, worker=b"", deadline=0, model=None, posted_at=0, rounds=job.rounds + 1)
    _put(state, job)
    return {"job": job.id, "winner": "challenger", "segment": seg, "paid": paid}


ACTIONS = {POST: post, CLAIM: claim, RESULT: result, CHALLENGE: challenge, MOVE: move, SETTLE: settle,
           TIMEOUT: timeout, FINALIZE: finalize, CANCEL: cancel, INFER: infer, OUTPUT: output, CONTEST: contest}


def run(state: State, params: ChainParams, height: int, blobs: BlobSource, sender: bytes, action: int,
        body: list, value: int, gas_used: int, gas_limit: int) -> tuple[int, str, bytes]:
    """Run one JOB action: (gas used, the event's name, its data).  JobFailed if it cannot
    take effect (the transaction fails: fee kept, nothing else changed)."""
    meter = Meter(gas_used + JOB_ACTION, gas_limit)
    if meter.used > gas_limit:
        raise JobFailed(f"out of gas: a job action needs {meter.used} gas", gas_limit, "out_of_gas")
    ctx = Ctx(params, height, sender, value, blobs, meter)
    try:
        out = ACTIONS[action](state, ctx, body)
    except JobFailure as e:
        raise JobFailed(f"job {ACTION_NAMES[action]}: {e}", meter.used, "job_failed") from None
    return meter.used, f"Job{ACTION_NAMES[action].capitalize()}", encode_value(out, MAX_OUTPUT_BYTES)
