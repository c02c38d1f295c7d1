"""Peer-to-peer transport: authenticated TCP links between nodes carrying typed messages.

Each link starts with a handshake in which both sides prove they hold their node key and
agree on the chain (id and genesis hash); only then are messages exchanged.  A message is
a frame: a 4-byte big-endian length, then the canonical msgpack of [type, body].  A peer
that breaks a rule (bad frame, malformed body, a body its handler refuses, a full send
queue) is dropped; it never stops the node.  The protocol is written out in docs/p2p.md.

This module only carries messages.  What they mean (transactions, proposals, votes,
blocks) belongs to the handlers the node registers, which is how consensus stays free of
the network (CometBFT keeps the same split between its reactors and the state machines).
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol

from ledger.encoding import DecodeError, decode, encode
from ledger.hashing import HASH_SIZE, hash_bytes
from ledger.keys import PUBKEY_SIZE, SIGNATURE_SIZE, PrivateKey, parse_hex, verify

log = logging.getLogger("gradchain.p2p")

PROTOCOL_VERSION = 1
HANDSHAKE_DOMAIN = b"gradchain/p2p-handshake/v1\x00"
NONCE_SIZE = 32
LENGTH_PREFIX = 4
MAX_FRAME = 4 << 20            # bytes of one message after the length prefix (the default)
FRAME_OVERHEAD = 1 << 20       # room beside a largest block in a frame: proposal fields or a commit
MAX_HANDSHAKE_FRAME = 1024     # an unauthenticated peer never makes us allocate more
HELLO, AUTH = "hello", "auth"  # handshake only
MSG_TYPES = ("tx", "proposal", "vote", "block_request", "block_response", "status")
GOSSIP_TYPES = frozenset({"tx", "proposal", "vote"})

Handler = Callable[[bytes, Any], "None | bool | object | Awaitable[None | bool | object]"]
OnConnect = Callable[[bytes], None]


class _NotHandled:
    def __repr__(self) -> str:
        return "NOT_HANDLED"


# A gossip handler returns this for a message it cannot use yet (e.g. a vote of a height the
# node has not reached): the hash is forgotten, so a later copy (a re-gossip) is handled.
NOT_HANDLED: Any = _NotHandled()


def frame_limit(max_block_bytes: int) -> int:
    """The frame limit for a chain: a largest block must fit in a proposal or a block_response."""
    return max(MAX_FRAME, max_block_bytes + FRAME_OVERHEAD)


# ---- errors ------------------------------------------------------------------------------

class P2PError(Exception):
    """Base of the transport's errors."""


class PeerError(P2PError):
    """The peer broke a protocol rule or the link failed; the message is the reason."""


class HandshakeRefused(PeerError):
    """The handshake failed; peer_key is set once the peer has named its key."""

    def __init__(self, reason: str, peer_key: bytes | None = None):
        super().__init__(reason)
        self.peer_key = peer_key


class BadMessage(PeerError):
    """Raised by a handler whose validation refuses a body: the sender is dropped."""


# ---- limits and fault injection ----------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Bounds that keep one peer from costing the node more than its share."""

    max_frame: int = MAX_FRAME
    handshake_timeout: float = 5.0   # seconds for the whole handshake
    frame_timeout: float = 30.0      # seconds for a frame's body once its length is read
    send_queue: int = 1024           # frames waiting for one peer; more drops the peer
    seen_cache: int = 100_000        # gossip hashes remembered for dedup
    backoff_min: float = 0.1         # reconnect delay, doubling up to backoff_max
    backoff_max: float = 5.0


class LinkPolicy(Protocol):
    """Test-only fault injection on outgoing messages: for each, None drops it, a number
    of seconds delays it (0 sends it now).  Handshake frames are never subject to it."""

    def decide(self, src: bytes, dst: bytes, msg_type: str) -> float | None: ...


