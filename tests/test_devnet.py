"""The devnet as a user drives it (issue 14 items 5 and 6), against real node processes:
mining modes and `mine`, the dev-account flags, and the devnet_* controls (snapshot and
revert, time, balances, dump and load), refused on a chain that is not a one-validator devnet."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradchain import Client, RpcError
from ledger.devnet_dump import read_dump
from ledger.genesis import COIN, DEVNET_BALANCE, devnet_keys
from ledger.keys import PrivateKey, address_hex
from tests.nodeproc import ROOT, validator_processes, wait_until

FIXTURE = Path(__file__).parent / "data" / "devnet_dump_v1.json"
FAST = ("--verify-workers", "0")
STAMP = '''
@export
def stamp():
    storage["t"] = ctx.block_time
    return ctx.block_time
'''
ALICE, BOB = devnet_keys(2)
NOBODY = "0x" + "ab" * 20


def rpc_error(c: Client, method: str, *params) -> RpcError:
    with pytest.raises(RpcError) as e:
        c.call(method, list(params))
    return e.value


def height(c: Client) -> int:
    return c.status()["height"]


# ---- mining modes ------------------------------------------------------------------------

def test_manual_mode_makes_blocks_only_when_asked(node_factory):
    node = node_factory("--mining", "manual", *FAST, block_time=0.2).start()
    with node.client() as c:
        sent = c.transfer(ALICE, BOB.address, 5, wait=False)
        time.sleep(1.0)  # five block times: nothing is made
        assert height(c) == 0
        assert c.tx(sent["hash"])["status"] == "pending"
        assert c.call("mine") == {"heights": [1]}
        assert c.tx(sent["hash"])["height"] == 1
        assert c.call("mine", [3]) == {"heights": [2, 3, 4]}
        assert c.call("mine", {"n": 2}) == {"heights": [5, 6]}
        for junk in (0, -1, 1001, "3", 2.5, True, None, [1]):
            assert rpc_error(c, "mine", junk).code == -32602
        assert rpc_error(c, "mine", 1, 2).code == -32602
        assert height(c) == 6


def test_no_empty_blocks(node_factory):
    node = node_factory("--no-empty-blocks", *FAST, block_time=0.2).start()
    with node.client() as c:
        time.sleep(1.0)
        assert height(c) == 0
        r = c.transfer(ALICE, BOB.address, 5)  # instant: a block as soon as it waits
        assert r["height"] == 1
        time.sleep(1.0)
        assert height(c) == 1


def test_interval_mode(node_factory):
    node = node_factory("--mining", "interval", *FAST, block_time=0.4).start()
    with node.client() as c:
        h0 = height(c)
        time.sleep(2.0)
        made = height(c) - h0
        assert 3 <= made <= 6, made  # one block per 0.4 s, empty or not
        times = [c.block(h)["header"]["time_ms"] for h in range(h0 + 1, h0 + made + 1)]
        assert all(b - a >= 300 for a, b in zip(times, times[1:])), times
        r = c.transfer(ALICE, BOB.address, 5)  # waits for the next tick
        assert r["height"] > h0 + made


def test_interval_mode_without_empty_blocks(node_factory):
    node = node_factory("--mining", "interval", "--no-empty-blocks", *FAST, block_time=0.3).start()
    with node.client() as c:
        time.sleep(1.0)
        assert height(c) == 0
        assert c.transfer(ALICE, BOB.address, 5)["height"] == 1


# ---- the dev accounts' flags ---------------------------------------------------------------

def _start_loud(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    from tests.nodeproc import free_port
    port = free_port()
    log = tmp_path / "loud.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "--data-dir", str(tmp_path / "d"),
                             "--rpc-port", str(port), *FAST, *flags], cwd=ROOT, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    wait_until(lambda: "Listening on" in log.read_text() or proc.poll() is not None, 30, "the banner")
    return proc, log


def test_accounts_balance_seed_flags(tmp_path):
    proc, log = _start_loud(tmp_path, "--accounts", "3", "--balance", "12.5", "--seed", "my phrase",
                            "--mining", "manual")
    try:
        banner = log.read_text()
        keys = devnet_keys(3, "my phrase")
        assert keys[0].address != devnet_keys(1)[0].address  # not the public-label keys
        assert devnet_keys(3, "my phrase") == keys  # deterministic
        for k in keys:
            assert f"{address_hex(k.address)}  key 0x{k.seed.hex()}  (12.5 GRAD)" in banner
        assert "(3)" not in banner
        assert "Mining:          manual" in banner and "3 accounts of 12.5 GRAD, seed 'my phrase'" in banner
        info = json.loads((tmp_path / "d" / "devnet.json").read_text())
        assert [a["address"] for a in info["accounts"]] == [address_hex(k.address) for k in keys]
        assert info["mining"] == {"mode": "manual", "block_time": 2.0, "empty_blocks": True}
        assert info["dev_keys"] == {"accounts": 3, "balance": 12_500_000_000, "seed": "my phrase"}
        assert address_hex(keys[0].address) == "0x7ea7cbaa1284d1f17a1063d657e7af46610c2479"  # the derivation is fixed
        assert "export GRADCHAIN_DEV_SEED='my phrase'" in banner
        with Client(info["rpc_url"]) as c:
            assert [c.balance(k.address) for k in keys] == [12_500_000_000] * 3
            assert c.balance(devnet_keys(1)[0].address) == 0
        # the CLI's dev:N follows the phrase the banner tells to export
        env = {**os.environ, "GRADCHAIN_RPC": info["rpc_url"], "GRADCHAIN_DEV_SEED": "my phrase"}

        def cli(*args: str) -> str:
            r = subprocess.run([sys.executable, "-m", "gradchain.cli", *args], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            return r.stdout
        assert "12.5 GRAD" in cli("balance", "dev:2")
        listed = cli("devnet", "accounts", "--accounts", "3")
        assert [ln.split()[1] for ln in listed.splitlines() if ln.startswith("dev:")] == \
            [address_hex(k.address) for k in keys]
        env.pop("GRADCHAIN_DEV_SEED")
        assert "0 GRAD" in cli("balance", "dev:2") and "12.5" not in cli("balance", "dev:2")
        assert address_hex(keys[1].address) in cli("devnet", "accounts", "--seed", "my phrase")
    finally:
        proc.kill()
        proc.wait()
    # the data dir remembers how it was made: other flags are refused, none are fine
    bad = subprocess.run([sys.executable, str(ROOT / "node.py"), "--data-dir", str(tmp_path / "d"), "--accounts", "4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "made with --accounts 3, not 4" in bad.stderr


@pytest.mark.parametrize("flags, message", [
    (["--accounts", "0"], "--accounts must be in [1, 1000]"),
    (["--accounts", "1001"], "--accounts must be in [1, 1000]"),
    (["--accounts", "x"], "invalid int value"),
    (["--balance", "0"], "--balance must be a positive number"),
    (["--balance", "-3"], "--balance must be a positive number"),
    (["--balance", "1.0000000001"], "at most 9 decimals"),
    (["--balance", "lots"], "--balance must be a number of GRAD"),
    (["--balance", "nan"], "--balance must be a positive number"),
    (["--balance", "9000000000"], "supply limit"),
    (["--seed", ""], "--seed must be a phrase"),
    (["--mining", "sometimes"], "invalid choice"),
    (["--block-time", "0"], "--block-time must be positive"),
])
def test_bad_flags(tmp_path, flags, message):
    r = subprocess.run([sys.executable, str(ROOT / "node.py"), "--data-dir", str(tmp_path / "d"), *flags],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr


# ---- snapshot and revert -------------------------------------------------------------------

def _state(c: Client) -> dict:
    b = c.block()["header"]
    return {"height": b["height"], "hash": b["hash"], "state_root": b["state_root"],
            "balances": [c.balance(k.address) for k in (ALICE, BOB)], "nonce": c.account(ALICE.address).nonce}


def test_snapshot_revert_round_trip(node_factory):
    node = node_factory("--mining", "manual", *FAST).start()
    with node.client() as c:
        c.call("mine", [2])
        before = _state(c)
        snap = c.call("devnet_snapshot")
        assert snap["height"] == 2 and type(snap["id"]) is int
        sent = [c.transfer(ALICE, BOB.address, 1000 + i, wait=False)["hash"] for i in range(3)]
        c.call("mine")
        c.call("devnet_set_balance", [NOBODY, 777])
        c.call("mine", [2])
        late = c.transfer(ALICE, BOB.address, 5, wait=False)["hash"]  # pending at the revert: its nonce is used up
        assert _state(c)["balances"] != before["balances"] and c.balance(NOBODY) == 777
        r = c.call("devnet_revert", [snap["id"]])
        assert r == {"height": 2, "block_hash": before["hash"], "state_root": before["state_root"]}
        assert _state(c) == before
        assert c.balance(NOBODY) == 0
        for h in sent:
            assert rpc_error(c, "tx", h).code == -32001  # the blocks after the snapshot are gone
        assert rpc_error(c, "block", 3).code == -32001
        assert rpc_error(c, "tx", late).code == -32001 and c.status()["mempool_size"] == 0
        # the chain goes on from the snapshot, and the same transfer can be sent again
        assert c.transfer(ALICE, BOB.address, 1000, wait=False)
        assert c.call("mine")["heights"] == [3]
        assert c.balance(BOB.address) == before["balances"][1] + 1000
        # a revert uses its snapshot up (and every later one)
        assert rpc_error(c, "devnet_revert", snap["id"]).code == -32001


def test_nested_snapshots_and_pending_txs_that_still_apply(node_factory):
    node = node_factory("--mining", "manual", *FAST).start()
    with node.client() as c:
        s1 = c.call("devnet_snapshot")["id"]
        c.transfer(ALICE, BOB.address, 1, wait=False)
        c.call("mine")
        s2 = c.call("devnet_snapshot")["id"]
        at_s2 = _state(c)
        c.transfer(ALICE, BOB.address, 2, wait=False)
        c.call("mine")
        kept = c.transfer(BOB, ALICE.address, 3, wait=False)["hash"]  # BOB's nonce is untouched by the revert
        assert c.call("devnet_revert", [s2])["height"] == 1
        assert _state(c) == at_s2
        assert c.tx(kept)["status"] == "pending"
        assert c.call("devnet_revert", [s1])["height"] == 0
        assert c.balance(BOB.address) == DEVNET_BALANCE


def test_revert_unknown_and_junk_ids(devnet):
    with devnet.client() as c:
        assert rpc_error(c, "devnet_revert", 99).code == -32001
        for junk in (0, -1, "1", 1.5, None, True, {"id": 1}, 2**64):
            assert rpc_error(c, "devnet_revert", junk).code == -32602
        assert rpc_error(c, "devnet_revert").code == -32602
        assert rpc_error(c, "devnet_snapshot", 1).code == -32602


def test_revert_after_restart(node_factory):
    node = node_factory("--mining", "manual", *FAST)
    node.start()
    with node.client() as c:
        c.call("mine")
        before = _state(c)
        snap = c.call("devnet_snapshot")["id"]
        c.transfer(ALICE, BOB.address, 10, wait=False)
        c.call("mine", [3])
    assert node.stop() == 0
    node.start()
    with node.client() as c:
        assert height(c) == 4
        assert c.call("devnet_revert", [snap])["height"] == 1
        assert _state(c) == before
    node.kill()  # a crash after the revert: it is on disk
    node.start()
    with node.client() as c:
        assert _state(c) == before
        c.call("mine")
        assert height(c) == 2


def test_crash_during_a_revert_leaves_the_store_consistent(node_factory):
    """SIGKILL while a large revert runs: the node comes back either before or after it, and
    its flat state hashes to its tip's state root (read_dump checks exactly that)."""
    node = node_factory("--mining", "manual", *FAST)
    node.start()
    with node.client() as c:
        snap = c.call("devnet_snapshot")["id"]
        for i in range(5):  # many changed keys after the snapshot
            for j in range(40):
                c.call("devnet_set_balance", ["0x" + f"{i:02x}{j:02x}" * 10, 1 + j])
            c.call("mine")
        top = _state(c)
    import threading
    import urllib.request
    req = urllib.request.Request(node.url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "devnet_revert",
                                                       "params": [snap]}).encode(),
                                 {"Content-Type": "application/json"})
    threading.Thread(target=lambda: _ignore(lambda: urllib.request.urlopen(req, timeout=5)), daemon=True).start()
    time.sleep(0.02)
    node.kill()
    node.start()
    with node.client() as c:
        now = _state(c)
        assert now["height"] in (0, top["height"])
        read_dump(c.call("devnet_dump"))  # the flat state matches the tip's state root
        if now["height"] == top["height"]:
            assert now == top
            assert c.call("devnet_revert", [snap])["height"] == 0
        assert c.balance("0x" + "0000" * 10) == 0


