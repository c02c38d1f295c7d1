"""The example contracts (examples/) and every example of docs/contracts.md, run through
gradchain.testing.TestChain: what the docs promise is what the VM does, or a test fails.

Revert lines are found by searching the contract's source for the failing require(), so
the tests pin each failure to its exact line without breaking when a file is edited above it.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.tx import INTRINSIC_GAS, TxKind
from vm import gas
from gradchain import ContractFailed, OutOfGas, Reverted, TestChain
from vm.codec import encode_value
from vm.decimals import Decimal

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "contracts.md"

TOKEN = (EXAMPLES / "token.py").read_text()
REGISTRY = (EXAMPLES / "registry.py").read_text()
ESCROW = (EXAMPLES / "escrow.py").read_text()

SUPPLY = 1_000 * 10**18


def line(source: str, text: str, function: str | None = None) -> int:
    """Where a failure at the one line of `source` (or of its module function `function`)
    that contains `text` is reported: the first line of the statement holding it."""
    lines = source.split("\n")
    tree = ast.parse(source)
    first, last = 1, len(lines)
    if function is not None:
        [fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
        first, last = fn.lineno, fn.end_lineno
    hits = [i for i in range(first, last + 1) if text in lines[i - 1]]
    assert len(hits) == 1, f"{text!r} is on lines {hits}"
    around = [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and n.lineno <= hits[0] <= n.end_lineno]
    return max(around, key=lambda n: n.lineno).lineno


class reverts:
    """`with reverts(SOURCE, "fn", "message"):` expects require(..., "message") inside
    function fn of SOURCE to fail: the exact receipt message, function and line.  A
    message the contract computes is found by `text`, a piece of its require() line."""

    def __init__(self, source: str, function: str, message: str, text: str | None = None):
        self.function, self.message = function, message
        self.line = line(source, text or f'"{message}"', function)
        self.raises = pytest.raises(Reverted)

    def __enter__(self):
        self.info = self.raises.__enter__()
        return self.info

    def __exit__(self, *exc) -> bool:
        if not self.raises.__exit__(*exc):
            return False  # another exception: let it through as it is
        e = self.info.value
        assert e.code == "revert"
        assert str(e) == f"revert: {self.message} (in {self.function}, line {self.line})"
        assert (e.function, e.line) == (self.function, self.line)
        return True


def balances(chain: TestChain, *addresses: bytes) -> list[int]:
    return [chain.balance(a) for a in addresses]


# ---- token ----------------------------------------------------------------------------------

@pytest.fixture
def chain() -> TestChain:
    return TestChain()


@pytest.fixture
def token(chain):
    return chain.deploy(TOKEN, "Grad Token", "GT", SUPPLY)


def test_token_deploy_mints_the_supply_to_the_deployer(chain, token):
    alice = chain.accounts[0]
    assert token.view.name() == "Grad Token"
    assert token.view.symbol() == "GT"
    assert token.view.decimals() == 18
    assert token.view.total_supply() == SUPPLY
    assert token.view.balance_of(alice.address) == SUPPLY
    assert token.view.balance_of(chain.accounts[1].address) == 0
    [mint] = chain.events
    assert (mint.contract, mint.name, mint.data) == (token.address, "Transfer",
                                                      {"sender": None, "to": alice.address, "amount": SUPPLY})
    assert token.storage("meta") == {"name": "Grad Token", "symbol": "GT", "owner": alice.address}


@pytest.mark.parametrize("args, message", [
    (("", "GT", 1), "name must be 1 to 64 characters"),
    (("x" * 65, "GT", 1), "name must be 1 to 64 characters"),
    (("Grad", "", 1), "symbol must be 1 to 12 characters"),
    (("Grad", "ABCDEFGHIJKLM", 1), "symbol must be 1 to 12 characters"),
    (("Grad", "GT", -1), "supply cannot be negative"),
])
def test_token_constructor_checks(chain, args, message):
    alice = chain.accounts[0]
    before = chain.balance(alice.address)
    with reverts(TOKEN, "init", message) as e:
        chain.deploy(TOKEN, *args)
    # a failed deploy leaves no code behind, yet pays for its gas
    address = e.value.contract
    assert chain.code(address) is None
    assert chain.balance(alice.address) == before - e.value.gas_used


def test_token_constructor_type_checks_its_arguments(chain):
    with pytest.raises(ContractFailed, match="argument 'supply' must be int, not str") as e:
        chain.deploy(TOKEN, "Grad", "GT", "1000")
    assert e.value.code == "invalid_arguments"
    assert (e.value.function, e.value.line) == ("init", line(TOKEN, "def init("))


def test_token_transfer_moves_balances_and_emits(chain, token):
    alice, bob = chain.accounts[:2]
    assert token.transfer_to(bob.address, 250, sender=alice) is True
    assert token.view.balance_of(alice.address) == SUPPLY - 250
    assert token.view.balance_of(bob.address) == 250
    assert token.view.total_supply() == SUPPLY
    assert chain.events[-1].data == {"sender": alice.address, "to": bob.address, "amount": 250}
    assert [(c, name) for c, name, _ in chain.last_receipt.events] == [(token.address, "Transfer")]
    assert 40_000 < chain.last_receipt.gas_used < 80_000
    # bob passes everything on: his balance entry is deleted, not kept as 0
    token.transfer_to(chain.accounts[2].address, 250, sender=bob)
    assert token.storage(("balance", bob.address), "absent") == "absent"
    assert token.view.balance_of(bob.address) == 0


def test_token_transfer_to_self_keeps_the_balance(chain, token):
    alice = chain.accounts[0]
    token.transfer_to(alice.address, 10, sender=alice)
    assert token.view.balance_of(alice.address) == SUPPLY


@pytest.mark.parametrize("to, amount, function, message", [
    (b"\x01" * 19, 1, "check_address", "not a valid address"),
    (None, 0, "move", "amount must be positive"),
    (None, -5, "move", "amount must be positive"),
    (None, SUPPLY + 1, "move", "insufficient balance"),
])
def test_token_transfer_failures(chain, token, to, amount, function, message):
    alice, bob = chain.accounts[:2]
    before = chain.balance(alice.address)
    with reverts(TOKEN, function, message) as e:
        token.transfer_to(to or bob.address, amount, sender=alice)
    # the failed transaction changed nothing but still paid its gas and used its nonce
    assert token.view.balance_of(alice.address) == SUPPLY
    assert token.view.balance_of(bob.address) == 0
    assert chain.balance(alice.address) == before - e.value.gas_used
    r = chain.last_receipt
    assert (r.status, r.events, r.failure) == (0, (), ("revert", token.address, function, e.value.line))
    token.transfer_to(bob.address, 1, sender=alice)  # the next nonce goes through


def test_token_allowances(chain, token):
    alice, bob, carol = chain.accounts[:3]
    assert token.approve(bob.address, 100, sender=alice) is True
    assert chain.events[-1].name == "Approval"
    assert chain.events[-1].data == {"owner": alice.address, "spender": bob.address, "amount": 100}
    assert token.view.allowance(alice.address, bob.address) == 100
    assert token.transfer_from(alice.address, carol.address, 60, sender=bob) is True
    assert token.view.allowance(alice.address, bob.address) == 40
    assert token.view.balance_of(carol.address) == 60
    assert token.view.balance_of(alice.address) == SUPPLY - 60
    assert chain.events[-1].data == {"sender": alice.address, "to": carol.address, "amount": 60}
    with reverts(TOKEN, "transfer_from", "allowance exceeded"):
        token.transfer_from(alice.address, carol.address, 41, sender=bob)
    token.transfer_from(alice.address, carol.address, 40, sender=bob)
    assert token.storage(("allowance", alice.address, bob.address)) is None  # used up: deleted
    with reverts(TOKEN, "transfer_from", "allowance exceeded"):  # carol was never approved
        token.transfer_from(alice.address, carol.address, 1, sender=carol)
    token.approve(bob.address, 7, sender=alice)  # approve replaces
    assert token.view.allowance(alice.address, bob.address) == 7
    token.approve(bob.address, 0, sender=alice)
    assert token.view.allowance(alice.address, bob.address) == 0


def test_token_approve_checks(chain, token):
    alice, bob = chain.accounts[:2]
    with reverts(TOKEN, "approve", "amount cannot be negative"):
        token.approve(bob.address, -1, sender=alice)
    with reverts(TOKEN, "check_address", "not a valid address"):
        token.approve(b"", 1, sender=alice)


def test_token_transfer_from_over_the_owners_balance(chain, token):
    alice, bob, carol = chain.accounts[:3]
    token.transfer_to(bob.address, 5, sender=alice)
    token.approve(carol.address, 10, sender=bob)
    with reverts(TOKEN, "move", "insufficient balance"):
        token.transfer_from(bob.address, carol.address, 6, sender=carol)
    assert token.view.allowance(bob.address, carol.address) == 10


def test_token_mint_is_for_the_owner(chain, token):
    alice, bob = chain.accounts[:2]
    assert token.mint(bob.address, 5, sender=alice) == SUPPLY + 5
    assert token.view.balance_of(bob.address) == 5
    assert chain.events[-1].data == {"sender": None, "to": bob.address, "amount": 5}
    with reverts(TOKEN, "mint", "only the owner can mint"):
        token.mint(bob.address, 5, sender=bob)
    with reverts(TOKEN, "mint", "amount must be positive"):
        token.mint(bob.address, 0, sender=alice)
    with reverts(TOKEN, "check_address", "not a valid address"):
        token.mint(b"\x00" * 21, 1, sender=alice)
    assert token.view.total_supply() == SUPPLY + 5


def test_token_burn(chain, token):
    alice, bob = chain.accounts[:2]
    token.transfer_to(bob.address, 30, sender=alice)
    assert token.burn(10, sender=bob) == SUPPLY - 10
    assert token.view.balance_of(bob.address) == 20
    assert chain.events[-1].data == {"sender": bob.address, "to": None, "amount": 10}
    with reverts(TOKEN, "burn", "amount must be positive"):
        token.burn(0, sender=bob)
    with reverts(TOKEN, "burn", "insufficient balance"):
        token.burn(21, sender=bob)
    assert token.view.total_supply() == SUPPLY - 10


def test_token_private_helpers_and_the_constructor_are_not_callable(chain, token):
    with pytest.raises(ContractFailed, match="exports no function 'mint_to'") as e:
        token.mint_to(chain.accounts[1].address, 10**30)
    assert e.value.code == "not_found"
    with pytest.raises(ContractFailed, match="exports no function 'init'"):
        token.init("x", "y", 1)
    assert token.view.total_supply() == SUPPLY


# ---- registry -------------------------------------------------------------------------------

FEE = 1_000
PERIOD = 31_536_000_000


@pytest.fixture
def registry(chain):
    return chain.deploy(REGISTRY, FEE)


def test_registry_register_and_resolve(chain, registry):
    alice, bob = chain.accounts[:2]
    assert registry.view.fee() == FEE
    assert registry.view.resolve("alice") is None
    before = chain.balance(bob.address)
    expires = registry.register("alice", sender=bob, value=FEE)
    assert expires == chain.time_ms + PERIOD  # the block's time plus one year
    assert registry.view.resolve("alice") == bob.address
    assert registry.view.record("alice") == {"owner": bob.address, "target": bob.address, "expires": expires}
    assert chain.events[-1].name == "Registered"
    assert chain.events[-1].data == {"label": "alice", "owner": bob.address, "expires": expires}
    # bob paid the fee and his gas; the registry holds the fee
    assert chain.balance(bob.address) == before - FEE - chain.last_receipt.gas_used
    assert chain.balance(registry.address) == FEE


def test_registry_refunds_what_is_sent_beyond_the_fee(chain, registry):
    bob = chain.accounts[1]
    before = chain.balance(bob.address)
    registry.register("bob", sender=bob, value=FEE * 5)
    assert chain.balance(bob.address) == before - FEE - chain.last_receipt.gas_used
    assert chain.balance(registry.address) == FEE


def test_registry_fee_too_low_reverts_and_returns_the_value(chain, registry):
    bob = chain.accounts[1]
    before = chain.balance(bob.address)
    with reverts(REGISTRY, "take_fee", "send the fee as the transaction's value: 1000", "str(price)") as e:
        registry.register("bob", sender=bob, value=FEE - 1)
    assert chain.balance(bob.address) == before - e.value.gas_used  # the value came back
    assert chain.balance(registry.address) == 0
    assert registry.view.resolve("bob") is None


@pytest.mark.parametrize("name, message", [
    ("ab", "a name has 3 to 32 characters"),
    ("a" * 33, "a name has 3 to 32 characters"),
    ("Alice", "a name uses only a-z, 0-9 and -"),
    ("al ice", "a name uses only a-z, 0-9 and -"),
    ("alicé", "a name uses only a-z, 0-9 and -"),
    ("-alice", "a name cannot start or end with -"),
    ("alice-", "a name cannot start or end with -"),
])
def test_registry_name_rules(chain, registry, name, message):
    with reverts(REGISTRY, "check_name", message):
        registry.register(name, value=FEE)


def test_registry_valid_names(chain, registry):
    for name in ("abc", "a-b", "0x1", "z" * 32):
        registry.register(name, value=FEE)
        assert registry.view.resolve(name) == chain.accounts[0].address


def test_registry_a_taken_name_cannot_be_registered(chain, registry):
    alice, bob = chain.accounts[:2]
    registry.register("alice", sender=alice, value=FEE)
    with reverts(REGISTRY, "register", "name is taken"):
        registry.register("alice", sender=bob, value=FEE)
    assert registry.view.resolve("alice") == alice.address


def test_registry_names_expire_and_can_be_renewed(chain, registry):
    alice, bob = chain.accounts[:2]
    expires = registry.register("alice", sender=alice, value=FEE)
    chain.travel(PERIOD - 10_000)  # still live: blocks come every second
    assert registry.view.resolve("alice") == alice.address
    assert registry.renew("alice", sender=bob, value=FEE) == expires + PERIOD  # anyone may pay
    assert chain.events[-1].data == {"label": "alice", "expires": expires + PERIOD}
    assert chain.balance(registry.address) == 2 * FEE
    chain.travel(PERIOD)
    assert registry.view.resolve("alice") == alice.address
    chain.travel(PERIOD)
    assert registry.view.resolve("alice") is None
    assert registry.view.record("alice") is None
    with reverts(REGISTRY, "renew", "name is not registered"):
        registry.renew("alice", sender=alice, value=FEE)
    with reverts(REGISTRY, "owned", "name is not registered"):
        registry.set_target("alice", alice.address, sender=alice)
    registry.register("alice", sender=bob, value=FEE)  # expired: anyone may take it
    assert registry.view.resolve("alice") == bob.address


def test_registry_renew_needs_the_fee(chain, registry):
    registry.register("alice", value=FEE)
    registry.set_fee(2 * FEE)
    with reverts(REGISTRY, "take_fee", "send the fee as the transaction's value: 2000", "str(price)"):
        registry.renew("alice", value=FEE)


def test_registry_transfer_name_and_set_target(chain, registry):
    alice, bob, carol = chain.accounts[:3]
    registry.register("alice", sender=alice, value=FEE)
    registry.set_target("alice", carol.address, sender=alice)
    assert chain.events[-1].data == {"label": "alice", "target": carol.address}
    assert registry.view.resolve("alice") == carol.address
    registry.transfer_name("alice", bob.address, sender=alice)
    assert chain.events[-1].name == "Transferred"
    assert chain.events[-1].data == {"label": "alice", "sender": alice.address, "to": bob.address}
    assert registry.view.record("alice")["owner"] == bob.address
    assert registry.view.resolve("alice") == carol.address  # the target stays
    with reverts(REGISTRY, "owned", "only the name's owner can do this"):
        registry.set_target("alice", alice.address, sender=alice)
    with reverts(REGISTRY, "owned", "only the name's owner can do this"):
        registry.transfer_name("alice", alice.address, sender=alice)
    registry.set_target("alice", bob.address, sender=bob)
    assert registry.view.resolve("alice") == bob.address
    with reverts(REGISTRY, "transfer_name", "not a valid address"):
        registry.transfer_name("alice", b"bob", sender=bob)
    with reverts(REGISTRY, "set_target", "not a valid address"):
        registry.set_target("alice", b"", sender=bob)
    with reverts(REGISTRY, "owned", "name is not registered"):
        registry.transfer_name("nobody", bob.address, sender=bob)


def test_registry_owner_sets_the_fee_and_withdraws(chain, registry):
    owner, bob = chain.accounts[:2]
    registry.register("bob", sender=bob, value=FEE)
    registry.register("bob2", sender=bob, value=FEE)
    with reverts(REGISTRY, "set_fee", "only the registry owner can do this"):
        registry.set_fee(1, sender=bob)
    with reverts(REGISTRY, "set_fee", "fee cannot be negative"):
        registry.set_fee(-1, sender=owner)
    registry.set_fee(5, sender=owner)
    assert registry.view.fee() == 5
    with reverts(REGISTRY, "withdraw", "only the registry owner can do this"):
        registry.withdraw(1, sender=bob)
    with reverts(REGISTRY, "withdraw", "amount must be positive"):
        registry.withdraw(0, sender=owner)
    before = chain.balance(owner.address)
    registry.withdraw(1_500, sender=owner)
    assert chain.balance(owner.address) == before + 1_500 - chain.last_receipt.gas_used
    assert chain.balance(registry.address) == 500
    assert chain.events[-1].data == {"to": owner.address, "amount": 1_500}
    # more than the registry holds: transfer() fails the whole transaction
    with pytest.raises(ContractFailed) as e:
        registry.withdraw(501, sender=owner)
    assert e.value.code == "runtime_error"
    assert str(e.value) == ("runtime_error: insufficient balance: the contract holds 500, cannot transfer 501 "
                               f"(in withdraw, line {line(REGISTRY, 'transfer(owner, amount)')})")
    assert chain.balance(registry.address) == 500


def test_registry_constructor_checks(chain):
    with reverts(REGISTRY, "init", "fee cannot be negative"):
        chain.deploy(REGISTRY, -1)


# ---- escrow ---------------------------------------------------------------------------------

PRICE = 10_000
WINDOW = 1_209_600_000


@pytest.fixture
def people(chain):
    """buyer, seller, arbiter, stranger"""
    return chain.accounts[1:5]


@pytest.fixture
def escrow(chain, people):
    return chain.deploy(ESCROW, people[2].address, Decimal("0.015"))


def open_deal(escrow, people, price: int = PRICE) -> int:
    buyer, seller = people[:2]
    return escrow.open_deal(seller.address, sender=buyer, value=price)


def test_escrow_open_holds_the_payment(chain, escrow, people):
    buyer, seller = people[:2]
    before = chain.balance(buyer.address)
    assert open_deal(escrow, people) == 0
    deadline = chain.time_ms + WINDOW
    assert chain.balance(buyer.address) == before - PRICE - chain.last_receipt.gas_used
    assert chain.balance(escrow.address) == PRICE
    assert escrow.view.deal(0) == {"buyer": buyer.address, "seller": seller.address, "amount": PRICE,
                                   "state": "open", "deadline": deadline}
    assert chain.events[-1].name == "Opened"
    assert chain.events[-1].data == {"deal": 0, "buyer": buyer.address, "seller": seller.address,
                                     "amount": PRICE, "deadline": deadline}
    assert open_deal(escrow, people, 5) == 1  # ids count up
    assert chain.balance(escrow.address) == PRICE + 5


@pytest.mark.parametrize("seller, value, message", [
    (b"\x05" * 20, 0, "send the price as the transaction's value"),
    (b"\x05" * 10, PRICE, "not a valid address"),
    (None, PRICE, "buyer and seller must differ"),
])
def test_escrow_open_checks(chain, escrow, people, seller, value, message):
    buyer = people[0]
    with reverts(ESCROW, "open_deal", message):
        escrow.open_deal(seller or buyer.address, sender=buyer, value=value)
    assert chain.balance(escrow.address) == 0


def test_escrow_deliver_then_release_pays_seller_and_arbiter(chain, escrow, people):
    buyer, seller, arbiter = people[:3]
    deal = open_deal(escrow, people)
    with reverts(ESCROW, "mark_delivered", "only the seller can mark delivery"):
        escrow.mark_delivered(deal, sender=buyer)
    escrow.mark_delivered(deal, sender=seller)
    assert escrow.view.deal(deal)["state"] == "delivered"
    assert chain.events[-1].name == "Delivered" and chain.events[-1].data == {"deal": deal}
    with reverts(ESCROW, "mark_delivered", "the deal is delivered", '"the deal is " + d["state"]'):
        escrow.mark_delivered(deal, sender=seller)
    s, a = balances(chain, seller.address, arbiter.address)
    assert escrow.view.arbiter_fee(PRICE) == 150  # 1.5 %
    assert escrow.release(deal, sender=buyer) == PRICE - 150
    assert balances(chain, seller.address, arbiter.address) == [s + PRICE - 150, a + 150]
    assert chain.balance(escrow.address) == 0
    assert chain.events[-1].data == {"deal": deal, "seller": seller.address, "paid": PRICE - 150, "fee": 150}
    assert escrow.view.deal(deal)["state"] == "released"
    with reverts(ESCROW, "release", "the deal is released", '"the deal is " + d["state"]'):
        escrow.release(deal, sender=buyer)
    with reverts(ESCROW, "refund", "the deal is released", '"the deal is " + d["state"]'):
        escrow.refund(deal, sender=arbiter)


def test_escrow_fee_rounds_down_to_whole_units(chain, escrow, people):
    assert [escrow.view.arbiter_fee(n) for n in (0, 66, 67, 133, 134, 10**30)] == [0, 0, 1, 1, 2, 15 * 10**27]
    buyer, seller, arbiter = people[:3]
    deal = open_deal(escrow, people, 133)
    s, a = balances(chain, seller.address, arbiter.address)
    escrow.release(deal, sender=arbiter)  # the arbiter may release before delivery is marked
    assert balances(chain, seller.address, arbiter.address) == [s + 132, a + 1 - chain.last_receipt.gas_used]


def test_escrow_without_a_fee_pays_the_seller_everything(chain, people):
    buyer, seller, arbiter = people[:3]
    escrow = chain.deploy(ESCROW, arbiter.address, Decimal(0))
    deal = open_deal(escrow, people)
    s, a = balances(chain, seller.address, arbiter.address)
    escrow.release(deal, sender=buyer)
    assert balances(chain, seller.address, arbiter.address) == [s + PRICE, a]
    assert chain.events[-1].data["fee"] == 0


def test_escrow_only_buyer_or_arbiter_release(chain, escrow, people):
    buyer, seller, arbiter, stranger = people
    deal = open_deal(escrow, people)
    for who in (seller, stranger):
        with reverts(ESCROW, "release", "only the buyer or the arbiter can release"):
            escrow.release(deal, sender=who)
    assert chain.balance(escrow.address) == PRICE


def test_escrow_refund(chain, escrow, people):
    buyer, seller, arbiter, stranger = people
    first, second = open_deal(escrow, people), open_deal(escrow, people)
    for who in (buyer, stranger):
        with reverts(ESCROW, "refund", "only the arbiter or the seller can refund"):
            escrow.refund(first, sender=who)
    b = chain.balance(buyer.address)
    escrow.refund(first, sender=arbiter)
    assert chain.balance(buyer.address) == b + PRICE  # in full, no fee
    assert chain.events[-1].name == "Refunded"
    assert chain.events[-1].data == {"deal": first, "buyer": buyer.address, "amount": PRICE}
    escrow.mark_delivered(second, sender=seller)
    escrow.refund(second, sender=seller)  # a seller may give the money back
    assert chain.balance(buyer.address) == b + 2 * PRICE
    assert chain.balance(escrow.address) == 0
    with reverts(ESCROW, "refund", "the deal is refunded", '"the deal is " + d["state"]'):
        escrow.refund(second, sender=arbiter)
    with reverts(ESCROW, "release", "the deal is refunded", '"the deal is " + d["state"]'):
        escrow.release(second, sender=arbiter)


def test_escrow_buyer_reclaims_after_the_delivery_window(chain, escrow, people):
    buyer, seller, arbiter, stranger = people
    deal = open_deal(escrow, people)
    with reverts(ESCROW, "reclaim", "only the buyer can reclaim"):
        escrow.reclaim(deal, sender=stranger)
    with reverts(ESCROW, "reclaim", "the seller still has time to deliver"):
        escrow.reclaim(deal, sender=buyer)
    with chain.snapshot():  # delivered in time: no reclaim, even after the window
        escrow.mark_delivered(deal, sender=seller)
        chain.travel(WINDOW)
        with reverts(ESCROW, "reclaim", "the deal is delivered", '"the deal is " + d["state"]'):
            escrow.reclaim(deal, sender=buyer)
    assert escrow.view.deal(deal)["state"] == "open"
    chain.travel(WINDOW)
    b = chain.balance(buyer.address)
    escrow.reclaim(deal, sender=buyer)
    assert chain.balance(buyer.address) == b + PRICE - chain.last_receipt.gas_used
    assert escrow.view.deal(deal)["state"] == "refunded"


def test_escrow_unknown_deal(chain, escrow, people):
    for fn in ("deal", "mark_delivered", "release", "refund", "reclaim"):
        with reverts(ESCROW, "load", "no such deal"):
            getattr(escrow, fn)(7, sender=people[0])
    with reverts(ESCROW, "load", "no such deal"):
        escrow.view.deal(0)


@pytest.mark.parametrize("arbiter, rate, message", [
    (b"\x01" * 20, Decimal("0.51"), "fee rate must be from 0 to 0.5"),
    (b"\x01" * 20, Decimal("-0.01"), "fee rate must be from 0 to 0.5"),
    (b"\x01", Decimal("0.1"), "not a valid address"),
])
def test_escrow_constructor_checks(chain, arbiter, rate, message):
    with reverts(ESCROW, "init", message):
        chain.deploy(ESCROW, arbiter, rate)


def test_escrow_fee_rate_must_be_a_decimal(chain):
    with pytest.raises(ContractFailed, match="argument 'fee_rate' must be Decimal, not int") as e:
        chain.deploy(ESCROW, b"\x01" * 20, 0)
    assert e.value.code == "invalid_arguments"


# ---- docs/contracts.md ----------------------------------------------------------------------

DOC_TEXT = DOC.read_text()
ERROR_CODES = ("revert", "out_of_gas", "limit_exceeded", "runtime_error", "invalid_value", "not_found",
               "invalid_arguments", "reentrancy", "invalid_contract")
_WHERE = re.compile(r" \(in \w+, line \d+\)$")


def doc_blocks() -> list[tuple[str | None, str, str, int]]:
    """Every fenced block of the doc: (marker, language, text, line), where the marker is
    the `<!-- test: NAME -->` or `<!-- doctest -->` comment on the line before the fence."""
    out, lines, i = [], DOC_TEXT.split("\n"), 0
    while i < len(lines):
        m = re.fullmatch(r"```(\w*)", lines[i])
        if m:
            start = i
            i += 1
            while lines[i] != "```":
                i += 1
            marker = re.fullmatch(r"<!-- (test: [\w-]+|doctest) -->", lines[start - 1])
            out.append((marker.group(1) if marker else None, m.group(1), "\n".join(lines[start + 1:i]), start + 1))
        i += 1
    return out


def doc_block(name: str) -> str:
    [text] = [t for marker, _, t, _ in doc_blocks() if marker == f"test: {name}"]
    return text


NAMED_BLOCKS = {"counter", "counter-session", "rejected", "rejected-message", "export", "sort-key", "oracle",
                "shop", "emit-line", "pytest-example", "travel", "sdk",
                "ml-classifier", "ml-session"}  # the ML blocks run in tests/test_vm_ml.py


def test_every_python_block_of_the_doc_is_tested():
    untested = [(line_no, text[:60]) for marker, lang, text, line_no in doc_blocks()
                if lang == "python" and marker is None]
    assert not untested, f"python blocks without a <!-- test: ... --> or <!-- doctest --> marker: {untested}"
    names = {marker[6:] for marker, _, _, _ in doc_blocks() if marker and marker.startswith("test: ")}
    assert names == NAMED_BLOCKS


def _doctests() -> list[tuple[int, str]]:
    return [(line_no, text) for marker, _, text, line_no in doc_blocks() if marker == "doctest"]


def _same_value(got: object, want: str) -> bool:
    """Whether `got` is the value the Python literal `want` writes: the same canonical
    bytes, so types (1 and True, list and tuple), dict order and values must all match."""
    try:
        expected = encode_value(eval(want, {"Decimal": Decimal}), 1 << 20)
    except Exception as e:  # noqa: BLE001 - a doc typo must read as a failed check, not a crash
        raise AssertionError(f"{want!r} is not a contract value written as a literal: {e}") from None
    return encode_value(got, 1 << 20) == expected


@pytest.mark.parametrize("line_no, text", _doctests(), ids=[f"line{n}" for n, _ in _doctests()])
def test_doc_doctest_block(line_no, text):
    """Each `EXPR  # -> WANT` line runs in a contract after the lines above it (those
    expected to fail are left out of what follows); WANT is a Python literal of the
    value, or `code: message` of the error."""
    checks, before = [], []
    for offset, raw in enumerate(text.split("\n"), line_no + 1):
        code, sep, want = raw.partition("  # -> ")
        if not sep:
            if raw.strip():
                before.append(raw)
            continue
        code, want = code.rstrip(), want.strip()
        fails = re.match(rf"({'|'.join(ERROR_CODES)}): ", want) is not None
        try:
            ast.parse(code, mode="eval")
            body = before + [f"return {code}"]
        except SyntaxError:  # a statement expected to fail
            assert fails, f"doc line {offset}: only a failing line may be a statement"
            body = before + [code]
        checks.append((offset, code, want, fails, body))
        if not fails:
            before.append(code)
    source = "\n".join(f"@export\ndef check{i}():\n" + "".join(f"    {b}\n" for b in body)
                       for i, (_, _, _, _, body) in enumerate(checks))
    chain = TestChain()
    contract = chain.deploy(source)
    wrong = []
    for i, (offset, code, want, fails, _) in enumerate(checks):
        try:
            got = contract.view.__getattr__(f"check{i}")()
            shown = repr(got)
            ok = not fails and _same_value(got, want)
        except ContractFailed as e:
            shown = _WHERE.sub("", str(e))
            ok = fails and shown == want
        if not ok:
            wrong.append(f"docs/contracts.md line {offset}: {code}\n    want {want}\n    got  {shown}")
    assert not wrong, "\n".join(wrong)


def test_doc_counter(tmp_path, monkeypatch):
    (tmp_path / "counter.py").write_text(doc_block("counter"))
    monkeypatch.chdir(tmp_path)
    exec(doc_block("counter-session"), {})


def test_doc_rejected_contract():
    chain = TestChain()
    with pytest.raises(ContractFailed) as e:
        chain.deploy(doc_block("rejected"))
    assert e.value.code == "invalid_contract"
    assert str(e.value) == doc_block("rejected-message")


def test_doc_export():
    chain = TestChain()
    alice = chain.accounts[0]
    c = chain.deploy(doc_block("export"), alice.address)
    assert c.storage("owner") == alice.address
    assert (c.view.limit(), c.view.scaled(3), c.view.scaled(3, 50)) == (100, 30, 100)
    failures = []
    for call, args in [("scaled", ("3",)), ("clamp", (1,)), ("scaled", ())]:
        with pytest.raises(ContractFailed) as e:
            c.view.__getattr__(call)(*args)
        failures.append(_WHERE.sub("", str(e.value)).replace(c.address.hex(), "..."))
    assert failures == ["invalid_arguments: argument 'x' must be int, not str",
                        "not_found: contract 0x... exports no function 'clamp'",
                        "invalid_arguments: the arguments do not match the function's parameters"]
    for quoted in failures:
        assert f"`{quoted}`" in DOC_TEXT.replace("\n", " ")


def test_doc_sort_key():
    c = TestChain().deploy(doc_block("sort-key"))
    assert c.view.richest([("ann", 5), ("bob", 9), ("cy", 7)]) == [("bob", 9), ("cy", 7)]
    assert '`[("ann", 5), ("bob", 9), ("cy", 7)]`' in DOC_TEXT and '`[("bob", 9), ("cy", 7)]`' in DOC_TEXT


def test_doc_oracle_and_shop():
    chain = TestChain()
    owner, other = chain.accounts[:2]
    oracle = chain.deploy(doc_block("oracle"), sender=owner)
    shop = chain.deploy(doc_block("shop"))
    oracle.set_price("GRAD", Decimal("2.5"), sender=owner)
    with pytest.raises(Reverted, match="only the owner posts prices"):
        oracle.set_price("GRAD", Decimal(1), sender=other)
    assert shop.quote(oracle.address, "GRAD", 3) == 7
    with pytest.raises(Reverted) as e:
        shop.quote(oracle.address, "BTC", 1)
    assert str(e.value).startswith("revert: no price for BTC (in price, line ")
    assert (e.value.contract, e.value.function) == (oracle.address, "price")
    assert e.value.line == line(doc_block("oracle"), '"no price for "')
    # copies: the callee's result and the caller's arguments are separate values
    assert shop.tamper(oracle.address) == [[1, 2, 3], Decimal("2.5")]
    with pytest.raises(ContractFailed) as e:
        oracle.poke(shop.address)
    assert e.value.code == "reentrancy"
    assert (e.value.contract, e.value.function) == (shop.address, "quote")
    assert oracle.view.price("GRAD") == Decimal("2.5")


def test_doc_emit_line_is_the_tokens():
    assert doc_block("emit-line").strip() in TOKEN


def test_doc_pytest_example(tmp_path):
    test_file = tmp_path / "test_token_doc.py"
    test_file.write_text(doc_block("pytest-example"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed" in r.stdout


def test_doc_travel(chain, registry):
    exec(doc_block("travel"), {"chain": chain, "registry": registry})
    assert registry.view.record("alice") is None


def _section(title: str) -> str:
    return DOC_TEXT.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_doc_gas_table_is_the_schedule():
    """Each row's figures, in order, are the constants it names (vm/gas.py)."""
    known = {**{k: v for k, v in vars(gas).items() if k.isupper()}, "INTRINSIC_GAS": INTRINSIC_GAS[TxKind.TRANSFER]}
    rows = [r for r in _section("Gas").split("\n") if r.startswith("| ") and "`" in r.rsplit("|", 2)[1]]
    named = set()
    for row in rows:
        _, what, cost, names, _ = row.split("|")
        figures = [int(n.replace(",", "")) for n in re.findall(r"(?<![\w-])\d[\d,]*(?![\w-])", cost)
                   if n not in ("32", "64")]  # the units of "per 32 bytes" and "64-bit words"
        consts = re.findall(r"`([A-Z_0-9]+)`", names)
        named.update(consts)
        expected = [known[c] for c in consts]
        if "type-checked parameter" in what:
            figures = figures[:2]  # "plus one node (25)": NODE again
        if "per 32 bytes" in cost:
            expected = expected[:1]
        assert figures == expected, row
    assert named == set(known) - {"words"}, "constants of vm/gas.py missing from the docs' table"


