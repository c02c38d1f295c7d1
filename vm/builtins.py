"""The builtins of the contract language and the methods of its value types, each the
VM's own wrapper, priced by its operands' size before it runs; str() and print()
formatting that is the same on every CPython."""
from __future__ import annotations

import re
import types
from typing import Any, Callable

from vm import gas as G
from vm.limits import MAX_INT_BITS, MAX_LEN, MAX_PRINT_BYTES
from vm.decimals import Decimal
from vm.intstr import int_to_str, str_to_int
from vm.tensors import Model, Tensor
from vm import ml
from vm import meter
from vm.meter import _bigint, allocate, charge, hold
from vm.sizes import (LIST_BYTES, LIST_SLOT, TUPLE_BYTES, Storage, _a, _check_len, _err, _isint, _key, _len_cost,
                      _size_cost, bytes_bytes, dict_bytes, fresh_bytes, int_bytes, seq_bytes, str_bytes, type_name)
from vm.world import _ABSENT, _sget
from vm.ops import _ITERABLE, _add, _divide, _iadd, _index, _number, _power, _range_items


# ---- text --------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(s: str) -> str:
    """repr() of a str inside a container, the same on every CPython: quoted as Python
    quotes it (double quotes when the text holds ' and no "), ASCII control characters
    escaped, everything else kept (CPython's own repr follows each release's Unicode
    tables for what is printable)."""
    quote = '"' if "'" in s and '"' not in s else "'"
    out = []
    for ch in s:
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def _text(v: Any, top: bool = True) -> str:
    t = type(v)
    if t is str:
        return v if top else _quote(v)
    if t is bool or v is None:
        return "True" if v is True else "False" if v is False else "None"
    if t is int:
        charge(G.CONVERT + G.words(v) ** 2 * G.PER_WORD_PRODUCT)  # decimal conversion is quadratic
        return int_to_str(v)
    if t is bytes:
        return repr(v)
    if t is Decimal:
        return str(v) if top else repr(v)
    if t is list:
        return "[" + ", ".join(_text(x, False) for x in v) + "]"
    if t is tuple:
        inner = ", ".join(_text(x, False) for x in v)
        return "(" + inner + ("," if len(v) == 1 else "") + ")"
    if t is dict:
        return "{" + ", ".join(_text(k, False) + ": " + _text(x, False) for k, x in v.items()) + "}"
    if t is Tensor or t is Model:
        return ml.text(v)
    if t is range:
        step = "" if v.step == 1 else ", " + int_to_str(v.step)
        return f"range({int_to_str(v.start)}, {int_to_str(v.stop)}{step})"
    raise _err(f"{_a(v)} cannot be converted to str")


def _to_text(v: Any) -> str:
    n = _size_cost(v)
    if type(v) is not str:
        allocate(32 * n)  # before the work: about the text's size; the rest once it is known
    s = _text(v)
    _check_len(len(s), "str")
    if type(v) is not str:
        hold(max(str_bytes(len(s), s.isascii()) - 32 * n, 0))
    return s


_ASCII_WS = " \t\n\r\x0b\x0c"
_ASCII_WS_RUN = re.compile("[ \t\n\r\x0b\x0c]+")
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# ---- builtins ------------------------------------------------------------------------------

def b_abs(x: Any) -> Any:
    if _isint(x) or type(x) is Decimal:
        charge(G.BUILTIN)
        return _number(abs(x))
    raise _err(f"abs() of {_a(x)}")


def _flat(it: Any, what: str) -> Any:
    if type(it) not in _ITERABLE:
        raise _err(f"{what}() needs a list, tuple, dict, str, bytes or range, not {type_name(it)}")
    charge(G.BUILTIN + _len_cost(it) if type(it) is not range else G.BUILTIN + len(it) * G.PER_ELEMENT)
    if type(it) is range:
        _range_items(it)
    return it


def b_all(it: Any) -> bool:
    return all(_flat(it, "all"))


def b_any(it: Any) -> bool:
    return any(_flat(it, "any"))


