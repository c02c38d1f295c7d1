"""Canonical msgpack: the single byte form of every hashed, signed or stored object.

Rules (DESIGN 2): consensus objects are msgpack arrays with a fixed field order and a
version field first; bytes travel as bin, text as str, integers in their minimal form;
map keys are sorted by their encoded bytes.  Decoding is strict: anything that would not
re-encode to exactly the same bytes (trailing data, non-minimal ints, unsorted or
duplicate map keys, floats, ext types, invalid UTF-8) is rejected.
"""
from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["DecodeError", "encode", "decode", "MAX_DEPTH"]

MAX_DEPTH = 32


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of an allowed value."""


def _canonical(obj: Any, depth: int = 0) -> Any:
    """Return obj with every dict's keys in canonical (encoded-bytes) order."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(obj)
    if t is list or t is tuple:
        return [_canonical(x, depth + 1) for x in obj]
    if t is dict:
        items = sorted(((msgpack.packb(k, use_bin_type=True), k, v) for k, v in obj.items()),
                       key=lambda kv: kv[0])
        return {k: _canonical(v, depth + 1) for _, k, v in items}
    if t in (int, bytes, str, bool) or obj is None:
        return obj
    if t is bytearray or t is memoryview:
        return bytes(obj)
    if isinstance(obj, int):  # IntEnum and other int subclasses travel as plain ints
        return int(obj)
    raise TypeError(f"cannot encode a value of type {t.__name__}")


def encode(obj: Any) -> bytes:
    """Canonical bytes of obj (ints, bytes, str, bool, None, lists/tuples, dicts)."""
    try:
        return msgpack.packb(_canonical(obj), use_bin_type=True)
    except OverflowError as e:
        raise ValueError("integer out of the 64-bit range") from e


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack ext type {code} is not allowed")


def _check_types(obj: Any, depth: int = 0) -> bool:
    """Raise DecodeError for a type canonical msgpack does not carry; True if obj holds a map
    (only then can its canonical bytes differ from a plain re-pack: key order)."""
    if depth > MAX_DEPTH:
        raise DecodeError("value nested too deeply")
    t = type(obj)
    if t is list:
        has_map = False
        for x in obj:
            has_map = _check_types(x, depth + 1) or has_map
        return has_map
    if t is dict:
        for k, v in obj.items():
            _check_types(k, depth + 1)
            _check_types(v, depth + 1)
        return True
    if not (t is int or t is bytes or t is str or t is bool or obj is None):
        raise DecodeError(f"a value of type {t.__name__} is not allowed")
    return False


def decode(data: bytes, max_size: int | None = None) -> Any:
    """Decode canonical bytes, raising DecodeError on anything non-canonical."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if max_size is not None and len(data) > max_size:
        raise DecodeError(f"encoded value is {len(data)} bytes, over the limit of {max_size}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True,
                              ext_hook=_reject_ext, timestamp=0)
    except DecodeError:
        raise
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        raise DecodeError(f"malformed msgpack: {type(e).__name__}") from None
    has_map = _check_types(obj)
    try:
        # without maps the decoded value is already in canonical shape: re-pack it as it is
        again = encode(obj) if has_map else msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise DecodeError(str(e)) from None
    if again != data:
        raise DecodeError("not in canonical form")
    return obj
