"""The consensus reactor: carries BftEngine's signed messages over the p2p transport.

consensus/bft.py talks to the world through two Protocols, `Transport` and `Timer`; this
module gives it real ones (CometBFT's consensus reactor plays the same part):

- `P2PTransport.broadcast` encodes a SignedProposal or SignedVote as a canonical msgpack
  body and gossips it ("proposal" / "vote"); p2p relays and de-duplicates;
- `stall_loop` logs `engine.stall()` once when it starts, then at a bounded rate;
  `stall_json` is its form in RPC status;
- `LoopTimer` is the asyncio event loop's clock (`call_later`) with wall-clock `now_ms`;
- `attach` registers inbound handlers: a body is decoded strictly (exact field count and
  types, the block through `decode_block` with the chain's size limits) and handed to
  `engine.receive`, which checks the signer and signature before anything is relayed and
  answers a `Verdict`: only an ACCEPTED message is relayed (the handler returns None);
  an IGNORED or STALE one is not (False: p2p keeps its hash, so copies stay cheap).  A
  malformed body, or one the engine refuses (InvalidMessage: no validator of its height,
  a bad signature), raises BadMessage, which drops (and bans) the sending peer.
  A message of a height the engine cannot check yet (AHEAD: beyond the one it holds back)
  is NOT_HANDLED: p2p forgets its hash (so a later re-gossip is handled), it is not
  relayed, and block sync (net/sync.py) is told that the sender is ahead of us;
- blobs (with `blobs`, net/blob_reactor.py): a proposal of the next heights whose block
  records a blob this node lacks is checked for its proposer's signature, and the blob is
  fetched (the sender first) BEFORE the engine sees the proposal, in a task of its own: the
  engine's one thread never waits on the network.  The handler returns False (not relayed
  yet, its copies ignored); once the fetch ends (complete or not, within
  `fetch_timeout`) the proposal goes to the engine, which executes it (without the data it
  is invalid: the node prevotes nil), and an accepted one is relayed then;
- re-gossip: the transport keeps our own signed messages of the latest height we signed
  at and sends them again (the same bytes, no new signature) to a peer that (re)connects,
  and to everyone when we have sent nothing for `regossip_s` while that height is still
  undecided here.  p2p.send/broadcast bypass our own dedupe; receivers still dedupe by
  hash, so a peer that already has a message neither handles nor relays it: no storm.

Wire bodies (docs/p2p.md):
  proposal: [height, round, value, valid_round, proposer, block bytes, signature]
  vote:     [type, height, round, value or nil, validator, signature]
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from consensus.bft import BftEngine, InvalidMessage, Message, SignedProposal, Stall, Verdict, proposal_signature_ok
from consensus.machine import Proposal
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote
from ledger import errors
from ledger.block import decode_block, encode_block
from ledger.hashing import HASH_SIZE
from ledger.keys import SIGNATURE_SIZE
from ledger.params import ChainParams
from ledger.tx import Transaction

from net.p2p import NOT_HANDLED, P2P, BadMessage

if TYPE_CHECKING:
    from net.blob_reactor import BlobReactor
    from net.sync import BlockSync

log = logging.getLogger("gradchain.net.consensus")

ADDRESS_SIZE = 20
U32_MAX = 2**32 - 1
MAX_BLOB_PROPOSALS = 4    # proposals waiting for their blobs at once; more are handed on as they are
MAX_OWN_MESSAGES = 64      # own messages kept for re-gossip (of one height; the latest rounds)
REGOSSIP_S = 1.0           # silence after which our undecided height's messages are re-sent


def encode_proposal(sp: SignedProposal) -> list:
    p = sp.proposal
    return [p.height, p.round, p.value, p.valid_round, p.proposer, encode_block(sp.block), sp.signature]


def encode_vote(sv: SignedVote) -> list:
    v = sv.vote
    return [v.type, v.height, v.round, v.value, v.validator, sv.signature]


def _int(x: Any, lo: int, hi: int, what: str) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise BadMessage(f"{what} must be an integer in [{lo}, {hi}]")
    return x


def _bytes(x: Any, size: int, what: str) -> bytes:
    if type(x) is not bytes or len(x) != size:
        raise BadMessage(f"{what} must be {size} bytes")
    return x


def decode_proposal(body: Any, params: ChainParams,
                    known: Callable[[bytes], Transaction | None] = lambda _h: None) -> SignedProposal:
    """A proposal body, checked field by field; BadMessage if it is not exactly one.
    `known`: transactions already decoded, by hash (the mempool), not decoded again."""
    if type(body) is not list or len(body) != 7:
        raise BadMessage("a proposal is an array of 7 fields")
    height, round_, value, valid_round, proposer, raw_block, sig = body
    _int(height, 1, 2**63 - 1, "height")
    _int(round_, 0, U32_MAX, "round")
    _bytes(value, HASH_SIZE, "value")
    _int(valid_round, -1, round_ - 1 if round_ > 0 else -1, "valid_round")
    _bytes(proposer, ADDRESS_SIZE, "proposer")
    _bytes(sig, SIGNATURE_SIZE, "signature")
    if type(raw_block) is not bytes:
        raise BadMessage("block must be bytes")
    try:
        block = decode_block(raw_block, params.max_block_bytes, params.max_tx_bytes, known)
    except errors.LedgerError as e:
        raise BadMessage(f"proposal block: {e}") from None
    return SignedProposal(Proposal(height, round_, value, valid_round, proposer), block, sig)


def decode_vote(body: Any) -> SignedVote:
    """A vote body, checked field by field; BadMessage if it is not exactly one."""
    if type(body) is not list or len(body) != 6:
        raise BadMessage("a vote is an array of 6 fields")
    vtype, height, round_, value, validator, sig = body
    if type(vtype) is not int or vtype not in (PREVOTE, PRECOMMIT):
        raise BadMessage("vote type must be prevote or precommit")
    _int(height, 1, 2**63 - 1, "height")
    _int(round_, 0, U32_MAX, "round")
    if value is not None:
        _bytes(value, HASH_SIZE, "value")
    _bytes(validator, ADDRESS_SIZE, "validator")
    _bytes(sig, SIGNATURE_SIZE, "signature")
    return SignedVote(Vote(vtype, height, round_, value, validator), sig)


def _wire(message: Message) -> tuple[str, int, list]:
    """(type, height, body) of a signed message."""
    if isinstance(message, SignedProposal):
        return "proposal", message.proposal.height, encode_proposal(message)
    return "vote", message.vote.height, encode_vote(message)


class P2PTransport:
    """BftEngine's Transport over p2p gossip (every peer; p2p relays and de-duplicates).

    It remembers our own signed messages of the latest height we signed at, so that they
    can be sent again (`resend`) to peers that missed them while a link was down."""

    def __init__(self, p2p: P2P):
        self.p2p = p2p
        self.height = 0                 # the latest height we signed a message at
        self.last_sent = 0.0            # time.monotonic() of our latest own message
        self.resent = 0                 # messages re-sent (tests, logs)
        self._own: deque[tuple[str, list]] = deque(maxlen=MAX_OWN_MESSAGES)

    def broadcast(self, sender: bytes, message: Message) -> None:
        msg_type, height, body = _wire(message)
        if height > self.height:
            self.height = height
            self._own.clear()
        if height == self.height:
            self._own.append((msg_type, body))
        self.last_sent = time.monotonic()
        self.p2p.gossip(msg_type, body)

    def resend(self, peer: bytes | None = None) -> int:
        """Send our own messages of `self.height` again, to one peer or (None) to all;
        how many messages.  No new signature: the same bodies, hence the same bytes and
        hashes, which receivers that have them drop without relaying."""
        n = 0
        for msg_type, body in list(self._own):
            if peer is None:
                self.p2p.broadcast(msg_type, body)
            elif not self.p2p.send(peer, msg_type, body):
                break
            n += 1
        self.resent += n
        return n


async def regossip_loop(transport: P2PTransport, engine: BftEngine, interval_s: float = REGOSSIP_S) -> None:
    """Re-send our messages of a height we have not decided yet, when we have been silent
    for `interval_s` (a stalled round): messages lost on a link that was down (or dropped
    by a peer that was behind) are recovered without waiting for round timeouts.  A height
    that is moving sends new messages, and then nothing is re-sent."""
    while True:
        await asyncio.sleep(interval_s)
        if transport.height > engine.chain.tip.height and not engine.stopped \
                and time.monotonic() - transport.last_sent >= interval_s:
            n = transport.resend()
            if n:
                log.debug("re-sent %d own messages of height %d", n, transport.height)


STALL_LOG_S = 60.0         # a stall is logged when it starts, then at most this often


def stall_json(st: Stall) -> dict:
    """The `stalled` field of RPC status (docs/rpc.md): addresses in hex, `since` in unix s."""
    return {"height": st.height, "round": st.round, "since": st.since_ms // 1000,
            "missing": {"prevote": [a.hex() for a in st.missing_prevotes],
                        "precommit": [a.hex() for a in st.missing_precommits]}}


def stall_line(st: Stall) -> str:
    miss = sorted(set(st.missing_prevotes) | set(st.missing_precommits))
    return (f"no progress at height {st.height} (round {st.round}) since {st.since_ms // 1000}: votes missing "
            f"from {', '.join(a.hex()[:16] for a in miss) or 'nobody'}")


async def stall_loop(engine: BftEngine, interval_s: float = 1.0, log_every_s: float = STALL_LOG_S) -> None:
    """Log a stall once when it starts and then every `log_every_s` while it lasts (never
    once per round), and one line when the chain moves again."""
    logged_at: float | None = None
    while True:
        await asyncio.sleep(interval_s)
        st, now = engine.stall(), time.monotonic()
        if st is None:
            if logged_at is not None:
                log.warning("progress again at height %d", engine.height)
            logged_at = None
        elif logged_at is None or now - logged_at >= log_every_s:
            log.warning("%s", stall_line(st))
            logged_at = now


class LoopTimer:
    """BftEngine's Timer on the running asyncio loop; now_ms is wall-clock (block times)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.get_running_loop()
        self._handles: set[asyncio.TimerHandle] = set()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def schedule(self, delay_ms: int, callback: Callable[[], None]) -> None:
        def fire() -> None:
            self._handles.discard(handle)
            callback()
        handle = self.loop.call_later(max(0, delay_ms) / 1000, fire)
        self._handles.add(handle)

    def cancel_all(self) -> None:
        for h in self._handles:
            h.cancel()
        self._handles.clear()


