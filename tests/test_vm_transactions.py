"""Contract transactions: deploy and call, through gradchain.testing.TestChain and through
ledger.transition.process_transaction directly (with a gas price and a proposer, to
see who pays what).  A failed run rolls back everything it did (its storage writes,
nested calls' writes, transfer() moves, the value sent), yet still charges gas to the
sender, bumps the nonce and pays the proposer.
"""
from __future__ import annotations

import pytest

from ledger.genesis import devnet_keys
from ledger import tx as txs
from ledger.block import STATUS_FAILED, STATUS_SUCCESS, Receipt, failure_text
from ledger.contracts import read_only_call
from ledger.keys import PrivateKey
from ledger.state import Account, State, account_key, get_account, get_code
from vm import gas
from gradchain import ContractFailed, Reverted, TestChain
from gradchain.testing import CHAIN_ID, FUNDS
from vm.codec import decode_value
from vm.decimals import Decimal

T0 = 1_750_000_000_000
GAS = 5_000_000


class Ledger(TestChain):
    """TestChain with a gas price and a proposer of its own, to see who pays what."""

    def __init__(self, gas_price: int = 3):
        super().__init__(accounts=3, time_ms=T0)
        self.keys = self.accounts
        self.gas_price = gas_price
        self.proposer = b"\x42" * 20

    def account(self, address: bytes) -> Account:
        return get_account(self._view(), address)

    def deploy_tx(self, key: PrivateKey, source: str, args: tuple = (), value: int = 0, gas: int = GAS) -> Receipt:
        nonce = self.account(key.address).nonce
        return self.send(txs.deploy(key, CHAIN_ID, nonce, source, args, value, gas, self.gas_price))

    def call_tx(self, key: PrivateKey, contract: bytes, fn: str, args: tuple = (), value: int = 0,
                gas: int = GAS) -> Receipt:
        nonce = self.account(key.address).nonce
        return self.send(txs.call(key, CHAIN_ID, nonce, contract, fn, args, value, gas, self.gas_price))


@pytest.fixture
def chain() -> TestChain:
    return TestChain()


# ---- deploy ---------------------------------------------------------------------------------

PLAIN = "@export\ndef hello(name):\n    return 'hi ' + name\n"

WITH_CONSTRUCTOR = """
@constructor
def init(owner, limit: int):
    storage["owner"] = owner
    storage["limit"] = limit
    storage["paid"] = ctx.value
    storage["deployer"] = ctx.sender

@export
def get(key):
    return storage.get(key)
"""


def test_deploy_without_a_constructor(chain):
    alice = chain.accounts[0]
    nonce = get_account(chain._view(), alice.address).nonce
    c = chain.deploy(PLAIN, sender=alice)
    assert c.address == txs.contract_address(alice.address, nonce)
    assert decode_value(chain.last_receipt.output, 64) == c.address
    assert chain.code(c.address) == PLAIN
    assert c.view.hello("bob") == "hi bob"
    assert c.hello("eve") == "hi eve"


def test_deploy_runs_the_constructor_with_its_arguments_and_value(chain):
    alice, bob = chain.accounts[:2]
    c = chain.deploy(WITH_CONSTRUCTOR, bob.address, 50, sender=alice, value=1234)
    assert [c.view.get(k) for k in ("owner", "limit", "paid", "deployer")] == [bob.address, 50, 1234, alice.address]
    assert chain.balance(c.address) == 1234


def test_the_constructor_cannot_be_called_after_deploy(chain):
    c = chain.deploy(WITH_CONSTRUCTOR, b"o", 1)
    with pytest.raises(ContractFailed) as e:
        c.init(b"x", 2)
    assert e.value.code == "not_found"
    assert c.view.get("owner") == b"o"


def test_deploy_arguments_must_match(chain):
    alice = chain.accounts[0]
    for source, args, message in [
        (PLAIN, (1,), "invalid_arguments: the contract has no @constructor to take arguments"),
        (WITH_CONSTRUCTOR, (b"o",), "invalid_arguments: the arguments do not match the function's parameters "
                                    "(in init, line 3)"),
        (WITH_CONSTRUCTOR, (b"o", "5"), "invalid_arguments: argument 'limit' must be int, not str (in init, line 3)"),
    ]:
        nonce = get_account(chain._view(), alice.address).nonce
        with pytest.raises(ContractFailed) as e:
            chain.deploy(source, *args, sender=alice)
        assert (e.value.code, str(e.value)) == ("invalid_arguments", message)
        assert chain.code(txs.contract_address(alice.address, nonce)) is None


