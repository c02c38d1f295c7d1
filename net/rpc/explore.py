"""Read-only methods the explorer page needs and no other method gives (docs/rpc.md
"Explorer reads"): the models and numeric series (loss histories) in a contract's storage,
and each validator's proposals and missed votes over recent blocks.  Both are bounded
scans, never a read proportional to the chain's height."""
from __future__ import annotations

from typing import Any

from ledger import staking
from ledger.keys import address_hex
from ledger.state import storage_key
from vm.codec import EXT_MODEL, decode_value
from vm.decimals import Decimal
from vm.errors import VMError
from vm.json_values import to_json
from vm.limits import MAX_STORAGE_KEY_BYTES, MAX_STORAGE_VALUE_BYTES
from vm.tensors import Model
from net.rpc.errors import NOT_FOUND, RpcError
from net.rpc.methods import Node, _contract_at, _state_at, method
from net.rpc.params import p_address, p_range

MAX_SCAN = 20_000           # storage entries one contract_models answer reads
MAX_POINTS = 10_000         # points of one series in an answer
MAX_MODELS = 32             # models in one answer
MAX_ACTIVITY_BLOCKS = 1_000  # blocks one validator_activity answer reads
_EXT_CODE_AT = {0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1, 0xC7: 2, 0xC8: 3, 0xC9: 5}  # vm/codec.py's ext headers


def _is_model(raw: bytes) -> bool:
    """Whether an encoded value is a Model, from its ext header alone (nothing decoded)."""
    at = _EXT_CODE_AT.get(raw[0]) if raw else None
    return at is not None and len(raw) > at and raw[at] == EXT_MODEL


def _series_key(k: Any) -> tuple[str, int] | None:
    """("name", i) with i >= 0: one point of a series such as ("loss", step)."""
    if type(k) is tuple and len(k) == 2 and type(k[0]) is str and type(k[1]) is int and k[1] >= 0:
        return k[0], k[1]
    return None


@method
async def m_contract_models(node: Node, contract: Any) -> dict:
    """The models stored in a contract (`storage[key]` holding a Model: key, kind, layers,
    parameter count) and its numeric series: keys ("name", i) whose values are numbers,
    grouped by name and sorted by i (what examples/ml_training.py keeps as ("loss", step)).
    Reads the latest state; at most MAX_SCAN entries (`truncated` says when more exist)."""
    addr = p_address(contract, "contract")
    store = node.chain.store
    tip = node.chain.tip
    prefix = storage_key(addr, b"")
    models: list[dict] = []
    series: dict[str, list[tuple[int, str]]] = {}
    scanned, truncated = 0, False
    with store.read() as r:
        _contract_at(r, tip.state_root, addr, tip.height)
        for skey, raw in r.state_prefix(prefix):
            if scanned == MAX_SCAN:
                truncated = True
                break
            scanned += 1
            try:
                k = decode_value(skey[len(prefix):], MAX_STORAGE_KEY_BYTES)
            except VMError:  # every stored key was encoded by the VM: never seen in practice
                continue
            point = _series_key(k)
            if point is not None:
                v = decode_value(raw, MAX_STORAGE_VALUE_BYTES) if len(raw) <= 64 else None
                if type(v) in (int, Decimal) and type(v) is not bool:
                    pts = series.setdefault(point[0], [])
                    if len(pts) < MAX_POINTS:
                        pts.append((point[1], str(v)))
                    else:
                        truncated = True
                continue
            if len(models) < MAX_MODELS and _is_model(raw):
                v = decode_value(raw, MAX_STORAGE_VALUE_BYTES)
                if type(v) is Model:
                    models.append({"key": to_json(k), "kind": v.kind, "layers": list(v.layers), "size": v.size})
    return {"contract": address_hex(addr), "height": tip.height, "models": models,
            "series": [{"name": name, "points": [[i, v] for i, v in sorted(pts)]}
                       for name, pts in sorted(series.items())],
            "scanned": scanned, "truncated": truncated}


@method
async def m_validator_activity(node: Node, blocks: Any = 100) -> dict:
    """Over the latest `blocks` blocks (1..MAX_ACTIVITY_BLOCKS): who proposed each height,
    and for each validator of the set that signed it, the blocks it proposed, signed and
    missed (its signature absent from the block's commit).  The tip's commit may not be
    stored yet: such a height counts for proposals only."""
    n = p_range(blocks, "blocks", 1, MAX_ACTIVITY_BLOCKS)
    store = node.chain.store
    tip = node.chain.tip.height
    lo = max(1, tip - n + 1)
    rows: dict[bytes, dict] = {}
    proposers: list[dict] = []
    sets: dict[bytes, tuple] = {}
    for h in range(lo, tip + 1):
        header = store.header(h)
        if header is None:  # pruned or not there: nothing of it to tell
            raise RpcError(NOT_FOUND, f"no block at height {h}")
        proposers.append({"height": h, "proposer": address_hex(header.proposer)})
        row = rows.setdefault(header.proposer, {"proposed": 0, "signed": 0, "missed": 0, "last_missed": None})
        row["proposed"] += 1
        commit = store.commit(h)
        if commit is None:
            continue
        vals = sets.get(header.validators_hash)
        if vals is None:
            vals = sets[header.validators_hash] = _signers_of(node, h)
        signed = {s.validator for s in commit.signatures}
        for address, _stake in vals:
            row = rows.setdefault(address, {"proposed": 0, "signed": 0, "missed": 0, "last_missed": None})
            if address in signed:
                row["signed"] += 1
            else:
                row["missed"] += 1
                row["last_missed"] = h
    return {"from_height": lo, "to_height": tip, "proposers": proposers,
            "validators": [{"address": address_hex(a), **row} for a, row in sorted(rows.items())]}


def _signers_of(node: Node, h: int) -> tuple:
    """(address, stake) of the set that signed block h (the set after block h, offset 0)."""
    with _state_at(node, h) as (state, _):
        vs = staking.validator_set(state, 0)
    return tuple((v.address, v.stake) for v in vs.validators)

