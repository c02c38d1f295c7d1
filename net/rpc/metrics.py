"""GET /metrics: the node in Prometheus text format (prometheus_client), one registry per node.

Most values are read from the node's objects at scrape time (NodeCollector): height, mempool,
peers, p2p bytes, the signature queue, ML compile counters. What only a moment can see is
observed there: a committed block (`NodeMetrics.committed`, called by node.py) and an RPC
request (`NodeMetrics.rpc_done`, called by dispatch.py). Method labels are bounded: a name
outside the method table is counted as "unknown", a request with no method as "invalid".
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ledger.block import Block
from vm import ml as vm_ml

UNKNOWN, INVALID = "unknown", "invalid"  # the method labels of an unknown name and of no name
RPC_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 600)
INTERVAL_BUCKETS = (.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300)
TXS_BUCKETS = (0, 1, 10, 100, 1000, 10_000)
ROUND_BUCKETS = (1, 2, 3, 5, 10)
ML_COUNTERS = (("programs_built", "ML programs built (jitted) in this process"),
               ("program_cache_hits", "ML calls served by a program already built in memory"),
               ("backend_compiles", "executables built by JAX: an XLA compile or a load from the persistent cache"),
               ("xla_compiles", "real XLA compiles (backend compiles less persistent cache hits)"),
               ("persistent_cache_hits", "executables loaded from the persistent XLA cache on disk"),
               ("compile_seconds", "seconds spent in backend compiles"))


class NodeCollector:
    """Gauges and counters read from the node when Prometheus scrapes."""

    def __init__(self, node: Any):
        self.node = node

    def collect(self) -> Iterable[Metric]:
        n = self.node
        tip = n.chain.tip

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily("gradchain_" + name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily("gradchain_" + name, doc, value=value)
        yield gauge("height", "height of the latest committed block", tip.height)
        yield gauge("latest_block_time_seconds", "unix time in the latest block's header", tip.time_ms / 1000)
        yield gauge("mempool_txs", "transactions waiting in the mempool", len(n.mempool))
        yield gauge("mempool_bytes", "bytes of the transactions waiting in the mempool", n.mempool.byte_size())
        yield gauge("mempool_capacity_txs", "most transactions the mempool holds", n.mempool.max_txs)
        yield gauge("sigverify_queue_txs", "signatures handed to the verifier workers and not yet checked",
                    n.verifier.queued)
        yield gauge("storage_full", "1 once a block could not be written (the node stops)",
                    int(n.admission.refusal is not None))
        p2p = getattr(n, "p2p", None)  # None on a one-validator devnet, and before p2p starts
        yield gauge("peers", "connected p2p peers", len(p2p.peers) if p2p is not None else 0)
        yield counter("p2p_received_bytes", "bytes of p2p frames received from peers", p2p.bytes_in if p2p else 0)
        yield counter("p2p_sent_bytes", "bytes of p2p frames sent to peers", p2p.bytes_out if p2p else 0)
        state = getattr(n.engine, "state", None)  # BftEngine only
        yield gauge("consensus_round", "round of the height being decided (0 on a one-validator devnet)",
                    state.round if state is not None else 0)
        sync = getattr(n, "sync", None)
        yield gauge("sync_target_height", "highest height a connected peer claims (the tip without peers)",
                    sync.target if sync is not None else tip.height)
        ml = vm_ml.stats() or {}  # None until a contract used ml: every counter is 0
        for key, doc in ML_COUNTERS:
            yield counter("ml_" + key, doc, ml.get(key, 0))
        yield gauge("ml_programs", "ML programs held in memory", ml.get("programs", 0))


class NodeMetrics:
    """A node's registry: its collector, the block histograms and the RPC counters."""

    def __init__(self, node: Any):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))
        r = self.registry
        self.interval = Histogram("gradchain_block_interval_seconds", "header time between consecutive blocks "
                                  "committed by this process", buckets=INTERVAL_BUCKETS, registry=r)
        self.txs = Histogram("gradchain_block_txs", "transactions per block committed by this process",
                             buckets=TXS_BUCKETS, registry=r)
        self.rounds = Histogram("gradchain_consensus_rounds", "rounds a height took to decide (1: decided in "
                                "round 0)", buckets=ROUND_BUCKETS, registry=r)
        self.requests = Counter("gradchain_rpc_requests", "JSON-RPC requests answered, by method",
                                ["method"], registry=r)
        self.latency = Histogram("gradchain_rpc_request_duration_seconds", "time to answer a JSON-RPC request, "
                                 "by method", ["method"], buckets=RPC_BUCKETS, registry=r)
        tip = node.chain.tip
        self._tip = (tip.height, tip.time_ms)
        self.last_commit = time.monotonic()  # when the tip last moved, or the node started (health.py)
        self.waiting_since: float | None = None  # when /health first saw work waiting (health.py)

    def committed(self, block: Block, round_: int) -> None:
        """A block was committed (decided in round `round_`)."""
        h = block.header
        if h.height == self._tip[0] + 1:
            self.interval.observe(max(0, h.time_ms - self._tip[1]) / 1000)
        self._tip = (h.height, h.time_ms)
        self.txs.observe(len(block.txs))
        self.rounds.observe(round_ + 1)
        self.last_commit = time.monotonic()

    def rpc_done(self, method: str, seconds: float) -> None:
        """A request answered; `method` is already a bounded label (label_of)."""
        self.requests.labels(method).inc()
        self.latency.labels(method).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def label_of(name: Any, methods: dict) -> str:
    """The method label of a request's `method` member: its name if it is served, else one label."""
    if not isinstance(name, str):
        return INVALID
    return name if name in methods else UNKNOWN


def add_routes(app: web.Application, metrics: NodeMetrics, guarded: Any) -> None:
    async def get_metrics(request: web.Request) -> web.Response:
        resp = web.Response(body=metrics.text())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp
    app.router.add_get("/metrics", guarded(get_metrics))