def _ignore(fn) -> None:
    try:
        fn()
    except Exception:
        pass


# ---- time ----------------------------------------------------------------------------------

def test_set_time_and_increase_time(node_factory):
    node = node_factory("--mining", "manual", *FAST).start()
    with node.client() as c:
        c.transfer(ALICE, BOB.address, 1, wait=False)
        c.call("mine")
        tip = c.block()["header"]["time_ms"]
        target = tip + 10 * 24 * 3600 * 1000  # ten days on
        assert c.call("devnet_set_time", [target]) == {"next_block_time_ms": target}
        c.call("mine")
        assert c.block()["header"]["time_ms"] == target
        # a contract sees the block time
        r = c.call("devnet_increase_time", [3_600_000])
        assert r["next_block_time_ms"] >= target + 3_600_000
        deploy_and_stamp = _deploy_stamp(c)
        assert deploy_and_stamp >= target + 3_600_000
        assert c.block()["header"]["time_ms"] == deploy_and_stamp
        # time never goes back: at or below the latest block's time is refused
        latest = c.block()["header"]["time_ms"]
        for t in (latest, latest - 1, 0):
            e = rpc_error(c, "devnet_set_time", t)
            assert e.code == -32602 and "only increase" in e.message
        for junk in (-1, "soon", 1.5, None, 2**64):
            assert rpc_error(c, "devnet_set_time", junk).code == -32602
        for junk in (-5, "1", 0.5, 2**64):
            assert rpc_error(c, "devnet_increase_time", junk).code == -32602
        assert c.call("devnet_increase_time", [0])["next_block_time_ms"] > latest