FAILING_CONSTRUCTOR = """
@constructor
def init(fail):
    storage["written"] = 1
    emit("Born", ok=True)
    transfer(ctx.sender, 10)
    require(not fail, "constructor says no")

@export
def get():
    return storage.get("written")
"""


def test_a_failed_constructor_leaves_no_code_storage_or_balance(chain):
    alice = chain.accounts[0]
    nonce = get_account(chain._view(), alice.address).nonce
    address = txs.contract_address(alice.address, nonce)
    before = chain.balance(alice.address)
    with pytest.raises(Reverted) as e:
        chain.deploy(FAILING_CONSTRUCTOR, True, sender=alice, value=500)
    r = chain.last_receipt
    assert r.status == STATUS_FAILED
    assert r.failure == ("revert", address, "init", 7)
    assert r.events == () and r.output is None
    assert chain.code(address) is None
    assert chain.storage(address, "written") is None
    assert chain.balance(address) == 0
    assert chain.balance(alice.address) == before - e.value.gas_used  # gas only: the value came back
    assert get_account(chain._view(), alice.address).nonce == nonce + 1
    # the next deploy by the same sender gets the next address, and its constructor works
    c = chain.deploy(FAILING_CONSTRUCTOR, False, sender=alice, value=500)
    assert c.address == txs.contract_address(alice.address, nonce + 1) != address
    assert c.view.get() == 1
    assert chain.balance(c.address) == 490
    assert [ev.name for ev in chain.events] == ["Born"]


def test_invalid_source_is_a_failed_deploy(chain):
    alice = chain.accounts[0]
    nonce = get_account(chain._view(), alice.address).nonce
    with pytest.raises(ContractFailed) as e:
        chain.deploy("@export\ndef f():\n    import os\n", sender=alice)
    assert e.value.code == "invalid_contract"
    assert "line 3, column 5: import is not allowed" in e.value.message
    assert chain.code(txs.contract_address(alice.address, nonce)) is None


def test_contract_addresses_are_deterministic():
    a, b = devnet_keys(2)
    assert txs.contract_address(a.address, 0) == txs.contract_address(a.address, 0)
    assert len({txs.contract_address(k.address, n) for k in (a, b) for n in range(3)}) == 6
    one, two = TestChain(), TestChain()
    assert one.deploy(PLAIN).address == two.deploy(PLAIN).address == txs.contract_address(one.accounts[0].address, 0)


# ---- a failed call rolls back everything but the fee and the nonce ----------------------------

BANK = """
@export
def put(key, value):
    storage[key] = value
    emit("Put", key=key)

@export
def fail():
    storage["bank-fail"] = 1
    require(False, "bank refuses")
"""

ACTOR = """
@export
def act(kind, bank, to):
    storage["mine"] = kind
    call(bank, "put", "k", kind)
    transfer(to, 7)
    emit("Did", kind=kind)
    print("about to", kind)
    if kind == "revert":
        require(False, "no")
    if kind == "out_of_gas":
        n = 0
        while True:
            n += 1
    if kind == "limit_exceeded":
        x = "a" * 10 ** 7
    if kind == "runtime_error":
        x = {}["missing"]
    if kind == "nested":
        call(bank, "fail")
    return ctx.value
"""


@pytest.mark.parametrize("kind, code", [("revert", "revert"), ("out_of_gas", "out_of_gas"),
                                        ("limit_exceeded", "limit_exceeded"), ("runtime_error", "runtime_error"),
                                        ("nested", "revert")])
