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

This module holds what every action shares: the records, the money, the reading of blobs, the
gas meter.  The actions are ledger/job_training.py and ledger/job_inference.py, dispatched by
ledger/job_run.py `run` (ledger/transition.py calls it).

Records, canonical msgpack under b"j": b"j" + b"next" -> the next job id; b"j" + id (8
bytes BE) -> the job (Job.to_wire); b"j" + id + b"/model" -> a final job's model.
"""
from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from ledger import blob_records
from ledger.blob_records import BlobSource
from ledger.blobs import BlobError, BlobRef
from ledger.datasets import DatasetHeader
from ledger.params import ChainParams
from ledger.state import (JOB_PREFIX, Account, State, get_account, get_record, get_storage, set_account, set_record,
                          set_storage)
from vm.gas import STORAGE_PER_BYTE, STORAGE_READ
from vm.codec import encode_value

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


def _from_worker_in_time(job: Job, ctx: Ctx, thing: str, was: str) -> None:
    """The worker's own posting of `thing` (its result, its outputs), by the job's deadline."""
    if ctx.sender != job.worker:
        raise JobFailure(f"only the worker of job {job.id} posts its {thing}")
    if ctx.height > job.deadline:
        raise JobFailure(f"the {thing} of job {job.id} {was} due by height {job.deadline}")


def _no_value(ctx: Ctx, what: str) -> None:
    if ctx.value:
        raise JobFailure(f"{what} sends no value")


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


# ---- inference jobs -------------------------------------------------------------------------


