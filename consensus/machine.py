"""The Tendermint consensus algorithm as a pure state machine: `step(state, event)`.

Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018),
line for line; the line numbers of the paper are in the comments.  One writer: the caller
owns a `State`, feeds it one event at a time and carries out the actions it gets back.
There is no network, no disk, no clock and no signing here:

- events in:  StartHeight, Proposal, Vote (messages, already signature-checked by the
  caller), Timeout (a ScheduleTimeout coming due), ProposeValue (the answer to GetValue);
- actions out: Broadcast (the caller signs, persists, then sends), ScheduleTimeout,
  Decide (the value and the precommits that make its commit certificate), Equivocation
  (two conflicting messages of one validator: evidence for the caller to keep), GetValue
  (this node must propose a new value: the caller builds it).

`valid(v)` of the paper is the caller's: it feeds only proposals whose value it has
checked (an invalid one is dropped, and the node prevotes nil when timeoutPropose fires).
`getValue()` is the `value` of StartHeight, or, when that is None, asked for with GetValue
the first time this node must propose without a valid value to re-propose.  Messages for another height are ignored: the
caller holds back those of a later height and feeds them after StartHeight.

A broadcast message is delivered to the sender itself at once (the paper's broadcast
includes the sender), so one's own votes count toward one's own quorums.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from collections.abc import Mapping

from consensus.proposer import ProposerState, proposer_state, round_proposer
from ledger.validators import ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE, Vote

TIMEOUT_PROPOSE = "propose"
TIMEOUT_PREVOTE = "prevote"
TIMEOUT_PRECOMMIT = "precommit"
NIL_ROUND = -1
MAX_PER_SLOT = 2        # distinct messages kept per (type, round, signer): the first conflicting pair
MAX_FUTURE_ROUNDS = 2   # rounds above ours in which one signer's messages are kept (the highest)
PROPOSAL_HORIZON = 16   # a proposal further above our round is dropped: finding its proposer costs a step per round


class Step(IntEnum):
    """The paper's step_p, ordered (line 36 asks step >= prevote), and COMMIT once decided."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    COMMIT = 3


# ---- messages and events -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Proposal:
    """<PROPOSAL, h, r, v, vr>: v is opaque bytes (a block hash), vr the round of its polka or -1."""

    height: int
    round: int
    value: bytes
    valid_round: int
    proposer: bytes


@dataclass(frozen=True, slots=True)
class Timeout:
    kind: str
    height: int
    round: int


@dataclass(frozen=True, slots=True)
class StartHeight:
    """Start `height` at round 0.  `value` is what this node proposes (getValue()); None: ask
    for it with `GetValue` when this node first has to propose a new value at this height
    (building a block costs as much as executing it: only the proposer should).

    `validators` replaces the set from this height on; `proposers` gives the round-0
    priorities (else they are advanced by one from the previous height, or derived).
    """

    height: int
    value: bytes | None
    validators: ValidatorSet | None = None
    proposers: ProposerState | None = None


@dataclass(frozen=True, slots=True)
class ProposeValue:
    """getValue()'s answer to a `GetValue(height, round)`."""

    height: int
    round: int
    value: bytes


Event = StartHeight | Proposal | Vote | Timeout | ProposeValue


# ---- actions ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Proposal | Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    kind: str
    height: int
    round: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Decide:
    height: int
    value: bytes
    round: int
    precommits: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Two different messages of one signer for one (type, height, round): evidence."""

    first: Proposal | Vote
    second: Proposal | Vote


@dataclass(frozen=True, slots=True)
class GetValue:
    """This node proposes in (height, round) and has no value yet: answer with ProposeValue."""

    height: int
    round: int


Action = Broadcast | ScheduleTimeout | Decide | Equivocation | GetValue


# ---- state -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TimeoutParams:
    """timeout(kind, r) = base + delta * r: after GST, some round's timeouts outlast the delays."""

    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    def duration(self, kind: str, round_: int) -> int:
        base, delta = {TIMEOUT_PROPOSE: (self.propose_ms, self.propose_delta_ms),
                       TIMEOUT_PREVOTE: (self.prevote_ms, self.prevote_delta_ms),
                       TIMEOUT_PRECOMMIT: (self.precommit_ms, self.precommit_delta_ms)}[kind]
        return base + delta * round_


