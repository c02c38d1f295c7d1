"""The BFT engine: drives the pure Tendermint machine (consensus/machine.py) for one validator.

It is the machine's caller, as the machine's docstring asks:

- getValue(): when the machine asks (`GetValue`: this node proposes a new value in a round),
  the engine builds a block from the mempool (`chain.build_block`) and answers with its hash
  (`ProposeValue`); only the proposer builds, the others execute what it sends.  Blocks are
  kept by hash, so a proposal names a hash and carries the full block beside it;
- Broadcast: the message is signed with the `Signer` (which persists before it signs, so a
  crash never permits a double signature) and handed to the `Transport` (send to all others;
  the machine has already delivered it to this node);
- inbound messages are checked by `receive` BEFORE the transport may relay them, and it
  says how they fared (`Verdict`): an earlier height is STALE; a height beyond the next
  one is AHEAD (its set may be unknown); otherwise the signer must be a validator of the
  message's height (the sets of tip+1 and tip+2 are known from state) and the signature
  must hold, else `InvalidMessage` (the transport drops the sender).  Cheap checks come
  first, so a flood of copies costs no signature check (dedup before verify): a message the machine would not
  take (`machine.accepts`: a copy, an equivocator's third value, a far round) or one
  already held back is IGNORED unverified.  A checked message of the next height is held
  back (bounded per peer and in total, in count and bytes) and replayed after StartHeight;
  a proposal's block must hash to the proposed value and be valid
  (`valid(v)`: its last commit verifies and `chain.execute_block` accepts it), else the
  proposal is not fed and the node prevotes nil when timeoutPropose fires;
- ScheduleTimeout goes to the `Timer` (virtual in tests, the event loop in a node);
- Decide: the precommit signatures become the block's `Commit` (checked with
  `verify_commit`), `chain.commit_block` writes it, the mempool is updated, `on_commit` is
  told, and the next height starts after `commit_delay_ms` (CometBFT's timeout_commit);
- Equivocation: two signed votes of one validator for one step become DuplicateVoteEvidence
  (ledger/evidence.py), kept in `self.evidence` and handed to `on_evidence` (the node sends
  it to the chain in an EVIDENCE transaction, which slashes the signer); once per validator
  and height, however many slots it double-signs.

The validator set of each height comes from the chain (`chain.validator_set`, fixed by the
state two heights before), so bonding, unbonding and slashing change who signs without any
message between nodes.

One writer: every entry point (a message, a timeout) goes through one queue that is drained
in order, so a transport or timer that calls back synchronously cannot re-enter `step`.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ledger import errors
from ledger.block import Block
from ledger.commit import Commit, CommitSig
from ledger.chain import Chain
from ledger.chain import Proposal as BuiltBlock
from ledger.keys import VOTE_DOMAIN, verify
from ledger.mempool import Mempool
from ledger.transition import BlockOutput
from ledger.tx import Transaction

from consensus.machine import (TIMEOUT_PRECOMMIT, TIMEOUT_PREVOTE, TIMEOUT_PROPOSE, Broadcast, Decide,
                               Equivocation, Event, GetValue, Proposal, ProposeValue, ScheduleTimeout,
                               StartHeight, State, Step, Timeout, TimeoutParams, accepts, new_state, step)
from consensus.signer import Signer, SignerError, proposal_payload
from ledger.evidence import DuplicateVoteEvidence
from ledger.validators import ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote, verify_commit

log = logging.getLogger("gradchain.consensus.bft")

MAX_FUTURE_MESSAGES = 10_000          # held-back messages of the next height, in total
MAX_FUTURE_BYTES = 64 * 1024 * 1024   # ... and their bytes (a proposal counts its block)
MAX_FUTURE_PER_PEER = 1_000           # held back from one peer (messages it relayed included)
MAX_FUTURE_PEER_BYTES = 20 * 1024 * 1024  # ... and their bytes: a peer can fill at most a third
VOTE_BYTES = 160                      # what a held vote costs, about its wire size
STALL_ROUNDS = 3                      # no decision for this many rounds' timeouts: stalled
DEFAULT_TIMEOUTS = TimeoutParams()


# ---- signed messages (what travels) ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignedProposal:
    """A proposal, the block it names (value == block.hash) and the proposer's signature."""

    proposal: Proposal
    block: Block
    signature: bytes


Message = SignedProposal | SignedVote


class Verdict(Enum):
    """What `receive` made of a message: only ACCEPTED ones were checked and may be relayed."""

    ACCEPTED = "accepted"  # signed by a validator of its height, new: fed or held back
    IGNORED = "ignored"    # a copy, over a bound, or of no use: not relayed, sender not at fault
    STALE = "stale"        # an earlier height
    AHEAD = "ahead"        # beyond the next height: not checked (the sender is ahead of us)