def _deploy_stamp(c: Client) -> int:
    """Deploy STAMP, call stamp() in its own block (manual mode: mine), return what it stored."""
    import threading
    out: dict = {}

    def deploy() -> None:
        out["d"] = c2.deploy(ALICE, STAMP)
    c2 = Client(c.url)
    t = threading.Thread(target=deploy)
    t.start()
    wait_until(lambda: c.status()["mempool_size"] == 1, 10, "the deploy in the mempool")
    c.call("mine")
    t.join(10)
    addr = out["d"]["address"]

    def send() -> None:
        out["s"] = c2.send(ALICE, addr, "stamp")
    t = threading.Thread(target=send)
    t.start()
    wait_until(lambda: c.status()["mempool_size"] == 1, 10, "the call in the mempool")
    c.call("mine")
    t.join(10)
    c2.close()
    assert out["s"]["result"] == c.storage(addr, "t")
    return out["s"]["result"]


# ---- balances --------------------------------------------------------------------------------

def test_set_balance(devnet):
    with devnet.client() as c:
        r = c.call("devnet_set_balance", [NOBODY, 5 * COIN])  # instant mode: a block at once
        assert r["pending"] is False and r["balance"] == 5 * COIN
        info = c.account(NOBODY, prove=True)
        assert info.balance == 5 * COIN and info.height >= r["height"]
        # the block that holds it commits to it: a proof against that block's state root (the SDK checks it)
        assert c.account(NOBODY, height=r["height"], prove=True).balance == 5 * COIN
        assert c.account(NOBODY, height=r["height"] - 1).balance == 0
        # the nonce is kept; zero deletes an empty account
        c.transfer(ALICE, BOB.address, 1)
        c.call("devnet_set_balance", [ALICE.address.hex(), 3])
        a = c.account(ALICE.address)
        assert (a.balance, a.nonce) == (3, 1)
        c.call("devnet_set_balance", [NOBODY, 0])
        assert c.balance(NOBODY) == 0
        # the funds are real: the account can send
        key = PrivateKey.from_label("set balance test")
        c.call("devnet_set_balance", [address_hex(key.address), COIN])
        assert c.transfer(key, BOB.address, 1000)["receipt"]["status"] == "success"
        for params in ([NOBODY, -1], [NOBODY, 2**64], [NOBODY, "5"], [NOBODY, 1.5], ["0x12", 5], [5, 5], [NOBODY],
                       [NOBODY, 5, 6]):
            assert rpc_error(c, "devnet_set_balance", *params).code == -32602, params
        e = rpc_error(c, "devnet_set_balance", NOBODY, 2**64 - 1)  # over the devnet's supply limit
        assert e.code == -32602 and "limit" in e.message


