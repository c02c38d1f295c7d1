"""Issue 12 items 6, 8 and 12 (stall): what a hostile peer or a double-signing validator can
make a node check, keep or relay, and the stall report.  Real LMDB chains, real signatures,
the engines of tests/test_consensus_bft.py on a virtual clock; the reactor's handlers as p2p
calls them."""
from __future__ import annotations

import time

import pytest

from consensus import bft
from consensus.bft import InvalidMessage, Verdict
from consensus.machine import (MAX_FUTURE_ROUNDS, PROPOSAL_HORIZON, Proposal, StartHeight, Vote, new_state,
                               step)
from ledger.keys import PrivateKey
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, sign_vote
from net.consensus_reactor import attach, encode_vote
from net.p2p import NOT_HANDLED, BadMessage
from tests.test_consensus_bft import CHAIN, GENESIS, VKEYS, VSET, min_height

ADDRS = [k.address for k in VKEYS]


def signed(key: PrivateKey, vote_type: int, height: int, round_: int, value: bytes | None) -> SignedVote:
    return SignedVote(Vote(vote_type, height, round_, value, key.address),
                      sign_vote(key, CHAIN, vote_type, height, round_, b"" if value is None else value))


def bogus(sv: SignedVote, n: int = 1) -> SignedVote:
    return SignedVote(sv.vote, bytes([n % 256]) * 64)


def value(i: int) -> bytes:
    return i.to_bytes(32, "big")


# ---- item 6: nothing unchecked is kept or relayed --------------------------------------------

def test_next_height_messages_are_checked_before_they_are_held(cluster):
    _, _, (e,) = cluster([0])
    e.start()                                   # height 1: the next one (2) is held back
    good = signed(VKEYS[1], PREVOTE, 2, 0, value(1))
    with pytest.raises(InvalidMessage, match="bad signature"):
        e.receive(bogus(good))
    outsider = PrivateKey.from_label("not a validator")
    with pytest.raises(InvalidMessage, match="not a validator"):
        e.receive(signed(outsider, PREVOTE, 2, 0, value(1)))
    assert e._future == {}
    assert e.receive(good, b"peer") is Verdict.ACCEPTED
    # a copy, even with junk for a signature, is a dict lookup: ignored, never verified
    assert e.receive(bogus(good), b"peer") is Verdict.IGNORED
    assert e.receive(signed(VKEYS[1], PREVOTE, 3, 0, None)) is Verdict.AHEAD
    assert e.receive(signed(VKEYS[1], PREVOTE, 0, 0, None)) is Verdict.STALE
    assert len(e._future) == 1


def test_current_height_copies_and_an_equivocators_extra_votes_skip_the_signature_check(cluster):
    _, _, (e,) = cluster([0])
    e.start()
    first, second = signed(VKEYS[1], PREVOTE, 1, 0, value(1)), signed(VKEYS[1], PREVOTE, 1, 0, value(2))
    assert e.receive(first) is Verdict.ACCEPTED and e.receive(second) is Verdict.ACCEPTED
    assert e.receive(bogus(first)) is Verdict.IGNORED           # a copy
    assert e.receive(bogus(signed(VKEYS[1], PREVOTE, 1, 0, value(3)))) is Verdict.IGNORED  # slot full
    assert e.state.votes[(PREVOTE, 0)][ADDRS[1]] == (first.vote, second.vote)
    assert len(e.evidence) == 1                                  # the first conflicting pair


def test_the_held_back_queue_is_bounded_per_peer_and_in_total(cluster, monkeypatch):
    monkeypatch.setattr(bft, "MAX_FUTURE_PER_PEER", 5)
    monkeypatch.setattr(bft, "MAX_FUTURE_MESSAGES", 8)
    _, _, (e,) = cluster([0])
    e.start()
    votes = [signed(VKEYS[1 + i % 3], t, 2, i, value(i)) for i in range(12) for t in (PREVOTE,)]
    assert [e.receive(v, b"a") for v in votes[:6]] == [Verdict.ACCEPTED] * 5 + [Verdict.IGNORED]
    assert [e.receive(v, b"b") for v in votes[6:11]] == [Verdict.ACCEPTED] * 3 + [Verdict.IGNORED] * 2
    assert len(e._future) == 8 and e._future_bytes == 8 * bft.VOTE_BYTES
    monkeypatch.setattr(bft, "MAX_FUTURE_BYTES", 8 * bft.VOTE_BYTES)
    monkeypatch.setattr(bft, "MAX_FUTURE_MESSAGES", 100)
    assert e.receive(votes[11], b"c") is Verdict.IGNORED         # the byte bound