def test_a_failed_call_rolls_back_every_change_but_charges_gas(kind, code):
    led = Ledger(gas_price=3)
    alice, bob = led.keys[:2]
    bank = decode_value(led.deploy_tx(alice, BANK).output, 64)
    actor = decode_value(led.deploy_tx(alice, ACTOR, value=100).output, 64)
    state_before = dict(led.state)
    sender, proposer = led.account(alice.address), led.account(led.proposer)
    r = led.call_tx(alice, actor, "act", (kind, bank, bob.address), value=11, gas=300_000)
    assert r.status == STATUS_FAILED
    assert r.failure[0] == code
    assert failure_text(r).startswith(code + ": ")
    assert r.events == () and r.output is None
    assert r.logs == (f"about to {kind}",)  # print() lines survive a failure: they help to debug it
    if code == "out_of_gas":
        assert r.gas_used == 300_000
    # nothing changed but the sender's account (fee, nonce) and the proposer's (fee)
    changed = {k for k in set(state_before) | set(led.state) if state_before.get(k) != led.state.get(k)}
    assert changed == {account_key(alice.address), account_key(led.proposer)}
    assert led.storage(actor, "mine") is None and led.storage(bank, "k") is None
    assert led.storage(bank, "bank-fail") is None
    assert led.account(actor).balance == 100 and led.account(bob.address).balance == FUNDS
    after = led.account(alice.address)
    assert after.nonce == sender.nonce + 1
    assert after.balance == sender.balance - r.gas_used * 3
    assert led.account(led.proposer).balance == proposer.balance + r.gas_used * 3


def test_the_same_call_succeeds_and_keeps_everything():
    led = Ledger(gas_price=2)
    alice, bob = led.keys[:2]
    bank = decode_value(led.deploy_tx(alice, BANK).output, 64)
    actor = decode_value(led.deploy_tx(alice, ACTOR, value=100).output, 64)
    sender, proposer = led.account(alice.address), led.account(led.proposer)
    r = led.call_tx(alice, actor, "act", ("fine", bank, bob.address), value=11)
    assert r.status == STATUS_SUCCESS, r.error
    assert decode_value(r.output, 64) == 11
    assert led.storage(actor, "mine") == "fine" and led.storage(bank, "k") == "fine"
    assert led.account(actor).balance == 100 + 11 - 7
    assert led.account(bob.address).balance == FUNDS + 7
    assert [(c, name, decode_value(d, 1024)) for c, name, d in r.events] == [
        (bank, "Put", {"key": "k"}), (actor, "Did", {"kind": "fine"})]
    assert led.account(alice.address).balance == sender.balance - 11 - r.gas_used * 2
    assert led.account(alice.address).nonce == sender.nonce + 1
    assert led.account(led.proposer).balance == proposer.balance + r.gas_used * 2


def test_a_failed_deploy_through_the_transition_charges_gas_and_bumps_the_nonce():
    led = Ledger(gas_price=5)
    alice = led.keys[0]
    sender = led.account(alice.address)
    r = led.deploy_tx(alice, FAILING_CONSTRUCTOR, (True,), value=1000)
    assert r.status == STATUS_FAILED and r.failure[0] == "revert"
    address = txs.contract_address(alice.address, sender.nonce)
    assert get_code(State(led.state.get), address) is None
    assert led.account(address) == Account(0, 0)
    assert led.account(alice.address) == Account(sender.balance - r.gas_used * 5, sender.nonce + 1)
    assert led.account(led.proposer).balance == r.gas_used * 5


# ---- value, transfer() and ctx ------------------------------------------------------------------

WALLET = """
@export
def deposit():
    storage["last"] = ctx.value
    return ctx.value

@export
def pay(to, amount):
    transfer(to, amount)

@export
def info(other):
    mine = [ctx.sender, ctx.caller, ctx.this, ctx.value, ctx.block_height, ctx.block_time, ctx.chain_id]
    if other is None:
        return mine
    return [mine, call(other, "info", None)]
"""


def test_value_sent_with_a_call_lands_in_the_contract(chain):
    w = chain.deploy(WALLET)
    assert w.deposit(value=250) == 250
    assert chain.balance(w.address) == 250
    assert w.storage("last") == 250
    assert w.deposit() == 0
    assert chain.balance(w.address) == 250


def test_transfer_moves_coins_from_the_contract(chain):
    w = chain.deploy(WALLET, value=1000)
    bob = chain.accounts[1].address
    before = chain.balance(bob)
    w.pay(bob, 600)
    assert chain.balance(bob) == before + 600
    assert chain.balance(w.address) == 400
    with pytest.raises(ContractFailed) as e:
        w.pay(bob, 401)
    assert (e.value.code, e.value.function, e.value.line) == ("runtime_error", "pay", 9)
    assert str(e.value) == ("runtime_error: insufficient balance: the contract holds 400, cannot transfer 401 "
                               "(in pay, line 9)")
    assert chain.balance(w.address) == 400 and chain.balance(bob) == before + 600
    for bad in (-1, "5"):
        with pytest.raises(ContractFailed) as e:
            w.pay(bob, bad)
        assert "transfer()'s amount must be an int >= 0" in e.value.message
    with pytest.raises(ContractFailed) as e:
        w.pay(b"short", 1)
    assert "transfer()'s recipient must be a 20-byte address" in e.value.message