@dataclass(frozen=True)
class State:
    """One validator's view of the current height.  Never mutated: `step` returns a new one.

    `proposals[r]` holds every distinct proposal of round r from proposer(h, r), in arrival
    order: the paper's rules range over the whole log, and a node that saw an equivocating
    proposer's other value first must still decide the value 2f+1 precommitted.
    `votes[(type, r)]` maps each validator to its distinct votes of that type and round:
    two is equivocation, reported once; the log keeps at most that first conflicting pair
    per slot (`MAX_PER_SLOT`, the evidence) and drops the rest, and keeps a signer's messages
    in at most `MAX_FUTURE_ROUNDS` rounds above ours (the highest), so no signer can grow
    the log without bound (`accepts`).  As in the paper, a quorum for a value
    counts the messages for that value, so an equivocator counts toward each value it
    signed (once per value, of the two kept): safety does not suffer, since two quorums share an honest
    validator and honest validators sign one vote per slot; liveness needs it, because
    honest nodes that saw an equivocator's votes in different orders must still agree on
    what 2f+1 precommitted.  "2f+1 of any kind" counts each validator once.

    The three `*_done` flags are the paper's "for the first time" of lines 34, 36 and 47,
    for the current round; `value` is getValue() for this height.
    """

    address: bytes
    validators: ValidatorSet
    timeouts: TimeoutParams = TimeoutParams()
    height: int = 0
    round: int = 0
    step: Step = Step.COMMIT
    locked_value: bytes | None = None
    locked_round: int = NIL_ROUND
    valid_value: bytes | None = None
    valid_round: int = NIL_ROUND
    decision: bytes | None = None
    value: bytes | None = None
    proposers: ProposerState | None = None
    proposals: Mapping[int, tuple[Proposal, ...]] = field(default_factory=dict)
    votes: Mapping[tuple[int, int], Mapping[bytes, tuple[Vote, ...]]] = field(default_factory=dict)
    reported: frozenset = frozenset()
    prevote_timeout_done: bool = False
    polka_done: bool = False
    precommit_timeout_done: bool = False


def new_state(address: bytes, validators: ValidatorSet, timeouts: TimeoutParams = TimeoutParams()) -> State:
    """A machine before its first StartHeight (it ignores every other event until then)."""
    return State(address=address, validators=validators, timeouts=timeouts)


# ---- the entry point -----------------------------------------------------------------------

def step(state: State, event: Event) -> tuple[State, list[Action]]:
    """Apply one event, then every rule of Algorithm 1 that it enables, until none fires."""
    out: list[Action] = []
    if isinstance(event, StartHeight):
        s = start_height(state, event, out)
    elif state.step == Step.COMMIT:
        return state, []                       # decided (or not started): wait for StartHeight
    elif isinstance(event, (Proposal, Vote)):
        if event.height != state.height:
            return state, []
        s = receive(state, event, out)
    elif isinstance(event, ProposeValue):
        s = propose_value(state, event, out)
    elif isinstance(event, Timeout):
        if event.height != state.height or event.round != state.round:
            return state, []
        s = {TIMEOUT_PROPOSE: on_timeout_propose, TIMEOUT_PREVOTE: on_timeout_prevote,
             TIMEOUT_PRECOMMIT: on_timeout_precommit}[event.kind](state, out)
    else:
        raise TypeError(f"not a consensus event: {event!r}")
    return apply_rules(s, out), out


def start_height(s: State, ev: StartHeight, out: list[Action]) -> State:
    """Line 53-54 (and `upon start`): a fresh height, everything reset, round 0."""
    vset = ev.validators or s.validators
    if ev.proposers is not None:
        proposers = ev.proposers
    elif ev.validators is None and s.proposers is not None and ev.height == s.height + 1:
        proposers = s.proposers.advance(1)
    else:
        proposers = proposer_state(vset, ev.height)
    s = State(address=s.address, validators=vset, timeouts=s.timeouts, height=ev.height,
              step=Step.PROPOSE, value=ev.value, proposers=proposers)
    return start_round(s, 0, out)


# ---- helpers: who proposes, what the log holds ----------------------------------------------

