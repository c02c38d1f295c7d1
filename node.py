"""Start a gradchain validator: `python node.py` runs a one-validator devnet at once.

This file is the only place that wires the parts together: store and chain (ledger),
mempool, signature verifier, the consensus engine, and the JSON-RPC server (net).
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine

import lmdb

from consensus.bft import BftEngine
from gradchain.progress import Progress
from consensus.evidence_reporter import EvidenceReporter
from ledger.genesis import (COIN, DEVNET_ACCOUNTS, DEVNET_BALANCE, MAX_DEVNET_ACCOUNTS, MAX_SEED_BYTES,
                            Genesis, devnet_genesis, devnet_keys, devnet_validator_key, load_genesis,
                            write_genesis)
from consensus.signer import Signer, SignerError
from consensus.devnet import MAX_DEVNET_SUPPLY, DevnetControls
from consensus.solo import MINING_MODES, Mining, SoloEngine, SoloEngineStopped
from ledger import errors
from ledger.block import Block, Receipt, failure_text
from ledger.chain import Chain, Proposal
from ledger.keys import address_hex, address_of, load_key
from ledger.keystore import ask_password
from ledger.admission import Admission
from ledger.blobstore import BlobStore
from ledger.mempool import Mempool
from ledger.sigverify import SignatureVerifier
from ledger.files import write_durably
from ledger.store import Store, StoreError
from ledger.tx import Transaction, TxKind, contract_address
from net import faults
from net.blob_reactor import BlobReactor
from net.consensus_reactor import LoopTimer, P2PTransport, attach, regossip_loop, stall_loop
from net.mempool_reactor import MempoolReactor
from net.p2p import P2P, Limits, PeerAddress, frame_limit, parse_peer
from net.sync import BlockSync
from net import rpc
import net.explorer as explorer_page
from net.rpc.subscriptions import Hub, WsLimits
from net.rpc.metrics import NodeMetrics
from vm import ml as vm_ml
from vm.limits import MAX_OUTPUT_BYTES
from vm.codec import decode_value
from vm.json_values import to_json

log = logging.getLogger("gradchain.node")

DEFAULT_DATA_DIR = ".gradchain"
DEFAULT_RPC_PORT = 8545
SIGNER_STATE = "priv_validator_state"  # double-sign protection (consensus/signer.py)
PEER_WAIT_S = 30.0  # at most this long a BFT node waits for peers holding 2/3 of the stake
TX_LOG_LINES = 20  # blocks with more transactions get only their summary line
BLOB_PRUNE_EVERY = 64  # blocks between two deletions of expired blob data
STORAGE_FULL_EXIT = 75  # EX_TEMPFAIL: free space and start the node again


def printable(text: str) -> str:
    """Text a contract or a sender chose, safe for one log line (no forged lines)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short_json(raw: bytes | None, limit: int = 80) -> str:
    """A call's encoded result as (shortened) JSON."""
    value = None if raw is None else to_json(decode_value(raw, MAX_OUTPUT_BYTES))
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_tx(tx: Transaction, r: Receipt, height: int) -> str:
    """One readable line per transaction, as Anvil prints them: what it did, sender, gas,
    the result (a call's return value, a deploy's address) or why it failed, block."""
    what = TxKind(tx.kind).name.lower()
    result = "ok"
    if tx.kind == TxKind.TRANSFER:
        what += f" {tx.payload.amount} to {address_hex(tx.payload.to)}"
    elif tx.kind == TxKind.DEPLOY:
        result = f"-> {address_hex(contract_address(tx.sender_address, tx.nonce))}"
    elif tx.kind == TxKind.CALL:
        what += f" {address_hex(tx.payload.contract)}.{tx.payload.function}()"
        result = f"-> {_short_json(r.output)}"
    elif tx.kind in (TxKind.BOND, TxKind.UNBOND):
        what += f" {tx.payload.amount}"
    elif tx.kind == TxKind.EVIDENCE:
        ev = tx.payload.evidence
        what += f" against {address_hex(ev.validator)} at height {ev.height}"
    if not r.status:
        result = f"FAILED: {failure_text(r)}"
    return printable(f"tx {tx.hash.hex()[:16]}  {what}  from {address_hex(tx.sender_address)}  "
                     f"gas {r.gas_used}  {result}  block {height}")


def tx_log_lines(tx: Transaction, r: Receipt, height: int) -> list[str]:
    """A committed transaction in the node log: its describe_tx line, then the contract's
    print() output, one line each."""
    return [describe_tx(tx, r, height)] + [f"  print: {printable(line)}" for line in r.logs]


