"""The Tendermint state machine (consensus/machine.py): locking rules one event at a time, then
N machines in a deterministic simulator (seeded delays, drops, reordering, partitions, virtual
time) checked for safety (no two decisions at one height) and liveness (decisions resume)."""
from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field
from collections.abc import Callable

import pytest

from consensus.machine import (TIMEOUT_PRECOMMIT, TIMEOUT_PREVOTE, TIMEOUT_PROPOSE, Broadcast, Decide,
                               Equivocation, GetValue, Proposal, ProposeValue, ScheduleTimeout, StartHeight,
                               State, Step,
                               Timeout, TimeoutParams, Vote, new_state, proposer_of, step)
from consensus.proposer import proposer
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE
from ledger.keys import PrivateKey

KEYS = [PrivateKey.from_label(f"machine validator {i}") for i in range(7)]
A, B = b"A" * 32, b"B" * 32


def vset(n: int, stakes: list[int] | None = None) -> ValidatorSet:
    stakes = stakes or [1] * n
    return ValidatorSet(tuple(Validator(k.public_key, s) for k, s in zip(KEYS[:n], stakes)))


def value_of(i: int, height: int) -> bytes:
    return hashlib.sha256(f"value of node {i} at height {height}".encode()).digest()


# ---- unit tests: one machine, events fed by hand ----------------------------------------------

VS = vset(4)
ADDRS = [v.address for v in VS.validators]          # address order


def non_proposer(height: int, rounds: range) -> bytes:
    """A validator that proposes in none of `rounds` (so the test feeds every proposal)."""
    busy = {proposer(VS, height, r) for r in rounds}
    return next(a for a in ADDRS if a not in busy)


def prevotes(round_: int, value: bytes | None, who: list[bytes]) -> list[Vote]:
    return [Vote(PREVOTE, 1, round_, value, a) for a in who]


def feed(s: State, *events) -> tuple[State, list]:
    actions: list = []
    for e in events:
        s, acts = step(s, e)
        actions += acts
    return s, actions


def votes_sent(actions, vote_type=None) -> list[Vote]:
    return [a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, Vote)
            and (vote_type is None or a.message.type == vote_type)]


def lock_on_a_in_round_0(me: bytes) -> State:
    """Node `me` sees proposal A in round 0 and a polka for it: it locks A at round 0."""
    s, _ = feed(new_state(me, VS), StartHeight(1, b"mine" * 8))
    others = [a for a in ADDRS if a != me]
    s, acts = feed(s, Proposal(1, 0, A, -1, proposer(VS, 1, 0)), *prevotes(0, A, others[:2]))
    assert (s.locked_value, s.locked_round, s.valid_value, s.valid_round) == (A, 0, A, 0)
    assert [(v.type, v.value) for v in votes_sent(acts)] == [(PREVOTE, A), (PRECOMMIT, A)]
    return s


def to_round(s: State, round_: int) -> State:
    """Time out the precommit step until `round_` (no decision)."""
    while s.round < round_:
        s, _ = step(s, Timeout(TIMEOUT_PRECOMMIT, 1, s.round))
    return s


def test_a_lazy_value_is_asked_for_only_by_the_proposer_and_proposed_once():
    me = proposer(VS, 1, 0)
    s, acts = feed(new_state(me, VS), StartHeight(1, None))
    assert GetValue(1, 0) in acts and not [a for a in acts if isinstance(a, Broadcast)]
    for stale in (ProposeValue(2, 0, A), ProposeValue(1, 1, A)):    # another height or round: ignored
        assert step(s, stale) == (s, [])
    s, acts = feed(s, ProposeValue(1, 0, A))
    assert [a.message for a in acts if isinstance(a, Broadcast)] == [Proposal(1, 0, A, -1, me), Vote(PREVOTE, 1, 0, A, me)]
    assert feed(s, ProposeValue(1, 0, B))[1] == []                   # proposed already: a second answer is moot
    other = next(a for a in ADDRS if a != me)
    _, acts = feed(new_state(other, VS), StartHeight(1, None))
    assert not [a for a in acts if isinstance(a, GetValue)]          # not its turn: it builds nothing
    later = non_proposer(1, range(1))                                 # its turn comes in a later round
    r = next(r for r in range(1, 20) if proposer(VS, 1, r) == later)
    s, _ = feed(new_state(later, VS), StartHeight(1, None))
    while s.round < r:
        s, acts = step(s, Timeout(TIMEOUT_PRECOMMIT, 1, s.round)) if s.step == Step.PRECOMMIT else \
            step(s, Timeout(TIMEOUT_PROPOSE if s.step == Step.PROPOSE else TIMEOUT_PREVOTE, 1, s.round))
    assert GetValue(1, r) in acts


