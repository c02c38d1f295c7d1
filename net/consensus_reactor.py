"""The consensus reactor: carries BftEngine's signed messages over the p2p transport.

consensus/bft.py talks to the world through two Protocols, `Transport` and `Timer`; this
module gives it real ones (CometBFT's consensus reactor plays the same part):

- `P2PTransport.broadcast` encodes a SignedProposal or SignedVote as a canonical msgpack
  body and gossips it ("proposal" / "vote"); p2p relays and de-duplicates;
- `LoopTimer` is the asyncio event loop's clock (`call_later`) with wall-clock `now_ms`;
- `attach` registers inbound handlers: a body is decoded strictly (exact field count and
  types, the block through `decode_block` with the chain's size limits) and handed to
  `engine.receive`; a malformed body raises BadMessage, which drops the sending peer.
  Signatures, heights and block validity are the engine's checks, not this module's.

Wire bodies (docs/p2p.md):
  proposal: [height, round, value, valid_round, proposer, block bytes, signature]
  vote:     [type, height, round, value or nil, validator, signature]
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from consensus.bft import BftEngine, Message, SignedProposal, SignedVote
from consensus.machine import Proposal, Vote
from ledger.votes import PRECOMMIT, PREVOTE
from ledger import errors
from ledger.block import decode_block, encode_block
from ledger.hashing import HASH_SIZE
from ledger.keys import SIGNATURE_SIZE
from ledger.params import ChainParams

from net.p2p import P2P, BadMessage

ADDRESS_SIZE = 20
U32_MAX = 2**32 - 1


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


def decode_proposal(body: Any, params: ChainParams) -> SignedProposal:
    """A proposal body, checked field by field; BadMessage if it is not exactly one."""
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
        block = decode_block(raw_block, params.max_block_bytes, params.max_tx_bytes)
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


class P2PTransport:
    """BftEngine's Transport over p2p gossip (every peer; p2p relays and de-duplicates)."""

    def __init__(self, p2p: P2P):
        self.p2p = p2p

    def broadcast(self, sender: bytes, message: Message) -> None:
        if isinstance(message, SignedProposal):
            self.p2p.gossip("proposal", encode_proposal(message))
        else:
            self.p2p.gossip("vote", encode_vote(message))


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


def attach(p2p: P2P, engine: BftEngine, params: ChainParams) -> None:
    """Route inbound proposals and votes to the engine (after strict decoding)."""
    def on_proposal(_peer: bytes, body: Any) -> None:
        engine.receive(decode_proposal(body, params))

    def on_vote(_peer: bytes, body: Any) -> None:
        engine.receive(decode_vote(body))

    p2p.on("proposal", on_proposal)
    p2p.on("vote", on_vote)
