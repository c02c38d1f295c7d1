"""Subscriptions (docs/rpc.md "Subscriptions"): what a WebSocket client may watch, and the Hub
the commit path publishes each block to.

Publishing must never block block production nor grow the node's memory: each item is
encoded once (and only when some subscription wants it), handed to the subscriptions whose
filter matches (found through an index by address, not by scanning them all), and put on
its connection's bounded Sink.  A Sink over its bound of messages or bytes is dropped: its
queue is freed at once and its connection closed with WS_SLOW (net/rpc/ws.py)."""
from __future__ import annotations

import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ledger import jobs
from ledger.block import Block, Header, Receipt
from ledger.encoding import decode
from ledger.keys import address_hex
from ledger.state import JOB_PREFIX
from ledger.transition import BlockOutput
from ledger.tx import Transaction, TxKind, contract_address
from net.rpc.errors import INVALID_PARAMS, RpcError
from net.rpc.jobs import job_json
from net.rpc.jsonio import _dumps
from net.rpc.params import p_address
from net.rpc.views import event_json, header_json

KINDS = ("blocks", "txs", "events", "jobs")
TX_KINDS = {k.name.lower(): int(k) for k in TxKind}
KIND_NAMES = {v: k for k, v in TX_KINDS.items()}
MAX_FILTER_BYTES = 1024  # a filter's JSON text
MAX_EVENT_NAME = 64      # characters of an event name in a filter

# WebSocket close codes the node sends (RFC 6455 section 7.4)
WS_GOING_AWAY = 1001     # the node shuts down
WS_UNSUPPORTED = 1003    # a binary frame: the protocol is JSON text
WS_TOO_BIG = 1009        # a message over the size bound (aiohttp closes with it)
WS_SLOW = 4000           # a slow subscriber: its send queue went over its bound
WS_BUSY = 4001           # refused at once: too many WebSocket connections (never upgraded: HTTP 503)


@dataclass(frozen=True)
class WsLimits:
    """What one WebSocket client may hold of the node (node.py's --ws-* flags)."""

    max_connections: int = 128       # open WebSocket connections, all clients together
    max_subscriptions: int = 32      # per connection
    queue_messages: int = 20_000     # messages waiting to be sent on one connection (a full block's txs fit)
    queue_bytes: int = 8 << 20       # their bytes (bodies are shared between connections)
    close_grace: float = 10.0        # s a dropped connection has to take its close frame


# ---- filters: checked before anything is stored ------------------------------------------

@dataclass(frozen=True)
class TxFilter:
    sender: bytes | None = None
    recipient: bytes | None = None   # a transfer's `to`
    contract: bytes | None = None    # the contract a CALL runs or a DEPLOY creates
    kind: int | None = None

    def matches(self, tx: Transaction) -> bool:
        return (self.sender is None or tx.sender_address == self.sender) \
            and (self.recipient is None or _recipient(tx) == self.recipient) \
            and (self.contract is None or _contract(tx) == self.contract) \
            and (self.kind is None or tx.kind == self.kind)


@dataclass(frozen=True)
class EventFilter:
    contract: bytes | None = None
    name: str | None = None

    def matches(self, e: tuple) -> bool:
        return (self.contract is None or e[0] == self.contract) and (self.name is None or e[1] == self.name)


@dataclass(frozen=True)
class JobFilter:
    id: int | None = None
    requester: bytes | None = None
    worker: bytes | None = None

    def matches(self, job: jobs.Job) -> bool:
        return (self.id is None or job.id == self.id) and (self.requester is None or job.requester == self.requester) \
            and (self.worker is None or job.worker == self.worker)


Filter = TxFilter | EventFilter | JobFilter | None
FILTER_KEYS = {"blocks": (), "txs": ("sender", "recipient", "contract", "kind"), "events": ("contract", "name"),
               "jobs": ("id", "requester", "worker")}


def _bad(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, "invalid params: " + message)


