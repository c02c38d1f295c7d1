"""The devnet methods (docs/rpc.md "Devnet controls"): `mine` and the devnet_* controls
of consensus/devnet.py.

Each is refused with DEVNET_ONLY (-32010) on any chain that is not a one-validator devnet
(node.devnet_controls is None there), before its params are read.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ledger.devnet_dump import DUMP_VERSION
from ledger.keys import address_hex
from ledger.tx import U64_MAX
from consensus.devnet import MAX_TIME_MS, DevnetControls, DevnetError, UnknownSnapshot
from consensus.solo import MAX_MINE
from net.rpc.errors import DEVNET_ONLY, INVALID_PARAMS, NOT_FOUND, RpcError
from net.rpc.methods import Node, method
from net.rpc.params import p_address, p_range

APPLY_WAIT_S = 30.0  # at most this long a control waits for the block that holds its change (instant mode)


def _controls(node: Node, name: str) -> DevnetControls:
    controls = getattr(node, "devnet_controls", None)
    if controls is None:
        n = len(node.genesis.validators.validators)
        raise RpcError(DEVNET_ONLY, f"{name} is a devnet control: chain {node.chain.chain_id} (with {n} genesis "
                                    f"validator{'s' if n != 1 else ''}) is not a one-validator devnet",
                       {"chain_id": node.chain.chain_id, "validators": n})
    return controls


def _refused(e: DevnetError) -> RpcError:
    code = NOT_FOUND if isinstance(e, UnknownSnapshot) else INVALID_PARAMS
    return RpcError(code, str(e) if code == NOT_FOUND else f"invalid params: {e}")


async def _applied(c: DevnetControls, fut: asyncio.Future) -> int | None:
    """The height of the block that holds a queued change: awaited in instant mode (the
    block is made at once), None (pending) in interval and manual modes."""
    if c.engine.mining.mode != "instant":
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(fut), APPLY_WAIT_S)
    except asyncio.TimeoutError:
        return None
    except DevnetError as e:
        raise _refused(e) from None


@method
async def m_mine(node: Node, n: Any = 1) -> dict:
    """Make n blocks now (any mining mode), from what the mempool holds; their heights."""
    c = _controls(node, "mine")
    count = p_range(n, "n", 1, MAX_MINE)
    return {"heights": await c.engine.mine(count)}


@method
async def m_devnet_snapshot(node: Node) -> dict:
    c = _controls(node, "devnet_snapshot")
    sid, height = c.snapshot()
    return {"id": sid, "height": height}


@method
async def m_devnet_revert(node: Node, id: Any) -> dict:
    c = _controls(node, "devnet_revert")
    sid = p_range(id, "id", 1, U64_MAX)
    before = c.chain.tip.height
    try:
        height = c.revert(sid)
    except DevnetError as e:
        raise _refused(e) from None
    tip = c.chain.tip
    node.hub.publish_revert(tip, before - tip.height)
    return {"height": height, "block_hash": tip.hash.hex(), "state_root": tip.state_root.hex()}


@method
async def m_devnet_set_time(node: Node, time_ms: Any) -> dict:
    c = _controls(node, "devnet_set_time")
    t = p_range(time_ms, "time_ms", 0, MAX_TIME_MS)
    try:
        c.set_time(t)
    except DevnetError as e:
        raise _refused(e) from None
    return {"next_block_time_ms": c.next_time_ms()}


@method
async def m_devnet_increase_time(node: Node, ms: Any) -> dict:
    c = _controls(node, "devnet_increase_time")
    d = p_range(ms, "ms", 0, MAX_TIME_MS)
    try:
        return {"next_block_time_ms": c.increase_time(d)}
    except DevnetError as e:
        raise _refused(e) from None


@method
async def m_devnet_set_balance(node: Node, address: Any, amount: Any) -> dict:
    c = _controls(node, "devnet_set_balance")
    addr = p_address(address)
    value = p_range(amount, "amount", 0, U64_MAX)
    try:
        fut = c.set_balance(addr, value)
    except DevnetError as e:
        raise _refused(e) from None
    height = await _applied(c, fut)
    return {"address": address_hex(addr), "balance": value, "height": height, "pending": height is None}


@method
async def m_devnet_dump(node: Node) -> dict:
    c = _controls(node, "devnet_dump")
    try:
        return c.dump()
    except ValueError as e:  # over MAX_DUMP_ENTRIES
        raise RpcError(INVALID_PARAMS, f"cannot dump: {e}") from None


@method
async def m_devnet_load(node: Node, dump: Any) -> dict:
    c = _controls(node, "devnet_load")
    try:
        loaded, fut = c.load(dump)
    except DevnetError as e:
        raise _refused(e) from None
    height = await _applied(c, fut)
    return {"version": loaded.version, "current_version": DUMP_VERSION, "entries": len(loaded.entries),
            "height": height, "pending": height is None}
