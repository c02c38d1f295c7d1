"""The operators, comparisons, subscripts, slices and iteration of contract code: each
checks its operands' exact types and charges by their size before the work (DESIGN 3a).
Compiled code reaches them under hidden names (`_add`, `_getitem`, ...)."""
from __future__ import annotations

from typing import Any

from vm import errors as E
from vm import gas as G
from vm.limits import MAX_INT_BITS, MAX_MEMORY
from vm.validate import CTX_FIELDS, METHODS, ML_METHODS
from vm.decimals import Decimal
from vm.tensors import Model, Tensor
from vm import ml
from vm.meter import _bigint, _ck, allocate, charge, hold
from vm.sizes import (LIST_SLOT, Ctx, Storage, _SEQ, _a, _check_len, _err, _isint, _key, _len_cost, _size_cost,
                      dict_bytes, fresh_bytes, seq_bytes, str_bytes, type_name)
from vm.world import _sdel, _shas, _sload, _sstore


# ---- operators ---------------------------------------------------------------------------

def _number(r: Any) -> Any:
    """A number a wrapper just made: bounded, and counted as memory when big (_ck): a
    loop that appends x | i for a 4096-bit x makes a new 512-byte int every time."""
    n = r._q if type(r) is Decimal else r
    if n.bit_length() > 512:
        _ck(n)
    return r


def _words_cost(a: int, b: int) -> int:
    return G.BUILTIN + G.words(a) * G.words(b) * G.PER_WORD_PRODUCT


