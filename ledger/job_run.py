"""One JOB transaction's action, dispatched (ledger/transition.py calls `run`): the action's
gas meter opened, its JobFailure turned into JobFailed, its event named."""
from __future__ import annotations

from ledger.blob_records import BlobSource
from ledger.job_inference import (contest, infer, output)
from ledger.job_training import (cancel, challenge, claim, finalize, move, post, result, settle, timeout)
from ledger.jobs import (ACTION_NAMES, CANCEL, CHALLENGE, CLAIM, CONTEST, Ctx, FINALIZE, INFER, JOB_ACTION, JobFailed,
    JobFailure, Meter, MOVE, OUTPUT, POST, RESULT, SETTLE, TIMEOUT)
from ledger.params import ChainParams
from ledger.state import State
from vm.codec import encode_value
from vm.limits import MAX_OUTPUT_BYTES


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
