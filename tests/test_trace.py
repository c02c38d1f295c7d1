"""trace_tx against one real node (manual mining: every block is made by `mine`, so a block can
hold several transactions), the CLI's `tx --trace`, and the tracer in-process: gas and
receipts identical with and without it, its bounds, TestChain.trace_last."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json

import aiohttp
import numpy as np
import pytest

from gradchain import Tensor, TestChain
from gradchain.cli.main import main as cli_main
from gradchain.tracing import trace_text
from ledger import trace as ledger_trace
from ledger.block import Receipt
from ledger.genesis import devnet_keys
from ledger.tx import call as call_tx, contract_address, deploy as deploy_tx, transfer as transfer_tx
from mlcore.gas import ML_COMPILE
from tests.nodeproc import NodeProcess
from tests.test_rpc_errors import Node, assert_error
from vm import trace as vm_trace

INVALID_PARAMS, NOT_FOUND = -32602, -32001
KEYS = devnet_keys()
A, B, C = KEYS[0], KEYS[1], KEYS[2]
GAS = 2_000_000
ML_GAS = 400_000_000

INNER = '''"""Called by Outer."""


@export
def work(n: int) -> int:
    print("inner got", n)
    emit("Worked", n=n)
    require(n < 10, "n too big")
    return n * 2
'''
REQUIRE_LINE = 8  # the require() above

OUTER = '''"""Calls Inner."""


@export
def go(inner: bytes, n: int) -> int:
    print("outer start", n)
    emit("Start", n=n)
    r = call(inner, "work", n)
    return r + 1
'''

COUNTER = '''
@export
def bump() -> int:
    n = storage.get("n", 0) + 1
    storage["n"] = n
    return n
'''

CLASSIFIER = '''
@constructor
def init():
    storage["model"] = ml.model("softmax", [2, 2], 7)


@export
def predict(x) -> list:
    return ml.predict(storage["model"], x).tolist()
'''


class Chain:
    """The node and the signing a test needs: transactions broadcast, then one block mined."""

    def __init__(self, node: Node):
        self.node = node
        self.cid = node.chain_id

    def nonce(self, key) -> int:
        return self.node.nonce(key)

    def block(self, *txs) -> list[dict]:
        """Broadcast txs, mine one block; each one's `tx` answer (all in that block)."""
        for t in txs:
            self.node.result("broadcast_tx", {"tx": t.raw.hex()})
        self.node.result("mine", {"n": 1})
        return [self.node.result("tx", {"hash": t.hash.hex()}) for t in txs]

    def trace(self, tx) -> dict:
        return self.node.result("trace_tx", {"hash": tx.hash.hex()})


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("trace") / "node", "--mining", "manual").start()
    try:
        yield Node(proc)
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def chain(node) -> Chain:
    return Chain(node)


@pytest.fixture(scope="module")
def contracts(chain) -> dict:
    """Inner, Outer, Counter and the classifier, deployed by A in one block."""
    n = chain.nonce(A)
    txs = [deploy_tx(A, chain.cid, n + i, src, gas_limit=GAS) for i, src in enumerate((INNER, OUTER, COUNTER))]
    txs.append(deploy_tx(A, chain.cid, n + 3, CLASSIFIER, gas_limit=ML_GAS))
    for r in chain.block(*txs):
        assert r["receipt"]["status"] == "success", r
    inner, outer, counter, ml = (contract_address(A.address, n + i) for i in range(4))
    return {"inner": inner, "outer": outer, "counter": counter, "ml": ml, "deploys": txs}


def test_cross_contract_call(chain, contracts):
    tx = call_tx(B, chain.cid, chain.nonce(B), contracts["outer"], "go", [contracts["inner"], 3], gas_limit=GAS)
    (committed,) = chain.block(tx)
    t = chain.trace(tx)
    rc = committed["receipt"]
    assert (t["kind"], t["status"], t["gas_used"], t["revert"], t["truncated"]) == ("call", "success", rc["gas_used"],
                                                                                  None, False)
    assert t["hash"] == tx.hash.hex() and t["height"] == committed["height"] and t["receipt"] == rc
    root = t["call"]
    assert root["function"] == "go" and root["contract"] == "0x" + contracts["outer"].hex()
    assert root["args"] == ["0x" + contracts["inner"].hex(), 3] and root["result"] == 7
    assert root["logs"] == ["outer start 3"] and [e["name"] for e in root["events"]] == ["Start"]
    (child,) = root["calls"]
    assert (child["function"], child["args"], child["result"], child["caller"]) == \
        ("work", [3], 6, "0x" + contracts["outer"].hex())
    assert child["logs"] == ["inner got 3"] and child["events"][0]["data"] == {"n": 3}
    # gas: the tree accounts for every unit the receipt charged
    assert root["gas_used"] == rc["gas_used"] - t["intrinsic_gas"]
    assert root["own_gas"] == root["gas_used"] - child["gas_used"] and child["own_gas"] == child["gas_used"] > 0
    assert [e["index"] for e in root["events"] + child["events"]] == [0, 1]