def test_step_is_pure_and_starts_round_zero():
    me = non_proposer(1, range(1))
    s0 = new_state(me, VS)
    s1, acts = step(s0, StartHeight(1, A))
    assert s0.height == 0 and s0.step == Step.COMMIT  # the input is never changed
    assert (s1.height, s1.round, s1.step) == (1, 0, Step.PROPOSE)
    assert acts == [ScheduleTimeout(TIMEOUT_PROPOSE, 1, 0, 3000)]
    assert step(s0, StartHeight(1, A)) == (s1, acts)
    # the proposer proposes its value, prevotes it itself
    _, acts = step(new_state(proposer(VS, 1, 0), VS), StartHeight(1, A))
    assert acts[0] == Broadcast(Proposal(1, 0, A, -1, proposer(VS, 1, 0)))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 0, A, proposer(VS, 1, 0))]


def test_timeouts_grow_with_the_round():
    t = TimeoutParams(propose_ms=100, propose_delta_ms=10, prevote_ms=50, prevote_delta_ms=5)
    assert [t.duration(TIMEOUT_PROPOSE, r) for r in range(3)] == [100, 110, 120]
    assert t.duration(TIMEOUT_PREVOTE, 4) == 70
    me = non_proposer(1, range(3))
    s, _ = feed(new_state(me, VS, t), StartHeight(1, A))
    s, acts = step(s, Timeout(TIMEOUT_PRECOMMIT, 1, 0))
    assert acts == [ScheduleTimeout(TIMEOUT_PROPOSE, 1, 1, 110)]


def test_stale_and_foreign_events_are_ignored():
    me = non_proposer(1, range(1))
    s, _ = feed(new_state(me, VS), StartHeight(1, A))
    for e in (Timeout(TIMEOUT_PROPOSE, 1, 3), Timeout(TIMEOUT_PROPOSE, 2, 0),
              Vote(PREVOTE, 2, 0, A, ADDRS[0]), Vote(PREVOTE, 1, 0, A, KEYS[6].address),
              Proposal(1, 0, A, -1, next(a for a in ADDRS if a != proposer(VS, 1, 0)))):
        assert step(s, e) == (s, [])


def test_duplicate_votes_count_once_and_conflicts_are_reported():
    me = non_proposer(1, range(1))
    s, _ = feed(new_state(me, VS), StartHeight(1, A))
    other = next(a for a in ADDRS if a != me)
    v1, v2 = Vote(PREVOTE, 1, 0, A, other), Vote(PREVOTE, 1, 0, B, other)
    s, acts = feed(s, v1, v1, v1)
    assert acts == [] and s.votes[(PREVOTE, 0)] == {other: (v1,)}
    s, acts = feed(s, v2, v2, Vote(PREVOTE, 1, 0, None, other))
    assert acts == [Equivocation(v1, v2)]                       # reported once
    assert s.votes[(PREVOTE, 0)][other] == (v1, v2)             # each counts for its own value;
    # the first conflicting pair is the evidence: a third value is dropped (issue 12 item 8)
    p = proposer(VS, 1, 0)
    s, acts = feed(s, Proposal(1, 0, A, -1, p), Proposal(1, 0, B, -1, p))
    assert Equivocation(Proposal(1, 0, A, -1, p), Proposal(1, 0, B, -1, p)) in acts


def test_locked_validator_prevotes_nil_for_another_value():
    me = non_proposer(1, range(3))
    s = to_round(lock_on_a_in_round_0(me), 1)
    s, acts = step(s, Proposal(1, 1, B, -1, proposer(VS, 1, 1)))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 1, None, me)]
    # but its own locked value it prevotes again
    s = to_round(lock_on_a_in_round_0(me), 1)
    s, acts = step(s, Proposal(1, 1, A, -1, proposer(VS, 1, 1)))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 1, A, me)]


def test_a_polka_older_than_the_lock_does_not_unlock():
    """Locked on A at round 1; B re-proposed with a polka from round 0: still nil."""
    me = non_proposer(1, range(3))
    others = [a for a in ADDRS if a != me]
    s, _ = feed(new_state(me, VS), StartHeight(1, b"m" * 32), *prevotes(0, B, others))
    s = to_round(s, 1)
    s, _ = feed(s, Proposal(1, 1, A, -1, proposer(VS, 1, 1)), *prevotes(1, A, others[:2]))
    assert (s.locked_value, s.locked_round) == (A, 1)
    s = to_round(s, 2)
    s, acts = step(s, Proposal(1, 2, B, 0, proposer(VS, 1, 2)))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 2, None, me)]


