"""The asyncio SDK: `AsyncClient(url)`, the read methods of `Client` as coroutines, and the node's
subscriptions (docs/rpc.md "Subscriptions") as async iterators over one WebSocket:

    async with AsyncClient("http://127.0.0.1:8545") as c:
        print((await c.status())["height"])
        async for block in c.subscribe_blocks():
            print(block["height"], block["tx_count"])

Reads are Client's own methods (one way to shape each request and check each answer: proofs
included), run in a worker thread whose every RPC call is sent by this client's aiohttp
session on the caller's loop.  A subscription ends when the loop over it ends (it is then
unsubscribed: `aclose()` or `async with`); where the node closes the socket (a slow reader is dropped, the node stops)
the iterator raises ConnectionFailed with the node's close code and reason.
"""
from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, Callable

import aiohttp

from gradchain.client import Client, default_url, rpc_request, rpc_result
from gradchain.errors import ConnectionFailed, RpcError
from ledger.keys import address_hex, parse_address

_CLOSED = object()  # put on a subscription's queue when the socket closes


class _Bridge(Client):
    """Client's read methods with every call sent by the owning AsyncClient on its loop (they run
    in a worker thread: asyncio.to_thread)."""

    def __init__(self, owner: "AsyncClient", loop: asyncio.AbstractEventLoop):
        super().__init__(owner.url, owner.timeout)
        self._owner, self._loop = owner, loop

    def call(self, method: str, params: list | dict | None = None, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(self._owner.call(method, params, timeout), self._loop).result()


def _read(name: str) -> Callable[..., Any]:
    sync = getattr(Client, name)

    async def read(self: "AsyncClient", *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(sync, self._bridge(), *args, **kwargs)
    read.__name__ = read.__qualname__ = name
    read.__doc__ = sync.__doc__
    return read


def _hex_address(a: str | bytes | None) -> str | None:
    return None if a is None else address_hex(a if isinstance(a, bytes) else parse_address(a))


class AsyncClient:
    """An asyncio client: HTTP (aiohttp) for calls, one WebSocket (GET /ws) for subscriptions."""

    def __init__(self, url: str | None = None, timeout: float = 60.0):
        self.url = default_url() if url is None else url
        Client(self.url).close()  # the same URL check as Client
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ws_lock = asyncio.Lock()
        self._reader: asyncio.Task | None = None
        self._answers: dict[int, asyncio.Future] = {}
        self._subs: dict[str, asyncio.Queue] = {}
        self._closed_why = ""
        self._bridge_client: _Bridge | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._ws = self._reader = self._session = None

    def _bridge(self) -> _Bridge:
        if self._bridge_client is None:
            self._bridge_client = _Bridge(self, asyncio.get_running_loop())
        return self._bridge_client

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    # ---- calls ----------------------------------------------------------------------------

    async def call(self, method: str, params: list | dict | None = None, timeout: float | None = None) -> Any:
        """Call any RPC method (as Client.call), over HTTP."""
        body = rpc_request(next(self._ids), method, params)
        try:
            async with self._http().post(self.url, data=body, headers={"Content-Type": "application/json"},
                                         timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as resp:
                text = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ConnectionFailed(f"no answer from {self.url}: {e!r}") from None
        try:
            return rpc_result(json.loads(text))
        except ValueError:
            raise RpcError(-32603, f"node answered HTTP {resp.status} with a body that is not JSON") from None

    status = _read("status")
    block = _read("block")
    tx = _read("tx")
    trace_tx = _read("trace_tx")
    account = _read("account")
    balance = _read("balance")
    validators = _read("validators")
    view = _read("view")
    storage = _read("storage")
    storage_info = _read("storage_info")
    code = _read("code")
    estimate_gas = _read("estimate_gas")
    events = _read("events")
    blob = _read("blob")
    blob_chunk = _read("blob_chunk")
    wait_for_tx = _read("wait_for_tx")

    # ---- subscriptions --------------------------------------------------------------------

    async def _socket(self) -> aiohttp.ClientWebSocketResponse:
        async with self._ws_lock:
            if self._ws is None or self._ws.closed:
                ws_url = "ws" + self.url.removeprefix("http").rstrip("/") + "/ws"
                try:
                    self._ws = await self._http().ws_connect(ws_url, heartbeat=30.0, max_msg_size=64 << 20)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                    raise ConnectionFailed(f"no WebSocket at {ws_url}: {e!r}") from None
                self._closed_why = ""
                self._reader = asyncio.get_running_loop().create_task(self._read_socket(self._ws))
            return self._ws

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answers to their futures, notifications to their subscription's queue, until it closes."""
        why = "the WebSocket closed"
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.CLOSE:
                why = f"the node closed the WebSocket (code {msg.data}: {msg.extra or 'no reason given'})"
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            doc = json.loads(msg.data)
            if isinstance(doc, dict) and doc.get("method") == "subscription":
                q = self._subs.get(doc["params"]["subscription"])
                if q is not None:
                    q.put_nowait(doc["params"]["result"])
            elif isinstance(doc, dict):
                fut = self._answers.pop(doc.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(doc)
        self._closed_why = why
        for fut in self._answers.values():
            if not fut.done():
                fut.set_exception(ConnectionFailed(self._closed_why))
        for q in self._subs.values():
            q.put_nowait(_CLOSED)

    async def ws_call(self, method: str, params: list | dict | None = None) -> Any:
        """Call a method over the WebSocket (subscribe and unsubscribe exist only there)."""
        ws = await self._socket()
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._answers[rid] = fut
        await ws.send_str(rpc_request(rid, method, params).decode())
        return rpc_result(await asyncio.wait_for(fut, self.timeout))

    def subscribe(self, kind: str, filter: dict | None = None) -> "Subscription":  # noqa: A002
        """Every item of `kind` ("blocks", "txs", "events", "jobs") that matches `filter`,
        committed after the node took the subscription, in chain order (see Subscription)."""
        return Subscription(self, kind, filter or {})

    def subscribe_blocks(self) -> "Subscription":
        """Each committed block's header, tx count and gas used."""
        return self.subscribe("blocks")

    def subscribe_txs(self, sender: str | bytes | None = None, recipient: str | bytes | None = None,
                      contract: str | bytes | None = None, kind: str | None = None) -> "Subscription":
        """Each committed transaction that matches every filter given, with its receipt's summary."""
        flt = {"sender": _hex_address(sender), "recipient": _hex_address(recipient),
               "contract": _hex_address(contract), "kind": kind}
        return self.subscribe("txs", {k: v for k, v in flt.items() if v is not None})

    def subscribe_events(self, contract: str | bytes | None = None, name: str | None = None) -> "Subscription":
        """Each contract event of a committed transaction (the shape `events` answers)."""
        flt = {"contract": _hex_address(contract), "name": name}
        return self.subscribe("events", {k: v for k, v in flt.items() if v is not None})

    def subscribe_jobs(self, id: int | None = None, requester: str | bytes | None = None,  # noqa: A002
                       worker: str | bytes | None = None) -> "Subscription":
        """Each job (as `job` answers it, with `height`) after a committed block changed it."""
        flt = {"id": id, "requester": _hex_address(requester), "worker": _hex_address(worker)}
        return self.subscribe("jobs", {k: v for k, v in flt.items() if v is not None})


class Subscription:
    """One subscription: `async for item in sub`.  The node takes it at `await sub`, at `async
    with sub` or at the first item, whichever comes first (await it, or enter it, before doing
    what it should see); it ends (unsubscribed) at `aclose()` or when the `async with` ends."""

    def __init__(self, client: AsyncClient, kind: str, flt: dict):
        self.client, self.kind, self.filter = client, kind, flt
        self.id: str | None = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._done = False

    async def start(self) -> "Subscription":
        if self.id is None and not self._done:
            self.id = await self.client.ws_call("subscribe", [self.kind, self.filter])
            self.client._subs[self.id] = self._queue
        return self

    def __await__(self) -> Any:
        return self.start().__await__()

    async def __aenter__(self) -> "Subscription":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> dict:
        if self._done:
            raise StopAsyncIteration
        await self.start()
        item = await self._queue.get()
        if item is _CLOSED:
            self._done = True
            raise ConnectionFailed(self.client._closed_why)
        return item

    async def aclose(self) -> None:
        """Unsubscribe (where the socket is still open); the iteration then ends."""
        self._done = True
        if self.id is None:
            return
        self.client._subs.pop(self.id, None)
        ws = self.client._ws
        if ws is not None and not ws.closed:
            try:
                await self.client.ws_call("unsubscribe", [self.id])
            except (ConnectionFailed, RpcError, asyncio.TimeoutError):
                pass