def b_bool(x: Any = False) -> bool:
    charge(G.BUILTIN)
    return bool(x)


def b_bytes(x: Any = b"") -> bytes:
    t = type(x)
    if _isint(x):
        if x < 0:
            raise _err("bytes(n) needs n >= 0")
        _check_len(x, "bytes")
        allocate(bytes_bytes(x))
        return bytes(x)
    if t is bytes:
        charge(G.BUILTIN)
        return x
    if t in (list, tuple):
        _check_len(len(x), "bytes")
        allocate(bytes_bytes(len(x)))
        charge(_len_cost(x))
        try:  # checked in C: a loop in Python would cost far more than the gas charged
            return bytes(x)
        except (TypeError, ValueError):
            raise _err("bytes() needs ints from 0 to 255") from None
    if t is str:
        raise _err("bytes() of a str needs an encoding: use s.encode()")
    raise _err(f"bytes() of {_a(x)}")


def _pairs(x: Any) -> list:
    out = []
    items = _flat(x, "dict")
    charge(len(items) * (G.WALK_PER_ELEMENT + G.KEY))  # a loop in Python, and _key for each pair
    for p in items:
        if type(p) not in (list, tuple) or len(p) != 2:
            raise _err("dict() needs a dict or a list of (key, value) pairs")
        out.append((_key(p[0]), p[1]))
    return out


def b_dict(x: Any = None, **kw: Any) -> dict:
    if x is None:
        d = {}
    elif type(x) is dict:
        d = dict(x)
    else:
        d = dict(_pairs(x))
    d.update(kw)
    _check_len(len(d), "dict")
    allocate(dict_bytes(len(d)) + sum(map(fresh_bytes, kw.values())))
    charge(len(d) * G.PER_ELEMENT)
    return d


def b_divmod(a: Any, b: Any) -> tuple:
    return (_divide("//", a, b), _divide("%", a, b))


def _materialise(it: Any, what: str) -> list:
    """A new list of the items of `it`; a range's items are new ints."""
    it = _flat(it, what)
    _check_len(len(it))
    allocate(LIST_BYTES + 8 * len(it))
    if type(it) is range and len(it):
        hold(len(it) * max(int_bytes(it[0]), int_bytes(it[-1])))
    return list(it)


def b_enumerate(it: Any, start: Any = 0) -> list:
    items = _materialise(it, "enumerate")
    s = int(_index(start))
    charge(len(items) * G.WALK_PER_ELEMENT)  # the pairs are built by a loop in Python
    # a pair and a new index for every item
    allocate(len(items) * (TUPLE_BYTES + 16 + max(int_bytes(s), int_bytes(s + len(items)))))
    return [(i + s, x) for i, x in enumerate(items)]


# str.translate tables that delete the digits of base 2, 8 and 16
_DIGITS = {b: str.maketrans("", "", "0123456789abcdefABCDEF"[:n]) for b, n in ((2, 2), (8, 8), (16, 22))}


def b_int(x: Any = 0, base: Any = None) -> int:
    t = type(x)
    if base is not None:
        if t is not str or not _isint(base) or base not in (2, 8, 10, 16):
            raise _err("int(text, base) takes a str and a base of 2, 8, 10 or 16")
        charge(G.BUILTIN + G.CONVERT + (len(x) >> 5) * G.PER_32_BYTES)
        if base == 10:
            return str_to_int(x)
        digits = x[1:] if x[:1] in ("-", "+") else x
        # the size first, then the digits in C (nothing is left when all are digits): a
        # loop in Python took 30 ns a character for 0.75 gas
        if not digits or len(digits) * {2: 1, 8: 3, 16: 4}[base] > MAX_INT_BITS or digits.translate(_DIGITS[base]):
            raise _err(f"invalid literal for int() with base {base}")
        return int(x, base)
    if t is int:
        charge(G.BUILTIN)
        return x
    if t is bool or t is Decimal:
        charge(G.BUILTIN)
        return int(x)
    if t is str:
        charge(G.CONVERT + (len(x) >> 5) * G.PER_32_BYTES * G.words(1 << min(len(x) * 4, MAX_INT_BITS)))
        return str_to_int(x)
    raise _err(f"int() of {_a(x)}")