@dataclass
class SeededFaults:
    """A LinkPolicy whose decisions are a function of the seed and of the order of the
    messages on each directed link (src -> dst), not of timing: one random stream per link,
    seeded by (seed, src, dst).  `cut` holds links that drop everything (partitions)."""

    seed: int
    drop: float = 0.0                # probability of dropping a message
    max_delay: float = 0.0           # delay drawn uniformly in [0, max_delay] seconds
    cut: set[frozenset[bytes]] = field(default_factory=set)
    _streams: dict[tuple[bytes, bytes], random.Random] = field(default_factory=dict, repr=False)

    def decide(self, src: bytes, dst: bytes, msg_type: str) -> float | None:
        rng = self._streams.get((src, dst))
        if rng is None:
            material = hash_bytes(b"gradchain/p2p-faults\x00" + self.seed.to_bytes(8, "big", signed=True)
                                  + src + dst)
            rng = self._streams[(src, dst)] = random.Random(material)
        drop_draw, delay_draw = rng.random(), rng.random()  # always both: streams stay aligned
        if frozenset((src, dst)) in self.cut or drop_draw < self.drop:
            return None
        return delay_draw * self.max_delay

    def partition(self, *groups: Iterable[bytes]) -> None:
        """Cut every link between keys of different groups."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1:]:
                self.cut.update(frozenset((x, y)) for x in a for y in b)

    def heal(self) -> None:
        self.cut.clear()


# ---- framing -----------------------------------------------------------------------------

def frame(payload: bytes) -> bytes:
    """Length prefix + payload."""
    return len(payload).to_bytes(LENGTH_PREFIX, "big") + payload


def encode_message(msg_type: str, body: Any, max_frame: int = MAX_FRAME) -> bytes:
    """The payload of a message: canonical msgpack of [type, body]."""
    payload = encode([msg_type, body])
    if len(payload) > max_frame:
        raise ValueError(f"message of {len(payload)} bytes is over the frame limit of {max_frame}")
    return payload


def decode_message(payload: bytes) -> tuple[str, Any]:
    """(type, body) of a payload; PeerError if it is not canonical [str, value]."""
    try:
        msg = decode(payload)
    except DecodeError as e:
        raise PeerError(f"malformed message: {e}") from None
    if type(msg) is not list or len(msg) != 2 or type(msg[0]) is not str:
        raise PeerError("malformed message: not [type, body]")
    return msg[0], msg[1]


async def read_frame(reader: asyncio.StreamReader, max_frame: int, frame_timeout: float | None) -> bytes:
    """One frame's payload.  A length over max_frame is refused before reading the body."""
    try:
        prefix = await reader.readexactly(LENGTH_PREFIX)
    except asyncio.IncompleteReadError as e:
        raise PeerError("connection closed" if not e.partial else "truncated length prefix") from None
    size = int.from_bytes(prefix, "big")
    if size > max_frame:
        raise PeerError(f"frame of {size} bytes is over the limit of {max_frame}")
    try:
        return await asyncio.wait_for(reader.readexactly(size), frame_timeout)
    except asyncio.IncompleteReadError as e:
        raise PeerError(f"truncated frame: {len(e.partial)} of {size} bytes") from None
    except asyncio.TimeoutError:
        raise PeerError(f"frame body not received within {frame_timeout} s") from None


# ---- handshake ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """What each side announces first: [version, node key, chain id, genesis hash, nonce]."""

    public_key: bytes
    chain_id: str
    genesis_hash: bytes
    nonce: bytes
    version: int = PROTOCOL_VERSION

    def body(self) -> list:
        return [self.version, self.public_key, self.chain_id, self.genesis_hash, self.nonce]


def parse_hello(body: Any) -> Hello:
    """Shape checks only (stateless); HandshakeRefused if malformed."""
    if type(body) is not list or len(body) != 5:
        raise HandshakeRefused("malformed hello: not a 5-item list")
    version, key, chain_id, genesis_hash, nonce = body
    if type(version) is not int:
        raise HandshakeRefused("malformed hello: version")
    if type(key) is not bytes or len(key) != PUBKEY_SIZE:
        raise HandshakeRefused("malformed hello: public key")
    if type(chain_id) is not str:
        raise HandshakeRefused("malformed hello: chain id", key)
    if type(genesis_hash) is not bytes or len(genesis_hash) != HASH_SIZE:
        raise HandshakeRefused("malformed hello: genesis hash", key)
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        raise HandshakeRefused("malformed hello: nonce", key)
    return Hello(key, chain_id, genesis_hash, nonce, version)


