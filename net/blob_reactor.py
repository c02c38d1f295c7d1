"""Blob data availability over p2p: validators fetch the chunks they lack from their peers.

A block that records a blob (a BLOB transaction) is valid to a node only where that node
holds every chunk (ledger/blob_records.py); a blob uploaded to one node's RPC is therefore
fetched by the others before they execute the block that records it (net/consensus_reactor.py
for a proposal, net/sync.py for a synced block).  This module carries the chunks:

  blob_get   [root, index]                 ask a peer for chunk `index` of blob `root`
  blob_chunk [root, index, chunk, proof]   the answer: the chunk and its audit path
  blob_none  [root, index]                 the answer of a peer without a complete copy

Serving: only a blob complete here is served (its proofs need every leaf), and only while
the asking peer's send queue has room for the answer (else blob_none: ask again); a request costs
the asking peer budget from a token bucket (SERVE_RATE bytes/s, SERVE_BURST bytes): the
chunk's length, or NONE_COST for an answer of blob_none.  A request over the budget is not
answered; a peer SERVE_BURST bytes beyond it (a flood) is dropped (BadMessage).  Nothing is
sent to a peer that has SERVE_QUEUE frames waiting already (it is not reading).

Fetching (`fetch`): every missing chunk is asked of one peer at a time, the preferred peer
(the proposer) first, at most IN_FLIGHT requests per peer and paced below the servers'
budget (FETCH_RATE); each answer is checked against the blob's root (BlobStore.put_chunk,
ledger.blobs.check_chunk) before it is stored.  An answer that fails the check, or a body
that is not exactly one of the three above, drops the peer (BadMessage).  A peer that
answers blob_none is asked again after NONE_RETRY_S (it may be fetching the blob itself);
one that does not answer within REQUEST_TIMEOUT_S, or lied, is not asked again during this
fetch.  Answers nobody asked for are ignored, unchecked.  The bound of a fetch is
`fetch_timeout(ref)` = 10 s + size / 10 MiB/s; `fetch` says whether the blob is complete.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from ledger import errors
from ledger.blobs import MAX_CHUNK_BYTES, BlobError, BlobRef
from ledger.blobstore import MAX_PENDING_BYTES, BlobStore
from ledger.block import Block
from ledger.merkle import merkle_levels, merkle_proof_of_levels
from ledger.tx import TxKind
from net.p2p import MAX_FRAME, P2P, BadMessage

log = logging.getLogger("gradchain.net.blobs")

BLOB_GET, BLOB_CHUNK, BLOB_NONE = "blob_get", "blob_chunk", "blob_none"
ROOT_BYTES = 32
MAX_INDEX = 2**32 - 1
MAX_PROOF_HASHES = 64            # a blob of 2**40 bytes in 4 KiB chunks has a path of 28
# a largest answer: the chunk, its proof and the msgpack framing, far inside any frame limit
ANSWER_OVERHEAD = MAX_PROOF_HASHES * (ROOT_BYTES + 2) + 64
MAX_ANSWER_BYTES = MAX_CHUNK_BYTES + ANSWER_OVERHEAD
assert MAX_ANSWER_BYTES <= MAX_FRAME  # p2p's frame limit is never below MAX_FRAME (frame_limit)

SERVE_RATE = 64 << 20            # bytes/s of answers one peer may ask of us
SERVE_BURST = 16 << 20           # bytes it may ask at once; this far beyond its budget is a flood
NONE_COST = 4 << 10              # what a request answered by blob_none costs the asker
SERVE_QUEUE = 8                  # frames already waiting for a peer: its requests go unanswered
FETCH_RATE = 48 << 20            # bytes/s we ask of one peer (3/4 of its SERVE_RATE)
IN_FLIGHT = 3                    # requests in flight to one peer (3 MiB: inside any send queue)
REQUEST_TIMEOUT_S = 5.0          # an unanswered request: the peer is not asked again this fetch
NONE_RETRY_S = 0.25              # a peer that said blob_none is asked again after this
FETCH_BASE_S = 10.0              # fetch_timeout = FETCH_BASE_S + size / FETCH_FLOOR_RATE
FETCH_FLOOR_RATE = 10 << 20
TREES_KEPT = 4                   # complete blobs whose Merkle levels are kept for serving


def fetch_timeout(ref: BlobRef) -> float:
    """How long a validator waits for a blob it lacks: 10 s + size / (10 MiB/s)."""
    return FETCH_BASE_S + ref.size / FETCH_FLOOR_RATE


# ---- wire ------------------------------------------------------------------------------

def _root_index(body: Any, n: int, what: str) -> tuple[bytes, int]:
    if type(body) is not list or len(body) != n:
        raise BadMessage(f"a {what} is an array of {n} fields")
    root, index = body[0], body[1]
    if type(root) is not bytes or len(root) != ROOT_BYTES:
        raise BadMessage(f"{what}: root must be {ROOT_BYTES} bytes")
    if type(index) is not int or not 0 <= index <= MAX_INDEX:
        raise BadMessage(f"{what}: index must be an integer in [0, 2**32 - 1]")
    return root, index


def decode_get(body: Any) -> tuple[bytes, int]:
    """(root, index) of a blob_get or blob_none; BadMessage if malformed."""
    return _root_index(body, 2, "blob request")


def decode_chunk(body: Any) -> tuple[bytes, int, bytes, list[bytes]]:
    """(root, index, chunk, proof) of a blob_chunk, shape only (the proof is checked against
    the blob by the fetcher); BadMessage if malformed or over the bounds."""
    root, index = _root_index(body, 4, "blob_chunk")
    chunk, proof = body[2], body[3]
    if type(chunk) is not bytes or not 1 <= len(chunk) <= MAX_CHUNK_BYTES:
        raise BadMessage(f"blob_chunk: chunk must be 1 to {MAX_CHUNK_BYTES} bytes")
    if type(proof) is not list or len(proof) > MAX_PROOF_HASHES \
            or any(type(h) is not bytes or len(h) != ROOT_BYTES for h in proof):
        raise BadMessage(f"blob_chunk: proof must be at most {MAX_PROOF_HASHES} hashes of {ROOT_BYTES} bytes")
    return root, index, chunk, proof


def block_blobs(block: Block) -> list[BlobRef]:
    """The blobs a block's BLOB transactions record, each once, in order."""
    seen: dict[bytes, BlobRef] = {}
    for tx in block.txs:
        if tx.kind == TxKind.BLOB:
            seen.setdefault(tx.payload.ref.root, tx.payload.ref)
    return list(seen.values())


