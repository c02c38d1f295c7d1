"""Block sync (net/sync.py): checks of a fetched block and its commit, the request loop
between nodes, junk from peers, and real node processes that were down or lost their data
dir catching up and signing again."""
from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from consensus.signer import decode_state
from ledger.commit import Commit, CommitSig
from ledger.encoding import decode, encode
from ledger.keys import PrivateKey, address_hex
from ledger.votes import make_commit
from net.p2p import BadMessage
from net.sync import (BLOCK_REQUEST, BLOCK_RESPONSE, STATUS, BlockSync, SyncConfig, decode_request,
                      decode_response, decode_status, encode_response)
from net.testnet import make_testnet
from tests.nodeproc import NodeProcess, check_agreement, heights, validator_processes, wait_until
from tests.test_consensus_bft import CHAIN, GENESIS, VKEYS, open_chain
from tests.test_consensus_bft import cluster as bft_cluster  # noqa: F401 (a fixture)

PARAMS = GENESIS.params


def grow(chain, n: int, signers=VKEYS[:3]) -> None:
    """Commit n blocks on `chain` (each with a commit signed by `signers`)."""
    for _ in range(n):
        tip = chain.tip
        last = chain.store.commit(tip.height) if tip.height else None
        prop = chain.build_block([], VKEYS[tip.height % 4].address, tip.time_ms + 1000, last)
        chain.commit_block(prop.block, make_commit(signers, CHAIN, tip.height + 1, 0, prop.block.hash), prop.output)


def wire(body: Any) -> Any:
    """What the peer's bytes decode to (p2p hands handlers decoded canonical msgpack)."""
    return decode(encode(body))


@pytest.fixture
def chains(tmp_path):
    """A source chain 5 blocks ahead and an empty one."""
    src, dst = open_chain(tmp_path / "src"), open_chain(tmp_path / "dst")
    grow(src, 5)
    yield src, dst
    src.store.close()
    dst.store.close()


def writer(chain):
    def apply(block, commit, output):
        chain.commit_block(block, commit, output)
    return apply