def check_hello(ours: Hello, theirs: Hello, allow: frozenset[bytes] | None) -> None:
    """Whether we talk to this peer at all (stateful checks against our own hello)."""
    key = theirs.public_key
    if theirs.version != ours.version:
        raise HandshakeRefused(f"protocol version {theirs.version}, we speak {ours.version}", key)
    if theirs.chain_id != ours.chain_id:
        raise HandshakeRefused(f"wrong chain id {theirs.chain_id!r}, we are {ours.chain_id!r}", key)
    if theirs.genesis_hash != ours.genesis_hash:
        raise HandshakeRefused(f"wrong genesis hash {theirs.genesis_hash.hex()[:16]}..", key)
    if key == ours.public_key:
        raise HandshakeRefused("connected to ourselves (the peer has our own key)", key)
    if allow is not None and key not in allow:
        raise HandshakeRefused("key is not in the allow-list", key)


def auth_payload(verifier_nonce: bytes, signer_key: bytes, verifier_key: bytes, genesis_hash: bytes) -> bytes:
    """What a side signs (under HANDSHAKE_DOMAIN and the chain id): the other side's fresh
    nonce, so the signature cannot be replayed, and both keys and the genesis, so it
    cannot be relayed to a third node or chain."""
    return verifier_nonce + signer_key + verifier_key + genesis_hash


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: PrivateKey,
                    ours: Hello, allow: frozenset[bytes] | None) -> Hello:
    """Run the handshake on a fresh connection (same steps on both sides): send our hello,
    check theirs, sign their nonce, verify their signature of ours.  Returns their hello."""
    writer.write(frame(encode_message(HELLO, ours.body())))
    theirs = parse_hello(await _handshake_message(reader, HELLO, None))
    check_hello(ours, theirs, allow)
    signature = key.sign(HANDSHAKE_DOMAIN, ours.chain_id,
                         auth_payload(theirs.nonce, ours.public_key, theirs.public_key, ours.genesis_hash))
    writer.write(frame(encode_message(AUTH, [signature])))
    body = await _handshake_message(reader, AUTH, theirs.public_key)
    if type(body) is not list or len(body) != 1 or type(body[0]) is not bytes or len(body[0]) != SIGNATURE_SIZE:
        raise HandshakeRefused("malformed auth", theirs.public_key)
    signed = auth_payload(ours.nonce, theirs.public_key, ours.public_key, ours.genesis_hash)
    if not verify(theirs.public_key, body[0], HANDSHAKE_DOMAIN, ours.chain_id, signed):
        raise HandshakeRefused("bad handshake signature", theirs.public_key)
    await writer.drain()
    return theirs


async def _handshake_message(reader: asyncio.StreamReader, want: str, peer_key: bytes | None) -> Any:
    try:
        msg_type, body = decode_message(await read_frame(reader, MAX_HANDSHAKE_FRAME, None))
    except HandshakeRefused:
        raise
    except PeerError as e:
        raise HandshakeRefused(str(e), peer_key) from None
    if msg_type != want:
        raise HandshakeRefused(f"expected {want!r}, got {msg_type[:32]!r}", peer_key)
    return body


# ---- peers -------------------------------------------------------------------------------

@dataclass(eq=False)
class Peer:
    """One authenticated link.  `key` (the node public key) is the peer's id."""

    key: bytes
    address: str
    outbound: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    queue: asyncio.Queue
    connected_at: float = field(default_factory=time.monotonic)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None

    def close(self, reason: str) -> None:
        """Drop the link now (abort: a close would wait for a slow peer to read what is
        queued); the first reason given is the one logged."""
        if self.reason is None:
            self.reason = reason
        self.writer.transport.abort()


@dataclass(frozen=True)
class PeerAddress:
    """A peer to keep a link to, as given by a flag or the genesis file: `host:port`, or
    `KEYHEX@host:port` to also require that the node there holds that key."""

    host: str
    port: int
    key: bytes | None = None

    def __str__(self) -> str:
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"{self.key.hex()}@{where}" if self.key else where


def parse_peer(text: str) -> PeerAddress:
    """Parse `[KEYHEX@]host:port` (an IPv6 host in brackets); ValueError with the reason."""
    if not isinstance(text, str):
        raise ValueError("a peer address must be a string")
    key = None
    if "@" in text:
        key_hex, text = text.split("@", 1)
        try:
            key = parse_hex(key_hex, "peer key")
        except ValueError:
            raise ValueError(f"peer key {key_hex[:80]!r} is not hex") from None
        if len(key) != PUBKEY_SIZE:
            raise ValueError(f"a peer key is {PUBKEY_SIZE} bytes, got {len(key)}")
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"peer address {text[:80]!r} is not host:port")
    return PeerAddress(host, int(port_text), key)