def test_doc_gas_worked_example():
    """The figures the Gas section works out, from the schedule."""
    chain = TestChain()
    c = chain.deploy("@export\ndef noop():\n    pass\n\n"
                     "@export\ndef loop(n: int) -> int:\n    total = 0\n    for i in range(n):\n"
                     "        total += i\n    return total\n")
    c.noop()
    noop = gas.CALL_TX + gas.TX_DATA_PER_BYTE * 5 + gas.TX_ARG_PER_UNIT + gas.CALL + gas.NODE
    assert chain.last_receipt.gas_used == noop
    assert f"**{noop:,}**" in DOC_TEXT
    c.loop(0)
    base = chain.last_receipt.gas_used
    c.loop(10)
    per_iteration = gas.ITERATION + 4 * gas.NODE
    assert chain.last_receipt.gas_used - base == 10 * per_iteration
    assert f"costs **{per_iteration}**" in DOC_TEXT
    token = chain.deploy(TOKEN, "Grad Token", "GT", SUPPLY)
    assert 950_000 < chain.last_receipt.gas_used < 1_100_000  # "about 1,000,000"
    assert 4_400 < len(TOKEN.encode()) < 4_700                 # "its 4.5 KB of source"
    token.transfer_to(chain.accounts[1].address, 5)
    assert 64_000 < chain.last_receipt.gas_used < 72_000       # "about 68,000"
    # out of gas charges the whole limit
    spin = chain.deploy("@export\ndef spin():\n    while True:\n        pass\n")
    with pytest.raises(OutOfGas) as e:
        spin.spin(gas=50_000)
    assert e.value.gas_used == chain.last_receipt.gas_used == (gas.CALL_TX + gas.TX_DATA_PER_BYTE * 5
                                                                + gas.TX_ARG_PER_UNIT + 50_000)



