"""Staking under BFT consensus (consensus/bft.py + ledger/staking.py): four validators in one
process on real LMDB chains and virtual time.  An unbond and a bond change who signs at
exactly H+2 on every node; a validator that double-signs is caught by the honest engines,
and the evidence, sent in a transaction, slashes and removes it without a fork."""
from __future__ import annotations

from ledger import staking
from ledger.block import STATUS_SUCCESS
from ledger.evidence import encode as evidence_encode
from ledger.state import State
from ledger.tx import bond, submit_evidence, unbond
from ledger.votes import PREVOTE, SignedVote, Vote, verify_commit, vote_payload
from ledger.keys import VOTE_DOMAIN

from tests.test_consensus_bft import CHAIN, USERS, VKEYS, min_height


def run_until(clock, nodes, height: int, limit_ms: int = 120_000) -> None:
    clock.run(limit_ms, until=lambda: min_height(nodes) >= height)
    assert min_height(nodes) >= height, [e.chain.tip.height for e in nodes]


def give(nodes, tx) -> None:
    """A transaction in every node's mempool, as gossip would put it."""
    for e in nodes:
        e.mempool.add(tx)


def height_of(node, tx) -> int:
    found = node.chain.store.tx(tx.hash)
    assert found is not None, "transaction not committed"
    assert found[3].status == STATUS_SUCCESS, found[3].error
    return found[1]


def signers(node, h: int) -> set[bytes]:
    return {s.validator for s in node.chain.store.commit(h).signatures}


def check_agreement(nodes) -> int:
    """Same block at every height on every node, and each commit checked against the set that
    the chain says signs that height (read back from the state two blocks before)."""
    top = min(e.chain.tip.height for e in nodes)
    ref = nodes[0]
    for h in range(1, top + 1):
        assert len({e.chain.store.header(h).hash for e in nodes}) == 1, f"nodes disagree at height {h}"
    # each set hash in the headers is the hash of the set that signed the block's commit
    with ref.chain.store.read() as r:
        st = State(r.state)
        tip_set = staking.validator_set(st, 0)
    assert ref.chain.store.header(ref.chain.tip.height).validators_hash == tip_set.hash
    verify_commit(tip_set, CHAIN, ref.chain.store.commit(ref.chain.tip.height), ref.chain.tip.height,
                  ref.chain.tip.hash)
    return top


def test_unbond_then_bond_change_the_set_at_h_plus_2_on_every_node(cluster):
    clock, _net, nodes = cluster(range(4))
    for e in nodes:
        e.start()
    run_until(clock, nodes, 2)
    leaver = VKEYS[3]
    out = unbond(leaver, CHAIN, 0, 1)  # its whole stake; block rewards paid the fee
    give(nodes, out)
    run_until(clock, nodes, nodes[0].chain.tip.height + 4)
    h = height_of(nodes[0], out)
    for e in nodes:
        assert e.chain.store.header(h + 1).validators_hash == e.chain.store.header(h).validators_hash
        assert e.chain.store.header(h + 2).validators_hash != e.chain.store.header(h + 1).validators_hash
        assert e.chain.store.header(h + 1).next_validators_hash == e.chain.store.header(h + 2).validators_hash
    for k in range(h + 2, nodes[0].chain.tip.height + 1):
        assert leaver.address not in signers(nodes[0], k)
        assert nodes[0].chain.store.header(k).proposer != leaver.address
    assert nodes[3].chain.tip.height >= h + 3          # it follows the chain without signing
    back = bond(leaver, CHAIN, 1, 1)
    give(nodes, back)
    run_until(clock, nodes, nodes[0].chain.tip.height + 8)
    hb = height_of(nodes[0], back)
    for k in range(h + 2, hb + 2):
        assert leaver.address not in signers(nodes[0], k)
    later = range(hb + 2, nodes[0].chain.tip.height + 1)
    assert any(leaver.address in signers(nodes[0], k) for k in later), "the validator never signed again"
    check_agreement(nodes)


def test_double_signer_is_reported_slashed_and_removed(cluster):
    clock, net, nodes = cluster(range(4))
    cheat = VKEYS[2]

    def equivocate(sender, msg):
        """The cheat also prevotes nil, signed with its raw key (its Signer would refuse)."""
        v = msg.vote if isinstance(msg, SignedVote) else None
        if sender == cheat.address and v is not None and v.type == PREVOTE and v.value is not None and v.height == 2:
            sig = cheat.sign(VOTE_DOMAIN, CHAIN, vote_payload(PREVOTE, v.height, v.round, b""))
            other = SignedVote(Vote(PREVOTE, v.height, v.round, None, v.validator), sig)
            for addr, eng in net.engines.items():
                if addr != sender:
                    clock.schedule(1, lambda e=eng: e.receive(other))
        return msg

    net.tamper = equivocate
    for e in nodes:
        e.start()
    run_until(clock, nodes, 3)
    honest = [e for i, e in enumerate(nodes) if i != 2]
    found = [e.evidence for e in honest]
    assert all(len(f) >= 1 for f in found), "an honest engine missed the double signature"
    ev = found[0][0]
    assert ev.validator == cheat.address and ev.height == 2
    assert {f[0] for f in found} == {ev}            # one canonical evidence, whoever saw it
    net.tamper = None
    tx = submit_evidence(USERS[0], CHAIN, 0, evidence_encode(ev))
    give(nodes, tx)
    run_until(clock, nodes, nodes[0].chain.tip.height + 4)
    h = height_of(nodes[0], tx)
    (_, name, _), = nodes[0].chain.store.tx(tx.hash)[3].events
    assert name == "Slashed"
    for e in nodes:
        with e.chain.store.read() as r:
            table = {v.address for v in staking.bonded(State(r.state))}
        assert cheat.address not in table and len(table) == 3
    for k in range(h + 2, nodes[0].chain.tip.height + 1):
        assert cheat.address not in signers(nodes[0], k)
    check_agreement(nodes)