def parse_filter(kind: Any, raw: Any) -> Filter:
    """The filter of `subscribe(kind, filter)`, or -32602 saying what is wrong."""
    if kind not in KINDS:
        shown = kind if isinstance(kind, str) and len(kind) <= 32 else type(kind).__name__
        raise _bad(f"unknown subscription kind {shown!r}: one of {', '.join(KINDS)}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad("filter must be an object (or null)")
    if len(_dumps(raw)) > MAX_FILTER_BYTES:
        raise _bad(f"filter is over {MAX_FILTER_BYTES} bytes of JSON")
    allowed = FILTER_KEYS[kind]
    unknown = sorted(k for k in raw if k not in allowed)
    if unknown:
        keys = ", ".join(allowed) if allowed else "none: give {} or null"
        raise _bad(f"{kind} filter has no field {unknown[0]!r} (fields: {keys})")
    addr = {k: p_address(v, f"filter.{k}") for k, v in raw.items() if k in ("sender", "recipient", "contract",
                                                                          "requester", "worker")}
    if kind == "blocks":
        return None
    if kind == "txs":
        k = raw.get("kind")
        if k is not None and k not in TX_KINDS:
            raise _bad(f"filter.kind must be one of {', '.join(TX_KINDS)}")
        return TxFilter(addr.get("sender"), addr.get("recipient"), addr.get("contract"), TX_KINDS.get(k))
    if kind == "events":
        name = raw.get("name")
        if name is not None and (type(name) is not str or not 0 < len(name) <= MAX_EVENT_NAME):
            raise _bad(f"filter.name must be an event name (a string of 1 to {MAX_EVENT_NAME} characters)")
        return EventFilter(addr.get("contract"), name)
    jid = raw.get("id")
    if jid is not None and (type(jid) is not int or not 0 <= jid < 2**64):
        raise _bad("filter.id must be a job id, an integer from 0 to 2**64 - 1")
    return JobFilter(jid, addr.get("requester"), addr.get("worker"))


# ---- what a connection is sent -------------------------------------------------------------

@dataclass
class Sink:
    """One connection's bounded send queue: (subscription id, encoded body) pairs, or (None,
    a whole message) for answers.  put() never blocks; over the bound the Sink is dropped."""

    limits: WsLimits
    on_drop: Callable[[str], None] = lambda reason: None
    queue: deque = field(default_factory=deque)
    bytes: int = 0
    dropped: str | None = None  # why, once dropped
    wake: Callable[[], None] = lambda: None

    def put(self, sid: str | None, body: str) -> None:
        if self.dropped is not None:
            return
        if len(self.queue) >= self.limits.queue_messages or self.bytes + len(body) > self.limits.queue_bytes:
            self.drop(f"slow subscriber: over {self.limits.queue_messages} messages or {self.limits.queue_bytes} "
                      "bytes waiting to be sent; read faster or filter more")
            return
        self.queue.append((sid, body))
        self.bytes += len(body)
        self.wake()

    def take(self) -> tuple[str | None, str]:
        sid, body = self.queue.popleft()
        self.bytes -= len(body)
        return sid, body

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self.queue.clear()
        self.bytes = 0
        self.on_drop(reason)


def frame(sid: str | None, body: str) -> str:
    """The text sent for one queue entry: an answer as it is, a notification around its body."""
    if sid is None:
        return body
    return '{"jsonrpc":"2.0","method":"subscription","params":{"subscription":"' + sid + '","result":' + body + "}}"


@dataclass(eq=False)
class Subscription:
    id: str
    kind: str
    filter: Filter
    sink: Sink


# ---- the items, as JSON ----------------------------------------------------------------------

def _recipient(tx: Transaction) -> bytes | None:
    return tx.payload.to if tx.kind == TxKind.TRANSFER else None


def _contract(tx: Transaction) -> bytes | None:
    if tx.kind == TxKind.CALL:
        return tx.payload.contract
    if tx.kind == TxKind.DEPLOY:
        return contract_address(tx.sender_address, tx.nonce)
    return None


def block_item(block: Block, output: BlockOutput) -> dict:
    return header_json(block.header) | {"tx_count": len(block.txs), "gas_used": output.gas_used}


def tx_item(tx: Transaction, r: Receipt, height: int, index: int) -> dict:
    """One committed transaction with its receipt's summary (`tx` has the rest)."""
    to, contract = _recipient(tx), _contract(tx)
    out = {"hash": tx.hash.hex(), "height": height, "index": index, "from": address_hex(tx.sender_address),
           "nonce": tx.nonce, "kind": KIND_NAMES[tx.kind], "to": address_hex(to) if to else None,
           "contract": address_hex(contract) if contract else None, "value": tx.value,
           "status": "success" if r.status else "failed", "gas_used": r.gas_used, "error": r.error or None,
           "failure": None, "events": len(r.events)}
    if r.failure:
        code, where, function, line = r.failure
        out["failure"] = {"code": code, "contract": address_hex(where) if where else None,
                          "function": function or None, "line": line or None}
    return out


_TX_TEXT = ('{"hash":"%s","height":%d,"index":%d,"from":"0x%s","nonce":%d,"kind":"%s","to":%s,"contract":%s,'
            '"value":%d,"status":"%s","gas_used":%d,"error":null,"failure":null,"events":%d}')


def tx_text(tx: Transaction, r: Receipt, height: int, index: int) -> str:
    """tx_item as JSON text: a transaction without an error filled in a template (hex and ints
    need no escaping; a third of json.dumps' cost on the commit path), any other through _plain."""
    if r.error or r.failure:
        return _plain(tx_item(tx, r, height, index))
    to, contract = _recipient(tx), _contract(tx)
    return _TX_TEXT % (tx.hash.hex(), height, index, tx.sender_address.hex(), tx.nonce, KIND_NAMES[tx.kind],
                       '"0x%s"' % to.hex() if to else "null", '"0x%s"' % contract.hex() if contract else "null",
                       tx.value, "success" if r.status else "failed", r.gas_used, len(r.events))


def _plain(item: dict) -> str:
    """A block's or a transaction's item as JSON: its ints are heights, gas and u64 amounts, far
    below any host's digit limit, so json.dumps needs no vm.host.pinned() (a third of the cost)."""
    return _PLAIN(item)


_PLAIN = json.JSONEncoder(separators=(",", ":")).encode


def _changed_jobs(changes: dict[bytes, bytes | None]) -> list[jobs.Job]:
    """The jobs whose record a block wrote, by id."""
    out = []
    for key, value in changes.items():
        if len(key) == 9 and key[:1] == JOB_PREFIX and value is not None:
            out.append(jobs.Job.from_wire(decode(value)))
    return sorted(out, key=lambda j: j.id)


# ---- the hub -----------------------------------------------------------------------------------

@dataclass
class _Index:
    """Subscriptions of one kind, each held once: under the first address its filter names
    (by_field[i][address]), else in `any`."""

    fields: tuple[str, ...]
    by_field: list[dict[bytes, dict[str, Subscription]]] = field(default_factory=list)
    any: dict[str, Subscription] = field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        self.by_field = [{} for _ in self.fields]

    def _place(self, sub: Subscription) -> tuple[int, bytes | None]:
        """(field index, address) of sub's bucket; (-1, None) for `any`."""
        for i, name in enumerate(self.fields):
            a = getattr(sub.filter, name, None)
            if a is not None:
                return i, a
        return -1, None

    def add(self, sub: Subscription) -> None:
        i, a = self._place(sub)
        bucket = self.any if a is None else self.by_field[i].setdefault(a, {})
        bucket[sub.id] = sub
        self.count += 1

    def remove(self, sub: Subscription) -> None:
        i, a = self._place(sub)
        bucket = self.any if a is None else self.by_field[i].get(a, {})
        if bucket.pop(sub.id, None) is not None:
            self.count -= 1
            if a is not None and not bucket:
                del self.by_field[i][a]

    def candidates(self, *addresses: bytes | None) -> list[Subscription]:
        out = list(self.any.values())
        for d, a in zip(self.by_field, addresses):
            if a is not None:
                b = d.get(a)
                if b:
                    out.extend(b.values())
        return out


class Hub:
    """Every subscription of every connection; publish_block() is called once per committed block."""

    def __init__(self, limits: WsLimits = WsLimits()):
        self.limits = limits
        self.subs: dict[str, Subscription] = {}
        self.connections = 0
        self.index = {"blocks": _Index(()), "txs": _Index(("sender", "recipient", "contract")),
                      "events": _Index(("contract",)), "jobs": _Index(())}
        self.published = 0  # notifications queued, all connections together

    def subscribe(self, sink: Sink, kind: str, flt: Filter, held: int) -> str:
        """A new subscription of `sink`'s connection (which holds `held` already): its id."""
        if held >= self.limits.max_subscriptions:
            raise RpcError(INVALID_PARAMS, f"invalid params: this connection holds {held} subscriptions, the most "
                                           "one may: unsubscribe one first")
        sub = Subscription("0x" + secrets.token_hex(8), kind, flt, sink)
        self.subs[sub.id] = sub
        self.index[kind].add(sub)
        return sub.id

    def unsubscribe(self, sid: str, sink: Sink) -> bool:
        """Remove a subscription of this connection; False where it holds none with this id."""
        sub = self.subs.get(sid)
        if sub is None or sub.sink is not sink:
            return False
        del self.subs[sid]
        self.index[sub.kind].remove(sub)
        return True

    def publish_block(self, block: Block, output: BlockOutput) -> None:
        """Queue the notifications of one committed block: its header, its transactions, their
        events and the jobs it changed, in that order and in chain order.  Never blocks."""
        ix = self.index
        height = block.height
        if ix["blocks"].count:
            self._fan(ix["blocks"].candidates(), _plain(block_item(block, output)), None)
        if ix["txs"].count:
            for i, (tx, r) in enumerate(zip(block.txs, output.receipts)):
                cands = ix["txs"].candidates(tx.sender_address, _recipient(tx), _contract(tx))
                if cands:
                    self._fan(cands, lambda tx=tx, r=r, i=i: tx_text(tx, r, height, i), tx)
        if ix["events"].count:
            for i, (tx, r) in enumerate(zip(block.txs, output.receipts)):
                for j, e in enumerate(r.events):
                    cands = ix["events"].candidates(e[0])
                    if cands:
                        self._fan(cands, lambda e=e, j=j, tx=tx, i=i: {"height": height, "tx_hash": tx.hash.hex(),
                                                                       "tx_index": i, **event_json(e, j)}, e)
        if ix["jobs"].count:
            for job in _changed_jobs(output.changes):
                self._fan(ix["jobs"].candidates(), lambda job=job: job_json(job) | {"height": height}, job)

    def publish_revert(self, tip: Header, removed: int) -> None:
        """A devnet revert took the chain back to `tip`: every block subscriber is told once, so
        a client that follows heights is not left on blocks that no longer exist."""
        if self.index["blocks"].count and removed:
            self._fan(self.index["blocks"].candidates(),
                      _plain(header_json(tip) | {"reverted": True, "removed_blocks": removed}), None)

    def _fan(self, cands: list[Subscription], body: Any, item: Any) -> None:
        """Put one item on every candidate whose filter matches; body (its text, or a function
        making the item or its text) is made at most once."""
        text: str | None = body if isinstance(body, str) else None
        for sub in cands:
            if sub.filter is not None and not sub.filter.matches(item):
                continue
            if text is None:
                made = body()
                text = made if isinstance(made, str) else _dumps(made)
            sub.sink.put(sub.id, text)
            self.published += 1

    def close_sink(self, sink: Sink) -> None:
        """Forget every subscription of a closed connection."""
        for sid in [s for s, sub in self.subs.items() if sub.sink is sink]:
            self.unsubscribe(sid, sink)
