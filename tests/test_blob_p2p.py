"""Blob data availability over p2p (issue 13 item 1, net/blob_reactor.py).

In one process over real loopback TCP with real LMDB blob stores: a node fetches a blob's
chunks from peers, checking each against the root; a peer that lies, sends junk or floods
is dropped and banned, one that lacks or withholds the blob costs a bounded wait.

With four real validator processes (net/testnet.py files): a blob uploaded to ONE node's
RPC is recorded in a block that commits on all four, and every node then serves it; a
hostile peer answering blob requests with bad proofs is dropped and the blob still
arrives; a blob that only a byzantine proposer holds and withholds never enters the chain,
which goes on without it.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import pytest

from ledger.blobs import chunked
from ledger.blobstore import BlobStore
from ledger.hashing import hash_bytes
from ledger.keys import PrivateKey
from net.blob_reactor import (BLOB_CHUNK, BLOB_GET, BLOB_NONE, SERVE_BURST, BlobReactor, decode_chunk,
                              decode_get, fetch_timeout)
from net.p2p import P2P, BadMessage, HandshakeRefused, Limits

CHAIN = "blob-p2p-test"
GENESIS = hash_bytes(b"blob p2p test genesis")
FAST = Limits(backoff_min=0.05, backoff_max=0.2)


def _key(name: str) -> PrivateKey:
    return PrivateKey.from_label(f"blob p2p test {name}")


def _run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Node:
    """A P2P endpoint with a blob store and a BlobReactor."""

    def __init__(self, tmp_path, name: str, withhold: bool = False):
        self.p2p = P2P(_key(name), CHAIN, GENESIS, "127.0.0.1", 0, {}, limits=FAST)
        self.store = BlobStore(tmp_path / name)
        self.reactor = BlobReactor(self.p2p, self.store, withhold=withhold)
        self.reactor.attach()


class Hostile:
    """A peer speaking the blob messages its own way: `answer(root, index)` -> the body it
    sends back as blob_chunk (None: silent)."""

    def __init__(self, name: str, answer=lambda root, index: None, chain: tuple[str, bytes] = (CHAIN, GENESIS)):
        self.p2p = P2P(_key(name), chain[0], chain[1], "127.0.0.1", 0, {}, limits=FAST)
        self.asked = 0

        def on_get(peer: bytes, body: Any) -> None:
            self.asked += 1
            reply = answer(*decode_get(body))
            if reply is not None:
                self.p2p.send(peer, BLOB_CHUNK, reply)
        self.p2p.on(BLOB_GET, on_get)
        self.p2p.on(BLOB_CHUNK, lambda peer, body: None)
        self.p2p.on(BLOB_NONE, lambda peer, body: None)


@contextlib.asynccontextmanager
async def _started(*ps: P2P):
    for p in ps:
        await p.start()
    try:
        yield
    finally:
        for p in ps:
            await p.stop()


async def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _refused_as_banned(dialer: P2P, node: P2P) -> None:
    """dialer comes back at once: node refuses it as banned (the dialer may see its side of
    the handshake end before the refusal)."""
    with contextlib.suppress(HandshakeRefused, OSError):
        await dialer.connect("127.0.0.1", node.port)
    await _until(lambda: any("banned for another" in r.reason for r in node.refusals if r.peer_key == dialer.public_key))
    assert dialer.public_key not in node.peers


def _blob(size: int, chunk_bytes: int = 4096, seed: bytes = b"x"):
    data = b"".join(hash_bytes(seed + i.to_bytes(4, "big")) for i in range(-(-size // 32)))[:size]
    return data, chunked(data, chunk_bytes)


def _held(store: BlobStore, blob) -> bytes:
    return b"".join(store.chunks(blob.ref))


# ---- wire ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [None, [], [b"r" * 32], [b"r" * 31, 0], [b"r" * 32, -1], [b"r" * 32, 2**32],
                                  [b"r" * 32, True], ["r" * 32, 0], [b"r" * 32, 0, 1]])
def test_a_malformed_blob_request_is_a_bad_message(body):
    with pytest.raises(BadMessage, match="blob request"):
        decode_get(body)


@pytest.mark.parametrize("body, what", [
    ([b"r" * 32, 0, b"", []], "chunk must be"),
    ([b"r" * 32, 0, b"c" * ((1 << 20) + 1), []], "chunk must be"),
    ([b"r" * 32, 0, "c", []], "chunk must be"),
    ([b"r" * 32, 0, b"c", [b"h" * 31]], "proof must be"),
    ([b"r" * 32, 0, b"c", [b"h" * 32] * 65], "proof must be"),
    ([b"r" * 32, 0, b"c", b"h" * 32], "proof must be"),
    ([b"r" * 32, 0, b"c"], "array of 4")])
def test_a_malformed_blob_chunk_is_a_bad_message(body, what):
    with pytest.raises(BadMessage, match=what):
        decode_chunk(body)


def test_fetch_timeout_is_ten_seconds_plus_size_at_ten_mib_per_second():
    _, blob = _blob(64 << 20 if False else 5 << 20, 1 << 20)
    assert fetch_timeout(blob.ref) == 10.0 + 0.5


# ---- one process, real sockets ----------------------------------------------------------

def test_a_node_fetches_every_missing_chunk_from_its_peers_and_each_is_checked(tmp_path):
    data, blob = _blob(300_001)  # 74 chunks of 4 KiB, the last one short
    a, b, c = Node(tmp_path, "a"), Node(tmp_path, "b"), Node(tmp_path, "c")
    a.store.put(data, 4096, 0)
    b.store.put(data[:4096 * 10], 4096, 0)  # another blob: b does not hold ours

    async def main():
        async with _started(a.p2p, b.p2p, c.p2p):
            await c.p2p.connect("127.0.0.1", a.p2p.port)
            await c.p2p.connect("127.0.0.1", b.p2p.port)
            # a few chunks already here: only the others are asked for
            for i in (0, 5, 73):
                c.store.put_chunk(blob.ref, i, blob.chunks[i], blob.proof(i), 0)
            t0 = time.monotonic()
            assert await c.reactor.fetch(blob.ref, fetch_timeout(blob.ref), prefer=b.p2p.public_key)
            assert time.monotonic() - t0 < 5
    _run(main())
    assert _held(c.store, blob) == data
    assert a.reactor.served == blob.ref.chunks - 3 and c.reactor.fetched == blob.ref.chunks - 3
    assert b.reactor.served == 0  # it said blob_none, and was asked again only while chunks were left


def test_a_peer_that_lies_is_dropped_and_banned_and_the_blob_comes_from_another(tmp_path):
    data, blob = _blob(200_000)

    def lie(root, index):  # the right proof, a chunk with one bit flipped
        bad = bytearray(blob.chunks[index])
        bad[0] ^= 1
        return [root, index, bytes(bad), blob.proof(index)]
    honest, fetcher, liar = Node(tmp_path, "honest"), Node(tmp_path, "fetcher"), Hostile("liar", lie)
    honest.store.put(data, 4096, 0)

    async def main():
        async with _started(honest.p2p, fetcher.p2p, liar.p2p):
            await fetcher.p2p.connect("127.0.0.1", honest.p2p.port)
            await liar.p2p.connect("127.0.0.1", fetcher.p2p.port)
            await _until(lambda: len(fetcher.p2p.peers) == 2)
            assert await fetcher.reactor.fetch(blob.ref, 20, prefer=liar.p2p.public_key)
            assert liar.asked >= 1 and liar.p2p.public_key not in fetcher.p2p.peers
            await _refused_as_banned(liar.p2p, fetcher.p2p)
    _run(main())
    assert _held(fetcher.store, blob) == data
    assert any("proof does not lead to root" in r.reason for r in fetcher.p2p.refusals)


@pytest.mark.parametrize("junk, reason", [
    (lambda root: ("blob_chunk", [root, 0, b"c" * ((1 << 20) + 1), []]), "chunk must be 1 to"),
    (lambda root: ("blob_get", [root, "zero"]), "index must be"),
    (lambda root: ("blob_none", [root]), "array of 2"),
    (lambda root: ("blob_get", None), "array of 2 fields")])
def test_junk_blob_messages_drop_and_ban_the_sender(tmp_path, junk, reason):
    data, blob = _blob(10_000)
    node, hostile = Node(tmp_path, "node"), Hostile("junk")
    node.store.put(data, 4096, 0)

    async def main():
        async with _started(node.p2p, hostile.p2p):
            await hostile.p2p.connect("127.0.0.1", node.p2p.port)
            msg_type, body = junk(blob.ref.root)
            hostile.p2p.send(node.p2p.public_key, msg_type, body)
            await _until(lambda: not node.p2p.peers)
            await _refused_as_banned(hostile.p2p, node.p2p)
    _run(main())
    assert any(reason in r.reason for r in node.p2p.refusals)


def test_a_flood_of_blob_requests_is_answered_within_the_budget_then_drops_the_peer(tmp_path):
    data, blob = _blob(4 << 20, 1 << 20)  # four chunks of 1 MiB
    node, flooder = Node(tmp_path, "node"), Hostile("flooder")
    node.store.put(data, 1 << 20, 0)
    got: list[int] = []
    flooder.p2p.on(BLOB_CHUNK, lambda peer, body: got.append(decode_chunk(body)[1]))

    async def main():
        async with _started(node.p2p, flooder.p2p):
            await flooder.p2p.connect("127.0.0.1", node.p2p.port)
            for n in range(3 * SERVE_BURST // (1 << 20)):  # three bursts' worth at once
                flooder.p2p.send(node.p2p.public_key, BLOB_GET, [blob.ref.root, n % 4])
            await _until(lambda: not node.p2p.peers)
    _run(main())
    assert any("blob_get flood" in r.reason for r in node.p2p.refusals)
    assert 1 <= node.reactor.served <= SERVE_BURST // (1 << 20)  # never more than the burst was read


def test_a_blob_nobody_serves_is_not_fetched_and_the_wait_is_bounded(tmp_path):
    data, blob = _blob(50_000)
    fetcher, lacks, withholder = Node(tmp_path, "f"), Node(tmp_path, "lacks"), Node(tmp_path, "w", withhold=True)
    withholder.store.put(data, 4096, 0)

    async def main():
        async with _started(fetcher.p2p, lacks.p2p, withholder.p2p):
            await fetcher.p2p.connect("127.0.0.1", lacks.p2p.port)
            await fetcher.p2p.connect("127.0.0.1", withholder.p2p.port)
            t0 = time.monotonic()
            assert not await fetcher.reactor.fetch(blob.ref, 1.5, prefer=withholder.p2p.public_key)
            took = time.monotonic() - t0
            assert 1.4 < took < 3.0
            assert set(fetcher.p2p.peers) == {lacks.p2p.public_key, withholder.p2p.public_key}  # nobody dropped
    _run(main())
    assert not fetcher.store.has(blob.ref) and withholder.reactor.served == 0 and lacks.reactor.served == 0


# ---- four validator processes ---------------------------------------------------------

N = 4
KEYS = [PrivateKey.from_label(f"blob p2p validator {i}") for i in range(N)]


def _p2p_port(node) -> int:
    return int(node.extra[node.extra.index("--p2p-port") + 1])


def _chain(node) -> tuple[str, bytes]:
    from ledger.genesis import load_genesis
    g = load_genesis(node.extra[node.extra.index("--genesis") + 1])
    return g.chain_id, g.hash


@pytest.fixture
def testnet_factory(tmp_path):
    from tests.nodeproc import validator_processes
    started = []

    def make(extra: dict[int, list[str]] | None = None):
        nodes = validator_processes(tmp_path / "tn", KEYS, extra)
        started.extend(nodes)
        for n in nodes:
            n.start()
        return nodes
    yield make
    for n in started:
        n.kill()


def _log(node) -> str:
    return node.log.read_text(errors="replace")


def test_a_blob_uploaded_to_one_node_commits_on_all_four_which_then_serve_it_and_junk_peers_are_dropped(
        testnet_factory):
    from ledger.genesis import devnet_keys
    from tests.nodeproc import check_agreement, heights, wait_until
    nodes = testnet_factory()
    user = devnet_keys(1)[0]
    data = os.urandom((3 << 20) + 12345)  # 13 chunks of 256 KiB, the last one short
    ref = chunked(data, 256 << 10).ref

    def liar_answer(root, index):  # a chunk of the wrong length and no proof: never checks
        return [root, index, b"\0" * 4096, []]

    async def scenario():
        chain = _chain(nodes[0])
        liar = Hostile("liar in the testnet", liar_answer, chain)
        oversized, flooder = Hostile("oversized chunk sender", chain=chain), Hostile("blob_get flooder", chain=chain)
        async with _started(liar.p2p, oversized.p2p, flooder.p2p):
            await asyncio.to_thread(wait_until, lambda: min(heights(nodes)) >= 1, 30, "height 1 everywhere")
            for n in nodes[1:]:  # the three that must fetch the blob also know the liar
                await liar.p2p.connect("127.0.0.1", _p2p_port(n))
            await _until(lambda: len(liar.p2p.peers) == 3)

            def upload() -> None:
                with nodes[0].client() as c:  # ONE node's RPC only: put_blob_chunk for each chunk, then BLOB
                    assert c.put_blob(data, user, chunk_bytes=256 << 10, timeout=60) == ref
            await asyncio.to_thread(upload)
            await _until(lambda: not liar.p2p.peers, 30)  # every node that asked it dropped it
            assert liar.asked >= 3

            # junk at node 0: a chunk over 1 MiB, then a flood of requests
            target = nodes[0]
            await oversized.p2p.connect("127.0.0.1", _p2p_port(target))
            oversized.p2p.send(KEYS[0].public_key, BLOB_CHUNK, [ref.root, 0, b"c" * ((1 << 20) + 1), []])
            await flooder.p2p.connect("127.0.0.1", _p2p_port(target))
            for i in range(400):  # 256 KiB of its budget each: 100 MiB at once, far over the burst
                flooder.p2p.send(KEYS[0].public_key, BLOB_GET, [ref.root, i % ref.chunks])
            await _until(lambda: not oversized.p2p.peers and not flooder.p2p.peers, 30)
    _run(scenario(), 150)

    before = max(heights(nodes))
    wait_until(lambda: min(heights(nodes)) >= before + 2, 30, "two more blocks after the junk")
    check_agreement(nodes)
    for n in nodes:  # every node holds the blob, records its expiry and serves it with proofs
        with n.client() as c:
            info = c.blob(ref)
            assert info["complete"] and info["expiry"] is not None
            assert c.get_blob(ref) == data
    logs = [_log(n) for n in nodes]
    assert all("bad blob_chunk" in text for text in logs[1:])
    assert "chunk must be 1 to" in logs[0] and "blob_get flood" in logs[0]


def test_a_blob_only_a_byzantine_proposer_holds_and_withholds_never_enters_the_chain(testnet_factory):
    from gradchain import NotFound
    from ledger.genesis import devnet_keys
    from ledger.tx import put_blob
    from tests.nodeproc import check_agreement, heights, wait_until
    nodes = testnet_factory({0: ["--test-byzantine", "withhold-blobs"]})
    user = devnet_keys(1)[0]
    data = os.urandom(300_000)
    blob = chunked(data, 64 << 10)
    wire = {"root": blob.ref.root.hex(), "size": blob.ref.size, "chunk_bytes": blob.ref.chunk_bytes}
    wait_until(lambda: min(heights(nodes)) >= 1, 30, "height 1 everywhere")
    with nodes[0].client() as c:
        for i, chunk in enumerate(blob.chunks):
            c.call("put_blob_chunk", {"blob": wire, "index": i, "chunk": chunk.hex(),
                                      "proof": [h.hex() for h in blob.proof(i)]})
        assert c.blob(blob.ref)["complete"]
        tx_hash = c.broadcast(put_blob(user, c.chain_id, 0, blob.ref))
    start = max(heights(nodes))
    # the byzantine node proposes its block with the blob; the others cannot get the data
    wait_until(lambda: all("could not fetch blob" in _log(n) for n in nodes[1:]), 60,
               "the honest nodes giving up on the withheld blob")
    wait_until(lambda: min(heights(nodes)) >= start + 4, 60, "blocks go on without the withheld blob")
    check_agreement(nodes)
    for n in nodes:
        with n.client() as c:
            try:
                assert c.tx(tx_hash)["status"] != "committed"
            except NotFound:
                pass
            if n is not nodes[0]:
                with pytest.raises(NotFound):
                    c.blob(blob.ref)  # not on chain, and not a chunk of it here
    assert "TEST ONLY" in _log(nodes[0])


def test_a_node_that_was_down_syncs_the_block_of_a_blob_and_fetches_the_blob_first(testnet_factory):
    from ledger.genesis import devnet_keys
    from tests.nodeproc import check_agreement, heights, wait_until
    nodes = testnet_factory()
    user = devnet_keys(1)[0]
    data = os.urandom((1 << 20) + 777)
    wait_until(lambda: min(heights(nodes)) >= 1, 30, "height 1 everywhere")
    nodes[3].kill()  # three of four equal stakes still finalise
    with nodes[0].client() as c:
        ref = c.put_blob(data, user, chunk_bytes=128 << 10, timeout=60)
        recorded_at = c.blob(ref)["expiry"]
    live = nodes[:3]
    wait_until(lambda: all(_complete(n, ref) for n in live), 30,
               "the blob on the three live nodes")
    nodes[3].start()  # block sync brings it the block recording the blob: it fetches the blob first
    wait_until(lambda: heights(nodes)[3] >= max(heights(live)) - 1, 60, "the restarted node caught up")
    check_agreement(nodes)
    with nodes[3].client() as c:
        info = c.blob(ref)
        assert info["complete"] and info["expiry"] == recorded_at
        assert c.get_blob(ref) == data


def _complete(node, ref) -> bool:
    from gradchain import NotFound
    with node.client() as c:
        try:
            return c.blob(ref)["complete"]
        except NotFound:
            return False
