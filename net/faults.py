"""Test-only fault injection for real node processes (issue 5): never use on a real network.

Two switches of node.py, both meant for tests and benchmarks of several validators:

`--test-faults FILE` reads a JSON schedule and installs it as the P2P `LinkPolicy`
(net/p2p.py), which decides for every outgoing message whether it is dropped or delayed:

    {"seed": 7,
     "t0_unix_ms": 1764500000000,          # optional: phase times count from this instant
     "phases": [
       {"from_s": 0, "to_s": 20, "partition": [["KEYHEX", ...], ["KEYHEX", ...]]},
       {"from_s": 25, "to_s": 85, "drop": 0.2, "delay_ms": [0, 400]}]}

Times are seconds from the node's start (or from `t0_unix_ms`, so that the processes of a
test share one clock); a phase holds in [from_s, to_s).  `partition` cuts every link
between nodes of different groups (a node named in no group keeps all its links); `drop`
is the probability that a message is lost; `delay_ms` delays each message by a uniform
draw in [lo, hi] ms, which also reorders them.  Outside every phase the links are clean.
Decisions are a pure function of (seed, phase index, sender key, receiver key, position of
the message on that link), as in `SeededFaults`: one seeded random stream per link and
phase, never the clock's jitter.  Handshakes are never subject to the policy.

`--test-byzantine double-sign` makes this validator equivocate: every prevote it sends is
followed by a second, conflicting prevote for the same height and round (nil for a block,
or a fixed bogus hash for nil), signed with the raw validator key so the double-sign guard
(consensus/signer.py) cannot refuse it, and gossiped to every peer.  Honest engines see two
votes of one validator for one slot and report `Equivocation` (the evidence of issue 5).

`--test-byzantine withhold-blobs` makes this validator keep its blobs to itself: its blob
reactor (net/blob_reactor.py, wired by node.py) answers no blob_get at all, so a block it
proposes with a blob only it holds cannot be checked by the others (they prevote nil).

Both print a loud warning at start.  A bad schedule file is a clear error before the node
starts (`load_schedule` raises ValueError).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.bft import Message, Transport
from ledger.hashing import hash_bytes
from ledger.keys import PUBKEY_SIZE, PrivateKey
from ledger.votes import NIL, PREVOTE, SignedVote, Vote, sign_vote
from net.p2p import P2P, SeededFaults

log = logging.getLogger("gradchain.faults")

WITHHOLD_BLOBS = "withhold-blobs"
BYZANTINE_MODES = ("double-sign", WITHHOLD_BLOBS)
BOGUS_HASH = hash_bytes(b"gradchain/test-byzantine/conflicting-prevote")
BANNER = "!" * 78


# ---- the schedule ------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """One window of faults, [from_s, to_s) seconds after the schedule's start."""

    from_s: float
    to_s: float
    partition: tuple[frozenset[bytes], ...] = ()
    drop: float = 0.0
    delay_ms: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Schedule:
    seed: int
    phases: tuple[Phase, ...]
    t0_unix_ms: int | None = None


def _num(x: Any, what: str, lo: float, hi: float = float("inf")) -> float:
    if type(x) not in (int, float) or not lo <= x <= hi:
        raise ValueError(f"{what} must be a number in [{lo}, {hi}]")
    return float(x)


