"""The actions of a training job (docs/jobs.md): post, claim, result, challenge, the bisection's
moves, the settle that re-executes one segment with mlcore, timeout, finalize, cancel.

Each is `action(state, ctx, body) -> event data`, raising JobFailure; ledger/job_run.py
dispatches them.  The records, money and blob reading they share are ledger/jobs.py's."""
from __future__ import annotations

import dataclasses
from typing import Any

from ledger import blob_records
from ledger.blobs import BlobError, check_chunk
from ledger.datasets import KIND_CLASSES, KIND_TARGETS, DatasetError, chunks_for_rows, decode_header, rows_from_chunks
from ledger.encoding import DecodeError, decode
from ledger.jobs import (BLOB_READ_PER_KIB, CANCELLED, CLAIMED, Ctx, Dispute, DISPUTED, FINAL, HASH_PER_KIB,
    InferTerms, initial_hash, Job, JobFailure, MODEL_PER_BYTE, OPEN, POSTED, segment_gas, Terms, U64_MAX,
    vm_program_key, _blob_ref, _checkpoint_of, _chunk, _from_worker_in_time, _give, _job, _keep_data, _kib, _mljobs,
    _name, _no_value, _on_chain, _open, _put, _read_blob, _register, _slash, _status, _take, _training)
from ledger.merkle import verify_merkle_proof
from ledger.state import JOB_PREFIX, State, set_record


def post(state: State, ctx: Ctx, body: list) -> dict:
    """[terms]: open a job; the reward (the transaction's value) is held until the job is final."""
    if len(body) != 1:
        raise JobFailure("post takes [terms]")
    terms = Terms.from_wire(body[0])
    _check_terms(state, ctx, terms)
    return _open(state, ctx, terms, "post")


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
    _from_worker_in_time(job, ctx, "result", "was")
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