def proposer_of(s: State, round_: int) -> bytes:
    assert s.proposers is not None
    return round_proposer(s.proposers, round_)


def is_validator(s: State) -> bool:
    return s.validators.get(s.address) is not None


def stake_of(s: State, validators) -> int:
    return sum(s.validators.get(a).stake for a in validators)  # type: ignore[union-attr]


def has_quorum(s: State, stake: int) -> bool:
    """2f + 1: more than 2/3 of the stake."""
    return s.validators.has_quorum(stake)


def has_one_third(s: State, stake: int) -> bool:
    """f + 1: more than 1/3 of the stake, so at least one correct validator among them."""
    return 3 * stake > s.validators.total_stake


def votes_for(s: State, vote_type: int, round_: int, value: bytes | None) -> int:
    """Stake of the `vote_type` votes of round `round_` for `value` (None: nil)."""
    book = s.votes.get((vote_type, round_), {})
    return stake_of(s, [a for a, vs in book.items() if any(v.value == value for v in vs)])


def votes_any(s: State, vote_type: int, round_: int) -> int:
    return stake_of(s, s.votes.get((vote_type, round_), {}).keys())


def _slot(s: State, msg: Proposal | Vote) -> tuple | None:
    """What the log holds in `msg`'s slot (None: a message the log never takes)."""
    if isinstance(msg, Proposal):
        if not 0 <= msg.round <= s.round + PROPOSAL_HORIZON or msg.proposer != proposer_of(s, msg.round):
            return None
        return s.proposals.get(msg.round, ())
    if msg.type not in (PREVOTE, PRECOMMIT) or msg.round < 0 or s.validators.get(msg.validator) is None:
        return None
    return s.votes.get((msg.type, msg.round), {}).get(msg.validator, ())


def signer_of(msg: Proposal | Vote) -> bytes:
    return msg.proposer if isinstance(msg, Proposal) else msg.validator


def future_rounds(s: State, signer: bytes) -> set[int]:
    """Rounds above ours in which the log holds a message of `signer`."""
    rounds = {r for (_, r), book in s.votes.items() if r > s.round and signer in book}
    return rounds | {r for r, ps in s.proposals.items() if r > s.round and any(p.proposer == signer for p in ps)}


def accepts(s: State, msg: Proposal | Vote) -> bool:
    """Whether `receive` would add `msg` to the log: not a copy, its slot not full (the first
    conflicting pair is kept, the rest dropped), and not below the `MAX_FUTURE_ROUNDS`
    highest rounds above ours that its signer already fills.  The caller asks before it
    checks a signature, so a flood of copies or of an equivocator's extra votes is cheap."""
    if s.step == Step.COMMIT or msg.height != s.height:
        return False
    seen = _slot(s, msg)
    if seen is None or msg in seen or len(seen) >= MAX_PER_SLOT:
        return False
    if msg.round <= s.round:
        return True
    ahead = future_rounds(s, signer_of(msg))
    return msg.round in ahead or len(ahead) < MAX_FUTURE_ROUNDS or msg.round > min(ahead)


def keep_highest_rounds(s: State, signer: bytes) -> State:
    """Drop `signer`'s messages of all but its `MAX_FUTURE_ROUNDS` highest rounds above ours:
    an honest signer's latest round is the one that matters (round skip), and a signer
    cannot make the log grow by signing ever higher rounds."""
    ahead = sorted(future_rounds(s, signer))
    drop = set(ahead[:-MAX_FUTURE_ROUNDS])
    if not drop:
        return s
    votes = {k: {a: vs for a, vs in book.items() if a != signer} if k[1] in drop else book
             for k, book in s.votes.items()}
    proposals = {r: tuple(p for p in ps if p.proposer != signer) if r in drop else ps
                 for r, ps in s.proposals.items()}
    return replace(s, votes={k: b for k, b in votes.items() if b},
                   proposals={r: ps for r, ps in proposals.items() if ps})


