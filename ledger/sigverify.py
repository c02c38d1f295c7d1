"""Batched transaction signature checks, spread over worker processes.

Ed25519 verification (about 17-25k/s per core) is the physical limit of transfer
throughput, and it parallelises: the node hands batches to a process pool and keeps
its own core for decoding, execution and commits.  Small batches are checked inline,
where the round trip to a worker would cost more than the check.
"""
from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
import threading
from typing import Sequence

from ledger.keys import TX_DOMAIN, verify
from ledger.tx import Transaction, signed_body

INLINE_BELOW = 64
CHUNK = 512

Item = tuple[bytes, bytes, str, bytes]  # public key, signature, chain id, signed body


def items_of(txs: Sequence[Transaction]) -> list[Item]:
    return [(t.sender, t.signature, t.chain_id, signed_body(t)) for t in txs]


def verify_items(items: Sequence[Item]) -> list[bool]:
    """Check each (public key, signature, chain id, body); one bool per item."""
    return [verify(pk, sig, TX_DOMAIN, cid, body) for pk, sig, cid, body in items]


def _worker_init(parent_pid: int) -> None:
    """Workers leave Ctrl-C to the node (which shuts them down) and die with it, even
    when the node is SIGKILLed (Linux parent-death signal)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the node died before we got here
        os._exit(1)


class SignatureVerifier:
    """Verifies batches inline (workers=0) or in a pool of `workers` processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self.queued = 0  # signatures handed to verify() and not yet checked (/metrics)
        self._pool: multiprocessing.pool.Pool | None = None
        if workers > 0:
            # Every worker starts now with SIGINT ignored: an ignored signal stays ignored
            # across fork and exec, and CPython then installs no KeyboardInterrupt handler,
            # so a terminal's Ctrl-C cannot hit a worker while it is still importing.
            main = threading.current_thread() is threading.main_thread()
            old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                self._pool = multiprocessing.get_context("spawn").Pool(
                    workers, initializer=_worker_init, initargs=(os.getpid(),))
            finally:
                if main:
                    signal.signal(signal.SIGINT, old)

    def _submit(self, items: list[Item]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def settle(result: object, ok: bool) -> None:
            if not fut.done():
                fut.set_result(result) if ok else fut.set_exception(result)  # type: ignore[arg-type]

        assert self._pool is not None
        self._pool.apply_async(verify_items, (items,),
                               callback=lambda r: loop.call_soon_threadsafe(settle, r, True),
                               error_callback=lambda e: loop.call_soon_threadsafe(settle, e, False))
        return fut

    async def verify(self, txs: Sequence[Transaction]) -> list[bool]:
        items = items_of(txs)
        if self._pool is None or len(items) < INLINE_BELOW:
            return verify_items(items)
        size = max(INLINE_BELOW, min(CHUNK, -(-len(items) // self.workers)))
        self.queued += len(items)
        try:
            parts = await asyncio.gather(*(self._submit(items[i:i + size]) for i in range(0, len(items), size)))
        finally:
            self.queued -= len(items)
        return [ok for part in parts for ok in part]

    def warm_up(self) -> None:
        """Wait until every worker answers."""
        if self._pool is not None:
            self._pool.map(verify_items, [[]] * self.workers, chunksize=1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
