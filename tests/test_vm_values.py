"""vm.values: contract values, Decimal arithmetic and the canonical codec (all consensus)."""
from __future__ import annotations

import copy
import decimal as pyd
import pickle
import sys
import time
from contextlib import contextmanager

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vm.errors import ContractRuntimeError, InvalidValue, LimitExceeded
from vm.limits import MAX_INT_BITS, MAX_STORAGE_VALUE_BYTES, MAX_VALUE_DEPTH
from vm.codec import decode_value, encode_value, measure
from vm.decimals import Decimal, decimal_scaled
from vm.intstr import int_to_str, str_to_int
from vm.json_values import from_json_arg, to_json

BIG = 10 ** 7  # a byte budget no test value reaches
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers -------------------------------------------------------------------------


def same(a, b) -> bool:
    """Equal with exact types at every level (1 != True != Decimal(1)), dict order included."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(same(k1, k2) and same(v1, v2)
                                        for (k1, v1), (k2, v2) in zip(a.items(), b.items()))
    if type(a) is Decimal:
        return decimal_scaled(a) == decimal_scaled(b)
    return a == b


def twos(n: int) -> bytes:
    """Minimal signed big-endian bytes, found by search (independent of the module's formula)."""
    size = 1
    while True:
        try:
            return n.to_bytes(size, "big", signed=True)
        except OverflowError:
            size += 1


def reference(v):
    """v in msgpack-python's terms, so msgpack.packb gives the expected bytes."""
    t = type(v)
    if t is int and not -2 ** 63 <= v < 2 ** 64:
        return msgpack.ExtType(1, twos(v))
    if t is tuple:
        return msgpack.ExtType(2, msgpack.packb([reference(x) for x in v], use_bin_type=True))
    if t is Decimal:
        return msgpack.ExtType(3, twos(decimal_scaled(v)))
    if t is list:
        return [reference(x) for x in v]
    if t is dict:
        return {reference(k): reference(x) for k, x in v.items()}
    return v


def packb(v) -> bytes:
    return msgpack.packb(reference(v), use_bin_type=True)


def nested(n: int, leaf=None, wrap=lambda x: [x]):
    v = leaf
    for _ in range(n):
        v = wrap(v)
    return v


@contextmanager
def int_str_limit(digits: int):
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(digits)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


# --- strategies ----------------------------------------------------------------------

LIMIT = 2 ** MAX_INT_BITS - 1
ints = st.one_of(
    st.integers(-2 ** 70, 2 ** 70),
    st.integers(-LIMIT, LIMIT),
    st.sampled_from([0, 127, 128, 255, 256, -32, -33, -128, -129, 2 ** 63, 2 ** 64 - 1, 2 ** 64,
                     -2 ** 63, -2 ** 63 - 1, LIMIT, -LIMIT]),
)
decimals = st.builds(Decimal.from_scaled, ints)
scalars = st.one_of(st.none(), st.booleans(), ints, st.text(max_size=40), st.binary(max_size=40), decimals)
keys = st.recursive(scalars, lambda c: st.lists(c, max_size=3).map(tuple), max_leaves=6)
values = st.recursive(
    scalars,
    lambda c: st.one_of(st.lists(c, max_size=5), st.lists(c, max_size=5).map(tuple),
                        st.dictionaries(keys, c, max_size=5)),
    max_leaves=25)


# --- codec: round trips and format ---------------------------------------------------


@FAST
@given(values)
def test_round_trip_and_msgpack_agrees(v):
    data = encode_value(v, BIG)
    assert data == packb(v)
    back = decode_value(data, BIG)
    assert same(back, v)
    assert encode_value(back, len(data)) == data


@pytest.mark.parametrize("v, hex_", [
    (None, "c0"), (False, "c2"), (True, "c3"),
    (0, "00"), (127, "7f"), (128, "cc80"), (-1, "ff"), (-32, "e0"), (-33, "d0df"),
    (2 ** 64 - 1, "cf" + "ff" * 8), (-2 ** 63, "d38000000000000000"),
    (2 ** 64, "c70901010000000000000000"), (-2 ** 63 - 1, "c70901ff7fffffffffffffff"),
    (2 ** 127, "c7110100" "80" + "00" * 15), (-2 ** 127, "d801" "80" + "00" * 15),
    ("a", "a161"), (b"a", "c40161"), ("é", "a2c3a9"),
    ([], "90"), ([1, [2]], "920191" "02"), ((), "d40290"), ((1, 2), "c70302920102"),
    ({}, "80"), ({"b": 1, "a": 2}, "82a16201a16102"), ({True: 1}, "81c301"), ({1: True}, "8101c3"),
    ({(1, 2): None}, "81c70302920102c0"),
    (Decimal(0), "d40300"), (Decimal("1.5"), "d70314d1120d7b160000"),
    (Decimal("-0.000001"), "c70603ff172b5af000"), (Decimal("-1"), "d703f21f494c589c0000"),
])
def test_pinned_bytes(v, hex_):
    assert encode_value(v, BIG).hex() == hex_
    assert same(decode_value(bytes.fromhex(hex_), BIG), v)


@pytest.mark.parametrize("n", [0, 15, 16, 31, 32, 255, 256, 65535, 65536])
def test_length_headers_match_msgpack(n):
    for v in ("x" * n, b"x" * n, [0] * n, tuple([0] * n), {i: 0 for i in range(n)}, 2 ** (8 * n) if n < 500 else 0):
        data = encode_value(v, BIG)
        assert data == packb(v)
        assert same(decode_value(data, BIG), v)


def test_bool_and_int_stay_distinct():
    assert encode_value(True, 10) != encode_value(1, 10)
    assert encode_value(False, 10) != encode_value(0, 10)
    for v in ({True: 1}, {1: True}, {(True, 0): 1}, {(1, False): 1}, [True, 1, False, 0]):
        assert same(decode_value(encode_value(v, 100), 100), v)
    assert type(next(iter(decode_value(encode_value({True: 0}, 10), 10)))) is bool
    assert type(next(iter(decode_value(encode_value({1: 0}, 10), 10)))) is int
    with pytest.raises(InvalidValue, match="duplicate"):  # 1 and True are one Python dict key
        decode_value(bytes.fromhex("820100c300"), 100)


def test_dict_order_is_insertion_order():
    d = {"z": 1, 3: 2, (1,): 3, b"a": 4, None: 5}
    assert list(decode_value(encode_value(d, 100), 100)) == list(d)


def test_decoded_values_are_fresh():
    data = encode_value({"a": [1, [2]], "t": ([3],)}, 100)
    a, b = decode_value(data, 100), decode_value(data, 100)
    a["a"][1].append(9)
    a["t"][0].append(9)
    assert b == {"a": [1, [2]], "t": ([3],)}


# --- codec: refusals -----------------------------------------------------------------


class Sub(int):
    pass


@pytest.mark.parametrize("v", [range(3), bytearray(b"x"), 1.5, Sub(1), {1}, frozenset(), len, lambda: 0,
                               [1, range(1)], {"a": memoryview(b"")}, {1.5: 0}, ((1, {2}),)])
def test_encode_refuses_other_types(v):
    with pytest.raises(InvalidValue, match="cannot be stored"):
        encode_value(v, BIG)


def test_encode_limits():
    with pytest.raises(LimitExceeded):
        encode_value(2 ** MAX_INT_BITS, BIG)
    with pytest.raises(LimitExceeded):
        encode_value(-(2 ** MAX_INT_BITS), BIG)
    assert decode_value(encode_value(-LIMIT, BIG), BIG) == -LIMIT
    with pytest.raises(LimitExceeded):
        encode_value("x" * 11, 10)
    with pytest.raises(LimitExceeded):
        encode_value([1] * 10, 10)
    assert len(encode_value([1] * 9, 10)) == 10
    assert encode_value(nested(MAX_VALUE_DEPTH), BIG)
    assert encode_value(nested(MAX_VALUE_DEPTH, wrap=lambda x: (x,)), BIG)
    with pytest.raises(LimitExceeded):
        encode_value(nested(MAX_VALUE_DEPTH + 1), BIG)
    with pytest.raises(LimitExceeded):
        encode_value(nested(MAX_VALUE_DEPTH + 1, wrap=lambda x: {0: x}), BIG)
    with pytest.raises(InvalidValue, match="surrogate"):
        encode_value("\ud800", BIG)


def exponential(wrap) -> object:
    """10**9 logical leaves in a few kilobytes: three levels of 1000 shared references."""
    v = 0
    for _ in range(3):
        v = wrap(v)
    return v


@pytest.mark.parametrize("wrap", [lambda x: [x] * 1000, lambda x: (x,) * 1000,
                                  lambda x: {i: x for i in range(1000)}])
def test_hostile_shared_structures_stop_at_the_budget(wrap):
    v = exponential(wrap)
    start = time.perf_counter()
    with pytest.raises(LimitExceeded):
        encode_value(v, MAX_STORAGE_VALUE_BYTES)
    with pytest.raises(LimitExceeded):
        measure(v, 1_000_000)
    assert time.perf_counter() - start < 2


def test_hostile_cycles_stop_at_the_depth_limit():
    a: list = []
    a.append(a)
    d: dict = {}
    d["d"] = d
    t = [0]
    t[0] = (1, t)
    wide = nested(30, wrap=lambda x: [x, x])  # 2**30 leaves, depth 30
    start = time.perf_counter()
    for v in (a, d, t, wide):
        with pytest.raises(LimitExceeded):
            encode_value(v, MAX_STORAGE_VALUE_BYTES)
        with pytest.raises(LimitExceeded):
            measure(v, 1_000_000)
    for v in (a, d, t):
        with pytest.raises(LimitExceeded):
            to_json(v)
    assert time.perf_counter() - start < 2


def tuple_of(inner_hex: str) -> str:
    """The hex of ext 2 holding inner_hex (given as is, valid or not)."""
    return msgpack.packb(msgpack.ExtType(2, bytes.fromhex(inner_hex))).hex()


MALFORMED = [
    ("", "truncated"),
    ("c1", "invalid"),
    ("ca00000000", "floats"),
    ("cb0000000000000000", "floats"),
    ("0102", "trailing"),
    ("92", "truncated"),
    ("9201", "truncated"),
    ("a261", "truncated"),
    ("ddffffffff", "truncated"),
    ("dfffffffff", "truncated"),
    ("c6ffffffff", "truncated"),
    ("c9ffffffff02", "truncated"),
    ("cc01", "canonical"),            # 1 as uint8
    ("d005", "canonical"),            # 5 as int8
    ("d0ff", "canonical"),            # -1 as int8
    ("cd00ff", "canonical"),          # 255 as uint16
    ("d3ffffffffffffffff", "canonical"),
    ("d40105", "canonical"),          # 5 in ext 1
    ("d7017fffffffffffffff", "canonical"),  # 2**63-1 in ext 1
    ("c70a0100010000000000000000", "canonical"),  # 2**64 with a leading zero byte
    ("c70001", "canonical"),          # empty ext 1
    ("c70003", "canonical"),          # empty Decimal
    ("d5030001", "canonical"),        # Decimal scaled 1 in two bytes
    ("d90161", "canonical"),          # "a" as str8
    ("c5000161", "canonical"),        # b"a" as bin16
    ("dc000100", "canonical"),        # [0] as array16
    ("de00010000", "canonical"),      # {0: 0} as map16
    ("c7010205", "a tuple's data is not an array"),  # tuple ext8 instead of fixext1, and no array
    ("c70102" "90", "canonical"),     # () in ext8
    ("d40601", "unknown msgpack ext type 6"),
    ("d6ff00000000", "unknown msgpack ext type -1"),  # a msgpack timestamp
    (tuple_of("01"), "not an array"),
    (tuple_of("9001"), "trailing bytes inside a tuple"),
    (tuple_of("91"), "truncated"),
    (tuple_of("92") + "0102", "truncated"),  # the array may not read past the ext
    ("a1ff", "UTF-8"),
    ("a3eda080", "UTF-8"),            # an encoded surrogate
    ("c40180" "ff", "trailing"),
    ("820101" "0102", "duplicate"),
    ("82" "a161" "01" "a161" "02", "duplicate"),
    ("82" "01" "00" + encode_value(Decimal(1), 99).hex() + "00", "duplicate"),
    ("81" "90" "00", "hashable"),
    ("81" "80" "00", "hashable"),
    ("81" + tuple_of("9190") + "00", "hashable"),
    ("91" * (MAX_VALUE_DEPTH + 1) + "c0", "nest"),
    ("81" * (MAX_VALUE_DEPTH + 1) + "c0", "nest"),
    ("c90000020101" + "01" * 514, "4096 bits"),  # an int of 514 bytes
    ("c802010102" + "00" * 512, "4096 bits"),   # 2**4097 as 514 bytes
]


@pytest.mark.parametrize("hex_, message", MALFORMED)
def test_decode_refuses_malformed(hex_, message):
    with pytest.raises(InvalidValue, match=message):
        decode_value(bytes.fromhex(hex_), BIG)


def test_decode_depth_boundaries():
    ok = encode_value(nested(MAX_VALUE_DEPTH, wrap=lambda x: (x,)), BIG)
    assert decode_value(ok, BIG) == nested(MAX_VALUE_DEPTH, wrap=lambda x: (x,))
    too_deep = bytes.fromhex(tuple_of(bytes([0x91]).hex() + ok.hex()))
    with pytest.raises(InvalidValue, match="nest"):
        decode_value(too_deep, BIG)
    start = time.perf_counter()
    with pytest.raises(InvalidValue, match="nest"):
        decode_value(b"\x91" * 1_000_000 + b"\xc0", 2_000_000)
    assert time.perf_counter() - start < 1


def test_decode_size_and_input_type():
    assert decode_value(b"\xc0", 1) is None
    with pytest.raises(LimitExceeded):
        decode_value(b"\x92\x01\x02", 2)
    with pytest.raises(InvalidValue, match="expected bytes"):
        decode_value(bytearray(b"\xc0"), 10)


@FAST
@given(st.binary(max_size=60))
def test_decode_arbitrary_bytes_never_crashes(data):
    try:
        v = decode_value(data, 100)
    except (InvalidValue, LimitExceeded):
        return
    assert encode_value(v, 100) == data


def mutated(encoded: bytes, data) -> bytes:
    """`encoded` with one byte flipped, inserted or deleted, where hypothesis chooses."""
    raw = bytearray(encoded)
    i = data.draw(st.integers(0, len(raw)))
    op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    byte = data.draw(st.integers(0, 255))
    if op == "insert":
        raw[i:i] = bytes([byte])
    elif i < len(raw):
        if op == "flip":
            raw[i] ^= byte or 1
        else:
            del raw[i]
    return bytes(raw)


@FAST
@given(values, st.data())
def test_decode_mutated_encodings_never_crash(v, data):
    raw = mutated(encode_value(v, BIG), data)
    try:
        back = decode_value(raw, BIG)
    except InvalidValue:
        return
    assert encode_value(back, BIG) == raw


# --- measure -------------------------------------------------------------------------


def test_measure_units():
    assert measure(None, 1) == 1
    assert measure(2 ** 128, 10) == 3
    assert measure(Decimal(1), 10) == 1
    assert measure("x" * 63, 10) == 2
    assert measure(b"x" * 64, 10) == 3
    v = [1, "a" * 64, b"", {1: 2}, (True,)]
    assert measure(v, 100) == 1 + 1 + 3 + 1 + 3 + 2
    assert measure(v, 11) == 11
    with pytest.raises(LimitExceeded):
        measure(v, 10)
    with pytest.raises(LimitExceeded):
        measure([0] * 1000, 1000)
    with pytest.raises(LimitExceeded):
        measure(nested(MAX_VALUE_DEPTH + 1), 10 ** 6)
    assert measure(nested(MAX_VALUE_DEPTH), 10 ** 6) == MAX_VALUE_DEPTH + 1
    with pytest.raises(InvalidValue):
        measure([range(2)], 100)
    shared = [0]
    assert measure([shared, shared], 100) == 5  # counted each time it is reached


# --- Decimal -------------------------------------------------------------------------

CTX = pyd.Context(prec=6000, rounding=pyd.ROUND_HALF_EVEN, Emax=pyd.MAX_EMAX, Emin=pyd.MIN_EMIN,
                  traps=[pyd.InvalidOperation, pyd.DivisionByZero, pyd.Overflow])
PLACES = pyd.Decimal(1).scaleb(-18)


def py(d: Decimal) -> pyd.Decimal:
    return CTX.create_decimal(decimal_scaled(d)).scaleb(-18, CTX)


def scaled(x: pyd.Decimal) -> int:
    """The scaled int of x rounded half-even to 18 places."""
    return int(x.quantize(PLACES, context=CTX).scaleb(18, CTX))


operands = st.integers(-2 ** 300, 2 ** 300)
PY_OPS = {
    "+": (lambda a, b: a + b, CTX.add), "-": (lambda a, b: a - b, CTX.subtract),
    "*": (lambda a, b: a * b, CTX.multiply), "/": (lambda a, b: a / b, CTX.divide),
    "//": (lambda a, b: a // b, CTX.divide_int), "%": (lambda a, b: a % b, CTX.remainder),
}


@FAST
@given(operands, operands, st.sampled_from(sorted(PY_OPS)), st.sampled_from(["dd", "di", "id"]))
def test_decimal_arithmetic_matches_python_decimal(qa, qb, op, kinds):
    ours, theirs = PY_OPS[op]
    a = Decimal.from_scaled(qa) if kinds[0] == "d" else qa // 10 ** 18
    b = Decimal.from_scaled(qb) if kinds[1] == "d" else qb // 10 ** 18
    pa = py(a) if kinds[0] == "d" else CTX.create_decimal(a)
    pb = py(b) if kinds[1] == "d" else CTX.create_decimal(b)
    if pb == 0 and op in ("/", "//", "%"):
        with pytest.raises(ContractRuntimeError, match="division by zero"):
            ours(a, b)
        return
    result = ours(a, b)
    assert type(result) is Decimal
    assert decimal_scaled(result) == scaled(theirs(pa, pb))


@FAST
@given(decimals)
def test_decimal_str_int_hash_and_unary(d):
    p = py(d)
    assert str(d) == format(p.normalize(CTX), "f")
    assert repr(d) == f"Decimal('{d}')"
    assert same(Decimal(str(d)), d)
    assert int(d) == int(p)
    assert bool(d) == bool(p)
    assert decimal_scaled(-d) == -decimal_scaled(d)
    assert +d is d
    assert type(abs(d)) is Decimal and decimal_scaled(abs(d)) == scaled(CTX.abs(p))
    if p == p.to_integral_value():
        assert hash(d) == hash(int(p)) and d == int(p)


@FAST
@given(st.lists(st.one_of(decimals, st.integers(-2 ** 100, 2 ** 100)), max_size=8))
def test_decimal_ordering_with_ints(xs):
    key = [py(x) if type(x) is Decimal else CTX.create_decimal(x) for x in xs]
    order = sorted(range(len(xs)), key=lambda i: key[i])
    assert [key[i] for i in order] == sorted(key)
    ours = sorted(xs)
    assert [py(x) if type(x) is Decimal else CTX.create_decimal(x) for x in ours] == sorted(key)
    for x in xs:
        for y in xs:
            px = py(x) if type(x) is Decimal else CTX.create_decimal(x)
            py_ = py(y) if type(y) is Decimal else CTX.create_decimal(y)
            assert (x == y) == (px == py_) and (x < y) == (px < py_) and (x >= y) == (px >= py_)


@FAST
@given(st.from_regex(r"[+-]?[0-9]{0,40}(\.[0-9]{0,18})?", fullmatch=True).filter(lambda s: any(c.isdigit() for c in s)))
def test_decimal_from_str_matches_python_decimal(s):
    assert decimal_scaled(Decimal(s)) == scaled(CTX.create_decimal(s))


def test_decimal_examples():
    assert str(Decimal("1.50")) == "1.5"
    assert str(Decimal("-0.000001")) == "-0.000001"
    assert str(Decimal(3)) == "3" and str(Decimal("-0")) == "0"
    assert str(Decimal(".5")) == "0.5" and str(Decimal("5.")) == "5"
    assert repr(Decimal("1.5")) == "Decimal('1.5')"
    assert Decimal(1) / 3 == Decimal("0.333333333333333333")
    assert Decimal(2) / 3 == Decimal("0.666666666666666667")
    assert Decimal("0.000000000000000001") * Decimal("0.5") == 0          # half to even: 0
    assert Decimal("0.000000000000000003") * Decimal("0.5") == Decimal("0.000000000000000002")
    assert Decimal(-7) // 2 == -3 and Decimal(-7) % 2 == -1 and 7 % Decimal(-2) == 1
    assert divmod(Decimal("7.5"), 2) == (3, Decimal("1.5"))
    assert divmod(-7, Decimal(2)) == (-3, -1)
    assert sum([Decimal("0.1")] * 10) == 1
    assert Decimal(Decimal("2.5")) == Decimal("2.5")
    assert {5: "x"}[Decimal(5)] == "x" and {Decimal(5): "x"}[5] == "x"
    assert Decimal(1) == True and Decimal(0) != "0" and Decimal(1) != None  # noqa: E711,E712 (Python's ==)
    assert int(Decimal("-1.9")) == -1 and int(Decimal("1.9")) == 1
    assert not Decimal(0) and Decimal("0.000000000000000001")


@pytest.mark.parametrize("s", ["", "+", "-", ".", "1e5", "1E5", " 1", "1 ", "1_000", "\u0661", "0x10", "inf",
                               "NaN", "1..2", "--1", "1.-2", "1.2.3", "+-1", "1.0000000000000000001", "１"])
def test_decimal_refuses_bad_str(s):
    with pytest.raises(ContractRuntimeError):
        Decimal(s)


def test_decimal_refusals():
    for bad in (True, 1.5, None, b"1", [1], pyd.Decimal(1)):
        with pytest.raises(ContractRuntimeError):
            Decimal(bad)
    d = Decimal(1)
    for bad in (True, "1", 1.5, None, [1]):
        for op in (lambda: d + bad, lambda: bad + d, lambda: d * bad, lambda: bad / d, lambda: d // bad,
                   lambda: d % bad, lambda: d - bad, lambda: divmod(d, bad), lambda: d < bad, lambda: bad >= d):
            with pytest.raises(ContractRuntimeError):
                op()
    with pytest.raises(ContractRuntimeError, match="unsupported operand types for \\+: str and Decimal"):
        "x" + d
    for op in (lambda: d / 0, lambda: d // Decimal(0), lambda: d % 0, lambda: 1 / Decimal(0), lambda: divmod(d, 0)):
        with pytest.raises(ContractRuntimeError) as e:
            op()
        assert e.value.message == "division by zero"
    with pytest.raises(ContractRuntimeError, match="immutable"):
        d._q = 5
    with pytest.raises(ContractRuntimeError, match="immutable"):
        del d._q
    assert d == 1


def test_decimal_limits():
    Decimal.from_scaled(LIMIT)
    for make in (lambda: Decimal.from_scaled(LIMIT + 1), lambda: Decimal(2 ** MAX_INT_BITS),
                 lambda: Decimal("9" * 1230), lambda: Decimal("1" * 5000),
                 lambda: Decimal.from_scaled(LIMIT) + Decimal.from_scaled(1),
                 lambda: Decimal.from_scaled(2 ** 2100) * Decimal.from_scaled(2 ** 2100),
                 lambda: Decimal.from_scaled(LIMIT) / Decimal("0.5"),
                 lambda: Decimal.from_scaled(2 ** 4050) // Decimal("0.000000000000000001")):
        with pytest.raises(LimitExceeded):
            make()
    with pytest.raises(ContractRuntimeError):
        Decimal.from_scaled(True)


def test_decimal_copy_and_pickle():
    d = Decimal("-2.25")
    for c in (copy.copy(d), copy.deepcopy([d])[0], pickle.loads(pickle.dumps(d))):
        assert same(c, d)


@FAST
@given(decimals)
def test_decimal_str_under_a_small_host_digit_limit(d):
    expected = str(d)
    with int_str_limit(640):
        assert str(d) == expected


# --- int <-> str ---------------------------------------------------------------------


@FAST
@given(ints)
def test_int_str_round_trip_under_the_smallest_host_limit(n):
    expected = str(n)  # the default host limit (4300 digits) is above MAX_INT_DIGITS
    with int_str_limit(640):
        if len(expected.lstrip("-")) > 640:
            with pytest.raises(ValueError):
                str(n)  # the host limit is in force
        assert int_to_str(n) == expected
        assert str_to_int(expected) == n
        assert str_to_int("+" + expected.lstrip("-")) == abs(n)


def test_str_to_int_refusals():
    for bad in ("", "+", "-", " 1", "1 ", "1_0", "\u0661\u0662", "0x1", "1.0", "+-1", "--1", "1e3", "²"):
        with pytest.raises(ContractRuntimeError):
            str_to_int(bad)
    with pytest.raises(ContractRuntimeError):
        str_to_int(5)
    with int_str_limit(640):
        assert str_to_int("0" * 1234) == 0
        assert str_to_int(int_to_str(LIMIT)) == LIMIT
        for big in ("0" * 1235, "9" * 1234, int_to_str(LIMIT)[:-1] + "6"):  # the last is 2**4096
            with pytest.raises(LimitExceeded):
                str_to_int(big)
        with pytest.raises(LimitExceeded):
            int_to_str(LIMIT + 1)


# --- JSON ----------------------------------------------------------------------------


def test_to_json():
    v = {"a": [1, b"\x01\xff", (2, None)], "d": Decimal("-1.5"), "t": True}
    assert to_json(v) == {"a": [1, "0x01ff", [2, None]], "d": "-1.5", "t": True}
    assert to_json({1: "x", (1, 2): b""}) == [[1, "x"], [[1, 2], "0x"]]
    assert to_json({}) == {}
    with pytest.raises(InvalidValue):
        to_json([range(1)])


def test_from_json_arg():
    assert same(from_json_arg({"a": [1, "0x00", None, True], "b": {}}), {"a": [1, "0x00", None, True], "b": {}})
    assert same(from_json_arg({"bytes": "0x01Ff"}), b"\x01\xff")
    assert same(from_json_arg({"decimal": "-1.5"}), Decimal("-1.5"))
    assert same(from_json_arg({"tuple": [1, {"tuple": []}]}), (1, ()))
    assert same(from_json_arg({"dict": [[1, "x"], [{"tuple": [1, True]}, {"bytes": "0x"}]]}),
                {1: "x", (1, True): b""})
    assert same(from_json_arg({"dict": [["bytes", 1]]}), {"bytes": 1})
    assert same(from_json_arg({"bytes": "0x", "x": 1}), {"bytes": "0x", "x": 1})
    for bad in (1.5, {"bytes": "0x0"}, {"bytes": "00"}, {"bytes": "0xzz"}, {"bytes": 1}, {"decimal": 1},
                {"decimal": "1e5"}, {"tuple": 1}, {"dict": [[1]]}, {"dict": [[[1], 2]]}, {"dict": [[1, 1], [1, 2]]},
                {"dict": [[1, 1], [True, 2]]}, {1: 2}, (1,), b"x"):
        with pytest.raises(InvalidValue):
            from_json_arg(bad)
    for big in (2 ** MAX_INT_BITS, {"decimal": "9" * 1300}, nested(MAX_VALUE_DEPTH + 1)):
        with pytest.raises(LimitExceeded):
            from_json_arg(big)


@FAST
@given(values)
def test_json_round_trip_through_tagged_form(v):
    def tagged(x):
        t = type(x)
        if t is bytes:
            return {"bytes": "0x" + x.hex()}
        if t is Decimal:
            return {"decimal": str(x)}
        if t is tuple:
            return {"tuple": [tagged(i) for i in x]}
        if t is list:
            return [tagged(i) for i in x]
        if t is dict:
            return {"dict": [[tagged(k), tagged(i)] for k, i in x.items()]}
        return x
    assert same(from_json_arg(tagged(v)), v)
    to_json(v)



# ---- the msgpack fast paths give exactly the bytes of the strict walk -----------------------

_flat_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=20),
                          st.binary(max_size=20), st.integers(-(2**80), 2**80))


@given(st.one_of(_flat_scalars, st.lists(_flat_scalars, max_size=8), st.tuples(_flat_scalars, _flat_scalars),
                 st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-(2**62), 2**62)), _flat_scalars,
                                 max_size=8)))