def receive(s: State, msg: Proposal | Vote, out: list[Action]) -> State:
    """Add a message to the log (if it `accepts` it).  A second, different message of one
    signer for one slot is kept (each counts toward its own value, see State) and reported
    once as equivocation; a third is dropped."""
    if not accepts(s, msg):
        return s
    seen: tuple = _slot(s, msg)  # type: ignore[assignment]
    if isinstance(msg, Proposal):
        s = replace(s, proposals={**s.proposals, msg.round: (*seen, msg)})
        key: tuple = ("proposal", msg.round, msg.proposer)
    else:
        book = s.votes.get((msg.type, msg.round), {})
        s = replace(s, votes={**s.votes, (msg.type, msg.round): {**book, msg.validator: (*seen, msg)}})
        key = (msg.type, msg.round, msg.validator)
    if msg.round > s.round:
        s = keep_highest_rounds(s, signer_of(msg))
    if not seen or key in s.reported:
        return s
    out.append(Equivocation(seen[0], msg))
    return replace(s, reported=s.reported | {key})


def broadcast(s: State, msg: Proposal | Vote, out: list[Action]) -> State:
    """Send to all, the sender included: a node that is not a validator sends nothing."""
    if not is_validator(s):
        return s
    out.append(Broadcast(msg))
    return receive(s, msg, out)


def broadcast_vote(s: State, vote_type: int, value: bytes | None, out: list[Action]) -> State:
    return broadcast(s, Vote(vote_type, s.height, s.round, value, s.address), out)


def schedule(s: State, kind: str, out: list[Action]) -> None:
    out.append(ScheduleTimeout(kind, s.height, s.round, s.timeouts.duration(kind, s.round)))


# ---- the round: StartRound and the timeouts ---------------------------------------------------

def start_round(s: State, round_: int, out: list[Action]) -> State:
    """Lines 11-21: the proposer proposes its valid value (or a new one); others wait."""
    s = replace(s, round=round_, step=Step.PROPOSE, prevote_timeout_done=False,
                polka_done=False, precommit_timeout_done=False)
    if proposer_of(s, round_) == s.address:
        value = s.valid_value if s.valid_value is not None else s.value
        if value is not None:
            return broadcast(s, Proposal(s.height, round_, value, s.valid_round, s.address), out)
        out.append(GetValue(s.height, round_))  # the caller builds it: propose_value
    schedule(s, TIMEOUT_PROPOSE, out)
    return s


def propose_value(s: State, ev: ProposeValue, out: list[Action]) -> State:
    """The answer to GetValue: propose it, if this round still waits for our proposal."""
    if (ev.height, ev.round, s.step) != (s.height, s.round, Step.PROPOSE) or s.valid_value is not None \
            or proposer_of(s, s.round) != s.address \
            or any(p.proposer == s.address for p in s.proposals.get(s.round, ())):
        return s
    s = replace(s, value=ev.value)
    return broadcast(s, Proposal(s.height, s.round, ev.value, s.valid_round, s.address), out)


def on_timeout_propose(s: State, out: list[Action]) -> State:
    """Lines 57-60: no acceptable proposal in time: prevote nil."""
    if s.step != Step.PROPOSE:
        return s
    return enter_prevote(s, None, out)


def on_timeout_prevote(s: State, out: list[Action]) -> State:
    """Lines 61-64: prevotes split, no polka in time: precommit nil."""
    if s.step != Step.PREVOTE:
        return s
    return enter_precommit(s, None, out)


def on_timeout_precommit(s: State, out: list[Action]) -> State:
    """Lines 65-67: no decision in this round: go to the next one."""
    return start_round(s, s.round + 1, out)


def enter_prevote(s: State, value: bytes | None, out: list[Action]) -> State:
    s = replace(s, step=Step.PREVOTE)
    return broadcast_vote(s, PREVOTE, value, out)


def enter_precommit(s: State, value: bytes | None, out: list[Action]) -> State:
    s = replace(s, step=Step.PRECOMMIT)
    return broadcast_vote(s, PRECOMMIT, value, out)


# ---- the upon rules ------------------------------------------------------------------------------

def apply_rules(s: State, out: list[Action]) -> State:
    """Fire enabled rules until none is: each rule returns `s` itself when it does not fire."""
    rules = (upon_decision, upon_round_skip, upon_proposal, upon_proposal_with_polka,
             upon_any_prevotes, upon_polka_for_proposal, upon_polka_for_nil, upon_any_precommits)
    while s.step != Step.COMMIT:
        for rule in rules:
            after = rule(s, out)
            if after is not s:
                s = after
                break
        else:
            return s
    return s


