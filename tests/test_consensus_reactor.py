"""net/consensus_reactor.py: the wire form of proposals and votes (canonical msgpack,
decoded strictly: a malformed body is BadMessage, which drops the peer), and the timer."""
from __future__ import annotations

import asyncio

import pytest

from consensus.bft import SignedProposal, SignedVote, proposal_signature_ok, vote_signature_ok
from consensus.machine import Proposal, Vote
from consensus.signer import proposal_payload
from ledger.votes import PRECOMMIT, PREVOTE, vote_payload
from ledger.encoding import decode, encode
from ledger.keys import VOTE_DOMAIN
from net.consensus_reactor import LoopTimer, decode_proposal, decode_vote, encode_proposal, encode_vote
from net.p2p import BadMessage
from tests.test_consensus_bft import CHAIN, GENESIS, GENESIS_MS, VKEYS, VSET, open_chain

PARAMS = GENESIS.params


@pytest.fixture
def signed(tmp_path):
    chain = open_chain(tmp_path / "chain")
    k = VKEYS[0]
    block = chain.build_block([], k.address, GENESIS_MS + 1000, None).block
    p = Proposal(1, 2, block.hash, 0, k.address)
    sp = SignedProposal(p, block, k.sign(VOTE_DOMAIN, CHAIN, proposal_payload(1, 2, 0, block.hash)))
    v = Vote(PREVOTE, 1, 2, block.hash, k.address)
    sv = SignedVote(v, k.sign(VOTE_DOMAIN, CHAIN, vote_payload(PREVOTE, 1, 2, block.hash)))
    yield sp, sv
    chain.store.close()


def wire(body):
    """What the peer's bytes decode to (the p2p layer hands handlers decoded msgpack)."""
    return decode(encode(body))


def test_round_trip_keeps_signatures_valid(signed):
    sp, sv = signed
    sp2 = decode_proposal(wire(encode_proposal(sp)), PARAMS)
    assert sp2 == sp and sp2.block.hash == sp.block.hash
    assert proposal_signature_ok(VSET, CHAIN, sp2)
    sv2 = decode_vote(wire(encode_vote(sv)))
    assert sv2 == sv and vote_signature_ok(VSET, CHAIN, sv2)
    nil = SignedVote(Vote(PRECOMMIT, 3, 0, None, VKEYS[1].address), bytes(64))
    assert decode_vote(wire(encode_vote(nil))) == nil


@pytest.mark.parametrize("i, bad", [(None, "not a list"), (0, -1), (0, True), (1, -1), (1, "0"),
                                    (2, b"\x00" * 31), (2, None), (3, 5), (3, -2), (4, b"\x01" * 19),
                                    (5, b"not a block"), (5, "text"), (6, b"\x00" * 63)])
def test_malformed_proposals_are_bad_messages(signed, i, bad):
    body = wire(encode_proposal(signed[0]))
    if i is None:
        body = bad
    else:
        body[i] = bad
    with pytest.raises(BadMessage):
        decode_proposal(body, PARAMS)
    with pytest.raises(BadMessage):
        decode_proposal(wire(encode_proposal(signed[0])) + [0], PARAMS)


@pytest.mark.parametrize("i, bad", [(0, 3), (0, 0), (1, 0), (1, 1.5), (2, -1), (3, b"short"),
                                    (3, "nil"), (4, None), (5, b"\x00" * 65)])
def test_malformed_votes_are_bad_messages(signed, i, bad):
    body = wire(encode_vote(signed[1]))
    body[i] = bad
    with pytest.raises(BadMessage):
        decode_vote(body)
    with pytest.raises(BadMessage):
        decode_vote(wire(encode_vote(signed[1]))[:5])


def test_loop_timer_fires_in_order_and_cancels():
    async def run() -> list:
        fired: list = []
        timer = LoopTimer()
        timer.schedule(30, lambda: fired.append("b"))
        timer.schedule(0, lambda: fired.append("a"))
        timer.schedule(5000, lambda: fired.append("never"))
        await asyncio.sleep(0.1)
        timer.cancel_all()
        assert timer.now_ms() > GENESIS_MS
        return fired
    assert asyncio.run(run()) == ["a", "b"]
