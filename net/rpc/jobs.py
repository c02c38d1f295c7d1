"""The job methods (docs/rpc.md "Jobs"): a training job's terms and state, and a final job's
model.  Jobs themselves are changed only by JOB transactions (broadcast_tx)."""
from __future__ import annotations

from typing import Any

from ledger import jobs
from ledger.keys import address_hex
from ledger.state import JOB_PREFIX, get_record
from net.rpc.errors import NOT_FOUND, RpcError
from net.rpc.methods import Node, _height, _state_at, method
from net.rpc.params import _bad, p_int

MAX_LIST = 100  # jobs in one `jobs` answer


def _ref(ref: Any) -> dict | None:
    return None if ref is None else {"root": ref.root.hex(), "size": ref.size, "chunk_bytes": ref.chunk_bytes}


def _shape(s: Any) -> dict:
    return {"kind": s.kind, "rows": s.rows, "features": s.features, "width": s.width}


def _infer_terms(t: jobs.InferTerms) -> dict:
    return {"task": "infer", "kind": t.kind, "layers": list(t.layers), "model": _ref(t.model), "data": _ref(t.data),
            "data_shape": _shape(t.shape), "segment_rows": t.segment_rows, "segments": t.segments,
            "outputs_per_row": t.width, "private": False, "reward": t.reward, "bond": t.bond,
            "work_blocks": t.work_blocks, "window": t.window}


def _train_terms(t: jobs.Terms) -> dict:
    return {"task": "train", "kind": t.kind, "layers": list(t.layers), "seed": t.seed, "lr": t.lr,
            "momentum": t.momentum, "batch": t.batch, "steps": t.steps, "k": t.k, "segments": t.segments,
            "order_seed": t.order_seed, "data": _ref(t.data), "data_shape": _shape(t.shape), "private": t.private,
            "reward": t.reward, "bond": t.bond, "work_blocks": t.work_blocks, "window": t.window,
            "move_blocks": t.move_blocks}


def job_json(job: jobs.Job) -> dict:
    """A job as JSON; its result blob is "model" (training) or "outputs" (inference)."""
    t, d = job.terms, job.dispute
    infer = isinstance(t, jobs.InferTerms)
    out = {
        "id": job.id, "status": jobs.STATUS_NAMES[job.status], "requester": address_hex(job.requester),
        "terms": _infer_terms(t) if infer else _train_terms(t),  # type: ignore[arg-type]
        "worker": address_hex(job.worker) if job.worker else None, "deadline": job.deadline or None,
        "outputs" if infer else "model": _ref(job.model), "trace_root": job.trace.hex() or None,
        "posted_at": job.posted_at or None, "rounds": job.rounds, "dispute": None,
    }
    if d is not None:
        out["dispute"] = {"challenger": address_hex(d.challenger), "trace_root": d.root.hex(), "lo": d.lo, "hi": d.hi,
                          "lo_hash": d.lo_hash.hex(), "worker_hi": d.worker_hi.hex(),
                          "challenger_hi": d.challenger_hi.hex(), "probe": d.probe if d.probe >= 0 else None,
                          "probe_hash": d.probe_hash.hex() or None, "turn": address_hex(d.turn),
                          "deadline": d.deadline, "moves": d.moves}
    return out


def _job_id(v: Any) -> int:
    jid = p_int(v, "id")
    if not 0 <= jid < 2**64:
        raise _bad("id", "a job id, an integer from 0 to 2**64 - 1")
    return jid


@method
async def m_job(node: Node, id: Any, height: Any = None, model: Any = False) -> dict:  # noqa: A002 - the documented name
    """A job's terms and state after a block (default latest); with model=true, a final job's
    model as the hex of its mlcore.jobs checkpoint bytes."""
    jid = _job_id(id)
    if type(model) is not bool:
        raise _bad("model", "true or false")
    h = _height(node, height)
    with _state_at(node, h) as (state, _):
        job = jobs.get_job(state, jid)
        found = jobs.job_model(state, jid) if model and job is not None else None
    if job is None:
        raise RpcError(NOT_FOUND, f"no job {jid} at height {h}")
    out = job_json(job) | {"height": h}
    if model:
        out["model_checkpoint"] = None if found is None else found[2].hex()
    return out


@method
async def m_jobs(node: Node, status: Any = None, limit: Any = 20) -> dict:
    """The latest jobs (newest first), optionally only those with one status."""
    if status is not None and status not in jobs.STATUS_NAMES:
        raise _bad("status", f"one of {', '.join(jobs.STATUS_NAMES)}")
    n = p_int(limit, "limit")
    if not 1 <= n <= MAX_LIST:
        raise _bad("limit", f"an integer from 1 to {MAX_LIST}")
    out: list[dict] = []
    with _state_at(node, node.chain.tip.height) as (state, _):
        count = get_record(state, JOB_PREFIX, b"next") or 0
        for jid in range(count - 1, max(count - 1 - 10 * MAX_LIST, -1), -1):  # a bounded scan
            job = jobs.get_job(state, jid)
            if job is not None and (status is None or jobs.STATUS_NAMES[job.status] == status):
                out.append(job_json(job))
                if len(out) == n:
                    break
    return {"jobs": out, "count": count, "height": node.chain.tip.height}