@dataclass
class NodeConfig:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    rpc_host: str = "127.0.0.1"
    rpc_port: int = DEFAULT_RPC_PORT
    genesis: Path | None = None
    key: Path | None = None
    block_time: float = 2.0
    verify_workers: int = os.cpu_count() or 1
    max_block_txs: int = 10_000
    mempool_size: int = 200_000
    min_gas_price: int = 1
    max_body_bytes: int = 16 << 20
    quiet: bool = False
    rpc_limits: rpc.Limits = rpc.Limits()
    ws_limits: WsLimits = WsLimits()  # WebSocket subscribers (net/rpc/subscriptions.py)
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 0           # 0: any free port (used only when the chain has several validators)
    peers: tuple[str, ...] = ()  # KEYHEX@host:port of the other validators
    p2p_max_peers: int = 50      # admitted p2p peers (validators and configured peers always get in)
    p2p_max_other_peers: int = Limits.max_other_peers  # inbound peers neither validators nor configured
    p2p_max_per_ip: int = Limits.max_per_ip            # handshakes in flight and other peers per IP
    p2p_ban: float = Limits.ban  # seconds of a first ban for a protocol violation (doubling per repeat)
    test_faults: Path | None = None    # TEST ONLY: a fault schedule for p2p (net/faults.py)
    test_byzantine: str | None = None  # TEST ONLY: "double-sign" (net/faults.py)
    mining: Mining = Mining()   # when the solo engine makes blocks (consensus/solo.py)
    dev_accounts: int | None = None  # a new devnet's dev accounts (default DEVNET_ACCOUNTS)
    dev_balance: int | None = None   # ... their balance in base units (default DEVNET_BALANCE)
    dev_seed: str | None = None      # ... the phrase their keys derive from (default: the public labels)
    explorer: str = "auto"           # GET /explorer: auto (on for a loopback RPC host), on, off (net/explorer)


class NodeError(Exception):
    """The node cannot start: a clear message for the operator."""


def genesis_peers(genesis: Genesis, public_key: bytes) -> tuple[list[PeerAddress], int]:
    """(the other validators, this key's p2p port or 0) from the genesis file's `peers`: what
    a node uses when --peers and --p2p-port are not given.  NodeError for a malformed entry."""
    others, port = [], 0
    for text in genesis.peers:
        try:
            p = parse_peer(text)
        except ValueError as e:
            raise NodeError(f"genesis peers: {e}") from None
        if p.key == public_key:
            port = p.port
        else:
            others.append(p)
    return others, port