def attach(p2p: P2P, engine: BftEngine, params: ChainParams, transport: P2PTransport | None = None,
           sync: "BlockSync | None" = None, blobs: "BlobReactor | None" = None) -> None:
    """Route inbound proposals and votes to the engine (after strict decoding).  With
    `transport`, a peer that connects gets our own messages of the current height; with
    `sync`, a message of a later height than we can use tells sync that its sender is ahead;
    with `blobs`, a proposal's missing blobs are fetched before the engine sees it."""
    fetching: set[bytes] = set()  # proposals (by block hash) waiting for their blobs
    tasks: set[asyncio.Task] = set()
    def deliver(peer: bytes, height: int, message: Message) -> Any:
        # the engine checks before p2p relays: only what it accepted travels on
        try:
            verdict = engine.receive(message, peer)
        except InvalidMessage as e:
            raise BadMessage(str(e)) from None
        if verdict is Verdict.AHEAD:
            if sync is not None:
                sync.note_height(peer, height - 1)
            return NOT_HANDLED
        return None if verdict is Verdict.ACCEPTED else False

    def needs_blobs(sp: SignedProposal) -> bool:
        """A signed proposal of the next heights whose block names a blob we lack."""
        tip = engine.chain.tip.height
        if blobs is None or not tip < sp.proposal.height <= tip + 2 or sp.block.hash != sp.proposal.value \
                or not blobs.missing(sp.block):
            return False
        vset = engine.chain.validator_set(sp.proposal.height)
        if vset.get(sp.proposal.proposer) is None or not proposal_signature_ok(vset, engine.chain.chain_id, sp):
            raise BadMessage(f"proposal of height {sp.proposal.height}: not signed by a validator of it")
        return True

    async def fetch_then_deliver(peer: bytes, sp: SignedProposal, body: Any) -> None:
        assert blobs is not None
        try:
            await blobs.fetch_block(sp.block, prefer=peer)
            if deliver(peer, sp.proposal.height, sp) is None:
                p2p.broadcast("proposal", body, exclude=peer)  # accepted: relayed now, with its data here
        except BadMessage as e:
            log.info("proposal from %s refused after its blobs were fetched: %s", peer.hex()[:16], e)
        finally:
            fetching.discard(sp.block.hash)

    def on_proposal(peer: bytes, body: Any) -> Any:
        sp = decode_proposal(body, params, engine.mempool.get)
        if needs_blobs(sp) and len(fetching) < MAX_BLOB_PROPOSALS:
            if sp.block.hash not in fetching:
                fetching.add(sp.block.hash)
                task = asyncio.ensure_future(fetch_then_deliver(peer, sp, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            return False
        return deliver(peer, sp.proposal.height, sp)

    def on_vote(peer: bytes, body: Any) -> Any:
        sv = decode_vote(body)
        return deliver(peer, sv.vote.height, sv)

    p2p.on("proposal", on_proposal)
    p2p.on("vote", on_vote)
    if transport is not None:
        p2p.on_connect(lambda peer: transport.resend(peer))
