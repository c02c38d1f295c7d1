"""Four validators as separate node.py processes over real TCP on loopback (issue 5).

The files come from net/testnet.py (what `gradchain testnet` writes); ports are free
loopback ports.  The nodes finalise a transfer, agree on the block hash at every height,
keep finalising with one of them killed (3 of 4 equal stakes is over 2/3), finalise nothing
more with two of them killed, and resume when one comes back (it catches up by block sync);
an unbond and a bond change the set at H+2 on every process; gossiped transactions come in
batches."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from ledger.genesis import COIN, devnet_keys
from ledger.keys import PrivateKey
from net.testnet import TESTNET_STAKE, make_testnet
from tests.nodeproc import check_agreement, heights, validator_processes, wait_until

N = 4
KEYS = [PrivateKey.from_label(f"testnet test validator {i}") for i in range(N)]
USERS = devnet_keys(2)
BACK = 1000  # base units the leaver bonds again (paid by its block rewards)


@pytest.fixture
def testnet(tmp_path):
    nodes = validator_processes(tmp_path / "tn", KEYS)
    try:
        for n in nodes:
            n.start()
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def test_four_processes_finalise_survive_one_crash_stop_at_two_resume_at_three(testnet):
    nodes = testnet
    wait_until(lambda: min(heights(nodes)) >= 2, 25, "height 2 on every node")
    with nodes[1].client() as c:
        r = c.transfer(USERS[0], USERS[1].address, 12345, timeout=20)
    tx_height = r["height"]
    wait_until(lambda: min(heights(nodes)) >= tx_height, 15, "the transfer's block on every node")
    block_hashes = set()
    for n in nodes:  # every node executed the transfer in the same block
        with n.client() as c:
            assert c.tx(r["hash"])["height"] == tx_height
            assert r["hash"] in c.block(tx_height)["tx_hashes"]
            block_hashes.add(c.block(tx_height)["header"]["hash"])
            assert c.balance(USERS[1].address) == c.balance(USERS[1].address, height=tx_height - 1) + 12345
    assert len(block_hashes) == 1
    check_agreement(nodes)

    nodes[3].kill()
    live = nodes[:3]
    before = max(heights(live))
    wait_until(lambda: min(heights(live)) >= before + 2, 25, "two more blocks with one node down")
    check_agreement(live)

    nodes[2].kill()  # 2 of 4 equal stakes is not over 2/3: nothing may be finalised any more
    live = nodes[:2]
    time.sleep(1.0)  # a block decided just before the kill may still be committing
    stalled = heights(live)
    time.sleep(4.0)  # 20 block times; rounds keep timing out and moving on without a quorum
    assert heights(live) == stalled, "a block was finalised by half of the stake"
    check_agreement(live)

    nodes[2].start()  # back to 3 of 4: blocks resume, and the restarted node catches up (net/sync.py)
    live = nodes[:3]
    wait_until(lambda: min(heights(live[:2])) >= max(stalled) + 2, 30, "blocks again after the restart")
    wait_until(lambda: heights(live)[2] >= max(stalled) + 2, 30, "the restarted node caught up")
    check_agreement(live)


def test_testnet_command_writes_genesis_keys_and_commands(tmp_path, capsys):
    from ledger.genesis import load_genesis
    from ledger.keys import load_key
    from gradchain.cli import main
    from node import parse_args
    out = tmp_path / "net"
    assert main(["testnet", "-n", "4", "--out", str(out), "--rpc-port", "9000", "--p2p-port", "9100"]) == 0
    text = capsys.readouterr().out
    g = load_genesis(out / "genesis.json")
    assert len(g.validators.validators) == 4 and {v.stake for v in g.validators.validators} == {TESTNET_STAKE}
    assert TESTNET_STAKE >= max(b for _, b in g.accounts)  # no dev account alone outweighs a validator
    keys = [load_key(out / f"node{i}" / "key.json") for i in range(4)]
    assert {k.public_key for k in keys} == {v.public_key for v in g.validators.validators}
    cmds = [line.split("python node.py ", 1)[1].split() for line in text.splitlines() if "python node.py" in line]
    assert len(cmds) == 4
    for i, argv in enumerate(cmds):
        cfg = parse_args(argv)
        assert (cfg.rpc_port, cfg.p2p_port, cfg.key) == (9000 + i, 9100 + i, out / f"node{i}" / "key.json")
        assert sorted(cfg.peers) == sorted(f"{k.public_key.hex()}@127.0.0.1:{9100 + j}"
                                           for j, k in enumerate(keys) if j != i)
    assert (out / "start.sh").stat().st_mode & 0o100
    assert main(["testnet", "-n", "4", "--out", str(out)]) == 1  # never overwrites keys
    assert "already holds a testnet" in capsys.readouterr().err


def test_gossiped_transactions_are_admitted_in_batches_and_junk_drops_the_peer(tmp_path):
    """The mempool reactor's "tx" handler: a list of raw transactions, admitted in one submit; anything
    else is a BadMessage (p2p drops the peer that sent it)."""
    import asyncio

    from ledger.hashing import hash_bytes
    from ledger.tx import transfer
    from net.p2p import BadMessage
    from net.mempool_reactor import GOSSIP_TX_BATCH
    from node import Node, NodeConfig

    gpath, tn = make_testnet(N, tmp_path / "tn", int(time.time() * 1000), keys=KEYS)
    node = Node(NodeConfig(data_dir=tn[0].data_dir, genesis=gpath, key=tn[0].key_file, verify_workers=0,
                           quiet=True))
    try:
        chain_id = node.chain.chain_id
        txs = [transfer(USERS[0], chain_id, n, USERS[1].address, 1).raw for n in range(3)]
        bad_sig = bytearray(transfer(USERS[1], chain_id, 0, USERS[0].address, 1).raw)
        bad_sig[-1] ^= 1
        peer = KEYS[1].public_key
        for junk in (txs[0], [], [txs[0], "text"], None, [b"\x00"] * (GOSSIP_TX_BATCH + 1), {"tx": txs[0]}):
            with pytest.raises(BadMessage):
                asyncio.run(node.mempool_reactor.on_tx(peer, junk))
        assert len(node.mempool) == 0
        assert asyncio.run(node.mempool_reactor.on_tx(peer, txs + [bytes(bad_sig), b"junk bytes"])) is False
        assert len(node.mempool) == 3 and all(hash_bytes(r) in node.mempool for r in txs)
    finally:
        node.close()



def test_unbond_and_bond_change_the_set_at_h_plus_2_on_every_node(testnet):
    """Validator 3 leaves (unbonds its whole stake), then comes back (bonds what its block
    rewards paid it): on every process the headers name the new set from exactly the height
    after next, and the leaver signs no commit in between (three of three sign meanwhile).
    Then the README's `gradchain bond --key dev:1 --amount 1000` (dev:1 runs no node) is
    sent without --force and the chain goes on."""
    from ledger.keys import address_hex
    from tests.test_cli import cli_json

    nodes = testnet
    wait_until(lambda: min(heights(nodes)) >= 2, 25, "height 2 on every node")  # block rewards pay the fees
    leaver = KEYS[3]
    addr = address_hex(leaver.address)
    with nodes[0].client() as c:
        out = c.unbond(leaver, TESTNET_STAKE, timeout=20)["height"]
        wait_until(lambda: min(heights(nodes)) >= out + 2, 20, "two blocks after the unbond")
        back = c.bond(leaver, BACK, timeout=20)["height"]
    wait_until(lambda: min(heights(nodes)) >= back + 3, 20, "three blocks after the bond")
    for n in nodes:
        with n.client() as c:
            hashes = {h: c.block(h)["header"]["validators_hash"] for h in range(out, back + 3)}
            assert hashes[out] == hashes[out + 1] != hashes[out + 2]          # gone from out + 2
            assert hashes[out + 2] == hashes[back + 1] != hashes[back + 2]     # back (stake BACK) from back + 2
            assert c.validators(out + 1).signing_stake(addr) == TESTNET_STAKE
            assert c.validators(out + 2).signing_stake(addr) == 0
            assert c.validators(back + 2).signing_stake(addr) == BACK
            for h in range(out + 2, back + 2):
                sigs = {s["validator"] for s in c.block(h)["commit"]["signatures"]}
                assert addr not in sigs and len(sigs) == 3, h
    check_agreement(nodes)

    bonded = cli_json("bond", "--key", "dev:1", "--amount", "1000", url=nodes[0].url)["height"]  # no --force
    wait_until(lambda: min(heights(nodes)) >= bonded + 3, 20, "blocks after dev:1 bonded 1000 GRAD")
    with nodes[0].client() as c:
        assert c.validators(bonded + 2).signing_stake(address_hex(USERS[1].address)) == 1000 * COIN
    check_agreement(nodes)


def test_a_relative_out_dir_gives_a_start_script_that_runs_from_anywhere(tmp_path, monkeypatch):
    """start.sh cds to the checkout, so every path it names must be absolute (a relative
    --out used to point it at files under the checkout that do not exist)."""
    import shlex
    from net.testnet import make_testnet
    monkeypatch.chdir(tmp_path)
    gpath, nodes = make_testnet(2, Path("rel") / "net", 0)
    assert gpath == tmp_path / "rel" / "net" / "genesis.json" and gpath.is_absolute()
    script = (tmp_path / "rel" / "net" / "start.sh").read_text()
    paths = [w for line in script.splitlines() if "node.py" in line for w in shlex.split(line)
             if "rel/net" in w]
    assert paths and all(Path(w.split("=")[-1]).is_absolute() for w in paths), script
    for w in paths:
        named = Path(w.split("=")[-1])
        assert named.parent.exists(), named  # the genesis, the keys, the data dirs' parent, the logs
