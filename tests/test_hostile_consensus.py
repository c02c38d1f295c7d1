"""Hostile-input suite, area `consensus` (issue 12 items 6, 8 and the stall report of 12).

Four validators as real node.py processes on loopback.  An attacker outside them speaks
the real p2p handshake (net/p2p.py's P2P as a client) with a random key and, on a seeded
schedule, floods (a) next-height votes with bogus signatures, (b) votes validly signed by
one validator's key for any round and value (a double signer).  Afterwards every node holds
the same hash at every height (check_agreement), nothing committed is lost, the block rate
stayed above a stated fraction of the unattacked rate measured in the same test, and RSS
stayed bounded.  A last test kills 2 of 4 validators and reads the stall in RPC `status`."""
from __future__ import annotations

import asyncio
import random
import re
import time
from pathlib import Path

import pytest

from ledger.genesis import load_genesis
from ledger.keys import PrivateKey
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote, sign_vote
from net.consensus_reactor import encode_vote
from net.p2p import P2P
from tests.nodeproc import NodeProcess, check_agreement, heights, validator_processes, wait_until

N = 4
KEYS = [PrivateKey.from_label(f"hostile consensus validator {i}") for i in range(N)]
WINDOW_S = 8.0          # each measured window (unattacked, attacked)
MIN_RATE_FRACTION = 0.5  # attacked block rate >= this x the unattacked rate of the same test
MAX_RSS_GROWTH_MB = 60   # per node, over the attack


@pytest.fixture
def testnet(tmp_path):
    nodes = validator_processes(tmp_path / "tn", KEYS)
    try:
        for n in nodes:
            n.start()
        wait_until(lambda: min(heights(nodes)) >= 2, 40, "height 2 on every node")
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def genesis_of(node: NodeProcess):
    return load_genesis(Path(node.extra[node.extra.index("--genesis") + 1]))


def p2p_port(node: NodeProcess) -> int:
    return int(node.extra[node.extra.index("--p2p-port") + 1])


def rss_mb(node: NodeProcess) -> float:
    assert node.proc is not None
    text = Path(f"/proc/{node.proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def block_rate(nodes: list[NodeProcess], seconds: float) -> float:
    """Blocks per second of the slowest node over `seconds` of wall time."""
    h0, t0 = heights(nodes), time.monotonic()
    time.sleep(seconds)
    h1, t1 = heights(nodes), time.monotonic()
    return min(b - a for a, b in zip(h0, h1)) / (t1 - t0)


def attack(node: NodeProcess, votes, seconds: float, seed: int) -> dict:
    """Connect to `node` with a random key, send `votes(rng, tip)` in bursts for `seconds`
    (a link open then: until dropped, at most 5 s more), reconnecting whenever dropped; what happened (connections, drops, refused dials, sent)."""
    g = genesis_of(node)
    stats = {"connections": 0, "dropped": 0, "refused": 0, "sent": 0}

    async def main() -> None:
        rng = random.Random(seed)
        me = P2P(PrivateKey.from_label(f"attacker {seed}"), g.chain_id, g.hash, "127.0.0.1", 0)
        await me.start()
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                try:
                    peer = await me.connect("127.0.0.1", p2p_port(node))
                except Exception:  # refused (banned) or reset: the node keeps us out
                    stats["refused"] += 1
                    await asyncio.sleep(0.2)
                    continue
                stats["connections"] += 1
                with node.client() as c:
                    tip = c.status()["height"]
                while peer in me.peers and time.monotonic() < end + 5:  # each link: until dropped
                    for sv in votes(rng, tip):
                        me.send(peer, "vote", encode_vote(sv))
                        stats["sent"] += 1
                    await asyncio.sleep(0.01)
                if peer not in me.peers:
                    stats["dropped"] += 1
        finally:
            await me.stop()
    asyncio.run(main())
    return stats


def run_attack(nodes, votes, seed: int) -> tuple[dict, float, float, list[float]]:
    """The unattacked rate, then the rate while `votes` flood node 0 (from a thread)."""
    import threading
    base = block_rate(nodes, WINDOW_S)
    rss0 = [rss_mb(n) for n in nodes]
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(attack(nodes[0], votes, WINDOW_S + 2, seed)))
    t.start()
    time.sleep(1)
    rate = block_rate(nodes, WINDOW_S)
    t.join()
    growth = [rss_mb(n) - r for n, r in zip(nodes, rss0)]
    return box, base, rate, growth


