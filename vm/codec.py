"""The one canonical byte form of contract values (vm/values.py says which values there are).

Contract code is hostile: a value may be cyclic (`L.append(L)`) or share sub-values so
that its logical size is exponential in its memory size.  The encoder and `measure`
therefore walk with a depth bound (MAX_VALUE_DEPTH) and stop as soon as the output or
count passes its budget: their work is bounded by the budget, never by the logical size.
The decoder is our own strict parser (not msgpack.unpackb), so the errors it raises and
their order depend on this file alone.

Wire format (valid msgpack with use_bin_type; `msgpack.unpackb` reads it, exts as ExtType):
  None, bool         nil, false/true
  int in [-2**63, 2**64)   msgpack int, minimal form (non-negative values as
                     fixint/uint8..uint64, negative as negative fixint/int8..int64)
  other int          ext 1: signed two's-complement big-endian, minimal length
  str, bytes         str (UTF-8) / bin, minimal headers
  list               array
  tuple              ext 2: the encoding of its items as an array
  dict               map, in the dict's insertion order
  Decimal            ext 3: its scaled int (value * 10**18), signed two's-complement
                     big-endian, minimal length
  Tensor             ext 4: [format code (0 = q16, 1 = int), [dims...], bin of the elements
                     as little-endian int32, row-major]
  Model              ext 5: [kind, [layers...], [params as ext 4...], [velocity as ext 4...]]
Ext headers are msgpack's minimal ones: fixext 1/2/4/8/16 when the data has that length,
else ext8/ext16/ext32.
"""
from __future__ import annotations

import struct
from typing import Any

import msgpack

from vm.decimals import Decimal
from vm.errors import InvalidValue, LimitExceeded
from vm.hash_groups import _is_key, hash_group
from vm.limits import MAX_INT_BITS, MAX_SAME_HASH, MAX_TENSOR_RANK, MAX_VALUE_DEPTH
from vm.tensors import (FORMATS, MODEL_KINDS, Model, Tensor, _I32, _check_range, _init_tensor, _shape_size,
                        a_kind, check_arch, np, param_shapes)
from vm.values import _check_int, _not_a_value, _type_name

__all__ = ["encode_value", "decode_value", "measure", "EXT_BIGINT", "EXT_TUPLE", "EXT_DECIMAL", "EXT_TENSOR",
           "EXT_MODEL"]

EXT_BIGINT = 1
EXT_TUPLE = 2
EXT_DECIMAL = 3
EXT_TENSOR = 4
EXT_MODEL = 5

_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1
_UINT64_END = 1 << 64


# ---------------------------------------------------------------------------
# encoding