def test_ctx_fields_across_a_cross_contract_call(chain):
    alice = chain.accounts[0]
    a, b = chain.deploy(WALLET), chain.deploy(WALLET)
    outer, inner = a.info(b.address, sender=alice, value=9)
    assert outer == [alice.address, alice.address, a.address, 9, chain.height, chain.time_ms, "gradchain-test"]
    assert inner == [alice.address, a.address, b.address, 0, chain.height, chain.time_ms, "gradchain-test"]
    chain.travel(60_000)
    view = a.view.info(None, sender=chain.accounts[2].address)
    assert view[:3] == [chain.accounts[2].address, chain.accounts[2].address, a.address]
    assert view[4:6] == [chain.height, chain.time_ms]


# ---- events and print ---------------------------------------------------------------------------

EMITTER = """
@export
def fire(other, n):
    emit("First", n=n)
    if other is not None:
        call(other, "fire", None, n + 1)
    emit("Last", n=n, data=[1, "two", b"3", (4,), {"five": Decimal("5.5")}])
    print("fired", n)
"""


def test_events_are_in_order_with_their_contract(chain):
    a, b = chain.deploy(EMITTER), chain.deploy(EMITTER)
    a.fire(b.address, 1)
    r = chain.last_receipt
    got = [(c, name, decode_value(d, 1 << 16)) for c, name, d in r.events]
    rich = [1, "two", b"3", (4,), {"five": Decimal("5.5")}]
    assert got == [(a.address, "First", {"n": 1}), (b.address, "First", {"n": 2}),
                   (b.address, "Last", {"n": 2, "data": rich}), (a.address, "Last", {"n": 1, "data": rich})]
    assert [(e.contract, e.name, e.data, e.height) for e in chain.events] == [
        (c, n, d, chain.height) for c, n, d in got]
    assert r.logs == ("fired 2", "fired 1")


def test_a_failed_transaction_has_no_events(chain):
    a = chain.deploy(EMITTER)
    with pytest.raises(ContractFailed):
        a.fire(b"\x01" * 20, 1)  # no contract there: not_found after the first event
    assert chain.last_receipt.failure[0] == "not_found"
    assert chain.last_receipt.events == ()
    assert chain.events == []


# ---- cross-contract calls -----------------------------------------------------------------------

CALLER = """
@export
def share(other):
    mine = [1, [2]]
    got = call(other, "mutate", mine)
    got[1].append("caller")
    return [mine, got]

@export
def keep(other):
    got = call(other, "stored")
    got.append("changed by caller")
    return [got, call(other, "stored")]
"""

CALLEE = """
@export
def mutate(value):
    value.append("callee")
    value[1].append("callee")
    return value

@export
def stored():
    if "list" not in storage:
        storage["list"] = [0]
    return storage["list"]
"""


def test_call_arguments_and_results_are_copies(chain):
    a, b = chain.deploy(CALLER), chain.deploy(CALLEE)
    mine, got = a.share(b.address)
    assert mine == [1, [2]]
    assert got == [1, [2, "callee", "caller"], "callee"]
    first, again = a.keep(b.address)
    assert first == [0, "changed by caller"] and again == [0]


REENTER = """
@export
def ping(other):
    return call(other, "pong", ctx.this)

@export
def hello():
    return "hello"

@export
def myself():
    return call(ctx.this, "hello")
"""

BOUNCE = """
@export
def pong(back):
    storage["was-called"] = True
    return call(back, "hello")
"""


def test_reentrancy_is_refused(chain):
    a, b = chain.deploy(REENTER), chain.deploy(BOUNCE)
    with pytest.raises(ContractFailed) as e:
        a.ping(b.address)  # a -> b -> a
    assert (e.value.code, e.value.contract, e.value.function, e.value.line) == ("reentrancy", b.address, "pong", 5)
    assert str(e.value) == (f"reentrancy: contract 0x{a.address.hex()} is already running: "
                               "re-entering it is not allowed (in pong, line 5)")
    assert b.storage("was-called") is None
    with pytest.raises(ContractFailed) as e:
        a.myself()  # a -> a
    assert (e.value.code, e.value.function) == ("reentrancy", "myself")
    assert a.hello() == "hello"  # a plain call is fine


