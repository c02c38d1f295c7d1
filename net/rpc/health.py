"""GET /health: 200 while the node is making progress, 503 with the reasons when it is not.

The rules (docs/rpc.md "Metrics and health") are pure functions of what the node holds now,
so a load balancer or a test reads one answer, never a guess from past answers.
"""
from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ledger.keys import address_of
from net.rpc.jsonio import _dumps
from net.rpc.metrics import NodeMetrics

SOLO_STALL_MIN_S = 10.0   # a devnet that should make blocks: no block for 10 s + 5 block times
SOLO_STALL_BLOCKS = 5
BEHIND_BLOCKS = 10        # a peer claims a height more than this above our tip: syncing far behind


def solo_bound(block_time: float) -> float:
    return SOLO_STALL_MIN_S + SOLO_STALL_BLOCKS * block_time


def reasons(node: Any, metrics: NodeMetrics, now: float) -> list[str]:
    """Why the node is not making progress (empty: healthy)."""
    out: list[str] = []
    tip = node.chain.tip
    if node.admission.refusal is not None:
        out.append(f"storage full: {node.admission.refusal}")
    engine = node.engine
    if getattr(node, "bft", False):
        started = engine is not None and engine.started  # the engine is built once p2p starts
        if not started:
            out.append(f"not started: waiting for peers or catching up by block sync (tip {tip.height})")
        sync = getattr(node, "sync", None)
        if sync is not None and sync.target - tip.height > BEHIND_BLOCKS:
            out.append(f"syncing: tip {tip.height} is {sync.target - tip.height} blocks behind a peer's "
                       f"{sync.target} (more than {BEHIND_BLOCKS})")
        p2p = getattr(node, "p2p", None)
        vset = node.chain.validator_set(tip.height + 1)
        linked = {address_of(k) for k in (p2p.peers if p2p is not None else [])} | {node.key.address}
        stake = sum(v.stake for v in vset.validators if v.address in linked)
        if not vset.has_quorum(stake):
            out.append(f"no quorum of peers: this node and its connected validators hold {stake} of "
                       f"{vset.total_stake} stake; more than 2/3 is needed")
        stall = engine.stall() if started else None
        if stall is not None:
            out.append(f"stalled: height {stall.height} undecided since {stall.since_ms // 1000} "
                       f"(round {stall.round})")
        return out
    mining = getattr(engine, "mining", None)
    mode = mining.mode if mining is not None else "instant"
    empty = mining.empty_blocks if mining is not None else True
    waiting = len(node.mempool) > 0
    if waiting and (metrics.waiting_since is None or metrics.waiting_since < metrics.last_commit):
        metrics.waiting_since = now  # without empty blocks, idle time before work arrived is no stall
    if mode != "manual" and (empty or waiting):
        bound = solo_bound(engine.block_time)
        age = now - (metrics.last_commit if empty else max(metrics.last_commit, metrics.waiting_since or 0.0))
        if age > bound:
            out.append(f"stalled: no block committed for {age:.0f} s (bound {bound:g} s"
                       + (f", {len(node.mempool)} transactions waiting)" if waiting else ")"))
    return out


def add_routes(app: web.Application, node: Any, metrics: NodeMetrics, guarded: Any) -> None:
    async def get_health(request: web.Request) -> web.Response:
        now = time.monotonic()
        why = reasons(node, metrics, now)
        tip = node.chain.tip
        p2p = getattr(node, "p2p", None)
        body = {"status": "unhealthy" if why else "ok", "reasons": why, "height": tip.height,
                "last_commit_age_s": round(now - metrics.last_commit, 3),
                "peers": len(p2p.peers) if p2p is not None else 0}
        return web.Response(text=_dumps(body), status=503 if why else 200, content_type="application/json")
    app.router.add_get("/health", guarded(get_health))
