"""Subscriptions over the WebSocket endpoint (GET /ws) against real node processes: every kind
delivers exactly the committed items in order, filters, unsubscribe, the bounds, junk frames,
a slow subscriber dropped while the node keeps producing, and gradchain.AsyncClient."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from gradchain import AsyncClient, ConnectionFailed, devnet_keys
from gradchain.jobs import Worker, post_job
from ledger.keys import address_hex
from ledger.tx import transfer
from net.rpc.subscriptions import WS_SLOW, WS_TOO_BIG, WS_UNSUPPORTED
from tests.nodeproc import NodeProcess, wait_until

KEYS = devnet_keys(4)
ROOT = Path(__file__).resolve().parent.parent
TOKEN = (ROOT / "examples" / "token.py").read_text()


# ---- a WebSocket client on a plain socket: it reads only when told to -------------------------

class RawWs:
    """RFC 6455 by hand (client frames masked), so that a test decides when (and whether) to read."""

    def __init__(self, port: int, rcvbuf: int | None = None, path: str = "/ws"):
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])
        self.head = head.decode()
        self.ids = 0
        self.held: list[dict] = []

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else \
            bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, method: str, *params) -> int:
        self.ids += 1
        self.send_frame(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": list(params)})
                        .encode())
        return self.ids

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._need(8))[0]
        return b0 & 0x0F, self._need(n)

    def message(self) -> dict | tuple[int, str]:
        """The next JSON message, or (close code, reason) for a close frame."""
        while True:
            op, payload = self.frame()
            if op == 1:
                return json.loads(payload)
            if op == 8:
                return struct.unpack(">H", payload[:2])[0], payload[2:].decode()

    def answer(self, rid: int) -> dict:
        """The answer to request rid; notifications before it wait in `held` for collect_until."""
        while True:
            m = self.message()
            assert isinstance(m, dict), m
            if m.get("id") == rid:
                return m
            if m.get("method") == "subscription":
                self.held.append(m)

    def close(self) -> None:
        self.sock.close()


def result(ws: RawWs, method: str, *params):
    m = ws.answer(ws.send(method, *params))
    assert "result" in m, m
    return m["result"]


def error(ws: RawWs, method: str, *params) -> dict:
    m = ws.answer(ws.send(method, *params))
    assert "error" in m, m
    return m["error"]


def collect_until(ws: RawWs, blocks_sid: str, height: int) -> dict[str, list]:
    """Notifications by subscription id until the block subscription reaches `height`."""
    got: dict[str, list] = {}
    while True:
        m = ws.held.pop(0) if ws.held else ws.message()
        assert isinstance(m, dict), m
        if m.get("method") != "subscription":
            continue
        sid, r = m["params"]["subscription"], m["params"]["result"]
        got.setdefault(sid, []).append(r)
        if sid == blocks_sid and r["height"] >= height:
            return got


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess(tmp_path_factory.mktemp("ws") / "node", "--ws-max-subscriptions", "8", block_time=0.2).start()
    yield n
    n.kill()


def send_all(node: NodeProcess, txs: list) -> list[dict]:
    c = node.client()
    for t in txs:
        c.broadcast(t)
    return [c.wait_for_tx(t.hash.hex()) for t in txs]


# ---- each kind, exactly the committed items ---------------------------------------------------

def test_blocks_arrive_once_each_in_order_and_match_the_chain(node):
    ws = RawWs(node.port)
    sid = result(ws, "subscribe", "blocks")
    first = None
    seen = []
    while len(seen) < 6:
        m = ws.message()
        if m.get("method") == "subscription":
            seen.append(m["params"]["result"])
            first = first or seen[0]["height"]
    assert [b["height"] for b in seen] == list(range(first, first + 6))
    c = node.client()
    for b in seen:
        chain = c.block(b["height"])
        assert b["hash"] == chain["header"]["hash"] and b["tx_count"] == len(chain["tx_hashes"])
        assert b["proposer"] == chain["header"]["proposer"] and b["time_ms"] == chain["header"]["time_ms"]
        assert b["gas_used"] == 0 == b["tx_count"]
    assert sid.startswith("0x")
    ws.close()


def test_txs_by_sender_recipient_kind_and_everything(node):
    a, b, c_, d = KEYS
    cl = node.client()
    ws = RawWs(node.port)
    blocks = result(ws, "subscribe", "blocks")
    by_sender = result(ws, "subscribe", "txs", {"sender": address_hex(a.address)})
    by_recipient = result(ws, "subscribe", "txs", {"recipient": address_hex(c_.address)})
    both = result(ws, "subscribe", "txs", {"sender": address_hex(b.address), "recipient": address_hex(c_.address)})
    deploys = result(ws, "subscribe", "txs", {"kind": "deploy"})
    everything = result(ws, "subscribe", "txs", {})
    na, nb = cl.account(a.address).pending_nonce, cl.account(b.address).pending_nonce
    txs = [transfer(a, cl.chain_id, na + i, b.address, 1 + i) for i in range(3)] + \
          [transfer(b, cl.chain_id, nb, c_.address, 7), transfer(b, cl.chain_id, nb + 1, d.address, 8)]
    done = send_all(node, txs)
    dep = cl.deploy(d, TOKEN, ["Tok", "TK", 1000])
    top = max(r["height"] for r in done + [dep])
    got = collect_until(ws, blocks, top + 1)
    order = sorted(done, key=lambda r: (r["height"], r["index"]))

    def hashes(sid):
        return [t["hash"] for t in got.get(sid, [])]
    assert hashes(by_sender) == [r["hash"] for r in order if r["tx"]["from"] == address_hex(a.address)]
    assert hashes(by_recipient) == [txs[3].hash.hex()] == hashes(both)
    assert hashes(deploys) == [dep["hash"]]
    assert hashes(everything) == [r["hash"] for r in order] + [dep["hash"]]
    t = got[by_recipient][0]
    assert (t["status"], t["kind"], t["to"], t["value"], t["gas_used"]) == ("success", "transfer",
                                                                             address_hex(c_.address), 7, 21_000)
    assert got[deploys][0]["contract"] == dep["address"]
    ws.close()


def test_events_by_contract_and_name(node):
    a, b, c_, _ = KEYS
    cl = node.client()
    tok1 = cl.deploy(a, TOKEN, ["One", "ONE", 1000])["address"]
    tok2 = cl.deploy(a, TOKEN, ["Two", "TWO", 1000])["address"]
    ws = RawWs(node.port)
    blocks = result(ws, "subscribe", "blocks")
    of1 = result(ws, "subscribe", "events", {"contract": tok1})
    approvals = result(ws, "subscribe", "events", {"name": "Approval"})
    of2_transfers = result(ws, "subscribe", "events", {"contract": tok2, "name": "Transfer"})
    r1 = cl.send(a, tok1, "transfer_to", b.address, 5)
    r2 = cl.send(a, tok2, "approve", c_.address, 9)
    r3 = cl.send(a, tok2, "transfer_to", c_.address, 3)
    got = collect_until(ws, blocks, max(r["height"] for r in (r1, r2, r3)) + 1)
    assert [(e["tx_hash"], e["name"], e["data"]["amount"]) for e in got[of1]] == [(r1["hash"], "Transfer", 5)]
    assert [(e["tx_hash"], e["contract"]) for e in got[approvals]] == [(r2["hash"], tok2)]
    assert [(e["tx_hash"], e["data"]["amount"]) for e in got[of2_transfers]] == [(r3["hash"], 3)]
    assert got[of1][0]["height"] == r1["height"] and got[of1][0]["index"] == 0
    ws.close()


def test_jobs_each_change_of_a_committed_block(node, tmp_path):
    import numpy as np

    from tests.test_jobs_node import ARCH, ROWS, terms
    req, worker = KEYS[0], KEYS[1]
    cl = node.client()
    x = np.arange(ROWS * ARCH.features, dtype=np.int32).reshape(ROWS, ARCH.features)
    ref = cl.put_blob((x, (x[:, 0] % 3).astype(np.int32)), req, chunk_bytes=4096)
    ws = RawWs(node.port)
    blocks = result(ws, "subscribe", "blocks")
    mine = result(ws, "subscribe", "jobs", {"requester": address_hex(req.address)})
    others = result(ws, "subscribe", "jobs", {"requester": address_hex(worker.address)})
    jid = post_job(cl, req, terms(ref))
    by_id = result(ws, "subscribe", "jobs", {"id": jid})
    Worker(node.client(), worker, jid, tmp_path / "w", log=lambda _: None).claim()
    job = cl.call("job", {"id": jid})
    got = collect_until(ws, blocks, cl.status()["height"] + 1)
    assert [(j["id"], j["status"]) for j in got[mine]] == [(jid, "open"), (jid, "claimed")]
    assert [(j["id"], j["status"], j["worker"]) for j in got[by_id]] == [(jid, "claimed", address_hex(worker.address))]
    assert got[by_id][0] == job  # the same record as `job` answers, with the height it changed at
    assert others not in got
    ws.close()


def test_unsubscribe_stops_notifications(node):
    ws = RawWs(node.port)
    keep = result(ws, "subscribe", "blocks")
    gone = result(ws, "subscribe", "blocks")
    got = collect_until(ws, keep, node.client().status()["height"] + 2)
    assert got[gone]
    assert result(ws, "unsubscribe", gone) is True
    assert result(ws, "unsubscribe", gone) is False  # once
    assert result(ws, "unsubscribe", "0x0000") is False
    ws.held.clear()  # sent before the answer; nothing of `gone` may follow it
    h = node.client().status()["height"]
    got = collect_until(ws, keep, h + 4)
    assert gone not in got and len(got[keep]) >= 3
    ws.close()


def test_a_devnet_revert_is_told_to_block_subscribers(node_factory):
    """After devnet_revert a block subscriber gets one item marked reverted, at the block the
    chain is back at, then the new blocks at the heights that were undone."""
    n = node_factory("--mining", "manual", "--verify-workers", "0").start()
    c = n.client()
    ws = RawWs(n.port)
    sid = result(ws, "subscribe", "blocks")
    c.call("mine", [2])
    snap = c.call("devnet_snapshot")
    c.call("mine", [3])
    assert [r["height"] for r in collect_until(ws, sid, 5)[sid]] == [1, 2, 3, 4, 5]
    assert c.call("devnet_revert", [snap["id"]])["height"] == 2
    c.call("mine", [1])
    got = collect_until(ws, sid, 3)[sid]
    back = c.block(2)["header"]
    assert got[0] == {**back, "reverted": True, "removed_blocks": 3}
    assert [(r["height"], "reverted" in r) for r in got] == [(2, True), (3, False)]
    assert got[1]["hash"] == c.block(3)["header"]["hash"] and got[1]["parent_hash"] == back["hash"]
    ws.close()


def test_another_connections_subscription_cannot_be_cancelled(node):
    one, two = RawWs(node.port), RawWs(node.port)
    sid = result(one, "subscribe", "blocks")
    assert result(two, "unsubscribe", sid) is False
    assert collect_until(one, sid, node.client().status()["height"] + 2)[sid]
    one.close()
    two.close()


def test_subscribe_over_http_says_where_it_is_served(node):
    with pytest.raises(Exception, match=r"method not found: 'subscribe' \(served over the WebSocket at GET /ws\)"):
        node.client().call("subscribe", ["blocks"])


def test_reads_over_the_socket_are_the_http_answers(node):
    ws = RawWs(node.port)
    assert result(ws, "account", address_hex(KEYS[0].address), 0) == node.client().call(
        "account", [address_hex(KEYS[0].address), 0])
    ws.send_frame(json.dumps([{"jsonrpc": "2.0", "id": 7, "method": "genesis"},
                              {"jsonrpc": "2.0", "id": 8, "method": "nope"}]).encode())
    batch = ws.message()
    assert [r["id"] for r in batch] == [7, 8] and batch[1]["error"]["code"] == -32601
    ws.close()


# ---- bad requests and bounds -----------------------------------------------------------------------

@pytest.mark.parametrize("params, says", [
    (["nope"], "unknown subscription kind 'nope': one of blocks, txs, events, jobs"),
    ([7], "unknown subscription kind 'int'"),
    (["txs", {"to": "0x00"}], "txs filter has no field 'to' (fields: sender, recipient, contract, kind)"),
    (["blocks", {"sender": address_hex(KEYS[0].address)}], "blocks filter has no field 'sender'"),
    (["txs", {"sender": "0x1234"}], "filter.sender"),
    (["txs", {"kind": "mint"}], "filter.kind must be one of transfer, deploy, call"),
    (["txs", []], "filter must be an object"),
    (["events", {"name": "x" * 65}], "filter.name must be an event name"),
    (["events", {"name": "x" * 2000}], "filter is over 1024 bytes of JSON"),
    (["jobs", {"id": -1}], "filter.id must be a job id"),
    ([], "missing a required argument: 'kind'"),
])
def test_bad_subscriptions_are_invalid_params(node, params, says):
    ws = RawWs(node.port)
    e = error(ws, "subscribe", *params)
    assert e["code"] == -32602 and says in e["message"], e
    ws.close()


def test_subscriptions_per_connection_are_bounded(node):
    ws = RawWs(node.port)
    sids = [result(ws, "subscribe", "blocks") for _ in range(8)]
    e = error(ws, "subscribe", "blocks")
    assert e["code"] == -32602 and "holds 8 subscriptions, the most one may" in e["message"]
    assert result(ws, "unsubscribe", sids[0]) is True
    assert result(ws, "subscribe", "txs")  # room again
    ws.close()


def test_junk_is_answered_and_a_binary_frame_closes(node):
    ws = RawWs(node.port)
    ws.send_frame(b"{not json")
    assert ws.message()["error"]["code"] == -32700
    ws.send_frame(b'{"jsonrpc": "2.0", "id": 1}')
    assert ws.message()["error"]["code"] == -32600
    ws.send_frame(b"[]")
    assert ws.message()["error"]["code"] == -32600
    assert result(ws, "status")["height"] >= 0  # still served
    ws.send_frame(b"\x00\x01", opcode=2)
    code, reason = ws.message()
    assert code == WS_UNSUPPORTED and "binary frames are not accepted" in reason
    ws.close()
    plain = RawWs(node.port, path="/")  # an upgrade anywhere else is no WebSocket
    assert plain.status != 101
    plain.close()
    assert node.client().status()["height"] > 0


def test_a_message_over_the_body_bound_closes_with_1009(node):
    ws = RawWs(node.port)
    with contextlib.suppress(OSError):  # the node may close before all of it is sent
        ws.send_frame(b'"' + b"x" * (17 << 20) + b'"')
    code, _ = ws.message()
    assert code == WS_TOO_BIG
    ws.close()
    assert node.client().status()["height"] > 0


# ---- connections, slow subscribers, shutdown: each their own node ------------------------------------

def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _upgrades(port: int) -> bool:
    ws = RawWs(port)
    ws.close()
    return ws.status == 101


def test_a_slow_subscriber_is_dropped_and_blocks_go_on(node_factory):
    n = node_factory("--ws-queue-messages", "200", "--ws-max-connections", "2", block_time=0.1).start()
    cl = n.client()
    slow = RawWs(n.port, rcvbuf=4096)
    for kind in ("blocks", "txs"):
        slow.send("subscribe", kind)
    other = RawWs(n.port)
    assert not _upgrades(n.port)  # two WebSocket connections are the most (this node's flag)
    rss0 = _rss_kib(n.proc.pid)
    h0 = cl.status()["height"]
    a, b = KEYS[0], KEYS[1]
    txs = [transfer(a, cl.chain_id, i, b.address, 1) for i in range(4000)]
    for i in range(0, len(txs), 500):
        cl.batch([("broadcast_tx", [t.raw.hex()]) for t in txs[i:i + 500]])
    cl.wait_for_tx(txs[-1].hash.hex(), timeout=60)
    assert cl.status()["height"] > h0 and cl.account(a.address).nonce == 4000  # the node kept committing
    assert _rss_kib(n.proc.pid) - rss0 < 64 << 10
    wait_until(lambda: _upgrades(n.port), 15, "the slow subscriber's connection to be freed")
    msgs = []
    while True:  # what it was sent before it fell behind, then the close with its reason
        m = slow.message()
        msgs.append(m)
        if isinstance(m, tuple):
            break
    code, reason = msgs[-1]
    assert code == WS_SLOW and "slow subscriber: over 200 messages" in reason
    assert len(msgs) < 4000  # a prefix of the stream (a block of 2,000 txs is over the bound at once)
    other.close()


def test_websocket_connections_are_bounded_and_shutdown_closes_them(node_factory):
    n = node_factory("--ws-max-connections", "1", block_time=0.2).start()
    ws = RawWs(n.port)
    result(ws, "subscribe", "blocks")
    busy = RawWs(n.port)
    assert busy.status == 503 and "-32005" in busy.buf.decode() + busy.sock.recv(4096).decode()
    t = time.monotonic()
    assert n.stop() == 0 and time.monotonic() - t < 10
    while True:
        m = ws.message()
        if isinstance(m, tuple):
            assert m == (1001, "the node is shutting down")
            break
    ws.close()


# ---- the SDK ---------------------------------------------------------------------------------------

def test_async_client_reads_and_subscriptions(node):
    a, b = KEYS[2], KEYS[3]

    async def run() -> None:
        async with AsyncClient(node.url) as c:
            st = await c.status()
            assert st["chain_id"] == "gradchain-devnet"
            acct = await c.account(a.address, prove=True)
            assert acct.proven and acct.balance > 0
            assert (await c.block(1))["header"]["height"] == 1
            async with c.subscribe_blocks() as blocks:
                first = await anext(blocks)
                second = await anext(blocks)
            assert second["height"] == first["height"] + 1
            assert not c._subs  # unsubscribed when the loop ended
            sync = node.client()
            tx = transfer(a, st["chain_id"], sync.account(a.address).pending_nonce, b.address, 3)
            async with c.subscribe_txs(sender=a.address) as txs:
                await asyncio.to_thread(sync.broadcast, tx)
                got = await asyncio.wait_for(anext(txs), 10)
            assert (got["hash"], got["value"], got["to"]) == (tx.hash.hex(), 3, address_hex(b.address))
            with pytest.raises(Exception) as e:
                await c.ws_call("subscribe", ["nope"])
            assert "unknown subscription kind" in str(e.value)
    asyncio.run(run())


def test_async_client_raises_the_close_reason(node_factory):
    n = node_factory(block_time=0.2).start()

    async def run() -> None:
        async with AsyncClient(n.url) as c:
            it = await c.subscribe_blocks()
            await anext(it)
            await asyncio.to_thread(n.stop)
            with pytest.raises(ConnectionFailed, match="code 1001: the node is shutting down"):
                while True:
                    await anext(it)
    asyncio.run(run())


def test_a_transactions_notification_text_is_its_item():
    """The template the commit path fills is exactly the JSON of tx_item (success and failure)."""
    from ledger.block import Receipt
    from ledger.tx import call
    from net.rpc.subscriptions import tx_item, tx_text
    t = transfer(KEYS[0], "c", 3, KEYS[1].address, 10**18)
    ok, failed = Receipt(1, 21_000), Receipt(0, 500, "revert: no", (), None, ("revert", KEYS[1].address, "f", 4))
    c = call(KEYS[0], "c", 4, KEYS[2].address, "f", [1], gas_limit=10**6)
    for tx, r in ((t, ok), (t, failed), (c, ok), (c, Receipt(1, 9, "", (("x",),)))):
        assert json.loads(tx_text(tx, r, 7, 2)) == tx_item(tx, r, 7, 2)