DEEP = """
def rec(n, other, m):
    if n == 0:
        if other is None:
            return 0
        return call(other, "go", m, None, 0)
    return rec(n - 1, other, m)

@export
def go(n, other, m):
    return rec(n, other, m)
"""


def test_the_call_depth_limit_counts_across_contracts(chain):
    a, b = chain.deploy(DEEP), chain.deploy(DEEP)
    # depth in use at the bottom: go + (n + 1) rec in a, go + (m + 1) rec in b = n + m + 4
    assert a.go(30, b.address, 30) == 0
    with pytest.raises(ContractFailed) as e:
        a.go(30, b.address, 31)
    assert (e.value.code, e.value.contract) == ("limit_exceeded", b.address)
    assert str(e.value).startswith("limit_exceeded: call depth over 64")
    assert b.go(60, None, 0) == 0


@pytest.mark.parametrize("fn, args, code, message", [
    ("call_missing", (b"\x07" * 20,), "not_found", "no contract at 0x" + "07" * 20),
    ("call_fn", ("nope",), "not_found", "exports no function 'nope'"),
    ("call_fn", ("init",), "not_found", "exports no function 'init'"),
    ("call_args", ((1, 2, 3),), "invalid_arguments", "the arguments do not match the function's parameters"),
    ("call_args", (("x",),), "invalid_arguments", "argument 'n' must be int, not str"),
])
def test_calling_what_is_not_there(chain, fn, args, code, message):
    target = chain.deploy("@constructor\ndef init():\n    pass\n\n@export\ndef one(n: int):\n    return n\n")
    c = chain.deploy(f"""
@export
def call_missing(address):
    return call(address, "one", 1)

@export
def call_fn(name):
    return call(ctx.this if name == "self" else {target.address!r}, name, 1)

@export
def call_args(args):
    if len(args) == 1:
        return call({target.address!r}, "one", args[0])
    return call({target.address!r}, "one", args[0], args[1], args[2])
""")
    with pytest.raises(ContractFailed) as e:
        chain.transact(c, fn, *args)
    assert e.value.code == code
    assert message in e.value.message


def test_transactions_to_what_is_not_there(chain):
    c = chain.deploy("@export\ndef one(n: int):\n    return n\n")
    nowhere = b"\x09" * 20
    for contract, fn, args, code in [(nowhere, "one", (1,), "not_found"), (c.address, "two", (1,), "not_found"),
                                     (c.address, "one", (), "invalid_arguments"),
                                     (c.address, "one", (1, 2), "invalid_arguments"),
                                     (c.address, "one", (True,), "invalid_arguments")]:
        with pytest.raises(ContractFailed) as e:
            chain.transact(contract, fn, *args)
        assert e.value.code == code, (fn, args)
        with pytest.raises(ContractFailed) as e:
            chain.view(contract, fn, *args)
        assert e.value.code == code


def test_value_sent_to_an_account_without_code_is_returned(chain):
    nowhere = b"\x0a" * 20
    before = chain.balance(chain.accounts[0].address)
    with pytest.raises(ContractFailed) as e:
        chain.transact(nowhere, "f", value=1000)
    assert e.value.code == "not_found"
    assert chain.balance(nowhere) == 0
    assert chain.balance(chain.accounts[0].address) == before - e.value.gas_used


# ---- storage ---------------------------------------------------------------------------------------

STORE = """
@export
def write(key, value):
    storage[key] = value

@export
def read(key):
    return [key in storage, storage.get(key), storage.get(key, "default")]

@export
def remove(key):
    del storage[key]

@export
def bump(key):
    storage[key] += 1
    return storage[key]

@export
def load(key):
    return storage[key]
"""


def test_storage_round_trips_every_value_type(chain):
    s = chain.deploy(STORE)
    values = [0, -1, 2**4000, True, None, "text é", b"\x00\xff", [1, [2]], (1, (2, "x")), {"a": {"b": [1]}},
              Decimal("-1.5")]
    keys = ["k", 5, b"b", ("balance", b"\x01" * 20), (1, (2, 3)), True, None]
    for i, v in enumerate(values):
        key = keys[i % len(keys)]
        s.write(key, v)
        assert s.view.read(key) == [True, v, v]
        assert s.storage(key) == v
    s.write("n", 1)
    assert s.bump("n") == 2
    s.remove("n")
    assert s.view.read("n") == [False, None, "default"]
    with pytest.raises(ContractFailed) as e:
        s.load("n")
    assert str(e.value) == "runtime_error: key not found in storage (in load, line 21)"
    with pytest.raises(ContractFailed) as e:
        s.write([1], 1)
    assert e.value.code == "runtime_error"


