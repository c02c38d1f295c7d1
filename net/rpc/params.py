"""Reading a method's params: each checked and converted, or -32602 saying which param is
wrong and what it must be."""
from __future__ import annotations

from typing import Any

from ledger.keys import parse_address, parse_hex
from ledger.tx import MAX_FUNCTION_NAME, encode_args
from vm.codec import encode_value
from vm.decimals import Decimal
from vm.errors import VMError
from vm.json_values import from_json_arg
from vm.limits import MAX_STORAGE_KEY_BYTES
from net.rpc.errors import INVALID_PARAMS, RpcError


def _bad(name: str, what: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {name} must be {what}")


def p_int(v: Any, name: str, lo: int = 0) -> int:
    if type(v) is not int or v < lo:
        raise _bad(name, f"an integer >= {lo}")
    return v


def p_hex(v: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(v, str):
        raise _bad(name, "a hex string")
    s = v[2:] if v[:2].lower() == "0x" else v
    try:
        b = parse_hex(s, name)
    except ValueError:
        raise _bad(name, "a hex string") from None
    if size is not None and len(b) != size:
        raise _bad(name, f"{size} bytes of hex")
    return b


def p_address(v: Any, name: str = "address") -> bytes:
    try:
        return parse_address(v)
    except ValueError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {name}: {e}") from None


def p_bool(v: Any, name: str) -> bool:
    if type(v) is not bool:
        raise _bad(name, "true or false")
    return v


def p_range(v: Any, name: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise _bad(name, f"an integer in [{lo}, {hi}]")
    return v


def p_value(v: Any, name: str) -> Any:
    """A contract value given as JSON (vm.json_values.from_json_arg: {"bytes": "0x.."}, ...)."""
    try:
        return from_json_arg(v)
    except VMError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {name}: {e.message}") from None


def p_args(v: Any) -> list:
    """Contract arguments: a JSON array, each item read by p_value; at most what a
    transaction may carry."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad("args", "an array of arguments")
    out = [p_value(x, f"args[{i}]") for i, x in enumerate(v)]
    try:
        encode_args(out)
    except VMError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: args: {e.message}") from None
    return out


def p_function(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_FUNCTION_NAME or not v.isascii():
        raise _bad("function", f"a function name of 1 to {MAX_FUNCTION_NAME} ASCII characters")
    return v


def p_source(v: Any, max_bytes: int) -> str:
    try:
        ok = type(v) is str and 0 < len(v.encode()) <= max_bytes
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is not UTF-8
        ok = False
    if not ok:
        raise _bad("source", f"non-empty UTF-8 contract source of at most {max_bytes} bytes")
    return v


def p_storage_key(v: Any) -> tuple[Any, bytes]:
    """(key, its encoding): what `storage[key]` inside the contract would look up."""
    k = p_value(v, "key")
    try:
        hash(k)
    except TypeError:
        raise _bad("key", 'a str, bytes, int, bool, null or a tuple of these ({"tuple": [...]}): '
                          "lists and objects cannot be storage keys") from None
    if type(k) is Decimal:
        raise _bad("key", "a str, bytes, int, bool, null or a tuple: a Decimal cannot be a storage key")
    try:
        return k, encode_value(k, MAX_STORAGE_KEY_BYTES)
    except VMError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: key: {e.message}") from None
