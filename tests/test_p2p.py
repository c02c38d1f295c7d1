"""The p2p transport over real sockets on 127.0.0.1: handshake, messages, gossip, refusals,
misbehaving peers, reconnect, and the seeded fault-injection hook.

Every test runs its own event loop with a deadline and stops every node it starts."""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from typing import Any, AsyncIterator, Callable

import pytest

from ledger.encoding import encode
from ledger.hashing import hash_bytes
from ledger.keys import PrivateKey
from net import p2p
from net.p2p import (AUTH, HANDSHAKE_DOMAIN, HELLO, MAX_FRAME, P2P, BadMessage, HandshakeRefused, Hello, Limits,
                     PeerAddress, SeededFaults, decode_message, encode_message, frame, parse_peer, read_frame)
from net.secret import Ephemeral, SecretLink, derive

CHAIN = "p2p-test"
GENESIS = hash_bytes(b"p2p-test genesis")
FAST = Limits(handshake_timeout=0.5, frame_timeout=0.5, backoff_min=0.05, backoff_max=0.3)


def run(coro, timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def key(i: int | str) -> PrivateKey:
    return PrivateKey.from_label(f"p2p-test-{i}")


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll cond until it holds (fail after timeout)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Inbox:
    """A handler that records (peer_id, body) for each message it is given."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []

    def __call__(self, peer_id: bytes, body: Any) -> None:
        self.got.append((peer_id, body))

    def bodies(self) -> list:
        return [b for _, b in self.got]


def reasons(node: P2P, peer_key: bytes | None = None) -> list[str]:
    return [r.reason for r in node.refusals if peer_key is None or r.peer_key == peer_key]


@contextlib.asynccontextmanager
async def started(*nodes: P2P) -> AsyncIterator[tuple[P2P, ...]]:
    try:
        for n in nodes:
            await n.start()
        yield nodes
    finally:
        for n in nodes:
            await n.stop()


def make(i: int | str, inbox: Inbox | None = None, types=("status", "tx", "vote"), **kw) -> P2P:
    kw.setdefault("limits", FAST)
    handlers = {t: inbox for t in types} if inbox is not None else {}
    return P2P(key(i), kw.pop("chain_id", CHAIN), kw.pop("genesis_hash", GENESIS), "127.0.0.1", 0,
               handlers, **kw)


class RawPeer:
    """A hand-driven peer speaking the wire protocol, to misbehave on purpose."""

    def __init__(self, label: str = "raw") -> None:
        self.key = key(label)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.link: SecretLink

    async def open(self, port: int, rcvbuf: int | None = None) -> "RawPeer":
        """Connect; with rcvbuf, a receive buffer that small (a peer that never reads then
        stalls the sender after a few KiB instead of the megabytes loopback would buffer)."""
        if rcvbuf is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
            return self
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        return self

    async def handshake(self, bad_signature: bool = False) -> bytes:
        """Hello, key exchange and a sealed auth by hand; bad_signature signs the wrong transcript."""
        eph = Ephemeral.generate()
        our_hello = encode_message(HELLO, Hello(self.key.public_key, CHAIN, GENESIS, eph.public).body())
        self.writer.write(frame(our_hello))
        their_hello = await read_frame(self.reader, 1024, 2.0)
        theirs = p2p.parse_hello(decode_message(their_hello)[1])
        self.link = derive(eph, our_hello, theirs.ephemeral_key, their_hello)
        signed = bytes(32) if bad_signature else self.link.transcript
        self.writer.write(self.seal(encode_message(AUTH, [self.key.sign(HANDSHAKE_DOMAIN, CHAIN, signed)])))
        await self.writer.drain()
        return theirs.public_key

    def seal(self, payload: bytes) -> bytes:
        """A frame as this link carries it after the hellos."""
        return self.link.send.seal(payload)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True once the other side has closed the link (reads until EOF)."""
        async def drain() -> None:
            while await self.reader.read(1 << 16):
                pass
        try:
            await asyncio.wait_for(drain(), timeout)
            return True
        except (asyncio.TimeoutError, ConnectionError):
            return False

    def close(self) -> None:
        self.writer.close()


# ---- two nodes, a mesh, a line -------------------------------------------------------------

def test_two_nodes_handshake_and_exchange_both_ways():
    async def main():
        ia, ib = Inbox(), Inbox()
        async with started(make("a", ia), make("b", ib)) as (a, b):
            assert await a.connect("127.0.0.1", b.port) == b.public_key
            await until(lambda: b.peers == [a.public_key])
            assert a.peers == [b.public_key]
            assert a.send(b.public_key, "status", [1, b"from a"])
            assert b.send(a.public_key, "status", [2, b"from b"])
            assert a.broadcast("vote", {"h": 7}) == 1
            await until(lambda: len(ib.got) == 2 and len(ia.got) == 1)
            assert ib.got == [(a.public_key, [1, b"from a"]), (a.public_key, {"h": 7})]
            assert ia.got == [(b.public_key, [2, b"from b"])]
            assert not a.send(key("nobody").public_key, "status", 0)
    run(main())


def test_wait_peers_returns_once_the_condition_on_linked_peers_holds():
    async def main():
        async with started(make("a"), make("b"), make("c")) as (a, b, c):
            with pytest.raises(asyncio.TimeoutError):
                await a.wait_peers(lambda peers: len(peers) >= 1, 0.2)
            waiter = asyncio.ensure_future(a.wait_peers(lambda peers: c.public_key in peers, 5.0))
            await a.connect("127.0.0.1", b.port)
            await asyncio.sleep(0.2)
            assert not waiter.done()          # b is linked, but the condition names c
            await a.connect("127.0.0.1", c.port)
            await asyncio.wait_for(waiter, 5.0)
    run(main())


def test_gossip_in_a_mesh_of_four_reaches_every_node_exactly_once():
    async def main():
        inboxes = [Inbox() for _ in range(4)]
        async with started(*(make(i, inboxes[i]) for i in range(4))) as nodes:
            for i in range(4):
                for j in range(i + 1, 4):
                    await nodes[i].connect("127.0.0.1", nodes[j].port)
            await until(lambda: all(len(n.peers) == 3 for n in nodes))
            assert nodes[0].gossip("tx", b"first")
            assert not nodes[0].gossip("tx", b"first")   # already seen: not sent again
            assert nodes[2].gossip("vote", [2, b"second"])
            await until(lambda: all(len(inboxes[i].got) == (2 if i in (1, 3) else 1) for i in range(4)))
            await asyncio.sleep(0.3)  # relays of relays have landed by now: still once each
            for i in range(4):
                want = {0: [[2, b"second"]], 2: [b"first"]}.get(i, [b"first", [2, b"second"]])
                assert sorted(inboxes[i].bodies(), key=repr) == sorted(want, key=repr), i
    run(main())


def test_gossip_is_relayed_along_a_line_and_not_relayed_when_the_handler_says_no():
    async def main():
        inboxes = [Inbox() for _ in range(4)]
        nodes = [make(i, inboxes[i]) for i in range(4)]
        nodes[1].on("tx", lambda peer, body: (inboxes[1](peer, body), body != b"stop")[1])
        async with started(*nodes):
            for i in range(3):
                await nodes[i].connect("127.0.0.1", nodes[i + 1].port)
            await until(lambda: [len(n.peers) for n in nodes] == [1, 2, 2, 1])
            nodes[0].gossip("tx", b"go")
            await until(lambda: inboxes[3].bodies() == [b"go"])
            assert [ib.bodies() for ib in inboxes] == [[], [b"go"], [b"go"], [b"go"]]
            assert inboxes[3].got[0][0] == nodes[2].public_key  # hop by hop
            nodes[0].gossip("tx", b"stop")
            await until(lambda: inboxes[1].bodies() == [b"go", b"stop"])
            await asyncio.sleep(0.2)
            assert inboxes[2].bodies() == [b"go"]
    run(main())


# ---- refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("other, reason", [
    ({"chain_id": "another-chain"}, "wrong chain id"),
    ({"genesis_hash": hash_bytes(b"another genesis")}, "wrong genesis hash"),
    ({"allow": [key("someone-else").public_key]}, "allow-list"),
])
def test_handshake_refused_for_another_chain_or_a_key_not_allowed(other, reason):
    async def main():
        async with started(make("a"), make("b", **other)) as (a, b):
            with pytest.raises(HandshakeRefused, match=reason if "allow" not in other else "."):
                await a.connect("127.0.0.1", b.port)
            await until(lambda: any(reason in r for r in reasons(b)))
            assert a.peers == [] and b.peers == []
    run(main())


