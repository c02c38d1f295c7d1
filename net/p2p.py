"""Peer-to-peer transport: authenticated TCP links between nodes carrying typed messages.

Each link starts with a handshake in which both sides exchange ephemeral X25519 keys,
prove they hold their node key by signing the transcript, and agree on the chain (id and
genesis hash); only then are messages exchanged.  A message is a frame: a 4-byte
big-endian length, then the canonical msgpack of [type, body], sealed with ChaCha20-Poly1305
under the link's key for that direction (net/secret.py): a frame altered, injected or
replayed on the path closes the link, without blaming (banning) the peer.  A peer
that breaks a rule (bad frame, malformed body, a body its handler refuses) is dropped and
banned for a time; one that does not read (a full send queue, a write that stalls) is
dropped; neither ever stops the node.  Peer slots are reserved for the validators and the
configured peers; other peers get a small share, bounded per IP.  The protocol is written
out in docs/p2p.md.

This module only carries messages.  What they mean (transactions, proposals, votes,
blocks) belongs to the handlers the node registers, which is how consensus stays free of
the network (CometBFT keeps the same split between its reactors and the state machines).
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Collection, Hashable, Iterable, Protocol

from ledger.encoding import DecodeError, decode, encode
from ledger.hashing import HASH_SIZE, hash_bytes
from ledger.keys import PUBKEY_SIZE, SIGNATURE_SIZE, PrivateKey, parse_hex, verify
from net.secret import EPHEMERAL_KEY_SIZE, TAG_SIZE, Direction, Ephemeral, SecretError, SecretLink, derive

log = logging.getLogger("gradchain.p2p")

PROTOCOL_VERSION = 2            # 2: sealed frames (net/secret.py)
HANDSHAKE_DOMAIN = b"gradchain/p2p-handshake/v2\x00"
LENGTH_PREFIX = 4
MAX_FRAME = 4 << 20            # bytes of one message after the length prefix (the default)
FRAME_OVERHEAD = 1 << 20       # room beside a largest block in a frame: proposal fields or a commit
MAX_HANDSHAKE_FRAME = 1024     # an unauthenticated peer never makes us allocate more (plus the tag)
HELLO, AUTH = "hello", "auth"  # handshake only
MSG_TYPES = ("tx", "proposal", "vote", "block_request", "block_response", "status")
GOSSIP_TYPES = frozenset({"tx", "proposal", "vote"})

Handler = Callable[[bytes, Any], "None | bool | object | Awaitable[None | bool | object]"]
OnConnect = Callable[[bytes], None]
ValidatorKeys = Callable[[], Collection[bytes]]


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


class SealError(PeerError):
    """A sealed frame refused: its tag did not match (or its length was impossible, or the
    counter ran out).  Anyone on the path can cause this, so the peer is dropped and may
    redial at once, never banned."""


class Violation(PeerError):
    """The peer itself broke the protocol after the handshake (not the link failing): it is
    dropped and banned for a time."""


class BadMessage(Violation):
    """Raised by a handler whose validation refuses a body: the sender is dropped and banned."""


# ---- limits and fault injection ----------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Bounds that keep one peer from costing the node more than its share."""

    max_frame: int = MAX_FRAME
    handshake_timeout: float = 5.0   # seconds for the whole handshake
    frame_timeout: float = 30.0      # seconds for a frame's body once its length is read
    send_queue: int = 1024           # frames waiting for one peer; more drops the peer
    send_queue_bytes: int = 4 << 20  # bytes waiting for a peer outside the reserved set (see SendQueue)
    write_timeout: float = 10.0      # seconds for one frame to be taken by a peer; longer drops it
    seen_cache: int = 100_000        # gossip hashes remembered for dedup
    backoff_min: float = 0.1         # reconnect delay, doubling up to backoff_max
    backoff_max: float = 5.0
    max_other_peers: int = 10        # admitted inbound peers that are neither validators nor configured
    max_per_ip: int = 8              # inbound handshakes in flight, and admitted other peers, per IP
    ban: float = 30.0                # first ban of a peer key; doubles per repeat offence up to ban_max
    ban_max: float = 3600.0          # also how long after a ban ends its offences are remembered
    validator_ban: float = 3.0       # at most this for a validator (an honest one framed must come back)
    ip_ban_after: int = 3            # offences of inbound keys from one IP that ban the IP
    ban_table: int = 10_000          # entries kept per ban table (keys, IPs); the least recent go first


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
    """(type, body) of a payload; Violation if it is not canonical [str, value]."""
    try:
        msg = decode(payload)
    except DecodeError as e:
        raise Violation(f"malformed message: {e}") from None
    if type(msg) is not list or len(msg) != 2 or type(msg[0]) is not str:
        raise Violation("malformed message: not [type, body]")
    return msg[0], msg[1]


