"""Transaction gossip: the mempool's side of p2p (CometBFT's mempool reactor).

Transactions that ledger.admission let into the mempool go to every peer but the one
they came from, in "tx" messages of at most GOSSIP_TX_BATCH transactions and
GOSSIP_TX_BATCH_BYTES (one message each would cost a peer one admission per tx).  A
peer's "tx" message is admitted as one batch; p2p itself relays nothing.
"""
from __future__ import annotations

from typing import Any

from ledger.admission import Admission
from net.p2p import P2P, BadMessage

GOSSIP_TX_BATCH = 2000  # transactions in one "tx" gossip message, at most
GOSSIP_TX_BATCH_BYTES = 1 << 20


class MempoolReactor:
    def __init__(self, admission: Admission):
        self.admission = admission
        self.p2p: P2P | None = None  # None: no peers (a devnet), nothing to gossip

    def attach(self, p2p: P2P) -> None:
        self.p2p = p2p
        p2p.on("tx", self.on_tx)

    def gossip(self, raws: list[bytes], exclude: bytes | None) -> None:
        """Send newly admitted transactions to every peer but `exclude` (their sender)."""
        if self.p2p is None:
            return
        batch: list[bytes] = []
        size = 0
        for raw in raws:
            if batch and (len(batch) == GOSSIP_TX_BATCH or size + len(raw) > GOSSIP_TX_BATCH_BYTES):
                self.p2p.broadcast("tx", batch, exclude)
                batch, size = [], 0
            batch.append(raw)
            size += len(raw)
        if batch:
            self.p2p.broadcast("tx", batch, exclude)

    async def on_tx(self, peer: bytes, body: Any) -> bool:
        """A peer's transactions: admitted like RPC ones, in one batch; admission gossips
        those that were new and valid (so p2p itself relays nothing: False)."""
        if type(body) is not list or not 0 < len(body) <= GOSSIP_TX_BATCH or any(type(b) is not bytes for b in body):
            raise BadMessage(f"a tx body is a list of 1 to {GOSSIP_TX_BATCH} transactions' bytes")
        await self.admission.admit(body, origin=peer)
        return False
