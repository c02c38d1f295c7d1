"""net/consensus_reactor.py: the wire form of proposals and votes (canonical msgpack,
decoded strictly: a malformed body is BadMessage, which drops the peer), and the timer."""
from __future__ import annotations

import asyncio

import pytest

from consensus.bft import SignedProposal, proposal_signature_ok, vote_signature_ok
from consensus.machine import Proposal
from consensus.signer import proposal_payload
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote, vote_payload
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


# ---- re-gossip and heights the engine cannot use yet ------------------------------------------

class StubEngine:
    """What attach() looks at: the engine's height, the chain tip, its mempool, receive()."""

    def __init__(self, height: int, tip: int):
        self.height = height
        self.mempool: dict = {}  # tx hash -> decoded transaction (none known)
        self.chain = type("C", (), {"tip": type("T", (), {"height": tip})()})()
        self.stopped = False
        self.got: list = []

    def receive(self, m, peer=None):
        """The engine's verdicts by height alone (tests/test_consensus_bft.py checks the rest)."""
        from consensus.bft import Verdict
        inner = m.vote if isinstance(m, SignedVote) else m.proposal
        if inner.height > max(self.height, self.chain.tip.height) + 1:
            return Verdict.AHEAD
        self.got.append(m)
        return Verdict.ACCEPTED


class StubSync:
    def __init__(self) -> None:
        self.noted: list = []

    def note_height(self, peer: bytes, height: int) -> None:
        self.noted.append((peer, height))


def test_own_messages_are_resent_to_a_peer_that_connects_and_deduped_by_receivers(signed):
    from net.consensus_reactor import P2PTransport, attach
    from net.p2p import P2P
    from ledger.keys import PrivateKey
    sp, sv = signed
    later = SignedVote(Vote(PREVOTE, 2, 0, None, VKEYS[0].address), bytes(64))

    async def main():
        ka, kb = PrivateKey.from_label("reactor a"), PrivateKey.from_label("reactor b")
        a = P2P(ka, "c", bytes(32), "127.0.0.1", 0)
        b = P2P(kb, "c", bytes(32), "127.0.0.1", 0)
        eng = StubEngine(height=1, tip=0)
        attach(b, eng, PARAMS)
        transport = P2PTransport(a)
        attach(a, StubEngine(1, 0), PARAMS, transport)
        await a.start()
        await b.start()
        try:
            transport.broadcast(VKEYS[0].address, sv)   # no peer yet: lost
            transport.broadcast(VKEYS[0].address, sp)
            assert transport.height == 1 and transport.resent == 0
            await a.connect("127.0.0.1", b.port)      # on connect: both re-sent to b
            deadline = asyncio.get_running_loop().time() + 5
            while len(eng.got) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert sorted(map(type, eng.got), key=str) == [SignedProposal, SignedVote]
            assert transport.resent == 2
            assert transport.resend() == 2            # again, to everyone: b drops the copies
            await asyncio.sleep(0.2)
            assert len(eng.got) == 2
            transport.broadcast(VKEYS[0].address, later)  # a new height: only its messages are kept
            assert transport.height == 2 and transport.resend() == 1
        finally:
            await a.stop()
            await b.stop()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_messages_beyond_the_next_height_are_not_handled_and_tell_sync(signed):
    from net.consensus_reactor import attach
    from net.p2p import NOT_HANDLED
    _, sv = signed
    handlers: dict = {}
    fake = type("P", (), {"on": lambda self, t, h: handlers.__setitem__(t, h), "on_connect": lambda self, cb: None})()
    eng, sync = StubEngine(height=0, tip=0), StubSync()
    attach(fake, eng, PARAMS, sync=sync)
    far = SignedVote(Vote(PREVOTE, 5, 0, None, VKEYS[1].address), bytes(64))
    assert handlers["vote"](b"p" * 32, wire(encode_vote(far))) is NOT_HANDLED
    assert sync.noted == [(b"p" * 32, 4)] and eng.got == []
    assert handlers["vote"](b"p" * 32, wire(encode_vote(sv))) is None   # height 1: tip + 1
    assert eng.got == [sv]
    eng.height = 4                                                          # running height 4
    assert handlers["vote"](b"p" * 32, wire(encode_vote(far))) is None      # 5 is held back


def test_regossip_loop_resends_only_while_our_height_is_undecided_and_we_are_silent(signed):
    from net.consensus_reactor import P2PTransport, regossip_loop
    _, sv = signed
    sent: list = []
    fake = type("P", (), {"gossip": lambda self, t, b: sent.append(("gossip", t)) or True,
                          "broadcast": lambda self, t, b: sent.append(("again", t)) or 1})()
    transport = P2PTransport(fake)  # type: ignore[arg-type]
    eng = StubEngine(height=1, tip=0)

    async def main():
        transport.broadcast(VKEYS[0].address, sv)
        task = asyncio.create_task(regossip_loop(transport, eng, 0.05))
        await asyncio.sleep(0.18)
        resent = sent.count(("again", "vote"))
        assert resent >= 2
        eng.chain.tip.height = 1                  # height 1 decided here: nothing more
        await asyncio.sleep(0.15)
        assert sent.count(("again", "vote")) <= resent + 1
        task.cancel()
    asyncio.run(main())
    assert sent[0] == ("gossip", "vote")