async def read_frame(reader: asyncio.StreamReader, max_frame: int, frame_timeout: float | None,
                     recv: Direction | None = None) -> bytes:
    """One frame's payload, opened with `recv` when the link is sealed.  A length over
    max_frame (plus the tag) is refused before reading the body: a Violation on a plain
    link, a SealError on a sealed one (an unauthenticated length proves nothing of the peer)."""
    try:
        prefix = await reader.readexactly(LENGTH_PREFIX)
    except asyncio.IncompleteReadError as e:
        raise PeerError("connection closed" if not e.partial else "truncated length prefix") from None
    size = int.from_bytes(prefix, "big")
    if recv is None and size > max_frame:
        raise Violation(f"frame of {size} bytes is over the limit of {max_frame}")
    if recv is not None and size > max_frame + TAG_SIZE:
        raise SealError(f"sealed frame of {size} bytes is over the limit of {max_frame} + {TAG_SIZE} (tag)")
    if recv is not None and size < TAG_SIZE:
        raise SealError(f"sealed frame of {size} bytes is shorter than its {TAG_SIZE}-byte tag")
    try:
        body = await asyncio.wait_for(reader.readexactly(size), frame_timeout)
    except asyncio.IncompleteReadError as e:
        raise PeerError(f"truncated frame: {len(e.partial)} of {size} bytes") from None
    except asyncio.TimeoutError:
        raise PeerError(f"frame body not received within {frame_timeout} s") from None
    if recv is None:
        return body
    try:
        return recv.open(prefix, body)
    except SecretError as e:
        raise SealError(str(e)) from None


# ---- handshake ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """What each side announces first: [version, node key, chain id, genesis hash,
    ephemeral X25519 key] (the fresh ephemeral key also makes the transcript unique)."""

    public_key: bytes
    chain_id: str
    genesis_hash: bytes
    ephemeral_key: bytes
    version: int = PROTOCOL_VERSION

    def body(self) -> list:
        return [self.version, self.public_key, self.chain_id, self.genesis_hash, self.ephemeral_key]


def parse_hello(body: Any) -> Hello:
    """Shape checks only (stateless); HandshakeRefused if malformed."""
    if type(body) is not list or len(body) != 5:
        raise HandshakeRefused("malformed hello: not a 5-item list")
    version, key, chain_id, genesis_hash, ephemeral_key = body
    if type(version) is not int:
        raise HandshakeRefused("malformed hello: version")
    if type(key) is not bytes or len(key) != PUBKEY_SIZE:
        raise HandshakeRefused("malformed hello: public key")
    if type(chain_id) is not str:
        raise HandshakeRefused("malformed hello: chain id", key)
    if type(genesis_hash) is not bytes or len(genesis_hash) != HASH_SIZE:
        raise HandshakeRefused("malformed hello: genesis hash", key)
    if type(ephemeral_key) is not bytes or len(ephemeral_key) != EPHEMERAL_KEY_SIZE:
        raise HandshakeRefused("malformed hello: ephemeral key", key)
    return Hello(key, chain_id, genesis_hash, ephemeral_key, version)


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


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: PrivateKey,
                    ours: Hello, ephemeral: Ephemeral, allow: frozenset[bytes] | None) -> tuple[Hello, SecretLink]:
    """Run the handshake on a fresh connection (same steps on both sides): send our hello
    (carrying ephemeral.public), check theirs, derive the link's keys, then exchange sealed
    `auth` frames, each a signature of the transcript hash.  Their hello and the link."""
    our_hello = encode_message(HELLO, ours.body())
    writer.write(frame(our_hello))
    their_hello = await _handshake_frame(reader, None, None)
    theirs = parse_hello(_handshake_body(their_hello, HELLO, None))
    check_hello(ours, theirs, allow)
    try:
        link = derive(ephemeral, our_hello, theirs.ephemeral_key, their_hello)
    except SecretError as e:
        raise HandshakeRefused(f"key exchange refused: {e}", theirs.public_key) from None
    signature = key.sign(HANDSHAKE_DOMAIN, ours.chain_id, link.transcript)
    writer.write(link.send.seal(encode_message(AUTH, [signature])))
    body = _handshake_body(await _handshake_frame(reader, link.recv, theirs.public_key), AUTH, theirs.public_key)
    if type(body) is not list or len(body) != 1 or type(body[0]) is not bytes or len(body[0]) != SIGNATURE_SIZE:
        raise HandshakeRefused("malformed auth", theirs.public_key)
    if not verify(theirs.public_key, body[0], HANDSHAKE_DOMAIN, ours.chain_id, link.transcript):
        raise HandshakeRefused("bad handshake signature", theirs.public_key)
    await writer.drain()
    return theirs, link


async def _handshake_frame(reader: asyncio.StreamReader, recv: Direction | None, peer_key: bytes | None) -> bytes:
    """A handshake frame's payload (at most MAX_HANDSHAKE_FRAME); any failure refuses."""
    try:
        return await read_frame(reader, MAX_HANDSHAKE_FRAME, None, recv)
    except PeerError as e:
        raise HandshakeRefused(str(e), peer_key) from None