def _lock(data_dir: Path) -> Any:
    data_dir.mkdir(parents=True, exist_ok=True)
    f = open(data_dir / "LOCK", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise NodeError(f"another node is running on {data_dir}") from None
    return f


def _holds_genesis(path: Path, genesis: Genesis) -> bool:
    """Whether `path` is a genesis file of this chain (not missing, torn or another chain's)."""
    try:
        return load_genesis(path).hash == genesis.hash
    except ValueError:  # load_genesis says why; the caller rewrites it either way
        return False


def _open_genesis(cfg: NodeConfig, store: Store) -> tuple[Genesis, bool]:
    """The genesis this data dir holds, writing it on first start. (genesis, is_devnet)

    The store is the record: <data-dir>/genesis.json is a copy for tools, written after the
    store's genesis and re-derived from it when missing (a first start killed in between)."""
    stored = store.genesis_doc()
    given = load_genesis(cfg.genesis) if cfg.genesis else None
    if stored is not None:
        meta = json.loads(stored)
        genesis = Genesis.from_json(meta["genesis"])
        if given is not None and given.hash != genesis.hash:
            raise NodeError(f"{cfg.data_dir} holds chain {genesis.chain_id} with another genesis; "
                            "use an empty --data-dir for a new chain")
        devnet = meta["devnet"]
        _check_dev_flags(cfg, meta.get("devnet_keys"), devnet)
    else:
        devnet = given is None
        if given is not None and (cfg.dev_accounts, cfg.dev_balance, cfg.dev_seed) != (None, None, None):
            raise NodeError("--accounts, --balance and --seed shape a new devnet: not with --genesis")
        dev = _dev_keys_doc(cfg)
        genesis = given or devnet_genesis(int(time.time() * 1000), dev["accounts"], balance=dev["balance"],
                                          seed=dev["seed"])
        changes, root, nodes = genesis.initial_state()
        meta = {"genesis": genesis.to_json(), "devnet": devnet, **({"devnet_keys": dev} if devnet else {})}
        store.init_genesis(json.dumps(meta, sort_keys=True).encode(), genesis.header(root), changes, nodes)
    copy = cfg.data_dir / "genesis.json"
    if not _holds_genesis(copy, genesis):
        write_genesis(genesis, copy)
    return given or genesis, devnet  # the same chain; the file given may list newer peers


def _dev_keys_doc(cfg: NodeConfig) -> dict:
    """How a new devnet's dev accounts are made (kept in the store: the banner shows them again)."""
    return {"accounts": DEVNET_ACCOUNTS if cfg.dev_accounts is None else cfg.dev_accounts,
            "balance": DEVNET_BALANCE if cfg.dev_balance is None else cfg.dev_balance, "seed": cfg.dev_seed}


def _check_dev_flags(cfg: NodeConfig, stored: dict | None, devnet: bool) -> None:
    """--accounts/--balance/--seed on a data dir that holds a chain must say what it holds."""
    given = {"accounts": cfg.dev_accounts, "balance": cfg.dev_balance, "seed": cfg.dev_seed}
    if all(v is None for v in given.values()):
        return
    if not devnet:
        raise NodeError(f"{cfg.data_dir} holds a chain from a genesis file: --accounts, --balance and --seed "
                        "shape a new devnet only")
    held = stored or {"accounts": DEVNET_ACCOUNTS, "balance": DEVNET_BALANCE, "seed": None}
    for name, v in given.items():
        if v is not None and v != held[name]:
            raise NodeError(f"{cfg.data_dir} holds a devnet made with --{name} {held[name]!r}, not {v!r}: "
                            "use an empty --data-dir for a new devnet")


class Node:
    def __init__(self, cfg: NodeConfig):
        self.cfg = cfg
        self._lockfile = _lock(cfg.data_dir)
        try:
            self.store = Store(cfg.data_dir)
        except StoreError as e:
            raise NodeError(str(e)) from None
        try:
            self.genesis, self.devnet = _open_genesis(cfg, self.store)
        except OSError as e:  # genesis.json or its directory (a full disk: StorageFull from the store)
            raise NodeError(f"cannot write {cfg.data_dir / 'genesis.json'}: {e.strerror}") from None
        self._full: errors.StorageFull | None = None  # set once a block could not be written
        self._halted = asyncio.Event()
        self.store.on_full = self._storage_full
        cache = cfg.data_dir / "xla-cache"
        vm_ml.use_compilation_cache(cache)
        if cache.is_dir() and any(cache.iterdir()):  # this node ran ML before: load jax meanwhile
            threading.Thread(target=vm_ml.preload, name="ml-preload", daemon=True).start()
        self.validators = self.genesis.validators
        if cfg.key is not None:
            try:
                self.key = load_key(cfg.key, password=ask_password)  # a keystore: $GRADCHAIN_PASSWORD or a prompt
            except ValueError as e:
                raise NodeError(str(e)) from None
        elif self.devnet:
            self.key = devnet_validator_key()
        else:
            raise NodeError("this chain is not a devnet: give the validator key with --key")
        # one genesis validator: the solo engine (the devnet); several: BFT over p2p, built in run()
        self.bft = len(self.validators.validators) > 1
        if not self.bft and self.validators.get(self.key.address) is None:
            raise NodeError(f"key {address_hex(self.key.address)} is not the validator of {self.genesis.chain_id}")
        params = self.genesis.params
        try:
            self.blobs = BlobStore(cfg.data_dir / "blobs")
        except lmdb.Error as e:
            raise NodeError(f"cannot open the blob store in {cfg.data_dir / 'blobs'}: {e}") from None
        self.chain = Chain(self.store, self.genesis.chain_id, params, self.blobs)
        try:
            self.chain.validator_set(self.chain.tip.height + 1)
        except errors.LedgerError as e:
            raise NodeError(f"{cfg.data_dir}: {e}; start with an empty --data-dir") from None
        self.mempool = Mempool(self.genesis.chain_id, params.max_block_gas, self.chain.account,
                               max_txs=cfg.mempool_size, min_gas_price=cfg.min_gas_price)
        # flags first; else the peers named in the genesis file (gradchain testnet writes them)
        listed_peers, listed_port = genesis_peers(self.genesis, self.key.public_key)
        self.p2p_port = cfg.p2p_port or listed_port
        try:
            self.peers = [parse_peer(p) for p in cfg.peers] if cfg.peers else listed_peers
        except ValueError as e:
            raise NodeError(f"--peers: {e}") from None
        self.signer: Signer | None = None
        self.p2p: P2P | None = None
        self._validators_at: tuple[int, frozenset[bytes]] = (-1, frozenset())
        if self.bft:
            try:
                self.signer = Signer(self.key, self.genesis.chain_id, cfg.data_dir / SIGNER_STATE)
            except SignerError as e:
                raise NodeError(str(e)) from None
            self.signer.on_full = self._storage_full
        self.verifier = SignatureVerifier(cfg.verify_workers)
        self.engine: Any = None if self.bft else SoloEngine(
            self.chain, self.mempool, self.key, cfg.block_time, cfg.max_block_txs,
            self._on_commit, cfg.mining)
        # mine and devnet_* (net/rpc/devnet.py): a one-validator devnet only
        self.devnet_controls = DevnetControls(self.engine, self.mempool, self._on_dropped) \
            if self.devnet and not self.bft else None
        # transactions in: one admission path (ledger/admission.py) for RPC, gossip and evidence
        self.admission = Admission(self.chain, self.mempool, self.verifier, self._on_admitted)
        self.mempool_reactor = MempoolReactor(self.admission)
        self.evidence = EvidenceReporter(self.key, self.admission, self.spawn)
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self.hub = Hub(cfg.ws_limits)  # WebSocket subscriptions: each committed block is published to it
        self.metrics = NodeMetrics(self)  # GET /metrics and /health (net/rpc/metrics.py, health.py)
        self._tasks: set[asyncio.Task] = set()

    def _on_admitted(self, raws: list[bytes], origin: bytes | None) -> None:
        self.mempool_reactor.gossip(raws, origin)
        if not self.bft:
            self.engine.poke()

    # ---- transactions out --------------------------------------------------------------

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> tuple[int, int, Receipt]:
        """(height, index, receipt) once tx_hash is committed; raises the eviction reason."""
        found = self.store.tx(tx_hash)
        if found is not None:
            return found[1], found[2], found[3]
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            ws = self._waiters.get(tx_hash)
            if ws is not None:
                if fut in ws:
                    ws.remove(fut)
                if not ws:
                    del self._waiters[tx_hash]

    def _on_commit(self, block: Block, prop: Proposal, evicted: list[Transaction]) -> None:
        self.hub.publish_block(block, prop.output)  # never blocks: bounded queues, slow subscribers dropped
        self.metrics.committed(block, self.engine.last_commit.round if self.bft else 0)
        if block.height % BLOB_PRUNE_EVERY == 0:
            self.blobs.prune(block.height, self.chain.blob_expiry)
        if not self.cfg.quiet and not (self.bft and self.sync.catching_up):  # catching up: _show_sync
            log.info("block %d  %d txs  gas %d  hash %s", block.height, len(block.txs),
                     prop.output.gas_used, block.hash.hex()[:16])
            if len(block.txs) <= TX_LOG_LINES:
                for tx, r in zip(block.txs, prop.output.receipts):
                    for line in tx_log_lines(tx, r, block.height):
                        log.info("  %s", line)
        if self._waiters:
            for i, (tx, r) in enumerate(zip(block.txs, prop.output.receipts)):
                for fut in self._waiters.get(tx.hash, ()):
                    if not fut.done():
                        fut.set_result((block.height, i, r))
            reasons = {t.hash: e for t, e in prop.rejected}
            for tx in evicted:
                err = reasons.get(tx.hash) or errors.InvalidTransaction("evicted from the mempool: an earlier "
                                                                        "transaction of its sender was dropped")
                for fut in self._waiters.get(tx.hash, ()):
                    if not fut.done():
                        fut.set_exception(err)

    def _on_dropped(self, txs: list[Transaction]) -> None:
        """Pending transactions a devnet revert made invalid: whoever waits on them is told."""
        err = errors.InvalidTransaction("dropped from the mempool: a devnet revert made it invalid")
        for tx in txs:
            for fut in self._waiters.get(tx.hash, ()):
                if not fut.done():
                    fut.set_exception(err)

    def _storage_full(self, err: errors.StorageFull) -> None:
        """A block could not be written.  A validator that cannot persist must not vote nor
        sign again, so the node stops (docs/consensus.md "Disk full"); what it committed is
        on disk, what it precommitted is in the signer state and the others' chain."""
        if self._full is not None:
            return
        self._full = err
        self.admission.refusal = err
        log.error("STORAGE FULL at height %d: %s. The node stops; nothing committed is lost.",
                  self.chain.tip.height, err)
        if self.bft and self.engine is not None:
            self.engine.stop()
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(err)
        self._halted.set()

    def spawn(self, coro: Coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- running ----------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        self.verifier.warm_up()
        try:
            server = await rpc.start(self, self.cfg.rpc_host, self.cfg.rpc_port, self.cfg.max_body_bytes,
                                     self.cfg.rpc_limits, explorer_page.setting(self.cfg.explorer, self.cfg.rpc_host))
        except OSError as e:
            raise NodeError(f"cannot listen on {self.cfg.rpc_host}:{self.cfg.rpc_port}: {e.strerror}") from None
        if not self.cfg.quiet:
            self._banner()
        if ready is not None:
            ready.set()
        try:
            if self.bft:
                await self._run_bft()
            else:
                await self.engine.run()
        finally:
            await server.close()

    async def _run_bft(self) -> None:
        """p2p (the validator key is the node key), then BftEngine once the peers are linked."""
        assert self.signer is not None
        g = self.genesis
        c = self.cfg
        limits = Limits(max_frame=frame_limit(g.params.max_block_bytes), max_other_peers=c.p2p_max_other_peers,
                        max_per_ip=c.p2p_max_per_ip, ban=c.p2p_ban)
        self.p2p = P2P(self.key, g.chain_id, g.hash, c.p2p_host, self.p2p_port, max_peers=c.p2p_max_peers,
                       peers=self.peers, limits=limits, validators=self._validator_keys)
        self.mempool_reactor.attach(self.p2p)
        timer = LoopTimer()
        transport = P2PTransport(self.p2p)
        self.engine = BftEngine(self.chain, self.mempool, self.signer, transport,
                                timer, self._on_commit, max_block_txs=self.cfg.max_block_txs,
                                commit_delay_ms=int(self.cfg.block_time * 1000), on_evidence=self.evidence.report)
        # blob data: a proposed or synced block's missing blobs are fetched from peers first
        self.blob_reactor = BlobReactor(self.p2p, self.blobs, lambda: self.chain.tip.height,
                                        lambda root: self.chain.blob_expiry(root) is not None,
                                        withhold=self.cfg.test_byzantine == faults.WITHHOLD_BLOBS)
        self.blob_reactor.attach()
        # block sync: consensus starts once caught up (net/sync.py); it writes through the engine
        self.sync = BlockSync(self.p2p, self.chain, g.params, self.chain.validator_set, self.engine.apply_synced,
                              blobs=self.blob_reactor)
        self.sync.attach()
        attach(self.p2p, self.engine, g.params, transport, self.sync, self.blob_reactor)
        fresh_since_ms = int(time.time() * 1000) if self.signer.state.height == 0 else None
        background: list[asyncio.Task] = []
        faults.install(self.p2p, self.engine, self.key, g.chain_id, self.cfg.test_faults, self.cfg.test_byzantine)
        try:
            await self.p2p.start()
        except OSError as e:
            raise NodeError(f"cannot listen on {self.cfg.p2p_host}:{self.p2p_port}: {e.strerror}") from None
        try:
            if self.peers:
                await self._wait_for_a_quorum_of_peers()
            background = [asyncio.create_task(self.sync.run()),
                          asyncio.create_task(regossip_loop(transport, self.engine)),
                          asyncio.create_task(stall_loop(self.engine))]
            # a fresh signer state past genesis (a wiped data dir): one block more first
            shown = None if self.cfg.quiet else asyncio.create_task(self._show_sync())
            try:
                await self.sync.catch_up(fresh_since_ms)
            finally:
                if shown is not None:
                    shown.cancel()
            self.engine.start()
            await self._halted.wait()  # until cancelled, or a block could not be written
            assert self._full is not None
            raise self._full
        finally:
            for t in background:
                t.cancel()
            self.engine.stop()
            timer.cancel_all()
            await self.p2p.stop()

    async def _show_sync(self, every_s: float = 0.2) -> None:
        """While catching up: our height of the peers' (sync.target) and the rate, on stderr
        (a bar on a terminal, a line per 10% or 5 s otherwise: gradchain/progress.py).  It
        only reads the tip; cancelled when catch_up returns."""
        shown: Progress | None = None
        start, since = self.chain.tip.height, time.monotonic()
        try:
            while True:
                tip, target = self.chain.tip.height, self.sync.target
                if shown is None and target > tip:
                    shown = Progress("sync", target, "block", sys.stderr, initial=start, started=since)
                if shown is not None:
                    shown.update(tip, max(target, tip), peers=len(self.p2p.peers) if self.p2p else 0)
                await asyncio.sleep(every_s)
        finally:
            if shown is not None:
                shown.update(self.chain.tip.height, max(self.sync.target, self.chain.tip.height))
                shown.close()

    def _validator_keys(self) -> frozenset[bytes]:
        """Keys of the validators of the current and next heights (tip + 1, tip + 2): p2p
        reserves their slots and bans them briefly.  Read from state once per tip."""
        height = self.chain.tip.height
        if self._validators_at[0] != height:
            sets = (self.chain.validator_set(height + 1), self.chain.validator_set(height + 2))
            self._validators_at = (height, frozenset(v.public_key for s in sets for v in s.validators))
        return self._validators_at[1]

    async def _wait_for_a_quorum_of_peers(self) -> None:
        """Start once every peer is linked, or once the linked ones and this node hold more
        than 2/3 of the stake of the next height (a dead validator must not keep a restarted
        one waiting; re-gossip on connect brings later peers up to date); at most PEER_WAIT_S."""
        assert self.p2p is not None
        vset = self.chain.validator_set(self.chain.tip.height + 1)

        def enough(peers: list[bytes]) -> bool:
            linked = {address_of(k) for k in peers} | {self.key.address}
            return len(peers) >= len(self.peers) or vset.has_quorum(
                sum(v.stake for v in vset.validators if v.address in linked))
        try:
            await self.p2p.wait_peers(enough, PEER_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("only %d of %d peers after %.0f s; starting anyway", len(self.p2p.peers), len(self.peers),
                        PEER_WAIT_S)

    def close(self) -> None:
        if self.signer is not None:
            self.signer.close()
        self.verifier.close()
        self.store.close()
        self.blobs.close()
        self._lockfile.close()

    @property
    def rpc_url(self) -> str:
        return f"http://{self.cfg.rpc_host}:{self.cfg.rpc_port}"

    def _banner(self) -> None:
        """Anvil-style start message; the same facts go to <data-dir>/devnet.json for tools."""
        g, tip = self.genesis, self.chain.tip
        lines = ["", "gradchain node", "=" * 14, f"Chain id:        {g.chain_id}",
                 f"Genesis hash:    {g.hash.hex()}", f"Latest block:    {tip.height}",
                 f"Validator:       {address_hex(self.key.address)}",
                 f"Block gas limit: {g.params.max_block_gas}", f"Data dir:        {self.cfg.data_dir}"]
        info: dict[str, Any] = {"chain_id": g.chain_id, "rpc_url": self.rpc_url, "genesis_hash": g.hash.hex()}
        if self.devnet:
            meta = json.loads(self.store.genesis_doc() or b"{}")
            dev = meta.get("devnet_keys") or {"accounts": DEVNET_ACCOUNTS, "balance": DEVNET_BALANCE, "seed": None}
            keys = devnet_keys(dev["accounts"], dev["seed"])
            m = self.cfg.mining
            mining = m.mode + ("" if m.mode == "manual" else f", block time {self.cfg.block_time:g} s") + \
                ("" if m.empty_blocks or m.mode == "manual" else ", no empty blocks")
            lines += [f"Mining:          {mining}",
                      f"Dev keys:        {dev['accounts']} accounts of {dev['balance'] / COIN:g} GRAD, "
                      + ("seed " + repr(dev["seed"]) if dev["seed"] is not None else "the public labels (no --seed)")]
            if dev["seed"] is not None:
                lines.append(f"                 (the CLI's dev:N: export GRADCHAIN_DEV_SEED={shlex.quote(dev['seed'])})")
            lines += ["", "Available accounts (insecure dev keys, never use them for value)",
                      "================================================================"]
            for i, k in enumerate(keys):
                bal = dict(g.accounts).get(k.address, 0)
                lines.append(f"({i}) {address_hex(k.address)}  key 0x{k.seed.hex()}  ({bal / COIN:g} GRAD)")
            info["accounts"] = [{"address": address_hex(k.address), "private_key": k.seed.hex()} for k in keys]
            info["mining"] = {"mode": m.mode, "block_time": self.cfg.block_time, "empty_blocks": m.empty_blocks}
            info["dev_keys"] = {"accounts": dev["accounts"], "balance": dev["balance"], "seed": dev["seed"]}
        try:
            write_durably(self.cfg.data_dir / "devnet.json", (json.dumps(info, indent=2) + "\n").encode())
        except OSError as e:  # a copy for tools: the chain does not depend on it (a full disk stops at the next block)
            log.warning("cannot write %s: %s", self.cfg.data_dir / "devnet.json", e.strerror)
        lines += ["", f"Listening on {self.rpc_url}"]
        if explorer_page.setting(self.cfg.explorer, self.cfg.rpc_host).on:
            lines.append(f"Explorer:        {self.rpc_url}/explorer")
        print("\n".join(lines), flush=True)


def parse_args(argv: list[str] | None = None) -> NodeConfig:
    prog = "gradchain-node" if Path(sys.argv[0]).name == "gradchain-node" else "node.py"  # the console script
    p = argparse.ArgumentParser(prog=prog, description="Run a gradchain validator (a one-validator "
                                "devnet with prefunded accounts when run without arguments).")
    d = NodeConfig()
    p.add_argument("--data-dir", type=Path, default=d.data_dir, help=f"chain data directory (default {d.data_dir})")
    p.add_argument("--rpc-host", default=d.rpc_host, help="RPC listen address (default 127.0.0.1)")
    p.add_argument("--rpc-port", type=int, default=d.rpc_port, help=f"RPC port (default {d.rpc_port})")
    lim = rpc.Limits()
    p.add_argument("--rpc-max-connections", type=int, default=lim.max_connections,
                   help=f"open RPC connections, all clients together (default {lim.max_connections})")
    p.add_argument("--rpc-max-per-ip", type=int, default=lim.max_per_ip,
                   help=f"open RPC connections from one IP (default {lim.max_per_ip})")
    p.add_argument("--rpc-header-timeout", type=float, default=lim.header_timeout,
                   help="seconds an RPC connection may take to send a request's headers, from connecting or "
                        f"from the last answer (default {lim.header_timeout:g})")
    p.add_argument("--rpc-body-timeout", type=float, default=lim.body_timeout,
                   help=f"seconds to read an RPC request's body (default {lim.body_timeout:g})")
    wl = WsLimits()
    p.add_argument("--ws-max-connections", type=int, default=wl.max_connections,
                   help=f"open WebSocket connections on GET /ws (default {wl.max_connections})")
    p.add_argument("--ws-max-subscriptions", type=int, default=wl.max_subscriptions,
                   help=f"subscriptions one WebSocket connection may hold (default {wl.max_subscriptions})")
    p.add_argument("--ws-queue-messages", type=int, default=wl.queue_messages,
                   help="messages waiting to be sent to one WebSocket before it is dropped as a slow subscriber "
                        f"(default {wl.queue_messages})")
    p.add_argument("--ws-queue-bytes", type=int, default=wl.queue_bytes,
                   help=f"bytes of those messages (default {wl.queue_bytes})")
    p.add_argument("--genesis", type=Path, help="genesis file (default: a new devnet genesis)")
    p.add_argument("--key", type=Path, help="validator key file (default: the devnet validator key); an encrypted "
                                          "keystore's password comes from $GRADCHAIN_PASSWORD, else a prompt")
    p.add_argument("--block-time", type=float, default=d.block_time,
                   help="seconds between empty blocks when no transaction waits (default 2); with --mining "
                        "interval, seconds between blocks")
    p.add_argument("--mining", choices=MINING_MODES, default=d.mining.mode,
                   help="instant: a block as soon as transactions wait (default); interval: a block every "
                        "--block-time seconds; manual: blocks only through the `mine` RPC")
    p.add_argument("--no-empty-blocks", action="store_true",
                   help="no block when nothing waits (instant and interval modes)")
    p.add_argument("--accounts", type=int, metavar="N",
                   help=f"a new devnet's funded dev accounts, 1 to {MAX_DEVNET_ACCOUNTS} (default {DEVNET_ACCOUNTS})")
    p.add_argument("--balance", metavar="GRAD",
                   help=f"each dev account's balance in GRAD (default {DEVNET_BALANCE // COIN})")
    p.add_argument("--seed", metavar="PHRASE",
                   help="derive a new devnet's dev keys from this phrase (default: the public labels every "
                        "devnet shares)")
    p.add_argument("--verify-workers", type=int, default=d.verify_workers,
                   help="processes checking signatures (0 = in the node process)")
    p.add_argument("--max-block-txs", type=int, default=d.max_block_txs)
    p.add_argument("--mempool-size", type=int, default=d.mempool_size)
    p.add_argument("--min-gas-price", type=int, default=d.min_gas_price)
    p.add_argument("--quiet", action="store_true", help="no banner, no per-block log lines and no sync progress")
    p.add_argument("--explorer", choices=explorer_page.MODES, default=d.explorer,
                   help="serve the block explorer at /explorer: auto (default: only when --rpc-host is loopback), "
                        "on, off")
    p.add_argument("--p2p-host", default=d.p2p_host, help="p2p listen address (default 127.0.0.1)")
    p.add_argument("--p2p-port", type=int, default=d.p2p_port,
                   help="p2p port, used when the genesis has several validators (default: any free port)")
    p.add_argument("--peers", default="", help="the other validators: KEYHEX@host:port,... (comma-separated)")
    p.add_argument("--p2p-max-peers", type=int, default=d.p2p_max_peers,
                   help=f"p2p peers admitted; validators and --peers always get in (default {d.p2p_max_peers})")
    p.add_argument("--p2p-max-other-peers", type=int, default=d.p2p_max_other_peers,
                   help="inbound peers that are neither validators nor configured peers "
                        f"(default {d.p2p_max_other_peers})")
    p.add_argument("--p2p-max-per-ip", type=int, default=d.p2p_max_per_ip,
                   help="inbound handshakes in progress, and peers other than validators, per IP "
                        f"(default {d.p2p_max_per_ip})")
    p.add_argument("--p2p-ban", type=float, default=d.p2p_ban,
                   help=f"seconds a peer breaking the protocol is banned, doubling per repeat (default {d.p2p_ban:g})")
    p.add_argument("--test-faults", type=Path, metavar="FILE",
                   help="TEST ONLY: drop, delay and partition p2p messages by a JSON schedule (net/faults.py)")
    p.add_argument("--test-byzantine", choices=faults.BYZANTINE_MODES,
                   help="TEST ONLY: this validator misbehaves (double-sign: conflicting prevotes; "
                        "withhold-blobs: serves no blob chunk to its peers)")
    a = p.parse_args(argv)
    if a.block_time <= 0:
        p.error("--block-time must be positive")
    if not 0 <= a.p2p_port < 65536:
        p.error("--p2p-port must be in [0, 65535]")
    if min(a.p2p_max_peers, a.p2p_max_other_peers, a.p2p_max_per_ip) < 0 or a.p2p_ban < 0:
        p.error("--p2p-max-peers, --p2p-max-other-peers, --p2p-max-per-ip and --p2p-ban must be >= 0")
    if min(a.rpc_max_connections, a.rpc_max_per_ip) < 1 or min(a.rpc_header_timeout, a.rpc_body_timeout) <= 0:
        p.error("--rpc-max-connections and --rpc-max-per-ip must be >= 1, the --rpc-*-timeout flags positive")
    if min(a.ws_max_connections, a.ws_max_subscriptions, a.ws_queue_messages, a.ws_queue_bytes) < 1:
        p.error("--ws-max-connections, --ws-max-subscriptions, --ws-queue-messages and --ws-queue-bytes must be >= 1")
    if a.test_faults is not None:
        try:
            faults.load_schedule(a.test_faults)
        except ValueError as e:
            p.error(f"--test-faults: {e}")
    dev_balance = _dev_balance(p, a) if a.balance is not None else None
    if a.accounts is not None and not 1 <= a.accounts <= MAX_DEVNET_ACCOUNTS:
        p.error(f"--accounts must be in [1, {MAX_DEVNET_ACCOUNTS}], got {a.accounts}")
    if a.seed is not None and not 0 < len(a.seed.encode()) <= MAX_SEED_BYTES:
        p.error(f"--seed must be a phrase of 1 to {MAX_SEED_BYTES} bytes")
    if dev_balance is not None and (a.accounts or DEVNET_ACCOUNTS) * dev_balance > MAX_DEVNET_SUPPLY:
        p.error(f"--accounts x --balance is over the devnet's supply limit of {MAX_DEVNET_SUPPLY / COIN:g} GRAD")
    peers = tuple(x.strip() for x in a.peers.split(",") if x.strip())
    return NodeConfig(a.data_dir, a.rpc_host, a.rpc_port, a.genesis, a.key, a.block_time, a.verify_workers,
                      a.max_block_txs, a.mempool_size, a.min_gas_price, quiet=a.quiet,
                      rpc_limits=rpc.Limits(a.rpc_max_connections, a.rpc_max_per_ip, a.rpc_header_timeout,
                                            a.rpc_body_timeout),
                      ws_limits=WsLimits(a.ws_max_connections, a.ws_max_subscriptions, a.ws_queue_messages,
                                         a.ws_queue_bytes),
                      p2p_host=a.p2p_host, p2p_port=a.p2p_port, peers=peers, p2p_max_peers=a.p2p_max_peers,
                      p2p_max_other_peers=a.p2p_max_other_peers, p2p_max_per_ip=a.p2p_max_per_ip, p2p_ban=a.p2p_ban,
                      test_faults=a.test_faults, test_byzantine=a.test_byzantine,
                      mining=Mining(a.mining, not a.no_empty_blocks), dev_accounts=a.accounts, dev_balance=dev_balance,
                      dev_seed=a.seed, explorer=a.explorer)


def _dev_balance(p: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    """--balance GRAD (up to 9 decimals) in base units, or a usage error."""
    from decimal import Decimal, InvalidOperation
    try:
        units = Decimal(a.balance) * COIN
    except InvalidOperation:
        p.error(f"--balance must be a number of GRAD, got {a.balance!r}")
    if not units.is_finite() or units != units.to_integral_value() or units <= 0:
        p.error(f"--balance must be a positive number of GRAD with at most 9 decimals, got {a.balance!r}")
    return int(units)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if cfg.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        node = Node(cfg)
    except (NodeError, ValueError, errors.StorageFull) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await node.run()

    try:
        asyncio.run(serve())
    except asyncio.CancelledError:
        pass
    except (NodeError, SoloEngineStopped) as e:
        print(f"error: {e}", file=sys.stderr)
        print(f"stopped at height {node.chain.tip.height}", flush=True)
        return 1
    except errors.StorageFull as e:
        print(f"error: {e}", file=sys.stderr)
        print(f"stopped at height {node.chain.tip.height}: storage full", flush=True)
        return STORAGE_FULL_EXIT
    finally:
        node.close()
    print(f"stopped at height {node.chain.tip.height}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