def test_revert_in_the_inner_call_has_its_line(chain, contracts):
    tx = call_tx(B, chain.cid, chain.nonce(B), contracts["outer"], "go", [contracts["inner"], 30], gas_limit=GAS)
    (committed,) = chain.block(tx)
    assert committed["receipt"]["status"] == "failed"
    t = chain.trace(tx)
    assert t["status"] == "failed" and t["error"] == "n too big"
    assert t["revert"] == {"code": "revert", "message": "n too big", "contract": "0x" + contracts["inner"].hex(),
                           "function": "work", "line": REQUIRE_LINE}
    root = t["call"]
    (child,) = root["calls"]
    assert child["error"] == t["revert"] and root["error"] == t["revert"] and root["result"] is None
    # what ran before the revert is shown, though the receipt keeps no events
    assert committed["receipt"]["events"] == [] and child["events"][0]["data"] == {"n": 30}
    assert child["logs"] == ["inner got 30"] and committed["receipt"]["logs"] == ["outer start 30", "inner got 30"]
    text = trace_text(t)
    assert "failed in work, line 8" in text and "\n    call work(30) on" in text


def test_ml_call_with_shapes_and_compile_gas(chain, contracts):
    x = Tensor.from_numpy(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    tx = call_tx(B, chain.cid, chain.nonce(B), contracts["ml"], "predict", [x], gas_limit=ML_GAS)
    (committed,) = chain.block(tx)
    assert committed["receipt"]["status"] == "success", committed
    t = chain.trace(tx)
    root = t["call"]
    assert root["args"] == [{"tensor": {"format": "q16", "shape": [3, 2]}}]  # by shape, not data
    (m,) = root["ml"]
    assert m["op"] == "ml.predict" and m["error"] is None
    assert m["args"] == [{"model": {"kind": "softmax", "layers": [2, 2]}}, {"tensor": {"format": "q16", "shape": [3, 2]}}]
    assert m["result"] == {"tensor": {"format": "int", "shape": [3]}}
    assert m["compile_gas"] == ML_COMPILE and ML_COMPILE < m["gas_used"] < root["own_gas"]
    assert "ml.predict(softmax model (2, 2), q16(3, 2)) -> int(3,)" in trace_text(t)


def test_the_state_before_includes_the_earlier_txs_of_its_block(chain, contracts):
    nb, nc = chain.nonce(B), chain.nonce(C)
    txs = [call_tx(B, chain.cid, nb, contracts["counter"], "bump", gas_limit=GAS),
           transfer_tx(C, chain.cid, nc, A.address, 5),
           call_tx(B, chain.cid, nb + 1, contracts["counter"], "bump", gas_limit=GAS),
           call_tx(C, chain.cid, nc + 1, contracts["counter"], "bump", gas_limit=GAS)]
    got = chain.block(*txs)
    assert len({r["height"] for r in got}) == 1 and [r["index"] for r in got] == [0, 1, 2, 3]
    t = chain.trace(txs[3])
    assert t["index"] == 3 and t["call"]["result"] == 3 == got[3]["receipt"]["result"]
    assert chain.trace(txs[0])["call"]["result"] == 1
    transfer = chain.trace(txs[1])
    assert (transfer["kind"], transfer["call"], transfer["gas_used"], transfer["to"]) == \
        ("transfer", None, 21_000, "0x" + A.address.hex())
    assert "(no contract code ran)" in trace_text(transfer)


def test_a_deploy_traces_its_constructor(chain, contracts):
    t = chain.trace(contracts["deploys"][3])
    assert t["kind"] == "deploy" and t["to"] == "0x" + contracts["ml"].hex()
    assert t["call"]["function"] == "init" and t["call"]["ml"][0]["op"] == "ml.model"


@pytest.mark.parametrize("hash_, code, words", [
    ("zz", INVALID_PARAMS, ["hash"]),
    ("ab" * 31, INVALID_PARAMS, ["32 bytes"]),
    (17, INVALID_PARAMS, ["hex string"]),
    (None, INVALID_PARAMS, ["hex string"]),
    ("00" * 32, NOT_FOUND, ["no transaction", "00" * 32]),
])
def test_bad_hashes(node, hash_, code, words):
    assert_error(node.rpc("trace_tx", {"hash": hash_}), code, *words)


def test_missing_and_extra_params(node):
    assert_error(node.rpc("trace_tx", []), INVALID_PARAMS, "hash")
    assert_error(node.rpc("trace_tx", {"hash": "00" * 32, "depth": 3}), INVALID_PARAMS, "depth")


def test_a_pending_tx_is_not_traced_yet(chain, node):
    tx = transfer_tx(A, chain.cid, chain.nonce(A), B.address, 1)
    node.result("broadcast_tx", {"tx": tx.raw.hex()})
    try:
        assert_error(node.rpc("trace_tx", {"hash": tx.hash.hex()}), NOT_FOUND, "pending", "once it is committed")
    finally:
        node.result("mine", {"n": 1})
    assert chain.trace(tx)["kind"] == "transfer"


def test_over_the_websocket(node, chain, contracts):
    tx = contracts["deploys"][0]

    async def ask() -> dict:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{node.proc.url}/ws") as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 5, "method": "trace_tx", "params": [tx.hash.hex()]})
            return json.loads((await ws.receive(timeout=30)).data)
    got = asyncio.run(ask())
    assert got["id"] == 5 and got["result"] == chain.trace(tx)


def test_sdk_and_cli(node, chain, contracts):
    tx = call_tx(B, chain.cid, chain.nonce(B), contracts["outer"], "go", [contracts["inner"], 4], gas_limit=GAS)
    chain.block(tx)
    with node.proc.client() as c:
        assert c.trace_tx(tx.hash) == c.trace_tx(tx.hash.hex()) == chain.trace(tx)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["tx", tx.hash.hex(), "--trace", "--rpc", node.proc.url]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"Transaction {tx.hash.hex()}  block ")
    assert lines[2].startswith("  call go(") and "-> 9" in lines[2]
    assert lines[3] == "    print: outer start 4" and lines[4] == '    event Start {"n":4}'
    assert lines[5].startswith("    call work(4) on 0x") and "-> 8" in lines[5]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["tx", tx.hash.hex(), "--trace", "--json", "--rpc", node.proc.url]) == 0
    assert json.loads(out.getvalue()) == chain.trace(tx)