@dataclass(frozen=True)
class Refusal:
    """A handshake refused, or a peer dropped: who, and why (kept for logs and tests)."""

    address: str
    peer_key: bytes | None
    reason: str


class P2P:
    """The node's p2p service: listener, dialer with reconnect, peers, gossip.

    Handlers are registered per message type and get (peer_id, body).  A handler that
    raises (BadMessage for a body that fails validation, anything else for a bug) gets
    the sending peer dropped.  For gossip types, a message is handled once per node
    (dedup by hash) and, unless the handler returns False, relayed to the other peers."""

    def __init__(self, key: PrivateKey, chain_id: str, genesis_hash: bytes,
                 listen_host: str = "127.0.0.1", listen_port: int = 0,
                 handlers: dict[str, Handler] | None = None, max_peers: int = 50, *,
                 peers: Iterable[PeerAddress | tuple[str, int]] = (), allow: Iterable[bytes] | None = None,
                 gossip_types: Iterable[str] = GOSSIP_TYPES, limits: Limits = Limits(),
                 link: LinkPolicy | None = None, seed: int | None = None):
        self.key = key
        self.public_key = key.public_key
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.listen_host, self.port = listen_host, listen_port
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.max_peers = max_peers
        self.allow = frozenset(allow) if allow is not None else None
        self.gossip_types = frozenset(gossip_types)
        self.limits = limits
        self.link = link
        self.refusals: deque[Refusal] = deque(maxlen=256)
        self._configured = [p if isinstance(p, PeerAddress) else PeerAddress(*p) for p in peers]
        self._peers: dict[bytes, Peer] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._rng = random.Random(seed)  # reconnect jitter only
        self._stopping = False
        self._pending = 0
        self._changed = asyncio.Event()
        self._on_connect: list[OnConnect] = []

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and start dialling the configured peers."""
        self._stopping = False
        self._server = await asyncio.start_server(self._on_inbound, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("p2p listening on %s:%d as %s", self.listen_host, self.port, self.public_key.hex()[:16])
        for address in self._configured:
            self._spawn(self._dial_forever(address))

    async def stop(self) -> None:
        """Close the listener and every link; wait for all our tasks to end."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers.values()):
            peer.close("node stopping")
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def on(self, msg_type: str, handler: Handler) -> None:
        self.handlers[msg_type] = handler

    def on_connect(self, callback: OnConnect) -> None:
        """Call callback(peer_key) each time a peer is admitted (e.g. to send it our status)."""
        self._on_connect.append(callback)

    def pending(self, peer_id: bytes) -> int:
        """Frames queued for a peer and not yet written (0 if not connected)."""
        peer = self._peers.get(peer_id)
        return 0 if peer is None else peer.queue.qsize()

    @property
    def peers(self) -> list[bytes]:
        """Keys of the connected peers."""
        return list(self._peers)

    async def wait_peers(self, enough: Callable[[list[bytes]], bool], timeout: float) -> None:
        """Until `enough(keys of the connected peers)` holds (TimeoutError otherwise)."""
        async def wait() -> None:
            while not enough(self.peers):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout)

    # ---- dialling ----------------------------------------------------------------------

    def add_peer(self, address: PeerAddress | str) -> None:
        """Keep a link to this address, reconnecting with backoff whenever it drops."""
        address = parse_peer(address) if isinstance(address, str) else address
        self._configured.append(address)
        if self._server is not None:
            self._spawn(self._dial_forever(address))

    async def connect(self, host: str, port: int, expect_key: bytes | None = None) -> bytes:
        """Dial once and handshake; the peer's key, or HandshakeRefused/OSError.  With
        expect_key, a node holding another key is refused."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                self.limits.handshake_timeout)
        peer = await self._establish(reader, writer, outbound=True, address=f"{host}:{port}",
                                     expect_key=expect_key)
        return peer.key

    async def _dial_forever(self, address: PeerAddress) -> None:
        host, port = address.host, address.port
        delay, known = self.limits.backoff_min, address.key
        while not self._stopping:
            current = self._peers.get(known) if known is not None else None
            if current is not None:  # already linked (maybe it dialled us): wait for it to drop
                await current.closed.wait()
                continue
            started = time.monotonic()
            try:
                known = await self.connect(host, port, address.key)
                peer = self._peers.get(known)
                if peer is not None:
                    await peer.closed.wait()
                if time.monotonic() - started > self.limits.backoff_max:
                    delay = self.limits.backoff_min
            except HandshakeRefused as e:
                known = address.key or e.peer_key or known
            except (OSError, asyncio.TimeoutError) as e:
                log.debug("dial %s:%d failed: %s", host, port, e)
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, self.limits.backoff_max)

    # ---- links -------------------------------------------------------------------------

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._stopping or task is None:
            writer.close()
            return
        if self._pending >= self.max_peers:  # unauthenticated handshakes in flight are bounded too
            writer.close()
            self._record("?", None, "too many handshakes in progress", "refused")
            return
        self._tasks.add(task)
        self._pending += 1
        try:
            peername = writer.get_extra_info("peername")
            address = f"{peername[0]}:{peername[1]}" if peername else "?"
            with contextlib.suppress(HandshakeRefused):
                await self._establish(reader, writer, outbound=False, address=address)
        finally:
            self._pending -= 1
            self._tasks.discard(task)

    async def _establish(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         outbound: bool, address: str, expect_key: bytes | None = None) -> Peer:
        """Handshake, then admit the peer and start its session; refusals are logged."""
        ours = Hello(self.public_key, self.chain_id, self.genesis_hash, os.urandom(NONCE_SIZE))
        try:
            if len(self._peers) >= self.max_peers and not outbound:
                raise HandshakeRefused(f"too many peers ({self.max_peers})")
            try:
                theirs = await asyncio.wait_for(handshake(reader, writer, self.key, ours, self.allow),
                                                self.limits.handshake_timeout)
            except asyncio.TimeoutError:
                raise HandshakeRefused(f"handshake not done within {self.limits.handshake_timeout} s") from None
            except (ConnectionError, OSError) as e:
                raise HandshakeRefused(f"connection failed during handshake: {e}") from None
            if expect_key is not None and theirs.public_key != expect_key:
                raise HandshakeRefused(f"the node at {address} has key {theirs.public_key.hex()[:16]}.., "
                                       f"expected {expect_key.hex()[:16]}..", theirs.public_key)
            peer = Peer(theirs.public_key, address, outbound, reader, writer,
                        asyncio.Queue(self.limits.send_queue))
            self._admit(peer)
        except HandshakeRefused as e:
            writer.close()
            self._record(address, e.peer_key, str(e), "refused")
            raise
        self._spawn(self._session(peer))
        return peer

    def _admit(self, peer: Peer) -> None:
        """Register an authenticated peer, unless it is one too many or a duplicate.

        Two nodes that dial each other at once end up with two links; both keep the one
        dialled by the node with the lower key, so they agree without talking."""
        old = self._peers.get(peer.key)
        if old is not None:
            if old.outbound == peer.outbound:
                raise HandshakeRefused("peer already connected", peer.key)
            keep_outbound = self.public_key < peer.key
            if peer.outbound != keep_outbound:
                raise HandshakeRefused("peer already connected (kept the link dialled by the lower key)",
                                       peer.key)
            old.close("replaced by the link dialled by the lower key")
        elif len(self._peers) >= self.max_peers:
            raise HandshakeRefused(f"too many peers ({self.max_peers})", peer.key)
        self._peers[peer.key] = peer
        self._changed.set()
        log.info("peer %s connected (%s, %s)", peer.key.hex()[:16], peer.address,
                 "outbound" if peer.outbound else "inbound")
        for callback in self._on_connect:
            try:
                callback(peer.key)
            except Exception:  # a callback bug must not refuse the peer
                log.exception("on_connect callback failed for %s", peer.key.hex()[:16])

    async def _session(self, peer: Peer) -> None:
        """Read and dispatch the peer's messages until the link drops, then clean up."""
        writer_task = asyncio.create_task(self._write_loop(peer))
        try:
            while True:
                payload = await read_frame(peer.reader, self.limits.max_frame, self.limits.frame_timeout)
                await self._dispatch(peer, payload)
        except PeerError as e:
            peer.close(str(e))
        except (ConnectionError, OSError) as e:
            peer.close(f"connection failed: {e}")
        except asyncio.CancelledError:
            peer.close("node stopping")
            raise
        finally:
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer_task
            peer.writer.close()
            if self._peers.get(peer.key) is peer:
                del self._peers[peer.key]
                self._changed.set()
            peer.closed.set()
            self._record(peer.address, peer.key, peer.reason or "closed", "dropped")

    async def _write_loop(self, peer: Peer) -> None:
        try:
            while True:
                data = await peer.queue.get()
                peer.writer.write(data)
                await peer.writer.drain()
        except (ConnectionError, OSError) as e:
            peer.close(f"write failed: {e}")

    async def _dispatch(self, peer: Peer, payload: bytes) -> None:
        msg_type, body = decode_message(payload)
        if msg_type not in self.handlers:
            if msg_type in MSG_TYPES:
                return  # a type the node does not use yet
            raise PeerError(f"unknown message type {msg_type[:32]!r}")
        gossip = msg_type in self.gossip_types
        h = hash_bytes(payload) if gossip else b""
        if gossip and not self._mark_seen(h):
            return
        try:
            result = self.handlers[msg_type](peer.key, body)
            if inspect.isawaitable(result):
                result = await result
        except BadMessage as e:
            raise PeerError(f"bad {msg_type}: {e}") from None
        except Exception as e:  # a handler bug costs the sender its link, never the node
            log.exception("handler for %s failed on a message from %s", msg_type, peer.key.hex()[:16])
            raise PeerError(f"handler for {msg_type} failed: {type(e).__name__}: {e}") from None
        if gossip and result is NOT_HANDLED:
            self._seen.pop(h, None)
            return
        if gossip and result is not False:
            self._send_payload(payload, msg_type, exclude=peer.key)

    # ---- sending -----------------------------------------------------------------------

    def send(self, peer_id: bytes, msg_type: str, body: Any) -> bool:
        """Queue a message for one peer; False if it is not connected."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        self._enqueue(peer, msg_type, frame(encode_message(msg_type, body, self.limits.max_frame)))
        return True

    def broadcast(self, msg_type: str, body: Any, exclude: bytes | None = None) -> int:
        """Queue a message for every peer (but exclude); how many it was queued for."""
        return self._send_payload(encode_message(msg_type, body, self.limits.max_frame), msg_type, exclude)

    def gossip(self, msg_type: str, body: Any) -> bool:
        """Broadcast a message of our own, remembering it so that echoes are not handled
        or relayed again; False (and nothing sent) if this node has seen it already."""
        payload = encode_message(msg_type, body, self.limits.max_frame)
        if not self._mark_seen(hash_bytes(payload)):
            return False
        self._send_payload(payload, msg_type, None)
        return True

    def _send_payload(self, payload: bytes, msg_type: str, exclude: bytes | None) -> int:
        data, n = frame(payload), 0
        for peer in list(self._peers.values()):
            if peer.key != exclude:
                self._enqueue(peer, msg_type, data)
                n += 1
        return n

    def _enqueue(self, peer: Peer, msg_type: str, data: bytes) -> None:
        """Never blocks: a peer whose queue is full is too slow and is dropped."""
        if self.link is not None:
            delay = self.link.decide(self.public_key, peer.key, msg_type)
            if delay is None:
                return
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._put, peer, data)
                return
        self._put(peer, data)

    def _put(self, peer: Peer, data: bytes) -> None:
        if peer.closed.is_set() or peer.reason is not None:
            return
        try:
            peer.queue.put_nowait(data)
        except asyncio.QueueFull:
            peer.close(f"send queue full ({self.limits.send_queue} messages): peer too slow")

    # ---- helpers -----------------------------------------------------------------------

    def _mark_seen(self, h: bytes) -> bool:
        """True if h is new (and now remembered); the oldest hashes are forgotten first."""
        if h in self._seen:
            self._seen.move_to_end(h)
            return False
        self._seen[h] = None
        if len(self._seen) > self.limits.seen_cache:
            self._seen.popitem(last=False)
        return True

    def _record(self, address: str, peer_key: bytes | None, reason: str, what: str) -> None:
        self.refusals.append(Refusal(address, peer_key, reason))
        who = peer_key.hex()[:16] if peer_key else "unknown key"
        level = logging.DEBUG if reason in ("node stopping", "connection closed") else logging.INFO
        log.log(level, "%s peer %s (%s): %s", what, who, address, reason)

    def _spawn(self, coro: Awaitable) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
