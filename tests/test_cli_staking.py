"""Staking from the command line (`gradchain bond`, `unbond`, `validators`, `evidence`) and
the SDK (Client.bond, unbond, submit_evidence, validators), against one real node process
whose genesis shortens the unbonding delay and pays no block reward (so balances are exact)."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from ledger.genesis import COIN, devnet_genesis, devnet_keys, devnet_validator_key
from ledger.evidence import DuplicateVoteEvidence, EvidenceError
from ledger.evidence import encode as evidence_encode
from ledger.keys import PrivateKey, address_hex, save_key
from ledger.params import ChainParams
from ledger.tx import INTRINSIC_GAS, TxKind
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PREVOTE, SignedVote, Vote, sign_vote
from gradchain import Client, StakingFailed
from tests.nodeproc import NodeProcess, free_port
from tests.test_cli import cli, cli_json, fails

UNBONDING = 40  # blocks (8 s at 0.2 s a block); also the age evidence may have: a CLI start on busy cores fits
BOND_FEE = INTRINSIC_GAS[TxKind.BOND]  # at gas price 1 (UNBOND costs the same)
DEV = devnet_keys(4)
DEV1, DEV3 = address_hex(DEV[1].address), address_hex(DEV[3].address)
VALIDATOR = address_hex(devnet_validator_key().address)


def double_sign(key: PrivateKey, chain_id: str, height: int) -> bytes:
    """Evidence bytes: `key` prevoted for two different blocks at (height, round 0)."""
    votes = [SignedVote(Vote(PREVOTE, height, 0, block, key.address), sign_vote(key, chain_id, PREVOTE, height, 0, block))
             for block in (b"\x01" * 32, b"\x02" * 32)]
    return evidence_encode(DuplicateVoteEvidence.of(*votes))


def rows(text: str) -> dict[str, str]:
    """The `Key: value` lines of the CLI's text output."""
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def wait_height(c: Client, height: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while c.status()["height"] < height:
        assert time.monotonic() < deadline, f"the chain did not reach block {height}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A one-validator chain (the devnet's accounts and validator) with short unbonding."""
    d = tmp_path_factory.mktemp("cli-staking")
    g = dataclasses.replace(devnet_genesis(int(time.time() * 1000)),
                            params=ChainParams(block_reward=0, unbonding_blocks=UNBONDING))
    (d / "genesis.json").write_text(json.dumps(g.to_json()))
    save_key(devnet_validator_key(), d / "validator.json")
    proc = NodeProcess(d / "node", "--genesis", str(d / "genesis.json"), "--key", str(d / "validator.json"),
                       block_time=0.2).start()
    try:
        yield proc.url
    finally:
        proc.kill()


def test_bad_input_is_refused_before_anything_is_sent(tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: these must fail before any RPC
    assert "a staked amount must be more than 0" in fails("bond", "--key", "dev:1", "--amount", "0", url=nowhere)
    assert "cannot be negative" in fails("unbond", "--key", "dev:1", "--amount", "-1", url=nowhere)
    assert "required" in fails("bond", "--key", "dev:1", url=nowhere)
    assert "does not exist" in fails("evidence", "--key", "dev:2", str(tmp_path / "none.hex"), url=nowhere)
    bad = tmp_path / "bad.hex"
    bad.write_text("not hex\n")
    assert "does not hold hex" in fails("evidence", "--key", "dev:2", str(bad), url=nowhere)
    bad.write_text("0x93a4c0ffee\n")
    assert "holds no valid evidence" in fails("evidence", "--key", "dev:2", str(bad), url=nowhere)
    same = double_sign(DEV[1], "c", 5).hex().replace("01" * 32, "02" * 32)  # both votes for one block
    bad.write_text(same)
    assert "no valid evidence" in fails("evidence", "--key", "dev:2", str(bad), url=nowhere)
    with Client(nowhere) as c:
        with pytest.raises(ValueError, match="staked amount"):
            c.bond(DEV[1], 0)
        with pytest.raises(EvidenceError):
            c.submit_evidence(DEV[1], b"\x90")


def test_bond_unbond_slash(url, tmp_path):
    with Client(url) as c:
        _bond_unbond_slash(c, url, tmp_path)


def _bond_unbond_slash(c: Client, url: str, tmp_path) -> None:
    chain_id = c.chain_id
    v = cli_json("validators", url=url)
    assert [x["address"] for x in v["validators"]] == [x["address"] for x in v["bonded"]] == [VALIDATOR]
    text = cli("validators", url=url).stdout
    assert f"  {VALIDATOR}  " in text and "1000000000 GRAD  100.0000%" in text

    # bond: in the bonded table at once, signing two blocks later; the balance pays amount + fee
    before = c.balance(DEV1)
    out = rows(cli("bond", "--key", "dev:1", "--amount", "1000", url=url).stdout)
    h = int(out["Block"])
    assert out["Status"] == "success" and out["Validator"] == DEV1
    assert out["Stake"] == f"1000 GRAD  (signing with it from block {h + 2})"
    assert c.balance(DEV1, h) == before - 1000 * COIN - BOND_FEE
    vs = c.validators(h)
    assert vs.bonded_stake_of(DEV1) == 1000 * COIN and vs.signing_stake(DEV1) == 0
    text = cli("validators", "--height", str(h), url=url).stdout
    assert f"Bonded after block {h}, signing from block {h + 2} (2 validators" in text
    assert f"{DEV1}" in text and "<0.0001%  new" in text
    wait_height(c, h + 2)
    assert c.validators(h + 1).signing_stake(DEV1) == 0 and c.validators(h + 2).signing_stake(DEV1) == 1000 * COIN
    assert DEV1 in {v.address for v in c.validators(h + 1).next}  # set(h + 2), seen from h + 1
    assert cli("tx", out["Hash"], url=url).stdout.count("1000 GRAD") == 1

    # unbond part: the stake drops at once, the funds come back UNBONDING blocks later
    funds = c.balance(DEV1)
    out = rows(cli("unbond", "--key", "dev:1", "--amount", "400", url=url).stdout)
    u = int(out["Block"])
    assert out["Stake"] == f"600 GRAD  (signing with it from block {u + 2})"
    assert out["Paid back"] == f"400 GRAD at the end of block {u + UNBONDING}"
    assert c.validators(u).bonded_stake_of(DEV1) == 600 * COIN
    assert c.validators(u).signing_stake(DEV1) == 1000 * COIN  # set(u) was fixed two blocks before

    # more than bonded, or not a validator: a failed receipt, its reason on one error line
    err = fails("unbond", "--key", "dev:1", "--amount", "5000", url=url)
    assert err.startswith("error: unbond of 5000 GRAD (5000000000000 units) failed: cannot unbond "
                          "5000000000000: the stake is 600000000000; transaction ")
    assert "fee paid (50000 gas)" in err
    with pytest.raises(StakingFailed) as e:
        c.unbond(DEV[3], 1)
    assert e.value.message == "the sender is not a bonded validator"
    assert e.value.receipt["status"] == "failed" and c.tx(e.value.tx_hash)["height"] == e.value.height
    assert c.validators().bonded_stake_of(DEV1) == 600 * COIN

    # the unbonded 400 GRAD are paid back at the end of block u + UNBONDING, not before
    wait_height(c, u + UNBONDING)
    fees = 2 * BOND_FEE  # the unbond and the refused unbond of 5000 (dev:1 sent nothing else)
    assert c.balance(DEV1, u + UNBONDING - 1) == funds - fees
    assert c.balance(DEV1, u + UNBONDING) == funds - fees + 400 * COIN

    # the evidence of a double signature: slashed (5% burned), out of the table at once
    evh = c.status()["height"]
    ev_file = str(tmp_path / "double-sign.hex")
    (tmp_path / "double-sign.hex").write_text("0x" + double_sign(DEV[1], chain_id, evh).hex() + "\n")
    out = rows(cli("evidence", "--key", "dev:2", ev_file, url=url).stdout)
    s = int(out["Block"])
    assert out["Slashed"] == DEV1 and out["Burned"] == "30 GRAD"
    assert out["Unbonding"] == f"570 GRAD  (paid back at the end of block {s + UNBONDING})"
    vs = c.validators(s)
    assert vs.bonded_stake_of(DEV1) == 0 and [x.address for x in vs.bonded] == [VALIDATOR]
    assert cli("tx", out["Hash"], url=url).stdout.count(f"{DEV1} signed two blocks at height {evh}") == 1
    err = fails("evidence", "--key", "dev:2", ev_file, url=url)
    assert "evidence failed: the double signer is not bonded" in err
    assert "may not bond again" in fails("bond", "--key", "dev:1", "--amount", "1", url=url)
    wait_height(c, s + 2)
    assert c.validators(s + 2).signing_stake(DEV1) == 0 and DEV1 not in cli("validators", url=url).stdout


def bond_on_a_terminal(url: str, answer: str, *args: str) -> str:
    """`gradchain bond ARGS` with a pseudo-terminal as stdin, `answer` typed: its stderr."""
    import os
    import subprocess
    import sys

    from tests.nodeproc import ROOT
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "gradchain.cli", "--rpc", url, "bond", *args], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        os.write(master, answer.encode())
        out, err = p.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 1 and "Bond anyway? [y/N]" in out and "warning: " in err, (out, err)
    return err


def test_bond_that_would_give_keys_without_a_node_a_third_is_refused_without_force(tmp_path):
    """A one-validator chain of 10,000 GRAD whose genesis lists a p2p address for dev:3 (so
    dev:3 counts as running a node; dev:1 and dev:2 run none).  A bond after which keys with
    no known node hold 1/3 or more of the stake is refused before anything is sent, naming
    them; on a terminal it asks, and "n" sends nothing; --force sends it."""
    from ledger.validators import Validator, ValidatorSet
    from gradchain.cli.staking import bond_stall_warning
    stake = 10_000 * COIN
    g = dataclasses.replace(devnet_genesis(int(time.time() * 1000)), params=ChainParams(block_reward=0),
                            validators=ValidatorSet((Validator(devnet_validator_key().public_key, stake),)),
                            peers=(f"{DEV[3].public_key.hex()}@127.0.0.1:1",))
    (tmp_path / "genesis.json").write_text(json.dumps(g.to_json()))
    save_key(devnet_validator_key(), tmp_path / "validator.json")
    proc = NodeProcess(tmp_path / "node", "--genesis", str(tmp_path / "genesis.json"), "--key",
                       str(tmp_path / "validator.json"), block_time=0.2).start()
    dev2 = address_hex(DEV[2].address)
    try:
        err = fails("bond", "--key", "dev:2", "--amount", "6000", url=proc.url)  # 6,000 of 16,000
        assert dev2 in err and "37.5%" in err and "--force" in err and "chain stops" in err
        with Client(proc.url) as c:
            assert c.account(DEV[2].address).nonce == 0 and c.validators().bonded_stake_of(dev2) == 0
        assert cli_json("bond", "--key", "dev:2", "--amount", "3000", url=proc.url)["stake"] == 3000 * COIN
        err = fails("bond", "--key", "dev:1", "--amount", "2000", url=proc.url)  # 5,000 of 15,000: exactly 1/3
        assert DEV1 in err and dev2 in err and "33.3%" in err
        with Client(proc.url) as c:
            assert bond_stall_warning(c, DEV[3], 2000 * COIN) is None  # dev:3 is a listed peer
            assert bond_stall_warning(c, DEV[1], 1999 * COIN) is None  # just under 1/3
        assert "bond not sent" in bond_on_a_terminal(proc.url, "n\n", "--key", "dev:1", "--amount", "2000")
        with Client(proc.url) as c:
            assert c.account(DEV[1].address).nonce == 0
        # forced: it is sent, and then the 10,000 GRAD validator holds only 2/3 (the chain stops)
        assert cli_json("bond", "--key", "dev:1", "--amount", "2000", "--force", url=proc.url)["stake"] == 2000 * COIN
    finally:
        proc.kill()


def test_a_solo_validator_outbonded_stops_with_a_clear_error(tmp_path):
    """A one-validator chain whose validator holds little stake: once a bond gives others a
    third of it, the solo engine cannot finalise a block alone.  The node says why and exits
    with status 1, no traceback."""
    g = devnet_genesis(int(time.time() * 1000))
    small = ValidatorSet((Validator(devnet_validator_key().public_key, 100 * COIN),))
    (tmp_path / "genesis.json").write_text(json.dumps(dataclasses.replace(g, validators=small).to_json()))
    save_key(devnet_validator_key(), tmp_path / "validator.json")
    node = NodeProcess(tmp_path / "node", "--genesis", str(tmp_path / "genesis.json"),
                       "--key", str(tmp_path / "validator.json"), block_time=0.2).start()
    try:
        with Client(node.url) as c:
            c.bond(DEV[1], 1000 * COIN)
        assert node.proc.wait(timeout=30) == 1
    finally:
        node.kill()
    text = node.log.read_text()
    assert "no longer holds more than 2/3 of the stake" in text and "stopped at height" in text, text
    assert "Traceback" not in text, text
