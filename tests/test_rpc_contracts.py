"""The contract RPC (call, estimate_gas, storage, code, events, contract receipts) and
the SDK's contract API, against one real node process.

Every bad input is checked for its exact error code and a message naming what is wrong,
and after every test the node must still serve `status`.
"""
from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from ledger.genesis import devnet_keys
from ledger import trie
from ledger.block import Receipt
from ledger.encoding import decode
from ledger.keys import address_hex
from ledger.state import storage_key
from ledger.tx import call as call_tx, contract_address, deploy as deploy_tx
from gradchain import Client, ContractFailed, OutOfGas, ProofError, Reverted, json_arg
from net.rpc import MAX_EVENT_BLOCKS
from tests.nodeproc import NodeProcess
from tests.test_rpc_errors import Node, assert_error
from vm.limits import MAX_STORAGE_KEY_BYTES
from vm.errors import InvalidContract
from vm.codec import encode_value
from vm.decimals import Decimal

INVALID_REQ, INVALID_PARAMS, NOT_FOUND, FAILED, INTERNAL = -32600, -32602, -32001, -32003, -32603
KEYS = devnet_keys()
OWNER, ALICE, BOB, CAROL = KEYS[0], KEYS[1], KEYS[2], KEYS[3]
ZERO = "0x" + "00" * 20

SOURCE = '''"""A test token with a few extra functions for the RPC tests."""


@constructor
def init(supply: int):
    storage["balance", ctx.sender] = supply
    storage["supply"] = supply
    emit("Mint", to=ctx.sender, amount=supply)


@export
def transfer_to(to: bytes, amount: int) -> bool:
    balance = storage.get(("balance", ctx.sender), 0)
    require(amount > 0 and balance >= amount, "insufficient balance")
    storage["balance", ctx.sender] = balance - amount
    storage["balance", to] = storage.get(("balance", to), 0) + amount
    emit("Transfer", frm=ctx.sender, to=to, amount=amount)
    print("moved", amount)
    return True


@export
def balance_of(owner: bytes) -> int:
    return storage.get(("balance", owner), 0)


@export
def values() -> tuple:
    return ("text", b"\\x00\\x01", Decimal("1.5"), [1, None, True], {1: "one"})


@export
def whoami() -> bytes:
    return ctx.sender


@export
def paid() -> int:
    return ctx.value


@export
def echo(x):
    return x


@export
def spin(n: int) -> int:
    i = 0
    while i < n:
        i += 1
    return i


@export
def ticks(n: int) -> int:
    for i in range(n):
        emit("Tick", i=i)
    return n


@export
def checked(n: int) -> int:
    print("checking", n)
    return check(n)


def check(n: int) -> int:
    require(n < 10, "too big")
    return n
'''
SUPPLY = 1_000_000


def line_of(text: str) -> int:
    [n] = [i + 1 for i, s in enumerate(SOURCE.split("\n")) if text in s]
    return n


REVERT_LINE = line_of('"insufficient balance"')
CHECK_LINE = line_of('"too big"')


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("rpc-contracts") / "node", block_time=0.2).start()
    try:
        yield Node(proc)
    finally:
        proc.kill()


@pytest.fixture(autouse=True)
def still_serves(node):
    yield
    assert node.proc.alive(), "the node died"
    assert node.result("status")["chain_id"] == node.chain_id


@pytest.fixture(scope="module")
def client(node):
    with node.proc.client() as c:
        yield c


@pytest.fixture(scope="module")
def token(client) -> dict:
    """The test token, deployed by OWNER (estimated gas), then 100 units sent to ALICE."""
    d = client.deploy(OWNER, SOURCE, [SUPPLY])
    sent = client.send(OWNER, d["address"], "transfer_to", ALICE.address, 100)
    return {"address": d["address"], "deploy": d, "transfer": sent}


def failed(resp: dict, code: str, *words: str) -> dict:
    """A -32003 answer whose data is the structured failure; returns the data."""
    err = assert_error(resp, FAILED, "contract execution failed", *words)
    data = err["data"]
    assert set(data) - {"issues", "signature"} == {"code", "message", "contract", "function", "line", "gas_used",
                                                   "logs"}
    assert ("issues" in data) == (code == "invalid_contract")
    assert ("signature" in data) == (code == "invalid_arguments"), data  # what the caller should have passed
    if "signature" in data:
        assert data["message"].endswith("; expected " + data["signature"])
    assert data["code"] == code, data
    assert type(data["gas_used"]) is int and data["gas_used"] >= 0
    return data


# ---- call ------------------------------------------------------------------------------------------

def test_call_returns_the_value_its_encoding_gas_and_height(node, token):
    r = node.result("call", {"contract": token["address"], "function": "balance_of",
                             "args": [{"bytes": "0x" + ALICE.address.hex()}]})
    assert r["result"] == 100 and r["output"] == encode_value(100, 64).hex()
    assert r["height"] == node.height() or r["height"] == node.height() - 1
    assert r["gas_used"] > 0 and r["logs"] == [] and r["events"] == []
    # positional params, in the documented order
    same = node.result("call", [token["address"], "balance_of", [{"bytes": "0x" + ALICE.address.hex()}]])
    assert same["result"] == 100
    # every kind of value, and its exact encoding beside the JSON view
    r = node.result("call", [token["address"], "values"])
    assert r["result"] == ["text", "0x0001", "1.5", [1, None, True], [[1, "one"]]]
    assert r["output"] == encode_value(("text", b"\x00\x01", Decimal("1.5"), [1, None, True], {1: "one"}),
                                       1024).hex()


