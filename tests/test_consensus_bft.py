"""The BFT engine (consensus/bft.py): four validators in one process, each with its own LMDB
chain, an in-memory transport and one virtual clock.  No sockets, no real time."""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import replace

import pytest

from consensus.bft import BftEngine, InvalidMessage, SignedProposal, Verdict
from ledger.genesis import Genesis
from consensus.machine import TimeoutParams
from consensus.signer import Signer
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PREVOTE, SignedVote, Vote, verify_commit
from ledger.chain import Chain
from ledger.keys import PrivateKey
from ledger.mempool import Mempool
from ledger.params import ChainParams
from ledger.store import Store
from ledger.tx import transfer

CHAIN = "bft-test"
GENESIS_MS = 1_700_000_000_000
VKEYS = [PrivateKey.from_label(f"bft validator {i}") for i in range(4)]
USERS = [PrivateKey.from_label(f"bft user {i}") for i in range(3)]
VSET = ValidatorSet(tuple(Validator(k.public_key, 1) for k in VKEYS))
GENESIS = Genesis(CHAIN, GENESIS_MS, ChainParams(), VSET, tuple(sorted((u.address, 10**12) for u in USERS)))
TIMEOUTS = TimeoutParams(propose_ms=300, propose_delta_ms=100, prevote_ms=100, prevote_delta_ms=50,
                         precommit_ms=100, precommit_delta_ms=50)


class VirtualClock:
    """Timer on virtual milliseconds: callbacks run in (due time, scheduling order)."""

    def __init__(self, start_ms: int):
        self.now = start_ms
        self._heap: list = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return self.now

    def schedule(self, delay_ms: int, callback) -> None:
        heapq.heappush(self._heap, (self.now + max(0, delay_ms), next(self._seq), callback))

    def run(self, for_ms: int, until=lambda: False) -> None:
        end = self.now + for_ms
        while self._heap and self._heap[0][0] <= end and not until():
            self.now, _, cb = heapq.heappop(self._heap)
            cb()


class Network:
    """In-memory transport: every message reaches every other live node after `latency_ms`."""

    def __init__(self, clock: VirtualClock, latency_ms: int = 5, jitter_ms: int = 0, seed: int = 7):
        self.clock, self.latency_ms, self.jitter_ms = clock, latency_ms, jitter_ms
        self.rng = random.Random(seed)
        self.engines: dict[bytes, BftEngine] = {}
        self.tamper = None  # optional fn(sender, message) -> message

    def broadcast(self, sender: bytes, message) -> None:
        if self.tamper is not None:
            message = self.tamper(sender, message)
        for addr, eng in self.engines.items():
            if addr != sender:
                delay = self.latency_ms + (self.rng.randrange(self.jitter_ms) if self.jitter_ms else 0)
                self.clock.schedule(delay, lambda e=eng: e.receive(message))


def open_chain(path) -> Chain:
    store = Store(path)
    changes, root, nodes = GENESIS.initial_state()
    store.init_genesis(b"{}", GENESIS.header(root), changes, nodes)
    return Chain(store, CHAIN, GENESIS.params)


@pytest.fixture
def cluster(tmp_path):
    """make(live): engines for the validators at the indices in `live` (the others are silent)."""
    clock = VirtualClock(GENESIS_MS + 1000)
    net = Network(clock)
    opened: list = []

    def make(live):
        nodes = []
        for i in live:
            chain = open_chain(tmp_path / f"chain{i}")
            signer = Signer(VKEYS[i], CHAIN, tmp_path / f"signer{i}" / "state")
            opened.append((chain, signer))
            mempool = Mempool(CHAIN, GENESIS.params.max_block_gas, chain.account)
            commits: list = []
            eng = BftEngine(chain, mempool, signer, net, clock,
                            lambda b, p, ev, c=commits: c.append(b), timeouts=TIMEOUTS,
                            commit_delay_ms=50)
            net.engines[VKEYS[i].address] = eng
            nodes.append(eng)
        return clock, net, nodes

    yield make
    for chain, signer in opened:
        signer.close()
        chain.store.close()


def submit_transfers(nodes, n: int, nonces: dict) -> list:
    """n transfers, given to every node's mempool (as gossip would)."""
    txs = []
    for i in range(n):
        a, b = USERS[i % len(USERS)], USERS[(i + 1) % len(USERS)]
        nonce = nonces.get(a.address, 0)
        nonces[a.address] = nonce + 1
        txs.append(transfer(a, CHAIN, nonce, b.address, 1000 + i))
    for eng in nodes:
        for t in txs:
            eng.mempool.add(t)
    return txs