def test_self_connection_is_refused():
    async def main():
        async with started(make("a")) as (a,):
            with pytest.raises(HandshakeRefused, match="ourselves"):
                await a.connect("127.0.0.1", a.port)
            assert a.peers == []
    run(main())


def test_duplicate_connection_is_refused_and_the_first_link_keeps_working():
    async def main():
        ib = Inbox()
        async with started(make("a"), make("b", ib)) as (a, b):
            await a.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 1)
            with pytest.raises(HandshakeRefused, match="already connected"):
                await a.connect("127.0.0.1", b.port)
            await until(lambda: "peer already connected" in reasons(b))
            a.send(b.public_key, "status", 1)
            await until(lambda: ib.bodies() == [1])
            assert a.peers == [b.public_key] and b.peers == [a.public_key]
    run(main())


def test_simultaneous_dials_settle_on_one_link():
    async def main():
        async with started(make("a"), make("b")) as (a, b):
            results = await asyncio.gather(a.connect("127.0.0.1", b.port), b.connect("127.0.0.1", a.port),
                                           return_exceptions=True)
            await asyncio.sleep(0.2)
            assert a.peers == [b.public_key] and b.peers == [a.public_key]
            assert any(not isinstance(r, Exception) for r in results)
            lower_is_a = a.public_key < b.public_key
            assert a._peers[b.public_key].outbound == lower_is_a
            assert b._peers[a.public_key].outbound != lower_is_a
    run(main())


