"""The JSON-RPC error surface of a real node, spoken in raw HTTP (so the bytes are ours).

Every answer is checked for its JSON-RPC error code and a message that says what is
wrong, and after every test the node must still serve `status`.
"""
from __future__ import annotations

import http.client
import json
import random
import time
from typing import Any

import pytest

from ledger.genesis import devnet_keys
from ledger.encoding import decode, encode
from ledger.hashing import hash_bytes
from ledger.keys import PrivateKey
from ledger.params import ChainParams
from ledger.tx import transfer
from ledger.units import format_grad
from net.rpc import MAX_BATCH
from tests.nodeproc import NodeProcess

PARSE, INVALID_REQ, NO_METHOD, INVALID_PARAMS = -32700, -32600, -32601, -32602
REJECTED, NOT_FOUND = -32000, -32001
MAX_BODY = 16 << 20  # node.NodeConfig.max_body_bytes (no command-line flag)
KEYS = devnet_keys()
HASH0 = "00" * 32
ADDR = "0x" + KEYS[0].address.hex()


class Node:
    def __init__(self, proc: NodeProcess):
        self.proc = proc
        self.port = proc.port
        self.chain_id = proc.client().chain_id

    def post(self, body: bytes | str, timeout: float = 30) -> tuple[int, Any]:
        """POST raw bytes; (HTTP status, decoded JSON or None for an empty body)."""
        if isinstance(body, str):
            body = body.encode()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("POST", "/", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        return r.status, (json.loads(data) if data else None)

    def rpc(self, method: Any, params: Any = None, id: Any = 1) -> dict:
        req: dict = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            req["params"] = params
        status, resp = self.post(json.dumps(req))
        assert status == 200 and isinstance(resp, dict), (status, resp)
        assert resp["jsonrpc"] == "2.0"
        return resp

    def result(self, method: str, params: Any = None) -> Any:
        resp = self.rpc(method, params)
        assert "error" not in resp, resp
        return resp["result"]

    def height(self) -> int:
        return self.result("status")["height"]

    def nonce(self, key: PrivateKey) -> int:
        return self.result("account", {"address": "0x" + key.address.hex()})["pending_nonce"]


def assert_error(resp: dict, code: int, *words: str, id: Any = 1) -> dict:
    assert "result" not in resp, resp
    err = resp["error"]
    assert err["code"] == code, resp
    assert resp["id"] == id, resp
    msg = err["message"]
    assert isinstance(msg, str) and len(msg) > 10, resp
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    return err


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("rpc") / "node", block_time=0.2).start()
    try:
        yield Node(proc)
    finally:
        proc.kill()


@pytest.fixture(autouse=True)
def still_serves(node):
    yield
    assert node.proc.alive(), "the node died"
    st = node.result("status")
    assert st["chain_id"] == node.chain_id


# ---- malformed requests ------------------------------------------------------------------------

@pytest.mark.parametrize("body, code, word", [
    (b"", PARSE, "not JSON"),
    (b"{", PARSE, "not JSON"),
    (b'{"jsonrpc": "2.0", "method": "status", "id": 1,}', PARSE, "not JSON"),
    (b"\xff\xfe\x00garbage", PARSE, "not JSON"),
    (b"[" * 100_000, PARSE, "not JSON"),  # deep nesting must not crash the parser
    (b"1", INVALID_REQ, "jsonrpc"),
    (b'"status"', INVALID_REQ, "jsonrpc"),
    (b"null", INVALID_REQ, "jsonrpc"),
    (b"true", INVALID_REQ, "jsonrpc"),
    (b"[]", INVALID_REQ, "batch"),
    (b'{"method": "status", "id": 1}', INVALID_REQ, "jsonrpc"),
    (b'{"jsonrpc": "1.0", "method": "status", "id": 1}', INVALID_REQ, "jsonrpc"),
    (b'{"jsonrpc": 2.0, "method": "status", "id": 1}', INVALID_REQ, "jsonrpc"),
    (b'{"jsonrpc": "2.0", "method": 5, "id": 1}', INVALID_REQ, "method"),
    (b'{"jsonrpc": "2.0", "method": null, "id": 1}', INVALID_REQ, "method"),
    (b'{"jsonrpc": "2.0", "id": 1}', INVALID_REQ, "method"),
    (b'{"jsonrpc": "2.0", "method": "status", "id": 1.5}', INVALID_REQ, "id"),
    (b'{"jsonrpc": "2.0", "method": "status", "id": [1]}', INVALID_REQ, "id"),
    (b'{"jsonrpc": "2.0", "method": "status", "id": true}', INVALID_REQ, "id"),
], ids=lambda v: v[:40].decode("latin-1") if isinstance(v, bytes) else str(v))
def test_malformed_request(node, body, code, word):
    status, resp = node.post(body)
    assert status == 200
    assert isinstance(resp, dict), resp
    assert_error(resp, code, word, id=None)


