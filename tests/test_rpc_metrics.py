"""GET /metrics and GET /health against real node processes: the text parses with
prometheus_client's own parser, values follow the node, labels stay bounded, and junk
requests get a clean answer."""
from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gradchain import devnet_keys
from ledger.keys import PrivateKey
from tests.nodeproc import NodeProcess, validator_processes, wait_until

KEYS = devnet_keys(2)


def get(port: int, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body, headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    status, body = get(port, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        assert fam.documentation, fam.name  # every metric says what it is
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def rpc(port: int, method: str, params=None) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params or [], "id": 1}).encode()
    status, raw = get(port, "/", "POST", body, {"Content-Type": "application/json"})
    return json.loads(raw)


def requests_by_method(m: dict) -> dict[str, float]:
    return {dict(k[1])["method"]: v for k, v in m.items() if k[0] == "gradchain_rpc_requests_total"}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("metrics") / "node", block_time=0.2).start()
    yield proc
    proc.kill()


def test_metrics_parse_and_height_follows_status(node):
    m = scrape(node.port)
    h1 = rpc(node.port, "status")["result"]["height"]
    m = scrape(node.port)
    assert m[("gradchain_height", ())] >= h1
    assert m[("gradchain_height", ())] <= rpc(node.port, "status")["result"]["height"]
    for name in ("gradchain_mempool_txs", "gradchain_mempool_bytes", "gradchain_peers",
                 "gradchain_sigverify_queue_txs", "gradchain_p2p_received_bytes_total", "gradchain_p2p_sent_bytes_total",
                 "gradchain_ml_xla_compiles_total", "gradchain_ml_program_cache_hits_total",
                 "gradchain_block_interval_seconds_count", "gradchain_block_txs_count",
                 "gradchain_consensus_rounds_count"):
        assert (name, ()) in m, name
    time.sleep(1.0)
    m2 = scrape(node.port)
    assert m2[("gradchain_height", ())] > m[("gradchain_height", ())]  # empty blocks every 0.2 s
    assert m2[("gradchain_block_interval_seconds_count", ())] > m[("gradchain_block_interval_seconds_count", ())]
    # a devnet decides every height in round 0: rounds per height is 1
    assert m2[("gradchain_consensus_rounds_sum", ())] == m2[("gradchain_consensus_rounds_count", ())]


def test_rpc_counters_count_by_method_and_bound_unknown_names(node):
    before = requests_by_method(scrape(node.port))
    for _ in range(3):
        rpc(node.port, "status")
    rpc(node.port, "block", [1])
    for i in range(20):
        rpc(node.port, f"no_such_method_{i}")
    get(node.port, "/", "POST", b'{"jsonrpc": "2.0", "id": 1}')  # no method at all
    after = requests_by_method(scrape(node.port))
    assert after["status"] - before.get("status", 0) == 3
    assert after["block"] - before.get("block", 0) == 1
    assert after["unknown"] - before.get("unknown", 0) == 20
    assert after["invalid"] - before.get("invalid", 0) == 1
    assert not any(k.startswith("no_such") for k in after)
    lat = {dict(k[1])["method"] for k in scrape(node.port) if k[0] == "gradchain_rpc_request_duration_seconds_count"}
    assert "status" in lat and not any(k.startswith("no_such") for k in lat)


def test_health_ok_on_a_producing_node(node):
    status, body = get(node.port, "/health")
    doc = json.loads(body)
    assert status == 200, doc
    assert doc["status"] == "ok" and doc["reasons"] == [] and doc["height"] >= 1


@pytest.mark.parametrize("path", ["/metrics", "/health"])
def test_junk_requests(node, path):
    assert get(node.port, path, "POST", b"{}")[0] == 405
    assert get(node.port, path, "PUT", b"x")[0] == 405
    assert get(node.port, path + "?x=1&y=%ff")[0] in (200,)
    status, _ = get(node.port, path, headers={"X-Junk": "a" * 100_000})  # over aiohttp's header limit
    assert status in (400, 431)
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:  # garbage on the wire
        s.sendall(b"GET " + path.encode() + b" HTTP/9.9\r\n\x00\x01\r\n\r\n")
        assert s.recv(100).split(b" ")[1] == b"400"
    assert get(node.port, path)[0] == 200  # still serving


def test_mempool_gauge_follows_pending_txs(tmp_path):
    from ledger.tx import transfer
    n = NodeProcess(tmp_path / "manual", "--mining", "manual").start()
    try:
        chain_id = rpc(n.port, "status")["result"]["chain_id"]
        a, b = KEYS
        txs = [transfer(a, chain_id, i, b.address, 1 + i) for i in range(5)]
        for tx in txs:
            assert "result" in rpc(n.port, "broadcast_tx", [tx.raw.hex()]), "admitted"
        m = scrape(n.port)
        assert m[("gradchain_mempool_txs", ())] == 5
        assert m[("gradchain_mempool_bytes", ())] == sum(len(t.raw) for t in txs)
        status, body = get(n.port, "/health")
        assert status == 200, body  # manual mining: waiting transactions are the user's to mine
        assert "result" in rpc(n.port, "mine", [1])
        m = scrape(n.port)
        assert m[("gradchain_mempool_txs", ())] == 0 and m[("gradchain_mempool_bytes", ())] == 0
        assert m[("gradchain_block_txs_sum", ())] == 5
    finally:
        n.kill()


def test_health_503_on_a_two_validator_chain_with_one_node_up(tmp_path):
    keys = [PrivateKey.from_label(f"metrics validator {i}") for i in range(2)]
    nodes = validator_processes(tmp_path / "tn", keys)
    first = nodes[0].start()
    try:
        status, body = get(first.port, "/health")
        doc = json.loads(body)
        assert status == 503, doc
        assert doc["status"] == "unhealthy"
        assert any("quorum" in r and "stake" in r for r in doc["reasons"]), doc
        assert any("not started" in r for r in doc["reasons"]), doc
        m = scrape(first.port)
        assert m[("gradchain_peers", ())] == 0
        nodes[1].start()
        wait_until(lambda: get(first.port, "/health")[0] == 200, 60, "health once both validators run")
        m = scrape(first.port)
        assert m[("gradchain_peers", ())] == 1
        assert m[("gradchain_p2p_received_bytes_total", ())] > 0 and m[("gradchain_p2p_sent_bytes_total", ())] > 0
    finally:
        for n in nodes:
            n.kill()
