"""One JSON-RPC 2.0 request -> its answer: the request checked, its method found, its params
bound to the handler's arguments (by position or by name), and every failure answered as
an error object (a notification is never answered)."""
from __future__ import annotations

import inspect
import keyword
import logging
import re
import time
from typing import Any, Awaitable

from vm.limits import MAX_INT_DIGITS
from net.rpc.errors import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RpcError
from net.rpc.jsonio import HugeInt, _huge
from net.rpc.methods import METHODS, Method, Node
from net.rpc.metrics import label_of

log = logging.getLogger("gradchain.rpc")
WS_ONLY = ("subscribe", "unsubscribe")  # methods of a WebSocket connection (net/rpc/ws.py)


def _py_name(name: str) -> str:
    """A param named like a Python keyword (`from`) is the method's `from_`; the name
    `from_` itself is no param."""
    if keyword.iskeyword(name):
        return name + "_"
    if name.endswith("_") and keyword.iskeyword(name[:-1]):
        raise RpcError(INVALID_PARAMS, f"invalid params: got an unexpected keyword argument {name!r}")
    return name


def _rpc_name(m: re.Match) -> str:
    return f"'{m[1]}'" if keyword.iskeyword(m[1]) else m[0]


def _bind(fn: Method, node: Node, params: Any) -> Awaitable[Any]:
    if params is None:
        params = []
    if not isinstance(params, (list, dict)):
        raise RpcError(INVALID_REQUEST, "invalid request: params must be an array or an object")
    try:
        bound = inspect.signature(fn).bind(node, *params) if isinstance(params, list) \
            else inspect.signature(fn).bind(node, **{_py_name(k): v for k, v in params.items()})
    except TypeError as e:
        raise RpcError(INVALID_PARAMS, "invalid params: " + re.sub(r"'(\w+)_'", _rpc_name, str(e))) from None
    return fn(*bound.args, **bound.kwargs)


def _check_request(req: Any) -> tuple[Any, str, Any]:
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        raise RpcError(INVALID_REQUEST, 'invalid request: expected {"jsonrpc": "2.0", "method": ..., "id": ...}')
    rid = req.get("id")
    if type(rid) is HugeInt:
        raise RpcError(INVALID_REQUEST, f"invalid request: id is a number of {rid.digits} digits (at most "
                                        f"{MAX_INT_DIGITS}): use a string, a smaller integer or null")
    if rid is not None and type(rid) not in (int, str):
        raise RpcError(INVALID_REQUEST, "invalid request: id must be a string, an integer or null")
    return rid, req["method"], req.get("params")


async def _call(node: Node, req: Any, methods: dict[str, Method] = METHODS) -> dict | None:
    """req's answer (None for a notification); `methods` is the table it may call (a WebSocket adds
    subscribe and unsubscribe)."""
    rid: Any = None
    start = time.perf_counter()
    try:
        rid, name, params = _check_request(req)
        huge = _huge(params)
        if huge is not None:
            raise RpcError(INVALID_PARAMS, f"invalid params: a number of {huge.digits} digits is over the limit of "
                                           f"{MAX_INT_DIGITS} digits")
        fn = methods.get(name)
        if fn is None:
            hint = " (served over the WebSocket at GET /ws)" if name in WS_ONLY else ""
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name!r}{hint}")
        result = await _bind(fn, node, params)
        resp: dict = {"jsonrpc": "2.0", "id": rid, "result": result}
    except RpcError as e:
        resp = {"jsonrpc": "2.0", "id": rid, "error": e.to_json()}
    except Exception:  # an engine bug: say so, keep serving
        log.exception("internal error in %r", req)
        resp = {"jsonrpc": "2.0", "id": rid, "error": {"code": INTERNAL_ERROR, "message": "internal error"}}
    node.metrics.rpc_done(label_of(req.get("method") if isinstance(req, dict) else None, methods),
                          time.perf_counter() - start)
    if _is_notification(req):
        return None  # a notification is never answered, not even with an error (JSON-RPC 2.0)
    return resp


def _is_notification(req: Any) -> bool:
    return isinstance(req, dict) and "id" not in req and req.get("jsonrpc") == "2.0" \
        and isinstance(req.get("method"), str)


def _answer_id(req: Any) -> Any:
    """The id an answer to req carries (null where req has no valid one)."""
    rid = req.get("id") if isinstance(req, dict) else None
    return rid if type(rid) in (int, str) else None