# ---- in-process: the tracer changes nothing, and keeps to its bounds ---------------------------

LOOP = '''
@export
def many(inner: bytes, n: int, text: str) -> int:
    total = 0
    for i in range(n):
        total += call(inner, "noop", i)
    print(text)
    return total
'''
NOOP = '''
@export
def noop(i: int) -> int:
    return i
'''


def _untraced_and_traced(chain: TestChain) -> tuple[Receipt, Receipt]:
    tx, env, undo, receipt = chain._last
    out = ledger_trace.trace(lambda k: undo[k] if k in undo else chain.state.get(k), env, (), tx, receipt)
    return receipt, out.receipt


@pytest.mark.parametrize("n, gas", [(3, 10_000_000), (30, 10_000_000), (3, 40_000)])
def test_gas_is_the_same_with_and_without_the_tracer(n, gas):
    """Success, a revert deep inside, and out of gas half way: every field of the receipt equal."""
    c = TestChain()
    inner, outer = c.deploy(INNER), c.deploy(OUTER)
    with contextlib.suppress(Exception):
        outer.go(inner.address, n, gas=gas)
    plain, traced = _untraced_and_traced(c)
    assert plain == traced and plain.gas_used > 0
    t = c.trace_last()
    assert t["gas_used"] == plain.gas_used
    if gas == 40_000:
        assert t["revert"]["code"] == "out_of_gas"


def test_a_receipt_that_is_not_reproduced_is_refused():
    c = TestChain()
    counter = c.deploy(COUNTER)
    counter.bump()
    tx, env, undo, receipt = c._last
    wrong = Receipt(receipt.status, receipt.gas_used + 1, receipt.error, receipt.events, receipt.output)
    with pytest.raises(ledger_trace.NotReproduced, match="trace does not reproduce the receipt") as e:
        ledger_trace.trace(lambda k: undo[k] if k in undo else c.state.get(k), env, (), tx, wrong)
    assert e.value.fields == ["gas_used"]


def test_bounds_set_truncated():
    c = TestChain()
    inner, loop = c.deploy(NOOP), c.deploy(LOOP)
    n = vm_trace.MAX_CALLS + 5
    assert loop.many(inner.address, n, "x" * 1000, gas=90_000_000) == n * (n - 1) // 2
    t = c.trace_last()
    assert t["truncated"] is True
    root = t["call"]
    assert len(root["calls"]) == vm_trace.MAX_CALLS - 1  # the root is one of the calls kept
    assert root["args"][2].startswith("x" * vm_trace.MAX_TEXT + "... (1000 characters)")
    assert root["gas_used"] == t["gas_used"] - t["intrinsic_gas"]
    assert root["own_gas"] < root["gas_used"] - sum(ch["gas_used"] for ch in root["calls"])  # the calls left out
    assert len(json.dumps(t)) < 1 << 20
    small = c.deploy(LOOP)
    small.many(inner.address, 2, "y")
    assert c.trace_last()["truncated"] is False


def test_testchain_trace_last_follows_snapshots():
    c = TestChain()
    counter = c.deploy(COUNTER)
    counter.bump()
    with c.snapshot():
        counter.bump()
        assert c.trace_last()["call"]["result"] == 2
    assert c.trace_last()["call"]["result"] == 1
    with pytest.raises(ValueError, match="no transaction"):
        TestChain().trace_last()