def _decimal_pair(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    return (ta is Decimal or tb is Decimal) and (ta is Decimal or ta is int) and (tb is Decimal or tb is int)


def _bad_operands(op: str, a: Any, b: Any) -> E.ContractRuntimeError:
    return _err(f"unsupported operand types for {op}: {type_name(a)} and {type_name(b)}")


def _add(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if _isint(a) and _isint(b):
        charge(G.BUILTIN + G.words(a) + G.words(b))
        return _number(a + b)
    if ta is tb and ta in _SEQ:
        n = len(a) + len(b)
        _check_len(n)
        allocate(str_bytes(n, a.isascii() and b.isascii()) if ta is str else seq_bytes(a, n))
        charge(_len_cost(a) + _len_cost(b))
        return a + b
    if _decimal_pair(a, b):
        charge(G.DECIMAL + G.words(int(a)) + G.words(int(b)))
        return _number(a + b)
    raise _bad_operands("+", a, b)


def _iadd(a: Any, b: Any) -> Any:
    """`a += b`: a list grows in place, as in Python; anything else is `a + b`."""
    if type(a) is list:
        if type(b) not in (list, tuple):
            raise _bad_operands("+=", a, b)
        _check_len(len(a) + len(b))
        allocate(LIST_SLOT * len(b))
        charge(_len_cost(b))
        a += b
        return a
    return _add(a, b)


def _sub(a: Any, b: Any) -> Any:
    if _isint(a) and _isint(b):
        charge(G.BUILTIN + G.words(a) + G.words(b))
        return _number(a - b)
    if _decimal_pair(a, b):
        charge(G.DECIMAL)
        return _number(a - b)
    raise _bad_operands("-", a, b)


def _repeat(seq: Any, k: int) -> Any:
    n = len(seq) * max(int(k), 0)
    _check_len(n)
    allocate(seq_bytes(seq, n))
    charge(_len_cost(seq) * max(int(k), 0))
    return seq * k


def _mul(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if _isint(a) and _isint(b):
        if a and b and a.bit_length() + b.bit_length() - 1 > MAX_INT_BITS:
            _bigint()
        charge(_words_cost(a, b))
        return _number(a * b)
    if ta in _SEQ and _isint(b):
        return _repeat(a, b)
    if tb in _SEQ and _isint(a):
        return _repeat(b, a)
    if _decimal_pair(a, b):
        charge(G.DECIMAL + 4 * G.words(int(a) or 1) * G.PER_WORD_PRODUCT)
        return _number(a * b)
    raise _bad_operands("*", a, b)


def _imul(a: Any, b: Any) -> Any:
    if type(a) is list and _isint(b):
        k = max(int(b), 0)
        _check_len(len(a) * k)
        allocate(LIST_SLOT * len(a) * k)
        charge(_len_cost(a) * k)
        a *= k
        return a
    return _mul(a, b)


def _divide(op: str, a: Any, b: Any) -> Any:
    if _isint(a) and _isint(b):
        if not b:
            raise _err("division by zero")
        charge(_words_cost(a, b))
        return _number(a // b if op == "//" else a % b)
    if _decimal_pair(a, b):
        if not b:
            raise _err("division by zero")
        charge(G.DECIMAL + 4 * G.PER_WORD_PRODUCT)
        return _number(a // b if op == "//" else a % b)
    if op == "%" and type(a) in (str, bytes):
        raise _err("% formatting is not allowed: build text with str() and +")
    raise _bad_operands(op, a, b)


def _floordiv(a: Any, b: Any) -> Any:
    return _divide("//", a, b)


def _mod(a: Any, b: Any) -> Any:
    return _divide("%", a, b)


def _truediv(a: Any, b: Any) -> Any:
    if _decimal_pair(a, b):
        if not b:
            raise _err("division by zero")
        charge(G.DECIMAL + 4 * G.PER_WORD_PRODUCT)
        return _number(a / b if type(a) is Decimal else Decimal(a) / b)
    if _isint(a) and _isint(b):
        raise _err("/ between two ints would make a float: use // for integer division or Decimal for fractions")
    raise _bad_operands("/", a, b)


def _power(a: Any, b: Any, m: Any = None) -> int:
    if not (_isint(a) and _isint(b) and (m is None or _isint(m))):
        raise _err(f"pow takes ints, not {type_name(a)} and {type_name(b)}")
    a, b = int(a), int(b)
    if m is not None:
        m = int(m)
        if not m:
            raise _err("pow() modulus is zero")
        # per exponent bit a square and a reduction: by the modulus' size, plus a floor for
        # the two int operations themselves (a 62-bit modulus takes 300 ns a bit, not 4)
        charge(G.BUILTIN + max(b.bit_length(), 1) * (3 * G.words(m) ** 2 + 64) * G.PER_WORD_PRODUCT)
        try:
            return _number(pow(a, b, m))
        except ValueError:
            raise _err("base is not invertible for the given modulus") from None
    if b < 0:
        raise _err("negative exponents make fractions: use Decimal")
    if a in (0, 1, -1) or b <= 1:
        charge(G.BUILTIN)
        return a ** b
    bits = a.bit_length()
    if (bits - 1) * b >= MAX_INT_BITS:  # the result has at least (bits-1)*b+1 bits
        _bigint()
    w = (bits * b >> 6) + 1
    charge(G.BUILTIN + w * w * G.PER_WORD_PRODUCT)
    return _number(a ** b)


def _pow(a: Any, b: Any) -> int:
    return _power(a, b)


def _lshift(a: Any, b: Any) -> int:
    if not (_isint(a) and _isint(b)):
        raise _bad_operands("<<", a, b)
    if b < 0:
        raise _err("negative shift count")
    if a and a.bit_length() + b > MAX_INT_BITS:
        _bigint()
    charge(G.BUILTIN + G.words(a) + (b >> 6))
    return _number(int(a) << b)


def _rshift(a: Any, b: Any) -> int:
    if not (_isint(a) and _isint(b)):
        raise _bad_operands(">>", a, b)
    if b < 0:
        raise _err("negative shift count")
    charge(G.BUILTIN + G.words(a))
    return _number(int(a) >> min(b, MAX_INT_BITS + 1))


def _bitwise(op: str, a: Any, b: Any) -> Any:
    if not (_isint(a) and _isint(b)):
        raise _bad_operands(op, a, b)
    charge(G.BUILTIN + G.words(a) + G.words(b))
    return _number(a & b if op == "&" else a | b if op == "|" else a ^ b)


def _and(a: Any, b: Any) -> Any:
    return _bitwise("&", a, b)


def _or(a: Any, b: Any) -> Any:
    return _bitwise("|", a, b)


def _xor(a: Any, b: Any) -> Any:
    return _bitwise("^", a, b)


def _neg(a: Any) -> Any:
    if _isint(a) or type(a) is Decimal:
        charge(G.BUILTIN)
        return _number(-a)
    raise _err(f"bad operand type for unary -: {type_name(a)}")


def _pos(a: Any) -> Any:
    if _isint(a) or type(a) is Decimal:
        charge(G.BUILTIN)
        return +a
    raise _err(f"bad operand type for unary +: {type_name(a)}")


def _inv(a: Any) -> Any:
    if _isint(a):
        charge(G.BUILTIN)
        return _number(~int(a))
    raise _err(f"bad operand type for ~: {type_name(a)}")


# ---- comparisons -------------------------------------------------------------------------

def _compare_cost(a: Any, b: Any) -> None:
    ta, tb = type(a), type(b)
    if ta is Tensor or ta is Model:  # compared in C, element bytes
        charge(G.BUILTIN + (a.nbytes >> 5) * G.PER_32_BYTES)
    elif ta is str or ta is bytes or tb is str or tb is bytes:
        charge(G.BUILTIN + ((len(a) if ta in (str, bytes) else 0) >> 5) * G.PER_32_BYTES)
    elif ta in (list, tuple, dict) or tb in (list, tuple, dict):
        charge(G.BUILTIN)
        _size_cost(a)
        _size_cost(b)
    else:
        charge(G.BUILTIN)


def _eq(a: Any, b: Any) -> bool:
    _compare_cost(a, b)
    return a == b


def _ne(a: Any, b: Any) -> bool:
    _compare_cost(a, b)
    return a != b


def _order(op: str, a: Any, b: Any) -> bool:
    _compare_cost(a, b)
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b
    except TypeError:
        raise _err(f"cannot compare {type_name(a)} {op} {type_name(b)}") from None


def _lt(a: Any, b: Any) -> bool:
    return _order("<", a, b)


def _le(a: Any, b: Any) -> bool:
    return _order("<=", a, b)


def _gt(a: Any, b: Any) -> bool:
    return _order(">", a, b)


def _ge(a: Any, b: Any) -> bool:
    return _order(">=", a, b)


def _in(a: Any, b: Any) -> bool:
    tb = type(b)
    if tb is dict:
        return _key(a) in b
    if tb is list or tb is tuple:
        charge(G.BUILTIN + _len_cost(b))
        _size_cost(b)
        _size_cost(a)
        return a in b
    if tb is str or tb is bytes:
        if tb is str and type(a) is not str or tb is bytes and type(a) is not bytes and not _isint(a):
            raise _err(f"'in <{type_name(b)}>' needs {_a(b)} on the left, not {type_name(a)}")
        charge(G.BUILTIN + ((len(b) + (len(a) if type(a) is tb else 0)) >> 5) * G.PER_32_BYTES)
        return a in b
    if tb is range:
        charge(G.BUILTIN)
        return _isint(a) and int(a) in b  # anything else (bool too) makes CPython walk the range
    if tb is Storage:
        return _shas(a)
    raise _err(f"'in' needs a list, tuple, dict, str, bytes, range or storage on the right, not {type_name(b)}")


def _notin(a: Any, b: Any) -> bool:
    return not _in(a, b)


# ---- items, slices, iteration, attributes ------------------------------------------------

def _index(k: Any) -> int:
    if not _isint(k):
        raise _err(f"indices must be ints, not {type_name(k)}")
    return k


def _getitem(x: Any, k: Any) -> Any:
    t = type(x)
    if t is list or t is tuple or t is str or t is bytes or t is range:
        charge(G.BUILTIN)
        try:
            return x[_index(k)]
        except IndexError:
            raise _err(f"{type_name(x)} index out of range") from None
    if t is dict:
        charge(G.BUILTIN)
        try:
            return x[_key(k)]
        except KeyError:
            raise _err("key not found in dict") from None
    if t is Storage:
        return _sload(k)
    if t is Tensor:
        return ml.item(x, k)
    raise _err(f"{_a(x)} cannot be indexed")


def _slice_len(x: Any, lo: Any, hi: Any, st: Any) -> int:
    for p in (lo, hi, st):
        if p is not None and not _isint(p):
            raise _err(f"slice indices must be ints or None, not {type_name(p)}")
    if st == 0:
        raise _err("slice step cannot be zero")
    return len(range(*slice(lo, hi, st).indices(len(x))))


def _getslice(x: Any, lo: Any, hi: Any, st: Any) -> Any:
    t = type(x)
    if t is Tensor:
        return ml.rows(x, lo, hi, st)
    if t not in _SEQ and t is not range:
        raise _err(f"{_a(x)} cannot be sliced")
    n = _slice_len(x, lo, hi, st)
    if t is range:  # a range of the range: no items made
        charge(G.BUILTIN)
        return x[lo:hi:st]
    allocate(seq_bytes(x, n))
    charge(n * G.PER_ELEMENT if t in (list, tuple) else (n >> 5) * G.PER_32_BYTES)
    return x[lo:hi:st]


def _setitem(x: Any, k: Any, v: Any) -> None:
    t = type(x)
    if t is list:
        charge(G.BUILTIN)
        hold(fresh_bytes(v))
        try:
            x[_index(k)] = v
        except IndexError:
            raise _err("list assignment index out of range") from None
    elif t is dict:
        charge(G.BUILTIN)
        _key(k)
        if k not in x:
            _check_len(len(x) + 1, "dict")
            allocate(dict_bytes(len(x) + 1) - dict_bytes(len(x)) + fresh_bytes(k))
        hold(fresh_bytes(v))
        x[k] = v
    elif t is Storage:
        _sstore(k, v)
    else:
        raise _err(f"items of {_a(x)} cannot be assigned")


def _setslice(x: Any, lo: Any, hi: Any, st: Any, v: Any) -> None:
    if type(x) is not list:
        raise _err(f"slices of {_a(x)} cannot be assigned")
    if type(v) not in (list, tuple):
        raise _err("a slice can only be assigned a list or tuple")
    n = _slice_len(x, lo, hi, st)
    _check_len(len(x) - n + len(v))
    allocate(LIST_SLOT * len(v))
    charge(_len_cost(x) + _len_cost(v))
    try:
        x[lo:hi:st] = v
    except ValueError:
        raise _err("extended slice assignment needs as many values as the slice has") from None


def _delitem(x: Any, k: Any) -> None:
    t = type(x)
    if t is list:
        charge(G.BUILTIN + _len_cost(x))
        try:
            del x[_index(k)]
        except IndexError:
            raise _err("list index out of range") from None
    elif t is dict:
        try:
            del x[_key(k)]
        except KeyError:
            raise _err("key not found in dict") from None
    elif t is Storage:
        _sdel(k)
    else:
        raise _err(f"items of {_a(x)} cannot be deleted")


def _delslice(x: Any, lo: Any, hi: Any, st: Any) -> None:
    if type(x) is not list:
        raise _err(f"slices of {_a(x)} cannot be deleted")
    _slice_len(x, lo, hi, st)
    charge(G.BUILTIN + _len_cost(x))
    del x[lo:hi:st]


_ITERABLE = (list, tuple, str, bytes, dict, range)


def _iter(x: Any) -> Any:
    if type(x) not in _ITERABLE:
        raise _err(f"cannot iterate over {_a(x)}")
    if type(x) is range:
        _range_items(x)
    return x


def _range_items(r: range) -> None:
    """Iterating a range makes a new int for every item: count them as memory when they
    are big (range(2**4000, 2**4000 + 10**6) would make 512 MB of ints)."""
    bits = max(r.start.bit_length(), r.stop.bit_length())
    if bits > 512:
        try:
            n = len(r)
        except OverflowError:
            n = MAX_MEMORY
        allocate(n * (bits >> 3))


def _unpack(v: Any, n: int) -> tuple:
    if type(v) not in _ITERABLE:
        raise _err(f"cannot unpack {_a(v)}")
    if len(v) != n:
        raise _err(f"cannot unpack {len(v)} values into {n} targets")
    charge(G.BUILTIN + n * G.PER_ELEMENT)
    return tuple(v)


def _attr(x: Any, name: str) -> Any:
    if type(x) is Ctx and name in CTX_FIELDS:
        return x.field(name)
    f = ml.FIELDS.get((type(x), name))
    if f is not None:
        charge(G.BUILTIN)
        return f(x)
    if name in METHODS or name in ML_METHODS:
        raise _err(f".{name} is a method: call it, as in x.{name}(...)")
    raise _err(f"{_a(x)} has no attribute {name}")


_ANNOTATION_TYPES = {"int": (int,), "str": (str,), "bytes": (bytes,), "bool": (bool,), "list": (list,),
                     "dict": (dict,), "tuple": (tuple,), "Decimal": (Decimal,)}


def _argtype(v: Any, tname: str, param: str) -> None:
    if type(v) not in _ANNOTATION_TYPES[tname]:
        raise E.InvalidArguments(f"argument {param!r} must be {tname}, not {type_name(v)}")
