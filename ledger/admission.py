"""Transaction admission: the one path by which a transaction enters the mempool.

Every source (an RPC client, a batch, a peer's gossip, this node's own evidence) goes
through `Admission.admit`: decode and the stateless check (once), the signature (batched,
in worker processes), then the mempool's stateful checks, in arrival order.  A pipelined
batch of one sender's consecutive nonces therefore never sees itself out of order.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from ledger import errors
from ledger.blob_records import BlobUnavailable
from ledger.chain import Chain
from ledger.mempool import AlreadyKnown, Mempool
from ledger.sigverify import SignatureVerifier
from ledger.tx import Transaction, TxKind, decode_transaction, validate_transaction

Result = bytes | errors.LedgerError  # the tx hash, or why it was refused

# called with the raw bytes of the transactions that were new and valid, and the peer
# they came from (None: not from a peer): gossip them, wake the block producer
OnAdmitted = Callable[[list[bytes], bytes | None], None]


class Admission:
    def __init__(self, chain: Chain, mempool: Mempool, verifier: SignatureVerifier, on_admitted: OnAdmitted):
        self.chain = chain
        self.mempool = mempool
        self.verifier = verifier
        self.on_admitted = on_admitted
        self.refusal: errors.LedgerError | None = None  # once set (a full disk), every tx gets it
        self._tail: asyncio.Future | None = None  # the batch admitted last, which the next one awaits

    def check(self, raw: bytes) -> Transaction:
        """Decode and check what needs no state and no signature; raises InvalidTransaction.
        A BLOB is refused unless this node holds its data (put_blob_chunk comes first)."""
        params = self.chain.params
        tx = decode_transaction(raw, params.max_tx_bytes)
        validate_transaction(tx, self.chain.chain_id, params.max_block_gas)
        if tx.kind == TxKind.BLOB and not self.chain.blobs.has(tx.payload.ref):
            raise BlobUnavailable(f"this node does not hold every chunk of blob {tx.payload.ref.root.hex()}: "
                                  "upload them first (put_blob_chunk)")
        return tx

    async def admit(self, raws: Sequence[bytes], origin: bytes | None = None) -> list[Result]:
        """Admit raw transactions: the tx hash, or the error that refused it, for each."""
        if self.refusal is not None:
            return [self.refusal] * len(raws)
        results: list[Result | None] = [None] * len(raws)
        checked: list[tuple[int, Transaction]] = []
        for i, raw in enumerate(raws):
            try:
                checked.append((i, self.check(raw)))
            except errors.InvalidTransaction as e:
                results[i] = e
        for (i, _), res in zip(checked, await self.admit_checked([tx for _, tx in checked], origin)):
            results[i] = res
        return results  # type: ignore[return-value]  # every slot is filled

    async def admit_checked(self, txs: Sequence[Transaction], origin: bytes | None = None) -> list[Result]:
        """Admit transactions that passed `check`: signatures, then the mempool."""
        if self.refusal is not None:
            return [self.refusal] * len(txs)
        results: list[Result | None] = [None] * len(txs)
        todo: list[tuple[int, Transaction]] = []
        for i, tx in enumerate(txs):
            if tx.hash in self.mempool:
                results[i] = AlreadyKnown("transaction is already in the mempool")
            else:
                todo.append((i, tx))
        prev, done = self._tail, asyncio.get_running_loop().create_future()
        self._tail = done
        try:
            oks = await self.verifier.verify([tx for _, tx in todo])
            if prev is not None:
                await asyncio.shield(prev)
            added: list[bytes] = []
            for (i, tx), ok in zip(todo, oks):
                if not ok:
                    results[i] = errors.BadSignature("signature does not match the sender's public key")
                    continue
                try:
                    self.mempool.insert(tx)
                    results[i] = tx.hash
                    added.append(tx.raw)
                except errors.InvalidTransaction as e:
                    results[i] = e
            if added:
                self.on_admitted(added, origin)
        finally:
            done.set_result(None)
            if self._tail is done:
                self._tail = None
        return results  # type: ignore[return-value]