def test_batch_over_max_size(node):
    reqs = [{"jsonrpc": "2.0", "method": "status", "id": i} for i in range(MAX_BATCH + 1)]
    status, resp = node.post(json.dumps(reqs))
    assert status == 200
    assert_error(resp, INVALID_REQ, "batch", str(MAX_BATCH), id=None)


def test_batch_of_max_size_is_answered(node):
    reqs = [{"jsonrpc": "2.0", "method": "status", "id": i} for i in range(MAX_BATCH)]
    status, resp = node.post(json.dumps(reqs))
    assert status == 200 and len(resp) == MAX_BATCH
    assert sorted(r["id"] for r in resp) == list(range(MAX_BATCH))
    assert all("result" in r for r in resp)


def test_body_over_the_size_limit(node):
    body = json.dumps({"jsonrpc": "2.0", "method": "status", "id": 1, "pad": "x" * MAX_BODY}).encode()
    assert len(body) > MAX_BODY
    status, resp = node.post(body)
    assert status == 413
    assert_error(resp, INVALID_REQ, "body", "limit", str(MAX_BODY), id=None)


def test_other_paths_and_http_methods(node):
    for method, path, code in (("GET", "/nope", 404), ("POST", "/nope", 404), ("PUT", "/", 405),
                               ("DELETE", "/", 405)):
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        c.request(method, path, b"{}")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == code, (method, path, r.status)


def test_unknown_method(node):
    assert_error(node.rpc("no_such_method"), NO_METHOD, "method not found", "no_such_method")
    assert_error(node.rpc("Status"), NO_METHOD, "Status")
    assert_error(node.rpc(""), NO_METHOD, "method not found")
    assert_error(node.rpc("__init__"), NO_METHOD, "method not found")


@pytest.mark.parametrize("params", [5, "abc", True], ids=["int", "str", "bool"])
def test_params_neither_array_nor_object(node, params):
    assert_error(node.rpc("status", params), INVALID_REQ, "params", "array or an object")
    assert_error(node.rpc("block", params), INVALID_REQ, "params")


# ---- invalid params, for every method -------------------------------------------------------------

