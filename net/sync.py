"""Block sync: fetch committed blocks and their commit certificates from peers.

A node that starts late, was down, or lost its data dir is behind the others; consensus
messages only ever cover the current height, so it would never catch up on them alone.
This module (CometBFT's blocksync reactor plays the same part) closes the gap:

- every node announces `status [height, tip hash]` to a peer that connects, to everyone when
  its tip moves, and every `status_interval_s` otherwise;
- a node that sees a peer ahead asks it, one block per `block_request [height]`, with up to
  `window` requests in flight to that one peer (TCP keeps them in order);
- the peer answers `block_response [block bytes, commit]` from its store, or nothing if it
  lacks the block or already has `serve_queue` frames waiting for the requester;
- each block is checked before anything is written: decoded with the chain's size limits,
  height = tip + 1, parent = tip hash, its commit certificate verified against the validator
  set of that height (`validators_for`), its last commit against the set of the tip, then
  executed on the tip (`chain.execute_block`).  Only then does `apply` write it (in a node,
  `BftEngine.apply_synced`, which also moves consensus to the next height).  A block or
  commit that fails a check drops the peer (BadMessage) and writes nothing;
- a block that records a blob this node lacks (with `blobs`, net/blob_reactor.py): once its
  commit certificate is verified, the blob is fetched from the peers (the sender first)
  before the block is checked and executed; no block is asked for meanwhile.  A blob that
  cannot be fetched within its bound writes nothing and distrusts the sender for distrust_s;
- a peer that does not answer within `request_timeout_s` loses its claim to be ahead, and
  the next request goes to another peer.

Joining (node.py): consensus starts only after `catch_up()`, i.e. once our tip has reached
the highest height our peers report.  While consensus runs, a peer two heights ahead is
synced from at once; one height ahead, after `lag_grace_s` (normally the engine decides that
height itself in the meantime, and the transfer would be wasted).

Double signing after a wiped data dir: the validator lost its priv_validator_state, so its
Signer no longer knows what it signed.  Before the wipe it may have signed at most at the
height after the tip the network had then (T0 + 1).  node.py passes `fresh_since_ms` (its
start time) to `catch_up` when the signer state is fresh and the chain is past genesis:
after reaching the peers' tip T, it also waits until it holds block T + 1 and a tip whose
header time is later than its own start, i.e. a block proposed after it came back, whose
height is at least T0 + 1.  Consensus then starts at a height > T0 + 1, which this key cannot
have signed at, even if peers under-reported their height.  (Clock skew between proposer and
node can weaken the time check by the skew; the block-count check holds regardless.)

Wire bodies (docs/p2p.md), decoded strictly; a malformed one drops the sender:
  status:         [height (int >= 0), tip hash (32 bytes)]
  block_request:  [height (int >= 1)]
  block_response: [block bytes (the ledger's block encoding), commit [height, round, hash, [[validator, sig], ...]]]
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger import errors
from ledger.block import Block, decode_block, encode_block
from ledger.commit import Commit, commit_from_wire
from ledger.chain import Chain
from ledger.hashing import HASH_SIZE
from ledger.params import ChainParams
from ledger.transition import BlockOutput
from ledger.validators import ValidatorSet
from ledger.votes import verify_commit

from net.p2p import P2P, BadMessage

if TYPE_CHECKING:
    from net.blob_reactor import BlobReactor

log = logging.getLogger("gradchain.net.sync")

STATUS, BLOCK_REQUEST, BLOCK_RESPONSE = "status", "block_request", "block_response"
MAX_HEIGHT = 2**63 - 1

ApplyBlock = Callable[[Block, Commit, BlockOutput], None]
ValidatorsFor = Callable[[int], ValidatorSet]


@dataclass(frozen=True)
class SyncConfig:
    tick_s: float = 0.1             # how often timeouts, lag and status are looked at
    status_interval_s: float = 1.0  # a status to everyone at least this often
    request_timeout_s: float = 3.0  # no block from the chosen peer for this long: ask another
    window: int = 4                 # block requests in flight (to one peer)
    lag_grace_s: float = 1.0        # consensus running, a peer one block ahead: wait this long first
    serve_queue: int = 16           # frames already queued to a requester: ignore its requests
    settle_s: float = 2.0           # catch_up: wait this long at most for every peer's status
    distrust_s: float = 3.0         # a peer that failed to deliver: its claims are ignored this long,
    max_distrust_s: float = 30.0    # doubled for each further failure in a row up to this


# ---- wire ------------------------------------------------------------------------------

def _height(x: Any, lo: int, what: str) -> int:
    if type(x) is not int or not lo <= x <= MAX_HEIGHT:
        raise BadMessage(f"{what} must be an integer in [{lo}, 2**63 - 1]")
    return x


def decode_status(body: Any) -> tuple[int, bytes]:
    """(height, tip hash) of a status body; BadMessage if it is not exactly one."""
    if type(body) is not list or len(body) != 2:
        raise BadMessage("a status is an array of 2 fields")
    height, tip_hash = body
    _height(height, 0, "height")
    if type(tip_hash) is not bytes or len(tip_hash) != HASH_SIZE:
        raise BadMessage(f"tip hash must be {HASH_SIZE} bytes")
    return height, tip_hash


def decode_request(body: Any) -> int:
    """The height a block_request asks for; BadMessage if malformed."""
    if type(body) is not list or len(body) != 1:
        raise BadMessage("a block_request is an array of 1 field")
    return _height(body[0], 1, "height")


def encode_response(block: Block, commit: Commit) -> list:
    return [encode_block(block), commit.to_wire()]


def decode_response(body: Any, params: ChainParams) -> tuple[Block, Commit]:
    """(block, commit) of a block_response, decoded with the chain's size limits; BadMessage
    if malformed.  Whether the commit finalises the block is `BlockSync`'s check."""
    if type(body) is not list or len(body) != 2:
        raise BadMessage("a block_response is an array of 2 fields")
    raw, commit_wire = body
    if type(raw) is not bytes:
        raise BadMessage("block must be bytes")
    try:
        block = decode_block(raw, params.max_block_bytes, params.max_tx_bytes)
        commit = commit_from_wire(commit_wire)
    except errors.LedgerError as e:
        raise BadMessage(f"block_response: {e}") from None
    if block.header.height < 1:
        raise BadMessage("block_response: block 0 is the genesis, never sent")
    return block, commit


