"""The mempool: admission checks, per-sender nonce order, a size bound, eviction.

Admission (`add`; `insert` where ledger.admission ran the stateless check) applies the
rule of ledger.tx.check_nonce_and_funds against the committed state PLUS the sender's
pending transactions: a sender's pending nonces are contiguous
from its account nonce, and its pending worst-case costs must fit its balance.  The
signature is checked before `add` (batched, possibly in other processes) and never again.
After each commit `update` drops what was included and evicts what became invalid.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Callable, Iterable

from ledger import errors
from ledger.state import Account
from ledger.tx import Transaction, check_nonce_and_funds, validate_transaction


class MempoolError(errors.InvalidTransaction):
    reason = "mempool_rejected"


class MempoolFull(MempoolError):
    reason = "mempool_full"


class AlreadyKnown(MempoolError):
    reason = "already_known"


class FeeTooLow(MempoolError):
    reason = "fee_too_low"


class Mempool:
    def __init__(self, chain_id: str, max_gas: int, account: Callable[[bytes], Account],
                 max_txs: int = 200_000, max_per_sender: int = 20_000, min_gas_price: int = 1):
        self.chain_id = chain_id
        self.max_gas = max_gas
        self._account = account  # latest committed account of an address
        self.max_txs = max_txs
        self.max_per_sender = max_per_sender
        self.min_gas_price = min_gas_price
        self._by_hash: dict[bytes, Transaction] = {}
        self._pending: dict[bytes, list[Transaction]] = {}  # sender -> txs in nonce order
        self._spent: dict[bytes, int] = {}  # sender -> sum of pending worst-case costs
        self._arrival: dict[bytes, int] = {}  # tx hash -> arrival sequence
        self._bytes = 0  # sum of the pending txs' raw encodings (byte_size)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self._by_hash.get(tx_hash)

    def pending_nonce(self, sender: bytes) -> int:
        """The nonce the sender's next transaction must carry."""
        q = self._pending.get(sender)
        if q:
            return q[-1].nonce + 1
        return self._account(sender).nonce

    def add(self, tx: Transaction) -> None:
        """Admit a signature-checked transaction or raise the reason it is refused."""
        validate_transaction(tx, self.chain_id, self.max_gas)
        self.insert(tx)

    def insert(self, tx: Transaction) -> None:
        """`add` for a transaction that ledger.admission has already checked (stateless
        check and signature passed): only the checks that depend on the pool."""
        if tx.hash in self._by_hash:  # also a copy that came in the same batch
            raise AlreadyKnown("transaction is already in the mempool")
        if tx.gas_price < self.min_gas_price:
            raise FeeTooLow(f"gas price {tx.gas_price} is below this node's minimum {self.min_gas_price}")
        if len(self._by_hash) >= self.max_txs:
            raise MempoolFull(f"the mempool is full ({self.max_txs} transactions); try again later")
        sender = tx.sender_address
        q = self._pending.get(sender)
        acct = self._account(sender)
        spent = self._spent.get(sender, 0)
        check_nonce_and_funds(tx, q[-1].nonce + 1 if q else acct.nonce, acct.balance, spent)
        if q and len(q) >= self.max_per_sender:
            raise MempoolFull(f"this sender already has {len(q)} pending transactions")
        if q is None:
            self._pending[sender] = [tx]
        else:
            q.append(tx)
        self._spent[sender] = spent + tx.max_fee + tx.value
        self._by_hash[tx.hash] = tx
        self._arrival[tx.hash] = next(self._seq)
        self._bytes += len(tx.raw)

    def reap(self, max_txs: int) -> list[Transaction]:
        """Candidates for the next block: each sender's txs in nonce order, senders
        interleaved by gas price (highest first), then by arrival."""
        heap = []
        for sender, q in self._pending.items():
            t = q[0]
            heapq.heappush(heap, (-t.gas_price, self._arrival[t.hash], sender, 0))
        out: list[Transaction] = []
        while heap and len(out) < max_txs:
            _, _, sender, i = heapq.heappop(heap)
            q = self._pending[sender]
            out.append(q[i])
            if i + 1 < len(q):
                t = q[i + 1]
                heapq.heappush(heap, (-t.gas_price, self._arrival[t.hash], sender, i + 1))
        return out

    def _drop_from(self, q: list[Transaction], start: int, stop: int | None = None) -> None:
        for t in q[start:stop]:
            del self._by_hash[t.hash]
            del self._arrival[t.hash]
            self._bytes -= len(t.raw)
        del q[start:stop]

    def update(self, included: Iterable[Transaction], rejected: Iterable[Transaction]) -> list[Transaction]:
        """After a commit: forget included txs, evict rejected ones (with the later nonces
        of their sender) and whatever the new state made invalid. Returns the evicted.

        Cost is O(included + evicted), not O(pool): a sender's queue is walked in full only
        when its pending costs no longer fit its balance."""
        touched: dict[bytes, None] = {}
        for t in included:
            if self._by_hash.pop(t.hash, None) is not None:
                del self._arrival[t.hash]
                self._bytes -= len(t.raw)
                self._spent[t.sender_address] -= t.max_fee + t.value
            touched[t.sender_address] = None
        evicted: list[Transaction] = []
        recount: set[bytes] = set()
        for t in rejected:
            q = self._pending.get(t.sender_address)
            if q and t.hash in self._by_hash:
                i = next(i for i, x in enumerate(q) if x.hash == t.hash)
                evicted.extend(q[i:])
                self._drop_from(q, i)
                recount.add(t.sender_address)
            touched[t.sender_address] = None
        for sender in touched:
            q = self._pending.get(sender)
            if q is None:
                continue
            acct = self._account(sender)
            k = 0  # included txs, and txs whose nonce was used by a tx from elsewhere
            while k < len(q) and (q[k].hash not in self._by_hash or q[k].nonce < acct.nonce):
                if q[k].hash in self._by_hash:
                    evicted.append(q[k])
                    self._drop_from(q, k, k + 1)
                    recount.add(sender)
                    continue
                k += 1
            del q[:k]
            if q and q[0].nonce != acct.nonce:  # a gap: nothing here can ever run
                evicted.extend(q)
                self._drop_from(q, 0)
            if sender in recount:
                self._spent[sender] = sum(t.max_fee + t.value for t in q)
            if self._spent.get(sender, 0) > acct.balance:  # trim from the tail until it fits
                spent = 0
                for i, t in enumerate(q):
                    c = t.max_fee + t.value
                    if spent + c > acct.balance:
                        evicted.extend(q[i:])
                        self._drop_from(q, i)
                        break
                    spent += c
                self._spent[sender] = spent
            if not q:
                del self._pending[sender]
                self._spent.pop(sender, None)
        return evicted

    def recheck(self) -> list[Transaction]:
        """After the state changed under the pool (a devnet revert): every pending transaction
        admitted again, in arrival order, against the latest state; returns those that no
        longer apply (a nonce used or skipped, funds short), now dropped."""
        txs = sorted(self._by_hash.values(), key=lambda t: self._arrival[t.hash])
        self._by_hash.clear()
        self._pending.clear()
        self._spent.clear()
        self._arrival.clear()
        self._bytes = 0
        dropped = []
        for tx in txs:
            try:
                self.insert(tx)
            except errors.InvalidTransaction:
                dropped.append(tx)
        return dropped

    def byte_size(self) -> int:
        """Bytes of the pending transactions (their raw encodings), kept as they come and go:
        a /metrics scrape reads it at any pool size."""
        return self._bytes