def _phase(i: int, d: Any) -> Phase:
    where = f"phase {i}"
    if type(d) is not dict:
        raise ValueError(f"{where} must be an object")
    unknown = set(d) - {"from_s", "to_s", "partition", "drop", "delay_ms"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    from_s = _num(d.get("from_s"), f"{where}: from_s", 0)
    to_s = _num(d.get("to_s"), f"{where}: to_s", from_s)
    groups = d.get("partition", [])
    if type(groups) is not list or any(type(g) is not list for g in groups):
        raise ValueError(f"{where}: partition must be a list of lists of node keys (hex)")
    parsed = []
    for g in groups:
        keys = set()
        for k in g:
            try:
                key = bytes.fromhex(k) if type(k) is str else b""
            except ValueError:
                key = b""
            if len(key) != PUBKEY_SIZE:
                raise ValueError(f"{where}: {str(k)[:80]!r} is not a node key ({PUBKEY_SIZE} bytes in hex)")
            keys.add(key)
        parsed.append(frozenset(keys))
    delay = d.get("delay_ms", [0, 0])
    if type(delay) is not list or len(delay) != 2:
        raise ValueError(f"{where}: delay_ms must be [lo, hi]")
    lo = _num(delay[0], f"{where}: delay_ms lo", 0, 600_000)
    hi = _num(delay[1], f"{where}: delay_ms hi", lo, 600_000)
    return Phase(from_s, to_s, tuple(parsed), _num(d.get("drop", 0.0), f"{where}: drop", 0, 1), (int(lo), int(hi)))


def parse_schedule(doc: Any) -> Schedule:
    """A schedule from its JSON value; ValueError with the reason."""
    if type(doc) is not dict:
        raise ValueError("a fault schedule is a JSON object")
    unknown = set(doc) - {"seed", "t0_unix_ms", "phases"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    seed, t0 = doc.get("seed"), doc.get("t0_unix_ms")
    if type(seed) is not int or not -2**50 <= seed < 2**50:
        raise ValueError("seed must be an integer in [-2**50, 2**50)")
    if t0 is not None and (type(t0) is not int or t0 < 0):
        raise ValueError("t0_unix_ms must be a non-negative integer")
    phases = doc.get("phases")
    if type(phases) is not list:
        raise ValueError("phases must be a list")
    return Schedule(seed, tuple(_phase(i, p) for i, p in enumerate(phases)), t0)


def load_schedule(path: str | Path) -> Schedule:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"cannot read fault schedule {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"fault schedule {path} is not JSON: {e}") from None
    try:
        return parse_schedule(doc)
    except ValueError as e:
        raise ValueError(f"fault schedule {path}: {e}") from None


# ---- the link policy ---------------------------------------------------------------------

@dataclass
class ScheduledFaults:
    """A LinkPolicy that applies the phase holding at the moment a message is sent.

    Each phase is a `SeededFaults` of its own (seed derived from the schedule's seed and the
    phase index), so a phase's decisions depend only on the messages sent during it."""

    schedule: Schedule
    start_unix: float = field(default_factory=time.time)   # when t0_unix_ms is not given
    clock: Any = time.time
    _faults: list[SeededFaults] = field(default_factory=list, repr=False)
    decided: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        if self.schedule.t0_unix_ms is not None:
            self.start_unix = self.schedule.t0_unix_ms / 1000
        for i, p in enumerate(self.schedule.phases):
            f = SeededFaults(seed=self.schedule.seed * 1000 + i, drop=p.drop,
                             max_delay=(p.delay_ms[1] - p.delay_ms[0]) / 1000)
            if len(p.partition) > 1:
                f.partition(*p.partition)
            self._faults.append(f)

    def phase_at(self, t: float) -> int | None:
        """Index of the first phase holding t seconds after the start, or None."""
        for i, p in enumerate(self.schedule.phases):
            if p.from_s <= t < p.to_s:
                return i
        return None

    def decide(self, src: bytes, dst: bytes, msg_type: str) -> float | None:
        i = self.phase_at(self.clock() - self.start_unix)
        if i is None:
            return 0.0
        self.decided += 1
        d = self._faults[i].decide(src, dst, msg_type)
        if d is None:
            self.dropped += 1
            return None
        return d + self.schedule.phases[i].delay_ms[0] / 1000


# ---- the byzantine transport -------------------------------------------------------------

class DoubleSignTransport:
    """Wraps the engine's Transport: after each prevote, a conflicting prevote for the same
    height and round, signed with the raw key (bypassing the Signer's guard)."""

    def __init__(self, inner: Transport, key: PrivateKey, chain_id: str):
        self.inner, self.key, self.chain_id = inner, key, chain_id
        self.sent = 0

    def conflicting(self, sv: SignedVote) -> SignedVote:
        v = sv.vote
        other = BOGUS_HASH if v.value is None else None
        sig = sign_vote(self.key, self.chain_id, v.type, v.height, v.round, NIL if other is None else other)
        return SignedVote(Vote(v.type, v.height, v.round, other, v.validator), sig)

    def broadcast(self, sender: bytes, message: Message) -> None:
        self.inner.broadcast(sender, message)
        if isinstance(message, SignedVote) and message.vote.type == PREVOTE:
            self.inner.broadcast(sender, self.conflicting(message))
            self.sent += 1
            log.warning("TEST BYZANTINE: double-signed prevote at height %d round %d",
                        message.vote.height, message.vote.round)


# ---- wiring (node.py calls this once) ----------------------------------------------------

def warn(what: str) -> None:
    """The loud start-up warning, on stderr and in the log."""
    text = f"{BANNER}\n!! TEST ONLY: this node runs with {what}.\n!! Never run it on a real network.\n{BANNER}"
    print(text, file=sys.stderr, flush=True)
    log.warning("TEST ONLY: this node runs with %s", what)


def install(p2p: P2P, engine: Any, key: PrivateKey, chain_id: str, faults_file: str | Path | None,
            byzantine: str | None) -> None:
    """Install the test-only faults node.py was started with: the schedule as p2p's link
    policy, the byzantine mode as a wrapper around the engine's transport.  A no-op when
    neither flag was given."""
    if faults_file is not None:
        schedule = load_schedule(faults_file)
        p2p.link = ScheduledFaults(schedule)
        warn(f"injected network faults from {faults_file} (seed {schedule.seed}, "
             f"{len(schedule.phases)} phases)")
    if byzantine is not None:
        if byzantine not in BYZANTINE_MODES:
            raise ValueError(f"unknown byzantine mode {byzantine!r} (known: {', '.join(BYZANTINE_MODES)})")
        if byzantine == WITHHOLD_BLOBS:  # node.py hands the flag to its BlobReactor
            warn("a BYZANTINE validator that withholds its blobs from every peer")
            return
        engine.transport = DoubleSignTransport(engine.transport, key, chain_id)
        warn("a BYZANTINE validator that double-signs prevotes")