class Hub:
    """In-memory stand-in for p2p between BlockSync instances: messages wait in one FIFO
    queue until pump(); a handler raising BadMessage gets the sender dropped (both ways)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, "FakeP2P"] = {}
        self.queue: list[tuple[bytes, bytes, str, Any]] = []
        self.dropped: list[tuple[bytes, bytes, str]] = []

    def pump(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, t, body = self.queue.pop(0)
            node = self.nodes[dst]
            if src not in node.links:
                continue
            try:
                node.handlers[t](src, wire(body))
            except BadMessage as e:
                self.dropped.append((dst, src, str(e)))
                node.links.discard(src)
                self.nodes[src].links.discard(dst)
        raise AssertionError("messages kept flowing")


class FakeP2P:
    def __init__(self, hub: Hub, key: bytes):
        self.hub, self.key = hub, key
        self.handlers: dict[str, Any] = {}
        self.links: set[bytes] = set()
        self.connect_cbs: list = []
        hub.nodes[key] = self

    @property
    def peers(self) -> list[bytes]:
        return sorted(self.links)

    def on(self, t, handler) -> None:
        self.handlers[t] = handler

    def on_connect(self, cb) -> None:
        self.connect_cbs.append(cb)

    def pending(self, _peer) -> int:
        return 0

    def send(self, peer, t, body) -> bool:
        if peer not in self.links:
            return False
        self.hub.queue.append((self.key, peer, t, body))
        return True

    def broadcast(self, t, body, exclude=None) -> int:
        return sum(self.send(p, t, body) for p in self.peers if p != exclude)

    def link(self, other: "FakeP2P") -> None:
        self.links.add(other.key)
        other.links.add(self.key)
        for cb in self.connect_cbs:
            cb(other.key)
        for cb in other.connect_cbs:
            cb(self.key)


def make_sync(hub, chain, label: str, apply=None) -> tuple[FakeP2P, BlockSync]:
    p = FakeP2P(hub, label.encode().ljust(32, b"."))
    s = BlockSync(p, chain, PARAMS, chain.validator_set, apply or writer(chain),  # type: ignore[arg-type]
                  SyncConfig(), seed=1)
    s.attach()
    return p, s


# ---- checks of one block -------------------------------------------------------------------

def test_a_block_is_written_only_with_a_commit_of_more_than_two_thirds_for_it(chains):
    src, dst = chains
    sync = BlockSync(None, dst, PARAMS, dst.validator_set, writer(dst))  # type: ignore[arg-type]
    b1, c1 = src.store.block(1), src.store.commit(1)
    other = src.store.block(2)
    forged = Commit(1, 0, b1.hash, tuple(CommitSig(s.validator, bytes(64)) for s in c1.signatures))
    outsider = PrivateKey.from_label("not a validator")
    bad = {
        "two of four signed": make_commit(VKEYS[:2], CHAIN, 1, 0, b1.hash),
        "another block": make_commit(VKEYS[:3], CHAIN, 1, 0, other.hash),
        "another height": make_commit(VKEYS[:3], CHAIN, 2, 0, b1.hash),
        "forged signatures": forged,
        "a non-validator": make_commit(VKEYS[:2] + [outsider], CHAIN, 1, 0, b1.hash),
        "another chain": make_commit(VKEYS[:3], "other-chain", 1, 0, b1.hash),
        "no signatures": Commit(1, 0, b1.hash, ()),
    }
    for what, commit in bad.items():
        with pytest.raises(BadMessage):
            sync.check(b1, commit)
        assert dst.tip.height == 0, what
    with pytest.raises(BadMessage, match="not the next one"):
        sync.check(other, src.store.commit(2))  # block 2 on a chain at 0
    out = sync.check(b1, c1)
    writer(dst)(b1, c1, out)
    assert dst.tip.hash == b1.hash
    # block 2 must carry a valid commit of block 1 as its last commit
    b2 = src.store.block(2)
    from ledger.block import Block
    no_last = Block(b2.header, b2.txs, make_commit(VKEYS[:1], CHAIN, 1, 0, b1.hash))
    with pytest.raises(BadMessage):
        sync.check(no_last, make_commit(VKEYS[:3], CHAIN, 2, 0, no_last.hash))
    assert dst.tip.height == 1


def test_decoders_take_exact_shapes():
    assert decode_status(wire([7, bytes(32)])) == (7, bytes(32))
    assert decode_request(wire([3])) == 3
    for body in ([7], [7, bytes(31)], [-1, bytes(32)], [True, bytes(32)], [7, bytes(32), 0], None, "x",
                 {"h": 1}, [2**63, bytes(32)]):
        with pytest.raises(BadMessage):
            decode_status(body)
    for body in ([], [0], [-5], [1, 2], ["1"], [None], [2**63], 1, [False]):
        with pytest.raises(BadMessage):
            decode_request(body)


JUNK = [None, True, False, 0, -1, 1, 2**63, 2**64 - 1, b"", b"\x00" * 31, b"\x00" * 32, b"\xff" * 64, "",
        "text", [], [[]], {}, {"a": 1}, [None, None], [b"", []]]


def mutations(body: Any, rng: random.Random):
    """Malformed variants of a valid body: fields swapped for junk, dropped, added, nested,
    block bytes flipped or cut."""
    yield from (j for j in JUNK)
    for _ in range(60):
        b = list(body)
        r = rng.random()
        if r < 0.4:
            b[rng.randrange(len(b))] = rng.choice(JUNK)
        elif r < 0.55:
            b = b[:rng.randrange(len(b))] if rng.random() < 0.5 else b + [rng.choice(JUNK)]
        elif r < 0.85 and type(b[0]) is bytes and b[0]:
            raw = bytearray(b[0])
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            b[0] = bytes(raw) if rng.random() < 0.7 else bytes(raw[:rng.randrange(len(raw))])
        elif len(b) == 2 and type(b[1]) is list:
            c = list(b[1])
            c[rng.randrange(len(c))] = rng.choice(JUNK)
            b[1] = c
        else:
            b = [b]
        yield b


def test_fuzzed_bodies_are_bad_messages_and_never_written(chains):
    """A few hundred malformed status, block_request and block_response bodies: each is
    refused with BadMessage (the peer is dropped) or is harmless; nothing else escapes and
    nothing is written."""
    src, dst = chains
    rng = random.Random(5)
    sync = BlockSync(None, dst, PARAMS, dst.validator_set, writer(dst))  # type: ignore[arg-type]
    good = wire(encode_response(src.store.block(1), src.store.commit(1)))
    refused = 0
    cases = [("status", b) for b in mutations(wire([1, src.tip.hash]), rng)]
    cases += [("request", b) for b in mutations(wire([1]), rng)]
    cases += [("response", b) for _ in range(4) for b in mutations(good, rng)]
    assert len(cases) > 300
    for kind, body in cases:
        try:
            if kind == "status":
                decode_status(wire(body))
            elif kind == "request":
                decode_request(wire(body))
            else:
                sync.check(*decode_response(wire(body), PARAMS))
        except BadMessage:
            refused += 1
    assert refused > 0.8 * len(cases)
    assert dst.tip.height == 0


# ---- the request loop (in memory) --------------------------------------------------------------

def test_a_node_behind_fetches_blocks_from_a_peer_and_ignores_what_it_did_not_ask(chains):
    src, dst = chains
    hub = Hub()
    pa, a = make_sync(hub, src, "a")
    pb, b = make_sync(hub, dst, "b")
    pa.link(pb)
    hub.pump()
    assert dst.tip.hash == src.tip.hash and b.synced == 5 and a.served == 5
    assert [dst.store.block(h).hash for h in range(1, 6)] == [src.store.block(h).hash for h in range(1, 6)]
    # an unsolicited response (even a valid one) is not even decoded
    hub.queue.append((pa.key, pb.key, BLOCK_RESPONSE, encode_response(src.store.block(5), src.store.commit(5))))
    hub.pump()
    assert not hub.dropped and dst.tip.height == 5
    # new blocks at the source: its status brings them over
    grow(src, 2)
    a.tick()
    hub.pump()
    assert dst.tip.hash == src.tip.hash and not hub.dropped


def test_a_peer_serving_a_bad_commit_is_dropped_and_another_peer_serves(chains, tmp_path):
    src, dst = chains
    liar_chain = open_chain(tmp_path / "liar")
    grow(liar_chain, 5, signers=VKEYS[:2])  # its commits hold 2 of 4 signatures: not final
    try:
        hub = Hub()
        pl, _ = make_sync(hub, liar_chain, "liar")
        pa, _ = make_sync(hub, src, "honest")
        pb, b = make_sync(hub, dst, "b")
        pl.link(pb)
        hub.pump()
        assert dst.tip.height == 0
        assert [(d, s) for d, s, _ in hub.dropped] == [(pb.key, pl.key)]
        assert "2/3" in hub.dropped[0][2]
        pa.link(pb)
        hub.pump()
        assert dst.tip.hash == src.tip.hash
    finally:
        liar_chain.store.close()


def test_a_peer_claiming_a_height_it_never_serves_is_not_believed_for_a_while(chains):
    src, dst = chains
    hub = Hub()
    pa, _ = make_sync(hub, src, "a")
    pb, b = make_sync(hub, dst, "b")
    b.config = SyncConfig(request_timeout_s=0.01)
    pa.handlers[BLOCK_REQUEST] = lambda peer, body: None   # a liar: claims, never serves
    pa.link(pb)
    hub.pump()
    assert b.target == 5 and dst.tip.height == 0
    time.sleep(0.02)
    b.tick()                                               # the request timed out
    hub.queue[:] = [(pa.key, pb.key, STATUS, [1000, bytes(32)])]
    hub.pump()
    assert b.target == 0 and not hub.queue                 # its claims are ignored: no request
    assert not hub.dropped


def test_a_lost_answer_costs_the_peer_seconds_and_failures_in_a_row_double_the_distrust(chains):
    """A request or answer lost on a lossy link must not silence a peer for the full 30 s
    (with every peer ahead distrusted, a laggard could not sync at all): the first timeout
    distrusts for distrust_s, each further one in a row doubles it, a delivered block resets."""
    src, dst = chains
    hub = Hub()
    pa, _ = make_sync(hub, src, "a")
    pb, b = make_sync(hub, dst, "b")
    b.config = SyncConfig(request_timeout_s=0.01, distrust_s=0.2, max_distrust_s=0.5)
    serve = pa.handlers[BLOCK_REQUEST]
    pa.handlers[BLOCK_REQUEST] = lambda peer, body: None   # the link loses every request
    pa.link(pb)
    hub.pump()
    spans = []
    for _ in range(3):
        assert b.target == 5
        time.sleep(0.02)
        b.tick()                                           # timed out: distrusted for a while
        assert b.target == 0
        spans.append(b._distrust[pa.key] - time.monotonic())
        time.sleep(spans[-1] + 0.01)
        hub.queue[:] = [(pa.key, pb.key, STATUS, [src.tip.height, src.tip.hash])]
        hub.pump()
    assert 0.15 < spans[0] <= 0.2 and 0.35 < spans[1] <= 0.4 and 0.45 < spans[2] <= 0.5
    pa.handlers[BLOCK_REQUEST] = serve                     # the link heals: blocks flow again
    time.sleep(0.02)
    b.tick()                                               # (the last request was lost too)
    assert b._failures[pa.key] == 4
    time.sleep(b._distrust[pa.key] - time.monotonic() + 0.01)
    hub.queue[:] = [(pa.key, pb.key, STATUS, [src.tip.height, src.tip.hash])]
    hub.pump()
    assert dst.tip.hash == src.tip.hash and not hub.dropped
    assert pa.key not in b._failures                       # a delivery resets the count


def test_requests_for_heights_we_lack_get_no_answer_and_malformed_ones_drop_the_peer(chains):
    src, dst = chains
    hub = Hub()
    pa, a = make_sync(hub, src, "a")
    pb, _ = make_sync(hub, dst, "b")
    pa.link(pb)
    hub.pump()
    hub.queue[:] = [(pb.key, pa.key, BLOCK_REQUEST, [99])]
    hub.pump()
    assert a.served == 5 and not hub.dropped
    hub.queue[:] = [(pb.key, pa.key, BLOCK_REQUEST, [0])]
    hub.pump()
    assert hub.dropped and hub.dropped[0][:2] == (pa.key, pb.key)
    hub.queue[:] = [(pa.key, pb.key, STATUS, [1, b"short"])]
    pa.link(pb)
    hub.queue[:] = [(pa.key, pb.key, STATUS, [1, b"short"])]
    hub.pump()
    assert len(hub.dropped) == 2


# ---- the engine: blocks written by sync, then consensus at the next height ------------------

def sync_from(source, sync: BlockSync, engine) -> int:
    """Feed engine every block the source has beyond its tip, checked as sync would."""
    n = 0
    while engine.chain.tip.height < source.chain.tip.height:
        h = engine.chain.tip.height + 1
        block, commit = decode_response(wire(encode_response(source.chain.store.block(h),
                                                             source.chain.store.commit(h))), PARAMS)
        engine.apply_synced(block, commit, sync.check(block, commit))
        assert engine.chain.tip.height == h
        n += 1
    return n


class Silent:
    def broadcast(self, sender, message) -> None:
        pass


def test_an_engine_catches_up_before_it_starts_and_while_it_runs(bft_cluster):  # noqa: F811
    cluster = bft_cluster
    from tests.test_consensus_bft import check_agreement as same_chains
    clock, net, three = cluster([0, 1, 2])
    for e in three:
        e.start()
    clock.run(20_000, until=lambda: min(e.chain.tip.height for e in three) >= 3)
    _, _, (late,) = cluster([3])
    sync = BlockSync(None, late.chain, PARAMS, late.chain.validator_set, late.apply_synced)  # type: ignore[arg-type]
    assert sync_from(three[0], sync, late) >= 3 and not late.started
    late.start()                                  # consensus at the synced tip + 1
    top = max(e.chain.tip.height for e in three)
    clock.run(20_000, until=lambda: late.chain.tip.height >= top + 2)
    assert late.chain.store.commit(late.chain.tip.height) is not None
    assert late.signer.state.height > top         # it signs again
    # while running: cut it off (sends nothing, gets nothing) until the others are 2 ahead
    del net.engines[late.address]
    late.transport = Silent()
    stuck = late.chain.tip.height
    clock.run(20_000, until=lambda: min(e.chain.tip.height for e in three) >= stuck + 2)
    assert late.chain.tip.height == stuck
    assert sync_from(three[0], sync, late) >= 2   # the engine leaves its height for the next one
    assert late.height == late.chain.tip.height + 1
    net.engines[late.address] = late
    late.transport = net
    top = max(e.chain.tip.height for e in three)
    clock.run(20_000, until=lambda: min(e.chain.tip.height for e in three + [late]) >= top + 2)
    nodes = three + [late]
    same_chains(nodes, min(e.chain.tip.height for e in nodes))


def test_a_synced_block_the_engine_already_decided_is_ignored(bft_cluster):  # noqa: F811
    cluster = bft_cluster
    clock, net, nodes = cluster([0, 1, 2, 3])
    for e in nodes:
        e.start()
    clock.run(20_000, until=lambda: min(e.chain.tip.height for e in nodes) >= 2)
    e0, e1 = nodes[0], nodes[1]
    h = min(e0.chain.tip.height, e1.chain.tip.height)
    block, commit = e1.chain.store.block(h), e1.chain.store.commit(h)
    before = e0.chain.tip
    e0.apply_synced(block, commit, None)  # not on its tip any more: nothing happens
    assert e0.chain.tip == before


# ---- real node processes ---------------------------------------------------------------------

N = 4
KEYS = [PrivateKey.from_label(f"sync test validator {i}") for i in range(N)]


def start_testnet(tmp_path, *extra: str):
    """Four validators as node.py processes, started; (nodes, genesis path)."""
    nodes = validator_processes(tmp_path / "tn", KEYS, extra={i: list(extra) for i in range(N)})
    try:
        for n in nodes:
            n.start()
    except BaseException:
        for n in nodes:
            n.kill()
        raise
    return nodes, tmp_path / "tn" / "genesis.json"


@pytest.fixture
def testnet(tmp_path):
    nodes, gpath = start_testnet(tmp_path)
    try:
        yield nodes, gpath
    finally:
        for n in nodes:
            n.kill()


def signed_height(node: NodeProcess, i: int) -> int:
    """The last height validator i signed at (its priv_validator_state), 0 if none."""
    path = Path(node.data_dir) / "priv_validator_state"
    if not path.exists():
        return 0
    return decode_state(path.read_bytes(), KEYS[i].address, "gradchain-testnet").height


def own_commit_heights(node: NodeProcess, i: int, lo: int) -> list[int]:
    """Heights >= lo whose commit, as this node stored it, holds validator i's precommit."""
    me = address_hex(KEYS[i].address)
    out = []
    with node.client() as c:
        for h in range(lo, c.status()["height"] + 1):
            if me in {s["validator"] for s in c.block(h)["commit"]["signatures"]}:
                out.append(h)
    return out