def test_set_balance_waits_for_the_next_block_in_manual_mode(node_factory):
    node = node_factory("--mining", "manual", *FAST).start()
    with node.client() as c:
        r = c.call("devnet_set_balance", [NOBODY, 42])
        assert r == {"address": NOBODY, "balance": 42, "height": None, "pending": True}
        assert c.balance(NOBODY) == 0 and height(c) == 0
        c.call("mine")
        assert c.balance(NOBODY) == 42
        assert c.account(NOBODY, height=1).balance == 42  # in block 1's state root


# ---- dump and load ----------------------------------------------------------------------------

def test_dump_load_round_trip(node_factory):
    node = node_factory("--mining", "manual", *FAST).start()
    with node.client() as c:
        c.transfer(ALICE, BOB.address, 12345, wait=False)
        c.call("devnet_set_balance", [NOBODY, 99])
        c.call("mine")
        doc = c.call("devnet_dump")
        assert doc["version"] == 1 and doc["format"] == "gradchain-state-dump" and doc["height"] == 1
        assert doc["state_root"] == c.block()["header"]["state_root"]
        dumped = read_dump(doc)
        balances = [c.balance(a) for a in (ALICE.address, BOB.address, NOBODY)]
        c.transfer(BOB, ALICE.address, 777, wait=False)
        c.call("devnet_set_balance", [NOBODY, 1])
        c.call("mine", [2])
    other = node_factory("--mining", "manual", *FAST, name="other").start()
    with other.client() as c:
        r = c.call("devnet_load", [doc])
        assert r == {"version": 1, "current_version": 1, "entries": len(doc["entries"]), "height": None,
                     "pending": True}
        c.call("mine")
        assert [c.balance(a) for a in (ALICE.address, BOB.address, NOBODY)] == balances
        assert c.account(ALICE.address).nonce == 1
        after = read_dump(c.call("devnet_dump")).entries
        changed = {k for k in set(after) | set(dumped.entries) if after.get(k) != dumped.entries.get(k)}
        assert all(k[:1] == b"v" or k == b"a" + _validator(c) for k in changed), changed  # the block reward only
    with node.client() as c:  # loading into the node it came from takes it back
        c.call("devnet_load", {"dump": doc})
        c.call("mine")
        assert [c.balance(a) for a in (ALICE.address, BOB.address, NOBODY)] == balances