def upon_proposal(s: State, out: list[Action]) -> State:
    """Lines 22-27: a fresh proposal (vr = -1): prevote it unless locked on something else."""
    if s.step != Step.PROPOSE:
        return s
    for p in s.proposals.get(s.round, ()):
        if p.valid_round == NIL_ROUND:
            ok = s.locked_round == NIL_ROUND or s.locked_value == p.value
            return enter_prevote(s, p.value if ok else None, out)
    return s


def upon_proposal_with_polka(s: State, out: list[Action]) -> State:
    """Lines 28-33: a re-proposal backed by a polka at vr < round: prevote it if that polka is
    no older than our lock (or it is our locked value) -- this is how a lock is released."""
    if s.step != Step.PROPOSE:
        return s
    for p in s.proposals.get(s.round, ()):
        if 0 <= p.valid_round < s.round and has_quorum(s, votes_for(s, PREVOTE, p.valid_round, p.value)):
            ok = s.locked_round <= p.valid_round or s.locked_value == p.value
            return enter_prevote(s, p.value if ok else None, out)
    return s


def upon_any_prevotes(s: State, out: list[Action]) -> State:
    """Lines 34-35: 2f+1 prevotes of any kind: wait timeoutPrevote for a polka to form."""
    if s.step != Step.PREVOTE or s.prevote_timeout_done or not has_quorum(s, votes_any(s, PREVOTE, s.round)):
        return s
    schedule(s, TIMEOUT_PREVOTE, out)
    return replace(s, prevote_timeout_done=True)


def upon_polka_for_proposal(s: State, out: list[Action]) -> State:
    """Lines 36-43: a polka for this round's proposal: lock and precommit it (if still at
    prevote), and remember it as the valid value to re-propose."""
    if s.step < Step.PREVOTE or s.polka_done:
        return s
    p = next((p for p in s.proposals.get(s.round, ())
              if has_quorum(s, votes_for(s, PREVOTE, s.round, p.value))), None)
    if p is None:
        return s
    s = replace(s, polka_done=True, valid_value=p.value, valid_round=s.round)
    if s.step == Step.PREVOTE:
        s = replace(s, locked_value=p.value, locked_round=s.round)
        s = enter_precommit(s, p.value, out)
    return s


def upon_polka_for_nil(s: State, out: list[Action]) -> State:
    """Lines 44-46: 2f+1 prevotes for nil: precommit nil."""
    if s.step != Step.PREVOTE or not has_quorum(s, votes_for(s, PREVOTE, s.round, None)):
        return s
    return enter_precommit(s, None, out)


def upon_any_precommits(s: State, out: list[Action]) -> State:
    """Lines 47-48: 2f+1 precommits of any kind: wait timeoutPrecommit, then the next round."""
    if s.precommit_timeout_done or not has_quorum(s, votes_any(s, PRECOMMIT, s.round)):
        return s
    schedule(s, TIMEOUT_PRECOMMIT, out)
    return replace(s, precommit_timeout_done=True)


def upon_decision(s: State, out: list[Action]) -> State:
    """Lines 49-54: a proposal and 2f+1 precommits for it, in any round: decide."""
    for r in sorted(s.proposals):
        for p in s.proposals[r]:
            if has_quorum(s, votes_for(s, PRECOMMIT, r, p.value)):
                book = s.votes[(PRECOMMIT, r)]
                precommits = tuple(v for a in sorted(book) for v in book[a] if v.value == p.value)
                out.append(Decide(s.height, p.value, r, precommits))
                return replace(s, step=Step.COMMIT, decision=p.value)
    return s


def upon_round_skip(s: State, out: list[Action]) -> State:
    """Lines 55-56: f+1 validators already speak in a later round: at least one correct one
    is there, so jump to it rather than wait out our timeouts."""
    senders: dict[int, set[bytes]] = {}
    for (_, r), book in s.votes.items():
        if r > s.round:
            senders.setdefault(r, set()).update(book)
    for r, ps in s.proposals.items():
        if r > s.round:
            senders.setdefault(r, set()).update(p.proposer for p in ps)
    for r in sorted(senders, reverse=True):
        if has_one_third(s, stake_of(s, senders[r])):
            return start_round(s, r, out)
    return s