def test_call_runs_what_a_transaction_would_but_keeps_nothing(node, token):
    addr = token["address"]
    args = [{"bytes": "0x" + BOB.address.hex()}, 5]
    r = node.result("call", {"contract": addr, "function": "transfer_to", "args": args,
                             "sender": address_hex(OWNER.address)})
    assert r["result"] is True and r["logs"] == ["moved 5"]
    assert [(e["name"], e["data"]) for e in r["events"]] == [
        ("Transfer", {"frm": address_hex(OWNER.address), "to": address_hex(BOB.address), "amount": 5})]
    bob = node.result("call", [addr, "balance_of", [{"bytes": "0x" + BOB.address.hex()}]])
    assert bob["result"] == 0  # nothing was kept


def test_call_sender_and_value(node, token):
    addr = token["address"]
    assert node.result("call", [addr, "whoami"])["result"] == ZERO
    assert node.result("call", {"contract": addr, "function": "whoami",
                                "sender": address_hex(BOB.address)})["result"] == address_hex(BOB.address)
    assert node.result("call", {"contract": addr, "function": "paid", "sender": address_hex(BOB.address),
                                "value": 7})["result"] == 7
    # the zero address has no coins to send
    data = failed(node.rpc("call", {"contract": addr, "function": "paid", "value": 7}), "error", "cannot pay")
    assert data["contract"] is None and data["function"] is None and data["line"] is None


def test_call_at_a_past_height(node, client, token):
    addr = token["address"]
    before = client.send(OWNER, addr, "transfer_to", CAROL.address, 3)["height"] - 1
    carol = [{"bytes": "0x" + CAROL.address.hex()}]
    assert node.result("call", [addr, "balance_of", carol, before])["result"] == 0
    assert node.result("call", [addr, "balance_of", carol, before + 1])["result"] == 3
    assert node.result("call", [addr, "balance_of", carol])["result"] == 3
    # the block the call ran in is the one asked for
    assert node.result("call", {"contract": addr, "function": "balance_of", "args": carol,
                                "height": before})["height"] == before
    # before the deploy there is no contract
    deployed = token["deploy"]["height"]
    data = failed(node.rpc("call", [addr, "balance_of", carol, deployed - 1]), "not_found", "no contract")
    assert data["contract"] is None and data["line"] is None


def test_call_revert_is_structured(node, token):
    addr = token["address"]
    resp = node.rpc("call", {"contract": addr, "function": "transfer_to",
                             "args": [{"bytes": "0x" + BOB.address.hex()}, 10**9],
                             "sender": address_hex(ALICE.address)})
    data = failed(resp, "revert", "insufficient balance", f"line {REVERT_LINE}")
    assert data == {"code": "revert", "message": "insufficient balance", "contract": addr,
                    "function": "transfer_to", "line": REVERT_LINE, "gas_used": data["gas_used"], "logs": []}
    # where it failed is the innermost function, with what it printed before
    data = failed(node.rpc("call", [addr, "checked", [11]]), "revert", "too big")
    assert (data["function"], data["line"], data["logs"]) == ("check", CHECK_LINE, ["checking 11"])


def test_call_out_of_gas(node, token):
    data = failed(node.rpc("call", {"contract": token["address"], "function": "spin", "args": [10**12],
                                    "gas": 100_000}), "out_of_gas")
    assert data["gas_used"] == 100_000 and data["function"] == "spin"
    # the default gas (50M, also the most a call may ask for) is a bound too: an endless loop ends, and the node goes on
    data = failed(node.rpc("call", [token["address"], "spin", [10**12]]), "out_of_gas")
    assert data["gas_used"] == 50_000_000


def test_call_unknown_contract_and_function(node, token):
    nobody = "0x" + "ab" * 20
    data = failed(node.rpc("call", [nobody, "balance_of", []]), "not_found", "no contract", "ab" * 20)
    assert data["contract"] is None
    data = failed(node.rpc("call", [token["address"], "nope"]), "not_found", "nope")
    assert data["function"] is None and data["line"] is None
    failed(node.rpc("call", [token["address"], "check", [1]]), "not_found", "check")  # private: not exported
    failed(node.rpc("call", [token["address"], "init", [1]]), "not_found", "init")    # the constructor neither
    failed(node.rpc("call", [token["address"], "balance_of", []]), "invalid_arguments")
    failed(node.rpc("call", [token["address"], "balance_of", [1, 2]]), "invalid_arguments")
    data = failed(node.rpc("call", [token["address"], "balance_of", ["not bytes"]]), "invalid_arguments")
    assert data["signature"] == "balance_of(owner: bytes) -> int"


# ---- estimate_gas -----------------------------------------------------------------------------------