def _signed_bytes(n: int) -> bytes:
    """Minimal signed two's-complement big-endian bytes of n (at least one byte)."""
    bits = n.bit_length() if n >= 0 else (~n).bit_length()
    return n.to_bytes(bits // 8 + 1, "big", signed=True)


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _ext_header(code: int, n: int) -> bytes:
    if n in _FIXEXT:
        return bytes((_FIXEXT[n], code))
    if n < 0x100:
        return bytes((0xC7, n, code))
    if n < 0x10000:
        return struct.pack(">BHB", 0xC8, n, code)
    return struct.pack(">BIB", 0xC9, n, code)


# Minimal msgpack length headers: (fix base, fix max, 8-bit, 16-bit, 32-bit) type bytes.
_STR = (0xA0, 31, 0xD9, 0xDA, 0xDB)
_BIN = (None, -1, 0xC4, 0xC5, 0xC6)
_ARRAY = (0x90, 15, None, 0xDC, 0xDD)
_MAP = (0x80, 15, None, 0xDE, 0xDF)


def _header(out: bytearray, kind: tuple, n: int) -> None:
    """Append the minimal header of a str/bin/array/map (`kind`) of length n."""
    fix, fix_max, b8, b16, b32 = kind
    if n <= fix_max:
        out.append(fix | n)
    elif b8 is not None and n < 0x100:
        out += bytes((b8, n))
    elif n < 0x10000:
        out += struct.pack(">BH", b16, n)
    elif n < 0x100000000:
        out += struct.pack(">BI", b32, n)
    else:
        raise LimitExceeded("a value has more than 2**32 - 1 elements")


def _encode_int(out: bytearray, n: int) -> None:
    if n >= 0:
        if n < 0x80:
            out.append(n)
        elif n < 0x100:
            out += bytes((0xCC, n))
        elif n < 0x10000:
            out += struct.pack(">BH", 0xCD, n)
        elif n < 0x100000000:
            out += struct.pack(">BI", 0xCE, n)
        elif n < _UINT64_END:
            out += struct.pack(">BQ", 0xCF, n)
        else:
            _encode_ext(out, EXT_BIGINT, _signed_bytes(_check_int(n)))
    elif n >= -32:
        out.append(n & 0xFF)
    elif n >= -0x80:
        out += struct.pack(">Bb", 0xD0, n)
    elif n >= -0x8000:
        out += struct.pack(">Bh", 0xD1, n)
    elif n >= -0x80000000:
        out += struct.pack(">Bi", 0xD2, n)
    elif n >= _INT64_MIN:
        out += struct.pack(">Bq", 0xD3, n)
    else:
        _encode_ext(out, EXT_BIGINT, _signed_bytes(_check_int(n)))


def _encode_ext(out: bytearray, code: int, data: bytes) -> None:
    out += _ext_header(code, len(data))
    out += data


def _too_big(max_bytes: int) -> LimitExceeded:
    return LimitExceeded(f"the encoded value is over the limit of {max_bytes} bytes")


def _encode(out: bytearray, v: Any, depth: int, max_bytes: int) -> None:
    """Append v's encoding; depth counts the containers around v."""
    t = type(v)
    if v is None:
        out.append(0xC0)
    elif t is bool:
        out.append(0xC3 if v else 0xC2)
    elif t is int:
        _encode_int(out, v)
    elif t is str:
        if len(v) > max_bytes:  # every character takes at least one byte
            raise _too_big(max_bytes)
        try:
            data = v.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValue("a str with a lone surrogate cannot be encoded") from None
        _header(out, _STR, len(data))
        out += data
    elif t is bytes:
        if len(v) > max_bytes:
            raise _too_big(max_bytes)
        _header(out, _BIN, len(v))
        out += v
    elif t is Decimal:
        _encode_ext(out, EXT_DECIMAL, _signed_bytes(v._q))
    elif t is Tensor or t is Model:
        if v.nbytes > max_bytes:  # before copying the elements
            raise _too_big(max_bytes)
        if t is Tensor:
            _encode_ext(out, EXT_TENSOR, _tensor_payload(v))
        else:
            _encode_ext(out, EXT_MODEL, _model_payload(v))
    elif t is list or t is tuple or t is dict:
        depth += 1
        if depth > MAX_VALUE_DEPTH:
            raise LimitExceeded(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
        if len(v) > max_bytes:  # every element takes at least one byte
            raise _too_big(max_bytes)
        start = len(out)
        if t is dict:
            _header(out, _MAP, len(v))
            for k, x in v.items():  # keys are hashable, so any key that is a value is a valid key
                _encode(out, k, depth, max_bytes)
                _encode(out, x, depth, max_bytes)
        else:
            _header(out, _ARRAY, len(v))
            for x in v:
                _encode(out, x, depth, max_bytes)
            if t is tuple:
                out[start:start] = _ext_header(EXT_TUPLE, len(out) - start)
    else:
        raise _not_a_value(v)
    if len(out) > max_bytes:
        raise _too_big(max_bytes)


def _tensor_payload(t: Tensor) -> bytearray:
    out = bytearray((0x93, FORMATS.index(t.fmt)))
    _header(out, _ARRAY, len(t.shape))
    for d in t.shape:
        _encode_int(out, d)
    _header(out, _BIN, t._data.nbytes)
    out += t._data.tobytes()  # '<i4': little-endian on every host
    return out


def _model_payload(m: Model) -> bytearray:
    out = bytearray((0x94,))
    kind = m.kind.encode("ascii")
    _header(out, _STR, len(kind))
    out += kind
    _header(out, _ARRAY, len(m.layers))
    for d in m.layers:
        _encode_int(out, d)
    for ts in (m.params, m.velocity):
        _header(out, _ARRAY, len(ts))
        for t in ts:
            _encode_ext(out, EXT_TENSOR, _tensor_payload(t))
    return out


def encode_value(v: Any, max_bytes: int) -> bytes:
    """The canonical bytes of v; LimitExceeded as soon as they pass max_bytes.

    Work is O(max_bytes * MAX_VALUE_DEPTH) at worst, whatever v's logical size (shared or
    cyclic sub-values are walked as often as they occur, and stop at the budget or depth).
    """
    t = type(v)
    if _flat(v) or (t is list or t is dict or t is tuple) and _all_flat(v):
        try:  # msgpack's own packer: the same bytes as the walk below, faster
            if t is tuple:
                inner = _pack(list(v))
                data = _ext_header(EXT_TUPLE, len(inner)) + inner
            else:
                data = _pack(v)
        except (UnicodeEncodeError, ValueError, OverflowError):
            data = None  # the walk below says what is wrong
        if data is not None:
            if len(data) > max_bytes:
                raise _too_big(max_bytes)
            return data
    out = bytearray()
    _encode(out, v, 0, max_bytes)
    return bytes(out)


_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_FLAT_TYPES = (str, bytes, bool, type(None))
_KEY_INT = 1 << 60  # flat dict keys: ints whose hash no author can make collide


def _flat(x: Any) -> bool:
    """A scalar that msgpack's packer encodes exactly as _encode does."""
    t = type(x)
    return t in _FLAT_TYPES or t is int and _INT64_MIN <= x <= _UINT64_MAX


def _all_flat(v: list | tuple | dict) -> bool:
    if type(v) is not dict:
        return all(map(_flat, v))
    return all(map(_flat, v.values())) and all(
        type(k) in _FLAT_TYPES or type(k) is int and -_KEY_INT < k < _KEY_INT for k in v)

# ---------------------------------------------------------------------------
# decoding


class _Reader:
    """A cursor over the bytes being decoded; every read is bounds-checked."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, end: int) -> bytes:
        if n > end - self.pos:
            raise InvalidValue("truncated value")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self, size: int, end: int) -> int:
        return int.from_bytes(self.take(size, end), "big")


def _decode(r: _Reader, end: int, depth: int) -> Any:
    """Read one value ending at or before `end`; depth counts the containers around it."""
    b = r.take(1, end)[0]
    if b <= 0x7F:
        return b
    if b >= 0xE0:
        return b - 0x100
    if b <= 0x8F:
        return _decode_map(r, b & 0x0F, end, depth)
    if b <= 0x9F:
        return _decode_items(r, b & 0x0F, end, depth)
    if b <= 0xBF:
        return _decode_str(r, b & 0x1F, end)
    if b == 0xC0:
        return None
    if b == 0xC2:
        return False
    if b == 0xC3:
        return True
    if 0xC4 <= b <= 0xC6:
        return r.take(r.uint(1 << (b - 0xC4), end), end)
    if 0xC7 <= b <= 0xC9:
        n = r.uint(1 << (b - 0xC7), end)
        return _decode_ext(r, n, end, depth)
    if b == 0xCA or b == 0xCB:
        raise InvalidValue("floats are not allowed")
    if 0xCC <= b <= 0xCF:
        return r.uint(1 << (b - 0xCC), end)
    if 0xD0 <= b <= 0xD3:
        return int.from_bytes(r.take(1 << (b - 0xD0), end), "big", signed=True)
    if 0xD4 <= b <= 0xD8:
        return _decode_ext(r, 1 << (b - 0xD4), end, depth)
    if 0xD9 <= b <= 0xDB:
        return _decode_str(r, r.uint(1 << (b - 0xD9), end), end)
    if b == 0xDC or b == 0xDD:
        return _decode_items(r, r.uint(2 if b == 0xDC else 4, end), end, depth)
    if b == 0xDE or b == 0xDF:
        return _decode_map(r, r.uint(2 if b == 0xDE else 4, end), end, depth)
    raise InvalidValue("invalid msgpack type byte 0xc1")  # the only byte left


def _decode_str(r: _Reader, n: int, end: int) -> str:
    try:
        return r.take(n, end).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValue("a str is not valid UTF-8") from None


def _enter(depth: int) -> int:
    depth += 1
    if depth > MAX_VALUE_DEPTH:
        raise InvalidValue(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
    return depth


def _decode_items(r: _Reader, n: int, end: int, depth: int) -> list:
    depth = _enter(depth)
    return [_decode(r, end, depth) for _ in range(n)]


def _decode_map(r: _Reader, n: int, end: int, depth: int) -> dict:
    depth = _enter(depth)
    d: dict = {}
    same_hash: dict[Any, int] = {}
    for _ in range(n):
        k = _decode(r, end, depth)
        if not _is_key(k):
            raise InvalidValue("a map key is not hashable (a list or dict, or a tuple holding one)")
        group = hash_group(k)
        if group is not None:
            same_hash[group] = same_hash.get(group, 0) + 1
            if same_hash[group] > MAX_SAME_HASH:
                raise InvalidValue(f"more than {MAX_SAME_HASH} map keys share one hash")
        if k in d:
            raise InvalidValue("duplicate map key")
        d[k] = _decode(r, end, depth)
    return d


def _decode_ext(r: _Reader, n: int, end: int, depth: int) -> Any:
    code = int.from_bytes(r.take(1, end), "big", signed=True)
    if n > end - r.pos:
        raise InvalidValue("truncated value")
    if code == EXT_TUPLE:
        ext_end = r.pos + n
        b = r.take(1, ext_end)[0] if n else None
        if b is not None and 0x90 <= b <= 0x9F:
            count = b & 0x0F
        elif b == 0xDC or b == 0xDD:
            count = r.uint(2 if b == 0xDC else 4, ext_end)
        else:
            raise InvalidValue("a tuple's data is not an array")
        items = _decode_items(r, count, ext_end, depth)
        if r.pos != ext_end:
            raise InvalidValue("trailing bytes inside a tuple")
        return tuple(items)
    if code == EXT_BIGINT or code == EXT_DECIMAL:
        if n > MAX_INT_BITS // 8 + 1:
            raise InvalidValue(f"an int may have at most {MAX_INT_BITS} bits")
        q = int.from_bytes(r.take(n, end), "big", signed=True)
        if q.bit_length() > MAX_INT_BITS:
            raise InvalidValue(f"an int may have at most {MAX_INT_BITS} bits")
        return q if code == EXT_BIGINT else Decimal.from_scaled(q)
    if code == EXT_TENSOR or code == EXT_MODEL:
        ext_end = r.pos + n
        v = _decode_tensor(r, ext_end) if code == EXT_TENSOR else _decode_model(r, ext_end)
        if r.pos != ext_end:
            raise InvalidValue(f"trailing bytes inside a {'tensor' if code == EXT_TENSOR else 'model'}")
        return v
    raise InvalidValue(f"unknown msgpack ext type {code}")


# The parts of a tensor's and a model's data are read by these strict readers (never by
# _decode): every count and size is checked against the limits before anything of that
# size is allocated, and decode_value's final re-encoding rejects non-minimal forms.

def _array_len(r: _Reader, end: int, what: str) -> int:
    b = r.take(1, end)[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC or b == 0xDD:
        return r.uint(2 if b == 0xDC else 4, end)
    raise InvalidValue(f"{what} is not an array")


def _small_uint(r: _Reader, end: int, what: str) -> int:
    b = r.take(1, end)[0]
    if b <= 0x7F:
        return b
    if 0xCC <= b <= 0xCF:
        return r.uint(1 << (b - 0xCC), end)
    raise InvalidValue(f"{what} is not an int >= 0")


def _decode_tensor(r: _Reader, end: int) -> Tensor:
    if r.take(1, end)[0] != 0x93:
        raise InvalidValue("a tensor's data is not [format, shape, elements]")
    code = _small_uint(r, end, "a tensor's format")
    if code >= len(FORMATS):
        raise InvalidValue(f"unknown tensor format code {code}")
    rank = _array_len(r, end, "a tensor's shape")
    if not 1 <= rank <= MAX_TENSOR_RANK:
        raise InvalidValue(f"a tensor has 1 to {MAX_TENSOR_RANK} dimensions, not {rank}")
    shape = tuple(_small_uint(r, end, "a tensor's dimension") for _ in range(rank))
    count = _shape_size(shape, "a tensor")
    b = r.take(1, end)[0]
    if not 0xC4 <= b <= 0xC6:
        raise InvalidValue("a tensor's elements are not bytes")
    nbytes = r.uint(1 << (b - 0xC4), end)
    if nbytes != 4 * count:
        raise InvalidValue(f"a tensor of shape {shape} has {4 * count} bytes of elements, not {nbytes}")
    arr = np.frombuffer(r.take(nbytes, end), dtype=_I32).reshape(shape)  # read-only, no copy
    fmt = FORMATS[code]
    _check_range(arr, fmt, "a tensor")
    t = object.__new__(Tensor)
    _init_tensor(t, shape, fmt, arr)
    return t


def _decode_model(r: _Reader, end: int) -> Model:
    if r.take(1, end)[0] != 0x94:
        raise InvalidValue("a model's data is not [kind, layers, params, velocity]")
    b = r.take(1, end)[0]
    if not 0xA0 <= b <= 0xBF:  # kinds are short
        raise InvalidValue("a model's kind is not a short str")
    kind = _decode_str(r, b & 0x1F, end)
    if kind not in MODEL_KINDS:
        raise InvalidValue(f"unknown model kind {ascii(kind)}")
    n = _array_len(r, end, "a model's layers")
    if n > MODEL_KINDS[kind][1]:
        raise InvalidValue(f"{a_kind(kind)} model has at most {MODEL_KINDS[kind][1]} layer sizes")
    layers = tuple(_small_uint(r, end, "a model's layer size") for _ in range(n))
    kind, layers = check_arch(kind, layers)  # bounds the parameters before any is read
    shapes = param_shapes(layers)
    parts = []
    for name in ("params", "velocity"):
        if _array_len(r, end, f"a model's {name}") != len(shapes):
            raise InvalidValue(f"{a_kind(kind)} model of {len(layers)} layer sizes has {len(shapes)} {name} tensors")
        ts = []
        for i, s in enumerate(shapes):
            b = r.take(1, end)[0]
            if b == 0xC7 or b == 0xC8 or b == 0xC9:
                size = r.uint(1 << (b - 0xC7), end)
            elif 0xD4 <= b <= 0xD8:
                size = 1 << (b - 0xD4)
            else:
                raise InvalidValue(f"a model's {name}[{i}] is not a tensor")
            if int.from_bytes(r.take(1, end), "big", signed=True) != EXT_TENSOR or size > end - r.pos:
                raise InvalidValue(f"a model's {name}[{i}] is not a tensor")
            t_end = r.pos + size
            t = _decode_tensor(r, t_end)
            if r.pos != t_end:
                raise InvalidValue("trailing bytes inside a tensor")
            if t.fmt != "q16" or t.shape != s:
                raise InvalidValue(f"a model's {name}[{i}] must be a q16 tensor of shape {s}")
            ts.append(t)
        parts.append(tuple(ts))
    m = object.__new__(Model)
    for name, v in (("kind", kind), ("layers", layers), ("params", parts[0]), ("velocity", parts[1])):
        object.__setattr__(m, name, v)
    return m


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("ext")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, ext_hook=_no_ext, timestamp=0)


def decode_value(data: bytes, max_bytes: int) -> Any:
    """The value whose canonical encoding is data (fresh objects).

    LimitExceeded when data is longer than max_bytes; InvalidValue for anything else that
    is not exactly the canonical encoding of a value (malformed or trailing bytes, floats,
    unknown ext types, non-minimal forms, nesting over MAX_VALUE_DEPTH, unhashable or
    duplicate map keys, invalid UTF-8).
    """
    if type(data) is not bytes:
        raise InvalidValue(f"expected bytes to decode, not {_type_name(data)}")
    if len(data) > max_bytes:
        raise LimitExceeded(f"the encoded value is {len(data)} bytes, over the limit of {max_bytes}")
    try:  # msgpack's own unpacker, for values that hold no ext type and no nesting
        v = _unpack(data)
    except Exception:  # noqa: BLE001 - anything odd goes to the strict parser below
        v = _unpack
    if v is not _unpack and (_flat(v) or type(v) in (list, dict) and _all_flat(v)) \
            and encode_value(v, max_bytes) == data:
        return v
    r = _Reader(data)
    v = _decode(r, len(data), 0)
    if r.pos != len(data):
        raise InvalidValue("trailing bytes after the value")
    # Every value has exactly one encoding; this rejects non-minimal ints, lengths and ext
    # headers, and ints in ext 1 that msgpack can hold natively.
    if encode_value(v, max_bytes) != data:
        raise InvalidValue("the value is not in canonical form")
    return v

# ---------------------------------------------------------------------------
# size


def _measure(v: Any, depth: int, left: int, limit: int) -> int:
    """Units left of the budget after counting v (depth counts the containers around it)."""
    t = type(v)
    if v is None or t is bool:
        left -= 1
    elif t is int:
        left -= 1 + v.bit_length() // 64
    elif t is str or t is bytes:
        left -= 1 + len(v) // 32
    elif t is Decimal:
        left -= 1 + v._q.bit_length() // 64
    elif t is Tensor or t is Model:  # read in C (np.frombuffer, a range check): by the KiB
        left -= 1 + v.nbytes // 1024
    elif t is list or t is tuple or t is dict:
        depth += 1
        if depth > MAX_VALUE_DEPTH:
            raise LimitExceeded(f"a value may nest containers at most {MAX_VALUE_DEPTH} deep")
        if len(v) >= left:  # every item counts at least one unit: fail before walking
            raise LimitExceeded(f"the value is over the size limit of {limit} units")
        left -= 1
        if t is dict:
            for k, x in v.items():
                left = _measure(x, depth, _measure(k, depth, left, limit), limit)
        else:
            for x in v:
                left = _measure(x, depth, left, limit)
    else:
        raise _not_a_value(v)
    if left < 0:
        raise LimitExceeded(f"the value is over the size limit of {limit} units")
    return left


def measure(v: Any, limit: int) -> int:
    """A deterministic size of v in units, at most `limit` (else LimitExceeded).

    Each value counts 1 unit, plus: an int bit_length // 64, a Decimal its scaled int's
    bit_length // 64, a str len(s) // 32 (characters), a bytes len(b) // 32, a Tensor or
    Model its element bytes // 1024 (params and velocity for a model); a list or tuple
    counts 1 plus its items, a dict 1 plus its keys and values.  A shared or cyclic
    sub-value counts each time it is reached; nesting over MAX_VALUE_DEPTH raises
    LimitExceeded, a type that is not a value raises InvalidValue.  Work is O(limit).
    """
    return limit - _measure(v, 0, limit, limit)
