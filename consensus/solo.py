"""The one-validator engine of the devnet: it proposes, signs the commit, and commits.

It has the same shape the BFT engine will have: take candidates from the mempool,
`chain.build_block`, obtain a commit (here: its own precommit, which is all the stake),
`chain.commit_block`, then tell the mempool and the node.  Blocks are made as soon as
transactions wait, and an empty block after `block_time` seconds without any.
"""
from __future__ import annotations

import asyncio
import logging
import time
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


class SoloEngine:
    def __init__(self, chain: Chain, mempool: Mempool, key: PrivateKey,
                 block_time: float, max_block_txs: int, on_commit: OnCommit):
        self.chain, self.mempool, self.key = chain, mempool, key
        self.block_time = block_time
        self.max_block_txs = max_block_txs
        self.on_commit = on_commit
        self._wake = asyncio.Event()
        self._last_commit: Commit | None = chain.store.commit(chain.tip.height) if chain.tip.height else None

    def poke(self) -> None:
        """New transactions wait: make a block as soon as possible."""
        self._wake.set()

    def produce_block(self) -> Block:
        """Build, finalise and commit one block from what the mempool holds."""
        chain = self.chain
        vset = chain.validator_set(chain.tip.height + 1)
        me = vset.get(self.key.address)
        if me is None or not vset.has_quorum(me.stake):
            raise SoloEngineStopped(f"validator {self.key.address.hex()} no longer holds more than 2/3 of the stake "
                                    "at this height: one validator alone cannot finalise blocks")
        prop = chain.build_block(self.mempool.reap(self.max_block_txs), self.key.address,
                                 int(time.time() * 1000), self._last_commit)
        block = prop.block
        commit = make_commit([self.key], chain.chain_id, block.height, 0, block.hash)
        chain.commit_block(block, commit, prop.output)
        self._last_commit = commit
        evicted = self.mempool.update(block.txs, [t for t, _ in prop.rejected])
        for t, err in prop.rejected:
            log.info("dropped tx %s: %s", t.hash.hex()[:16], err)
        self.on_commit(block, prop, evicted)
        return block

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            timeout = max(0.0, self.block_time - (time.monotonic() - last))
            if not len(self.mempool):
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            if len(self.mempool) or time.monotonic() - last >= self.block_time:
                self.produce_block()
                last = time.monotonic()
            await asyncio.sleep(0)  # let the RPC server run between blocks
