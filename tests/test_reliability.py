"""Crash safety and restarts of real `node.py` processes on a real data dir.

- SIGKILL under load (3 moments): everything the RPC reported as committed survives with
  the same height/index/receipt, the chain does not go back, the stored state root equals
  a from-scratch recomputation, coins are conserved, and the node goes on.
- Ctrl-C stops cleanly (exit 0) and a restart continues the same chain.
- A second node on the same data dir refuses to start.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.genesis import DEVNET_ACCOUNTS, DEVNET_BALANCE, devnet_keys, devnet_validator_key
from ledger.block import encode_receipt
from ledger.hashing import hash_bytes
from ledger.keys import address_hex
from ledger.merkle import merkle_root
from ledger.params import ChainParams
from ledger.state import ACCOUNT_PREFIX, STAKING_PREFIX, decode_account
from ledger.store import Store
from ledger.trie import root_from_items
from ledger.tx import transfer
from gradchain import Client, ConnectionFailed, NotFound, TxRejected
from tests.nodeproc import ROOT

TOTAL_SUPPLY = DEVNET_ACCOUNTS * DEVNET_BALANCE
KEYS = devnet_keys()
BATCH_SENDERS = KEYS[:5]  # pipelined broadcast_tx batches, nonces pre-assigned
COMMIT_SENDER = KEYS[5]  # one broadcast_tx_commit at a time
VALIDATOR = devnet_validator_key().address


def recipient(sender: int, nonce: int) -> bytes:
    """Mostly fresh accounts (so the state trie grows), sometimes another dev account."""
    if nonce % 7 == 0:
        return KEYS[(sender + 1) % DEVNET_ACCOUNTS].address
    return hash_bytes(b"reliability recipient %d %d" % (sender, nonce))[:20]


def wait_until(pred, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


# ---- load generator -----------------------------------------------------------------------

@dataclass
class Observed:
    """What the RPC told the clients before the kill."""

    committed: dict[str, tuple[int, int, dict]] = field(default_factory=dict)  # hash -> (height, index, receipt)
    meta: dict[str, tuple[int, int]] = field(default_factory=dict)  # hash -> (sender index, nonce)
    block_hashes: dict[int, str] = field(default_factory=dict)  # height -> hash (from status)
    anomalies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, h: str, height: int, index: int, receipt: dict) -> None:
        with self.lock:
            old = self.committed.setdefault(h, (height, index, receipt))
            if old != (height, index, receipt):
                self.anomalies.append(f"{h} reported committed twice differently: {old} vs {(height, index, receipt)}")

    @property
    def max_height(self) -> int:
        with self.lock:
            return max([0, *self.block_hashes, *(c[0] for c in self.committed.values())])

    def tx_heights(self) -> int:
        with self.lock:
            return len({c[0] for c in self.committed.values()})


class Load:
    """Two client threads hammering one node until it dies (ConnectionFailed)."""

    def __init__(self, url: str, chain_id: str, per_sender: int = 20, max_outstanding: int = 600):
        self.url, self.chain_id = url, chain_id
        self.per_sender, self.max_outstanding = per_sender, max_outstanding
        self.obs = Observed()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                        for f in (self._batches, self._commits)]

    def start(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout: float = 15) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a load thread did not stop"

    def _guard(self, fn) -> None:
        try:
            fn()
        except ConnectionFailed:
            pass  # the node was killed
        except Exception as e:  # noqa: BLE001 - reported by the test
            if not self.stop.is_set():
                self.obs.anomalies.append(f"{fn.__name__}: {type(e).__name__}: {e}")

    def _batches(self) -> None:
        obs = self.obs
        nonces = [0] * len(BATCH_SENDERS)
        outstanding: list[str] = []
        with Client(self.url, timeout=15) as c:
            while not self.stop.is_set():
                if len(outstanding) < self.max_outstanding:
                    calls, hashes = [], []
                    for s, key in enumerate(BATCH_SENDERS):
                        for _ in range(self.per_sender):
                            n = nonces[s]
                            nonces[s] += 1
                            tx = transfer(key, self.chain_id, n, recipient(s, n), 1 + (n * 37) % 1000)
                            calls.append(("broadcast_tx", {"tx": tx.raw.hex()}))
                            hashes.append(tx.hash.hex())
                            with obs.lock:
                                obs.meta[tx.hash.hex()] = (s, n)
                    for h, r in zip(hashes, c.batch(calls)):
                        if isinstance(r, Exception) or r != {"hash": h}:
                            obs.anomalies.append(f"broadcast_tx {h}: {r!r}")
                    outstanding += hashes
                polls = outstanding[:999]  # with the status call: net/rpc/limits.py MAX_BATCH
                res = c.batch([("status", {})] + [("tx", {"hash": h}) for h in polls])
                st = res[0]
                if not isinstance(st, Exception):
                    with obs.lock:
                        obs.block_hashes[st["height"]] = st["latest_block_hash"]
                still = []
                for h, r in zip(polls, res[1:]):
                    if isinstance(r, NotFound):
                        obs.anomalies.append(f"admitted tx {h} is unknown to the node")
                    elif isinstance(r, Exception):
                        obs.anomalies.append(f"tx {h}: {r!r}")
                    elif r["status"] == "committed":
                        obs.record(h, r["height"], r["index"], r["receipt"])
                    else:
                        still.append(h)
                outstanding = still + outstanding[len(polls):]

    def _commits(self) -> None:
        obs = self.obs
        n = 0
        with Client(self.url, timeout=15) as c:
            while not self.stop.is_set():
                tx = transfer(COMMIT_SENDER, self.chain_id, n, recipient(5, n), 5)
                with obs.lock:
                    obs.meta[tx.hash.hex()] = (5, n)
                r = c.broadcast_commit(tx, timeout=10)
                obs.record(r["hash"], r["height"], r["index"], r["receipt"])
                n += 1


# ---- checks on a stopped node's data dir ------------------------------------------------------

def check_store(data_dir: Path) -> dict:
    """Open the store of a STOPPED node and check it from scratch; returns facts for the caller."""
    store = Store(data_dir)
    try:
        tip = store.latest_height()
        header = store.header(tip)
        assert header is not None
        items = dict(store.state_items())
        assert root_from_items(items) == header.state_root, "stored state does not hash to the tip's state root"
        balances: dict[bytes, int] = {}
        nonces: dict[bytes, int] = {}
        for k, v in items.items():
            if k[:1] == STAKING_PREFIX:  # the devnet validator's bonded stake and sets
                continue
            assert k[:1] == ACCOUNT_PREFIX, f"unexpected state key {k.hex()}"
            a = decode_account(v)
            assert a.balance > 0 or a.nonce > 0, "an empty account was stored"
            balances[k[1:]], nonces[k[1:]] = a.balance, a.nonce
        reward = ChainParams().block_reward  # minted for the validator in each block
        assert sum(balances.values()) == TOTAL_SUPPLY + tip * reward, "coins were created or destroyed"

        # Walk the whole chain: links, commits, tx/receipt indexes, roots, fees, nonces.
        fees, sent = 0, {}
        prev = store.header(0)
        for h in range(1, tip + 1):
            block = store.block(h)
            assert block is not None, f"block {h} is missing below the tip {tip}"
            hd = block.header
            assert hd.height == h and hd.parent_hash == prev.hash, f"block {h} does not extend block {h - 1}"
            assert store.height_of(hd.hash) == h
            commit = store.commit(h)
            assert commit is not None and commit.block_hash == hd.hash, f"block {h} has no matching commit"
            receipts = []
            for i, tx in enumerate(block.txs):
                found = store.tx(tx.hash)
                assert found is not None and found[1:3] == (h, i), f"tx {i} of block {h} is not indexed"
                receipts.append(found[3])
                fees += found[3].gas_used * tx.gas_price
                assert tx.nonce == sent.get(tx.sender_address, 0), "nonces are not consecutive"
                sent[tx.sender_address] = tx.nonce + 1
            assert merkle_root([t.hash for t in block.txs]) == hd.tx_root
            assert merkle_root([encode_receipt(r) for r in receipts]) == hd.receipts_root
            prev = hd
        assert balances.get(VALIDATOR, 0) == fees + tip * reward, \
            "the validator does not hold exactly the fees and block rewards"
        for addr, n in sent.items():
            assert nonces.get(addr, 0) == n, f"nonce of {address_hex(addr)} differs from its tx count"
        return {"tip": tip, "tip_hash": header.hash.hex(), "txs": sum(sent.values())}
    finally:
        store.close()


def rpc_tx_batch(c: Client, hashes: list[str]) -> list:
    out = []
    for i in range(0, len(hashes), 1000):
        out += c.batch([("tx", {"hash": h}) for h in hashes[i:i + 1000]])
    return out


# ---- 1. SIGKILL under load ----------------------------------------------------------------------

@pytest.mark.parametrize("min_committed, extra_delay", [(100, 0.0), (1000, 0.05), (3000, 0.17)],
                         ids=["early", "mid", "late"])
def test_sigkill_under_load_loses_nothing_committed(node_factory, min_committed, extra_delay):
    node = node_factory().start()
    chain_id = node.client().chain_id
    load = Load(node.url, chain_id).start()
    blocks_with_txs = 3
    try:
        wait_until(lambda: (len(load.obs.committed) >= min_committed and load.obs.tx_heights() >= blocks_with_txs)
                   or load.obs.anomalies, 30, f"{min_committed} committed txs")
        time.sleep(extra_delay)
        node.kill()
    finally:
        load.join()
    obs = load.obs
    assert not obs.anomalies, obs.anomalies
    assert obs.tx_heights() >= blocks_with_txs
    seen_height = obs.max_height

    node.start()
    with node.client() as c:
        st = c.status()
        assert st["height"] >= seen_height, "the chain went back after the crash"
        assert st["mempool_size"] == 0

        # Every transaction reported committed is there, unchanged.
        hashes = sorted(obs.committed)
        for h, r in zip(hashes, rpc_tx_batch(c, hashes)):
            assert not isinstance(r, Exception), f"committed tx {h} lost after the crash: {r!r}"
            assert r["status"] == "committed"
            assert (r["height"], r["index"], r["receipt"]) == obs.committed[h], f"tx {h} changed after the crash"
            assert r["receipt"]["status"] == "success"
        for height, bh in obs.block_hashes.items():
            assert c.block(height=height)["header"]["hash"] == bh, f"block {height} changed after the crash"

        # Nonces: on-chain nonce covers every committed tx; nothing is pending after a restart.
        next_nonce = {}
        for s, key in enumerate(KEYS[:6]):
            a = c.account(key.address, prove=True)  # the client checks the Merkle proof
            assert a.pending_nonce == a.nonce
            done = [n for h, (si, n) in obs.meta.items() if si == s and h in obs.committed]
            assert all(n < a.nonce for n in done)
            next_nonce[s] = a.nonce
        assert c.account(VALIDATOR, prove=True).balance > 0

        # The restarted node keeps producing blocks ...
        h0 = c.status()["height"]
        wait_until(lambda: c.status()["height"] >= h0 + 2, 10, "new blocks after the restart")
        # ... and takes new transactions at the right next nonces.
        if next_nonce[0]:
            stale = transfer(KEYS[0], chain_id, next_nonce[0] - 1, KEYS[9].address, 1)
            with pytest.raises(TxRejected) as ei:
                c.broadcast(stale)
            assert ei.value.reason == "nonce_too_low"
        new = [transfer(KEYS[s], chain_id, n, KEYS[9].address, 3) for s, n in next_nonce.items()]
        res = c.batch([("broadcast_tx", {"tx": t.raw.hex()}) for t in new[:-1]])
        assert res == [{"hash": t.hash.hex()} for t in new[:-1]]
        r = c.broadcast_commit(new[-1], timeout=10)
        assert r["receipt"]["status"] == "success"
        for t in new[:-1]:
            assert c.wait_for_tx(t.hash.hex(), timeout=10)["receipt"]["status"] == "success"
        for s, key in enumerate(KEYS[:6]):
            assert c.account(key.address).nonce == next_nonce[s] + 1
        final_height = c.status()["height"]

    assert node.stop() == 0
    facts = check_store(node.data_dir)
    assert facts["tip"] >= final_height
    assert facts["txs"] >= len(obs.committed) + len(new)


# ---- 2. clean stop -----------------------------------------------------------------------------

def test_ctrl_c_stops_cleanly_and_restart_continues(node_factory):
    node = node_factory().start()
    with node.client() as c:
        chain_id = c.chain_id
        receipts = [c.broadcast_commit(transfer(KEYS[0], chain_id, n, KEYS[1].address, 10), timeout=10)
                    for n in range(3)]
        wait_until(lambda: c.status()["height"] >= receipts[-1]["height"] + 2, 10, "a few more blocks")
        h = c.status()["height"]
        hashes = {i: c.block(height=i)["header"]["hash"] for i in range(h + 1)}
    assert node.stop() == 0
    text = node.log.read_text()
    stopped = int(text.rsplit("stopped at height ", 1)[1].split()[0])
    assert stopped >= h
    assert "Traceback" not in text
    facts = check_store(node.data_dir)
    assert facts["tip"] == stopped
    hashes[stopped] = facts["tip_hash"]

    node.start()
    with node.client() as c:
        st = c.status()
        assert st["height"] >= stopped, "a clean restart must continue from the last height"
        for i, bh in hashes.items():
            assert c.block(height=i)["header"]["hash"] == bh, f"block {i} changed across the restart"
        for r in receipts:
            t = c.tx(r["hash"])
            assert (t["height"], t["index"], t["receipt"]) == (r["height"], r["index"], r["receipt"])
        assert c.account(KEYS[0].address).nonce == 3
        r = c.broadcast_commit(transfer(KEYS[0], chain_id, 3, KEYS[1].address, 10), timeout=10)
        assert r["height"] > stopped
        wait_until(lambda: c.status()["height"] >= r["height"] + 1, 10, "blocks after the restart")
    assert node.stop() == 0
    check_store(node.data_dir)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(p))
    return out


def test_ctrl_c_to_process_group_is_quiet(node_factory):
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
    (Regression: the signature workers used to die with a KeyboardInterrupt traceback.)"""
    node = node_factory().start()
    before = len(node.log.read_bytes())
    os.killpg(node.proc.pid, signal.SIGINT)
    code = node.proc.wait(15)
    node.proc = None
    text = node.log.read_bytes()[before:].decode()
    assert code == 0
    assert "stopped at height" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigkill_of_node_process_alone_leaves_no_orphans(node_factory):
    """The OOM killer kills one process, not the group.  (Regression: the signature
    workers used to live on forever as orphans.)"""
    node = node_factory().start()
    pgid = node.proc.pid
    assert len(_group_members(pgid)) > 1  # the node and its signature workers
    try:
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait()
        node.proc = None
        node.start()  # the orphans do not stop a restart
        node.kill()
        deadline = time.monotonic() + 5
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_members(pgid) == [], "orphaned worker processes outlived the node"
    finally:
        for pid in _group_members(pgid):  # only the processes this test started
            os.kill(pid, signal.SIGKILL)


# ---- 3. one node per data dir ------------------------------------------------------------------

def test_second_node_on_same_data_dir_refuses_to_start(node_factory, tmp_path):
    node = node_factory().start()
    genesis = (node.data_dir / "genesis.json").read_text()
    with node.client() as c:
        h = c.status()["height"]
        r = subprocess.run([sys.executable, str(ROOT / "node.py"), "--data-dir", str(node.data_dir),
                            "--rpc-port", "0", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "another node is running" in r.stderr and str(node.data_dir) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        # The running node is unaffected.
        assert node.alive()
        wait_until(lambda: c.status()["height"] > h, 10, "the first node to go on")
        assert c.broadcast_commit(transfer(KEYS[0], c.chain_id, 0, KEYS[1].address, 1), timeout=10)
    assert (node.data_dir / "genesis.json").read_text() == genesis
    assert node.stop() == 0
    check_store(node.data_dir)
