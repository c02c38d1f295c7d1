"""A batch: answered one request at a time under its Budget (work, reply bytes, commit
wait), yielding to the event loop after each; its broadcast_tx calls are admitted as one
group, so their signatures are checked in one parallel batch."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ledger import errors
from net.rpc.dispatch import _answer_id, _call, _is_notification
from net.rpc.errors import BATCH_LIMIT, RpcError, rejected
from net.rpc.jsonio import _dumps
from net.rpc.limits import MAX_BATCH_WORK, MAX_COMMIT_WAIT, MAX_REPLY_BYTES, WORK
from net.rpc.methods import Node, _is_timeout
from net.rpc.params import p_hex


def _commit_timeout(params: Any) -> float:
    """The wait a broadcast_tx_commit call asks for (0 where its params are invalid: the
    method refuses those itself)."""
    t = params[1] if isinstance(params, list) and len(params) > 1 else \
        params.get("timeout", 30) if isinstance(params, dict) else 30
    return t if _is_timeout(t) else 0


@dataclass
class Budget:
    """What the rest of one batch may spend: work units (WORK), answer bytes and seconds of
    broadcast_tx_commit waits.  Once one is spent, the rest of the batch is answered -32004."""

    work: int = MAX_BATCH_WORK
    reply: int = MAX_REPLY_BYTES
    wait: float = MAX_COMMIT_WAIT
    spent: RpcError | None = None

    def _stop(self, limit: str, most: float) -> RpcError:
        self.spent = RpcError(BATCH_LIMIT, f"batch limit reached: the batch's {limit.replace('_', ' ')} "
                              f"(at most {most:g}) is spent; this and the later requests were not run: send "
                              "them in another batch", {"limit": limit, "max": most})
        return self.spent

    def charge(self, req: Any) -> RpcError | None:
        """Take req's work (and commit wait) from the budget, or say which bound it passes."""
        if self.spent is not None:
            return self.spent
        name = req.get("method") if isinstance(req, dict) else None
        self.work -= WORK.get(name, 1) if type(name) is str else 1
        if self.work < 0:
            return self._stop("work", MAX_BATCH_WORK)
        if name == "broadcast_tx_commit":
            self.wait -= _commit_timeout(req.get("params"))
            if self.wait < 0:
                return self._stop("commit_wait", MAX_COMMIT_WAIT)
        return None

    def take_reply(self, n: int) -> RpcError | None:
        if self.spent is None and n > self.reply:
            return self._stop("reply_bytes", MAX_REPLY_BYTES)
        self.reply -= n
        return self.spent


def _group_tx(req: Any) -> bytes | None:
    """The transaction of a broadcast_tx request that can join the batch's admission group."""
    if not (isinstance(req, dict) and req.get("jsonrpc") == "2.0" and req.get("method") == "broadcast_tx"
            and type(req.get("id")) in (int, str)):
        return None
    p = req.get("params")
    tx = p[0] if isinstance(p, list) and len(p) == 1 else p.get("tx") if isinstance(p, dict) and len(p) == 1 else None
    try:
        return p_hex(tx, "tx")
    except RpcError:
        return None


GROUP_ANSWER_BYTES = 512  # reserved per broadcast_tx of the group: its hash or rejection, beside its id


async def _batch(node: Node, reqs: list) -> list[str]:
    """Answer a batch as JSON texts, one request at a time, yielding to the event loop after
    each so that other clients are served in between; its broadcast_tx calls are admitted
    as one group at the end."""
    budget = Budget()
    out: list[str | None] = [None] * len(reqs)
    group: list[tuple[int, Any, bytes]] = []
    for i, req in enumerate(reqs):
        over = budget.charge(req)
        raw = None if over else _group_tx(req)
        if raw is not None:
            over = budget.take_reply(len(_dumps(req["id"])) + GROUP_ANSWER_BYTES)
            if over is None:
                group.append((i, req["id"], raw))
                continue
        answer = {"jsonrpc": "2.0", "id": _answer_id(req), "error": over.to_json()} if over else await _call(node, req)
        if answer is not None and not _is_notification(req):
            text = _dumps(answer)
            over = None if over else budget.take_reply(len(text))
            out[i] = _dumps({"jsonrpc": "2.0", "id": _answer_id(req), "error": over.to_json()}) if over else text
        await asyncio.sleep(0)
    if group:
        results = await node.admission.admit([raw for _, _, raw in group])
        for (i, rid, _), res in zip(group, results):
            if isinstance(res, errors.LedgerError):
                out[i] = _dumps({"jsonrpc": "2.0", "id": rid, "error": rejected(res).to_json()})
            else:
                out[i] = _dumps({"jsonrpc": "2.0", "id": rid, "result": {"hash": res.hex()}})
    return [r for r in out if r is not None]
