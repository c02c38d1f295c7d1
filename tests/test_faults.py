"""Four validators as real node.py processes under injected faults (issue 5).

The faults are node.py's test-only switches (net/faults.py): a seeded schedule of
partitions, drops and delays applied by each node to the messages it sends, and a
byzantine validator that double-signs its prevotes.  Every schedule shares one clock
(`t0_unix_ms`), so the four processes agree on when a phase begins and ends.  Each test
ends by checking that every node holds the same block hash at every height it has, and
kills every process it started, even when it fails."""
from __future__ import annotations

import json
import time

import pytest

from consensus.bft import vote_signature_ok
from ledger.genesis import devnet_keys
from ledger.keys import PrivateKey, address_hex
from ledger.validators import Validator, ValidatorSet
from ledger.votes import PRECOMMIT, PREVOTE, SignedVote, Vote, sign_vote
from net.faults import (
    BOGUS_HASH,
    DoubleSignTransport,
    ScheduledFaults,
    load_schedule,
    parse_schedule,
)
from tests.nodeproc import NodeProcess, check_agreement, heights, validator_processes, wait_until

N = 4
KEYS = [PrivateKey.from_label(f"fault test validator {i}") for i in range(N)]
USERS = devnet_keys(2)


def sleep_until(unix: float) -> None:
    time.sleep(max(0.0, unix - time.time()))


@pytest.fixture
def launch(tmp_path):
    """launch(schedules={i: schedule}, extra={i: flags}) starts the four validators; every
    process is killed at the end of the test."""
    started: list[NodeProcess] = []

    def run(schedules: dict[int, dict] | None = None, extra: dict[int, list[str]] | None = None,
            block_time: float = 0.2) -> list[NodeProcess]:
        flags = {i: list((extra or {}).get(i, [])) for i in range(N)}
        for i, sched in (schedules or {}).items():
            path = tmp_path / f"faults{i}.json"
            path.write_text(json.dumps(sched))
            flags[i] += ["--test-faults", str(path)]
        nodes = validator_processes(tmp_path / "tn", KEYS, flags, block_time=block_time)
        started.extend(nodes)
        for n in nodes:
            n.start()
        return nodes

    yield run
    for n in started:
        n.kill()


def test_schedule_is_checked_and_deterministic(tmp_path):
    a, b = KEYS[0].public_key, KEYS[1].public_key
    doc = {"seed": 7, "t0_unix_ms": 1_000_000,
           "phases": [{"from_s": 0, "to_s": 10, "partition": [[a.hex()], [b.hex()]]},
                      {"from_s": 10, "to_s": 20, "drop": 0.3, "delay_ms": [100, 400]}]}
    now = [1000.0]

    def decisions() -> list:
        f = ScheduledFaults(parse_schedule(doc), clock=lambda: now[0])
        now[0] = 1005.0
        cut = [f.decide(a, b, "vote"), f.decide(b, a, "vote")]
        now[0] = 1015.0
        noisy = [f.decide(a, b, "vote") for _ in range(200)]
        now[0] = 1025.0
        return cut + noisy + [f.decide(a, b, "vote")]

    first = decisions()
    assert first == decisions()                      # a function of the seed, not of timing
    assert first[:2] == [None, None]                 # the partition cuts both directions
    noisy = first[2:-1]
    assert 30 < noisy.count(None) < 90               # ~30% dropped
    assert all(0.1 <= d <= 0.4 for d in noisy if d is not None)
    assert first[-1] == 0.0                          # after the last phase: clean links
    doc["seed"] = 8
    assert decisions()[2:-1] != noisy

    bad = tmp_path / "bad.json"
    for broken, why in [({"seed": 1, "phases": [{"from_s": 0, "to_s": 1, "drop": 2}]}, "drop"),
                        ({"seed": 1, "phases": [{"from_s": 5, "to_s": 1}]}, "to_s"),
                        ({"seed": 1, "phases": [{"from_s": 0, "to_s": 1, "partition": [["zz"]]}]}, "node key"),
                        ({"seed": "x", "phases": []}, "seed"),
                        ({"seed": 1, "phases": [], "extra": 1}, "unknown")]:
        bad.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=why):
            load_schedule(bad)


def test_double_sign_transport_adds_a_validly_signed_conflicting_prevote():
    key, chain_id = KEYS[0], "gradchain-testnet"
    vset = ValidatorSet((Validator(key.public_key, 1),))
    sent: list = []

    class Inner:
        def broadcast(self, sender: bytes, message) -> None:
            sent.append(message)

    t = DoubleSignTransport(Inner(), key, chain_id)
    block = bytes(range(32))
    for vtype, value in [(PREVOTE, block), (PREVOTE, None), (PRECOMMIT, block)]:
        sent.clear()
        sig = sign_vote(key, chain_id, vtype, 5, 1, value if value is not None else b"")
        t.broadcast(key.address, SignedVote(Vote(vtype, 5, 1, value, key.address), sig))
        if vtype == PRECOMMIT:
            assert len(sent) == 1            # only prevotes are doubled
            continue
        honest, evil = sent
        assert (evil.vote.type, evil.vote.height, evil.vote.round, evil.vote.validator) == (PREVOTE, 5, 1, key.address)
        assert evil.vote.value != honest.vote.value and evil.vote.value == (None if value else BOGUS_HASH)
        assert vote_signature_ok(vset, chain_id, honest) and vote_signature_ok(vset, chain_id, evil)
    assert t.sent == 2


