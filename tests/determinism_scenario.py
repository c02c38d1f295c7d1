"""A fixed chain history, replayed from scratch: prints one digest of every block hash,
state root and receipt.  Run by tests/test_determinism.py in other processes, with other
PYTHONHASHSEED values and other CPython versions; all must print the same line.  The
history holds transfers and contract deploys and calls (each block is also re-executed
by a second node's store, as a validator would, and must give the same roots).

`python determinism_scenario.py contracts` prints instead, one line per transaction, what
a longer run of contract transactions did (receipts, gas) and the final state root: run
by tests/test_vm_determinism.py under other hash seeds, int digit limits and CPythons.

Needs only msgpack, pynacl and lmdb (no aiohttp, no jax), so a small venv runs it.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.genesis import Genesis  # noqa: E402
from ledger.validators import Validator, ValidatorSet  # noqa: E402
from ledger.votes import make_commit  # noqa: E402
from ledger.block import encode_block  # noqa: E402
from ledger.chain import Chain  # noqa: E402
from ledger.encoding import encode  # noqa: E402
from ledger.hashing import hash_bytes  # noqa: E402
from ledger.keys import PrivateKey  # noqa: E402
from ledger.params import ChainParams  # noqa: E402
from ledger.state import Account, State, changes, set_account  # noqa: E402
from ledger.store import Store  # noqa: E402
from ledger.transition import BlockEnv, process_transaction  # noqa: E402
from ledger.trie import root_from_items  # noqa: E402
from ledger import staking  # noqa: E402
from ledger.tx import (Transaction, bond, call, contract_address, deploy, submit_evidence,  # noqa: E402
                       transfer, unbond)
from ledger.evidence import DuplicateVoteEvidence  # noqa: E402
from ledger.evidence import encode as evidence_encode  # noqa: E402
from ledger.votes import PREVOTE, SignedVote, Vote, sign_vote  # noqa: E402

CHAIN = "gradchain-determinism"
GENESIS_MS = 1_750_000_000_000

# ---- contracts ------------------------------------------------------------------------------
# What could make nodes disagree: hash order (str keys), the host's int <-> str digit limit
# (PYTHONINTMAXSTRDIGITS), CPython's version (comprehensions are inlined from 3.12; Unicode
# tables differ), error text.  Each contract below exercises some of it.

BOOKS = '''
"""Dicts with many str keys, sorting, str() of containers, events."""

@constructor
def init(n: int):
    book = {}
    for i in range(n):
        book["key-" + str(i * 7919 % 1009)] = i
    storage["book"] = book


def weight(item):
    return [sum(item[0].encode()) % 13, item[0]]


@export
def rebuild(salt: str):
    book = storage["book"]
    out = {}
    for k, v in sorted(book.items(), key=weight):
        out[salt + k.upper()] = v * 3
    keys = list(out.keys())
    emit("Rebuilt", first=keys[:3], last=keys[-3:], size=len(out), total=sum(out.values()))
    storage["out", salt] = out
    print("rebuilt", salt, len(out))
    return str(keys[:5]) + str({k: out[k] for k in keys[-2:]})


@export
def nested():
    d = {}
    for i in range(200):
        d[(i % 7, "x" + str(i))] = [i, {"sq": i * i, "t": ("ü", b"\\xff")}]
    for k in list(d.keys())[::3]:
        del d[k]
    merged = {}
    for k, v in d.items():
        merged.setdefault(k[0], []).append(v[0])
    return [len(d), list(d)[:4], str(d)[:300], merged, sorted(merged.items(), reverse=True)[:2]]


@export
def text(s: str):
    return [s.upper(), s.lower(), s.split(), s.strip(), str([s, s.encode()]), s.replace("ß", "ss"),
            s.find("✓"), sorted(s.split())]
'''

NUMBERS = '''
"""Big ints (conversions past 640 digits), Decimal, keys whose hash an author chooses."""

@export
def big(n: int):
    x = 3 ** n
    y = pow(7, 10 ** 40 + n, 2 ** 521 - 1)
    s = str(x * x)
    back = int(s)
    emit("Big", digits=len(s), head=s[:10], value=x)
    return [len(s), s[:20], s[-20:], back == x * x, int(s[:700]) % 1000003, y % 10 ** 12, (x << 100) >> 37,
            -x // 7, x % -1009, x.bit_length(), str([x])[:30], divmod(x, 10 ** 300)[1] % 997,
            int.from_bytes(x.to_bytes(300, "big"), "little") % 65537]


@export
def money(a: str, b: str):
    x, y = Decimal(a), Decimal(b)
    r = [x + y, x - y, x * y, x / y, x // y, x % y, str(x / 3), str([x, y]), int(x * 1000), divmod(x, y),
         abs(-x), x < y, max(x, y, 5), sum([x, y, 1])]
    storage["money", a, b] = r
    return r


@export
def collide(n: int):
    d = {}
    base = 2 ** 61 - 1
    for i in range(n):
        d[base * (i + 1) + 5] = i
    d[-1] = "minus one"
    d[-2] = "minus two"
    d[(1, 2)] = "tuple"
    d[Decimal("0.5")] = "half"
    return [len(d), d[-1], d[-2], d[base + 5], list(d.values())[-4:]]
'''

FAILURES = '''
"""Every way to fail, each after writing storage (which must be rolled back)."""

@export
def fail(kind: int, other):
    storage["tried", kind] = True
    emit("Trying", kind=kind)
    print("trying", kind, "ünïcode")
    if kind == 0:
        require(False, "nope ✓ \\ud800")
    if kind == 1:
        n = 0
        while True:
            n += 1
    if kind == 2:
        return len([0] * 10 ** 7)
    if kind == 3:
        return {}["k"]
    if kind == 4:
        r = [x + y for x in range(3)]
        y = 1
        return r
    if kind == 5:
        return [1 // (i - 2) for i in range(5)]
    if kind == 6:
        return len("a" * 10 ** 700)
    if kind == 7:
        return call(ctx.this, "fail", 0, None)
    if kind == 8:
        return call(other, "no_such_function")
    if kind == 9:
        transfer(ctx.sender, 10 ** 700)
    if kind == 10:
        return str(["é", "\\U0001f6dc"])
    if kind == 11:
        return sorted([1, "a"])
    return kind
'''


def contract_calls(books: bytes, numbers: bytes, failures: bytes) -> list[tuple[bytes, str, tuple, int, int]]:
    """(contract, function, args, gas, value) of the calls both runs below make, in order."""
    calls = [(books, "rebuild", ("a",), 3_000_000, 0), (books, "rebuild", ("Zz",), 3_000_000, 0),
             (books, "nested", (), 3_000_000, 0),
             (books, "text", ("Straße ✓ ÉTÉ  a\u2003b \U0001f6dc",), 500_000, 0),
             (numbers, "big", (1290,), 3_000_000, 0), (numbers, "big", (5,), 3_000_000, 0),
             (numbers, "money", ("10.5", "3"), 500_000, 0),
             (numbers, "money", ("-7", "0.000000000000000003"), 500_000, 0),
             (numbers, "money", ("1", "0"), 500_000, 0), (numbers, "collide", (10,), 500_000, 0),
             (numbers, "collide", (70,), 500_000, 0), (failures, "\U0001f6dc", (), 500_000, 0),
             (failures, "fail", (12, books), 500_000, 77)]
    calls += [(failures, "fail", (kind, books), 2_000_000, 5) for kind in range(12)]
    return calls


REFUSED_SOURCES = ["type X = int\n", '@export\ndef f():\n    return f"{"a"}"\n', "def f[T]():\n    pass\n",
                   "ab\u0300c = 1\n", "@export\ndef f(:\n"]


def _deploys(key: PrivateKey, nonce: int) -> list[Transaction]:
    return [deploy(key, CHAIN, nonce, BOOKS, (300,), 0, 5_000_000),
            deploy(key, CHAIN, nonce + 1, NUMBERS, (), 0, 2_000_000),
            deploy(key, CHAIN, nonce + 2, FAILURES, (), 1000, 2_000_000)]


def _staking_txs(height: int, stakers: list[PrivateKey]) -> list[Transaction]:
    """Two small validators join (the first validator keeps 2/3 and signs every commit
    alone), one leaves in part, the other double-signs and is slashed, and a refused unbond."""
    a, b = stakers
    if height == 2:
        return [bond(a, CHAIN, 0, 2), bond(b, CHAIN, 0, 2)]
    if height == 6:
        return [unbond(a, CHAIN, 1, 1), unbond(a, CHAIN, 2, 5)]  # the second asks for too much
    if height == 7:
        votes = [SignedVote(Vote(PREVOTE, 5, 0, value, b.address), sign_vote(b, CHAIN, PREVOTE, 5, 0, value))
                 for value in (bytes(32), b"\x01" * 32)]
        return [submit_evidence(a, CHAIN, 3, evidence_encode(DuplicateVoteEvidence.of(*votes)))]
    return []


def run() -> str:
    keys = [PrivateKey.from_label(f"det {i}") for i in range(12)]
    vkey = PrivateKey.from_label("det validator")
    author = PrivateKey.from_label("det contract author")
    stakers = [PrivateKey.from_label(f"det staker {i}") for i in range(2)]
    # unequal balances, two accounts with little money so some txs are unpayable
    accounts = tuple(sorted([(k.address, 10**12 + i * 7919 if i < 10 else 30_000) for i, k in enumerate(keys)]
                            + [(author.address, 10**13)] + [(k.address, 10**9) for k in stakers]))
    g = Genesis(CHAIN, GENESIS_MS, ChainParams(), ValidatorSet((Validator(vkey.public_key, 10),)), accounts)
    digest = hash_bytes(g.encode())
    books, numbers, failures = (contract_address(author.address, n) for n in range(3))
    pending = contract_calls(books, numbers, failures)
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as d2:
        store, replica_store = Store(Path(d)), Store(Path(d2))
        initial, root, nodes = g.initial_state()
        for st in (store, replica_store):
            st.init_genesis(b"{}", g.header(root), initial, nodes)
        chain = Chain(store, CHAIN, g.params)
        replica = Chain(replica_store, CHAIN, g.params)
        nonces = [0] * len(keys)
        last_commit = None
        for height in range(1, 21):
            author_nonce = chain.account(author.address).nonce
            if height == 1:
                contract_txs = _deploys(author, author_nonce)
            else:  # two calls a block, in order
                contract_txs = [call(author, CHAIN, author_nonce + i, c, fn, args, value, gas)
                                for i, (c, fn, args, gas, value) in enumerate(pending[:2])]
                pending = pending[2:]
            cands = []
            for j in range(40):
                s = (height * 7 + j * 3) % len(keys)
                r = (s + 1 + j % 5) % len(keys)
                amount = (height * 1_000_003 + j * 97) % 10**9
                if j % 13 == 0:  # a wrong nonce now and then: must be skipped
                    cands.append(transfer(keys[s], CHAIN, nonces[s] + 5, keys[r].address, amount))
                    continue
                cands.append(transfer(keys[s], CHAIN, nonces[s], keys[r].address, amount, gas_price=1 + j % 3))
                nonces[s] += 1
            prop = chain.build_block(contract_txs + _staking_txs(height, stakers) + cands, vkey.address, g.genesis_time_ms + height * 1000,
                                     last_commit)
            assert {t.hash for t in contract_txs + _staking_txs(height, stakers)} <= {t.hash for t in prop.block.txs}, \
                prop.rejected
            commit = make_commit([vkey], CHAIN, height, 0, prop.block.hash)
            chain.commit_block(prop.block, commit, prop.output)
            again = replica.execute_block(prop.block)
            assert (again.state_root, again.receipts_root) == (prop.output.state_root, prop.output.receipts_root)
            replica.commit_block(prop.block, commit, again)
            last_commit = commit
            nonces = [chain.account(k.address).nonce for k in keys]
            if height in (2, 6, 7, 20):  # the staking history, in the digest and checked here
                with store.read() as r:
                    st = State(r.state)
                    table = {v.address: v.stake for v in staking.bonded(st)}
                    digest = hash_bytes(digest + encode([staking.validator_set(st, i).hash for i in range(3)]))
                want = {2: {vkey.address: 10, stakers[0].address: 2, stakers[1].address: 2},
                        6: {vkey.address: 10, stakers[0].address: 1, stakers[1].address: 2},
                        7: {vkey.address: 10, stakers[0].address: 1}, 20: {vkey.address: 10, stakers[0].address: 1}}
                assert table == want[height], (height, table)
            digest = hash_bytes(digest + encode_block(prop.block) + encode([r.to_wire() for r in prop.output.receipts])
                                + prop.output.state_root)
        assert not pending
        store.close()
        replica_store.close()
    return digest.hex()


def run_contracts() -> list[str]:
    """The contract transactions, one per block, through ledger.transition on a dict
    state: a line per receipt (status, gas, error, and the hash of its encoding) and the
    final state root."""
    author = PrivateKey.from_label("det contract author")
    txs = _deploys(author, 0)
    books, numbers, failures = (contract_address(author.address, n) for n in range(3))
    txs += [call(author, CHAIN, 3 + i, c, fn, args, value, gas)
            for i, (c, fn, args, gas, value) in enumerate(contract_calls(books, numbers, failures))]
    # sources that CPython 3.11 and 3.12+ refuse in different words: the receipts must agree
    txs += [deploy(author, CHAIN, len(txs) + i, src, (), 0, 20_000_000)
            for i, src in enumerate(REFUSED_SOURCES)]
    return replay(txs, {author.address: 10**15})


def replay(txs: list[Transaction], balances: dict[bytes, int]) -> list[str]:
    """`txs`, one per block, from a state holding only `balances`: a line per receipt and
    the final state root (tests/host_scenario.py replays its own transactions so too)."""
    state: dict[bytes, bytes] = {}

    def apply(s: State) -> None:
        for k, v in changes(s).items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v

    s = State(state.get)
    for address, balance in balances.items():
        set_account(s, address, Account(balance, 0))
    apply(s)
    lines = []
    for height, tx in enumerate(txs, 1):
        s = State(state.get)
        env = BlockEnv(CHAIN, height, GENESIS_MS + height * 1000, b"\x42" * 20, ChainParams())
        r = process_transaction(s, env, tx)
        apply(s)
        lines.append(f"{height} status={r.status} gas={r.gas_used} error={ascii(r.error)} failure={ascii(r.failure)} "
                     f"receipt={hash_bytes(encode(r.to_wire())).hex()}")
    lines.append(f"root={root_from_items(state).hex()}")
    return lines


if __name__ == "__main__":
    print("\n".join(run_contracts()) if sys.argv[1:] == ["contracts"] else run())