def _validator(c: Client) -> bytes:
    return bytes.fromhex(c.status()["validator"][2:])


def test_load_the_version_1_fixture(devnet):
    """tests/data/devnet_dump_v1.json was written by the first version of the format: every
    later release must still load it."""
    doc = json.loads(FIXTURE.read_text())
    assert doc["version"] == 1
    fixture = read_dump(doc)
    with devnet.client() as c:
        r = c.call("devnet_load", [doc])
        assert r["version"] == 1 and r["pending"] is False
        for k, v in fixture.entries.items():
            if k[:1] == b"c":  # the contract came back with its code and storage
                addr = "0x" + k[1:].hex()
                assert "def stamp" in c.code(addr)["source"]
                assert c.storage(addr, "t") == FIXTURE_STAMP
        assert c.balance(NOBODY) == 4242


FIXTURE_STAMP = 1_800_000_000_000  # what the fixture's contract stored (tests/data/make_devnet_dump_v1.py)


def test_load_refuses_junk(devnet):
    doc = json.loads(FIXTURE.read_text())
    with devnet.client() as c:
        cases = [None, 5, "x", [], {}, {"format": "gradchain-state-dump"}, dict(doc, version=99),
                 dict(doc, version="1"), dict(doc, extra=1), dict(doc, entries="x"),
                 dict(doc, entries=doc["entries"][:-1]),  # cut: the root no longer matches
                 dict(doc, entries=doc["entries"] + [doc["entries"][0]]),
                 dict(doc, entries=[["zz", "00"]]), dict(doc, entries=[["ff00", "00"]]),
                 dict(doc, entries=[[1, 2]]), dict(doc, state_root="00")]
        for junk in cases:
            e = rpc_error(c, "devnet_load", junk)
            assert e.code == -32602 and "dump" in e.message, (junk if not isinstance(junk, dict) else sorted(junk))
        e = rpc_error(c, "devnet_load", dict(doc, version=99))
        assert "version 99 is unknown" in e.message
        assert rpc_error(c, "devnet_load").code == -32602


# ---- refused where it is not a one-validator devnet ------------------------------------------------

CONTROLS = [("mine", []), ("devnet_snapshot", []), ("devnet_revert", [1]), ("devnet_set_time", [10**13]),
            ("devnet_increase_time", [1000]), ("devnet_set_balance", [NOBODY, 1]), ("devnet_dump", []),
            ("devnet_load", [{}])]


def test_every_control_is_refused_on_a_multi_validator_chain(tmp_path):
    keys = [PrivateKey.from_label(f"devnet test validator {i}") for i in range(2)]
    nodes = validator_processes(tmp_path, keys)
    first = nodes[0]
    first.start()  # its RPC answers while it waits for its peer
    try:
        with first.client() as c:
            for name, params in CONTROLS + [("mine", ["junk"]), ("devnet_revert", ["junk"])]:
                e = rpc_error(c, name, *params)
                assert e.code == -32010, (name, e.code)
                assert "not a one-validator devnet" in e.message and e.data["validators"] == 2
    finally:
        first.kill()