def test_polka_at_prevote_step_moves_the_lock():
    """Line 36 at step prevote: even after prevoting nil, a polka for the proposal locks it."""
    me = non_proposer(1, range(3))
    others = [a for a in ADDRS if a != me]
    s = to_round(lock_on_a_in_round_0(me), 1)
    s, acts = feed(s, Proposal(1, 1, B, -1, proposer(VS, 1, 1)), *prevotes(1, B, others))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 1, None, me), Vote(PRECOMMIT, 1, 1, B, me)]
    assert (s.locked_value, s.locked_round, s.valid_value, s.valid_round) == (B, 1, B, 1)


def test_a_newer_polka_unlocks():
    """Locked on A at round 0; a polka for B at round 1 lets it prevote B re-proposed in round 2."""
    me = non_proposer(1, range(3))
    others = [a for a in ADDRS if a != me]
    s = to_round(lock_on_a_in_round_0(me), 1)
    # round 1: the others prevote B, but B's proposal comes late: this node prevotes nil at
    # timeoutPropose and precommits nil at timeoutPrevote, so it keeps its lock on A ...
    s, acts = feed(s, *prevotes(1, B, others), Timeout(TIMEOUT_PROPOSE, 1, 1), Timeout(TIMEOUT_PREVOTE, 1, 1))
    assert [(v.type, v.value) for v in votes_sent(acts)] == [(PREVOTE, None), (PRECOMMIT, None)]
    s, acts = step(s, Proposal(1, 1, B, -1, proposer(VS, 1, 1)))
    assert votes_sent(acts) == []
    assert (s.locked_value, s.locked_round) == (A, 0)
    assert (s.valid_value, s.valid_round) == (B, 1)              # ... but B is now the valid value
    s = to_round(s, 2)
    # without the polka in its log a B proposal with vr=1 would not do: here it has it
    s, acts = step(s, Proposal(1, 2, B, 1, proposer(VS, 1, 2)))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 2, B, me)]


def test_reproposal_without_its_polka_waits_for_the_timeout():
    me = non_proposer(1, range(3))
    s = to_round(lock_on_a_in_round_0(me), 2)
    s, acts = step(s, Proposal(1, 2, B, 1, proposer(VS, 1, 2)))
    assert votes_sent(acts) == [] and s.step == Step.PROPOSE
    s, acts = step(s, Timeout(TIMEOUT_PROPOSE, 1, 2))
    assert votes_sent(acts) == [Vote(PREVOTE, 1, 2, None, me)]


def test_proposer_reproposes_its_valid_value():
    s = lock_on_a_in_round_0(non_proposer(1, range(1)))
    # find a round this node proposes in, and go there
    r = next(r for r in range(1, 20) if proposer_of(s, r) == s.address)
    s, acts = feed(s, *[Timeout(TIMEOUT_PRECOMMIT, 1, i) for i in range(r)])
    assert Broadcast(Proposal(1, r, A, 0, s.address)) in acts


def test_decide_in_an_earlier_round_and_round_skip():
    me = non_proposer(1, range(3))
    others = [a for a in ADDRS if a != me]
    s, _ = feed(new_state(me, VS), StartHeight(1, b"m" * 32))
    # f+1 = 2 validators speak in round 2: jump there
    s, acts = feed(s, Vote(PREVOTE, 1, 2, None, others[0]))
    assert s.round == 0
    s, acts = feed(s, Vote(PRECOMMIT, 1, 2, None, others[1]))
    assert (s.round, s.step) == (2, Step.PROPOSE)
    assert acts == [ScheduleTimeout(TIMEOUT_PROPOSE, 1, 2, 4000)]
    # a decision from round 0 arriving late still counts
    pc = [Vote(PRECOMMIT, 1, 0, A, a) for a in others]
    s, acts = feed(s, Proposal(1, 0, A, -1, proposer(VS, 1, 0)), *pc)
    assert acts[-1] == Decide(1, A, 0, tuple(sorted(pc, key=lambda v: v.validator)))
    assert s.step == Step.COMMIT and s.decision == A
    assert step(s, Timeout(TIMEOUT_PRECOMMIT, 1, 2)) == (s, [])