def test_estimate_gas_is_exactly_what_the_transaction_uses(node, client, token):
    addr = token["address"]
    args = [{"bytes": "0x" + BOB.address.hex()}, 1]
    est = node.result("estimate_gas", {"from": address_hex(OWNER.address), "contract": addr,
                                       "function": "transfer_to", "args": args})
    assert set(est) == {"gas", "intrinsic_gas", "ml_compile_gas"} and 21_000 <= est["intrinsic_gas"] < est["gas"]
    assert est["ml_compile_gas"] == 0  # no ML in a token transfer
    r = client.send(OWNER, addr, "transfer_to", BOB.address, 1, gas_limit=est["gas"])
    assert r["receipt"]["status"] == "success" and r["receipt"]["gas_used"] == est["gas"]
    # a deploy: validation, code storage and constructor
    dest = node.result("estimate_gas", {"from": address_hex(CAROL.address), "source": SOURCE, "args": [5]})
    d = client.deploy(CAROL, SOURCE, [5], gas_limit=dest["gas"])
    assert d["receipt"]["gas_used"] == dest["gas"]
    # one unit less and the call runs out of gas, in a committed (failed) transaction
    with pytest.raises(OutOfGas) as e:
        client.send(OWNER, addr, "transfer_to", BOB.address, 1, gas_limit=est["gas"] - 1)
    assert e.value.receipt["status"] == "failed" and e.value.gas_used == est["gas"] - 1


def test_estimate_gas_failures(node, token):
    addr, frm = token["address"], address_hex(ALICE.address)
    data = failed(node.rpc("estimate_gas", {"from": frm, "contract": addr, "function": "transfer_to",
                                            "args": [{"bytes": "0x" + BOB.address.hex()}, 10**9]}),
                  "revert", "insufficient balance")
    assert data["line"] == REVERT_LINE and data["gas_used"] > 21_000  # intrinsic gas counted
    data = failed(node.rpc("estimate_gas", {"from": frm, "source": "def f(:\n"}), "invalid_contract")
    assert data["message"] == InvalidContract.MESSAGE  # what a receipt would say, the same on every CPython
    assert len(data["issues"]) == 1 and data["issues"][0].startswith("line 1, column ")
    data = failed(node.rpc("estimate_gas", {"from": frm, "source": "import os\n"}), "invalid_contract")
    assert any("import" in i for i in data["issues"])
    failed(node.rpc("estimate_gas", {"from": frm, "source": SOURCE}), "invalid_arguments")  # no supply given
    failed(node.rpc("estimate_gas", {"from": frm, "source": SOURCE, "args": [1], "value": 10**19}), "error",
           "cannot pay")
    failed(node.rpc("estimate_gas", {"from": frm, "contract": "0x" + "cd" * 20, "function": "f"}), "not_found")


# ---- storage -------------------------------------------------------------------------------------

def _verify(node: Node, r: dict, contract: str, key: Any) -> bytes | None:
    """Check a storage answer's proof against the state root of the block header."""
    root = bytes.fromhex(node.result("block", {"height": r["height"]})["header"]["state_root"])
    assert r["state_root"] == root.hex()
    skey = storage_key(bytes.fromhex(contract[2:]), encode_value(key, MAX_STORAGE_KEY_BYTES))
    p = r["proof"]
    assert p["key"] == skey.hex()
    value = None if p["value"] is None else bytes.fromhex(p["value"])
    assert trie.verify_proof(root, skey, value, decode(bytes.fromhex(p["proof"])))
    # and the proof is not a rubber stamp: another value does not verify
    assert not trie.verify_proof(root, skey, encode_value(123456789, 64), decode(bytes.fromhex(p["proof"])))
    return value


def test_storage_value_and_proof(node, token):
    addr = token["address"]
    key = ("balance", ALICE.address)
    r = node.result("storage", {"contract": addr, "key": json_arg(key), "prove": True})
    assert r["value"] == 100 and r["key"] == ["balance", address_hex(ALICE.address)]
    assert r["raw"] == encode_value(100, 64).hex()
    assert _verify(node, r, addr, key) == encode_value(100, 64)
    r = node.result("storage", [addr, "supply"])
    assert r["value"] == SUPPLY and "proof" not in r
    # an absent key: null, and its proof proves the absence
    r = node.result("storage", {"contract": addr, "key": json_arg(("balance", b"\x09" * 20)), "prove": True})
    assert r["value"] is None and r["raw"] is None
    assert _verify(node, r, addr, ("balance", b"\x09" * 20)) is None


def test_storage_at_a_past_height(node, client, token):
    addr = token["address"]
    key = json_arg(("balance", ALICE.address))
    h = token["transfer"]["height"]
    assert node.result("storage", {"contract": addr, "key": key, "height": h - 1})["value"] is None
    assert node.result("storage", {"contract": addr, "key": key, "height": h, "prove": True})["value"] == 100
    assert_error(node.rpc("storage", {"contract": addr, "key": key, "height": token["deploy"]["height"] - 1}),
                 NOT_FOUND, "no contract")