_ISINSTANCE_TYPES: dict[Any, tuple[type, ...]] = {}


def b_isinstance(x: Any, types_: Any) -> bool:
    charge(G.BUILTIN)
    kinds = types_ if type(types_) is tuple else (types_,)
    real: tuple[type, ...] = ()
    for k in kinds:
        # a function is looked up by identity; anything else could be a tuple whose hash
        # walks a structure far bigger than what it cost to build
        if type(k) is not types.FunctionType or k not in _ISINSTANCE_TYPES:
            raise _err("isinstance() takes a type (int, str, bytes, bool, list, dict, tuple, Decimal) "
                       "or a tuple of them")
        real += _ISINSTANCE_TYPES[k]
    return isinstance(x, real)


def b_len(x: Any) -> int:
    if type(x) is Tensor:  # its rows
        return x.shape[0]
    if type(x) not in _ITERABLE:
        raise _err(f"{_a(x)} has no len()")
    try:
        return len(x)
    except OverflowError:
        raise _err("range is too long for len()") from None


def b_list(x: Any = ()) -> list:
    return _materialise(x, "list")


def _sized(key: Any) -> Any:
    """The key function, each result charged by its size as it is made: max(), min() and
    sort compare the keys in C, and a key can be small to build but huge to compare
    ([[[0] * 1000] * 1000] * 1000 + [i])."""
    if key is None:
        return None

    def sized(x: Any) -> Any:
        k = key(x)
        _size_cost(k)
        return k
    return sized


def _extreme(which: str, args: tuple, key: Any, default: Any) -> Any:
    items = args[0] if len(args) == 1 else args
    items = _flat(items, which)
    if type(items) is not range:
        _size_cost(items)
    if not len(items):
        if default is _ABSENT:
            raise _err(f"{which}() of an empty sequence")
        return default
    try:
        if key is None:
            return max(items) if which == "max" else min(items)
        return max(items, key=_sized(key)) if which == "max" else min(items, key=_sized(key))
    except TypeError:
        raise _err(f"{which}() of values that cannot be compared") from None


def b_max(*args: Any, key: Any = None, default: Any = _ABSENT) -> Any:
    return _extreme("max", args, key, default)


def b_min(*args: Any, key: Any = None, default: Any = _ABSENT) -> Any:
    return _extreme("min", args, key, default)


def b_pow(a: Any, b: Any, mod: Any = None) -> int:
    return _power(a, b, mod)


def _prefix(sep: str, parts: list[str], n: int) -> str:
    """The first n characters of sep.join(parts), without building the whole text."""
    out: list[str] = []
    left = n
    for i, p in enumerate(parts):
        for piece in ((sep, p) if i else (p,)):
            out.append(piece[:left])
            left -= len(out[-1])
            if left <= 0:
                return "".join(out)
    return "".join(out)


def b_print(*args: Any, sep: Any = " ") -> None:
    if type(sep) is not str:
        raise _err("print(sep=...) takes a str")
    parts = [_to_text(a) for a in args]
    size = sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0)
    charge(G.PRINT + size * G.PRINT_PER_BYTE)  # before joining: the text can be far bigger than the part kept
    rt = meter.RT
    room = MAX_PRINT_BYTES - rt.log_bytes
    if room > 0:
        text = sep.join(parts) if size <= room else _prefix(sep, parts, room)
        # a lone surrogate ("\ud800") is written escaped: receipts must be encodable
        line = text.encode("utf-8", "backslashreplace")[:room].decode("utf-8", "ignore")
        rt.logs.append(line)
        rt.log_bytes += len(line.encode()) + 1


