"""The HTTP server (aiohttp): POST / takes a request or a batch within the body's size and
time bounds, GET / says what is served; start() listens behind the connection guard."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from net.rpc.batch import _batch
from net.rpc.connections import _Connections, _Guard
from net.rpc.dispatch import _call
from net.rpc.errors import INVALID_REQUEST, PARSE_ERROR, REQUEST_TIMEOUT
from net.rpc.jsonio import _dumps, parse_int
from net.rpc.limits import MAX_BATCH, Limits
from net.rpc.methods import METHODS, Node
import net.rpc.health as health  # (not `from net.rpc import`: that imports the package, which imports this)
import net.rpc.metrics as metrics
import net.rpc.ws as ws
import net.explorer as explorer_page

log = logging.getLogger("gradchain.rpc")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(body), status=status, content_type="application/json")


def _error(code: int, message: str, status: int = 200) -> web.Response:
    return _json({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status)


def make_app(node: Node, max_body: int, conns: _Connections,
             explorer: explorer_page.Setting = explorer_page.Setting(True)) -> web.Application:
    limits = conns.limits

    async def handle(request: web.Request) -> web.Response:
        guard = conns.guards.get(request.transport)
        if guard is not None:
            guard.disarm()  # the headers are in
        try:
            return await answer(request)
        finally:
            if guard is not None and guard.transport is not None:
                guard.arm()

    def guarded(fn):  # a GET route under the header timeout as POST / is (the wait restarts after it)
        async def route(request: web.Request) -> web.StreamResponse:
            guard = conns.guards.get(request.transport)
            if guard is not None:
                guard.disarm()
            try:
                return await fn(request)
            finally:
                if guard is not None and guard.transport is not None:
                    guard.arm()
        return route

    async def answer(request: web.Request) -> web.Response:
        try:
            body = await asyncio.wait_for(request.read(), limits.body_timeout)
        except web.HTTPRequestEntityTooLarge:
            return _error(INVALID_REQUEST, f"invalid request: body is over the limit of {max_body} bytes", 413)
        except asyncio.TimeoutError:
            resp = _error(REQUEST_TIMEOUT, f"request timeout: the body did not arrive within {limits.body_timeout:g} s",
                          408)
            resp.force_close()
            return resp
        except ConnectionError:  # the client went away mid-body: nothing to answer, one line to say
            log.info("rpc: %s dropped the connection while sending a request", request.remote)
            raise web.HTTPBadRequest() from None
        try:
            doc = json.loads(body, parse_int=parse_int)
        except (ValueError, RecursionError):
            return _error(PARSE_ERROR, "parse error: body is not JSON")
        if isinstance(doc, list):
            if not doc or len(doc) > MAX_BATCH:
                return _error(INVALID_REQUEST, f"invalid request: a batch holds 1 to {MAX_BATCH} requests")
            texts = await _batch(node, doc)
            if not texts:
                return web.Response(status=204)
            return web.Response(text="[" + ",".join(texts) + "]", content_type="application/json")
        single = await _call(node, doc)
        return _json(single) if single is not None else web.Response(status=204)

    async def get_root(request: web.Request) -> web.Response:
        return _json({"service": "gradchain JSON-RPC 2.0", "methods": sorted(METHODS), "docs": "docs/rpc.md",
                      "endpoints": _endpoints(explorer)})

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/", handle)
    app.router.add_get("/", get_root)
    ws.add_routes(app, node, conns, max_body)  # GET /ws: JSON-RPC and subscriptions over a WebSocket
    metrics.add_routes(app, node.metrics, guarded)  # GET /metrics: Prometheus text
    health.add_routes(app, node, node.metrics, guarded)  # GET /health: 200, or 503 with the reasons
    explorer_page.add_routes(app, explorer, guarded)  # GET /explorer: the block explorer page (or 404, why off)
    return app


def _endpoints(explorer: explorer_page.Setting) -> dict[str, str]:
    """What else this port serves, for GET / (a user who finds the port finds the rest)."""
    return {
        "POST /": "JSON-RPC 2.0 (single or batch)",
        "GET /ws": "JSON-RPC over a WebSocket, with subscribe/unsubscribe",
        "GET /metrics": "Prometheus text",
        "GET /health": "200 while the node makes progress, else 503 with the reasons",
        "GET /explorer": "the block explorer page" if explorer.on else f"off: {explorer.reason}",
    }


@dataclass
class Server:
    """A listening RPC server (start)."""

    runner: web.AppRunner
    listener: asyncio.AbstractServer

    async def close(self) -> None:
        self.listener.close()
        await self.runner.cleanup()


async def start(node: Node, host: str, port: int, max_body: int, limits: Limits = Limits(),
                explorer: explorer_page.Setting | None = None) -> Server:
    """Listen on host:port; OSError where that cannot be done.  `explorer`: whether GET
    /explorer is served (default: as --explorer auto decides for this host)."""
    conns = _Connections(limits)
    if explorer is None:
        explorer = explorer_page.setting("auto", host)
    runner = web.AppRunner(make_app(node, max_body, conns, explorer), access_log=None)
    await runner.setup()
    assert runner.server is not None
    protocol = runner.server
    try:
        listener = await asyncio.get_running_loop().create_server(lambda: _Guard(conns, protocol()), host, port,
                                                                  reuse_address=True)
    except OSError:
        await runner.cleanup()
        raise
    return Server(runner, listener)