def test_polka_for_nil_and_prevote_timeout():
    me = non_proposer(1, range(1))
    others = [a for a in ADDRS if a != me]
    s, _ = feed(new_state(me, VS), StartHeight(1, b"m" * 32), Timeout(TIMEOUT_PROPOSE, 1, 0))
    s, acts = feed(s, Vote(PREVOTE, 1, 0, A, others[0]), Vote(PREVOTE, 1, 0, B, others[1]))
    assert acts == [ScheduleTimeout(TIMEOUT_PREVOTE, 1, 0, 1000)]   # 2f+1 of anything
    s, acts = step(s, Timeout(TIMEOUT_PREVOTE, 1, 0))
    assert votes_sent(acts) == [Vote(PRECOMMIT, 1, 0, None, me)]
    s2, _ = feed(new_state(me, VS), StartHeight(1, b"m" * 32), *prevotes(0, None, others))
    assert s2.step == Step.PROPOSE                               # a nil polka waits for its prevote
    s2, acts = step(s2, Timeout(TIMEOUT_PROPOSE, 1, 0))
    assert [(v.type, v.value) for v in votes_sent(acts)] == [(PREVOTE, None), (PRECOMMIT, None)]


def test_observer_never_votes():
    s, acts = feed(new_state(KEYS[6].address, VS), StartHeight(1, A), Timeout(TIMEOUT_PROPOSE, 1, 0))
    assert votes_sent(acts) == [] and s.step == Step.PREVOTE


# ---- the simulator ---------------------------------------------------------------------------

Policy = Callable[[random.Random, int, int, int], list[int]]   # (rng, now, src, dst) -> delays


def clean(rng: random.Random, now: int, src: int, dst: int) -> list[int]:
    return [rng.randint(5, 30)]


def chaos_until(t_end: int, drop: float = 0.3) -> Policy:
    """Drops, duplicates and long random delays (so reordering) until t_end, then clean."""
    def policy(rng, now, src, dst):
        if now >= t_end:
            return clean(rng, now, src, dst)
        if rng.random() < drop:
            return []
        n = 2 if rng.random() < 0.1 else 1
        return [rng.randint(1, 600) for _ in range(n)]
    return policy


def partition(groups: list[set[int]], t_start: int, t_end: int) -> Policy:
    def policy(rng, now, src, dst):
        if t_start <= now < t_end and not any(src in g and dst in g for g in groups):
            return []
        return clean(rng, now, src, dst)
    return policy


FAST = TimeoutParams(propose_ms=200, propose_delta_ms=50, prevote_ms=100, prevote_delta_ms=50,
                     precommit_ms=100, precommit_delta_ms=50)


