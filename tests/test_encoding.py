"""Canonical msgpack (ledger/encoding.py): round trips and strict decoding."""
from __future__ import annotations

import enum

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.encoding import MAX_DEPTH, DecodeError, decode, encode

I64_MIN = -(2**63)
U64_MAX = 2**64 - 1

ints = st.integers(min_value=I64_MIN, max_value=U64_MAX)
scalars = ints | st.binary(max_size=40) | st.text(max_size=20) | st.booleans() | st.none()
# Map keys: hashable scalars.  st.dictionaries keeps keys unique by Python equality, so
# 1 and True never share a dict (they could not in Python either).
keys = ints | st.binary(max_size=10) | st.text(max_size=10) | st.booleans() | st.none()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def depth(v, d=0):
    if isinstance(v, list):
        return max([depth(x, d + 1) for x in v], default=d)
    if isinstance(v, dict):
        return max([depth(x, d + 1) for x in v.values()], default=d)
    return d


def strict_eq(a, b) -> bool:
    """Equality that also compares types (True != 1, b'a' != 'a', list order, dict keys)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for k, v in a.items():
            match = [k2 for k2 in b if type(k2) is type(k) and k2 == k]
            if len(match) != 1 or not strict_eq(v, b[match[0]]):
                return False
        return True
    return a == b


# ---- round trips ------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_round_trip(v):
    assume(depth(v) <= MAX_DEPTH)
    raw = encode(v)
    back = decode(raw)
    assert strict_eq(back, v)
    assert encode(back) == raw


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, ints, max_size=8), st.randoms(use_true_random=False))
def test_dict_encoding_ignores_insertion_order(d, rnd):
    items = list(d.items())
    rnd.shuffle(items)
    assert encode(dict(items)) == encode(d)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, U64_MAX,
                               -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, I64_MIN])
def test_integer_boundaries_round_trip(n):
    raw = encode(n)
    assert decode(raw) == n and type(decode(raw)) is int
    assert raw == msgpack.packb(n)  # the minimal form


def test_encode_conversions():
    class Color(enum.IntEnum):
        RED = 7

    assert encode((1, 2, (3,))) == encode([1, 2, [3]])
    assert encode(bytearray(b"xy")) == encode(b"xy")
    assert encode(memoryview(b"xy")) == encode(b"xy")
    assert encode(Color.RED) == encode(7)
    assert encode(True) != encode(1)
    assert encode("a") != encode(b"a")


def test_map_keys_sorted_by_encoded_bytes():
    d = {b"b": 1, "a": 2, 300: 3, 1: 4, -1: 5, None: 6}
    raw = encode(d)
    # walk the map: keys must appear in increasing order of their own encodings
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(raw)
    assert unpacker.read_map_header() == len(d)
    encs = []
    for _ in range(len(d)):
        encs.append(msgpack.packb(unpacker.unpack(), use_bin_type=True))
        unpacker.skip()
    assert encs == sorted(encs)


@pytest.mark.parametrize("bad", [1.5, float("nan"), {1, 2}, object(), complex(1, 2)])
def test_encode_rejects_unsupported_types(bad):
    with pytest.raises(TypeError):
        encode(bad)
    with pytest.raises(TypeError):
        encode([1, {"k": bad}])


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 10**30])
def test_encode_rejects_out_of_range_ints(n):
    with pytest.raises(ValueError):
        encode(n)


def nested(n: int):
    v: list = []
    for _ in range(n):
        v = [v]
    return v


def test_depth_limit_boundary():
    ok = nested(MAX_DEPTH)  # innermost list sits at depth MAX_DEPTH
    assert decode(encode(ok)) == ok
    with pytest.raises(ValueError):
        encode(nested(MAX_DEPTH + 1))
    # the same depth through maps
    v: object = 1
    for _ in range(MAX_DEPTH):
        v = {"k": v}
    assert decode(encode(v)) == v
    with pytest.raises(ValueError):
        encode({"k": v})


# ---- strict decoding --------------------------------------------------------------------

def test_rejects_trailing_bytes():
    raw = encode([1, 2, 3])
    for extra in (b"\x00", b"\xc0", raw):
        with pytest.raises(DecodeError, match="trailing"):
            decode(raw + extra)


NON_MINIMAL = [
    b"\xcc\x05",                       # uint8 holding a positive fixint
    b"\xcc\x00",
    b"\xcd\x00\xff",                   # uint16 holding a uint8
    b"\xcd\x00\x05",
    b"\xce\x00\x00\xff\xff",           # uint32 holding a uint16
    b"\xcf" + (2**32 - 1).to_bytes(8, "big"),  # uint64 holding a uint32
    b"\xcf" + (0).to_bytes(8, "big"),
    b"\xd0\x05",                       # int8 holding a positive fixint
    b"\xd0\xff",                       # int8 -1: negative fixint is 0xff
    b"\xd1\xff\x80",                   # int16 -128: fits int8
    b"\xd1\x00\x80",                   # int16 +128: minimal is uint8
    b"\xd2\xff\xff\x80\x00",           # int32 -32768: fits int16
    b"\xd3" + (-1).to_bytes(8, "big", signed=True),
    b"\xd3" + (5).to_bytes(8, "big", signed=True),
]


@pytest.mark.parametrize("raw", NON_MINIMAL, ids=lambda b: b.hex())
def test_rejects_non_minimal_ints(raw):
    # msgpack itself reads them fine; only the canonical check refuses them
    msgpack.unpackb(raw)
    with pytest.raises(DecodeError, match="canonical"):
        decode(raw)


@pytest.mark.parametrize("raw", [
    b"\xd9\x01a",              # str8 for a 1-char string (fixstr is minimal)
    b"\xda\x00\x01a",          # str16
    b"\xc5\x00\x01a",          # bin16 for 1 byte (bin8 is minimal)
    b"\xc6\x00\x00\x00\x01a",  # bin32
    b"\xdc\x00\x01\x01",       # array16 of one element
    b"\xdd\x00\x00\x00\x00",   # empty array32
    b"\xde\x00\x01\x01\x02",   # map16 of one pair
], ids=lambda b: b.hex())
def test_rejects_non_minimal_containers_and_strings(raw):
    msgpack.unpackb(raw, raw=False, strict_map_key=False)
    with pytest.raises(DecodeError):
        decode(raw)


def test_rejects_unsorted_map_keys():
    good = encode({1: b"x", 2: b"y"})
    assert good == b"\x82\x01\xc4\x01x\x02\xc4\x01y"
    swapped = b"\x82\x02\xc4\x01y\x01\xc4\x01x"
    assert msgpack.unpackb(swapped, strict_map_key=False) == {1: b"x", 2: b"y"}
    with pytest.raises(DecodeError):
        decode(swapped)
    # str keys: "b" before "a"
    with pytest.raises(DecodeError):
        decode(b"\x82\xa1b\x01\xa1a\x02")
    assert decode(b"\x82\xa1a\x02\xa1b\x01") == {"a": 2, "b": 1}


@pytest.mark.parametrize("raw", [
    b"\x82\x01\x01\x01\x02",          # {1: 1, 1: 2}
    b"\x82\x01\x01\x01\x01",          # identical pairs
    b"\x82\xa1a\x01\xa1a\x01",        # {"a": 1, "a": 1}
    b"\x82\x01\x01\xc3\x02",          # {1: 1, true: 2}: distinct in msgpack, equal in Python
    b"\x82\x00\x01\xc2\x02",          # {0: 1, false: 2}
], ids=lambda b: b.hex())
def test_rejects_duplicate_map_keys(raw):
    with pytest.raises(DecodeError):
        decode(raw)


@pytest.mark.parametrize("raw", [
    b"\xca\x00\x00\x00\x00",
    b"\xca\x3f\xc0\x00\x00",
    b"\xcb" + bytes(8),
    b"\x91\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",   # [1.5]
    b"\x81\x01\xca\x00\x00\x00\x00",               # {1: 0.0}
], ids=lambda b: b.hex())
def test_rejects_floats(raw):
    with pytest.raises(DecodeError):
        decode(raw)


@pytest.mark.parametrize("raw", [
    b"\xd4\x01\x00",                   # fixext1 type 1
    b"\xd5\x05\x00\x00",               # fixext2
    b"\xc7\x00\x07",                   # ext8, empty, type 7
    b"\xd6\xff\x00\x00\x00\x01",       # timestamp32 (ext -1)
    b"\xd7\xff" + bytes(8),            # timestamp64
    b"\xd5\xff\x00\x00",               # malformed timestamp
    b"\x91\xd4\x01\x00",               # nested in an array
], ids=lambda b: b.hex())
def test_rejects_ext_types(raw):
    with pytest.raises(DecodeError):
        decode(raw)


@pytest.mark.parametrize("raw", [
    b"\xa1\xff",
    b"\xa2\xc3\x28",
    b"\xa3\xed\xa0\x80",               # an encoded surrogate
    b"\x81\xa1\xfe\x01",               # as a map key
], ids=lambda b: b.hex())
def test_rejects_invalid_utf8(raw):
    with pytest.raises(DecodeError):
        decode(raw)


def test_rejects_every_truncation():
    raw = encode([1, -300, 2**40, b"bytes" * 10, "text", {"k": [None, True]}, "é" * 20])
    assert decode(raw) is not None
    for n in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:n])


def test_rejects_nesting_too_deep():
    ok = b"\x91" * MAX_DEPTH + b"\x90"
    assert decode(ok) == nested(MAX_DEPTH)
    with pytest.raises(DecodeError, match="deep"):
        decode(b"\x91" * (MAX_DEPTH + 1) + b"\x90")
    # far deeper than msgpack's own stack: still a DecodeError, not a crash
    with pytest.raises(DecodeError):
        decode(b"\x91" * 100_000 + b"\x90")
    # maps count too
    with pytest.raises(DecodeError):
        decode(b"\x81\x01" * (MAX_DEPTH + 1) + b"\x90")


@pytest.mark.parametrize("raw", [b"", b"\xc1", b"\x81\x90\x01", b"\x81\x80\x01"], ids=lambda b: b.hex())
def test_rejects_malformed(raw):
    # empty input, the never-used byte, and unhashable (array / map) keys
    with pytest.raises(DecodeError):
        decode(raw)


def test_rejects_non_bytes_and_oversize():
    with pytest.raises(DecodeError):
        decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode(None)  # type: ignore[arg-type]
    raw = encode(b"x" * 100)
    assert decode(raw, max_size=len(raw)) == b"x" * 100
    with pytest.raises(DecodeError):
        decode(raw, max_size=len(raw) - 1)
    assert decode(bytearray(raw)) == b"x" * 100
    assert decode(memoryview(raw)) == b"x" * 100


def test_decode_error_is_a_value_error():
    assert issubclass(DecodeError, ValueError)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_only_raise_decode_error(data):
    try:
        v = decode(data)
    except DecodeError:
        return
    # whatever it accepts is exactly canonical
    assert encode(v) == data


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_mutated_encodings_are_canonical_or_rejected(v, data):
    assume(depth(v) <= MAX_DEPTH)
    raw = bytearray(encode(v))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        back = decode(bytes(raw))
    except DecodeError:
        return
    assert encode(back) == bytes(raw)