def b_range(*args: Any) -> range:
    charge(G.BUILTIN)
    if not 1 <= len(args) <= 3:
        raise _err("range() takes 1 to 3 ints")
    for a in args:
        if not _isint(a):
            raise _err(f"range() takes ints, not {type_name(a)}")
    if len(args) == 3 and not args[2]:
        raise _err("range() step cannot be zero")
    return range(*args)


def b_reversed(x: Any) -> list:
    items = _materialise(x, "reversed")
    items.reverse()
    return items


def _sort(items: list, key: Any, reverse: Any) -> None:
    n = len(items)
    _size_cost(items)
    charge(n * max(n.bit_length(), 1) * G.PER_ELEMENT)
    if type(reverse) is not bool:
        raise _err("reverse= takes True or False")
    try:
        items.sort(key=_sized(key), reverse=reverse)
    except TypeError:
        raise _err("sorted() of values that cannot be compared") from None


def b_sorted(x: Any, key: Any = None, reverse: Any = False) -> list:
    items = _materialise(x, "sorted")
    _sort(items, key, reverse)
    return items


def b_str(x: Any = "") -> str:
    if type(x) is str:
        charge(G.BUILTIN)
        return x
    return _to_text(x)


def b_sum(it: Any, start: Any = 0) -> Any:
    items = _flat(it, "sum")
    total = start
    for x in items:
        total = _add(total, x) if (type(x) in (int, bool, Decimal)) else _sum_refuse(x)
    return total


def _sum_refuse(x: Any) -> Any:
    raise _err(f"sum() adds ints and Decimals, not {type_name(x)}: use str.join or list +")


def b_tuple(x: Any = ()) -> tuple:
    if type(x) is tuple:
        charge(G.BUILTIN)
        return x
    return tuple(_materialise(x, "tuple"))


def b_zip(*its: Any) -> list:
    seqs = [_flat(i, "zip") for i in its]
    n = min((len(s) for s in seqs), default=0)
    allocate((TUPLE_BYTES + 8 * len(seqs) + 8) * n + LIST_BYTES)
    charge(n * len(seqs) * G.PER_ELEMENT)
    return list(zip(*seqs))


def b_Decimal(x: Any = 0) -> Decimal:
    charge(G.DECIMAL + (G.CONVERT + (len(x) >> 5) * G.PER_32_BYTES if type(x) is str else 0))
    return _number(Decimal(x))


# ---- methods ---------------------------------------------------------------------------------

def _list_append(x: list, v: Any) -> None:
    _check_len(len(x) + 1)
    allocate(LIST_SLOT + fresh_bytes(v))
    x.append(v)


def _list_extend(x: list, v: Any) -> None:
    _iadd(x, v)


def _list_insert(x: list, i: Any, v: Any) -> None:
    _check_len(len(x) + 1)
    allocate(LIST_SLOT + fresh_bytes(v))
    charge(_len_cost(x))
    x.insert(_index(i), v)


def _list_pop(x: list, i: Any = -1) -> Any:
    charge(_len_cost(x) if i != -1 else 0)
    try:
        return x.pop(_index(i))
    except IndexError:
        raise _err("pop from an empty list or index out of range") from None


def _search_cost(x: Any, v: Any) -> None:
    if type(x) in (list, tuple):
        _size_cost(x)
        _size_cost(v)
    else:
        charge(((len(x) + (len(v) if type(v) in (str, bytes) else 0)) >> 5) * G.PER_32_BYTES)


def _list_remove(x: list, v: Any) -> None:
    _search_cost(x, v)
    try:
        x.remove(v)
    except ValueError:
        raise _err("list.remove(x): x not in list") from None


def _seq_index(x: Any, v: Any, *bounds: Any) -> int:
    _search_cost(x, v)
    for b in bounds:
        _index(b)
    if type(x) in (str, bytes) and type(v) is not type(x) and not (type(x) is bytes and _isint(v)):
        raise _err(f"index() of {_a(x)} needs {_a(x)}")
    try:
        return x.index(v, *bounds)
    except ValueError:
        raise _err("value not found") from None