def test_bogus_signature_flood_drops_the_sender_and_keeps_the_block_rate(testnet):
    nodes = testnet
    before = check_agreement(nodes)

    def votes(rng: random.Random, tip: int):
        # next-height votes of a real shape: a validator's address, a bogus signature
        for _ in range(200):
            yield SignedVote(Vote(rng.choice((PREVOTE, PRECOMMIT)), tip + 2, rng.randrange(3), rng.randbytes(32),
                                  rng.choice(KEYS).address), rng.randbytes(64))
    stats, base, rate, growth = run_attack(nodes, votes, seed=12_6)
    print(f"bogus flood: unattacked {base:.2f} blocks/s, attacked {rate:.2f}, {stats}, RSS growth {growth}")
    assert stats["connections"] >= 1 and stats["dropped"] == stats["connections"]  # every link dropped
    assert stats["sent"] <= 400 * stats["connections"]     # dropped after its first burst or two
    bans = [ln for ln in nodes[0].log.read_text().splitlines() if "banned peer" in ln]
    assert bans and all("bad signature" in ln for ln in bans)  # dropped and banned (p2p), not re-admitted
    for n in nodes[1:]:                                     # nothing unchecked was relayed to them
        assert "bad vote" not in n.log.read_text()
    assert base > 0 and rate >= MIN_RATE_FRACTION * base
    assert max(growth) < MAX_RSS_GROWTH_MB
    top = check_agreement(nodes)
    assert top > before                                     # nothing lost, the chain went on


def test_double_signer_flood_is_bounded_and_keeps_the_block_rate(testnet):
    """Votes validly signed by validator 3 (the attacker holds its key) for any round and
    value of the current and next height: kept at most as the first conflicting pair and
    the 2 highest future rounds, so memory and block rate hold."""
    nodes = testnet
    before = check_agreement(nodes)
    key = KEYS[3]
    g = genesis_of(nodes[0])

    def votes(rng: random.Random, tip: int):
        for _ in range(100):
            vt, h, r, v = rng.choice((PREVOTE, PRECOMMIT)), tip + rng.choice((1, 2)), rng.randrange(10**6), \
                rng.randbytes(32)
            yield SignedVote(Vote(vt, h, r, v, key.address), sign_vote(key, g.chain_id, vt, h, r, v))
    stats, base, rate, growth = run_attack(nodes, votes, seed=12_8)
    print(f"double-signer flood: unattacked {base:.2f} blocks/s, attacked {rate:.2f}, {stats}, RSS growth {growth}")
    assert stats["sent"] >= 1000                            # a real flood reached the node
    assert base > 0 and rate >= MIN_RATE_FRACTION * base
    assert max(growth) < MAX_RSS_GROWTH_MB
    assert check_agreement(nodes) > before


def test_a_stall_is_reported_in_status_with_the_missing_validators(testnet):
    nodes = testnet
    with nodes[0].client() as c:
        assert c.status()["stalled"] is None
    for n in nodes[2:]:
        n.kill()
    killed = {k.address.hex() for k in KEYS[2:]}

    def stalled() -> dict | None:
        with nodes[0].client() as c:
            return c.status()["stalled"]
    wait_until(lambda: stalled() is not None, 45, "a stall in status")
    st = stalled()
    with nodes[0].client() as c:
        assert st["height"] == c.status()["height"] + 1
    assert set(st["missing"]["prevote"]) >= killed
    assert st["since"] <= time.time()
    time.sleep(2)
    lines = [ln for ln in nodes[0].log.read_text().splitlines() if "no progress at height" in ln]
    assert len(lines) == 1 and all(k[:16] in lines[0] for k in killed)   # once, not per round
    check_agreement(nodes[:2])