def test_storage_is_per_contract(chain):
    a, b = chain.deploy(STORE), chain.deploy(STORE)
    a.write("k", "a's")
    assert b.view.read("k") == [False, None, "default"]
    assert a.view.read("k")[1] == "a's"


# ---- read-only calls -------------------------------------------------------------------------------

def test_read_only_calls_change_nothing(chain):
    w, s = chain.deploy(WALLET, value=100), chain.deploy(STORE)
    e = chain.deploy(EMITTER)
    committed = dict(chain.state)
    height = chain.height
    state = State(chain.state.get)
    alice = chain.accounts[0].address
    for contract, fn, args, value in [(s.address, "write", ["k", [1, 2]], 0), (w.address, "pay", [alice, 60], 0),
                                      (w.address, "deposit", [], 70), (e.address, "fire", [None, 1], 0)]:
        out = read_only_call(state, "gradchain-test", chain.height, chain.time_ms, alice, contract, fn, args,
                             1_000_000, value)
        assert out.error is None, out.error
    assert out.events and out.logs == ["fired 1"]  # it ran, and reported what it did
    assert chain.state == committed and chain.height == height
    assert s.view.write("k", "v") is None
    assert s.view.read("k") == [False, None, "default"]
    assert w.view.deposit() == 0
    assert chain.state == committed and chain.height == height
    assert get_account(State(chain.state.get), alice).nonce == get_account(State(committed.get), alice).nonce


def test_gas_profile_gives_each_source_line_the_gas_it_spent():
    chain = TestChain()
    c = chain.deploy('@export\ndef work(n: int) -> int:\n    total = 0\n    for i in range(n):\n'
                     '        total += i\n    storage["t"] = total\n    return total\n')
    with chain.gas_profile() as prof:
        c.work(10)
        c.work(20)
    rows = {(fn, line): spent for fn, line, text, spent in prof.by_line()}
    # the loop body's line: 30 iterations at ITERATION + 4 nodes each
    assert rows[("work", 5)] == 30 * (gas.ITERATION + 4 * gas.NODE)
    # the storage write is the most expensive line of all
    assert prof.by_line()[0][:3] == ("work", 6, 'storage["t"] = total')
    # every unit of the calls' own execution is on some line; intrinsic gas is not
    intrinsic = sum(r.gas_used for r in chain.receipts[-2:]) - sum(rows.values())
    assert intrinsic == 2 * (gas.CALL_TX + gas.TX_DATA_PER_BYTE * (len("work") + 2) + 2 * gas.TX_ARG_PER_UNIT)
    assert "storage[\"t\"] = total" in prof.table()
    with chain.gas_profile() as idle:
        pass
    assert idle.by_line() == []


def test_the_harness_refuses_what_a_node_refuses_with_the_sdks_tx_rejected(chain):
    """One exception tree: a refused transaction raises gradchain.TxRejected, with the code,
    message and reason a node answers (net/rpc/errors.py), and makes no block."""
    from gradchain import TxRejected
    from ledger import errors
    from net.rpc.errors import rejected

    alice, bob = chain.accounts[0], chain.accounts[1]
    height, balance = chain.height, chain.balance(alice.address)
    stale = txs.transfer(alice, CHAIN_ID, 5, bob.address, 1)
    with pytest.raises(TxRejected) as e:
        chain.send(stale)
    expected = rejected(errors.NonceTooHigh("nonce 5 is too high: the next nonce of this sender is 0"))
    assert (e.value.code, e.value.message, e.value.data) == (expected.code, expected.message, expected.data)
    assert e.value.reason == "nonce_too_high"
    assert (chain.height, chain.balance(alice.address)) == (height, balance)
    forged = bytearray(txs.transfer(alice, CHAIN_ID, 0, bob.address, 1).raw)
    forged[-1] ^= 1
    with pytest.raises(TxRejected) as e:
        chain.send(txs.decode_transaction(bytes(forged), 1 << 16))
    assert e.value.reason == "bad_signature"
    chain.send(txs.transfer(alice, CHAIN_ID, 0, bob.address, 1))  # the same key goes on at its next nonce
    assert chain.height == height + 1
