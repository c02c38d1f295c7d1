"""The chain as a contract sees it: `ctx`, `storage`, and the injected functions
`require`, `emit`, `transfer` and `call`."""
from __future__ import annotations

from typing import Any

from vm import errors as E
from vm import gas as G
from vm.limits import (MAX_EVENT_BYTES, MAX_EVENTS, MAX_STORAGE_KEY_BYTES, MAX_STORAGE_VALUE_BYTES,
                       MAX_ARGS_BYTES, MAX_OUTPUT_BYTES)
from vm.codec import decode_value, encode_value
from vm.decimals import Decimal
from vm.intstr import int_to_str
from vm import meter
from vm.meter import allocate, charge
from vm.sizes import _SCALAR, _check_key, _err, _size_cost


ADDRESS_SIZE = 20


# ---- storage ---------------------------------------------------------------------------------

def _storage_key(k: Any) -> bytes:
    _check_key(k)
    if type(k) is Decimal:
        raise _err("a Decimal cannot be a storage key")
    return encode_value(k, MAX_STORAGE_KEY_BYTES)


def _sload(k: Any) -> Any:
    v = _sget(k)
    if v is _ABSENT:
        raise _err("key not found in storage")
    return v


_ABSENT = object()


def _sget(k: Any) -> Any:
    key = _storage_key(k)
    raw = meter.RT.host.storage_get(meter.RT.frames[-1].this, key)
    if raw is None:
        charge(G.STORAGE_READ + len(key) * G.STORAGE_PER_BYTE)
        return _ABSENT
    charge(G.STORAGE_READ + (len(key) + len(raw)) * G.STORAGE_PER_BYTE)
    allocate(2 * len(raw))
    return _decoded(decode_value(raw, MAX_STORAGE_VALUE_BYTES))


def _decoded(v: Any) -> Any:
    """A value just decoded from bytes (storage, call()): each element is a new object
    that the price of the bytes does not cover ([[]] * 120000 is 120 KB to read but 8 MB
    and 0.1 s to decode).  Charged and counted after the fact: the bytes bound the work."""
    t = type(v)
    if t is list or t is tuple or t is dict:
        n = _size_cost(v)
        charge(n * G.BUILTIN)
        allocate(64 * n)
    return v


def _shas(k: Any) -> bool:
    key = _storage_key(k)
    charge(G.STORAGE_READ + len(key) * G.STORAGE_PER_BYTE)
    return meter.RT.host.storage_get(meter.RT.frames[-1].this, key) is not None


def _sstore(k: Any, v: Any) -> None:
    key = _storage_key(k)
    charge(G.STORAGE_WRITE)
    if type(v) not in _SCALAR:
        _size_cost(v)
    raw = encode_value(v, MAX_STORAGE_VALUE_BYTES)
    charge((len(key) + len(raw)) * G.STORAGE_PER_BYTE)
    meter.RT.host.storage_set(meter.RT.frames[-1].this, key, raw)


def _sdel(k: Any) -> None:
    key = _storage_key(k)
    charge(G.STORAGE_DELETE + len(key) * G.STORAGE_PER_BYTE)
    meter.RT.host.storage_set(meter.RT.frames[-1].this, key, None)


# ---- injected functions ----------------------------------------------------------------------

def b_require(condition: Any, message: Any = "requirement failed") -> None:
    charge(G.BUILTIN)
    if not condition:
        if type(message) is not str:
            raise _err("require()'s message must be a str")
        # a lone surrogate ("\ud800") would make the receipt impossible to encode
        raise E.Revert(message[:1024].encode("utf-8", "backslashreplace").decode("utf-8"))


def _is_text(s: str) -> bool:
    """Whether s encodes as UTF-8 (no lone surrogates): receipts must be encodable."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def b_emit(name: Any, /, **data: Any) -> None:
    rt = meter.RT
    if type(name) is not str or not 0 < len(name) <= 64 or not _is_text(name):
        raise _err("emit()'s event name must be a str of 1 to 64 characters, without lone surrogates")
    if len(rt.events) >= MAX_EVENTS:
        raise E.LimitExceeded(f"more than {MAX_EVENTS} events in one transaction")
    if not all(type(x) in _SCALAR for x in data.values()):
        _size_cost(data)
    raw = encode_value(data, MAX_EVENT_BYTES)
    charge(G.EVENT + (len(raw) + len(name)) * G.EVENT_PER_BYTE)
    rt.events.append((rt.frames[-1].this, name, raw))


def _address(x: Any, what: str) -> bytes:
    if type(x) is not bytes or len(x) != ADDRESS_SIZE:
        raise _err(f"{what} must be a 20-byte address (bytes)")
    return x


def b_transfer(to: Any, amount: Any) -> None:
    to = _address(to, "transfer()'s recipient")
    if type(amount) is not int or amount < 0:
        raise _err("transfer()'s amount must be an int >= 0")
    charge(G.TRANSFER)
    rt = meter.RT
    this = rt.frames[-1].this
    if not rt.host.transfer(this, to, amount):
        raise _err(f"insufficient balance: the contract holds {int_to_str(rt.host.balance(this))}, "
                   f"cannot transfer {int_to_str(amount)}")  # int_to_str: the same text under any digit limit


def _copy_value(v: Any, limit: int, what: str) -> Any:
    """A value crossing between contracts: a fresh copy, so neither side can mutate
    the other's, paid by its encoded size."""
    _size_cost(v)
    try:
        raw = encode_value(v, limit)
    except E.InvalidValue as e:
        raise E.InvalidValue(f"{what}: {e.message}") from None
    charge(len(raw) * G.VALUE_PER_BYTE)
    allocate(2 * len(raw))
    return _decoded(decode_value(raw, limit))


def b_call(contract: Any, function: Any, /, *args: Any, **kwargs: Any) -> Any:
    rt = meter.RT
    contract = _address(contract, "call()'s contract")
    if type(function) is not str:
        raise _err("call()'s function name must be a str")
    charge(G.CONTRACT_CALL)
    if any(f.this == contract for f in rt.frames):
        raise E.Reentrancy(f"contract 0x{contract.hex()} is already running: re-entering it is not allowed")
    args = _copy_value(list(args), MAX_ARGS_BYTES, "call() arguments")
    kwargs = _copy_value(kwargs, MAX_ARGS_BYTES, "call() arguments")
    out = rt.call(contract, rt.frames[-1].this, function, args, kwargs)
    return _copy_value(out, MAX_OUTPUT_BYTES, "call() result")