def test_fast_paths_encode_and_decode_like_the_walk(v):
    from vm import codec as values
    slow = bytearray()
    values._encode(slow, v, 0, 1 << 20)
    assert encode_value(v, 1 << 20) == bytes(slow)
    assert decode_value(bytes(slow), 1 << 20) == v


# ---- Tensor and Model: the byte form, strict decoding, host helpers, JSON --------------------

import numpy as np  # noqa: E402

from vm.tensors import Q16_MAX, Model, Tensor, param_shapes  # noqa: E402


def tensor(shape, fmt="q16", data=None):
    n = int(np.prod(shape))
    return Tensor(tuple(shape), fmt, np.arange(n) - n // 2 if data is None else data)


def model(kind="mlp", layers=(3, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    shapes = param_shapes(layers)
    return Model(kind, layers, [Tensor(s, "q16", rng.integers(-Q16_MAX, Q16_MAX + 1, s)) for s in shapes],
                 [Tensor(s, "q16", rng.integers(-1000, 1000, s)) for s in shapes])


def ext(code: int, payload: bytes) -> bytes:
    """An ext value with its minimal header (as msgpack-python writes it)."""
    return msgpack.packb(msgpack.ExtType(code, payload))


def tensor_bytes(fmt_code, dims, data: bytes, dims_packed: bytes | None = None) -> bytes:
    dims_packed = msgpack.packb(list(dims)) if dims_packed is None else dims_packed
    return ext(4, b"\x93" + msgpack.packb(fmt_code) + dims_packed + msgpack.packb(data, use_bin_type=True))


def test_tensor_pinned_bytes_and_msgpack_reads_them():
    t = Tensor((2,), "q16", [1, -1])
    raw = encode_value(t, BIG)
    assert raw.hex() == "c70e04" "93" "00" "9102" "c408" "01000000" "ffffffff"
    e = msgpack.unpackb(raw)
    assert (e.code, msgpack.unpackb(e.data)) == (4, [0, [2], b"\x01\x00\x00\x00\xff\xff\xff\xff"])
    assert encode_value(Tensor((1, 1), "int", [[7]]), BIG).hex() == "c70b04" "93" "01" "920101" "c404" "07000000"


@pytest.mark.parametrize("v", [
    tensor((5,)), tensor((3, 4)), tensor((2, 3, 4), "int"), tensor((1, 2, 1, 3)), tensor((70000,), "int"),
    Tensor((2, 2), "q16", [[Q16_MAX, -Q16_MAX], [0, 1]]), Tensor((3,), "int", [-2**31, 2**31 - 1, 0]),
    model(), model("linear", (5, 3)), model("softmax", (4, 10)), model("mlp", (2, 3, 4, 5, 6)),
    [tensor((2,)), {"m": model("softmax", (2, 2))}, (tensor((1,), "int"),)],
])
def test_tensor_and_model_round_trip(v):
    raw = encode_value(v, BIG)
    back = decode_value(raw, BIG)
    assert back == v and type(back) is type(v)
    assert encode_value(back, BIG) == raw
    assert decode_value(raw, BIG) is not back  # fresh objects


def test_same_value_same_bytes():
    a = Tensor((2, 3), "q16", np.arange(6, dtype=np.int64))
    b = Tensor((2, 3), "q16", np.arange(6, dtype=np.int16).reshape(3, 2).T.T.reshape(2, 3))
    c = Tensor((2, 3), "q16", np.asfortranarray(np.arange(6).reshape(2, 3)))
    d = Tensor((2, 3), "q16", np.arange(6).astype(">i4"))  # big-endian input
    assert a == b == c == d
    assert len({encode_value(x, BIG) for x in (a, b, c, d)}) == 1
    assert a != Tensor((2, 3), "int", np.arange(6)) and a != Tensor((3, 2), "q16", np.arange(6))
    assert a != Tensor((2, 3), "q16", np.arange(1, 7)) and a != [a] and a != 0


def test_tensor_and_model_are_immutable():
    t = tensor((2, 2))
    with pytest.raises(ContractRuntimeError, match="immutable"):
        t.shape = (4,)
    with pytest.raises(ContractRuntimeError, match="immutable"):
        del t.fmt
    with pytest.raises(ValueError):
        t.raw()[0, 0] = 5
    with pytest.raises(ValueError):
        decode_value(encode_value(t, BIG), BIG).raw()[0, 0] = 5
    m = model()
    with pytest.raises(ContractRuntimeError, match="immutable"):
        m.params = ()
    with pytest.raises(TypeError):
        hash(t)
    with pytest.raises(TypeError):
        hash(m)
    src = np.arange(4)
    t2 = Tensor((4,), "int", src)
    src[0] = 99  # the tensor holds its own copy
    assert t2.raw()[0] == 0
    assert pickle.loads(pickle.dumps(m)) == m and copy.deepcopy(t) == t


def test_constructor_refusals():
    for args, message in [
        (((2,), "f32", [1, 2]), "format"), (((), "q16", []), "shape"), (([2], "q16", [1, 2]), "shape"),
        (((0,), "q16", []), ">= 1"), (((True,), "q16", [1]), ">= 1"), (((1, 1, 1, 1, 1), "int", [1]), "1 to 4"),
        (((3,), "q16", [1, 2]), "needs 3"), (((2,), "q16", [0.5, 1.0]), "needs 2 int"),
        (((1,), "int", [2**31]), "int32"), (((1,), "q16", [Q16_MAX + 1]), "outside"),
        (((1,), "q16", [-Q16_MAX - 1]), "outside"), (((2048, 2049), "int", np.zeros(1)), "more than 4194304"),
    ]:
        with pytest.raises(InvalidValue, match=message):
            Tensor(*args)
    good = model()
    shapes = param_shapes((3, 4, 2))
    for args, message in [
        (("cnn", (3, 2), good.params), "kind"), (("softmax", (3, 4, 2), good.params), "2 layer sizes"),
        (("mlp", (3, 2), good.params), "3 to 5"), (("mlp", (3, 0, 2), good.params), r"\[1, 16384\]"),
        (("mlp", (3, 16385, 2), good.params), r"\[1, 16384\]"), (("mlp", (3, 4, 2), good.params[:3]), "has 4 params"),
        (("mlp", (3, 4, 2), good.params, good.velocity[::-1]), r"velocity\[0\] must be a q16 tensor of shape \(3, 4\)"),
        (("mlp", (3, 4, 2), [Tensor(s, "int", np.zeros(s, int)) for s in shapes]), r"params\[0\]"),
        (("mlp", (2048, 2048, 2048), good.params), "at most 4194304 parameters"),
    ]:
        with pytest.raises(InvalidValue, match=message):
            Model(*args)
    assert Model("mlp", [3, 4, 2], list(good.params)).velocity == tuple(Tensor(s, "q16", np.zeros(s, int))
                                                                         for s in shapes)
    assert good.size == 3 * 4 + 4 + 4 * 2 + 2


Q = bytes.fromhex  # shorthand for the payloads below
DATA6 = np.arange(6, dtype="<i4").tobytes()


@pytest.mark.parametrize("raw, message", [
    (tensor_bytes(2, [6], DATA6), "unknown tensor format code 2"),
    (tensor_bytes(0, [], b""), "1 to 4 dimensions, not 0"),
    (tensor_bytes(0, [1, 1, 1, 1, 6], DATA6), "1 to 4 dimensions, not 5"),
    (tensor_bytes(0, [0], b""), "dimensions must be ints >= 1"),
    (tensor_bytes(0, [-1], b""), "not an int >= 0"),
    (tensor_bytes(0, [6], DATA6[:-4]), "has 24 bytes of elements, not 20"),
    (tensor_bytes(0, [5], DATA6), "has 20 bytes of elements, not 24"),
    (tensor_bytes(0, [2**32 - 1, 2**32 - 1], b""), "more than 4194304 elements"),
    (tensor_bytes(0, [2048, 2049], b""), "more than 4194304 elements"),
    (tensor_bytes(0, [1], np.array([Q16_MAX + 1], "<i4").tobytes()), "outside"),
    (tensor_bytes(0, [6], DATA6, dims_packed=Q("dc000106")), "canonical"),      # dims as array16
    (tensor_bytes(0, [6], DATA6, dims_packed=Q("91cc06")), "canonical"),        # 6 as uint8
    (ext(4, b"\x93\x00\x91\x06\xc5\x00\x18" + DATA6), "canonical"),             # elements as bin16
    (ext(4, b"\x93\xcc\x00\x91\x06\xc4\x18" + DATA6), "canonical"),             # format code as uint8
    (b"\xc9\x00\x00\x00\x1e\x04" + b"\x93\x00\x91\x06\xc4\x18" + DATA6, "canonical"),  # ext32 header
    (ext(4, b"\x92\x00\x91\x06"), r"not \[format, shape, elements\]"),
    (ext(4, b"\x93\x00\x06\xc4\x18" + DATA6), "shape is not an array"),
    (ext(4, b"\x93\x00\x91\x06\xa4abcd"), "elements are not bytes"),
    (ext(4, b"\x93\x00\x91\x06\xc4\x18" + DATA6 + b"\x00"), "trailing bytes inside a tensor"),
    (ext(4, b"\x93\x00\x91\x06\xc4\x18" + DATA6[:8]), "truncated"),
    (ext(4, b""), "truncated"),
])
def test_tensor_decode_refuses(raw, message):
    assert raw[:1] in (b"\xc7", b"\xc9", b"\xd4", b"\xd5", b"\xd6", b"\xd7", b"\xd8")
    with pytest.raises(InvalidValue, match=message):
        decode_value(raw, BIG)


def model_bytes(kind, layers, params, velocity) -> bytes:
    def t(x):
        return msgpack.ExtType(4, encode_value(x, BIG)[3:] if len(encode_value(x, BIG)) > 3 else b"")
    parts = [kind, list(layers), [msgpack.ExtType(4, _payload(p)) for p in params],
             [msgpack.ExtType(4, _payload(p)) for p in velocity]]
    return ext(5, msgpack.packb(parts, use_bin_type=True))


def _payload(t: Tensor) -> bytes:
    return msgpack.unpackb(encode_value(t, BIG)).data


def test_model_bytes_are_the_documented_array():
    m = model("softmax", (2, 3))
    assert model_bytes("softmax", (2, 3), m.params, m.velocity) == encode_value(m, BIG)
    e = msgpack.unpackb(encode_value(m, BIG))
    kind, layers, params, velocity = msgpack.unpackb(e.data)
    assert (e.code, kind, layers, [p.code for p in params + velocity]) == (5, "softmax", [2, 3], [4] * 4)


def _zeros(shapes, fmt="q16"):
    return [Tensor(s, fmt, np.zeros(s, int)) for s in shapes]


@pytest.mark.parametrize("raw, message", [
    (model_bytes("cnn", (2, 3), _zeros(param_shapes((2, 3))), _zeros(param_shapes((2, 3)))), "unknown model kind 'cnn'"),
    (model_bytes("softmax", (2, 3, 4), _zeros(param_shapes((2, 3, 4))), _zeros(param_shapes((2, 3, 4)))),
     "at most 2 layer sizes"),
    (model_bytes("mlp", (2, 3), _zeros(param_shapes((2, 3))), _zeros(param_shapes((2, 3)))), "3 to 5 layer sizes"),
    (model_bytes("softmax", (2, 0), [], []), r"\[1, 16384\]"),
    (model_bytes("softmax", (16385, 2), [], []), r"\[1, 16384\]"),
    (model_bytes("mlp", (16384, 16384, 16384), [], []), "at most 4194304 parameters"),
    (model_bytes("softmax", (2, 3), _zeros(param_shapes((2, 3)))[:1], []), "has 2 params tensors"),
    (model_bytes("softmax", (2, 3), _zeros(param_shapes((2, 3))), _zeros([(3, 2), (3,)])),
     r"velocity\[0\] must be a q16 tensor of shape \(2, 3\)"),
    (model_bytes("softmax", (2, 3), _zeros([(2, 3), (2,)]), _zeros(param_shapes((2, 3)))),
     r"params\[1\] must be a q16 tensor of shape \(3,\)"),
    (model_bytes("softmax", (2, 3), _zeros(param_shapes((2, 3)), "int"), _zeros(param_shapes((2, 3)))),
     r"params\[0\] must be a q16"),
    (ext(5, msgpack.packb(["softmax", [2, 3], [1, 2], []])), r"params\[0\] is not a tensor"),
    (ext(5, msgpack.packb(["softmax", [2, 3], []])), r"not \[kind, layers, params, velocity\]"),
    (ext(5, msgpack.packb([1, [2, 3], [], []])), "kind is not a short str"),
])
def test_model_decode_refuses(raw, message):
    with pytest.raises(InvalidValue, match=message):
        decode_value(raw, BIG)


def test_hostile_payloads_are_refused_before_allocating():
    """Claimed sizes are checked against the limits before anything of that size is made."""
    import tracemalloc
    huge = [
        tensor_bytes(0, [2**32 - 1] * 4, b""),
        model_bytes("mlp", (16384, 16384, 16384, 16384), [], []),
        ext(4, b"\x93\x00\x91\xce\x00\x40\x00\x00\xc6\xff\xff\xff\xff"),  # 4 Mi elements, a 4 GiB bin claimed
    ]
    tracemalloc.start()
    try:
        for raw in huge:
            with pytest.raises(InvalidValue):
                decode_value(raw, BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_tensor_map_keys_are_refused():
    raw = b"\x81" + encode_value(tensor((1,)), BIG) + b"\x00"
    with pytest.raises(InvalidValue, match="hashable"):
        decode_value(raw, BIG)


def test_tensor_and_model_size_limits():
    big = Tensor((40000,), "int", np.zeros(40000, int))  # 160 KB of elements
    with pytest.raises(LimitExceeded, match="131072"):
        encode_value(big, MAX_STORAGE_VALUE_BYTES)
    with pytest.raises(LimitExceeded):
        encode_value([1, big], MAX_STORAGE_VALUE_BYTES)
    fits = Tensor((32000,), "int", np.zeros(32000, int))
    assert len(encode_value(fits, MAX_STORAGE_VALUE_BYTES)) == 128_000 + 17  # ext32, array, dims, bin32 headers
    with pytest.raises(LimitExceeded):
        decode_value(encode_value(big, BIG), MAX_STORAGE_VALUE_BYTES)
    with pytest.raises(LimitExceeded):
        encode_value(model("mlp", (100, 100, 10)), 64 * 1024)


def test_measure_counts_tensors_by_the_kib():
    assert measure(tensor((10,)), 100) == 1
    assert measure(Tensor((1024,), "int", np.zeros(1024, int)), 100) == 5
    assert measure([model("softmax", (64, 8))], 100) == 1 + 1 + 2 * 4 * (64 * 8 + 8) // 1024
    with pytest.raises(LimitExceeded):
        measure(Tensor((100_000,), "int", np.zeros(100_000, int)), 100)


def test_from_numpy_quantises_like_mlcore():
    from mlcore.fixed import WEIGHTS, quantize
    x = np.array([[0.0, 1.5, -1.5, 2.0 ** -17, -(2.0 ** -17), 3 * 2.0 ** -17, 1e9, -1e9, 127.49, -0.49999999999999994]])
    t = Tensor.from_numpy(x)
    assert (t.shape, t.fmt) == ((1, 10), "q16")
    assert np.array_equal(t.raw(), quantize(x, WEIGHTS))
    assert t.raw().tolist()[0][:6] == [0, 98304, -98304, 1, 0, 2]  # ties go up
    assert t.raw()[0, 6] == Q16_MAX and t.raw()[0, 7] == -Q16_MAX  # saturated
    assert np.array_equal(Tensor.from_numpy([1, 2, 3]).to_numpy(), [1.0, 2.0, 3.0])
    assert Tensor.from_numpy(np.array([3, -4]), "int").raw().tolist() == [3, -4]
    assert Tensor.from_numpy([[1, 2]], "int").to_numpy().dtype == np.int32
    for bad, fmt in (([0.5], "int"), ([2**31], "int"), (["a"], "q16"), ([np.nan], "q16")):
        with pytest.raises((InvalidValue, ValueError)):
            Tensor.from_numpy(np.array(bad), fmt)
    f = np.array([0.25, -3.0])
    assert np.array_equal(Tensor.from_numpy(f).to_numpy(), f)


def test_model_from_float_and_back():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=s) for s in param_shapes((4, 8, 3))]
    m = Model.from_float("mlp", [4, 8, 3], arrays)
    assert (m.kind, m.layers, m.size) == ("mlp", (4, 8, 3), 4 * 8 + 8 + 8 * 3 + 3)
    for a, b in zip(m.to_float(), arrays):
        assert np.max(np.abs(a - b)) <= 2.0 ** -17
    assert all(not v.raw().any() for v in m.velocity)
    with pytest.raises(InvalidValue):
        Model.from_float("mlp", (4, 8, 3), arrays[:-1])


def test_tensor_and_model_json():
    t = Tensor((2, 2), "q16", [[65536, -1], [0, 3]])
    assert to_json(t) == {"tensor": {"format": "q16", "shape": [2, 2], "data": [65536, -1, 0, 3]}}
    assert from_json_arg(to_json(t)) == t
    m = model("softmax", (2, 3))
    j = to_json({"m": m, "xs": [t]})
    assert j["m"]["model"]["kind"] == "softmax" and j["m"]["model"]["layers"] == [2, 3]
    assert from_json_arg(j) == {"m": m, "xs": [t]}
    no_velocity = {"model": {k: v for k, v in to_json(m)["model"].items() if k != "velocity"}}
    assert from_json_arg(no_velocity) == Model(m.kind, m.layers, m.params)
    for bad in ({"tensor": [1]}, {"tensor": {"format": "q16", "shape": [2], "data": [1]}},
                {"tensor": {"format": "q16", "shape": [1], "data": [1.5]}},
                {"tensor": {"format": "f", "shape": [1], "data": [1]}},
                {"tensor": {"format": "int", "shape": [1], "data": [2**31]}},
                {"tensor": {"format": "q16", "shape": [1], "data": [Q16_MAX + 1]}},
                {"tensor": {"format": "q16", "shape": [1], "data": [1], "x": 0}},
                {"model": {"kind": "mlp", "layers": [2, 2], "params": []}},
                {"model": {"kind": "softmax", "layers": [2, 2], "params": [1]}}):
        with pytest.raises(InvalidValue):
            from_json_arg(bad)
    assert from_json_arg({"dict": [["tensor", 1]]}) == {"tensor": 1}


tensors = st.builds(
    lambda shape, fmt, seed: Tensor(shape, fmt, np.random.default_rng(seed).integers(
        -Q16_MAX if fmt == "q16" else -2**31, (Q16_MAX if fmt == "q16" else 2**31 - 1) + 1, shape)),
    st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), st.sampled_from(["q16", "int"]),
    st.integers(0, 2**32))


@FAST
@given(tensors, st.data())
def test_tensor_mutations_never_crash(t, data):
    encoded = encode_value([t, model("softmax", (2, 2))], BIG)
    assert decode_value(encoded, BIG) == [t, model("softmax", (2, 2))]
    raw = mutated(encoded, data)
    try:
        back = decode_value(raw, BIG)
    except (InvalidValue, LimitExceeded):
        return
    assert encode_value(back, BIG) == raw
