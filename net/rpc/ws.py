"""The WebSocket endpoint, GET /ws (docs/rpc.md "Subscriptions"): JSON-RPC 2.0 over one socket,
every method of POST / plus `subscribe` and `unsubscribe`.

Hostile by default: connections are counted (WsLimits.max_connections, HTTP 503 over it),
a message over the body bound closes the socket (1009), a binary frame closes it (1003), junk
JSON is answered -32700.  Answers and notifications leave through the connection's bounded
Sink, sent by one task; a client that does not read is dropped (4000, with the reason) and its
queue freed, so that the commit path that publishes never waits for it."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from aiohttp import WSMsgType, web

from net.rpc.batch import _batch
from net.rpc.connections import _Connections
from net.rpc.dispatch import _call
from net.rpc.errors import INVALID_REQUEST, PARSE_ERROR, SERVER_BUSY
from net.rpc.jsonio import _dumps, parse_int
from net.rpc.limits import MAX_BATCH
from net.rpc.methods import METHODS, Method
from net.rpc.subscriptions import WS_GOING_AWAY, WS_SLOW, WS_UNSUPPORTED, Hub, Sink, frame, parse_filter

log = logging.getLogger("gradchain.rpc")

SEND_BUFFER = 256 << 10  # bytes of a WebSocket's kernel send buffer (fixed: no autotuning to megabytes)
HEARTBEAT = 30.0         # s between pings; a peer that does not answer one is closed
MAX_REASON = 123         # bytes of a close frame's reason (RFC 6455: 125 with the code)
SEND_CHUNK = 256 << 10   # bytes of messages joined into one write
SEND_HIGH = 64 << 10     # bytes a socket's transport may hold before its sender waits (aiohttp's own bound)
SEND_POLL = 0.005        # s between looks at a full transport


def _text_frame_head(n: int) -> bytes:
    """The header of an unmasked, final text frame of n bytes (RFC 6455 section 5.2: the server's)."""
    if n < 126:
        return bytes((0x81, n))
    if n < 1 << 16:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def _error(rid: Any, code: int, message: str) -> str:
    return _dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def _refuse(code: int, message: str, status: int) -> web.Response:
    resp = web.Response(text=_error(None, code, message), status=status, content_type="application/json")
    resp.force_close()
    return resp


class _Socket:
    """One WebSocket connection: its Sink, the task that sends it, its subscriptions."""

    def __init__(self, ws: web.WebSocketResponse, hub: Hub, transport: Any):
        self.ws, self.hub, self.transport = ws, hub, transport
        self.subs: set[str] = set()
        self.ready = asyncio.Event()
        self.sink = Sink(hub.limits, on_drop=self._dropped, wake=self.ready.set)
        self.sender = asyncio.get_running_loop().create_task(self._send())
        self.closer: asyncio.Task | None = None
        self.methods: dict[str, Method] = {**METHODS, "subscribe": self._subscribe, "unsubscribe": self._unsubscribe}

    async def _subscribe(self, _node: Any, kind: Any, filter: Any = None) -> str:  # noqa: A002 - the documented name
        flt = parse_filter(kind, filter)
        sid = self.hub.subscribe(self.sink, kind, flt, len(self.subs))
        self.subs.add(sid)
        return sid

    async def _unsubscribe(self, _node: Any, id: Any) -> bool:  # noqa: A002 - the documented name
        if type(id) is not str or id not in self.subs:
            return False
        self.subs.discard(id)
        return self.hub.unsubscribe(id, self.sink)

    async def _send(self) -> None:
        """Everything queued, as one write of text frames per wake (a syscall per message cost as
        much as the rest of a notification), then wait while the transport holds over SEND_HIGH."""
        sink, transport = self.sink, self.transport
        while True:
            await self.ready.wait()
            self.ready.clear()
            while sink.queue:
                out = []
                size = 0
                while sink.queue and size < SEND_CHUNK:
                    data = frame(*sink.take()).encode()
                    out.append(_text_frame_head(len(data)))
                    out.append(data)
                    size += len(data)
                if transport is None or transport.is_closing():
                    return
                transport.write(b"".join(out))
                while transport.get_write_buffer_size() > SEND_HIGH:
                    if transport.is_closing():
                        return
                    await asyncio.sleep(SEND_POLL)

    def _dropped(self, reason: str) -> None:
        """The Sink went over its bound (called from the commit path: never blocks)."""
        log.info("rpc: dropped a WebSocket subscriber: %s", reason)
        self.close(WS_SLOW, reason)

    def close(self, code: int, reason: str) -> None:
        if self.closer is None:
            self.sender.cancel()
            self.closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:MAX_REASON]),
                                   self.hub.limits.close_grace)
        except asyncio.TimeoutError:  # it did not take its close frame in time: nothing more is kept for it
            if self.transport is not None:
                self.transport.abort()
        except ConnectionError:
            pass

    async def on_text(self, node: Any, data: str) -> None:
        try:
            doc = json.loads(data, parse_int=parse_int)
        except (ValueError, RecursionError):
            self.sink.put(None, _error(None, PARSE_ERROR, "parse error: message is not JSON"))
            return
        if isinstance(doc, list):
            if not doc or len(doc) > MAX_BATCH:
                self.sink.put(None, _error(None, INVALID_REQUEST, f"invalid request: a batch holds 1 to {MAX_BATCH} "
                                                                  "requests"))
                return
            texts = await _batch(node, doc)  # subscribe is not a batch method: one request each
            if texts:
                self.sink.put(None, "[" + ",".join(texts) + "]")
            return
        resp = await _call(node, doc, self.methods)
        if resp is not None:
            self.sink.put(None, _dumps(resp))

    async def finish(self) -> None:
        self.hub.close_sink(self.sink)
        self.subs.clear()
        self.sender.cancel()
        if self.closer is not None:
            await asyncio.gather(self.closer, return_exceptions=True)


