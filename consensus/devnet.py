"""Devnet controls of a one-validator devnet (the devnet_* RPC methods, docs/rpc.md
"Devnet controls"): snapshots and reverts, the next block's time, balances and whole
states set outside transactions.

How state set outside transactions stays a chain: set_balance and load do not write the
store; they queue raw state changes in the solo engine (`SoloEngine.pending`), which writes
them before the first transaction of the NEXT block (Chain.build_block `overrides`), so
that block's header commits to a state root that includes them and every later block
builds on it.  In instant mode the engine makes that block at once; in interval and manual
modes the change waits for the next block.

Snapshots (ledger/store.py): a snapshot records the committed height in the store; while
one exists each block also writes an undo record (the previous value of every key it
changed) in its own LMDB write.  A revert undoes the blocks after the snapshot, newest
first, and deletes them, in ONE write transaction: its cost is the changes since the
snapshot, not the size of the state, and a crash leaves the store before or after it.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from ledger import staking
from ledger.devnet_dump import Dump, DumpError, read_dump, write_dump
from ledger.mempool import Mempool
from ledger.state import ACCOUNT_PREFIX, Account, State, account_key, decode_account, encode_account
from ledger.validators import ValidatorSet
from ledger.tx import Transaction
from consensus.solo import SoloEngine

MAX_DEVNET_SUPPLY = 2**63  # base units: all account balances together after a devnet change
MAX_TIME_MS = 2**63        # a block time the devnet may be set to (ms since the epoch)


class DevnetError(Exception):
    """A devnet control that cannot be done: says why."""


class UnknownSnapshot(DevnetError):
    """No snapshot of that id (never taken, or dropped by a revert to it or an earlier one)."""


class DevnetControls:
    """The controls over one solo engine's chain (node.py builds it for a devnet only)."""

    def __init__(self, engine: SoloEngine, mempool: Mempool, on_dropped: Callable[[list[Transaction]], None]):
        self.engine, self.chain, self.mempool = engine, engine.chain, mempool
        self.on_dropped = on_dropped  # pending txs a revert made invalid (their waiters are told)
        self._supply: tuple[bytes, int] = (b"", 0)  # (tip hash, its accounts' balances together)

    # ---- snapshots ---------------------------------------------------------------------

    def snapshot(self) -> tuple[int, int]:
        """(id, height) of a new snapshot of the committed state."""
        return self.chain.store.add_snapshot()

    def revert(self, snapshot_id: int) -> int:
        """Back to the snapshot's height: later blocks gone, the state as it was, queued
        changes and a pinned time dropped, pending txs that no longer apply dropped.  The
        snapshot and all later ones are used up.  Returns the height."""
        if snapshot_id not in self.chain.store.snapshots():
            raise UnknownSnapshot(f"no snapshot {snapshot_id} (a revert uses up its snapshot and every later one)")
        waiters = self.engine.pending.waiters
        height = self.chain.rollback(snapshot_id)
        self.engine.reset_tip()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(DevnetError("reverted before the change reached a block"))
        self.on_dropped(self.mempool.recheck())
        return height

    # ---- time --------------------------------------------------------------------------

    def set_time(self, time_ms: int) -> int:
        """The next block's time is exactly time_ms; later blocks follow the wall clock from
        there.  Times only go forward: time_ms at or below the latest block's is refused."""
        tip = self.chain.tip.time_ms
        if not tip < time_ms <= MAX_TIME_MS:
            raise DevnetError(f"time_ms {time_ms} is not after the latest block's time {tip}: block times only "
                              "increase (revert to a snapshot to go back)")
        clock = self.engine.clock
        clock.pinned_ms = time_ms
        clock.offset_ms = time_ms - clock.wall_ms()
        return time_ms

    def increase_time(self, ms: int) -> int:
        """Move the devnet clock ms forward (a pinned next time too); the next block's time."""
        clock = self.engine.clock
        if clock.next_ms() + ms > MAX_TIME_MS:
            raise DevnetError(f"the clock would pass {MAX_TIME_MS} ms")
        clock.offset_ms += ms
        if clock.pinned_ms is not None:
            clock.pinned_ms += ms
        return self.next_time_ms()

    def next_time_ms(self) -> int:
        """What the next block's time would be if it were made now."""
        return max(self.engine.clock.next_ms(), self.chain.tip.time_ms + 1)

    # ---- state -------------------------------------------------------------------------

    def account(self, address: bytes) -> Account:
        """The account as the next block will start: committed, under the queued changes."""
        key = account_key(address)
        pending = self.engine.pending.overrides
        if key in pending:
            raw = pending[key]
            return Account() if raw is None else decode_account(raw)
        return self.chain.account(address)

    def set_balance(self, address: bytes, amount: int) -> asyncio.Future:
        """Queue the balance for the next block (the nonce is kept); a future of the height
        of the block that holds it."""
        acct = self.account(address)
        new = Account(amount, acct.nonce)
        key = account_key(address)
        change = {key: None if new == Account() else encode_account(new)}
        self._check_supply(change)
        return self._queue(change, replace=False)

    def dump(self) -> dict:
        """The committed state after the latest block, as the current dump version."""
        store = self.chain.store
        return write_dump(self.chain.chain_id, self.chain.tip, store.state_items())

    def load(self, doc: object) -> tuple[Dump, asyncio.Future]:
        """Replace the whole state by a dump's (any version) in the next block; queued
        changes are replaced.  DevnetError if it cannot be loaded."""
        try:
            dump = read_dump(doc)
        except DumpError as e:
            raise DevnetError(f"dump: {e}") from None
        state = State(dump.entries.get)
        try:
            ok = all(self._leads(staking.validator_set(state, offset)) for offset in (1, 2))
        except Exception:  # no sets at all, or malformed ones
            ok = False
        if not ok:
            raise DevnetError("dump: its validator sets do not give this node's validator the stake to make blocks "
                              "alone (a dump of a multi-validator chain cannot run on a devnet)")
        changes: dict[bytes, bytes | None] = {k: None for k, _ in self.chain.store.state_items()
                                              if k not in dump.entries}
        changes.update(dump.entries)
        self._check_supply(changes, whole=True)
        return dump, self._queue(changes, replace=True)

    def _leads(self, vset: ValidatorSet) -> bool:
        me = vset.get(self.engine.key.address)
        return me is not None and vset.has_quorum(me.stake)

    def _check_supply(self, changes: dict[bytes, bytes | None], whole: bool = False) -> None:
        """All account balances together stay <= MAX_DEVNET_SUPPLY (so no transfer, reward
        or payback can overflow a 64-bit balance).  The committed total is summed once per
        tip (one scan of the accounts), then adjusted by the queued changes."""
        overlay = {} if whole else dict(self.engine.pending.overrides)
        overlay.update(changes)
        total = sum(decode_account(v).balance for k, v in overlay.items() if k[:1] == ACCOUNT_PREFIX and v)
        if not whole:
            total += self._committed_total()
            with self.chain.store.read() as r:
                for k in overlay:
                    if k[:1] == ACCOUNT_PREFIX and (raw := r.state(k)) is not None:
                        total -= decode_account(raw).balance
        if total > MAX_DEVNET_SUPPLY:
            raise DevnetError(f"all balances together would be {total} base units, over the devnet's limit of "
                              f"{MAX_DEVNET_SUPPLY}")

    def _committed_total(self) -> int:
        tip = self.chain.tip.hash
        if self._supply[0] != tip:
            total = 0
            for k, v in self.chain.store.state_items():
                if k[:1] != ACCOUNT_PREFIX:
                    break  # accounts sort first
                total += decode_account(v).balance
            self._supply = (tip, total)
        return self._supply[1]

    def _queue(self, changes: dict[bytes, bytes | None], replace: bool) -> asyncio.Future:
        pending = self.engine.pending
        if replace:
            pending.overrides.clear()
        pending.overrides.update(changes)
        fut = asyncio.get_running_loop().create_future()
        pending.waiters.append(fut)
        self.engine.poke()
        return fut