def test_a_node_with_max_peers_refuses_one_more():
    async def main():
        async with started(make("a"), make("b", max_peers=1), make("c")) as (a, b, c):
            await a.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 1)
            # b needs the key to know whether a reserved slot is due: it refuses after the handshake
            await c.connect("127.0.0.1", b.port)
            await until(lambda: any("too many peers (1)" in r for r in reasons(b, c.public_key)))
            await until(lambda: c.peers == [])
            assert b.peers == [a.public_key]
    run(main())


def test_seen_cache_is_bounded_forgetting_the_least_recently_seen():
    node = make("a", limits=Limits(seen_cache=2))
    assert [node._mark_seen(h) for h in (b"1", b"2", b"1", b"3", b"1", b"2")] == \
        [True, True, False, True, False, True]


def test_bad_handshake_signature_is_refused():
    async def main():
        async with started(make("b")) as (b,):
            raw = await RawPeer().open(b.port)
            await raw.handshake(bad_signature=True)
            assert await raw.closed_by_peer()
            assert "bad handshake signature" in reasons(b, raw.key.public_key)
            assert b.peers == []
            raw.close()
    run(main())


@pytest.mark.parametrize("send_hello", [False, True])
def test_a_handshake_that_never_completes_times_out(send_hello):
    async def main():
        async with started(make("b")) as (b,):
            raw = await RawPeer().open(b.port)
            if send_hello:
                await raw.send(frame(encode_message(HELLO, Hello(raw.key.public_key, CHAIN, GENESIS,
                                                                 Ephemeral.generate().public).body())))
            assert await raw.closed_by_peer()
            assert any("handshake not done within 0.5 s" in r for r in reasons(b))
            raw.close()
    run(main())


# ---- misbehaving peers are dropped, the node keeps serving ---------------------------------

JUNK = random.Random(5).randbytes(200)
NON_CANONICAL = b"\x92\xa6status\xcd\x00\x01"   # [ "status", 1 ] with 1 as a uint16


def sealed(payload: bytes) -> Callable[[RawPeer], bytes]:
    """Wire bytes made by the raw peer's link once it has handshaken."""
    return lambda raw: raw.seal(payload)


@pytest.mark.parametrize("authenticated, data, reason", [
    (False, JUNK, ""),
    (False, (2000).to_bytes(4, "big") + bytes(2000), "over the limit of 1024"),
    (False, frame(b"\xc1"), "malformed message"),
    (True, JUNK, ""),
    (True, (MAX_FRAME + 17).to_bytes(4, "big"), f"over the limit of {MAX_FRAME} + 16 (tag)"),
    (True, (100).to_bytes(4, "big") + bytes(10), "frame body not received within 0.5 s"),
    (True, sealed(b"\xc1"), "malformed message"),
    (True, sealed(NON_CANONICAL), "not in canonical form"),
    (True, sealed(encode([1, 2, 3])), "not [type, body]"),
    (True, sealed(encode(["no-such-type", 1])), "unknown message type"),
    (True, sealed(encode_message(HELLO, [])), "unknown message type 'hello'"),
], ids=["junk-before-handshake", "big-hello", "bad-msgpack-hello", "junk", "oversized-length",
        "truncated-stalled", "bad-msgpack", "non-canonical", "not-a-pair", "unknown-type", "late-hello"])