def add_routes(app: web.Application, node: Any, conns: _Connections, max_body: int) -> None:
    """GET /ws on app, and the close of every open socket (1001) when the server shuts down."""
    hub: Hub = node.hub
    open_sockets: set[_Socket] = set()

    async def serve(request: web.Request) -> web.StreamResponse:
        guard = conns.guards.get(request.transport)
        if guard is not None:
            guard.disarm()  # a socket is long-lived: its own bounds replace the header timeout
        ws = web.WebSocketResponse(max_msg_size=max_body, heartbeat=HEARTBEAT, timeout=hub.limits.close_grace,
                                   compress=False)
        if not ws.can_prepare(request).ok:
            return _refuse(INVALID_REQUEST, "invalid request: GET /ws expects a WebSocket upgrade; POST / serves "
                                            "plain JSON-RPC", 400)
        if hub.connections >= hub.limits.max_connections:
            return _refuse(SERVER_BUSY, f"server busy: {hub.limits.max_connections} WebSocket connections are open, "
                                        "the most it serves: retry later", 503)
        await ws.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        hub.connections += 1
        s = _Socket(ws, hub, request.transport)
        open_sockets.add(s)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await s.on_text(node, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    s.close(WS_UNSUPPORTED, "binary frames are not accepted: send JSON-RPC 2.0 as text")
                    break
                else:  # an error (a message over the bound: aiohttp closed it with 1009)
                    break
                if s.closer is not None:
                    break
        finally:
            open_sockets.discard(s)
            hub.connections -= 1
            await s.finish()
        return ws

    async def shutdown(_app: web.Application) -> None:
        for s in list(open_sockets):
            s.close(WS_GOING_AWAY, "the node is shutting down")
        await asyncio.gather(*(s.closer for s in open_sockets if s.closer is not None), return_exceptions=True)

    app.router.add_get("/ws", serve)
    app.on_shutdown.append(shutdown)