# ---- the reactor -----------------------------------------------------------------------

class BlockSync:
    """Serves our committed blocks and fetches the ones we lack (see the module docstring).

    Single-threaded on the event loop, like p2p: handlers and `tick` never interleave."""

    def __init__(self, p2p: P2P, chain: Chain, params: ChainParams, validators_for: ValidatorsFor,
                 apply: ApplyBlock, config: SyncConfig = SyncConfig(), seed: int | None = None,
                 blobs: "BlobReactor | None" = None):
        self.p2p, self.chain, self.params = p2p, chain, params
        self.blobs = blobs                   # fetches the blobs a synced block records
        self._fetching: asyncio.Task | None = None  # a block waiting for its blobs
        self.validators_for, self.apply, self.config = validators_for, apply, config
        self.heights: dict[bytes, int] = {}  # peer -> the height it claims (status or messages)
        self.catching_up = True              # before consensus starts: no lag grace
        self.synced = 0                      # blocks written by sync (tests, logs)
        self.served = 0                      # blocks sent to peers
        self._rng = random.Random(seed)      # which peer to ask
        self._peer: bytes | None = None      # the peer our requests go to
        self._inflight: set[int] = set()     # heights asked of it and not answered
        self._progress = 0.0                 # last time it answered (or was first asked)
        self._ahead_since: tuple[int, float] | None = None  # (our tip, since when) one block behind
        self._announced: tuple[int, bytes] | None = None
        self._last_status = 0.0
        self._distrust: dict[bytes, float] = {}  # peer -> until when its height claims are ignored
        self._failures: dict[bytes, int] = {}    # peer -> requests timed out in a row

    def attach(self) -> None:
        self.p2p.on(STATUS, self._on_status)
        self.p2p.on(BLOCK_REQUEST, self._on_request)
        self.p2p.on(BLOCK_RESPONSE, self._on_response)
        self.p2p.on_connect(self._on_connect)

    # ---- what we know of the peers ---------------------------------------------------------

    @property
    def target(self) -> int:
        """The highest height a connected peer claims (our tip if none is ahead)."""
        trusted = self._trusted()
        return max([h for p, h in self.heights.items() if p in trusted], default=self.chain.tip.height)

    def _trusted(self) -> set[bytes]:
        """Connected peers whose claims count (not recently caught failing to deliver)."""
        now = time.monotonic()
        return {p for p in self.p2p.peers if self._distrust.get(p, 0.0) <= now}

    def note_height(self, peer: bytes, height: int) -> None:
        """`peer` is at least at `height` (it sent a consensus message of height + 1)."""
        if height > self.heights.get(peer, -1):
            self.heights[peer] = height
            self._maybe_request()

    # ---- handlers ------------------------------------------------------------------------

    def _on_connect(self, peer: bytes) -> None:
        tip = self.chain.tip
        self.p2p.send(peer, STATUS, [tip.height, tip.hash])

    def _on_status(self, peer: bytes, body: Any) -> None:
        height, tip_hash = decode_status(body)
        self.heights[peer] = height
        tip = self.chain.tip
        if height == tip.height and tip_hash != tip.hash:
            log.warning("peer %s has another block at height %d (%s, ours %s)", peer.hex()[:16], height,
                        tip_hash.hex()[:16], tip.hash.hex()[:16])
        self._maybe_request()

    def _on_request(self, peer: bytes, body: Any) -> None:
        height = decode_request(body)
        if height > self.chain.tip.height or self.p2p.pending(peer) >= self.config.serve_queue:
            return  # we lack it, or the peer is not reading: it will ask again elsewhere
        block, commit = self.chain.store.block(height), self.chain.store.commit(height)
        if block is None or commit is None:
            return
        if self.p2p.send(peer, BLOCK_RESPONSE, encode_response(block, commit)):
            self.served += 1

    def _on_response(self, peer: bytes, body: Any) -> None:
        if peer != self._peer or not self._inflight or self._fetching is not None:
            return  # not asked (or a late answer after we moved on): not worth decoding
        block, commit = decode_response(body, self.params)
        height = block.header.height
        tip = self.chain.tip
        if height not in self._inflight:
            return
        self._inflight.discard(height)
        if height <= tip.height:
            return  # decided by our own consensus meanwhile
        if height != tip.height + 1:  # the peer skipped one: start again from tip + 1
            self._inflight.clear()
            self._maybe_request()
            return
        if self.blobs is not None and self.blobs.missing(block):
            self._fetch_blobs_first(peer, block, commit)
            return
        try:
            output = self.check(block, commit)
        except BadMessage:
            self._forget(peer, self.config.max_distrust_s)
            raise
        self._applied(peer, block, commit, output)

    def _applied(self, peer: bytes, block: Block, commit: Commit, output: BlockOutput) -> None:
        height = block.header.height
        self.apply(block, commit, output)
        self._failures.pop(peer, None)
        if self.chain.tip.height == height:
            self.synced += 1
            self._progress = time.monotonic()
            # a node's output shows the progress (node.py _show_sync); this is for debugging
            log.debug("synced block %d from %s (peers' height %d)", height, peer.hex()[:16], self.target)
        self._maybe_request()

    def _fetch_blobs_first(self, peer: bytes, block: Block, commit: Commit) -> None:
        """A block naming blobs we lack: its commit is verified now (junk never makes us
        fetch), then the blobs are fetched in a task and the block checked after."""
        height = block.header.height
        try:
            verify_commit(self.validators_for(height), self.chain.chain_id, commit, height, block.hash)
        except (errors.LedgerError, ValueError, TypeError) as e:
            self._forget(peer, self.config.max_distrust_s)
            raise BadMessage(f"block {height}: {e}") from None
        self._inflight.clear()
        self._fetching = asyncio.ensure_future(self._fetch_then_apply(peer, block, commit))

    async def _fetch_then_apply(self, peer: bytes, block: Block, commit: Commit) -> None:
        assert self.blobs is not None
        try:
            complete = await self.blobs.fetch_block(block, prefer=peer)
        finally:
            self._fetching = None
            self._progress = time.monotonic()
        try:
            if block.header.height != self.chain.tip.height + 1:
                pass  # decided by our own consensus meanwhile
            elif not complete:
                log.warning("block %d: its blobs could not be fetched; not written", block.header.height)
                self._forget(peer, self.config.distrust_s)
            else:
                try:
                    output = self.check(block, commit)
                except BadMessage as e:
                    log.warning("synced block from %s refused: %s", peer.hex()[:16], e)
                    self._forget(peer, self.config.max_distrust_s)
                else:
                    self._applied(peer, block, commit, output)
                    return
            self._maybe_request()
        except Exception:  # a bug here must not end sync for good
            log.exception("block sync after a blob fetch failed")

    # ---- checks ----------------------------------------------------------------------------

    def check(self, block: Block, commit: Commit) -> BlockOutput:
        """Check a block for our tip + 1 and the commit that finalised it, and execute it;
        its output, or BadMessage saying what is wrong (nothing is written either way)."""
        tip = self.chain.tip
        height = tip.height + 1
        if block.header.height != height:
            raise BadMessage(f"block {block.header.height} is not the next one ({height})")
        if block.header.parent_hash != tip.hash:
            raise BadMessage(f"block {height} does not extend our block {tip.height}")
        try:
            verify_commit(self.validators_for(height), self.chain.chain_id, commit, height, block.hash)
            if tip.height >= 1:
                if block.last_commit is None:
                    raise errors.InvalidBlock("block lacks the commit of its parent")
                verify_commit(self.validators_for(tip.height), self.chain.chain_id, block.last_commit,
                              tip.height, tip.hash)
            return self.chain.execute_block(block)
        except (errors.LedgerError, ValueError, TypeError) as e:
            raise BadMessage(f"block {height}: {e}") from None

    # ---- requests --------------------------------------------------------------------------

    def _timed_out(self, peer: bytes) -> None:
        """The peer sent no block in time: distrust it for distrust_s, doubled for each
        timeout in a row (a lossy link costs seconds; a peer that claims a height it never
        serves is soon ignored for max_distrust_s)."""
        n = self._failures.get(peer, 0) + 1
        self._failures[peer] = n
        cfg = self.config
        self._forget(peer, min(cfg.max_distrust_s, cfg.distrust_s * 2 ** min(n - 1, 16)))

    def _forget(self, peer: bytes, for_s: float) -> None:
        """The peer did not deliver: it is no longer believed ahead, nor asked, and what it
        claims is ignored for for_s (else a peer claiming a height it never serves would
        keep a node in catch_up forever)."""
        if self.heights.get(peer, 0) > self.chain.tip.height:
            self.heights[peer] = self.chain.tip.height
        self._distrust[peer] = time.monotonic() + for_s
        if peer == self._peer:
            self._peer = None
            self._inflight.clear()

    def _maybe_request(self) -> None:
        """Ask for the next blocks if a peer is ahead (see the module docstring for when)."""
        if self._fetching is not None:
            return  # a block waits for its blobs; _fetch_then_apply asks again
        now = time.monotonic()
        tip = self.chain.tip.height
        self._inflight = {h for h in self._inflight if h > tip}
        if self._peer is not None and self._inflight and now - self._progress > self.config.request_timeout_s:
            log.info("peer %s sent no block for %.1f s; asking another", self._peer.hex()[:16],
                     self.config.request_timeout_s)
            self._timed_out(self._peer)
        target = self.target
        if target <= tip:
            self._ahead_since = None
            return
        if not self.catching_up and target == tip + 1:
            if self._ahead_since is None or self._ahead_since[0] != tip:
                self._ahead_since = (tip, now)
            if now - self._ahead_since[1] < self.config.lag_grace_s:
                return
        trusted = self._trusted()
        if self._peer is None or self._peer not in trusted or self.heights.get(self._peer, -1) <= tip:
            ahead = sorted(p for p, h in self.heights.items() if h > tip and p in trusted)
            if not ahead:
                return
            self._peer = self._rng.choice(ahead)
            self._inflight.clear()
        if not self._inflight:
            self._progress = now
        top = min(self.heights[self._peer], tip + self.config.window)
        for h in range(tip + 1, top + 1):
            if h not in self._inflight and len(self._inflight) < self.config.window:
                if not self.p2p.send(self._peer, BLOCK_REQUEST, [h]):
                    break
                self._inflight.add(h)

    def tick(self) -> None:
        """Periodic work: announce our tip, forget gone peers, time out and send requests."""
        now = time.monotonic()
        connected = set(self.p2p.peers)
        for p in [p for p in self.heights if p not in connected]:
            del self.heights[p]
        for p in [p for p in self._failures if p not in connected]:
            del self._failures[p]
        for p in [p for p, until in self._distrust.items() if until <= now]:
            del self._distrust[p]
        tip = self.chain.tip
        if (tip.height, tip.hash) != self._announced or now - self._last_status >= self.config.status_interval_s:
            self.p2p.broadcast(STATUS, [tip.height, tip.hash])
            self._announced, self._last_status = (tip.height, tip.hash), now
        self._maybe_request()

    async def run(self) -> None:
        """tick() every tick_s until cancelled."""
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not end sync for good
                log.exception("block sync tick failed")
            await asyncio.sleep(self.config.tick_s)

    async def catch_up(self, fresh_since_ms: int | None = None) -> None:
        """Return once our tip has reached the highest height the peers report (run() must
        be running).  First waits, at most settle_s, for a status from every connected peer.
        fresh_since_ms (a validator whose signer state is fresh, started at that wall-clock
        time): past genesis, also wait for one block more than that tip, and for a tip
        proposed after that time (see the module docstring: it must not sign at a height
        it may have signed before it lost its state)."""
        cfg = self.config
        self.catching_up = True
        loop = asyncio.get_running_loop()
        settle = loop.time() + cfg.settle_s
        while loop.time() < settle and any(p not in self.heights for p in self.p2p.peers):
            await asyncio.sleep(cfg.tick_s)
        while self.target > self.chain.tip.height:
            await asyncio.sleep(cfg.tick_s)
        base = self.chain.tip.height
        if fresh_since_ms is not None and base > 0:
            log.warning("signer state is fresh and the chain is at height %d: waiting for block %d "
                        "from the peers before signing anything", base, base + 1)
            while self.chain.tip.height <= base or self.chain.tip.time_ms <= fresh_since_ms:
                await asyncio.sleep(cfg.tick_s)
        self.catching_up = False
        log.info("caught up at height %d (%d blocks synced)", self.chain.tip.height, self.synced)