@dataclass
class Sim:
    """N machines, one event heap in virtual milliseconds, one seeded RNG.

    Gossip as CometBFT's reactor does it: besides the first broadcast, every `gossip_ms`
    every node relays what it holds for the height each peer is at (it knows peers'
    heights), so lost messages are made good once the network delivers again.  Messages of
    a later height wait in the receiver's buffer until it starts that height.
    """

    n: int = 4
    stakes: list[int] | None = None
    seed: int = 0
    silent: set[int] = field(default_factory=set)
    byzantine: set[int] = field(default_factory=set)
    policy: Policy = clean
    gossip_ms: int = 500
    commit_ms: int = 10

    def __post_init__(self):
        self.vset = vset(self.n, self.stakes)
        index = {k.address: i for i, k in enumerate(KEYS[:self.n])}
        self.index = index
        self.rng = random.Random(self.seed)
        self.now = 0
        self.queue: list = []
        self.seq = 0
        self.states = [new_state(KEYS[i].address, self.vset, FAST) for i in range(self.n)]
        self.decisions: list[dict[int, bytes]] = [{} for _ in range(self.n)]
        self.certificates: dict[tuple[int, int], tuple] = {}       # (node, height) -> commit
        self.buffer: list[list] = [[] for _ in range(self.n)]
        self.evidence: list[list[Equivocation]] = [[] for _ in range(self.n)]
        self.honest = [i for i in range(self.n) if i not in self.silent and i not in self.byzantine]
        for i in range(self.n):
            if i not in self.silent:
                self.push(0, i, StartHeight(1, value_of(i, 1)))
        self.push(self.gossip_ms, -1, "gossip")

    def push(self, at: int, dst: int, event) -> None:
        heapq.heappush(self.queue, (at, self.seq, dst, event))
        self.seq += 1

    def send(self, src: int, dst: int, msg) -> None:
        for delay in self.policy(self.rng, self.now, src, dst):
            self.push(self.now + delay, dst, msg)

    def twisted(self, msg):
        """The byzantine node's second message for the same slot."""
        evil = hashlib.sha256(f"evil {msg.height} {msg.round}".encode()).digest()
        if isinstance(msg, Vote):
            return Vote(msg.type, msg.height, msg.round, evil, msg.validator)
        return Proposal(msg.height, msg.round, evil, msg.valid_round, msg.proposer)

    def broadcast(self, src: int, msg) -> None:
        for dst in range(self.n):
            if dst == src or dst in self.silent:
                continue
            if src in self.byzantine:
                # half the peers get the honest message first, the other half the evil one:
                # what each side acts on first differs, and both reach everyone in the end
                pair = [msg, self.twisted(msg)]
                for k, m in enumerate(pair if dst % 2 == 0 else pair[::-1]):
                    for delay in self.policy(self.rng, self.now, src, dst):
                        self.push(self.now + delay + 2 * k, dst, m)
            else:
                self.send(src, dst, msg)

    def feed(self, i: int, event) -> None:
        state = self.states[i]
        if isinstance(event, (Proposal, Vote)) and event.height > state.height:
            self.buffer[i].append(event)
            return
        state, actions = step(state, event)
        self.states[i] = state
        for a in actions:
            if isinstance(a, Broadcast):
                self.broadcast(i, a.message)
            elif isinstance(a, ScheduleTimeout):
                self.push(self.now + a.duration_ms, i, Timeout(a.kind, a.height, a.round))
            elif isinstance(a, Equivocation):
                self.evidence[i].append(a)
            elif isinstance(a, Decide):
                self.decide(i, a)
        if isinstance(event, StartHeight):
            waiting, self.buffer[i] = self.buffer[i], []
            for m in waiting:
                if m.height >= self.states[i].height:
                    self.feed(i, m)

    def decide(self, i: int, d: Decide) -> None:
        assert d.height not in self.decisions[i], "decided twice at one height"
        assert self.vset.has_quorum(sum(self.vset.get(v.validator).stake for v in d.precommits))
        self.decisions[i][d.height] = d.value
        proposal = next(p for p in self.states[i].proposals[d.round] if p.value == d.value)
        self.certificates[(i, d.height)] = (proposal, *d.precommits)
        if i in self.honest:
            for j in self.honest:                                   # SAFETY
                assert self.decisions[j].get(d.height, d.value) == d.value, \
                    f"two decisions at height {d.height}"
        self.push(self.now + self.commit_ms, i, StartHeight(d.height + 1, value_of(i, d.height + 1)))

    def gossip(self) -> None:
        """The paper's gossip assumption: what a correct node received, every correct node
        receives.  To a peer at its own height a node relays its whole log; to a peer at a
        height it has decided, the proposal and precommits that decided it (a commit)."""
        for i in range(self.n):
            if i in self.silent:
                continue
            s = self.states[i]
            log = [*(p for ps in s.proposals.values() for p in ps),
                   *(v for book in s.votes.values() for vs in book.values() for v in vs)]
            for j in range(self.n):
                if j == i or j in self.silent:
                    continue
                h = self.states[j].height
                for m in log if h == s.height else self.certificates.get((i, h), ()):
                    self.send(i, j, m)
        self.push(self.now + self.gossip_ms, -1, "gossip")

    def run(self, until_ms: int, heights: int | None = None) -> Sim:
        """Run to virtual time `until_ms`, or until every honest node decided `heights` heights."""
        while self.queue and self.queue[0][0] <= until_ms:
            self.now, _, dst, event = heapq.heappop(self.queue)
            if dst == -1:
                self.gossip()
            else:
                self.feed(dst, event)
            if heights is not None and all(len(self.decisions[i]) >= heights for i in self.honest):
                break
        return self

    def decided(self, i: int) -> int:
        return len(self.decisions[i])


def test_four_equal_validators_decide_many_heights():
    sim = Sim(seed=1).run(60_000, heights=20)
    assert all(sim.decided(i) >= 20 for i in range(4))
    assert all(sim.decisions[i] == sim.decisions[0] for i in range(4))
    # every node's proposal makes it in: the proposer rotates
    proposed = {i for i in range(4) for h, v in sim.decisions[0].items() if v == value_of(i, h)}
    assert proposed == {0, 1, 2, 3}