# ---- budgets ---------------------------------------------------------------------------

@dataclass
class Bucket:
    """A token bucket of bytes: `rate` per second up to `burst`.  `charge` may go below
    zero (the debt a flooding peer runs up); `wait` says how long until `cost` is there."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def charge(self, cost: float, now: float) -> float:
        """Take cost (whether or not it is there); the tokens left."""
        self.refill(now)
        self.tokens -= cost
        return self.tokens

    def wait(self, cost: float, now: float) -> float:
        self.refill(now)
        return max(0.0, (min(cost, self.burst) - self.tokens) / self.rate)


@dataclass
class _Request:
    ref: BlobRef
    index: int
    peer: bytes
    sent: float
    done: asyncio.Future  # result: "ok", "none" or "lie"


# ---- the reactor -----------------------------------------------------------------------

class BlobReactor:
    """Serves complete blobs of `blobs` and fetches missing ones (see the module docstring).
    `withhold` (test only, --test-byzantine withhold-blobs): answer no request at all."""

    def __init__(self, p2p: P2P, blobs: BlobStore, height: Any = lambda: 0,
                 recorded: Any = lambda root: False, withhold: bool = False):
        self.p2p, self.blobs = p2p, blobs
        self.height = height            # () -> the tip height (when a fetched chunk was first seen)
        self.recorded = recorded        # root -> whether a block recorded the blob (pending bytes)
        self.withhold = withhold
        self.served = 0                 # chunks sent (tests, logs)
        self.fetched = 0                # chunks received and stored
        self._serve_budget: dict[bytes, Bucket] = {}
        self._fetch_budget: dict[bytes, Bucket] = {}
        self._wanted: dict[tuple[bytes, bytes, int], _Request] = {}
        self._fetches: dict[bytes, asyncio.Task] = {}
        self._trees: OrderedDict[bytes, list[list[bytes]]] = OrderedDict()

    def attach(self) -> None:
        self.p2p.on(BLOB_GET, self._on_get)
        self.p2p.on(BLOB_CHUNK, self._on_chunk)
        self.p2p.on(BLOB_NONE, self._on_none)

    # ---- serving -----------------------------------------------------------------------

    def _budget(self, table: dict[bytes, Bucket], peer: bytes, rate: float, burst: float) -> Bucket:
        b = table.get(peer)
        if b is None:
            if len(table) > 4 * max(8, len(self.p2p.peers)):  # forget peers that are gone
                connected = set(self.p2p.peers)
                for k in [k for k in table if k not in connected]:
                    del table[k]
            b = table[peer] = Bucket(rate, burst, burst, time.monotonic())
        return b

    def _on_get(self, peer: bytes, body: Any) -> None:
        root, index = decode_get(body)
        if self.withhold:
            return
        ref = self.blobs.ref(root)
        complete = ref is not None and index < ref.chunks and self.blobs.has(ref)
        cost = ref.chunk_size(index) if complete and ref is not None else NONE_COST
        left = self._budget(self._serve_budget, peer, SERVE_RATE, SERVE_BURST).charge(cost, time.monotonic())
        if left < -SERVE_BURST:
            raise BadMessage(f"blob_get flood: more than {SERVE_BURST} bytes over {SERVE_RATE} bytes/s")
        if left < 0 or self.p2p.pending(peer) >= SERVE_QUEUE:
            return  # over its budget, or not reading: it asks again (or elsewhere) after its timeout
        chunk = None
        if complete and ref is not None and self.p2p.room(peer) >= ref.chunk_size(index) + ANSWER_OVERHEAD:
            chunk = self.blobs.chunk(root, index)
        if ref is None or chunk is None:  # not held complete, or no room now in its send queue
            self.p2p.send(peer, BLOB_NONE, [root, index])
            return
        proof = merkle_proof_of_levels(self._levels(ref), index)
        if self.p2p.send(peer, BLOB_CHUNK, [root, index, chunk, proof]):
            self.served += 1

    def _levels(self, ref: BlobRef) -> list[list[bytes]]:
        """The Merkle levels of a complete blob, built once from its leaf hashes (no chunk
        data read) and kept for the TREES_KEPT blobs served last."""
        levels = self._trees.get(ref.root)
        if levels is None:
            levels = self._trees[ref.root] = merkle_levels(self.blobs.leaf_hashes(ref))
            while len(self._trees) > TREES_KEPT:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(ref.root)
        return levels

    # ---- answers -----------------------------------------------------------------------

    def _on_chunk(self, peer: bytes, body: Any) -> None:
        root, index, chunk, proof = decode_chunk(body)
        req = self._wanted.pop((peer, root, index), None)
        if req is None:
            return  # not asked (or a late answer after its timeout): not worth checking
        try:
            self.blobs.put_chunk(req.ref, index, chunk, proof, self.height())
        except BlobError as e:
            _resolve(req, "lie")
            raise BadMessage(f"blob_chunk {index} of {root.hex()[:16]}..: {e}") from None
        except errors.StorageFull as e:  # our disk, not the peer's fault: the fetch fails
            log.error("cannot store a fetched blob chunk: %s", e)
            _resolve(req, "full")
            return
        self.fetched += 1
        _resolve(req, "ok")

    def _on_none(self, peer: bytes, body: Any) -> None:
        root, index = _root_index(body, 2, "blob_none")
        req = self._wanted.pop((peer, root, index), None)
        if req is not None:
            _resolve(req, "none")

    # ---- fetching ----------------------------------------------------------------------

    def missing(self, block: Block) -> list[BlobRef]:
        """The blobs the block records that this node does not hold completely."""
        return [ref for ref in block_blobs(block) if not self.blobs.has(ref)]

    async def fetch_block(self, block: Block, prefer: bytes | None = None) -> bool:
        """Fetch every blob the block records and this node lacks, within the sum of their
        fetch_timeout; whether they are all here now.  A block whose missing blobs would
        take this node's uploads not yet on chain past MAX_PENDING_BYTES is not fetched."""
        refs = self.missing(block)
        if not refs:
            return True
        pending = self.blobs.pending_bytes(self.recorded)
        if pending + sum(r.size for r in refs) > MAX_PENDING_BYTES:
            log.warning("block %s: not fetching %d blobs (%d bytes pending here already)",
                        block.hash.hex()[:16], len(refs), pending)
            return False
        deadline = time.monotonic() + sum(fetch_timeout(r) for r in refs)
        for ref in refs:
            if not await self.fetch(ref, deadline - time.monotonic(), prefer):
                return False
        return True

    async def fetch(self, ref: BlobRef, timeout: float, prefer: bytes | None = None) -> bool:
        """Get every missing chunk of `ref` from the peers within `timeout` seconds (one
        fetch per blob at a time: a second caller waits for the first); whether it is complete."""
        if self.blobs.has(ref):
            return True
        task = self._fetches.get(ref.root)
        if task is None:
            task = self._fetches[ref.root] = asyncio.ensure_future(self._fetch(ref, timeout, prefer))
            task.add_done_callback(lambda _t: self._fetches.pop(ref.root, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, timeout))
        except asyncio.TimeoutError:
            return self.blobs.has(ref)

    async def _fetch(self, ref: BlobRef, timeout: float, prefer: bytes | None) -> bool:
        started = time.monotonic()
        deadline = started + timeout
        known = self.blobs.ref(ref.root)
        if known is not None and known != ref:  # a stale upload of another shape under this root
            log.warning("blob %s.. is held here as %d bytes in chunks of %d: not fetching it as %d in %d",
                        ref.root.hex()[:16], known.size, known.chunk_bytes, ref.size, ref.chunk_bytes)
            return False
        have = set(self.blobs.present_indices(ref.root)) if known is not None else set()
        todo = deque(i for i in range(ref.chunks) if i not in have)
        flying: dict[asyncio.Future, _Request] = {}
        dead: set[bytes] = set()            # timed out or lied: not asked again this fetch
        none_until: dict[bytes, float] = {}  # said blob_none: asked again after NONE_RETRY_S
        try:
            while todo or flying:
                now = time.monotonic()
                if now >= deadline:
                    break
                for req in [r for r in flying.values() if now - r.sent > REQUEST_TIMEOUT_S]:
                    self._wanted.pop((req.peer, ref.root, req.index), None)
                    _resolve(req, "timeout")
                wake = deadline
                for peer in self._order(prefer):
                    if not todo:
                        break
                    if peer in dead or none_until.get(peer, 0.0) > now:
                        wake = min(wake, none_until.get(peer, wake))
                        continue
                    budget = self._budget(self._fetch_budget, peer, FETCH_RATE, IN_FLIGHT * ref.chunk_bytes)
                    while todo and sum(r.peer == peer for r in flying.values()) < IN_FLIGHT:
                        cost = ref.chunk_size(todo[0])
                        pause = budget.wait(cost, now)
                        if pause > 0:
                            wake = min(wake, now + pause)
                            break
                        index = todo.popleft()
                        if not self.p2p.send(peer, BLOB_GET, [ref.root, index]):
                            todo.appendleft(index)
                            break
                        budget.charge(cost, now)
                        req = _Request(ref, index, peer, now, asyncio.get_running_loop().create_future())
                        self._wanted[(peer, ref.root, index)] = req
                        flying[req.done] = req
                if flying:
                    wake = min(wake, min(r.sent for r in flying.values()) + REQUEST_TIMEOUT_S)
                if not flying or not any(f.done() for f in flying):
                    pause = max(0.001, min(wake - time.monotonic(), NONE_RETRY_S))
                    if flying:
                        await asyncio.wait(list(flying), timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await asyncio.sleep(pause)
                for fut in [f for f in flying if f.done()]:
                    req = flying.pop(fut)
                    outcome = fut.result()
                    if outcome == "ok":
                        continue
                    todo.appendleft(req.index)
                    if outcome == "full":
                        return False
                    if outcome == "none":
                        none_until[req.peer] = time.monotonic() + NONE_RETRY_S
                    else:
                        dead.add(req.peer)
                        log.info("blob %s..: peer %s %s; not asked again", ref.root.hex()[:16],
                                 req.peer.hex()[:16], "lied" if outcome == "lie" else "did not answer")
        finally:
            for req in flying.values():
                self._wanted.pop((req.peer, ref.root, req.index), None)
        complete = self.blobs.has(ref)
        took = time.monotonic() - started
        if complete:
            log.info("fetched blob %s.. (%d bytes) in %.2f s", ref.root.hex()[:16], ref.size, took)
        else:
            log.warning("could not fetch blob %s.. (%d of %d chunks) within %.1f s", ref.root.hex()[:16],
                        ref.chunks - len(todo) - len(flying), ref.chunks, timeout)
        return complete

    def _order(self, prefer: bytes | None) -> list[bytes]:
        """The connected peers, `prefer` (the proposer, the peer a block came from) first."""
        peers = sorted(self.p2p.peers)
        if prefer in peers:
            peers.remove(prefer)
            peers.insert(0, prefer)
        return peers


def _resolve(req: _Request, outcome: str) -> None:
    if not req.done.done():
        req.done.set_result(outcome)