def test_code(node, token):
    addr = token["address"]
    r = node.result("code", [addr])
    assert r["source"] == SOURCE and r["code_hash"] == hashlib.sha256(SOURCE.encode()).hexdigest()
    assert r["functions"]["transfer_to"] == ["to", "amount"] and "check" not in r["functions"]
    assert r["constructor"] == "init" and r["address"] == addr
    assert_error(node.rpc("code", ["0x" + "ab" * 20]), NOT_FOUND, "no contract")
    assert_error(node.rpc("code", [address_hex(OWNER.address)]), NOT_FOUND, "no contract")  # an account
    assert_error(node.rpc("code", [addr, token["deploy"]["height"] - 1]), NOT_FOUND, "no contract")


# ---- events ---------------------------------------------------------------------------------------

def test_events_oldest_first_with_their_place(node, token):
    addr = token["address"]
    r = node.result("events", {"contract": addr})
    evs = r["events"]
    assert not r["truncated"] and r["from_height"] == 0 and r["to_height"] >= token["transfer"]["height"]
    assert [e["name"] for e in evs[:2]] == ["Mint", "Transfer"]
    mint, first = evs[0], evs[1]
    assert mint == {"index": 0, "contract": addr, "name": "Mint", "height": token["deploy"]["height"],
                    "tx_hash": token["deploy"]["hash"], "tx_index": 0,
                    "data": {"to": address_hex(OWNER.address), "amount": SUPPLY},
                    "data_raw": encode_value({"to": OWNER.address, "amount": SUPPLY}, 1024).hex()}
    assert first["height"] == token["transfer"]["height"] and first["tx_hash"] == token["transfer"]["hash"]
    assert [e["height"] for e in evs] == sorted(e["height"] for e in evs)
    assert all(e["contract"] == addr for e in evs)
    # by name, and by range
    assert [e["name"] for e in node.result("events", {"contract": addr, "name": "Mint"})["events"]] == ["Mint"]
    h = token["transfer"]["height"]
    one = node.result("events", {"contract": addr, "from_height": h, "to_height": h})
    assert (one["from_height"], one["to_height"], [e["tx_hash"] for e in one["events"]]) == \
        (h, h, [token["transfer"]["hash"]])
    assert node.result("events", {"name": "NoSuchEvent"})["events"] == []
    assert node.result("events", {"from_height": 0, "to_height": 0})["events"] == []


def test_events_paging_stops_at_a_block_boundary(node, client):
    c = client.deploy(BOB, SOURCE, [1])["address"]
    heights = [client.send(BOB, c, "ticks", 3)["height"] for _ in range(3)]
    lo = heights[0]
    page = node.result("events", {"contract": c, "name": "Tick", "from_height": lo, "limit": 5})
    assert page["truncated"] and [e["height"] for e in page["events"]] == [heights[0]] * 3
    assert page["to_height"] == heights[1] - 1
    page2 = node.result("events", {"contract": c, "name": "Tick", "from_height": page["to_height"] + 1, "limit": 6})
    assert not page2["truncated"] and [e["height"] for e in page2["events"]] == [heights[1]] * 3 + [heights[2]] * 3
    assert [e["index"] for e in page2["events"]] == [0, 1, 2, 0, 1, 2]
    assert [e["data"]["i"] for e in page2["events"]] == [0, 1, 2, 0, 1, 2]
    # one block holding more than `limit`: its first events, and the answer says so
    small = node.result("events", {"contract": c, "name": "Tick", "from_height": lo, "limit": 2})
    assert small["truncated"] and small["to_height"] == lo and len(small["events"]) == 2
    # exactly `limit` events is not truncated
    exact = node.result("events", {"contract": c, "name": "Tick", "from_height": lo, "to_height": heights[2],
                                   "limit": 9})
    assert not exact["truncated"] and len(exact["events"]) == 9


def test_events_range_errors(node):
    h = node.height()
    assert_error(node.rpc("events", {"from_height": 0, "to_height": MAX_EVENT_BLOCKS}), INVALID_PARAMS,
                 "at most", str(MAX_EVENT_BLOCKS), "split")
    assert_error(node.rpc("events", {"from_height": 10**12, "to_height": 10**12 + 5}), NOT_FOUND, "no block")
    assert_error(node.rpc("events", {"from_height": 5, "to_height": 4}), INVALID_PARAMS, "above")
    assert_error(node.rpc("events", {"to_height": h + 1000}), NOT_FOUND, "no block")
    assert_error(node.rpc("events", {"from_height": h + 1000}), NOT_FOUND, "no block")
    ok = node.result("events", {"from_height": 0, "to_height": MAX_EVENT_BLOCKS - 1}) if h >= MAX_EVENT_BLOCKS \
        else node.result("events", {"from_height": 0})
    assert ok["from_height"] == 0


# ---- receipts ------------------------------------------------------------------------------------