def min_height(nodes) -> int:
    return min(e.chain.tip.height for e in nodes)


def check_agreement(nodes, upto: int) -> None:
    """Same block at every height on every node; every stored commit finalises its block."""
    for h in range(1, upto + 1):
        hashes = {e.chain.store.header(h).hash for e in nodes}
        assert len(hashes) == 1, f"nodes disagree at height {h}"
        for e in nodes:
            commit = e.chain.store.commit(h)
            verify_commit(VSET, CHAIN, commit, h, e.chain.store.header(h).hash)
            if h > 1:  # the block's last_commit certifies its parent
                block = e.chain.store.block(h)
                verify_commit(VSET, CHAIN, block.last_commit, h - 1, e.chain.store.header(h - 1).hash)


def test_four_validators_finalise_transfers(cluster):
    clock, _net, nodes = cluster(range(4))
    txs = submit_transfers(nodes, 6, {})
    for e in nodes:
        e.start()
    clock.run(60_000, until=lambda: min_height(nodes) >= 4)
    assert min_height(nodes) >= 4
    check_agreement(nodes, 4)
    included = [t.hash for h in range(1, 5) for t in nodes[0].chain.store.block(h).txs]
    assert sorted(included) == sorted(t.hash for t in txs)
    for e in nodes:
        assert len(e.mempool) == 0
        assert e.chain.account(USERS[0].address).nonce == 2
        assert e.evidence == []
    # all healthy: every height decided in round 0, proposers rotate
    assert {nodes[0].chain.store.commit(h).round for h in range(1, 5)} == {0}
    assert len({nodes[0].chain.store.header(h).proposer for h in range(1, 5)}) == 4


def test_one_silent_validator_still_progresses(cluster):
    clock, _net, nodes = cluster([0, 1, 3])
    nonces: dict = {}
    submit_transfers(nodes, 3, nonces)
    for e in nodes:
        e.start()
    clock.run(120_000, until=lambda: min_height(nodes) >= 6)
    assert min_height(nodes) >= 6
    check_agreement(nodes, 6)
    rounds = [nodes[0].chain.store.commit(h).round for h in range(1, 7)]
    assert max(rounds) >= 1            # the silent validator's turns needed another round
    proposers = {nodes[0].chain.store.header(h).proposer for h in range(1, 7)}
    assert VKEYS[2].address not in proposers
    assert sum(len(nodes[0].chain.store.block(h).txs) for h in range(1, 7)) == 3
    for h in range(1, 7):              # 3 of 4 signed: a quorum, never the silent one
        sigs = nodes[0].chain.store.commit(h).signatures
        assert VKEYS[2].address not in {s.validator for s in sigs}


def test_two_silent_validators_no_block(cluster):
    clock, _net, nodes = cluster([0, 1])
    submit_transfers(nodes, 2, {})
    for e in nodes:
        e.start()
    clock.run(30_000)
    assert [e.chain.tip.height for e in nodes] == [0, 0]
    # stuck at height 1 with no decision: without 2f+1 prevotes of any kind not even
    # timeoutPrevote is scheduled (line 34), so the nodes wait for the others to return
    assert all(e.state.height == 1 and e.state.decision is None for e in nodes)
    assert all(e.chain.store.header(1) is None for e in nodes)


def test_invalid_block_gets_nil_prevotes(cluster):
    """A proposer whose block lies about its state root: nobody else accepts it, the round
    fails, and a later round with an honest proposer decides a valid block."""
    clock, net, nodes = cluster(range(4))
    first = None

    def tamper(sender, msg):
        nonlocal first
        if isinstance(msg, SignedProposal) and msg.proposal.height == 1 and msg.proposal.round == 0:
            first = sender
            bad_header = replace(msg.block.header, state_root=bytes(32))
            return replace(msg, block=replace(msg.block, header=bad_header))
        return msg

    prevotes: dict[bytes, object] = {}
    real_broadcast = net.broadcast

    def record(sender, msg):
        if isinstance(msg, SignedVote) and msg.vote.type == PREVOTE and msg.vote.height == 1 \
                and msg.vote.round == 0:
            prevotes[sender] = msg.vote.value
        real_broadcast(sender, msg)

    net.tamper = tamper
    net.broadcast = record
    for e in nodes:
        e.start()
    clock.run(60_000, until=lambda: min_height(nodes) >= 1)
    assert min_height(nodes) >= 1
    check_agreement(nodes, 1)
    assert first is not None
    assert nodes[0].chain.store.commit(1).round >= 1
    assert nodes[0].chain.store.header(1).proposer != first
    # the three others prevoted nil in round 0; the liar prevoted its own block
    assert {a: v for a, v in prevotes.items() if a != first} == {a: None for a in prevotes if a != first}
    assert len(prevotes) == 4 and prevotes[first] is not None