def _handshake_body(payload: bytes, want: str, peer_key: bytes | None) -> Any:
    try:
        msg_type, body = decode_message(payload)
    except PeerError as e:
        raise HandshakeRefused(str(e), peer_key) from None
    if msg_type != want:
        raise HandshakeRefused(f"expected {want!r}, got {msg_type[:32]!r}", peer_key)
    return body


# ---- send queues and bans ----------------------------------------------------------------

@dataclass(eq=False)
class SendQueue:
    """Frames waiting to be written to one peer, bounded in count and in bytes, so that a
    peer that does not read costs at most the bound.  They wait as plaintext payloads (one
    payload object shared by every peer it is queued for) and are sealed by the peer's
    write loop as they go out.  `nbytes` counts the payloads queued and
    the one being written (until `done`); a frame that would take it over `max_bytes` is
    refused, except when nothing is waiting, so that one largest block always goes."""

    max_frames: int
    max_bytes: int
    nbytes: int = 0
    _frames: deque[bytes] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put_nowait(self, data: bytes) -> str | None:
        """Queue data; None, or why it does not fit (the queue is left as it was)."""
        if len(self._frames) >= self.max_frames:
            return f"{self.max_frames} messages"
        if self.nbytes and self.nbytes + len(data) > self.max_bytes:
            return f"{self.max_bytes} bytes"
        self._frames.append(data)
        self.nbytes += len(data)
        self._ready.set()
        return None

    async def get(self) -> bytes:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def done(self, data: bytes) -> None:
        """data (from get) is written: its bytes no longer count."""
        self.nbytes -= len(data)

    def qsize(self) -> int:
        return len(self._frames)


@dataclass
class Ban:
    """One entry of a BanTable: offences counted, banned until `until` (monotonic seconds)."""

    strikes: int
    until: float
    last: float
    reason: str


@dataclass
class BanTable:
    """Offences per key or IP, and the bans they earn: from the `threshold`-th offence on,
    `base` seconds doubling per offence up to `cap`.  An entry is forgotten `cap` seconds
    after its ban ended (or its last offence); at most `size` entries, the least recently
    offending forgotten first, so a flood of fresh keys costs bounded memory."""

    size: int
    base: float
    cap: float
    threshold: int = 1
    _entries: OrderedDict[Hashable, Ban] = field(default_factory=OrderedDict)

    def offend(self, who: Hashable, reason: str, now: float, cap: float | None = None) -> Ban | None:
        """Count an offence; the ban it earns (at most `cap` seconds), or None below the threshold."""
        old = self._entries.pop(who, None)
        strikes = 1 if old is None or self._forgotten(old, now) else old.strikes + 1
        until = now
        if strikes >= self.threshold:
            doublings = min(strikes - self.threshold, 32)
            until = now + min(self.base * 2 ** doublings, self.cap if cap is None else cap)
        ban = self._entries[who] = Ban(strikes, until, now, reason)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return ban if strikes >= self.threshold else None

    def banned(self, who: Hashable, now: float) -> Ban | None:
        """The ban in force for who, if any."""
        ban = self._entries.get(who)
        if ban is not None and self._forgotten(ban, now):
            del self._entries[who]
            return None
        return ban if ban is not None and now < ban.until else None

    def __len__(self) -> int:
        return len(self._entries)

    def _forgotten(self, ban: Ban, now: float) -> bool:
        return now > max(ban.until, ban.last) + self.cap