def test_receipts_decode_events_output_and_deploy_address(node, token):
    d = node.result("tx", [token["deploy"]["hash"]])
    rc = d["receipt"]
    addr = address_hex(contract_address(OWNER.address, d["tx"]["nonce"]))
    assert rc["contract_address"] == addr == token["address"] == d["tx"]["contract_address"]
    assert rc["result"] == addr and rc["output"] == encode_value(bytes.fromhex(addr[2:]), 64).hex()
    assert rc["failure"] is None and rc["logs"] == [] and rc["error"] == ""
    assert rc["events"][0]["name"] == "Mint" and rc["events"][0]["data"]["amount"] == SUPPLY
    t = node.result("tx", [token["transfer"]["hash"]])
    rc = t["receipt"]
    assert rc["result"] is True and rc["output"] == "c3" and rc["logs"] == ["moved 100"]
    assert "contract_address" not in rc
    assert t["tx"]["function"] == "transfer_to" and t["tx"]["args"] == [address_hex(ALICE.address), 100]


def test_failed_transaction_receipt(node, client, token):
    addr = token["address"]
    tx = call_tx(BOB, node.chain_id, node.nonce(BOB), bytes.fromhex(addr[2:]), "checked", [50],
                 gas_limit=200_000)
    r = node.result("broadcast_tx_commit", {"tx": tx.raw.hex()})
    rc = r["receipt"]
    assert rc["status"] == "failed" and rc["output"] is None and rc["result"] is None and rc["events"] == []
    assert rc["failure"] == {"code": "revert", "contract": addr, "function": "check", "line": CHECK_LINE}
    assert rc["error"] == "too big"  # the reason; code and place are in "failure"
    assert rc["logs"] == ["checking 50"]  # print() output survives the rollback, as in the receipt
    assert node.result("tx", [r["hash"]])["receipt"] == rc
    # a deploy that fails has no contract address
    bad = client.call("broadcast_tx_commit", {"tx": _deploy_raw(node, CAROL, "x = 1\n@export\ndef f(:\n")})
    assert bad["receipt"]["status"] == "failed" and bad["receipt"]["contract_address"] is None
    assert bad["receipt"]["failure"]["code"] == "invalid_contract"


def _deploy_raw(node: Node, key, source: str) -> str:
    return deploy_tx(key, node.chain_id, node.nonce(key), source, [], gas_limit=5_000_000).raw.hex()


# ---- bad params ------------------------------------------------------------------------------------