BAD_PARAMS = [
    # (method, params, words in the message)
    ("status", [1], ["too many"]),
    ("status", {"verbose": True}, ["verbose"]),
    ("genesis", [1], ["too many"]),
    ("genesis", {"x": 1}, ["x"]),
    ("block", {"height": "abc"}, ["height", "integer"]),
    ("block", {"height": -1}, ["height", "integer"]),
    ("block", {"height": True}, ["height", "integer"]),
    ("block", {"height": 1.0}, ["height", "integer"]),
    ("block", {"height": [0]}, ["height"]),
    ("block", ["abc"], ["height"]),
    ("block", {"hash": "zz" * 32}, ["hash", "hex"]),
    ("block", {"hash": "00" * 31}, ["hash", "32 bytes"]),
    ("block", {"hash": "00" * 33}, ["hash", "32 bytes"]),
    ("block", {"hash": "abc"}, ["hash", "hex"]),
    ("block", {"hash": 12}, ["hash", "hex"]),
    ("block", {"height": 0, "hash": HASH0}, ["height or hash"]),
    ("block", {"height": 0, "full": "yes"}, ["full", "true or false"]),
    ("block", {"height": 0, "full": 1}, ["full", "true or false"]),
    ("block", [0, None, False, 1], ["too many"]),
    ("block", {"heigth": 0}, ["heigth"]),
    ("tx", [], ["hash"]),
    ("tx", {"hash": "xyz"}, ["hash", "hex"]),
    ("tx", {"hash": "00" * 20}, ["hash", "32 bytes"]),
    ("tx", {"hash": None}, ["hash", "hex"]),
    ("tx", [HASH0, 1], ["too many"]),
    ("tx", {"hash": HASH0, "full": True}, ["full"]),
    ("account", [], ["address"]),
    ("account", {"address": "0x1234"}, ["address", "40 hex"]),
    ("account", {"address": "0x" + "zz" * 20}, ["address", "hex"]),
    ("account", {"address": 1234}, ["address", "string"]),
    ("account", {"address": "0x" + "00" * 21}, ["address", "40 hex"]),
    ("account", {"address": ADDR, "height": "abc"}, ["height", "integer"]),
    ("account", {"address": ADDR, "height": -3}, ["height", "integer"]),
    ("account", {"address": ADDR, "height": False}, ["height", "integer"]),
    ("account", {"address": ADDR, "prove": "true"}, ["prove", "true or false"]),
    ("account", {"address": ADDR, "prove": 1}, ["prove", "true or false"]),
    ("account", [ADDR, None, False, 1], ["too many"]),
    ("account", {"address": ADDR, "proof": True}, ["proof"]),
    ("validators", {"height": "abc"}, ["height", "integer"]),
    ("validators", {"height": -1}, ["height", "integer"]),
    ("validators", [None, 1], ["too many"]),
    ("broadcast_tx", [], ["tx"]),
    ("broadcast_tx", {"tx": "nothex"}, ["tx", "hex"]),
    ("broadcast_tx", {"tx": "abc"}, ["tx", "hex"]),
    ("broadcast_tx", {"tx": 1234}, ["tx", "hex"]),
    ("broadcast_tx", {"tx": ["00"]}, ["tx", "hex"]),
    ("broadcast_tx", ["00", 1], ["too many"]),
    ("broadcast_tx", {"raw": "00"}, ["tx"]),
    ("broadcast_tx_async", {"tx": "nothex"}, ["tx", "hex"]),
    ("broadcast_tx_async", [], ["tx"]),
    ("broadcast_tx_commit", {"tx": "nothex"}, ["tx", "hex"]),
    ("broadcast_tx_commit", {"tx": "00", "timeout": "abc"}, ["timeout"]),
    ("broadcast_tx_commit", {"tx": "00", "timeout": 0}, ["timeout"]),
    ("broadcast_tx_commit", {"tx": "00", "timeout": -1}, ["timeout"]),
    ("broadcast_tx_commit", {"tx": "00", "timeout": 601}, ["timeout"]),
    ("broadcast_tx_commit", {"tx": "00", "timeout": True}, ["timeout"]),
    ("broadcast_tx_commit", ["00", 1, 2], ["too many"]),
    # the contract methods (every bad input of theirs: tests/test_rpc_contracts.py)
    ("call", {"contract": ADDR}, ["function"]),
    ("call", {"contract": ADDR, "function": "f", "args": [1.5]}, ["args[0]", "float"]),
    ("estimate_gas", {"contract": ADDR, "function": "f"}, ["'from'"]),
    ("storage", {"contract": ADDR, "key": [1]}, ["key"]),
    ("code", {"address": "0x12"}, ["address"]),
    ("events", {"limit": 0}, ["limit"]),
    # the blob methods (every bad input of theirs: tests/test_rpc_blobs.py)
    ("put_blob_chunk", {"blob": {"root": HASH0, "size": 1, "chunk_bytes": 4096}, "index": 0, "chunk": "zz",
                        "proof": []}, ["chunk", "hex"]),
    ("blob", {"root": "00"}, ["root", "32 bytes"]),
    ("blob_chunk", {"root": HASH0}, ["index"]),
    # the job methods
    ("job", {"id": -1}, ["id"]),
    ("job", {"id": 2**64}, ["id", "2**64"]),
    ("job", {"id": 0, "model": "yes"}, ["model", "true or false"]),
    ("job", {"id": "0"}, ["id"]),
    ("jobs", {"status": "done"}, ["status", "posted"]),
    ("jobs", {"limit": 0}, ["limit", "1 to 100"]),
    ("jobs", {"limit": 101}, ["limit"]),
    ("mine", [0], ["n", "integer"]),
    ("mine", {"n": "2"}, ["n", "integer"]),
    ("devnet_snapshot", [1], ["too many"]),
    ("devnet_revert", {"id": "x"}, ["id", "integer"]),
    ("devnet_revert", [], ["id"]),
    ("devnet_set_time", {"time_ms": -1}, ["time_ms", "integer"]),
    ("devnet_increase_time", {"ms": "1"}, ["ms", "integer"]),
    ("devnet_set_balance", {"address": "0x12", "amount": 1}, ["address"]),
    ("devnet_set_balance", {"address": "0x" + "ab" * 20, "amount": -1}, ["amount", "integer"]),
    ("devnet_dump", [1], ["too many"]),
    ("devnet_load", {"dump": 5}, ["dump"]),
    ("trace_tx", {"hash": "zz"}, ["hash", "hex"]),
    ("trace_tx", [], ["hash"]),
    ("contract_models", {"contract": "0x12"}, ["contract"]),
    ("contract_models", [], ["contract"]),
    ("validator_activity", {"blocks": 0}, ["blocks"]),
    ("validator_activity", {"blocks": "many"}, ["blocks"]),
]