def _seq_count(x: Any, v: Any) -> int:
    _search_cost(x, v)
    if type(x) in (str, bytes) and type(v) is not type(x):
        raise _err(f"count() of {_a(x)} needs {_a(x)}")
    return x.count(v)


def _list_reverse(x: list) -> None:
    charge(_len_cost(x))
    x.reverse()


def _list_sort(x: list, key: Any = None, reverse: Any = False) -> None:
    _sort(x, key, reverse)


def _copy(x: Any) -> Any:
    allocate(dict_bytes(len(x)) if type(x) is dict else seq_bytes(x, len(x)))
    charge(_len_cost(x))
    return x.copy()


def _clear(x: Any) -> None:
    charge(_len_cost(x))
    x.clear()


def _dict_get(x: Any, k: Any, default: Any = None) -> Any:
    if type(x) is Storage:
        return _sget_or(k, default)
    return x.get(_key(k), default)


def _sget_or(k: Any, default: Any = None) -> Any:
    """storage.get(k, default), which the compiler calls directly."""
    charge(G.BUILTIN)  # as the method dispatch it skips
    v = _sget(k)
    return default if v is _ABSENT else v


def _dict_view(which: str) -> Callable[[dict], list]:
    def view(x: dict) -> list:
        allocate(LIST_BYTES + (8 if which != "items" else TUPLE_BYTES + 24) * len(x))
        charge(len(x) * G.PER_ELEMENT)
        return list(getattr(x, which)())
    return view


def _dict_pop(x: dict, k: Any, *default: Any) -> Any:
    try:
        return x.pop(_key(k), *default)
    except KeyError:
        raise _err("key not found in dict") from None


def _dict_setdefault(x: dict, k: Any, default: Any = None) -> Any:
    if _key(k) not in x:
        _check_len(len(x) + 1, "dict")
        allocate(dict_bytes(len(x) + 1) - dict_bytes(len(x)) + fresh_bytes(k) + fresh_bytes(default))
    return x.setdefault(k, default)


def _dict_update(x: dict, other: Any) -> None:
    # other's keys are hashed again as they go into x: each is charged and counted (_key)
    pairs = _pairs(list(other.items()) if type(other) is dict else other)
    _check_len(len(x) + len(pairs), "dict")
    allocate(dict_bytes(len(x) + len(pairs)) - dict_bytes(len(x)))
    charge(len(pairs) * G.PER_ELEMENT)
    x.update(pairs)


def _text_cost(x: Any, extra: int = 0) -> None:
    charge(G.BUILTIN + ((len(x) + extra) >> 5) * G.PER_32_BYTES)


def _case(table: dict) -> Callable[[Any], Any]:
    def change(x: Any) -> Any:
        _text_cost(x)
        allocate(seq_bytes(x, len(x)))
        return x.translate(table) if type(x) is str else (x.upper() if table is _UPPER else x.lower())
    return change


def _strip(kind: str) -> Callable[..., Any]:
    def strip(x: Any, chars: Any = None) -> Any:
        if chars is not None and type(chars) is not type(x):
            raise _err(f"{kind}() takes {_a(x)} of characters")
        _text_cost(x)
        allocate(seq_bytes(x, len(x)))
        if chars is None and type(x) is str:
            chars = _ASCII_WS
        return getattr(x, kind)(chars)
    return strip


def _split(x: Any, sep: Any = None, maxsplit: Any = -1) -> list:
    _text_cost(x)
    if sep is not None and type(sep) is not type(x):
        raise _err(f"split() takes {_a(x)} separator")
    if sep is not None and not sep:
        raise _err("empty separator")
    if not _isint(maxsplit):
        raise _err("maxsplit must be an int")
    # before the work: the parts' characters, and a header and slot for each part there can be
    most = len(x) // 2 + 1 if sep is None else x.count(sep) + 1
    if maxsplit >= 0:
        most = min(most, maxsplit + 1)
    allocate(seq_bytes(x, len(x)) + LIST_BYTES + 80 * most)
    if sep is None and type(x) is str:
        parts = _ASCII_WS_RUN.split(x.lstrip(_ASCII_WS), maxsplit=max(maxsplit, 0) if maxsplit >= 0 else 0)
        if maxsplit == 0:
            parts = [x.lstrip(_ASCII_WS)] if x.lstrip(_ASCII_WS) else []
        elif parts and parts[-1] == "":
            parts.pop()
    else:
        parts = x.split(sep, maxsplit)
    charge(len(parts) * G.WALK_PER_ELEMENT)  # a new str object for each part
    return parts