def test_partition_two_two_finalises_nothing_then_heals(launch):
    """A 2|2 split of a running chain leaves half of the stake on each side, under the 2/3
    quorum: nothing is finalised while it lasts (a block being decided at the cut may land
    on one side only: block sync brings the other side up after the heal), and after it
    heals every node moves on, the same blocks everywhere."""
    t0 = time.time()
    cut_s, heal_s = 10.0, 18.0
    side_a, side_b = [k.public_key.hex() for k in KEYS[:2]], [k.public_key.hex() for k in KEYS[2:]]
    sched = {"seed": 11, "t0_unix_ms": int(t0 * 1000),
             "phases": [{"from_s": cut_s, "to_s": heal_s, "partition": [side_a, side_b]}]}
    nodes = launch({i: sched for i in range(N)})
    wait_until(lambda: min(heights(nodes)) >= 2, t0 + cut_s - time.time(), "height 2 before the cut")
    sleep_until(t0 + cut_s + 1.5)          # what was in flight at the cut has landed
    stalled = heights(nodes)
    sleep_until(t0 + heal_s - 0.5)
    # a node one block behind may still fetch that block from its side; nothing new is final
    assert max(heights(nodes)) == max(stalled), "a block was finalised by half of the stake"
    check_agreement(nodes)
    wait_until(lambda: min(heights(nodes)) >= max(stalled) + 2, 30, "two more blocks on every node after the heal")
    check_agreement(nodes)


def test_a_minute_of_drops_delays_and_reordering(launch):
    """60 s in which every link drops 20% of the messages and delays the rest by 0-400 ms
    (so they arrive out of order): the nodes never disagree, a transfer sent meanwhile is
    finalised, the chain keeps moving (re-gossip recovers lost votes), and after it every
    node moves on."""
    t0 = time.time()
    start_s, end_s = 6.0, 66.0
    sched = {"seed": 23, "t0_unix_ms": int(t0 * 1000),
             "phases": [{"from_s": start_s, "to_s": end_s, "drop": 0.2, "delay_ms": [0, 400]}]}
    nodes = launch({i: sched for i in range(N)})
    wait_until(lambda: min(heights(nodes)) >= 1, 20, "a first block on every node")
    sleep_until(t0 + start_s + 2)
    with nodes[2].client() as c:
        r = c.transfer(USERS[0], USERS[1].address, 4242, timeout=30)
    during = []
    while time.time() < t0 + end_s:
        time.sleep(min(10.0, max(0.0, t0 + end_s - time.time())))
        during.append(check_agreement(nodes))   # safety while the faults last
    assert during[-1] > max(during[0], r["height"]), "no progress during the faults"
    top = max(heights(nodes))
    wait_until(lambda: min(heights(nodes)) >= top + 2, 40, "two more blocks on every node after the faults")
    check_agreement(nodes)
    for n in nodes:
        with n.client() as c:
            assert c.tx(r["hash"])["height"] == r["height"]


def bonded(node: NodeProcess) -> dict[str, int]:
    """The bonded validators after the node's latest block: address -> stake."""
    with node.client() as c:
        return {v["address"]: v["stake"] for v in c.call("validators")["bonded"]}


def test_double_signing_validator_is_slashed_and_the_chain_neither_forks_nor_stops(launch):
    """Validator 3 sends a conflicting prevote next to each of its prevotes, signed with its
    raw key: the honest nodes turn what they saw into an EVIDENCE transaction, the chain
    removes (slashes) validator 3, agrees at every height and keeps finalising without it."""
    nodes = launch(extra={3: ["--test-byzantine", "double-sign"]})
    byz = address_hex(KEYS[3].address)
    assert byz in bonded(nodes[0])
    wait_until(lambda: byz not in bonded(nodes[0]), 30, "validator 3 slashed out of the bonded set")
    slashed_at = heights(nodes)
    with nodes[0].client() as c:
        r = c.transfer(USERS[0], USERS[1].address, 777, timeout=20)
    wait_until(lambda: min(heights(nodes)) >= max(slashed_at + [r["height"]]) + 3, 30,
               "three more blocks on every node after the slash")
    check_agreement(nodes)
    for n in nodes:
        assert byz not in bonded(n) and len(bonded(n)) == N - 1
    text = nodes[3].log.read_text()
    assert "TEST ONLY" in text and "double-signed prevote" in text