C = "0x" + "11" * 20  # syntactically fine; the checks below fail before it is looked up
DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]
BAD = [
    ("call", {}, ["contract"]),
    ("call", {"contract": C}, ["function"]),
    ("call", {"contract": "0x1234", "function": "f"}, ["contract", "40 hex"]),
    ("call", {"contract": 5, "function": "f"}, ["contract"]),
    ("call", {"contract": C, "function": ""}, ["function"]),
    ("call", {"contract": C, "function": "f" * 65}, ["function", "64"]),
    ("call", {"contract": C, "function": 7}, ["function"]),
    ("call", {"contract": C, "function": "fé"}, ["function", "ASCII"]),
    ("call", {"contract": C, "function": "f", "args": "[1]"}, ["args", "array"]),
    ("call", {"contract": C, "function": "f", "args": {"a": 1}}, ["args", "array"]),
    ("call", {"contract": C, "function": "f", "args": [1.5]}, ["args[0]", "float", "decimal"]),
    ("call", {"contract": C, "function": "f", "args": [1, {"bytes": "0xabc"}]}, ["args[1]", "hex"]),
    ("call", {"contract": C, "function": "f", "args": [{"bytes": "abcd"}]}, ["args[0]", "0x"]),
    ("call", {"contract": C, "function": "f", "args": [{"decimal": "x"}]}, ["args[0]"]),
    ("call", {"contract": C, "function": "f", "args": [{"decimal": 1}]}, ["args[0]", "str"]),
    ("call", {"contract": C, "function": "f", "args": [{"tuple": 5}]}, ["args[0]", "array"]),
    ("call", {"contract": C, "function": "f", "args": [{"dict": [[1]]}]}, ["args[0]", "pairs"]),
    ("call", {"contract": C, "function": "f", "args": [{"dict": [[[1], 2]]}]}, ["args[0]", "hashable"]),
    # refused as the JSON is read (by the RPC's own digit rule, never the host's), before params have names
    ("call", {"contract": C, "function": "f", "args": [2**5000]}, ["1506 digits", "1234"]),
    ("call", {"contract": C, "function": "f", "args": [2**4096]}, ["args[0]", "bits"]),
    ("call", {"contract": C, "function": "f", "args": ["\ud800"]}, ["args", "surrogate"]),
    ("call", {"contract": C, "function": "f", "args": ["x" * 70_000]}, ["args"]),
    ("call", {"contract": C, "function": "f", "args": [DEEP]}, ["args[0]", "deep"]),
    ("call", {"contract": C, "function": "f", "height": -1}, ["height", "integer"]),
    ("call", {"contract": C, "function": "f", "height": "latest"}, ["height", "integer"]),
    ("call", {"contract": C, "function": "f", "sender": "me"}, ["sender"]),
    ("call", {"contract": C, "function": "f", "gas": 0}, ["gas"]),
    ("call", {"contract": C, "function": "f", "gas": 10**10}, ["gas", "50000000"]),
    ("call", {"contract": C, "function": "f", "gas": "1"}, ["gas"]),
    ("call", {"contract": C, "function": "f", "value": -1}, ["value"]),
    ("call", {"contract": C, "function": "f", "value": 2**64}, ["value"]),
    ("call", {"contract": C, "function": "f", "value": 1.0}, ["value"]),
    ("call", {"contract": C, "function": "f", "from": C}, ["from"]),
    ("call", [C, "f", [], None, None, None, None, 1], ["too many"]),
    ("estimate_gas", {}, ["'from'"]),
    ("estimate_gas", {"from": "0x12", "contract": C, "function": "f"}, ["from", "40 hex"]),
    ("estimate_gas", {"from": C}, ["contract and function", "source"]),
    ("estimate_gas", {"from": C, "contract": C}, ["contract and function"]),
    ("estimate_gas", {"from": C, "source": "x = 1\n", "contract": C}, ["not both"]),
    ("estimate_gas", {"from": C, "source": ""}, ["source"]),
    ("estimate_gas", {"from": C, "source": 5}, ["source"]),
    ("estimate_gas", {"from": C, "source": "x = '\ud800'\n"}, ["source", "UTF-8"]),
    ("estimate_gas", {"from": C, "source": "#" * 70_000}, ["source", "bytes"]),
    ("estimate_gas", {"from": C, "contract": C, "function": "f", "args": [0.5]}, ["args[0]", "float"]),
    ("estimate_gas", {"from": C, "contract": C, "function": "f", "value": "1"}, ["value"]),
    ("estimate_gas", {"from": C, "contract": C, "function": "f", "gas": -5}, ["gas"]),
    ("estimate_gas", {"from_": C, "contract": C, "function": "f"}, ["from_"]),
    ("storage", {}, ["contract"]),
    ("storage", {"contract": C}, ["key"]),
    ("storage", {"contract": "xyz", "key": "k"}, ["contract"]),
    ("storage", {"contract": C, "key": ["balance", "x"]}, ["key", "tuple"]),
    ("storage", {"contract": C, "key": {"a": 1}}, ["key", "tuple"]),
    ("storage", {"contract": C, "key": {"decimal": "1.5"}}, ["key", "Decimal"]),
    ("storage", {"contract": C, "key": 1.5}, ["key", "float"]),
    ("storage", {"contract": C, "key": "k" * 300}, ["key", "256"]),
    ("storage", {"contract": C, "key": {"tuple": [[1]]}}, ["key"]),
    ("storage", {"contract": C, "key": "k", "prove": "yes"}, ["prove", "true or false"]),
    ("storage", {"contract": C, "key": "k", "height": -1}, ["height"]),
    ("code", [], ["address"]),
    ("code", {"address": "0x"}, ["address"]),
    ("code", {"address": C, "height": 1.5}, ["height"]),
    ("code", {"address": C, "source": True}, ["source"]),
    ("events", {"contract": "nope"}, ["contract"]),
    ("events", {"name": ""}, ["name"]),
    ("events", {"name": 5}, ["name"]),
    ("events", {"limit": 0}, ["limit"]),
    ("events", {"limit": 10_001}, ["limit", "10000"]),
    ("events", {"limit": "10"}, ["limit"]),
    ("events", {"from_height": -1}, ["from_height"]),
    ("events", {"to_height": "x"}, ["to_height"]),
    ("events", {"from_height": 0, "to_height": -1}, ["to_height"]),
    ("events", {"from": 0}, ["from"]),
]


@pytest.mark.parametrize("method, params, words", BAD, ids=[f"{m}-{json.dumps(p)[:50]}" for m, p, _ in BAD])
def test_invalid_params(node, method, params, words):
    err = assert_error(node.rpc(method, params), INVALID_PARAMS, "invalid params", *words)
    assert err.get("data") is None


def test_out_of_range_heights_are_not_found(node, token):
    h = node.height()
    addr = token["address"]
    for future in (h + 1000, 2**64):
        assert_error(node.rpc("call", {"contract": addr, "function": "whoami", "height": future}), NOT_FOUND,
                     "no block at height", str(future))
        assert_error(node.rpc("storage", {"contract": addr, "key": "supply", "height": future}), NOT_FOUND,
                     "no block at height")
        assert_error(node.rpc("code", [addr, future]), NOT_FOUND, "no block at height")


@pytest.mark.parametrize("params", [5, "call", True])
def test_params_neither_array_nor_object(node, params):
    for method in ("call", "estimate_gas", "storage", "code", "events"):
        assert_error(node.rpc(method, params), INVALID_REQ, "params")