def test_a_peer_sending_garbage_is_dropped_and_others_are_still_served(authenticated, data, reason):
    async def main():
        ib = Inbox()
        async with started(make("a"), make("b", ib)) as (a, b):
            await a.connect("127.0.0.1", b.port)
            raw = await RawPeer().open(b.port)
            if authenticated:
                await raw.handshake()
                await until(lambda: raw.key.public_key in b.peers)
            await raw.send(data if isinstance(data, bytes) else data(raw))
            assert await raw.closed_by_peer()
            assert raw.key.public_key not in b.peers
            assert reason in " | ".join(reasons(b)), reasons(b)
            a.send(b.public_key, "status", b"still here")
            await until(lambda: ib.bodies() == [b"still here"])
            raw.close()
    run(main())


@pytest.mark.parametrize("spoil", ["flip", "replay", "unsealed"])
def test_a_frame_failing_its_tag_drops_the_link_without_a_ban_and_the_peer_comes_back_at_once(spoil):
    """What an on-path attacker can do to a sealed link (flip a byte, replay a frame, inject a
    plain one) closes it; the peer is not banned, so it is admitted again on its next dial."""
    async def main():
        ib = Inbox()
        async with started(make("b", ib)) as (b,):
            raw = await RawPeer().open(b.port)
            await raw.handshake()
            await until(lambda: raw.key.public_key in b.peers)
            good = raw.seal(encode_message("status", 1))
            nxt = raw.seal(encode_message("status", 2))
            bad = {"flip": good + nxt[:-1] + bytes([nxt[-1] ^ 1]),
                   "replay": good + good,
                   "unsealed": good + frame(encode_message("status", bytes(32)))}[spoil]
            await raw.send(bad)
            assert await raw.closed_by_peer()
            assert ib.bodies() == [1]                  # the good frame, once; nothing after it
            assert "frame 2 failed authentication" in " | ".join(reasons(b, raw.key.public_key))
            assert b._key_bans.banned(raw.key.public_key, asyncio.get_running_loop().time()) is None
            raw.close()
            await (await raw.open(b.port)).handshake()
            await until(lambda: raw.key.public_key in b.peers)
            raw.close()
    run(main())


def test_a_truncated_frame_then_close_drops_the_peer():
    async def main():
        async with started(make("b")) as (b,):
            raw = await RawPeer().open(b.port)
            await raw.handshake()
            await until(lambda: raw.key.public_key in b.peers)
            await raw.send((100).to_bytes(4, "big") + bytes(10))
            raw.writer.write_eof()
            await until(lambda: "truncated frame: 10 of 100 bytes" in reasons(b))
            assert b.peers == []
            raw.close()
    run(main())


def test_a_body_failing_handler_validation_or_a_handler_bug_drops_the_sender_only():
    async def main():
        ib = Inbox()

        def vote(peer: bytes, body: Any) -> None:
            if type(body) is not int:
                raise BadMessage("a vote is an int here")
            ib(peer, body)

        def status(peer: bytes, body: Any) -> None:
            raise RuntimeError("handler bug")

        b = make("b")
        b.on("vote", vote)
        b.on("status", status)
        async with started(make("a"), make("c"), b) as (a, c, b):
            await a.connect("127.0.0.1", b.port)
            await c.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 2)
            a.send(b.public_key, "vote", "not an int")
            await until(lambda: a.public_key not in b.peers)
            assert "bad vote: a vote is an int here" in reasons(b, a.public_key)
            c.send(b.public_key, "vote", 3)
            await until(lambda: ib.bodies() == [3])
            c.send(b.public_key, "status", 0)
            await until(lambda: b.peers == [])
            assert "handler for status failed: RuntimeError: handler bug" in reasons(b, c.public_key)
            # our bug bans nobody: c is served again; a broke a rule and is banned
            await c.connect("127.0.0.1", b.port)
            c.send(b.public_key, "vote", 4)
            await until(lambda: ib.bodies() == [3, 4])
            await a.connect("127.0.0.1", b.port)
            await until(lambda: any(r.startswith("banned for another") for r in reasons(b, a.public_key)))
            assert a.public_key not in b.peers
    run(main())