# ---- peers -------------------------------------------------------------------------------

@dataclass(eq=False)
class Peer:
    """One authenticated link.  `key` (the node public key) is the peer's id."""

    key: bytes
    address: str
    outbound: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    queue: SendQueue
    link: SecretLink                 # the keys and counters sealing its frames
    host: str = "?"                  # the IP (or dialled host): per-IP limits and bans
    reserved: bool = False           # a validator, a configured peer or one we dialled (see P2P._admit)
    connected_at: float = field(default_factory=time.monotonic)
    useful_at: float = field(default_factory=time.monotonic)  # last message handled; eviction order
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
    the sending peer dropped; BadMessage, like any other Violation, also bans it.  For
    gossip types, a message is handled once per node (dedup by hash) and, unless the
    handler returns False, relayed to the other peers.

    `validators` returns the keys of the validator sets of the current and next heights
    (the node knows them from the chain; p2p never asks consensus): they, the keys of the
    configured peers and the peers this node dialled hold reserved slots."""

    def __init__(self, key: PrivateKey, chain_id: str, genesis_hash: bytes,
                 listen_host: str = "127.0.0.1", listen_port: int = 0,
                 handlers: dict[str, Handler] | None = None, max_peers: int = 50, *,
                 peers: Iterable[PeerAddress | tuple[str, int]] = (), allow: Iterable[bytes] | None = None,
                 gossip_types: Iterable[str] = GOSSIP_TYPES, limits: Limits = Limits(),
                 link: LinkPolicy | None = None, seed: int | None = None,
                 validators: ValidatorKeys = frozenset):
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
        self.validators = validators
        self.refusals: deque[Refusal] = deque(maxlen=256)
        self._configured = [p if isinstance(p, PeerAddress) else PeerAddress(*p) for p in peers]
        self._peers: dict[bytes, Peer] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._rng = random.Random(seed)  # reconnect jitter only
        self._stopping = False
        self._pending = 0
        self._pending_by_ip: dict[str, int] = {}
        self._key_bans = BanTable(limits.ban_table, limits.ban, limits.ban_max)
        self._ip_bans = BanTable(limits.ban_table, limits.ban, limits.ban_max, limits.ip_ban_after)
        self._changed = asyncio.Event()
        self._on_connect: list[OnConnect] = []
        self.bytes_in = self.bytes_out = 0  # frame bytes of established sessions (/metrics)

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

    def room(self, peer_id: bytes) -> int:
        """Bytes of payload that can be queued for a peer now without dropping it as too slow
        (0 if not connected): a handler answering with large frames checks it first."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.reason is not None:
            return 0
        q = peer.queue
        return q.max_bytes if not q.nbytes else max(0, q.max_bytes - q.nbytes)

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
        peer = await self._establish(reader, writer, outbound=True, address=f"{host}:{port}", host=host,
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
        peername = writer.get_extra_info("peername")
        host, address = (peername[0], f"{peername[0]}:{peername[1]}") if peername else ("?", "?")
        busy = self._handshakes_full(host)
        if busy is not None:
            writer.close()
            self._record(address, None, busy, "refused")
            return
        self._tasks.add(task)
        self._pending += 1
        self._pending_by_ip[host] = self._pending_by_ip.get(host, 0) + 1
        try:
            with contextlib.suppress(HandshakeRefused):
                await self._establish(reader, writer, outbound=False, address=address, host=host)
        finally:
            self._pending -= 1
            self._pending_by_ip[host] -= 1
            if not self._pending_by_ip[host]:
                del self._pending_by_ip[host]
            self._tasks.discard(task)

    def _handshakes_full(self, host: str) -> str | None:
        """Why one more inbound handshake is refused before any byte is read, if it is: those in
        flight are bounded in all and per IP, as no key is known yet to exempt a validator."""
        if self._pending >= self.max_peers:
            return "too many handshakes in progress"
        if self._pending_by_ip.get(host, 0) >= self.limits.max_per_ip:
            return f"too many handshakes in progress from {host} ({self.limits.max_per_ip})"
        return None

    async def _establish(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, outbound: bool,
                         address: str, host: str, expect_key: bytes | None = None) -> Peer:
        """Handshake, then admit the peer and start its session; refusals are logged.  A full
        node still runs the handshake: only the key tells whether a reserved slot is due."""
        ephemeral = Ephemeral.generate()
        ours = Hello(self.public_key, self.chain_id, self.genesis_hash, ephemeral.public)
        try:
            try:
                theirs, link = await asyncio.wait_for(handshake(reader, writer, self.key, ours, ephemeral, self.allow),
                                                      self.limits.handshake_timeout)
            except asyncio.TimeoutError:
                raise HandshakeRefused(f"handshake not done within {self.limits.handshake_timeout} s") from None
            except (ConnectionError, OSError) as e:
                raise HandshakeRefused(f"connection failed during handshake: {e}") from None
            if expect_key is not None and theirs.public_key != expect_key:
                raise HandshakeRefused(f"the node at {address} has key {theirs.public_key.hex()[:16]}.., "
                                       f"expected {expect_key.hex()[:16]}..", theirs.public_key)
            self._check_bans(theirs.public_key, host, outbound)
            reserved = outbound or self._reserved(theirs.public_key)
            queue_bytes = max(self.limits.send_queue_bytes, 2 * self.limits.max_frame) if reserved \
                else self.limits.send_queue_bytes
            peer = Peer(theirs.public_key, address, outbound, reader, writer,
                        SendQueue(self.limits.send_queue, queue_bytes), link, host, reserved)
            self._admit(peer)
        except HandshakeRefused as e:
            writer.close()
            self._record(address, e.peer_key, str(e), "refused")
            raise
        self._spawn(self._session(peer))
        return peer

    def _reserved(self, key: bytes) -> bool:
        """A validator of the current or next height, or a configured peer's key."""
        return key in self.validators() or any(a.key == key for a in self._configured)

    def _check_bans(self, key: bytes, host: str, outbound: bool) -> None:
        """HandshakeRefused for a banned key, or a non-reserved key from a banned IP (the IP
        is checked once the key is known, so a validator behind a banned address gets in)."""
        now = time.monotonic()
        ban = self._key_bans.banned(key, now)
        if ban is not None:
            raise HandshakeRefused(f"banned for another {ban.until - now:.1f} s "
                                   f"(offence {ban.strikes}: {ban.reason})", key)
        ban = None if outbound or self._reserved(key) else self._ip_bans.banned(host, now)
        if ban is not None:
            raise HandshakeRefused(f"address {host} banned for another {ban.until - now:.1f} s "
                                   f"({ban.strikes} offences, last: {ban.reason})", key)

    def _ban(self, peer: Peer, reason: str) -> None:
        """A protocol violation: ban the key (briefly if a validator), count it against an
        inbound peer's IP (unless reserved), and say so in the log."""
        now = time.monotonic()
        validator = peer.key in self.validators()
        ban = self._key_bans.offend(peer.key, reason, now, self.limits.validator_ban if validator else None)
        assert ban is not None  # the key table bans from the first offence
        log.warning("banned peer %s (%s) for %.1f s (offence %d%s): %s", peer.key.hex()[:16], peer.address,
                    ban.until - now, ban.strikes, ", a validator" if validator else "", reason)
        if peer.outbound or peer.reserved:
            return
        ip_ban = self._ip_bans.offend(peer.host, reason, now)
        if ip_ban is not None:
            log.warning("banned address %s for %.1f s for peers other than validators and configured ones "
                        "(%d offences)", peer.host, ip_ban.until - now, ip_ban.strikes)

    def _admit(self, peer: Peer) -> None:
        """Register an authenticated peer, unless it is a duplicate or there is no slot for it.

        A reserved peer always gets in, evicting the least recently useful other peer when
        the node is full (the reserved set itself is bounded: the validator sets and the
        configured peers).  Other peers share at most max_other_peers slots, at most
        max_per_ip of them from one IP.  Two nodes that dial each other at once end up with
        two links; both keep the one dialled by the node with the lower key, so they agree
        without talking."""
        old = self._peers.get(peer.key)
        if old is not None:
            if old.outbound == peer.outbound:
                raise HandshakeRefused("peer already connected", peer.key)
            keep_outbound = self.public_key < peer.key
            if peer.outbound != keep_outbound:
                raise HandshakeRefused("peer already connected (kept the link dialled by the lower key)",
                                       peer.key)
            old.close("replaced by the link dialled by the lower key")
        elif peer.reserved:
            if len(self._peers) >= self.max_peers:
                self._evict_for(peer)
        else:
            self._check_other_slot(peer)
        self._peers[peer.key] = peer
        self._changed.set()
        log.info("peer %s connected (%s, %s)", peer.key.hex()[:16], peer.address,
                 "outbound" if peer.outbound else "inbound")
        for callback in self._on_connect:
            try:
                callback(peer.key)
            except Exception:  # a callback bug must not refuse the peer
                log.exception("on_connect callback failed for %s", peer.key.hex()[:16])

    def _check_other_slot(self, peer: Peer) -> None:
        """HandshakeRefused unless a peer outside the reserved set has a slot."""
        others = [p for p in self._peers.values() if not p.reserved and not p.closed.is_set()]
        if len(self._peers) >= self.max_peers:
            raise HandshakeRefused(f"too many peers ({self.max_peers})", peer.key)
        if len(others) >= self.limits.max_other_peers:
            raise HandshakeRefused(f"no free slot for a peer that is not a validator or configured "
                                   f"({self.limits.max_other_peers} taken)", peer.key)
        if sum(p.host == peer.host for p in others) >= self.limits.max_per_ip:
            raise HandshakeRefused(f"too many peers from {peer.host} ({self.limits.max_per_ip})", peer.key)

    def _evict_for(self, peer: Peer) -> None:
        """Make room for a reserved peer: drop the other peer least recently useful, if any."""
        others = [p for p in self._peers.values() if not p.reserved and p.reason is None]
        if others:
            victim = min(others, key=lambda p: p.useful_at)
            victim.close(f"evicted: its slot went to reserved peer {peer.key.hex()[:16]}")

    async def _session(self, peer: Peer) -> None:
        """Read and dispatch the peer's messages until the link drops, then clean up."""
        writer_task = asyncio.create_task(self._write_loop(peer))
        try:
            while True:
                payload = await read_frame(peer.reader, self.limits.max_frame, self.limits.frame_timeout,
                                           peer.link.recv)
                self.bytes_in += LENGTH_PREFIX + TAG_SIZE + len(payload)
                await self._dispatch(peer, payload)
        except PeerError as e:
            if isinstance(e, Violation) and peer.reason is None:
                self._ban(peer, str(e))
            if isinstance(e, SealError) and peer.reason is None:
                log.warning("dropped peer %s (%s), not banned: %s", peer.key.hex()[:16], peer.address, e)
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
        """Seal each queued payload for this peer (the same payload queued to every peer is
        sealed per link) and write it."""
        try:
            while True:
                data = await peer.queue.get()
                sealed = peer.link.send.seal(data)
                self.bytes_out += len(sealed)
                peer.writer.write(sealed)
                async with asyncio.timeout(self.limits.write_timeout):
                    await peer.writer.drain()
                peer.queue.done(data)
        except SecretError as e:
            peer.close(str(e))
        except TimeoutError:
            peer.close(f"not reading: a frame not taken within {self.limits.write_timeout} s")
        except (ConnectionError, OSError) as e:
            peer.close(f"write failed: {e}")

    async def _dispatch(self, peer: Peer, payload: bytes) -> None:
        msg_type, body = decode_message(payload)
        if msg_type not in self.handlers:
            if msg_type in MSG_TYPES:
                return  # a type the node does not use yet
            raise Violation(f"unknown message type {msg_type[:32]!r}")
        gossip = msg_type in self.gossip_types
        h = hash_bytes(payload) if gossip else b""
        if gossip and not self._mark_seen(h):
            return
        try:
            result = self.handlers[msg_type](peer.key, body)
            if inspect.isawaitable(result):
                result = await result
        except BadMessage as e:
            raise Violation(f"bad {msg_type}: {e}") from None
        except Exception as e:  # a handler bug costs the sender its link, never the node
            log.exception("handler for %s failed on a message from %s", msg_type, peer.key.hex()[:16])
            raise PeerError(f"handler for {msg_type} failed: {type(e).__name__}: {e}") from None
        if gossip and result is NOT_HANDLED:
            self._seen.pop(h, None)
            return
        peer.useful_at = time.monotonic()
        if gossip and result is not False:
            self._send_payload(payload, msg_type, exclude=peer.key)

    # ---- sending -----------------------------------------------------------------------

    def send(self, peer_id: bytes, msg_type: str, body: Any) -> bool:
        """Queue a message for one peer; False if it is not connected."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        self._enqueue(peer, msg_type, encode_message(msg_type, body, self.limits.max_frame))
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
        n = 0
        for peer in list(self._peers.values()):
            if peer.key != exclude:
                self._enqueue(peer, msg_type, payload)
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
        full = peer.queue.put_nowait(data)
        if full is not None:
            peer.close(f"send queue full ({full}): peer too slow")

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