@pytest.mark.parametrize("method, params, words", BAD_PARAMS,
                         ids=[f"{m}-{json.dumps(p)[:40]}" for m, p, _ in BAD_PARAMS])
def test_invalid_params(node, method, params, words):
    err = assert_error(node.rpc(method, params), INVALID_PARAMS, "invalid params", *words)
    assert "data" not in err or err["data"] is None


def test_every_method_is_covered(node):
    """BAD_PARAMS must name every method the node serves (so a new one gets checked)."""
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    c.request("GET", "/")
    methods = json.loads(c.getresponse().read())["methods"]
    c.close()
    assert set(methods) == {m for m, _, _ in BAD_PARAMS}


@pytest.mark.parametrize("address", ["0x" + "ab" * 19 + "  ", " " + "ab" * 19 + " ", "0x" + "ab" * 18 + "\n\t  "])
def test_address_with_whitespace_is_rejected(node, address):
    assert_error(node.rpc("account", {"address": address}), INVALID_PARAMS, "address")


def test_failed_notifications_get_no_answer(node):
    """JSON-RPC 2.0: a notification is never answered, even when it fails."""
    for req in ({"jsonrpc": "2.0", "method": "no_such_method"},
                {"jsonrpc": "2.0", "method": "block", "params": {"height": "abc"}}):
        status, body = node.post(json.dumps(req).encode())
        assert status == 204 and body is None


# ---- not found -----------------------------------------------------------------------------------

def test_not_found(node):
    h = node.height()
    assert_error(node.rpc("tx", {"hash": HASH0}), NOT_FOUND, "no transaction", HASH0)
    assert_error(node.rpc("tx", ["0x" + "ab" * 32]), NOT_FOUND, "ab" * 32)
    assert_error(node.rpc("block", {"hash": HASH0}), NOT_FOUND, "no block", HASH0)
    for future in (h + 1000, 2**63, 2**70):
        assert_error(node.rpc("block", {"height": future}), NOT_FOUND, "no block at height", str(future))
        assert_error(node.rpc("account", {"address": ADDR, "height": future}), NOT_FOUND, "no block at height")
        assert_error(node.rpc("validators", {"height": future}), NOT_FOUND, "no block at height")
    # ... while what exists is found
    assert node.result("block", {"height": 0})["header"]["height"] == 0
    assert node.result("block", [h])["header"]["height"] == h


# ---- notifications and batches -------------------------------------------------------------------