def _join(sep: Any, items: Any) -> Any:
    if type(items) not in (list, tuple):
        raise _err("join() takes a list or tuple")
    total = len(sep) * max(len(items) - 1, 0)
    ascii = sep.isascii()
    for s in items:
        if type(s) is not type(sep):
            raise _err(f"join() on {_a(sep)} needs {type_name(sep)} items, not {type_name(s)}")
        total += len(s)
        ascii = ascii and s.isascii()
    _check_len(total, type_name(sep))
    allocate(str_bytes(total, ascii) if type(sep) is str else bytes_bytes(total))
    charge(G.BUILTIN + len(items) * G.WALK_PER_ELEMENT + (total >> 5) * G.PER_32_BYTES)  # the loop above
    return sep.join(items)


def _replace(x: Any, old: Any, new: Any, count: Any = -1) -> Any:
    if type(old) is not type(x) or type(new) is not type(x) or not _isint(count):
        raise _err(f"replace() on {_a(x)} takes two {type_name(x)} and an optional int count")
    _text_cost(x, len(old))
    _text_cost(x)  # count, then replace: two passes
    hits = x.count(old)
    if count >= 0:
        hits = min(hits, count)
    n = len(x) + hits * (len(new) - len(old))
    _check_len(n, type_name(x))
    allocate(str_bytes(n, x.isascii() and new.isascii()) if type(x) is str else bytes_bytes(n))
    charge((n >> 5) * G.PER_32_BYTES)
    return x.replace(old, new, count)


def _affix(kind: str) -> Callable[..., bool]:
    def test(x: Any, fix: Any, *bounds: Any) -> bool:
        fixes = fix if type(fix) is tuple else (fix,)
        if type(fix) is tuple:
            charge(len(fix) * G.WALK_PER_ELEMENT)  # the loops below run in Python
        for f in fixes:
            if type(f) is not type(x):
                raise _err(f"{kind}() on {_a(x)} takes {_a(x)} or a tuple of them")
        for b in bounds:
            if b is not None:
                _index(b)
        _text_cost(x, sum(len(f) for f in fixes))
        return getattr(x, kind)(fix, *bounds)
    return test


def _find(x: Any, sub: Any, *bounds: Any) -> int:
    if type(sub) is not type(x):
        raise _err(f"find() on {_a(x)} takes {_a(x)}")
    for b in bounds:
        if b is not None:
            _index(b)
    _text_cost(x, len(sub))
    return x.find(sub, *bounds)


def _encode(x: str, encoding: Any = "utf-8") -> bytes:
    if encoding not in ("utf-8", "utf8"):
        raise _err("encode() only supports utf-8")
    _text_cost(x)
    allocate(bytes_bytes(len(x) if x.isascii() else 4 * len(x)))
    try:
        b = x.encode("utf-8")
    except UnicodeEncodeError:
        raise _err("str holds a lone surrogate and cannot be encoded") from None
    _check_len(len(b), "bytes")
    return b


def _decode(x: bytes, encoding: Any = "utf-8") -> str:
    if encoding not in ("utf-8", "utf8"):
        raise _err("decode() only supports utf-8")
    _text_cost(x)
    allocate(str_bytes(len(x), x.isascii()))
    try:
        return x.decode("utf-8")
    except UnicodeDecodeError:
        raise _err("bytes are not valid UTF-8") from None


def _hex(x: bytes) -> str:
    _check_len(2 * len(x), "str")
    _text_cost(x)
    allocate(str_bytes(2 * len(x), True))
    return x.hex()


