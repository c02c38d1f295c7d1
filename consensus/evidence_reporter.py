"""The evidence reporter: a double signature the engine saw becomes an EVIDENCE transaction.

The engine calls `report` for each duplicate vote it finds; this node tells the chain
once per offence, in a transaction paid by its own key (its block rewards pay the gas),
admitted through the same path as any other transaction (ledger.admission).
"""
from __future__ import annotations

import logging
from typing import Callable, Coroutine

from ledger import errors
from ledger.admission import Admission
from ledger.evidence import DuplicateVoteEvidence
from ledger.evidence import encode as evidence_encode
from ledger.keys import PrivateKey, address_hex
from ledger.tx import submit_evidence

log = logging.getLogger("gradchain.node")


class EvidenceReporter:
    def __init__(self, key: PrivateKey, admission: Admission, spawn: Callable[[Coroutine], None]):
        self.key = key
        self.admission = admission
        self.spawn = spawn  # runs the admission in the background: the engine must not wait
        self._sent: set[tuple] = set()  # offences already reported

    def report(self, ev: DuplicateVoteEvidence) -> None:
        if ev.offence in self._sent:
            return
        self._sent.add(ev.offence)
        nonce = self.admission.mempool.pending_nonce(self.key.address)
        tx = submit_evidence(self.key, self.admission.chain.chain_id, nonce, evidence_encode(ev))

        async def send() -> None:
            (res,) = await self.admission.admit([tx.raw])
            if isinstance(res, errors.LedgerError):
                log.warning("evidence against %s not sent: %s", address_hex(ev.validator), res)
            else:
                log.warning("evidence against %s sent in tx %s", address_hex(ev.validator), res.hex()[:16])
        self.spawn(send())