def test_notifications_get_no_body(node):
    status, resp = node.post(b'{"jsonrpc": "2.0", "method": "status"}')
    assert (status, resp) == (204, None)
    status, resp = node.post(b'{"jsonrpc": "2.0", "method": "block", "params": {"height": 0}}')
    assert (status, resp) == (204, None)
    status, resp = node.post(json.dumps([{"jsonrpc": "2.0", "method": "status"}] * 3))
    assert (status, resp) == (204, None)
    # a notification inside a batch gets no answer; the others do
    status, resp = node.post(json.dumps([{"jsonrpc": "2.0", "method": "status"},
                                         {"jsonrpc": "2.0", "method": "status", "id": "x"}]))
    assert status == 200 and [r["id"] for r in resp] == ["x"]


def test_ids_are_echoed_in_batch_answers(node):
    ids = [0, 1, -7, 2**53 + 1, 10**30, "a", "", "é ☃", "0", None]
    reqs = [{"jsonrpc": "2.0", "method": "status", "id": i} for i in ids]
    status, resp = node.post(json.dumps(reqs))
    assert status == 200 and isinstance(resp, list) and len(resp) == len(ids)
    assert sorted(map(json.dumps, (r["id"] for r in resp))) == sorted(map(json.dumps, ids))
    assert all(r["jsonrpc"] == "2.0" and "result" in r for r in resp)
    # single requests too
    for i in ids:
        assert node.rpc("status", id=i)["id"] == i


def test_batch_mixing_valid_and_invalid_requests(node):
    key = KEYS[7]
    n = node.nonce(key)
    good = transfer(key, node.chain_id, n, KEYS[8].address, 1)
    low = transfer(key, node.chain_id, max(0, n - 1), KEYS[8].address, 2) if n else \
        transfer(key, node.chain_id, n + 5, KEYS[8].address, 2)
    reqs = [
        {"jsonrpc": "2.0", "method": "status", "id": "st"},
        {"jsonrpc": "2.0", "method": "nope", "id": "nm"},
        1,
        {"jsonrpc": "1.0", "method": "status", "id": "v1"},
        {"jsonrpc": "2.0", "method": "block", "params": {"height": "abc"}, "id": "bp"},
        {"jsonrpc": "2.0", "method": "block", "params": {"height": 0}, "id": "b0"},
        {"jsonrpc": "2.0", "method": "broadcast_tx", "params": {"tx": good.raw.hex()}, "id": "ok"},
        {"jsonrpc": "2.0", "method": "broadcast_tx", "params": [low.raw.hex()], "id": "bad"},
        {"jsonrpc": "2.0", "method": "broadcast_tx", "params": {"tx": "zz"}, "id": "hex"},
        {"jsonrpc": "2.0", "method": "tx", "params": {"hash": HASH0}, "id": "nf"},
        {"jsonrpc": "2.0", "method": "status"},  # a notification: no answer
        [],
    ]
    status, resp = node.post(json.dumps(reqs))
    assert status == 200 and isinstance(resp, list)
    assert len(resp) == len(reqs) - 1
    by_id: dict = {}
    for r in resp:
        by_id.setdefault(r["id"], []).append(r)
    assert by_id["st"][0]["result"]["chain_id"] == node.chain_id
    assert_error(by_id["nm"][0], NO_METHOD, "nope", id="nm")
    assert_error(by_id["bp"][0], INVALID_PARAMS, "height", id="bp")
    assert by_id["b0"][0]["result"]["header"]["height"] == 0
    assert by_id["ok"][0]["result"] == {"hash": good.hash.hex()}
    err = assert_error(by_id["bad"][0], REJECTED, "nonce", id="bad")
    assert err["data"]["reason"] in ("nonce_too_low", "nonce_too_high")
    assert_error(by_id["hex"][0], INVALID_PARAMS, "tx", "hex", id="hex")
    assert_error(by_id["nf"][0], NOT_FOUND, "no transaction", id="nf")
    # the three invalid request objects cannot be tied to an id
    assert len(by_id[None]) == 3
    for r in by_id[None]:
        assert_error(r, INVALID_REQ, "invalid request", id=None)


# ---- rejected transactions -------------------------------------------------------------------------