def test_a_slow_peer_is_dropped_rather_than_blocking_others():
    async def main():
        ia = Inbox()
        limits = Limits(send_queue=8, handshake_timeout=2, frame_timeout=2)
        async with started(make("a", ia, limits=limits), make("b", limits=limits)) as (a, b):
            await a.connect("127.0.0.1", b.port)
            raw = await RawPeer().open(b.port)
            await raw.handshake()          # ... and then never reads
            await until(lambda: len(b.peers) == 2)
            blob = bytes(256 << 10)
            for i in range(1000):
                b.broadcast("status", [i, blob])
                await until(lambda: len(ia.got) == i + 1)   # the fast peer keeps up
                if raw.key.public_key not in b.peers:
                    break
            assert raw.key.public_key not in b.peers
            assert a.public_key in b.peers
            assert any("send queue full (8 messages)" in r for r in reasons(b, raw.key.public_key))
            raw.close()
    run(main(), timeout=30)


# ---- slots, send queues in bytes, per-IP limits, bans ---------------------------------------

def test_validators_get_reserved_slots_others_a_bounded_share_and_the_least_useful_is_evicted():
    async def main():
        v1, v2 = make("v1"), make("v2")
        ib = Inbox()
        b = make("b", ib, max_peers=3, validators=lambda: {v1.public_key, v2.public_key},
                 limits=Limits(handshake_timeout=2, frame_timeout=2, max_other_peers=2))
        async with started(b, v1, v2, make("o1"), make("o2"), make("o3")) as (b, v1, v2, o1, o2, o3):
            await o1.connect("127.0.0.1", b.port)
            await o2.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 2)
            await o3.connect("127.0.0.1", b.port)       # the share of other peers is taken
            await until(lambda: any("no free slot" in r for r in reasons(b, o3.public_key)))
            await v1.connect("127.0.0.1", b.port)       # a validator still gets in: 3 of 3
            await until(lambda: len(b.peers) == 3)
            o1.send(b.public_key, "status", 1)          # o1 has been useful since o2 last was
            await until(lambda: ib.bodies() == [1])
            await v2.connect("127.0.0.1", b.port)       # full: o2, the least useful, makes room
            await until(lambda: sorted(b.peers) == sorted([o1.public_key, v1.public_key, v2.public_key]))
            assert any(r.startswith("evicted: its slot went to reserved peer") for r in reasons(b, o2.public_key))
            assert b._peers[v1.public_key].reserved and not b._peers[o1.public_key].reserved
    run(main())


def test_a_configured_peer_key_holds_a_reserved_slot():
    async def main():
        c = make("c")
        b = make("b", max_peers=1, peers=[PeerAddress("127.0.0.1", 9, c.public_key)],
                 limits=Limits(handshake_timeout=2, frame_timeout=2, backoff_min=5, backoff_max=5))
        async with started(b, make("o"), c) as (b, o, c):
            await o.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 1)
            await c.connect("127.0.0.1", b.port)
            await until(lambda: b.peers == [c.public_key])
    run(main())


def test_inbound_peers_and_handshakes_in_flight_are_limited_per_ip_validators_exempt():
    async def main():
        v = make("v")
        b = make("b", validators=lambda: {v.public_key},
                 limits=Limits(handshake_timeout=2, frame_timeout=2, max_per_ip=2))
        async with started(b, v) as (b, v):
            raws = [RawPeer(f"ip-{i}") for i in range(3)]
            for r in raws:
                await (await r.open(b.port)).handshake()
                await until(lambda: r.key.public_key in b.peers or reasons(b, r.key.public_key))
            assert await raws[2].closed_by_peer()
            assert "too many peers from 127.0.0.1 (2)" in reasons(b, raws[2].key.public_key)
            await v.connect("127.0.0.1", b.port)        # a validator from the same IP gets in
            await until(lambda: len(b.peers) == 3)
            stalled = [await RawPeer(f"stall-{i}").open(b.port) for i in range(3)]  # never send a hello
            assert await stalled[2].closed_by_peer(timeout=1.0)
            assert "too many handshakes in progress from 127.0.0.1 (2)" in reasons(b)
            assert not await stalled[0].closed_by_peer(timeout=0.3)   # the first two wait their timeout
            for r in raws + stalled:
                r.close()
    run(main())