def test_doc_sdk_and_token_demo_against_a_node(devnet, monkeypatch):
    """The SDK block of the docs and examples/token_demo.py, on a real node."""
    url = devnet.url
    demo = subprocess.run([sys.executable, str(EXAMPLES / "token_demo.py"), url], cwd="/",
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    overdraft = line(TOKEN, '"insufficient balance"', "move")
    assert f"refused before sending: 'insufficient balance' in move, line {overdraft}" in demo.stdout
    assert "done: every step did what it should" in demo.stdout
    monkeypatch.chdir(ROOT)
    block = doc_block("sdk")
    assert block.count("http://127.0.0.1:8545") == 1
    printed = []
    exec(block.replace("http://127.0.0.1:8545", url), {"print": lambda *a: printed.append(a)})
    assert printed == [("insufficient balance", "move", overdraft)]
    assert f"# insufficient balance move {overdraft}" in block



def test_examples_readme_session(monkeypatch):
    readme = (EXAMPLES / "README.md").read_text()
    [block] = re.findall(r"```python\n(.*?)\n```", readme, re.S)
    monkeypatch.chdir(ROOT)
    printed = []
    exec(block, {"print": lambda *a: printed.append(a)})
    assert printed == [(250,), (True,), (9900,)]



LIMITS = """
@export
def int_size() -> int:
    return 2 ** 4096

@export
def digits() -> int:
    return int("1" * 1235)

@export
def elements() -> int:
    xs = [0] * 1000001
    return 1

@export
def comprehension() -> int:
    xs = [0 for i in range(1000001)]
    return 1

@export
def value_nesting():
    x = []
    for i in range(40):
        x = [x]
    storage["x"] = x

def down(n: int) -> int:
    return down(n + 1)

@export
def depth() -> int:
    return down(0)

@export
def memory():
    out = []
    for i in range(100):
        out.append("a" * 900000)

@export
def storage_key():
    storage["k" * 300] = 1

@export
def storage_value():
    storage["k"] = b"a" * 140000

@export
def event_data():
    emit("E", data=b"a" * 20000)

@export
def events():
    for i in range(1025):
        emit("E", i=i)

@export
def result() -> bytes:
    return b"a" * 70000

@export
def echo(x: bytes) -> int:
    return len(x)

@export
def call_args() -> int:
    return call(ctx.sender, "echo", b"a" * 70000)

@export
def chosen_hashes() -> int:
    d = {}
    for i in range(70):
        d[2**61 - 1 + i * (2**61 - 1)] = i
    return len(d)

@export
def prints() -> int:
    for i in range(3000):
        print("line", i)
    return 1
"""


def test_doc_limits_table():
    """Every limit the docs list is hit with the message they give."""
    from vm.validate import ContractInvalid, validate
    chain = TestChain()
    c = chain.deploy(LIMITS)
    got = {}
    for fn in ("int_size", "digits", "elements", "comprehension", "value_nesting", "depth", "memory", "storage_key",
               "storage_value", "event_data", "events", "result", "call_args", "chosen_hashes"):
        with pytest.raises(ContractFailed) as e:
            # enough gas that the limit, not the gas, ends each (a million comprehension steps
            # cost about 300 M gas; the other rows far less)
            c.__getattr__(fn)(gas=500_000_000 if fn == "comprehension" else 200_000_000)
        got[fn] = _WHERE.sub("", str(e.value)).replace("1000001 elements", "N elements")
    assert c.prints() == 1 and 0 < len("\n".join(chain.last_receipt.logs).encode()) <= 16 * 1024
    nested_loops = "".join("    " * (i + 1) + "while True:\n" for i in range(17)) + "    " * 18 + "pass\n"
    for i, source in enumerate(["x" * 65537, "@export\ndef f():\n    return " + "[" * 101 + "]" * 101 + "\n",
                                "@export\ndef f():\n" + nested_loops,
                                "@export\ndef f():\n    return 0x1" + "0" * 1024 + "\n"]):
        with pytest.raises(ContractInvalid) as e:
            validate(source)
        issue = str(e.value.issues[0])
        got[i] = "invalid_contract: " + (re.sub(r"line \d+, column \d+", "line L, column C", issue) if i else issue)
    table = _section("Limits")
    documented = re.findall(r"`((?:limit_exceeded|invalid_value|invalid_contract): [^`]*)`", table)
    assert sorted(documented) == sorted(got.values())



def test_doc_error_codes_are_the_vms():
    from vm import errors
    codes = {c.code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.VMError)} - {"error"}
    table = _section("Errors and receipts")
    assert set(re.findall(r"^\| `(\w+)` \|", table, re.M)) == codes == set(ERROR_CODES)