def _flip(raw: bytes, pos: int) -> bytes:
    b = bytearray(raw)
    b[pos] ^= 0x01
    return bytes(b)


@pytest.fixture(scope="module")
def rejected_cases(node) -> dict[str, tuple[bytes, str, list[str]]]:
    """name -> (raw tx, reason code, words of the message). None of these is admitted,
    so they do not change any state and can be sent in any order, any number of times."""
    cid = node.chain_id
    low_key, key = KEYS[1], KEYS[2]
    # a committed transaction, to send again
    committed = transfer(low_key, cid, node.nonce(low_key), KEYS[3].address, 1)
    r = node.result("broadcast_tx_commit", {"tx": committed.raw.hex(), "timeout": 10})
    assert r["receipt"]["status"] == "success"
    n = node.nonce(key)
    balance = node.result("account", {"address": "0x" + key.address.hex()})["balance"]
    to = KEYS[3].address
    ok = transfer(key, cid, n, to, 1)
    nobody = PrivateKey.from_label("rpc errors: an account with no coins")
    rng = random.Random(7)
    body = decode(ok.raw)
    huge = encode(body[:7] + [[to, 1, b"\x00" * (ChainParams().max_tx_bytes + 1)]] + body[8:])
    tampered = encode(body[:7] + [[to, 10**6]] + body[8:])  # amount changed after signing
    assert ok.raw[1] == 0x01  # version 1 as a positive fixint
    non_minimal = ok.raw[:1] + b"\xcc\x01" + ok.raw[2:]
    return {
        "bad_signature": (_flip(ok.raw, len(ok.raw) - 1), "bad_signature", ["signature"]),
        "bad_signature_tampered": (tampered, "bad_signature", ["signature"]),
        "bad_signature_other_sender": (encode(body[:2] + [nobody.public_key] + body[3:]), "bad_signature",
                                       ["signature"]),
        "wrong_chain_id": (transfer(key, "another-chain", n, to, 1).raw, "wrong_chain_id", ["chain", "another-chain"]),
        # the committed tx's nonce again, in a different tx (the same bytes again are a retry)
        "nonce_too_low": (transfer(low_key, cid, committed.nonce, KEYS[4].address, 2).raw, "nonce_too_low",
                          ["nonce", "too low"]),
        "resent_committed": (committed.raw, "nonce_too_low", ["nonce", "too low"]),
        "nonce_too_high": (transfer(key, cid, n + 1, to, 1).raw, "nonce_too_high", ["nonce", "too high"]),
        "nonce_far_too_high": (transfer(key, cid, 2**64 - 1, to, 1).raw, "nonce_too_high", ["nonce", "too high"]),
        "insufficient_funds_empty": (transfer(nobody, cid, 0, to, 1).raw, "insufficient_funds", ["balance", "pay"]),
        "insufficient_funds_empty_zero_amount": (transfer(nobody, cid, 0, to, 0).raw, "insufficient_funds",
                                                 ["balance"]),
        "insufficient_funds_amount": (transfer(key, cid, n, to, balance).raw, "insufficient_funds",
                                      ["balance", format_grad(balance)]),  # the node speaks GRAD
        "insufficient_funds_max_amount": (transfer(key, cid, n, to, 2**64 - 1).raw, "insufficient_funds",
                                          ["balance"]),
        "insufficient_funds_gas": (transfer(key, cid, n, to, 0, gas_price=balance).raw, "insufficient_funds",
                                   ["balance"]),
        "malformed_random": (bytes(rng.randrange(256) for _ in range(200)), "malformed", ["msgpack"]),
        "malformed_empty": (b"", "malformed", ["msgpack"]),
        "malformed_truncated": (ok.raw[:-1], "malformed", ["msgpack"]),
        "malformed_trailing": (ok.raw + b"\x00", "malformed", ["trailing"]),
        "malformed_non_canonical": (non_minimal, "malformed", ["canonical"]),
        "malformed_8_fields": (encode(body[:8]), "malformed", ["9 fields"]),
        "malformed_map": (encode({"tx": 1}), "malformed", ["9 fields"]),
        "malformed_version": (encode([2] + body[1:]), "malformed", ["version"]),
        "malformed_kind": (encode(body[:6] + [9] + body[7:]), "malformed", ["kind"]),
        "malformed_short_recipient": (encode(body[:7] + [[to[:19], 1]] + body[8:]), "malformed", ["address"]),
        "malformed_short_signature": (encode(body[:8] + [body[8][:63]]), "malformed", ["signature"]),
        "malformed_empty_chain_id": (encode(body[:1] + [""] + body[2:]), "malformed", ["chain id"]),
        "too_large": (huge, "too_large", ["bytes", "limit", str(ChainParams().max_tx_bytes)]),
        "gas_limit_too_low": (transfer(key, cid, n, to, 1, gas_limit=20_999).raw, "gas_limit_too_low",
                              ["gas limit", "20999", "intrinsic"]),
        "gas_limit_too_high": (transfer(key, cid, n, to, 1, gas_limit=ChainParams().max_block_gas + 1).raw,
                               "gas_limit_too_high", ["gas limit", "block gas limit"]),
        "fee_too_low": (transfer(key, cid, n, to, 1, gas_price=0).raw, "fee_too_low", ["gas price", "minimum"]),
    }


