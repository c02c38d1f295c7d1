"""JSON views of contract values for RPC and the CLI (not consensus): `to_json` for answers,
`from_json_arg` for call arguments given as parsed JSON."""
from __future__ import annotations

from typing import Any

from vm.decimals import Decimal
from vm.errors import ContractRuntimeError, InvalidValue, LimitExceeded
from vm.hash_groups import _is_key
from vm.limits import MAX_VALUE_DEPTH
from vm.tensors import _INT32_MAX, _INT32_MIN, Model, Tensor, _shape_size, check_arch, np
from vm.values import _check_int, _not_a_value, _type_name

__all__ = ["to_json", "from_json_arg"]


def to_json(v: Any) -> Any:
    """A JSON-ready view of a value (for RPC answers; not consensus).

    None, bool, int and str stay as they are; bytes become "0x" + hex, lists and tuples
    lists, a Decimal its str, a dict an object when every key is a str and otherwise a
    list of [key, value] pairs; a Tensor and a Model their tagged forms of from_json_arg
    (so from_json_arg(to_json(t)) == t for them).
    """
    return _to_json(v, 0)


def _to_json(v: Any, depth: int) -> Any:
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is bytes:
        return "0x" + v.hex()
    if t is Decimal:
        return str(v)
    if t is Tensor:
        return {"tensor": _tensor_json(v)}
    if t is Model:
        return {"model": {"kind": v.kind, "layers": list(v.layers), "params": [_tensor_json(p) for p in v.params],
                          "velocity": [_tensor_json(p) for p in v.velocity]}}
    if t is list or t is tuple or t is dict:
        depth = _enter_json(depth)
        if t is not dict:
            return [_to_json(x, depth) for x in v]
        if all(type(k) is str for k in v):
            return {k: _to_json(x, depth) for k, x in v.items()}
        return [[_to_json(k, depth), _to_json(x, depth)] for k, x in v.items()]
    raise _not_a_value(v)


def _tensor_json(t: Tensor) -> dict:
    return {"format": t.fmt, "shape": list(t.shape), "data": t._data.ravel().tolist()}


def _enter_json(depth: int) -> int:
    depth += 1
    if depth > MAX_VALUE_DEPTH:
        raise LimitExceeded(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
    return depth


def from_json_arg(x: Any) -> Any:
    """A value from a call argument given as parsed JSON (CLI and RPC).

    null, true/false, integers, strings, arrays and objects become None, bool, int, str,
    list and dict.  A string is always a str, even "0x..." hex.  An object with exactly one
    key, and that key one of these, is read as a tagged value instead of a dict:
      {"bytes": "0x0a0b"}              bytes ("0x" and an even number of hex digits)
      {"decimal": "1.5"}               Decimal (the syntax of Decimal(str))
      {"tuple": [...]}                 tuple
      {"dict": [[key, value], ...]}    dict, for keys that are not all str
      {"tensor": {"format": "q16", "shape": [2, 3], "data": [...]}}
                                       Tensor: its int32 elements, row-major (q16: the Q.16
                                       integers, value * 65536)
      {"model": {"kind": "mlp", "layers": [4, 8, 3], "params": [...], "velocity": [...]}}
                                       Model: params and velocity as lists of the inner
                                       tensor objects above ("velocity" may be left out: zero)
    (so a dict whose only key is one of these six must be given in the "dict" form).
    Floats are refused: give {"decimal": "..."}.  Errors are InvalidValue, or
    LimitExceeded for an int over MAX_INT_BITS or nesting over MAX_VALUE_DEPTH.
    """
    return _from_json(x, 0)


def _from_json(x: Any, depth: int) -> Any:
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return _check_int(x)
    if t is list:
        depth = _enter_json(depth)
        return [_from_json(i, depth) for i in x]
    if t is dict:
        depth = _enter_json(depth)
        if len(x) == 1:
            (tag, arg), = x.items()
            if tag == "bytes":
                return _json_bytes(arg)
            if tag == "decimal":
                return _json_decimal(arg)
            if tag == "tensor":
                return _json_tensor(arg)
            if tag == "model":
                return _json_model(arg)
            if tag in ("tuple", "dict"):
                if type(arg) is not list:
                    raise InvalidValue(f'a {{"{tag}": ...}} argument takes a JSON array')
                if tag == "tuple":
                    return tuple(_from_json(i, depth) for i in arg)
                return _json_dict(arg, depth)
        if not all(type(k) is str for k in x):
            raise InvalidValue("a JSON object's keys are strings")
        return {k: _from_json(i, depth) for k, i in x.items()}
    if t is float:
        raise InvalidValue('floats are not allowed: give a Decimal as {"decimal": "1.5"}')
    raise InvalidValue(f"an argument of type {_type_name(x)} is not JSON")


def _json_bytes(arg: Any) -> bytes:
    h = arg[2:] if type(arg) is str and arg.startswith("0x") else None
    if h is None or len(h) % 2 or not all(c in "0123456789abcdefABCDEF" for c in h):
        raise InvalidValue('a {"bytes": ...} argument takes "0x" and an even number of hex digits')
    return bytes.fromhex(h)


def _json_decimal(arg: Any) -> Decimal:
    if type(arg) is not str:
        raise InvalidValue('a {"decimal": ...} argument takes a str such as "1.5"')
    try:
        return Decimal(arg)
    except ContractRuntimeError as e:
        raise InvalidValue(e.message) from None


def _json_dict(pairs: list, depth: int) -> dict:
    d: dict = {}
    for p in pairs:
        if type(p) is not list or len(p) != 2:
            raise InvalidValue('a {"dict": ...} argument takes a list of [key, value] pairs')
        k = _from_json(p[0], depth)
        if not _is_key(k):
            raise InvalidValue("a dict key is not hashable (a list or dict, or a tuple holding one)")
        if k in d:
            raise InvalidValue("duplicate dict key")
        d[k] = _from_json(p[1], depth)
    return d


def _json_tensor(arg: Any) -> Tensor:
    if type(arg) is not dict or set(arg) != {"format", "shape", "data"} or type(arg["shape"]) is not list \
            or type(arg["data"]) is not list:
        raise InvalidValue('a {"tensor": ...} argument takes {"format": "q16" or "int", "shape": [dims...], '
                           '"data": [ints...]}')
    shape = tuple(arg["shape"])
    n = _shape_size(shape, "a tensor")
    data = arg["data"]
    if len(data) != n or not all(type(x) is int for x in data):
        raise InvalidValue(f"a tensor of shape {shape} needs {n} ints in \"data\"")
    if not all(_INT32_MIN <= x <= _INT32_MAX for x in data):
        raise InvalidValue("a tensor's elements are int32")
    return Tensor(shape, arg["format"], np.array(data, dtype=np.int64))


def _json_model(arg: Any) -> Model:
    if type(arg) is not dict or not {"kind", "layers", "params"} <= set(arg) <= {"kind", "layers", "params",
                                                                                 "velocity"} \
            or type(arg["params"]) is not list or type(arg.get("velocity", [])) is not list:
        raise InvalidValue('a {"model": ...} argument takes {"kind": ..., "layers": [...], "params": [tensors...], '
                           '"velocity": [tensors...]}')
    kind, layers = check_arch(arg["kind"], arg["layers"])
    params = [_json_tensor(t) for t in arg["params"]]
    velocity = [_json_tensor(t) for t in arg["velocity"]] if "velocity" in arg else None
    return Model(kind, layers, params, velocity)