def refused(e: BftEngine, m) -> None:
    """A forged message is refused before anything could relay it (the sender is dropped)."""
    with pytest.raises(InvalidMessage):
        e.receive(m)


def test_forged_messages_are_dropped(cluster):
    clock, net, nodes = cluster([0, 1, 2])   # one validator silent: its votes matter
    outsider = PrivateKey.from_label("not a validator")

    def forge(sender, msg):
        if isinstance(msg, SignedVote):
            # a copy claiming to be from the silent validator, signed by nobody valid
            fake = replace(msg.vote, validator=VKEYS[3].address)
            for e in nodes:
                clock.schedule(1, lambda e=e: refused(e, SignedVote(fake, msg.signature)))
                clock.schedule(1, lambda e=e: refused(e, SignedVote(replace(fake, validator=outsider.address),
                                                                   msg.signature)))
        return msg

    net.tamper = forge
    for e in nodes:
        e.start()
    clock.run(60_000, until=lambda: min_height(nodes) >= 2)
    assert min_height(nodes) >= 2
    check_agreement(nodes, 2)
    for e in nodes:
        for h in (1, 2):
            signers = {s.validator for s in e.chain.store.commit(h).signatures}
            assert VKEYS[3].address not in signers and outsider.address not in signers
        assert not any(VKEYS[3].address in book for book in e.state.votes.values())


def test_random_delays_reorder_messages_still_agree(cluster):
    """Seeded delays of 5-505 ms (beyond timeoutPropose at times): messages arrive out of
    order and for heights a node has not reached yet; every node still commits the same chain."""
    clock, net, nodes = cluster(range(4))
    net.jitter_ms = 500
    nonces: dict = {}
    txs = submit_transfers(nodes, 4, nonces)
    for e in nodes:
        e.start()
    clock.run(300_000, until=lambda: min_height(nodes) >= 8)
    assert min_height(nodes) >= 8
    check_agreement(nodes, 8)
    included = {t.hash for h in range(1, 9) for t in nodes[0].chain.store.block(h).txs}
    assert included == {t.hash for t in txs}


def test_restarted_validator_rejoins(tmp_path, cluster):
    """A validator stops after height 2 and comes back with the same chain and a reopened
    signer (its state file): it catches the next heights with the others."""
    clock, net, nodes = cluster(range(4))
    for e in nodes:
        e.start()
    clock.run(60_000, until=lambda: min_height(nodes) >= 2)
    old = nodes[3]
    old.stop()
    del net.engines[old.address]
    old.signer.close()
    clock.run(60_000, until=lambda: min_height(nodes[:3]) >= 3)
    # it missed height 3 and there is no block sync yet: hand it the committed blocks
    src = nodes[0].chain.store
    for h in range(old.chain.tip.height + 1, src.latest_height() + 1):
        blk = src.block(h)
        old.chain.commit_block(blk, src.commit(h), old.chain.execute_block(blk))
    signer = Signer(VKEYS[3], CHAIN, tmp_path / "signer3" / "state")
    new = BftEngine(old.chain, old.mempool, signer, net, clock, lambda *a: None,
                    timeouts=TIMEOUTS, commit_delay_ms=50)
    try:
        net.engines[new.address] = new
        live = [*nodes[:3], new]
        new.start()
        target = max(e.chain.tip.height for e in live) + 3
        clock.run(60_000, until=lambda: min_height(live) >= target)
        assert min_height(live) >= target
        check_agreement(live, target)
        assert signer.state.height >= target - 1     # it signs again after the restart
    finally:
        new.stop()
        signer.close()


def test_malformed_messages_are_ignored(cluster):
    clock, _net, nodes = cluster(range(4))
    for e in nodes:
        e.start()
    e = nodes[0]
    good = SignedVote(Vote(PREVOTE, 1, 0, None, VKEYS[1].address), b"x" * 64)
    for bad in (replace(good, vote=replace(good.vote, value="not bytes")),
                replace(good, vote=replace(good.vote, validator=None)),
                replace(good, vote=replace(good.vote, round=-5)),
                replace(good, signature=None)):
        try:                            # refused or ignored, never fed, never a crash
            assert e.receive(bad) is Verdict.IGNORED
        except InvalidMessage:
            pass
    assert VKEYS[1].address not in e.state.votes.get((PREVOTE, 0), {})
    clock.run(60_000, until=lambda: min_height(nodes) >= 1)
    check_agreement(nodes, 1)