CASES = ["bad_signature", "bad_signature_tampered", "bad_signature_other_sender", "wrong_chain_id",
         "nonce_too_low", "nonce_too_high", "nonce_far_too_high", "insufficient_funds_empty",
         "insufficient_funds_empty_zero_amount", "insufficient_funds_amount", "insufficient_funds_max_amount",
         "insufficient_funds_gas", "malformed_random", "malformed_empty", "malformed_truncated",
         "malformed_trailing", "malformed_non_canonical", "malformed_8_fields", "malformed_map",
         "malformed_version", "malformed_kind", "malformed_short_recipient", "malformed_short_signature",
         "malformed_empty_chain_id", "too_large", "gas_limit_too_low", "gas_limit_too_high", "fee_too_low"]


def check_rejected(resp: dict, reason: str, words: list[str], id: Any = 1) -> None:
    err = assert_error(resp, REJECTED, "transaction rejected", *words, id=id)
    assert err["data"]["reason"] == reason, err
    assert err["message"] == "transaction rejected: " + err["data"]["message"]


def test_cases_are_listed(rejected_cases):
    assert set(CASES) | {"resent_committed"} == set(rejected_cases)


@pytest.mark.parametrize("method", ["broadcast_tx", "broadcast_tx_commit"])
@pytest.mark.parametrize("case", CASES)
def test_rejected_transaction(node, rejected_cases, case, method):
    raw, reason, words = rejected_cases[case]
    check_rejected(node.rpc(method, {"tx": raw.hex()}), reason, words)


def test_resending_a_committed_tx(node, rejected_cases):
    """The same bytes again: broadcast_tx refuses (its nonce is used), broadcast_tx_commit
    treats it as a retry and answers with the original receipt."""
    raw = rejected_cases["resent_committed"][0]
    check_rejected(node.rpc("broadcast_tx", {"tx": raw.hex()}), "nonce_too_low", ["nonce", "too low"])
    r = node.result("broadcast_tx_commit", {"tx": raw.hex(), "timeout": 5})
    first = node.result("tx", {"hash": hash_bytes(raw).hex()})
    assert (r["height"], r["index"], r["receipt"]) == (first["height"], first["index"], first["receipt"])


def test_rejected_transactions_in_one_batch(node, rejected_cases):
    """A batch's broadcast_tx calls are admitted as one group (another code path)."""
    reqs = [{"jsonrpc": "2.0", "method": "broadcast_tx", "params": {"tx": rejected_cases[c][0].hex()}, "id": c}
            for c in CASES]
    # and positional params, with the 0x prefix
    reqs += [{"jsonrpc": "2.0", "method": "broadcast_tx", "params": ["0x" + rejected_cases[c][0].hex()],
              "id": c + "/0x"} for c in CASES]
    status, resp = node.post(json.dumps(reqs))
    assert status == 200 and len(resp) == len(reqs)
    for r in resp:
        case = r["id"].removesuffix("/0x")
        raw, reason, words = rejected_cases[case]
        check_rejected(r, reason, words, id=r["id"])