def _fromhex(cls: Any, s: Any) -> bytes:
    if cls is not b_bytes or type(s) is not str:
        raise _err("fromhex is called as bytes.fromhex(text)")
    _text_cost(s)
    allocate(bytes_bytes(len(s) // 2))
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise _err("fromhex() got text that is not hex") from None


def _to_bytes(x: int, length: Any = 1, byteorder: Any = "big", *, signed: Any = False) -> bytes:
    if not _isint(length) or not 0 <= length <= MAX_LEN or byteorder not in ("big", "little") \
            or type(signed) is not bool:
        raise _err("to_bytes(length, byteorder='big'|'little', signed=False)")
    allocate(bytes_bytes(length))
    charge((length >> 5) * G.PER_32_BYTES)
    try:
        return int(x).to_bytes(length, byteorder, signed=signed)
    except OverflowError:
        raise _err("int too big to convert to that many bytes") from None


def _from_bytes(cls: Any, b: Any, byteorder: Any = "big", *, signed: Any = False) -> int:
    if cls is not b_int or type(b) is not bytes or byteorder not in ("big", "little") or type(signed) is not bool:
        raise _err("from_bytes is called as int.from_bytes(data, byteorder='big'|'little', signed=False)")
    if len(b) * 8 > MAX_INT_BITS:
        _bigint()
    _text_cost(b)
    return _number(int.from_bytes(b, byteorder, signed=signed))


def _bit_length(x: int) -> int:
    charge(G.BUILTIN)
    return x.bit_length()


_FUNCTION = types.FunctionType
_IMPL: dict[tuple[Any, str], Callable] = {}
for _t in (list,):
    _IMPL.update({(_t, "append"): _list_append, (_t, "extend"): _list_extend, (_t, "insert"): _list_insert,
                  (_t, "pop"): _list_pop, (_t, "remove"): _list_remove, (_t, "reverse"): _list_reverse,
                  (_t, "sort"): _list_sort, (_t, "copy"): _copy, (_t, "clear"): _clear})
for _t in (list, tuple, str, bytes):
    _IMPL[(_t, "index")] = _seq_index
    _IMPL[(_t, "count")] = _seq_count
_IMPL.update({(dict, "get"): _dict_get, (Storage, "get"): _dict_get, (dict, "keys"): _dict_view("keys"),
              (dict, "values"): _dict_view("values"), (dict, "items"): _dict_view("items"),
              (dict, "pop"): _dict_pop, (dict, "setdefault"): _dict_setdefault, (dict, "update"): _dict_update,
              (dict, "copy"): _copy, (dict, "clear"): _clear})
for _t in (str, bytes):
    _IMPL.update({(_t, "upper"): _case(_UPPER), (_t, "lower"): _case(_LOWER), (_t, "strip"): _strip("strip"),
                  (_t, "lstrip"): _strip("lstrip"), (_t, "rstrip"): _strip("rstrip"), (_t, "split"): _split,
                  (_t, "join"): _join, (_t, "replace"): _replace, (_t, "startswith"): _affix("startswith"),
                  (_t, "endswith"): _affix("endswith"), (_t, "find"): _find})
_IMPL.update({(str, "encode"): _encode, (bytes, "decode"): _decode, (bytes, "hex"): _hex,
              (_FUNCTION, "fromhex"): _fromhex, (_FUNCTION, "from_bytes"): _from_bytes,
              (int, "to_bytes"): _to_bytes, (bool, "to_bytes"): _to_bytes,
              (int, "bit_length"): _bit_length, (bool, "bit_length"): _bit_length})


def _method(name: str) -> Callable:
    def dispatch(obj: Any, *args: Any, **kwargs: Any) -> Any:
        impl = _IMPL.get((type(obj), name))
        if impl is None:
            raise _err(f"{_a(obj)} has no method {name}()")
        charge(G.BUILTIN)
        return impl(obj, *args, **kwargs)
    dispatch.__name__ = "_m_" + name
    return dispatch
