"""LMDB storage: blocks, commits, transactions, receipts, state and trie nodes.

One block is committed in ONE LMDB write transaction (`commit_block`), so a crash at
any moment leaves the last committed block whole and the node restarts from it.
Named databases:
    meta      b"height" -> latest height (8 bytes BE), b"genesis" -> genesis document
    headers   height -> [header, last_commit, tx_count]
    hashes    block hash -> height
    commits   height -> the commit that finalised that block
    txs       height ++ index -> raw transaction
    receipts  tx hash -> [height, index, receipt]
    state     state key -> latest value (for fast reads; the trie holds every version)
    nodes     trie node hash -> node (content-addressed, so old roots stay provable)
    undo      height -> [[state key, value before that block or None], ...]: written, in the
              block's own write, only while a devnet snapshot exists (devnet_revert, below)
Devnet snapshots are meta records b"snap" ++ id -> height; `rollback` takes the store back to
a snapshot's height in ONE write transaction (blocks after it deleted, the state restored
from the undo records, later snapshots dropped), so a crash leaves it before or after.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Callable, Iterator

import lmdb

from ledger import errors
from ledger.block import Block, Header, Receipt, header_from_wire, receipt_from_wire
from ledger.commit import Commit, commit_from_wire
from ledger.encoding import decode, encode
from ledger.hashing import hash_bytes
from ledger.transition import BlockOutput
from ledger.tx import Transaction, decode_transaction

_DBS = (b"meta", b"headers", b"hashes", b"commits", b"txs", b"receipts", b"state", b"nodes", b"undo")
_HEIGHT = b"height"
_GENESIS = b"genesis"
_SNAP = b"snap"            # meta: b"snap" ++ id (8 bytes BE) -> height (8 bytes BE)
_SNAP_NEXT = b"snap-next"  # meta: the next snapshot id (ids are never reused)
_MAX_TX = 1 << 30  # stored transactions were checked on the way in
# what LMDB says (in its message: py-lmdb keeps no errno) when the disk or a quota is full
_FULL_TEXTS = tuple(os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT))
_FULL_MARGIN = 64 << 20  # free bytes below which an I/O error of a commit means a full disk


def height_key(h: int) -> bytes:
    return h.to_bytes(8, "big")


def tx_key(h: int, i: int) -> bytes:
    return h.to_bytes(8, "big") + i.to_bytes(4, "big")


class StoreError(Exception):
    """The data dir is missing, locked, or not a gradchain store."""


class Reader:
    """A consistent read-only view of the store (one LMDB read transaction)."""

    def __init__(self, store: "Store", txn: lmdb.Transaction):
        self._s, self._txn = store, txn
        self.state: Callable[[bytes], bytes | None] = lambda k: txn.get(k, db=store._db[b"state"])

    def node(self, h: bytes) -> bytes:
        v = self._txn.get(h, db=self._s._db[b"nodes"])
        if v is None:
            raise KeyError(h)
        return v

    def state_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The latest (key, value) pairs of the state whose key starts with prefix, in key
        order (a contract's storage: storage_key(address, b""))."""
        cur = self._txn.cursor(db=self._s._db[b"state"])
        if not cur.set_range(prefix):
            return
        for k, v in cur:
            if not k.startswith(prefix):
                return
            yield k, v