def test_doc_lists_every_builtin_method_ctx_field_and_injected_name():
    from vm.validate import BUILTINS, CTX_FIELDS, INJECTED, METHODS
    builtins = set(re.findall(r"^\| `(\w+)\(", _section("Builtins"), re.M))
    builtins |= set(re.findall(r", `(\w+)\(", _section("Builtins")))
    assert builtins == set(BUILTINS)
    rows = [r for r in _section("Methods").split("\n") if r.startswith("| `")]
    methods = {m for r in rows for cell in re.findall(r"`([^`]*)`", r.split("|")[2]) for m in re.findall(r"\w+", cell)}
    assert set(METHODS) <= methods
    assert set(re.findall(r"^\| `ctx\.(\w+)`", _section("Injected names"), re.M)) == set(CTX_FIELDS)
    assert {n for n in INJECTED if f"\n### {n}\n" in DOC_TEXT} == set(INJECTED)  # a section each


# ---- emit() and call() take any keyword arguments (their own parameters are positional-only)

def test_an_event_field_may_be_called_name():
    chain = TestChain()
    c = chain.deploy('@export\ndef hello(who: str):\n    emit("Named", name=who, kind="greeting")\n')
    c.hello("alice")
    assert chain.events[-1].data == {"name": "alice", "kind": "greeting"}


def test_call_passes_keyword_arguments_called_contract_and_function():
    chain = TestChain()
    callee = chain.deploy("@export\ndef pair(contract: str, function: str) -> list:\n"
                          "    return [contract, function]\n")
    caller = chain.deploy("@export\ndef ask(other: bytes) -> list:\n"
                          "    return call(other, \"pair\", contract=\"c\", function=\"f\")\n")
    assert caller.ask(callee.address) == ["c", "f"]


def test_ctx_balance_is_the_contracts_own_balance_with_the_calls_value():
    chain = TestChain()
    c = chain.deploy("@export\ndef deposit() -> int:\n    return ctx.balance\n\n"
                     "@export\ndef pay(to: bytes, amount: int) -> int:\n    transfer(to, amount)\n    return ctx.balance\n")
    assert c.deposit(value=700) == 700
    assert c.deposit(value=300) == 1000
    assert c.pay(chain.accounts[5].address, 250) == 750
    assert chain.balance(c.address) == 750