def wipe(node: NodeProcess) -> None:
    """Delete the data dir, keeping only the key file in it (as an operator would)."""
    key_file = node.data_dir / "key.json"
    key = key_file.read_bytes()
    shutil.rmtree(node.data_dir)
    node.data_dir.mkdir()
    key_file.write_bytes(key)
    key_file.chmod(0o600)


def test_a_validator_down_for_a_while_catches_up_then_signs_again(testnet):
    nodes, _ = testnet
    wait_until(lambda: min(heights(nodes)) >= 2, 25, "height 2 on every node")
    nodes[3].kill()
    live = nodes[:3]
    down_at = max(heights(live))
    wait_until(lambda: min(heights(live)) >= down_at + 3, 25, "three blocks with one node down")
    nodes[3].start()
    wait_until(lambda: heights(nodes[3:])[0] >= min(heights(live)), 20, "the restarted node to catch up")
    caught = heights(nodes[3:])[0]
    assert caught >= down_at + 3  # it missed three blocks: only sync brings them
    wait_until(lambda: signed_height(nodes[3], 3) > caught, 15, "the restarted node to sign again")
    wait_until(lambda: own_commit_heights(nodes[3], 3, caught + 1), 20, "a block it decided itself")
    check_agreement(nodes)


def test_a_validator_whose_data_dir_was_wiped_syncs_from_peers_and_rejoins(testnet):
    nodes, _ = testnet
    wait_until(lambda: min(heights(nodes)) >= 3, 25, "height 3 on every node")
    victim, live = nodes[2], [nodes[0], nodes[1], nodes[3]]
    victim.kill()
    wipe(victim)
    victim.start()
    wait_until(lambda: heights([victim])[0] >= max(3, min(heights(live))), 20, "the wiped node to sync")
    wait_until(lambda: "signer state is fresh" in victim.log.read_text(), 10, "the fresh-signer warning")
    # it synced to `base`, then waited for block base + 1 before signing anything
    base = int(re.search(r"the chain is at height (\d+)", victim.log.read_text()).group(1))
    assert base >= 3
    wait_until(lambda: signed_height(victim, 2) >= base + 2, 15, "the wiped node to sign again")
    wait_until(lambda: own_commit_heights(victim, 2, base + 2), 20, "a block it decided itself")
    check_agreement(nodes)