def test_send_queue_is_bounded_in_bytes_and_a_peer_that_never_reads_is_dropped_in_time():
    async def main():
        limits = Limits(send_queue_bytes=1 << 20, write_timeout=1.0, handshake_timeout=2, frame_timeout=2)
        async with started(make("b", limits=limits)) as (b,):
            flood, idle = RawPeer("flood"), RawPeer("idle")
            for r in (flood, idle):
                await r.open(b.port, rcvbuf=4096)
                await r.handshake()                     # ... and then never read
            await until(lambda: len(b.peers) == 2)
            b.send(idle.key.public_key, "status", bytes(3 << 20))   # over the bound, into an empty queue: taken
            blob, peer = bytes(64 << 10), b._peers[flood.key.public_key]
            for i in range(400):                        # at most 1 MiB waits for the flood peer
                if peer.reason is not None:
                    break
                b.send(flood.key.public_key, "status", [i, blob])
                assert peer.queue.nbytes <= 1 << 20
            assert peer.reason == "send queue full (1048576 bytes): peer too slow"
            # the idle peer's frame is more than loopback buffers: its write stalls, dropped after 1 s
            await until(lambda: b.peers == [], timeout=5)
            assert "not reading: a frame not taken within 1.0 s" in reasons(b, idle.key.public_key)
            flood.close()
            idle.close()
    run(main())


def test_a_peer_breaking_the_protocol_is_banned_with_growing_bans_then_its_ip():
    async def main():
        v = make("v")
        limits = Limits(handshake_timeout=2, frame_timeout=2, ban=0.4, ban_max=60, validator_ban=0.2,
                        ip_ban_after=3)
        async with started(make("b", limits=limits, validators=lambda: {v.public_key}), v) as (b, v):
            async def offend(raw: RawPeer) -> None:
                await raw.open(b.port)
                await raw.handshake()
                await raw.send(raw.seal(encode(["no-such-type", 1])))
                assert await raw.closed_by_peer()
                raw.close()

            raw = RawPeer("junk")
            await offend(raw)
            ban = b._key_bans.banned(raw.key.public_key, asyncio.get_running_loop().time())
            assert ban is not None and ban.strikes == 1 and ban.reason == "unknown message type 'no-such-type'"
            await raw.open(b.port)
            await raw.handshake()                       # refused during the ban, with the reason
            assert await raw.closed_by_peer()
            assert any(r.startswith("banned for another") and "(offence 1: unknown message type" in r
                       for r in reasons(b, raw.key.public_key))
            raw.close()
            await asyncio.sleep(0.45)                   # the 0.4 s ban is over: a second offence doubles it
            await offend(raw)
            ban = b._key_bans.banned(raw.key.public_key, asyncio.get_running_loop().time())
            assert ban is not None and ban.strikes == 2 and ban.until - ban.last == pytest.approx(0.8)
            await offend(RawPeer("junk-2"))             # a third key from 127.0.0.1: the IP is banned
            fresh = RawPeer("fresh")
            await fresh.open(b.port)
            await fresh.handshake()
            assert await fresh.closed_by_peer()
            assert any(r.startswith("address 127.0.0.1 banned for another") for r in reasons(b, fresh.key.public_key))
            fresh.close()
            # a validator from that IP still gets in; breaking a rule bans it only briefly
            await v.connect("127.0.0.1", b.port)
            await until(lambda: v.public_key in b.peers)
            v.send(b.public_key, "no-such-type", 1)
            await until(lambda: v.public_key not in b.peers)
            ban = b._key_bans.banned(v.public_key, asyncio.get_running_loop().time())
            assert ban is not None and ban.until - ban.last == pytest.approx(0.2)
            await asyncio.sleep(0.25)
            await v.connect("127.0.0.1", b.port)
            await until(lambda: v.public_key in b.peers)
    run(main())