def test_already_known(node):
    key = KEYS[4]
    tx = transfer(key, node.chain_id, node.nonce(key), KEYS[5].address, 1)
    req = {"jsonrpc": "2.0", "method": "broadcast_tx", "params": {"tx": tx.raw.hex()}}
    status, resp = node.post(json.dumps([dict(req, id=1), dict(req, id=2)]))
    assert status == 200
    by_id = {r["id"]: r for r in resp}
    assert by_id[1]["result"] == {"hash": tx.hash.hex()}
    check_rejected(by_id[2], "already_known", ["already"], id=2)
    # three copies: still one admitted
    tx2 = transfer(key, node.chain_id, tx.nonce + 1, KEYS[5].address, 1)
    req2 = {"jsonrpc": "2.0", "method": "broadcast_tx", "params": [tx2.raw.hex()]}
    status, resp = node.post(json.dumps([dict(req2, id=i) for i in range(3)]))
    assert sum("result" in r for r in resp) == 1
    for r in resp:
        if "error" in r:
            check_rejected(r, "already_known", ["already"], id=r["id"])
    deadline = time.monotonic() + 10
    while node.result("tx", {"hash": tx2.hash.hex()})["status"] != "committed":
        assert time.monotonic() < deadline, "the admitted copy was not committed"
        time.sleep(0.05)
    assert node.nonce(key) == tx.nonce + 2


def test_mempool_full_and_node_minimum_gas_price(tmp_path_factory):
    """The node's own limits: --mempool-size and --min-gas-price."""
    proc = NodeProcess(tmp_path_factory.mktemp("small") / "node", "--mempool-size", "2",
                       "--min-gas-price", "2", block_time=0.2).start()
    try:
        small = Node(proc)
        key = KEYS[6]
        txs = [transfer(key, small.chain_id, n, KEYS[7].address, 1, gas_price=2) for n in range(3)]
        reqs = [{"jsonrpc": "2.0", "method": "broadcast_tx", "params": {"tx": t.raw.hex()}, "id": i}
                for i, t in enumerate(txs)]
        status, resp = small.post(json.dumps(reqs))
        by_id = {r["id"]: r for r in resp}
        assert by_id[0]["result"] == {"hash": txs[0].hash.hex()}
        assert by_id[1]["result"] == {"hash": txs[1].hash.hex()}
        check_rejected(by_id[2], "mempool_full", ["mempool", "full"], id=2)
        cheap = transfer(KEYS[8], small.chain_id, 0, KEYS[7].address, 1, gas_price=1)
        check_rejected(small.rpc("broadcast_tx", [cheap.raw.hex()]), "fee_too_low", ["gas price 1", "minimum 2"])
        # once a block took them, there is room again
        deadline = time.monotonic() + 10
        while small.rpc("tx", {"hash": txs[1].hash.hex()}).get("result", {}).get("status") != "committed":
            assert time.monotonic() < deadline, "the admitted transactions were not committed"
            time.sleep(0.05)
        r = small.result("broadcast_tx_commit", {"tx": txs[2].raw.hex(), "timeout": 10})
        assert r["receipt"]["status"] == "success"
        assert small.nonce(key) == 3
    finally:
        proc.kill()


def test_node_goes_on_after_rejections(node, rejected_cases):
    h = node.height()
    # nothing rejected was admitted
    for case in CASES:
        raw = rejected_cases[case][0]
        assert_error(node.rpc("tx", {"hash": hash_bytes(raw).hex()}), NOT_FOUND, "no transaction")
    # the accounts used are still usable at their next nonce
    key = KEYS[2]
    tx = transfer(key, node.chain_id, node.nonce(key), KEYS[3].address, 1)
    r = node.result("broadcast_tx_commit", {"tx": tx.raw.hex(), "timeout": 10})
    assert r["receipt"]["status"] == "success" and r["height"] > h
    deadline = time.monotonic() + 10
    while node.height() < r["height"] + 2:
        assert time.monotonic() < deadline, "the height does not advance"
        time.sleep(0.05)