def test_garbage_params_never_crash_the_node(node, token):
    """Random JSON in every param of every contract method, in one batch: each answer is a
    result or a clean error, never an internal error."""
    rng = random.Random(3)
    atoms = [None, True, False, 0, -1, 2**64, 10**30, 1.5, "", "x", "0x", token["address"], "0x" + "ab" * 20,
             "\u0000", "é", {"bytes": "0x00"}, {"decimal": "1e5"}, {"tuple": []}, {"dict": []}, {"dict": [[1, 2]]},
             {"bytes": 1}, {"tuple": {}}]

    def value(depth: int = 0) -> Any:
        r = rng.random()
        if depth < 3 and r < 0.15:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if depth < 3 and r < 0.25:
            return {rng.choice(["a", "bytes", "tuple", "key", "args"]): value(depth + 1)}
        return rng.choice(atoms)

    names = {"call": ["contract", "function", "args", "height", "sender", "gas", "value"],
             "estimate_gas": ["from", "contract", "function", "args", "value", "source", "gas"],
             "storage": ["contract", "key", "height", "prove"], "code": ["address", "height"],
             "events": ["contract", "name", "from_height", "to_height", "limit"]}
    functions = ["whoami", "echo", "balance_of", "nope", "values", "checked"]
    reqs = []
    for i in range(600):
        method = rng.choice(sorted(names))
        params: dict = {n: value() for n in names[method] if rng.random() < 0.6}
        if method in ("call", "estimate_gas") and rng.random() < 0.7:
            params.update(contract=token["address"], function=rng.choice(functions))
            params.pop("source", None)
            if method == "estimate_gas":
                params["from"] = address_hex(OWNER.address)
            if "gas" in params and type(params["gas"]) is int:
                params["gas"] = 1_000_000
        reqs.append({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
    answers = []
    for i in range(0, len(reqs), 20):  # 20 heavy calls fit one batch's work bound (net/rpc/limits.py WORK)
        status, part = node.post(json.dumps(reqs[i:i + 20]))
        assert status == 200 and len(part) == len(reqs[i:i + 20])
        answers += part
    codes: dict[Any, int] = {}
    for a in answers:
        if "error" in a:
            assert a["error"]["code"] in (INVALID_PARAMS, NOT_FOUND, FAILED), (reqs[a["id"]], a)
            assert len(a["error"]["message"]) > 10
        key = a["error"]["code"] if "error" in a else "ok"
        codes[key] = codes.get(key, 0) + 1
    assert set(codes) == {INVALID_PARAMS, NOT_FOUND, FAILED, "ok"}, codes  # each kind was reached


# ---- the SDK -----------------------------------------------------------------------------------------

def test_sdk_values_round_trip_exactly(client, token):
    addr = token["address"]
    assert client.view(addr, "values") == ("text", b"\x00\x01", Decimal("1.5"), [1, None, True], {1: "one"})
    for v in (b"\xff" * 20, "0xab", Decimal("-0.000000000000000001"), (1, (b"", None)), {(1, 2): [b"x"]},
              {"bytes": "not a tag"}, {"decimal": 5}, 2**4000, -2**63, [], {}):
        assert client.view(addr, "echo", v) == v, v
    assert client.view(addr, "whoami", sender=BOB.address) == BOB.address
    with pytest.raises(TypeError, match="float"):
        client.view(addr, "echo", 1.5)


def test_sdk_send_deploy_view(client, token):
    d = client.deploy(ALICE, SOURCE, [77])
    assert d["receipt"]["status"] == "success" and d["address"] == d["receipt"]["contract_address"]
    addr = d["address"]
    assert client.view(addr, "balance_of", ALICE.address) == 77
    r = client.send(ALICE, addr, "transfer_to", CAROL.address, 7)
    assert r["result"] is True and r["receipt"]["logs"] == ["moved 7"]
    assert client.view(addr, "balance_of", CAROL.address) == 7
    assert client.view(addr, "balance_of", CAROL.address, height=r["height"] - 1) == 0
    assert client.send(ALICE, addr, "values")["result"] == ("text", b"\x00\x01", Decimal("1.5"), [1, None, True],
                                                           {1: "one"})
    # without waiting: the hash, then the receipt
    h = client.send(ALICE, addr, "transfer_to", CAROL.address, 1, wait=False)["hash"]
    assert client.wait_for_tx(h)["receipt"]["status"] == "success"
    assert client.view(addr, "balance_of", CAROL.address) == 8
    assert client.code(addr)["source"] == SOURCE


def test_sdk_gas_is_estimated_with_a_margin(client, token):
    addr = token["address"]
    est = client.estimate_gas(OWNER.address, addr, "transfer_to", [BOB.address, 1])
    r = client.send(OWNER, addr, "transfer_to", BOB.address, 1)
    tx = client.tx(r["hash"])["tx"]
    assert tx["gas_limit"] == est + est // 4 and r["receipt"]["gas_used"] == est
    dest = client.estimate_gas(OWNER.address, source=SOURCE, args=[1])
    d = client.deploy(OWNER, SOURCE, [1])
    assert client.tx(d["hash"])["tx"]["gas_limit"] == dest + dest // 4


def test_sdk_reverts_are_typed_with_their_line(client, token):
    addr = token["address"]
    nonce = client.account(BOB.address).pending_nonce
    # estimated: the simulation fails, nothing is sent
    with pytest.raises(Reverted) as e:
        client.send(BOB, addr, "transfer_to", ALICE.address, 10**9)
    v = e.value
    assert (v.code, v.message, v.contract, v.function, v.line) == ("revert", "insufficient balance", addr,
                                                                   "transfer_to", REVERT_LINE)
    assert v.receipt is None and v.tx_hash is None and v.gas_used > 21_000
    assert str(v) == f"revert: insufficient balance (in transfer_to, line {REVERT_LINE})"
    assert client.account(BOB.address).pending_nonce == nonce
    # with a gas limit: sent, committed, failed; the receipt rides along
    with pytest.raises(Reverted) as e:
        client.send(BOB, addr, "checked", 99, gas_limit=300_000)
    v = e.value
    assert (v.message, v.function, v.line, v.logs) == ("too big", "check", CHECK_LINE, ["checking 99"])
    assert v.receipt["status"] == "failed" and v.tx_hash and v.height and v.gas_used == v.receipt["gas_used"]
    assert client.account(BOB.address).pending_nonce == nonce + 1  # it paid and bumped the nonce
    # views raise the same types
    with pytest.raises(Reverted) as e:
        client.view(addr, "checked", 10)
    assert e.value.line == CHECK_LINE and e.value.receipt is None
    with pytest.raises(OutOfGas):
        client.view(addr, "spin", 10**9, gas=50_000)
    with pytest.raises(ContractFailed) as e:
        client.view(addr, "nope")
    assert e.value.code == "not_found" and not isinstance(e.value, Reverted)
    with pytest.raises(ContractFailed) as e:
        client.deploy(BOB, "import os\n")
    assert e.value.code == "invalid_contract" and any("import" in i for i in e.value.issues)


def test_sdk_storage_proof_is_verified(client, token, monkeypatch):
    addr = token["address"]
    assert client.storage(addr, ("balance", ALICE.address), prove=True) == 100
    assert client.storage(addr, "supply") == SUPPLY
    assert client.storage(addr, ("balance", b"\x07" * 20), prove=True) is None
    info = client.storage_info(addr, "supply", prove=True)
    assert info.present and info.proven and info.value == SUPPLY
    assert client.storage(addr, ("balance", ALICE.address), height=token["transfer"]["height"] - 1) is None
    # a node that lies about the value is caught
    real = Client.call
    lie = {"proof": True}

    def lying(self, method, params=None, timeout=None):
        r = real(self, method, params, timeout)
        if method == "storage":
            r["raw"] = encode_value(10**6, 64).hex()
            if "proof" in r and lie["proof"]:
                r["proof"]["value"] = r["raw"]
        return r
    monkeypatch.setattr(Client, "call", lying)
    with pytest.raises(ProofError, match="does not verify"):  # the proof does not prove the lie
        client.storage(addr, ("balance", ALICE.address), prove=True)
    lie["proof"] = False
    with pytest.raises(ProofError, match="differs"):  # the proof is honest, the value is not
        client.storage(addr, ("balance", ALICE.address), prove=True)
    assert client.storage(addr, ("balance", ALICE.address)) == 10**6  # unproven answers are believed


def test_sdk_events(client, token):
    addr = token["address"]
    evs = client.events(contract=addr)
    assert evs[0].name == "Mint" and evs[0].data == {"to": OWNER.address, "amount": SUPPLY}
    t = [e for e in evs if e.tx_hash == token["transfer"]["hash"]]
    assert [(e.name, e.data, e.height, e.index) for e in t] == [
        ("Transfer", {"frm": OWNER.address, "to": ALICE.address, "amount": 100}, token["transfer"]["height"], 0)]
    assert client.events(contract=addr, name="Mint", from_height=evs[0].height, to_height=evs[0].height) == [evs[0]]


# ---- the node's log lines ----------------------------------------------------------------------------

def test_log_lines_of_contract_transactions():
    from node import tx_log_lines
    from ledger import tx as txs
    from gradchain import TestChain
    from gradchain.testing import CHAIN_ID

    chain = TestChain()
    k = chain.accounts[0]
    dtx = txs.deploy(k, CHAIN_ID, 0, SOURCE, [10], gas_limit=5_000_000)
    dr = chain.send(dtx)
    addr = contract_address(k.address, 0)
    [line] = tx_log_lines(dtx, dr, 7)
    assert f"deploy  from {address_hex(k.address)}  gas {dr.gas_used}  -> {address_hex(addr)}  block 7" in line
    ctx_ = txs.call(k, CHAIN_ID, 1, addr, "checked", [3], gas_limit=1_000_000)
    cr = chain.send(ctx_)
    assert tx_log_lines(ctx_, cr, 8) == [
        f"tx {ctx_.hash.hex()[:16]}  call {address_hex(addr)}.checked()  from {address_hex(k.address)}  "
        f"gas {cr.gas_used}  -> 3  block 8", "  print: checking 3"]
    ftx = txs.call(k, CHAIN_ID, 2, addr, "checked", [12], gas_limit=1_000_000)
    fr = chain.send(ftx)
    lines = tx_log_lines(ftx, fr, 9)
    assert f"FAILED: revert: too big (in check, line {CHECK_LINE})  block 9" in lines[0]
    assert lines[1:] == ["  print: checking 12"]
    # what a contract prints cannot forge log lines
    forged = Receipt(1, 21_000, logs=("ok\n2026-01-01 INFO gradchain.node: block 1", "\x1b[31mred"))
    out = tx_log_lines(ctx_, forged, 10)
    assert all("\n" not in s and "\x1b" not in s for s in out)
    assert out[1] == "  print: ok\\n2026-01-01 INFO gradchain.node: block 1"