def test_ban_table_doubles_caps_forgets_and_is_bounded():
    t = p2p.BanTable(size=3, base=1.0, cap=5.0)
    assert [t.offend("k", "r", now).until - now for now in (0.0, 1.5, 4.0, 9.0)] == [1.0, 2.0, 4.0, 5.0]
    assert t.banned("k", 13.9) is not None and t.banned("k", 14.0) is None
    assert t.offend("k", "r", 20.0).strikes == 1        # forgotten cap seconds after its ban ended
    for k in ("a", "b", "c"):
        t.offend(k, "r", 21.0)
    assert len(t) == 3 and t.banned("k", 21.0) is None  # the least recent offender went first
    ip = p2p.BanTable(size=10, base=1.0, cap=5.0, threshold=3)
    assert [ip.offend("1.2.3.4", "r", 0.0) is None for _ in range(3)] == [True, True, False]
    assert ip.banned("1.2.3.4", 0.5) is not None


def test_oversized_outgoing_message_is_refused_locally():
    with pytest.raises(ValueError, match="over the frame limit"):
        encode_message("tx", bytes(MAX_FRAME))


def test_frame_limit_follows_the_chain_so_a_largest_block_travels():
    from ledger.params import ChainParams
    params = ChainParams()
    limit = p2p.frame_limit(params.max_block_bytes)
    assert limit >= params.max_block_bytes + p2p.FRAME_OVERHEAD and p2p.frame_limit(1024) == MAX_FRAME

    async def main():
        ib = Inbox()
        big = Limits(max_frame=limit, handshake_timeout=2, frame_timeout=10)
        async with started(make("a", limits=big), make("b", ib, types=("proposal",), limits=big)) as (a, b):
            await a.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 1)
            block = os.urandom(1024) * (params.max_block_bytes // 1024)
            assert a.gossip("proposal", [1, block])
            await until(lambda: len(ib.got) == 1, timeout=15)
            assert ib.bodies()[0][1] == block
    run(main(), timeout=30)


def test_not_handled_forgets_the_hash_so_a_later_copy_is_handled_but_not_relayed():
    async def main():
        calls: list = []
        ic = Inbox()

        def vote(peer: bytes, body: Any) -> Any:
            calls.append(body)
            return p2p.NOT_HANDLED if len(calls) == 1 else None

        b, c = make("b"), make("c", ic)
        b.on("vote", vote)
        async with started(make("a"), b, c) as (a, b, c):
            await a.connect("127.0.0.1", b.port)
            await b.connect("127.0.0.1", c.port)
            await until(lambda: len(b.peers) == 2)
            assert a.gossip("vote", [7])
            await until(lambda: len(calls) == 1)
            await asyncio.sleep(0.1)
            assert ic.got == []                # not handled: not relayed
            a.broadcast("vote", [7])           # the same bytes again (a re-gossip)
            await until(lambda: len(calls) == 2)
            await until(lambda: ic.bodies() == [[7]])
            a.broadcast("vote", [7])           # handled now: a copy is dropped by the dedupe
            await asyncio.sleep(0.2)
            assert len(calls) == 2 and ic.bodies() == [[7]]
    run(main())


def test_on_connect_is_told_of_each_admitted_peer_and_pending_counts_queued_frames():
    async def main():
        seen: list = []
        a = make("a")
        a.on_connect(seen.append)
        a.on_connect(lambda peer: 1 / 0)  # a failing callback does not refuse the peer
        async with started(a, make("b"), make("c")) as (a, b, c):
            await b.connect("127.0.0.1", a.port)
            await a.connect("127.0.0.1", c.port)
            await until(lambda: len(a.peers) == 2)
            assert sorted(seen) == sorted([b.public_key, c.public_key])
            assert a.pending(key("nobody").public_key) == 0
            assert a.pending(b.public_key) >= 0
    run(main())


# ---- reconnect ---------------------------------------------------------------------------

def test_configured_peer_is_redialled_after_it_restarts():
    async def main():
        ia = Inbox()
        b = make("b")
        async with started(b):
            port = b.port
            a = make("a", ia, peers=[("127.0.0.1", port)])
            async with started(a):
                await until(lambda: a.peers == [b.public_key])
                await b.stop()
                await until(lambda: a.peers == [])
                b2 = P2P(key("b"), CHAIN, GENESIS, "127.0.0.1", port, {}, limits=FAST)
                async with started(b2):
                    await until(lambda: a.peers == [b2.public_key])
                    await until(lambda: b2.peers == [a.public_key])
                    b2.send(a.public_key, "status", b"back")
                    await until(lambda: ia.bodies() == [b"back"])
    run(main())


def test_dialling_a_peer_that_is_down_retries_until_it_is_up():
    async def main():
        b = make("b")
        async with started(b):
            port = b.port
        a = make("a", peers=[("127.0.0.1", port)])
        async with started(a):
            await asyncio.sleep(0.3)       # a few failed dials
            assert a.peers == []
            async with started(P2P(key("b"), CHAIN, GENESIS, "127.0.0.1", port, {}, limits=FAST)):
                await until(lambda: len(a.peers) == 1)
    run(main())


def test_a_configured_peer_key_must_match_the_node_at_that_address():
    async def main():
        async with started(make("a"), make("b")) as (a, b):
            with pytest.raises(HandshakeRefused, match="expected"):
                await a.connect("127.0.0.1", b.port, expect_key=key("c").public_key)
            assert a.peers == []
            a.add_peer(f"{b.public_key.hex()}@127.0.0.1:{b.port}")
            await until(lambda: a.peers == [b.public_key])
    run(main())


def test_parse_peer():
    k = key("b").public_key
    assert parse_peer("127.0.0.1:26656") == PeerAddress("127.0.0.1", 26656)
    assert parse_peer(f"{k.hex()}@node-1.example:1") == PeerAddress("node-1.example", 1, k)
    assert parse_peer("[::1]:5") == PeerAddress("::1", 5)
    assert str(parse_peer(f"{k.hex()}@[::1]:5")) == f"{k.hex()}@[::1]:5"
    for bad in ["127.0.0.1", ":80", "h:0", "h:65536", "h:x", "zz@h:1", "abcd@h:1", f"{k.hex()}@h"]:
        with pytest.raises(ValueError):
            parse_peer(bad)


# ---- fault injection ---------------------------------------------------------------------

def test_seeded_faults_decide_the_same_for_the_same_seed():
    a, b, c = (key(x).public_key for x in "abc")

    def decisions(seed: int) -> list:
        f = SeededFaults(seed, drop=0.3, max_delay=0.05)
        # interleaving of links does not matter: each link has its own stream
        return [(f.decide(a, b, "vote"), f.decide(b, c, "tx")) if i % 2 else
                (f.decide(a, b, "vote"),) for i in range(200)]

    first, again, other = decisions(7), decisions(7), decisions(8)
    assert first == again and first != other
    ab = [d[0] for d in first]
    assert 40 < ab.count(None) < 80
    assert all(d is None or 0 <= d <= 0.05 for d in ab)
    f = SeededFaults(1)
    f.partition([a], [b, c])
    assert f.decide(a, b, "x") is None and f.decide(c, a, "x") is None and f.decide(b, c, "x") == 0
    f.heal()
    assert f.decide(a, b, "x") == 0


def test_fault_hook_drops_and_delays_messages_reproducibly_per_seed():
    n = 60

    async def deliver(seed: int) -> list[int]:
        ib = Inbox()
        a = make("a", link=SeededFaults(seed, drop=0.3, max_delay=0.02))
        async with started(a, make("b", ib)) as (a, b):
            await a.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 1)
            for i in range(n):
                a.send(b.public_key, "status", i)
            await asyncio.sleep(0.3)
            return ib.bodies()

    def predicted(seed: int) -> list[int]:
        f = SeededFaults(seed, drop=0.3, max_delay=0.02)
        src, dst = key("a").public_key, key("b").public_key
        return [i for i in range(n) if f.decide(src, dst, "status") is not None]

    got7 = run(deliver(7))
    assert sorted(got7) == predicted(7) == sorted(run(deliver(7)))
    assert sorted(run(deliver(8))) == predicted(8) != predicted(7)
    assert got7 != sorted(got7)   # delays reorder messages


def test_partition_drops_everything_between_halves_until_healed():
    async def main():
        ib = Inbox()
        faults = SeededFaults(3)
        async with started(make("a", link=faults), make("b", ib)) as (a, b):
            await a.connect("127.0.0.1", b.port)
            await until(lambda: len(b.peers) == 1)
            faults.partition([a.public_key], [b.public_key])
            a.send(b.public_key, "status", "lost")
            await asyncio.sleep(0.1)
            faults.heal()
            a.send(b.public_key, "status", "found")
            await until(lambda: ib.bodies() == ["found"])
    run(main())
