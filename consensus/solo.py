"""The one-validator engine of the devnet: it proposes, signs the commit, and commits.

It has the same shape the BFT engine will have: take candidates from the mempool,
`chain.build_block`, obtain a commit (here: its own precommit, which is all the stake),
`chain.commit_block`, then tell the mempool and the node.

Mining modes (`Mining`, node.py --mining / --block-time / --no-empty-blocks):
- instant (default): a block as soon as transactions wait, and an empty block after
  `block_time` seconds without any (none with empty_blocks=False);
- interval: a block every `block_time` seconds holding what waits (skipped when nothing
  waits and empty_blocks=False);
- manual: blocks only through `mine(n)` (the `mine` RPC, which every mode accepts).
Devnet controls (consensus/devnet.py) hand the engine state changes for the next block
(`overrides`) and the next block's time (`clock`); they count as work waiting.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from ledger.block import Block
from ledger.commit import Commit
from ledger.chain import Chain, Proposal
from ledger.keys import PrivateKey
from ledger.mempool import Mempool
from ledger.tx import Transaction

from ledger.votes import make_commit

log = logging.getLogger("gradchain.consensus")

OnCommit = Callable[[Block, Proposal, list[Transaction]], None]


class SoloEngineStopped(Exception):
    """Others bonded so much stake that this validator alone is no longer a quorum."""


MINING_MODES = ("instant", "interval", "manual")
MAX_MINE = 1000  # blocks one mine() call makes


@dataclass(frozen=True)
class Mining:
    """When the solo engine makes blocks (the module docstring)."""

    mode: str = "instant"
    empty_blocks: bool = True


@dataclass
class DevClock:
    """The next block's time on a devnet: wall clock + offset_ms, or exactly `pinned_ms`
    once (devnet_set_time); never at or below the parent's time (Chain.build_block)."""

    offset_ms: int = 0
    pinned_ms: int | None = None

    def wall_ms(self) -> int:
        return int(time.time() * 1000)

    def next_ms(self) -> int:
        return self.pinned_ms if self.pinned_ms is not None else self.wall_ms() + self.offset_ms


@dataclass
class Pending:
    """Devnet state changes for the next block, and who waits for that block."""

    overrides: dict[bytes, bytes | None] = field(default_factory=dict)
    waiters: list[asyncio.Future] = field(default_factory=list)


class SoloEngine:
    def __init__(self, chain: Chain, mempool: Mempool, key: PrivateKey,
                 block_time: float, max_block_txs: int, on_commit: OnCommit, mining: Mining = Mining()):
        self.chain, self.mempool, self.key = chain, mempool, key
        self.block_time = block_time
        self.max_block_txs = max_block_txs
        self.on_commit = on_commit
        self.mining = mining
        self.clock = DevClock()
        self.pending = Pending()
        self._wake = asyncio.Event()
        self._last_commit: Commit | None = chain.store.commit(chain.tip.height) if chain.tip.height else None

    def poke(self) -> None:
        """New transactions wait: make a block as soon as possible."""
        self._wake.set()

    def reset_tip(self) -> None:
        """The chain's tip moved back (a devnet revert): forget what was built on the old one."""
        self._last_commit = self.chain.store.commit(self.chain.tip.height) if self.chain.tip.height else None
        self.pending.overrides.clear()
        self.clock.pinned_ms = None

    def _work(self) -> bool:
        return bool(len(self.mempool) or self.pending.overrides)

    def produce_block(self) -> Block:
        """Build, finalise and commit one block from what the mempool holds."""
        chain = self.chain
        vset = chain.validator_set(chain.tip.height + 1)
        me = vset.get(self.key.address)
        if me is None or not vset.has_quorum(me.stake):
            raise SoloEngineStopped(f"validator {self.key.address.hex()} no longer holds more than 2/3 of the stake "
                                    "at this height: one validator alone cannot finalise blocks")
        pending, self.pending = self.pending, Pending()
        try:
            prop = chain.build_block(self.mempool.reap(self.max_block_txs), self.key.address,
                                     self.clock.next_ms(), self._last_commit, pending.overrides)
            block = prop.block
            commit = make_commit([self.key], chain.chain_id, block.height, 0, block.hash)
            chain.commit_block(block, commit, prop.output)
        except BaseException:
            self.pending = pending  # nothing was committed: the changes wait for the next try
            raise
        self._last_commit = commit
        if self.clock.pinned_ms is not None:  # the clock goes on from the pinned time
            self.clock.offset_ms = block.header.time_ms - self.clock.wall_ms()
            self.clock.pinned_ms = None
        for fut in pending.waiters:
            if not fut.done():
                fut.set_result(block.height)
        evicted = self.mempool.update(block.txs, [t for t, _ in prop.rejected])
        for t, err in prop.rejected:
            log.info("dropped tx %s: %s", t.hash.hex()[:16], err)
        self.on_commit(block, prop, evicted)
        return block

    async def mine(self, n: int) -> list[int]:
        """Make n blocks now (1 <= n <= MAX_MINE), yielding between them; their heights."""
        assert 1 <= n <= MAX_MINE
        heights = []
        for _ in range(n):
            heights.append(self.produce_block().height)
            await asyncio.sleep(0)
        return heights

    async def run(self) -> None:
        if self.mining.mode == "manual":
            await asyncio.Event().wait()  # blocks come from mine() only; until cancelled
        if self.mining.mode == "interval":
            await self._run_interval()
        last = time.monotonic()
        empty = self.mining.empty_blocks
        while True:
            timeout = max(0.0, self.block_time - (time.monotonic() - last)) if empty else None
            if not self._work():
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            if self._work() or (empty and time.monotonic() - last >= self.block_time):
                self.produce_block()
                last = time.monotonic()
            await asyncio.sleep(0)  # let the RPC server run between blocks

    async def _run_interval(self) -> None:
        """A block every block_time seconds (on a fixed schedule, whatever a block took)."""
        due = time.monotonic() + self.block_time
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + self.block_time, time.monotonic())
            if self._work() or self.mining.empty_blocks:
                self.produce_block()