class InvalidMessage(ValueError):
    """A message whose signer is no validator of its height or whose signature fails."""


@dataclass(frozen=True, slots=True)
class Held:
    """A checked message of the next height, held back until StartHeight."""

    message: Message
    peer: bytes | None
    size: int


@dataclass(frozen=True, slots=True)
class Stall:
    """No decision at `height` for STALL_ROUNDS rounds' timeouts (a display, not state):
    since when (ms, the timer's clock), our round, and whose votes of it are missing."""

    height: int
    round: int
    since_ms: int
    missing_prevotes: tuple[bytes, ...]
    missing_precommits: tuple[bytes, ...]


class Transport(Protocol):
    """Sends a signed message to every other validator (never back to the sender)."""

    def broadcast(self, sender: bytes, message: Message) -> None: ...


class Timer(Protocol):
    """The clock: `now_ms` (block timestamps) and `schedule` (timeouts), virtual in tests."""

    def now_ms(self) -> int: ...

    def schedule(self, delay_ms: int, callback: Callable[[], None]) -> None: ...


OnCommit = Callable[[Block, BuiltBlock, list[Transaction]], None]
OnEvidence = Callable[[DuplicateVoteEvidence], None]


def message_key(m: Message) -> tuple:
    """What identifies a message regardless of its signature bytes."""
    if isinstance(m, SignedProposal):
        p = m.proposal
        return ("proposal", p.height, p.round, p.proposer, p.value, p.valid_round)
    v = m.vote
    return ("vote", v.type, v.height, v.round, v.validator, v.value)


def message_size(m: Message) -> int:
    """About what a held message costs in memory: a proposal, its block's transactions."""
    if isinstance(m, SignedVote):
        return VOTE_BYTES
    return VOTE_BYTES + sum(len(t.raw) for t in m.block.txs)


def signer_of(m: Message) -> bytes:
    return m.proposal.proposer if isinstance(m, SignedProposal) else m.vote.validator


def vote_signature_ok(vset: ValidatorSet, chain_id: str, sv: SignedVote) -> bool:
    """Signed by a validator of `vset` (a malformed field: not a message we can check)."""
    v = sv.vote
    val = vset.get(v.validator) if type(v.validator) is bytes else None
    return val is not None and sv.verify(val.public_key, chain_id)


def proposal_signature_ok(vset: ValidatorSet, chain_id: str, sp: SignedProposal) -> bool:
    p = sp.proposal
    val = vset.get(p.proposer) if type(p.proposer) is bytes else None
    if val is None or type(sp.signature) is not bytes:
        return False
    try:
        payload = proposal_payload(p.height, p.round, p.valid_round, p.value)
        return verify(val.public_key, sp.signature, VOTE_DOMAIN, chain_id, payload)
    except (TypeError, ValueError):
        return False