def test_one_silent_validator_still_decides():
    sim = Sim(seed=2, silent={3}).run(120_000, heights=10)
    assert all(sim.decided(i) >= 10 for i in sim.honest)


def test_two_silent_validators_decide_nothing():
    sim = Sim(seed=3, silent={1, 2}).run(30_000)
    assert all(sim.decided(i) == 0 for i in range(4))
    # 2f+1 prevotes of any kind never come, so not even timeoutPrevote is set: they wait
    assert [(sim.states[i].round, sim.states[i].step) for i in (0, 3)] == [(0, Step.PREVOTE)] * 2


def test_silent_validator_with_over_a_third_of_the_stake_stops_the_chain():
    sim = Sim(n=4, stakes=[1, 1, 1, 2], seed=4, silent={3}).run(30_000)   # 2/5 > 1/3
    assert all(sim.decided(i) == 0 for i in range(4))
    # while a heavy validator with less than a third silent does not
    sim = Sim(n=5, stakes=[2, 2, 2, 2, 3], seed=4, silent={4}).run(120_000, heights=5)  # 3/11
    assert all(sim.decided(i) >= 5 for i in sim.honest)


def test_unequal_stakes_decide_with_proposals_in_proportion():
    sim = Sim(n=4, stakes=[1, 1, 1, 5], seed=5).run(120_000, heights=24)
    assert all(sim.decided(i) >= 24 for i in range(4))
    by_heavy = sum(v == value_of(3, h) for h, v in sim.decisions[0].items() if h <= 24)
    assert by_heavy >= 12


@pytest.mark.parametrize("seed", [6, 7, 8, 9])
def test_byzantine_double_voter_breaks_no_safety_and_is_reported(seed):
    sim = Sim(seed=seed, byzantine={0}).run(120_000, heights=8)
    assert all(sim.decided(i) >= 8 for i in sim.honest)
    culprit = KEYS[0].address
    for i in sim.honest:
        assert sim.evidence[i], "equivocation not reported"
        for e in sim.evidence[i]:
            signer = e.first.validator if isinstance(e.first, Vote) else e.first.proposer
            assert signer == culprit and e.first != e.second
    kinds = {(type(e.first).__name__, getattr(e.first, "type", None))
             for i in sim.honest for e in sim.evidence[i]}
    assert ("Vote", PREVOTE) in kinds and ("Vote", PRECOMMIT) in kinds


def test_partition_two_two_decides_nothing_then_heals():
    sim = Sim(seed=8, policy=partition([{0, 1}, {2, 3}], 0, 20_000)).run(20_000)
    assert all(sim.decided(i) == 0 for i in range(4))
    sim.run(120_000, heights=5)
    assert all(sim.decided(i) >= 5 for i in range(4))


def test_partition_after_some_heights_keeps_decisions_consistent():
    sim = Sim(seed=9, policy=partition([{0, 1, 2}, {3}], 2_000, 15_000)).run(15_000)
    assert sim.decided(3) < sim.decided(0)                       # the majority side goes on
    behind = sim.decided(3)
    sim.run(30_000)
    assert all(sim.decisions[i] == {h: sim.decisions[0][h] for h in sim.decisions[i]} for i in range(4))
    # the laggard catches up one commit per gossip round (block sync will do it faster)
    assert sim.decided(3) >= behind + 20


@pytest.mark.parametrize("seed", range(10, 14))
def test_asynchrony_then_clean_delivery_decides(seed):
    sim = Sim(seed=seed, policy=chaos_until(20_000)).run(20_000)
    before = [sim.decided(i) for i in range(4)]
    sim.run(200_000, heights=max(before) + 5)
    assert all(sim.decided(i) >= max(before) + 5 for i in range(4))


def test_simulation_is_deterministic():
    runs = [Sim(seed=21, policy=chaos_until(5_000)).run(30_000, heights=6) for _ in range(2)]
    assert runs[0].decisions == runs[1].decisions and runs[0].now == runs[1].now


@pytest.mark.parametrize("seed", range(30, 34))
def test_byzantine_during_asynchrony_then_clean_delivery(seed):
    """The equivocator is each validator in turn, the proposer of some rounds included."""
    sim = Sim(seed=seed, byzantine={seed % 4}, policy=chaos_until(10_000)).run(10_000)
    before = max(sim.decided(i) for i in sim.honest)
    sim.run(200_000, heights=before + 4)
    assert all(sim.decided(i) >= before + 4 for i in sim.honest)
    assert any(isinstance(e.first, Proposal) for i in sim.honest for e in sim.evidence[i])