class Store:
    def __init__(self, path: str | Path, map_size: int = 64 << 30):
        self.path = path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        try:
            self.env = lmdb.open(str(path / "chain.lmdb"), map_size=map_size, max_dbs=len(_DBS),
                                 subdir=True, sync=True, metasync=True, readahead=False)
        except lmdb.Error as e:
            raise StoreError(f"cannot open the store in {path}: {e}") from None
        self._db = {name: self.env.open_db(name) for name in _DBS}
        self.keep_undo = bool(self.snapshots())  # undo records are written while a snapshot exists
        # told before errors.StorageFull is raised, wherever the write came from (node.py stops)
        self.on_full: Callable[[errors.StorageFull], None] | None = None

    def close(self) -> None:
        self.env.close()

    # ---- reads ------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Reader]:
        with self.env.begin(buffers=False) as txn:
            yield Reader(self, txn)

    def _get(self, db: bytes, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(key, db=self._db[db])

    def latest_height(self) -> int:
        """Height of the last committed block; -1 before genesis is written."""
        v = self._get(b"meta", _HEIGHT)
        return -1 if v is None else int.from_bytes(v, "big")

    def genesis_doc(self) -> bytes | None:
        return self._get(b"meta", _GENESIS)

    def header(self, height: int) -> Header | None:
        v = self._get(b"headers", height_key(height))
        return None if v is None else _header_of(v)

    def height_of(self, block_hash: bytes) -> int | None:
        v = self._get(b"hashes", block_hash)
        return None if v is None else int.from_bytes(v, "big")

    def _block_parts(self, height: int) -> tuple[Header, Commit | None, list[bytes]] | None:
        """A block's header, last commit and raw transactions."""
        with self.env.begin() as txn:
            v = txn.get(height_key(height), db=self._db[b"headers"])
            if v is None:
                return None
            w = decode(v)
            header = header_from_wire(w[0])
            last_commit = None if w[1] is None else commit_from_wire(w[1])
            raws = []
            cur = txn.cursor(db=self._db[b"txs"])
            prefix = height_key(height)
            if w[2] and cur.set_range(prefix):
                for k, raw in cur:
                    if not k.startswith(prefix):
                        break
                    raws.append(raw)
        return header, last_commit, raws

    def block(self, height: int) -> Block | None:
        parts = self._block_parts(height)
        if parts is None:
            return None
        header, last_commit, raws = parts
        return Block(header, tuple(decode_transaction(raw, _MAX_TX) for raw in raws), last_commit)

    def block_summary(self, height: int) -> tuple[Header, Commit | None, list[bytes]] | None:
        """(header, last commit, transaction hashes) without decoding the transactions (what
        an explorer polling blocks asks for)."""
        parts = self._block_parts(height)
        if parts is None:
            return None
        header, last_commit, raws = parts
        return header, last_commit, [hash_bytes(raw) for raw in raws]

    def commit(self, height: int) -> Commit | None:
        """The commit that finalised block `height` (the next block carries it too)."""
        v = self._get(b"commits", height_key(height))
        return None if v is None else commit_from_wire(decode(v))

    def tx(self, tx_hash: bytes) -> tuple[Transaction, int, int, Receipt] | None:
        """A committed transaction with its height, index and receipt."""
        with self.env.begin() as txn:
            v = txn.get(tx_hash, db=self._db[b"receipts"])
            if v is None:
                return None
            height, index, receipt = decode(v)
            raw = txn.get(tx_key(height, index), db=self._db[b"txs"])
        return decode_transaction(raw, _MAX_TX), height, index, receipt_from_wire(receipt)

    def receipts(self, lo: int, hi: int) -> Iterator[tuple[int, int, bytes, Receipt]]:
        """(height, index, tx hash, receipt) of every transaction in blocks lo..hi, in
        chain order, from one read transaction (consume it without awaiting)."""
        with self.env.begin() as txn:
            cur = txn.cursor(db=self._db[b"txs"])
            end = height_key(hi + 1)
            if not cur.set_range(height_key(lo)):
                return
            for k, raw in cur:
                if k >= end:
                    break
                h = hash_bytes(raw)
                receipt = receipt_from_wire(decode(txn.get(h, db=self._db[b"receipts"]))[2])
                yield int.from_bytes(k[:8], "big"), int.from_bytes(k[8:], "big"), h, receipt

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every latest (key, value) of the state, in key order."""
        with self.env.begin() as txn:
            yield from txn.cursor(db=self._db[b"state"])

    # ---- writes -----------------------------------------------------------------------

    def _write(self, fn: Callable[[lmdb.Transaction], None]) -> None:
        """Run fn in one write transaction, growing the map if it is full.  errors.StorageFull
        when the disk is full or the map cannot grow: nothing of fn was written."""
        try:
            while True:
                try:
                    with self.env.begin(write=True) as txn:
                        fn(txn)
                    return
                except lmdb.MapFullError:
                    self._grow()
                except lmdb.Error as e:
                    if not self._disk_full(e):
                        raise
                    raise errors.StorageFull(f"the disk holding {self.path} is full ({e}): free space on it, "
                                             "then restart the node") from None
        except errors.StorageFull as e:
            if self.on_full is not None:
                self.on_full(e)
            raise

    def _disk_full(self, e: lmdb.Error) -> bool:
        """ENOSPC or EDQUOT; or EIO on a disk with (almost) no space left, which is how LMDB
        reports a write cut short by the last free bytes."""
        if any(t in str(e) for t in _FULL_TEXTS):
            return True
        st = os.statvfs(self.path)
        return os.strerror(errno.EIO) in str(e) and st.f_bavail * st.f_frsize < _FULL_MARGIN

    def _grow(self) -> None:
        size = self.env.info()["map_size"] * 2
        try:
            self.env.set_mapsize(size)
        except lmdb.Error as e:
            raise errors.StorageFull(f"the LMDB map of {self.path} is full and cannot grow to {size} bytes ({e}): "
                                     "free memory or address space, then restart the node") from None

    def _put_state(self, txn: lmdb.Transaction, changes: dict[bytes, bytes | None],
                   nodes: dict[bytes, bytes]) -> None:
        sdb = self._db[b"state"]
        for k, v in changes.items():
            if v is None:
                txn.delete(k, db=sdb)
            else:
                txn.put(k, v, db=sdb)
        txn.cursor(db=self._db[b"nodes"]).putmulti(nodes.items(), overwrite=False)

    def init_genesis(self, doc: bytes, header: Header, changes: dict[bytes, bytes | None],
                     nodes: dict[bytes, bytes]) -> None:
        """Write the genesis document, block 0 and the initial state."""
        def fn(txn: lmdb.Transaction) -> None:
            txn.put(_GENESIS, doc, db=self._db[b"meta"])
            txn.put(height_key(0), encode([header.to_wire(), None, 0]), db=self._db[b"headers"])
            txn.put(header.hash, height_key(0), db=self._db[b"hashes"])
            self._put_state(txn, changes, nodes)
            txn.put(_HEIGHT, height_key(0), db=self._db[b"meta"])
        self._write(fn)

    def commit_block(self, block: Block, commit: Commit, out: BlockOutput) -> None:
        """Store a finalised block and everything it changed, atomically."""
        h = block.header.height

        def fn(txn: lmdb.Transaction) -> None:
            hk = height_key(h)
            txn.put(hk, encode([block.header.to_wire(),
                                block.last_commit.to_wire() if block.last_commit else None,
                                len(block.txs)]), db=self._db[b"headers"])
            txn.put(block.hash, hk, db=self._db[b"hashes"])
            txn.put(hk, encode(commit.to_wire()), db=self._db[b"commits"])
            txn.cursor(db=self._db[b"txs"]).putmulti(
                ((hk + i.to_bytes(4, "big"), tx.raw) for i, tx in enumerate(block.txs)), append=True)
            txn.cursor(db=self._db[b"receipts"]).putmulti(
                (tx.hash, encode([h, i, r.to_wire()])) for i, (tx, r) in enumerate(zip(block.txs, out.receipts)))
            if self.keep_undo:
                sdb = self._db[b"state"]
                txn.put(hk, encode([[k, txn.get(k, db=sdb)] for k in out.changes]), db=self._db[b"undo"])
            self._put_state(txn, out.changes, out.trie_nodes)
            txn.put(_HEIGHT, hk, db=self._db[b"meta"])
        self._write(fn)

    # ---- devnet snapshots -------------------------------------------------------------

    def snapshots(self) -> dict[int, int]:
        """Devnet snapshots: id -> the height they hold."""
        with self.env.begin() as txn:
            cur = txn.cursor(db=self._db[b"meta"])
            out = {}
            if cur.set_range(_SNAP + bytes(8)):
                for k, v in cur:
                    if not k.startswith(_SNAP) or len(k) != len(_SNAP) + 8:
                        break
                    out[int.from_bytes(k[len(_SNAP):], "big")] = int.from_bytes(v, "big")
        return out

    def add_snapshot(self) -> tuple[int, int]:
        """Record a snapshot of the latest height: (id, height).  From now on every block
        keeps its undo record."""
        got: list[tuple[int, int]] = []

        def fn(txn: lmdb.Transaction) -> None:
            meta = self._db[b"meta"]
            raw = txn.get(_SNAP_NEXT, db=meta)
            sid = 1 if raw is None else int.from_bytes(raw, "big")
            height = txn.get(_HEIGHT, db=meta)
            txn.put(_SNAP + sid.to_bytes(8, "big"), height, db=meta)
            txn.put(_SNAP_NEXT, (sid + 1).to_bytes(8, "big"), db=meta)
            got[:] = [(sid, int.from_bytes(height, "big"))]
        self._write(fn)
        self.keep_undo = True
        return got[0]

    def rollback(self, snapshot_id: int) -> int:
        """Take the store back to snapshot `snapshot_id`'s height, in one write transaction:
        every later block (header, hash, commit, txs, receipts) deleted, each one's state
        changes undone newest first, the latest height set, and this snapshot and every later
        one dropped.  Returns the height.  KeyError for an unknown id; StoreError if an undo
        record is missing (nothing is written then)."""
        snaps = self.snapshots()
        height = snaps[snapshot_id]

        def fn(txn: lmdb.Transaction) -> None:
            db = self._db
            tip = int.from_bytes(txn.get(_HEIGHT, db=db[b"meta"]), "big")
            undos = []
            for h in range(tip, height, -1):
                raw = txn.get(height_key(h), db=db[b"undo"])
                if raw is None:
                    raise StoreError(f"no undo record of block {h}: cannot revert to height {height}")
                undos.append((h, decode(raw)))
            for h, undo in undos:
                hk = height_key(h)
                for k, old in undo:
                    if old is None:
                        txn.delete(k, db=db[b"state"])
                    else:
                        txn.put(k, old, db=db[b"state"])
                txn.delete(_header_of(txn.get(hk, db=db[b"headers"])).hash, db=db[b"hashes"])
                for k in (b"headers", b"commits", b"undo"):
                    txn.delete(hk, db=db[k])
                cur = txn.cursor(db=db[b"txs"])
                if cur.set_range(hk):
                    while cur.key().startswith(hk):
                        txn.delete(hash_bytes(cur.value()), db=db[b"receipts"])
                        if not cur.delete():
                            break
            txn.put(_HEIGHT, height_key(height), db=db[b"meta"])
            for sid in snaps:
                if sid >= snapshot_id:
                    txn.delete(_SNAP + sid.to_bytes(8, "big"), db=db[b"meta"])
            if not any(sid < snapshot_id for sid in snaps):
                txn.drop(db[b"undo"], delete=False)
        self._write(fn)
        self.keep_undo = any(sid < snapshot_id for sid in snaps)
        return height


def _header_of(v: bytes) -> Header:
    return header_from_wire(decode(v)[0])