def test_peers_and_port_come_from_the_genesis_file_when_no_flag_gives_them(tmp_path):
    import dataclasses

    from ledger.genesis import Genesis, load_genesis
    from net.p2p import parse_peer
    from node import Node, NodeConfig, NodeError, genesis_peers
    gpath, tn = make_testnet(N, tmp_path / "tn", 1_700_000_000_000, p2p_base=31000, keys=KEYS)
    g = load_genesis(gpath)
    peers, port = genesis_peers(g, KEYS[1].public_key)
    assert (peers, port) == ([parse_peer(p) for p in tn[1].peers], 31001) and len(peers) == N - 1
    assert genesis_peers(g, PrivateKey.from_label("stranger").public_key) == ([parse_peer(p) for p in g.peers], 0)
    assert g.hash == dataclasses.replace(g, peers=()).hash  # where nodes listen is not consensus
    for bad in ("127.0.0.1:1", [1], [None]):
        with pytest.raises(ValueError, match="peers"):
            Genesis.from_json(dict(g.to_json(), peers=bad))
    with pytest.raises(NodeError, match="genesis peers"):
        genesis_peers(dataclasses.replace(g, peers=("zz@127.0.0.1:1",)), KEYS[1].public_key)
    node = Node(NodeConfig(data_dir=tn[1].data_dir, genesis=gpath, key=tn[1].key_file, verify_workers=0, quiet=True))
    try:
        assert node.peers == peers and node.p2p_port == 31001
    finally:
        node.close()
    # the peers move: the same chain (same hash), so a restarted node takes the new list
    import json
    moved = tuple(p.replace("127.0.0.1:3100", "127.0.0.1:3200") for p in g.peers)
    gpath.write_text(json.dumps(dataclasses.replace(g, peers=moved).to_json()))
    node = Node(NodeConfig(data_dir=tn[1].data_dir, genesis=gpath, key=tn[1].key_file, verify_workers=0, quiet=True))
    try:
        assert [p.port for p in node.peers] == [32000, 32002, 32003] and node.p2p_port == 32001
    finally:
        node.close()


def test_messages_lost_in_a_partition_are_regossiped_after_it_heals(tmp_path):
    """A 2|2 partition stalls every node in the prevote step (no 2/3 of prevotes: no timeout
    follows), and what they sent meanwhile is lost.  Re-gossip of their own messages gets a
    block finalised soon after the heal; without it the nodes would wait forever."""
    t0 = int(time.time() * 1000) + 6000
    keys = [k.public_key.hex() for k in KEYS]
    schedule = tmp_path / "faults.json"
    schedule.write_text(json.dumps({"seed": 3, "t0_unix_ms": t0, "phases": [
        {"from_s": 0, "to_s": 3, "partition": [keys[:2], keys[2:]]}]}))
    nodes, _ = start_testnet(tmp_path, "--test-faults", str(schedule))
    try:
        heal = t0 / 1000 + 3
        time.sleep(max(0.0, heal - time.time()))
        at_heal = max(heights(nodes))
        wait_until(lambda: min(heights(nodes)) > at_heal, 10, "a block on every node after the heal")
        check_agreement(nodes)
    finally:
        for n in nodes:
            n.kill()
