"""The actions of an inference job (docs/jobs.md "Inference jobs"): infer opens one, output
posts every row's prediction, contest re-predicts one segment on chain and decides at once.

Each is `action(state, ctx, body) -> event data`, raising JobFailure; ledger/job_run.py
dispatches them."""
from __future__ import annotations

import dataclasses
from typing import Any

from ledger.blobs import BlobRef
from ledger.datasets import DatasetError, chunks_for_rows, decode_header, rows_from_chunks
from ledger.jobs import (BLOB_READ_PER_KIB, CLAIMED, Ctx, HASH_PER_KIB, InferTerms, JOB_ACTION, JobFailure, OPEN,
    POSTED, vm_program_key, _blob_ref, _checkpoint_of, _chunk, _from_worker_in_time, _give, _inference, _job,
    _keep_data, _kib, _mljobs, _no_value, _on_chain, _open, _put, _read_blob, _register, _slash, _status, _take)
from ledger.state import State


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
    _from_worker_in_time(job, ctx, "outputs", "were")
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