def test_held_votes_are_fed_once_their_height_starts(cluster):
    clock, net, nodes = cluster(range(4))
    for n in nodes:
        n.start()
    clock.run(60_000, until=lambda: min_height(nodes) >= 1)
    e = nodes[0]
    h = max(e.state.height, e.chain.tip.height) + 1               # the height held back
    late = signed(VKEYS[2], PRECOMMIT, h, 7, value(9))        # round 7 of a height not started
    assert e.receive(late, b"p") is Verdict.ACCEPTED
    clock.run(60_000, until=lambda: e.state.height == h)
    assert late.vote in e.state.votes[(PRECOMMIT, 7)][ADDRS[2]]


def test_the_reactor_relays_only_what_the_engine_accepted_and_drops_a_forger(cluster):
    _, _, (e,) = cluster([0])
    e.start()
    handlers: dict = {}
    fake = type("P", (), {"on": lambda self, t, h: handlers.__setitem__(t, h), "on_connect": lambda self, cb: None})()
    attach(fake, e, GENESIS.params)
    good = signed(VKEYS[1], PREVOTE, 2, 0, value(1))
    wire = lambda sv: encode_vote(sv)  # noqa: E731 - the body p2p hands over
    with pytest.raises(BadMessage):
        handlers["vote"](b"p", wire(bogus(good)))
    assert handlers["vote"](b"p", wire(good)) is None            # checked: relayed
    assert handlers["vote"](b"p", wire(good)) is False           # a copy: not relayed
    assert handlers["vote"](b"p", wire(signed(VKEYS[1], PREVOTE, 9, 0, None))) is NOT_HANDLED


# ---- item 8: a double signer cannot grow the log ---------------------------------------------

def started(me: bytes = ADDRS[0]):
    s, _ = step(new_state(me, VSET), StartHeight(1, None))
    return s


def test_a_signer_keeps_messages_in_at_most_its_highest_future_rounds():
    s = started()
    for r in range(1, 500):
        for t in (PREVOTE, PRECOMMIT):
            for v in (value(r), None, value(r + 1)):
                s, _ = step(s, Vote(t, 1, r, v, ADDRS[1]))
    kept = {r for (_, r), book in s.votes.items() if ADDRS[1] in book}
    assert kept == set(range(500 - MAX_FUTURE_ROUNDS, 500))
    assert all(len(book[ADDRS[1]]) == 2 for book in s.votes.values())
    # a lower round than those kept is dropped; round skip still follows honest signers
    s2, _ = step(s, Vote(PREVOTE, 1, 3, None, ADDRS[1]))
    assert s2 is s
    s, _ = step(s, Vote(PREVOTE, 1, 499, None, ADDRS[2]))
    assert s.round == 499                                         # f + 1 = 2 of 4 in round 499


def test_a_proposal_for_an_absurd_round_costs_nothing():
    s = started()
    t0 = time.process_time()
    s2, acts = step(s, Proposal(1, 2**32 - 1, value(1), -1, ADDRS[1]))
    assert (s2, acts) == (s, []) and time.process_time() - t0 < 0.5
    assert PROPOSAL_HORIZON < 2**32 - 1


def test_the_engine_forgets_signatures_the_machine_dropped(cluster):
    _, _, (e,) = cluster([0])
    e.start()
    for r in range(1, 60):
        assert e.receive(signed(VKEYS[1], PREVOTE, 1, r, value(r))) is Verdict.ACCEPTED
    assert {k[1] for k in e._vote_sigs if k[2] == ADDRS[1]} == set(range(60 - MAX_FUTURE_ROUNDS, 60))


# ---- item 12: the stall report ----------------------------------------------------------------

def test_a_stall_names_the_validators_whose_votes_are_missing(cluster):
    clock, _, nodes = cluster([0, 1])       # 2 of 4: no quorum, no progress
    for n in nodes:
        n.start()
    e = nodes[0]
    assert e.stall() is None
    clock.run(3_000)
    assert e.stall() is None and e.chain.tip.height == 0        # under STALL_ROUNDS rounds of timeouts
    clock.run(60_000)
    clock.now += 60_000                     # no timeout is pending without 2f+1 votes of any kind
    st = e.stall()
    assert st is not None and st.height == 1 and st.since_ms == nodes[0].height_since_ms
    assert set(st.missing_prevotes) == {ADDRS[2], ADDRS[3]} and ADDRS[2] in st.missing_precommits


def test_one_evidence_per_validator_and_height_however_many_slots_it_double_signs(cluster):
    _, _, (e,) = cluster([0])
    e.start()
    for t in (PREVOTE, PRECOMMIT):
        for v in (value(1), value(2), value(3)):
            e.receive(signed(VKEYS[1], t, 1, 0, v))
    assert len(e.evidence) == 1 and e.evidence[0].validator == ADDRS[1]
