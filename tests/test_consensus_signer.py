"""Double-sign protection: the FilePV rules, across restarts, crashes and concurrent signers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.signer import (
    CRASH_ENV,
    NIL,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    DoubleSignRefused,
    Signer,
    SignerError,
    SignerLocked,
    SignerStateCorrupt,
    SignerStateMismatch,
    SignRegression,
    SignState,
    decode_state,
    encode_state,
    proposal_payload,
)
from ledger.votes import PRECOMMIT, PREVOTE, sign_vote, vote_payload
from ledger.keys import VOTE_DOMAIN, PrivateKey, verify

ROOT = Path(__file__).resolve().parent.parent
CHAIN = "signer-test"
KEY = PrivateKey.from_label("signer-test-validator")
A = b"\xaa" * 32
B = b"\xbb" * 32


@pytest.fixture
def path(tmp_path):
    return tmp_path / "priv_validator_state"


def open_signer(path: Path, key: PrivateKey = KEY, chain: str = CHAIN) -> Signer:
    return Signer(key, chain, path)


def test_signatures_are_the_votes_validators_sign(path):
    with open_signer(path) as s:
        sig = s.sign_vote(PREVOTE, 1, 0, A)
        assert sig == sign_vote(KEY, CHAIN, PREVOTE, 1, 0, A)
        assert verify(KEY.public_key, sig, VOTE_DOMAIN, CHAIN, vote_payload(PREVOTE, 1, 0, A))
        psig = s.sign_proposal(2, 0, -1, A)
        assert verify(KEY.public_key, psig, VOTE_DOMAIN, CHAIN, proposal_payload(2, 0, -1, A))


def test_proposal_payload_never_equals_a_vote_payload():
    for t in (PREVOTE, PRECOMMIT):
        assert proposal_payload(1, 0, -1, A) != vote_payload(t, 1, 0, A)


def test_steps_in_a_round_go_up_and_a_nil_vote_is_a_value(path):
    with open_signer(path) as s:
        s.sign_proposal(1, 0, -1, A)
        assert s.state.step == STEP_PROPOSE
        s.sign_vote(PREVOTE, 1, 0, A)
        assert s.state.step == STEP_PREVOTE
        s.sign_vote(PRECOMMIT, 1, 0, NIL)
        assert s.state.step == STEP_PRECOMMIT
        assert s.sign_vote(PRECOMMIT, 1, 0, None) == sign_vote(KEY, CHAIN, PRECOMMIT, 1, 0, NIL)
        with pytest.raises(DoubleSignRefused):
            s.sign_vote(PRECOMMIT, 1, 0, A)  # nil then a block at one step is a double sign
        s.sign_vote(PREVOTE, 1, 1, B)  # next round: any value


def test_same_step_same_bytes_resigns_identically(path):
    with open_signer(path) as s:
        first = s.sign_vote(PRECOMMIT, 3, 1, A)
        assert s.sign_vote(PRECOMMIT, 3, 1, A) == first
        p = s.sign_proposal(4, 2, 1, B)
        assert s.sign_proposal(4, 2, 1, B) == p


def test_same_step_different_bytes_refused(path):
    with open_signer(path) as s:
        s.sign_vote(PREVOTE, 3, 1, A)
        with pytest.raises(DoubleSignRefused, match="height 3 round 1"):
            s.sign_vote(PREVOTE, 3, 1, B)
        s.sign_proposal(5, 0, -1, A)
        with pytest.raises(DoubleSignRefused):
            s.sign_proposal(5, 0, -1, B)
        s.sign_proposal(6, 3, -1, A)
        with pytest.raises(DoubleSignRefused):  # same block, other POL round: other bytes
            s.sign_proposal(6, 3, 2, A)


@pytest.mark.parametrize("lower", [
    (PRECOMMIT, 9, 5),  # lower height
    (PRECOMMIT, 10, 1),  # same height, lower round
    (PREVOTE, 10, 2),  # same height and round, lower step
])
def test_regression_refused(path, lower):
    with open_signer(path) as s:
        s.sign_vote(PRECOMMIT, 10, 2, A)
        with pytest.raises(SignRegression, match="below the last signed"):
            s.sign_vote(*lower, A)
        with pytest.raises(SignRegression):
            s.sign_proposal(10, 2, -1, A)  # the proposal step comes before the votes
        assert s.state.hrs == (10, 2, STEP_PRECOMMIT)


def test_refusals_leave_the_state_file_unchanged(path):
    with open_signer(path) as s:
        s.sign_vote(PREVOTE, 2, 0, A)
        before = path.read_bytes()
        for bad in ((PREVOTE, 2, 0, B), (PREVOTE, 1, 0, A)):
            with pytest.raises(SignerError):
                s.sign_vote(*bad)
        assert path.read_bytes() == before


def test_bad_arguments_are_value_errors_and_sign_nothing(path):
    with open_signer(path) as s:
        for args in ((3, 1, 0, A), (PREVOTE, 0, 0, A), (PREVOTE, 1, -1, A), (PREVOTE, 1, 0, b"x"),
                     (PREVOTE, True, 0, A)):
            with pytest.raises(ValueError):
                s.sign_vote(*args)
        with pytest.raises(ValueError):
            s.sign_proposal(1, 0, 0, A)  # the POL round must be earlier than the round
        with pytest.raises(ValueError):
            s.sign_proposal(1, 0, -1, NIL)  # nobody proposes nil
    assert not path.exists()


def test_restart_keeps_the_rules(path):
    with open_signer(path) as s:
        sig = s.sign_vote(PREVOTE, 7, 3, A)
    with open_signer(path) as s:
        assert s.state.hrs == (7, 3, STEP_PREVOTE)
        assert s.sign_vote(PREVOTE, 7, 3, A) == sig
        with pytest.raises(DoubleSignRefused):
            s.sign_vote(PREVOTE, 7, 3, B)
        with pytest.raises(SignRegression):
            s.sign_vote(PRECOMMIT, 7, 2, A)
        s.sign_vote(PRECOMMIT, 7, 3, B)
    with open_signer(path) as s, pytest.raises(DoubleSignRefused):
        s.sign_vote(PRECOMMIT, 7, 3, A)


def test_missing_file_is_fresh_and_closed_signer_refuses(path):
    s = open_signer(path)
    assert s.state == SignState()
    s.close()
    with pytest.raises(SignerError, match="closed"):
        s.sign_vote(PREVOTE, 1, 0, A)


def _good_state_file(path: Path) -> bytes:
    with open_signer(path) as s:
        s.sign_vote(PREVOTE, 4, 0, A)
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "flipped"])
def test_corrupt_state_file_refuses_to_start(path, damage):
    good = _good_state_file(path)
    bad = {"empty": b"", "truncated": good[:-5], "garbage": b"\x00not a state file",
           "flipped": good[:20] + bytes([good[20] ^ 1]) + good[21:]}[damage]
    path.write_bytes(bad)
    with pytest.raises(SignerStateCorrupt, match="refusing to start"):
        open_signer(path)
    # the failed start released its lock: once repaired, the file opens
    path.write_bytes(good)
    with open_signer(path) as s:
        assert s.state.hrs == (4, 0, STEP_PREVOTE)


def test_every_single_byte_flip_is_refused(path):
    good = _good_state_file(path)
    for i in range(len(good)):
        bad = good[:i] + bytes([good[i] ^ 0x10]) + good[i + 1:]
        with pytest.raises((SignerStateCorrupt, SignerStateMismatch)):
            decode_state(bad, KEY.address, CHAIN)


def test_state_of_another_key_or_chain_refuses_to_start(path):
    _good_state_file(path)
    with pytest.raises(SignerStateMismatch, match="another validator key or chain"):
        open_signer(path, key=PrivateKey.from_label("someone else"))
    with pytest.raises(SignerStateMismatch):
        open_signer(path, chain="other-chain")


def test_state_encoding_round_trips():
    st = SignState(12, 3, STEP_PRECOMMIT, b"\x01" * 32)
    assert decode_state(encode_state(st, KEY.address, CHAIN), KEY.address, CHAIN) == st


def test_second_signer_on_one_path_is_refused(path):
    s = open_signer(path)
    with pytest.raises(SignerLocked, match="another signer"):
        open_signer(path)
    s.close()
    open_signer(path).close()


CHILD = """
import sys
from consensus.signer import Signer
from ledger.votes import PREVOTE
from ledger.keys import PrivateKey
s = Signer(PrivateKey.from_label("signer-test-validator"), "signer-test", sys.argv[1])
sig = s.sign_vote(PREVOTE, int(sys.argv[2]), 0, bytes.fromhex(sys.argv[3]))
print("SIGNED", sig.hex(), flush=True)
"""


def run_child(path: Path, height: int, block_hash: bytes, crash: str = "",
              hold: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run([sys.executable, "-c", CHILD, str(path), str(height), block_hash.hex()],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)


def test_child_process_signs_normally(path):
    r = run_child(path, 5, A)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["SIGNED", sign_vote(KEY, CHAIN, PREVOTE, 5, 0, A).hex()]


def test_crash_after_persist_never_permits_a_conflicting_signature(path):
    r = run_child(path, 5, A, crash="after_persist")
    assert r.returncode == -signal.SIGKILL
    assert "SIGNED" not in r.stdout
    # The signature may or may not have left the process: either way only A is signable.
    with open_signer(path) as s:
        with pytest.raises(DoubleSignRefused):
            s.sign_vote(PREVOTE, 5, 0, B)
        with pytest.raises(SignRegression):
            s.sign_vote(PREVOTE, 4, 0, B)
        assert s.sign_vote(PREVOTE, 5, 0, A) == sign_vote(KEY, CHAIN, PREVOTE, 5, 0, A)
    # and so is a second child process
    r = run_child(path, 5, B)
    assert r.returncode != 0 and "DoubleSignRefused" in r.stderr


def test_crash_before_replace_leaves_the_old_state_whole(path):
    assert run_child(path, 5, A).returncode == 0
    r = run_child(path, 6, A, crash="before_replace")
    assert r.returncode == -signal.SIGKILL
    # Height 6 was never persisted, so it was never signed: the old state rules, whole.
    with open_signer(path) as s:
        assert s.state.hrs == (5, 0, STEP_PREVOTE)
        with pytest.raises(DoubleSignRefused):
            s.sign_vote(PREVOTE, 5, 0, B)
        s.sign_vote(PREVOTE, 6, 0, B)  # a fresh value at 6 is safe: nothing left for 6 before


def test_signer_held_by_another_process_is_refused(path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys; from consensus.signer import Signer; from ledger.keys import PrivateKey;"
          "s = Signer(PrivateKey.from_label('signer-test-validator'), 'signer-test', sys.argv[1]);"
          "print('READY', flush=True); sys.stdin.read()"), str(path)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "READY"
        with pytest.raises(SignerLocked):
            open_signer(path)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdin.close()
        holder.stdout.close()
    open_signer(path).close()  # the lock dies with its process
