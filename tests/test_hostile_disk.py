"""Hostile storage: a disk that fills while the node commits, and SIGKILL during a first start.

- Disk full (a data dir on a small tmpfs, filled by a file while clients send transfers):
  the node logs one clear STORAGE FULL line and stops cleanly with exit 75, no traceback;
  clients waiting on a commit are told `node_storage_full`, never "commit timeout"; after
  the filler is removed a restart holds every block and every committed transaction seen
  before (heights and hashes), and the chain goes on.
- The same for one of four BFT validators: it stops without signing what it cannot persist
  (the signer state is on the full disk too), the other three go on, and after a restart
  it keeps its blocks, catches up, and all four agree at every height.
- SIGKILL at seeded moments of a first start never leaves a data dir that cannot start, and
  genesis.json is always there and names the chain the node runs.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger.genesis import devnet_keys, load_genesis
from ledger.hashing import hash_bytes
from gradchain import Client, ConnectionFailed, RpcError, TxRejected
from tests.nodeproc import ROOT, NodeProcess, free_port, wait_until

STORAGE_FULL_EXIT = 75  # node.py's exit code when a block could not be written
TMPFS_MB = 24
SENDERS = devnet_keys()[:4]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A TMPFS_MB tmpfs mounted for the test (root only), unmounted after."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> int:
    """Write `path` until the file system refuses (ENOSPC); the bytes written."""
    chunk, n = b"\0" * (1 << 16), 0
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                n += f.write(chunk)
        except OSError:
            pass
        while True:  # the last bytes: smaller writes until not one more fits
            try:
                n += f.write(b"\0" * 512)
            except OSError:
                return n


class Sender(threading.Thread):
    """broadcast_tx_commit transfers of one key until the node is gone; records what it saw."""

    def __init__(self, url: str, key, seed: int):
        super().__init__(daemon=True)
        self.url, self.key, self.rng = url, key, random.Random(seed)
        self.committed: dict[str, int] = {}  # tx hash -> height
        self.refusals: list[str] = []        # reasons of RPC errors while waiting on a commit
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.url, timeout=30) as c:
            nonce = c.account(self.key.address).pending_nonce or 0
            while not self.stop.is_set():
                to = hash_bytes(b"disk %d" % self.rng.randrange(1 << 30))[:20]
                try:
                    r = c.transfer(self.key, to, self.rng.randrange(1, 1000), nonce=nonce, timeout=60)
                except TxRejected as e:
                    self.refusals.append(e.reason)
                    return
                except RpcError as e:
                    self.refusals.append(f"rpc {e.code}: {e.message}")
                    return
                except (ConnectionFailed, OSError):
                    return
                self.committed[r["hash"]] = r["height"]
                nonce += 1


def observed_blocks(c: Client) -> dict[int, str]:
    top = c.status()["height"]
    return {h: c.block(h)["header"]["hash"] for h in range(top + 1)}


def test_disk_full_stops_cleanly_and_a_restart_loses_nothing(small_disk: Path):
    node = NodeProcess(small_disk, block_time=0.2).start(timeout=60)
    senders = [Sender(node.url, k, seed) for seed, k in enumerate(SENDERS)]
    try:
        for s in senders:
            s.start()
        with node.client() as c:
            wait_until(lambda: c.status()["height"] >= 5, 60, "blocks before the disk fills")
            seen = observed_blocks(c)
        filler = small_disk / "filler"
        fill(filler)
        assert node.proc is not None
        code = node.proc.wait(120)  # transfers go on until a block does not fit
        node.proc = None
        for s in senders:
            s.stop.set()
            s.join(90)
        log = node.log.read_text()
        assert code == STORAGE_FULL_EXIT, log
        assert "STORAGE FULL" in log and "is full" in log and "free space" in log, log
        assert "Traceback" not in log, log
        reasons = [r for s in senders for r in s.refusals]
        assert "node_storage_full" in reasons, reasons  # the block that did not fit had waiters
        assert not any("timeout" in r for r in reasons), reasons
        committed = {h: height for s in senders for h, height in s.committed.items()}
        assert committed

        filler.unlink()
        node.start(timeout=60)
        with node.client() as c:
            blocks = observed_blocks(c)
            assert {h: blocks[h] for h in seen} == seen  # nothing rewritten, nothing lost
            assert max(blocks) >= max(committed.values())
            for tx_hash, height in committed.items():
                assert c.tx(tx_hash)["height"] == height
            k = devnet_keys()[9]
            assert c.transfer(k, k.address, 1, timeout=60)["height"] > max(blocks)  # the chain goes on
            again = observed_blocks(c)
            assert {h: again[h] for h in blocks} == blocks
        assert node.stop() == 0
    finally:
        node.kill()


def test_sigkill_during_first_start_never_breaks_the_data_dir(tmp_path: Path):
    rng = random.Random(20261207)
    delays = sorted(rng.uniform(0.1, 2.5) for _ in range(10))  # a first start takes about 1-2 s here
    for i, delay in enumerate(delays):
        data = tmp_path / f"n{i}"
        proc = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "--data-dir", str(data), "--rpc-port",
                                 str(free_port()), "--quiet", "--verify-workers", "0"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        time.sleep(delay)  # the attack's schedule: kill at this moment of the first start
        os.killpg(proc.pid, 9)
        proc.wait()
        node = NodeProcess(data, "--verify-workers", "0").start(timeout=60)
        try:
            with node.client() as c:
                assert load_genesis(data / "genesis.json").hash.hex() == c.status()["genesis_hash"], delay
            assert node.stop() == 0, node.log.read_text()
        finally:
            node.kill()


def test_a_data_dir_without_genesis_json_starts_and_gets_it_back(tmp_path: Path):
    """The moment a kill can hardly hit by chance: the store holds the genesis, genesis.json is
    not written yet (or torn, as the old non-atomic write could leave it).  The node
    re-derives the file from the store."""
    data = tmp_path / "n"
    node = NodeProcess(data, "--verify-workers", "0").start(timeout=60)
    try:
        with node.client() as c:
            genesis_hash = c.status()["genesis_hash"]
        node.kill()
        for damage in (lambda f: f.unlink(), lambda f: f.write_text(f.read_text()[:100])):  # missing, torn
            damage(data / "genesis.json")
            node.start(timeout=60)
            assert load_genesis(data / "genesis.json").hash.hex() == genesis_hash
            assert node.stop() == 0
    finally:
        node.kill()


def test_a_validator_whose_disk_fills_stops_and_rejoins_with_nothing_lost(tmp_path: Path, small_disk: Path):
    """Four BFT validators; validator 0's data dir is a small tmpfs, filled while a client
    waits on a commit there.  Validator 0 stops (STORAGE FULL, exit 75) without signing what
    it cannot persist; the other three (3/4 of the stake) go on; once space is freed it
    restarts, keeps every block it had, catches up, and all four agree at every height."""
    from ledger.keys import PrivateKey
    from tests.nodeproc import check_agreement, heights, validator_processes
    keys = [PrivateKey.from_label(f"disk test validator {i}") for i in range(4)]
    mnt = small_disk
    nodes = validator_processes(tmp_path / "tn", keys)
    victim = nodes[0]
    victim.data_dir, victim.log = mnt, tmp_path / "victim.log"
    try:
        for n in nodes:
            n.start(timeout=60)
        wait_until(lambda: min(heights(nodes)) >= 3, 60, "height 3 on every node")
        sender = Sender(victim.url, SENDERS[0], 7)
        sender.start()
        with victim.client() as c:
            seen = observed_blocks(c)
        fill(mnt / "filler")
        assert victim.proc is not None
        code = victim.proc.wait(120)
        victim.proc = None
        sender.stop.set()
        sender.join(90)
        log = victim.log.read_text()
        assert code == STORAGE_FULL_EXIT, log
        assert "STORAGE FULL" in log and "free space" in log, log
        assert not any("timeout" in r for r in sender.refusals), sender.refusals
        live = nodes[1:]
        top = max(heights(live))
        wait_until(lambda: min(heights(live)) >= top + 3, 60, "three blocks without validator 0")

        (mnt / "filler").unlink()
        victim.start(timeout=60)
        with victim.client() as c:
            assert {h: c.block(h)["header"]["hash"] for h in seen} == seen
            for tx_hash, height in sender.committed.items():
                assert c.tx(tx_hash)["height"] == height
        target = max(heights(live)) + 2
        wait_until(lambda: min(heights(nodes)) >= target, 60, "validator 0 caught up, the chain going on")
        check_agreement(nodes)
    finally:
        for n in nodes:
            n.kill()