class BftEngine:
    """One validator (or follower) running Tendermint over `transport`, committing to `chain`."""

    def __init__(self, chain: Chain, mempool: Mempool, signer: Signer,
                 transport: Transport, timer: Timer, on_commit: OnCommit,
                 timeouts: TimeoutParams = DEFAULT_TIMEOUTS, max_block_txs: int = 1000,
                 commit_delay_ms: int = 1000, on_evidence: OnEvidence | None = None):
        self.chain, self.mempool, self.signer = chain, mempool, signer
        self.transport, self.timer = transport, timer
        self.on_commit = on_commit
        self.on_evidence = on_evidence
        self.max_block_txs = max_block_txs
        self.commit_delay_ms = commit_delay_ms
        self.address = signer.key.address
        self.state: State = new_state(self.address, chain.validator_set(chain.tip.height + 1), timeouts)
        self.evidence: list[DuplicateVoteEvidence] = []
        self.last_commit: Commit | None = chain.store.commit(chain.tip.height) if chain.tip.height else None
        # block hash -> (block, its execution output, rejected txs if this node built it)
        self._blocks: dict[bytes, tuple[Block, BlockOutput, list]] = {}
        self._invalid: set[bytes] = set()
        # vote signatures of this height: (type, round, validator, value) -> signature
        self._vote_sigs: dict[tuple[int, int, bytes, bytes | None], bytes] = {}
        self._evidenced: set[bytes] = set()   # validators with evidence at this height: once is enough
        self._future: dict[tuple, Held] = {}
        self._future_bytes = 0
        self._future_by_peer: dict[bytes | None, tuple[int, int]] = {}  # peer -> (count, bytes)
        self._sets: tuple[bytes, dict[int, ValidatorSet]] = (b"", {})   # tip hash -> sets by height
        self.height_since_ms = timer.now_ms()  # when the current height started (display)
        self._queue: deque[Callable[[], None]] = deque()
        self._busy = False
        self.stopped = False

    # ---- entry points -------------------------------------------------------------------

    def start(self) -> None:
        """Begin consensus at the height after the chain's tip."""
        self._submit(self._start_next_height)

    def stop(self) -> None:
        """Ignore everything from now on (pending timeouts and messages included)."""
        self.stopped = True

    def receive(self, message: Message, peer: bytes | None = None) -> Verdict:
        """A signed message from the transport (`peer`: who handed it over), checked now,
        before the transport relays it; InvalidMessage if its signer is no validator of its
        height or its signature fails.  An accepted one is fed (or held back) in order."""
        verdict = self._check(message, peer)
        if verdict is Verdict.ACCEPTED:
            self._submit(lambda: self._on_message(message))
        return verdict

    @property
    def height(self) -> int:
        return self.state.height

    def _submit(self, work: Callable[[], None]) -> None:
        """Queue work and drain the queue unless already draining: one writer, no re-entry."""
        if self.stopped:
            return
        self._queue.append(work)
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue and not self.stopped:
                self._queue.popleft()()
        finally:
            self._busy = False

    # ---- heights -------------------------------------------------------------------------

    def _start_next_height(self) -> None:
        """enterNewHeight: start round 0; this node's block is built only when it has to
        propose one (GetValue), since building costs as much as executing."""
        height = self.chain.tip.height + 1
        self._blocks = {}
        self._invalid = set()
        self._vote_sigs = {}
        self._evidenced = set()
        self.height_since_ms = self.timer.now_ms()
        vset = self.chain.validator_set(height)
        # a new set: the machine derives its proposer priorities (consensus/proposer.py)
        self._feed(StartHeight(height, None, vset if vset != self.state.validators else None))
        held = list(self._future.values())
        self._clear_future()
        for h in held:
            self._on_message(h.message)

    def _propose(self, g: GetValue) -> None:
        """getValue(): build a block from the mempool on our tip and hand its hash back."""
        if (g.height, g.round) != (self.state.height, self.state.round):
            return  # the round moved on meanwhile
        built = self.chain.build_block(self.mempool.reap(self.max_block_txs), self.address,
                                       self.timer.now_ms(), self.last_commit)
        self._blocks[built.block.hash] = (built.block, built.output, built.rejected)
        self._feed(ProposeValue(g.height, g.round, built.block.hash))

    def _commit(self, d: Decide) -> None:
        """Write the decided block with its commit certificate, then schedule the next height."""
        block, output, rejected = self._blocks[d.value]
        found = ((v.validator, self._vote_sigs.get((PRECOMMIT, d.round, v.validator, v.value))) for v in d.precommits)
        sigs = tuple(sorted((CommitSig(a, sig) for a, sig in found if sig is not None),
                            key=lambda s: s.validator))
        commit = Commit(d.height, d.round, d.value, sigs)
        verify_commit(self.state.validators, self.chain.chain_id, commit, d.height, d.value)
        self.chain.commit_block(block, commit, output)
        self.last_commit = commit
        evicted = self.mempool.update(block.txs, [t for t, _ in rejected])
        self.on_commit(block, BuiltBlock(block, output, rejected), evicted)
        log.info("committed height %d round %d block %s", d.height, d.round, d.value.hex()[:16])
        self.timer.schedule(self.commit_delay_ms,
                            lambda h=d.height + 1: self._submit(lambda: self._start_height(h)))

    # ---- the machine and its actions -----------------------------------------------------

    def _feed(self, event: Event) -> None:
        self.state, actions = step(self.state, event)
        for a in actions:
            if isinstance(a, Broadcast):
                self._broadcast(a.message)
            elif isinstance(a, ScheduleTimeout):
                t = Timeout(a.kind, a.height, a.round)
                self.timer.schedule(a.duration_ms, lambda t=t: self._submit(lambda: self._feed(t)))
            elif isinstance(a, Decide):
                self._commit(a)
            elif isinstance(a, Equivocation):
                self._on_equivocation(a)
            elif isinstance(a, GetValue):
                self._submit(lambda g=a: self._propose(g))  # after this step's actions

    def _on_equivocation(self, e: Equivocation) -> None:
        """Two votes of one validator for one step: evidence, if both signatures are at hand
        (a conflicting proposal is not punished: only votes finalise blocks)."""
        if not isinstance(e.first, Vote) or not isinstance(e.second, Vote):
            log.warning("conflicting proposals from %s at height %d", e.first.proposer.hex()[:16], e.first.height)
            return
        votes = []
        for v in (e.first, e.second):
            sig = self._vote_sigs.get((v.type, v.round, v.validator, v.value))
            if sig is None:
                return
            votes.append(SignedVote(v, sig))
        ev = DuplicateVoteEvidence.of(*votes)
        if ev.validator in self._evidenced:
            return
        self._evidenced.add(ev.validator)
        log.warning("double signing by %s at height %d round %d", ev.validator.hex()[:16], ev.height, e.first.round)
        self.evidence.append(ev)
        if self.on_evidence is not None:
            self.on_evidence(ev)

    def _broadcast(self, msg: Proposal | Vote) -> None:
        """Sign (the signer persists first), then send.  A refusal sends nothing: the machine
        already counted the message locally, which only matters if the signer state and the
        machine disagree (a restart mid-height), and then silence is the safe choice."""
        try:
            if isinstance(msg, Proposal):
                sig = self.signer.sign_proposal(msg.height, msg.round, msg.valid_round, msg.value)
                out: Message = SignedProposal(msg, self._blocks[msg.value][0], sig)
            else:
                sig = self.signer.sign_vote(msg.type, msg.height, msg.round, msg.value)
                self._vote_sigs[(msg.type, msg.round, msg.validator, msg.value)] = sig
                out = SignedVote(msg, sig)
        except SignerError as e:
            log.error("signer refused %r: %s", msg, e)
            return
        self.transport.broadcast(self.address, out)

    # ---- inbound -----------------------------------------------------------------------

    def _validator_set(self, height: int) -> ValidatorSet:
        """The set of `height` (tip <= height <= tip + 2), read from state once per tip."""
        tip = self.chain.tip
        if self._sets[0] != tip.hash:
            self._sets = (tip.hash, {})
        sets = self._sets[1]
        if height not in sets:
            sets[height] = self.chain.validator_set(height)
        return sets[height]

    def _check(self, m: Message, peer: bytes | None) -> Verdict:
        """The checks of `receive`, cheapest first: height, membership, copies, signature;
        then a message of the next height is held back (if the bounds allow)."""
        inner = m.proposal if isinstance(m, SignedProposal) else m.vote
        height = inner.height
        if type(height) is not int or height < self.state.height or height <= self.chain.tip.height:
            return Verdict.STALE
        if height > max(self.state.height, self.chain.tip.height) + 1:
            return Verdict.AHEAD
        vset = self._validator_set(height)
        signer = signer_of(m)
        if type(signer) is not bytes or vset.get(signer) is None:
            raise InvalidMessage(f"the signer is not a validator of height {height}")
        current = height == self.state.height
        if current and not accepts(self.state, inner):
            return Verdict.IGNORED
        if not current and message_key(m) in self._future:
            return Verdict.IGNORED
        ok = vote_signature_ok(vset, self.chain.chain_id, m) if isinstance(m, SignedVote) \
            else proposal_signature_ok(vset, self.chain.chain_id, m)
        if not ok:
            raise InvalidMessage(f"bad signature on a message of height {height}")
        if not current:
            return self._hold(m, peer)
        return Verdict.ACCEPTED

    def _hold(self, m: Message, peer: bytes | None) -> Verdict:
        """Keep a checked message of the next height, unless its peer or the total is full."""
        size = message_size(m)
        count, nbytes = self._future_by_peer.get(peer, (0, 0))
        if count >= MAX_FUTURE_PER_PEER or nbytes + size > MAX_FUTURE_PEER_BYTES \
                or len(self._future) >= MAX_FUTURE_MESSAGES or self._future_bytes + size > MAX_FUTURE_BYTES:
            return Verdict.IGNORED
        self._future[message_key(m)] = Held(m, peer, size)
        self._future_by_peer[peer] = (count + 1, nbytes + size)
        self._future_bytes += size
        return Verdict.ACCEPTED

    def _clear_future(self) -> None:
        self._future = {}
        self._future_by_peer = {}
        self._future_bytes = 0

    def _on_message(self, m: Message) -> None:
        """Feed a message `_check` accepted (held-back ones once their height starts)."""
        inner = m.proposal if isinstance(m, SignedProposal) else m.vote
        if inner.height != self.state.height:
            return
        if isinstance(m, SignedVote):
            v = m.vote
            self._vote_sigs.setdefault((v.type, v.round, v.validator, v.value), m.signature)
            self._feed(m.vote)
            if v.round > self.state.round or not self._logged(v):  # it may have evicted a far round
                self._prune_sigs(v.validator)
        elif self._valid(m.proposal.value, m.block):
            self._feed(m.proposal)

    def _logged(self, v: Vote) -> bool:
        return v in self.state.votes.get((v.type, v.round), {}).get(v.validator, ())

    def _prune_sigs(self, validator: bytes) -> None:
        """Forget the signatures of `validator`'s votes the machine no longer holds."""
        for key in [k for k in self._vote_sigs if k[2] == validator]:
            if not self._logged(Vote(key[0], self.state.height, key[1], key[3], validator)):
                del self._vote_sigs[key]

    def _valid(self, value: bytes, block: Block) -> bool:
        """valid(v) of the paper: the block hashes to v, extends our tip, its last commit
        finalises the tip, and it re-executes to the roots its header claims."""
        if value in self._blocks:
            return True
        if value in self._invalid or type(block) is not Block:
            return False
        try:
            if block.hash != value:
                raise errors.InvalidBlock("block does not hash to the proposed value")
            tip = self.chain.tip
            if block.header.height != tip.height + 1:
                raise errors.InvalidBlock("block is not for this height")
            if tip.height >= 1:
                if block.last_commit is None:
                    raise errors.InvalidBlock("block lacks the commit of its parent")
                verify_commit(self.chain.validator_set(tip.height), self.chain.chain_id, block.last_commit,
                              tip.height, tip.hash)
            # a tx in our mempool had its signature checked at admission: not again
            output = self.chain.execute_block(block, verified=self.mempool)
        except (errors.LedgerError, ValueError, TypeError) as e:
            log.info("invalid proposed block %s: %s", value.hex()[:16], e)
            self._invalid.add(value)
            return False
        self._blocks[value] = (block, output, [])
        return True

    # ---- block sync (net/sync.py): blocks finalised without us ---------------------------

    def apply_synced(self, block: Block, commit: Commit, output: BlockOutput) -> None:
        """A block the others finalised, handed over by block sync, which has checked its
        commit certificate and executed it on our tip (`output`).  Write it like a decision;
        if consensus is running, leave the height we were in and start the next one at once.
        A block that no longer extends our tip (we decided it ourselves meanwhile) is ignored."""
        self._submit(lambda: self._apply_synced(block, commit, output))

    def _apply_synced(self, block: Block, commit: Commit, output: BlockOutput) -> None:
        tip = self.chain.tip
        if block.header.height != tip.height + 1 or block.header.parent_hash != tip.hash:
            return
        self.chain.commit_block(block, commit, output)
        self.last_commit = commit
        evicted = self.mempool.update(block.txs, [])
        self.on_commit(block, BuiltBlock(block, output, []), evicted)
        log.debug("synced height %d block %s", block.height, block.hash.hex()[:16])  # node.py shows sync progress
        if self.started:  # running: the height we were in is decided, go on
            self._start_next_height()
        else:                      # not started yet: held messages of that height are stale
            held = [h for h in self._future.values() if
                    (h.message.proposal if isinstance(h.message, SignedProposal) else h.message.vote).height
                    > block.height]
            self._clear_future()
            for h in held:
                self._hold(h.message, h.peer)

    def _start_height(self, height: int) -> None:
        """Start `height` unless sync already moved us there or past it (the commit delay
        of a height we decided can end after a synced block started the next one)."""
        if self.chain.tip.height + 1 == height and self.state.height < height:
            self._start_next_height()

    @property
    def started(self) -> bool:
        """Whether consensus has started (StartHeight fed at least once)."""
        return self.state.height > 0

    # ---- liveness that users can see (RPC status, the log) --------------------------------

    def stall(self) -> Stall | None:
        """A Stall if the current height has gone undecided for STALL_ROUNDS rounds' worth
        of timeouts (any round: a round without 2f+1 votes has no timeout that ends it)."""
        s = self.state
        if not self.started or self.stopped or s.step == Step.COMMIT:
            return None
        t = s.timeouts
        after = sum(t.duration(k, r) for r in range(STALL_ROUNDS)
                    for k in (TIMEOUT_PROPOSE, TIMEOUT_PREVOTE, TIMEOUT_PRECOMMIT))
        if self.timer.now_ms() - self.height_since_ms < after:
            return None

        def missing(vote_type: int) -> tuple[bytes, ...]:
            book = s.votes.get((vote_type, s.round), {})
            return tuple(v.address for v in s.validators.validators if v.address not in book)
        return Stall(s.height, s.round, self.height_since_ms, missing(PREVOTE), missing(PRECOMMIT))
