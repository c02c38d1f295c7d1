"""The contract runtime: the priced wrappers compiled code calls, and one execution.

Compiled contract code (vm/compiler.py) sees only the names this module puts in its
globals: the builtins of the language, the injected names, and hidden helpers (`_add`,
`_getitem`, `_m_append`, ...).  `__builtins__` is empty, so nothing else of the host is
reachable.  Every wrapper checks its operands' exact types and charges gas by their size
BEFORE doing the work (DESIGN 3a), so no single operation can run long or allocate much
on gas it has not paid for.

Gas, call depth and memory live in three cells shared by every contract function of
the process (the compiler's `_g`, `_d`, `_m`): compiled code decrements them inline,
wrappers through `charge` and `allocate`.  One execution runs at a time (`_LOCK`).
"""
from __future__ import annotations

import re
import threading
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from vm import errors as E
from vm import gas as G
from vm.compiler import FILENAME_PREFIX, Compiled, compile_contract
from vm.limits import (MAX_CALL_DEPTH, MAX_EVENT_BYTES, MAX_EVENTS, MAX_INT_BITS, MAX_LEN, MAX_MEMORY,
                       MAX_PRINT_BYTES, MAX_SAME_HASH, MAX_STORAGE_KEY_BYTES, MAX_STORAGE_VALUE_BYTES, MAX_VALUE_DEPTH,
                       MAX_ARGS_BYTES, MAX_OUTPUT_BYTES)
from vm.validate import CTX_FIELDS, METHODS, ContractInvalid
from vm.values import Decimal, decode_value, encode_value, hash_group, int_to_str, str_to_int

ADDRESS_SIZE = 20
_GAS = types.CellType(0)
_DEPTH = types.CellType(0)
_MEM = types.CellType(0)
_CELLS = {"_g": _GAS, "_d": _DEPTH, "_m": _MEM}
_LOCK = threading.RLock()


# ---- what the VM needs from the ledger -------------------------------------------------

class Host(Protocol):
    """The world as the VM sees it (ledger.contracts provides it over ledger.state)."""

    def get_code(self, address: bytes) -> str | None: ...

    def storage_get(self, address: bytes, key: bytes) -> bytes | None: ...

    def storage_set(self, address: bytes, key: bytes, value: bytes | None) -> None: ...

    def balance(self, address: bytes) -> int: ...

    def transfer(self, sender: bytes, to: bytes, amount: int) -> bool: ...


@dataclass(slots=True)
class Env:
    """The block and transaction a contract runs in."""

    chain_id: str
    block_height: int
    block_time: int  # milliseconds since the epoch, the block header's time
    origin: bytes    # address that signed the transaction (ctx.sender)


@dataclass(slots=True)
class Frame:
    this: bytes
    caller: bytes
    value: int
    compiled: Compiled


@dataclass
class Outcome:
    """What one execution did.  `error` is None on success; state changes of a failed
    execution must be discarded by the caller (ledger.contracts does)."""

    gas_used: int
    output: Any = None
    events: list[tuple[bytes, str, bytes]] = field(default_factory=list)  # (contract, name, encoded data)
    logs: list[str] = field(default_factory=list)  # print() output
    error: E.VMError | None = None


class Execution:
    """One transaction's (or one read-only call's) contract work."""

    def __init__(self, host: Host, env: Env):
        self.host = host
        self.env = env
        self.frames: list[Frame] = []
        self.events: list[tuple[bytes, str, bytes]] = []
        self.logs: list[str] = []
        self.log_bytes = 0
        self.chosen_hashes: dict[Any, list] = {}  # see _key


_RT: Execution | None = None


# ---- compiling and instantiating, cached ----------------------------------------------

_COMPILED: OrderedDict[bytes, Compiled] = OrderedDict()
_INSTANCES: dict[bytes, dict[str, Callable]] = {}
_BY_SOURCE: dict[str, Compiled] = {}
_CACHE_SIZE = 512


def load(source: str) -> Compiled:
    """Compile a contract's source, cached by code hash (raises ContractInvalid)."""
    c = _BY_SOURCE.get(source)  # a str caches its hash: no sha256 per call
    if c is not None:
        return c
    from vm.compiler import code_hash
    h = code_hash(source)
    c = _COMPILED.get(h)
    if c is None:
        c = compile_contract(source)
        _COMPILED[h] = c
        if len(_COMPILED) > _CACHE_SIZE:
            old, gone = _COMPILED.popitem(last=False)
            _INSTANCES.pop(old, None)
            _BY_SOURCE.pop(gone.source, None)
    else:
        _COMPILED.move_to_end(h)
    _BY_SOURCE[source] = c
    return c


def _functions(c: Compiled) -> dict[str, Callable]:
    fns = _INSTANCES.get(c.code_hash)
    if fns is None:
        closure = tuple(_CELLS[n] for n in c.factory.co_freevars)
        factory = types.FunctionType(c.factory, dict(_NAMESPACE), "_factory", None, closure)
        fns = _INSTANCES[c.code_hash] = factory()
    return fns


# ---- gas and memory ----------------------------------------------------------------------

def charge(amount: int) -> None:
    v = _GAS.cell_contents - amount
    _GAS.cell_contents = v
    if v < 0:
        raise E.OutOfGas("out of gas")


def allocate(nbytes: int) -> None:
    """Count memory a builtin is about to allocate, and charge gas for it."""
    v = _MEM.cell_contents - nbytes
    _MEM.cell_contents = v
    if v < 0:
        raise E.LimitExceeded(f"memory limit of {MAX_MEMORY // 2**20} MiB per transaction reached")
    charge(G.BUILTIN + (nbytes >> 10) * G.MEMORY_PER_KIB)


def _oog() -> None:
    raise E.OutOfGas("out of gas")


def _oom() -> None:
    raise E.LimitExceeded(f"memory limit of {MAX_MEMORY // 2**20} MiB per transaction reached")


def _deep() -> None:
    raise E.LimitExceeded(f"call depth over {MAX_CALL_DEPTH}")


def _bigint() -> None:
    raise E.LimitExceeded(f"integer over {MAX_INT_BITS} bits")


def _ck(v: int) -> int:
    """A plain-arithmetic int leaving its expression: bound its size, count its memory."""
    bits = v.bit_length()
    if bits > MAX_INT_BITS:
        _bigint()
    if bits > 512:
        allocate(bits >> 3)
    return v


# ---- value types -------------------------------------------------------------------------

_NoneType = type(None)
_SCALAR = (int, bool, str, bytes, _NoneType, Decimal)
_SEQ = (list, tuple, str, bytes)
_FLAT_KEY_TYPES = frozenset((int, bool, str, bytes, _NoneType))
_TYPE_NAMES = {int: "int", bool: "bool", str: "str", bytes: "bytes", _NoneType: "None", list: "list",
               tuple: "tuple", dict: "dict", Decimal: "Decimal", range: "range"}


def type_name(v: Any) -> str:
    t = type(v)
    if t in _TYPE_NAMES:
        return _TYPE_NAMES[t]
    if t is Storage:
        return "storage"
    if t is Ctx:
        return "ctx"
    return "function"


def _a(v: Any) -> str:
    """'an int', 'a str': the type of v with its article, for messages."""
    name = type_name(v)
    return ("an " if name[0] in "aeiou" else "a ") + name


def _err(msg: str) -> E.ContractRuntimeError:
    return E.ContractRuntimeError(msg)


def _isint(v: Any) -> bool:
    t = type(v)
    return t is int or t is bool


def _size_cost(v: Any) -> int:
    """Elements and bytes of a value as a walk visits them (shared parts each time they
    are reached), charged as it goes: a structure whose logical size is huge runs out of
    gas after work proportional to the gas it had."""
    budget = max(_GAS.cell_contents, 0) // G.WALK_PER_ELEMENT + 1
    n = 0
    stack = [(v, 0)]
    while stack:
        x, depth = stack.pop()
        t = type(x)
        n += 1
        if t is str or t is bytes:
            n += len(x) >> 5
        elif t is int:
            n += x.bit_length() >> 6
        elif t is list or t is tuple or t is dict:
            if depth >= MAX_VALUE_DEPTH:
                raise E.LimitExceeded(f"value nested more than {MAX_VALUE_DEPTH} deep")
            n += len(x)
            if n > budget:
                break
            if t is dict:
                stack.extend((k, depth + 1) for k in x)
                stack.extend((y, depth + 1) for y in x.values())
            else:
                stack.extend((y, depth + 1) for y in x)
        if n > budget:
            break
    charge(n * G.WALK_PER_ELEMENT)
    return n


def _len_cost(v: Any) -> int:
    """Cost of a C-level pass over a flat sequence."""
    t = type(v)
    if t is str or t is bytes:
        return (len(v) >> 5) * G.PER_32_BYTES
    return len(v) * G.PER_ELEMENT


def _check_len(n: int, what: str = "value") -> None:
    if n > MAX_LEN:
        # never f"{n}": past 640 digits its text depends on the host's PYTHONINTMAXSTRDIGITS
        size = int_to_str(n) if n < 1 << 64 else "over 2**64"
        raise E.LimitExceeded(f"{what} of {size} elements is over the limit of {MAX_LEN}")


def _mem_of(t: type, n: int) -> int:
    return n + 64 if t is str or t is bytes else 8 * n + 64


def _key(k: Any) -> Any:
    """A value used as a dict key: only values that hash the same on every node, and
    never more than MAX_SAME_HASH distinct keys of one hash group (values.hash_group) in
    one execution, so no dict operation walks a long chain of colliding keys."""
    _check_key(k)
    group = hash_group(k)
    if group is not None:
        same = _RT.chosen_hashes.setdefault(group, [])
        charge(G.BUILTIN + len(same) * G.PER_ELEMENT)
        if k not in same:
            if len(same) >= MAX_SAME_HASH:
                raise E.LimitExceeded(f"more than {MAX_SAME_HASH} dict keys share one hash")
            same.append(k)
            # kept to the end of the execution: its memory counts (not its gas, which
            # the key's own charges cover)
            left = _MEM.cell_contents - 160
            _MEM.cell_contents = left
            if left < 0:
                _oom()
    return k


def _check_key(k: Any) -> None:
    """Refuse what cannot be a key, and charge for hashing it (storage keys too: they
    are never keys of a dict here, only encoded, so they skip _key's hash groups)."""
    t = type(k)
    if t is str or t is bytes:
        charge(G.BUILTIN + (len(k) >> 5) * G.PER_32_BYTES)
        return
    if t is tuple:
        if len(k) <= 8 and _FLAT_KEY_TYPES.issuperset(map(type, k)):  # the common ("balance", owner) key
            charge(3 * G.BUILTIN + sum(len(x) >> 5 for x in k if type(x) in (str, bytes)) * G.PER_32_BYTES)
            return
        _size_cost(k)
        stack = list(k)
        while stack:
            x = stack.pop()
            if type(x) is tuple:
                stack.extend(x)
            elif type(x) not in _SCALAR:
                raise _err(f"a dict key cannot hold {_a(x)}: keys are int, str, bytes, bool, None, "
                           "Decimal or tuples of them")
    elif t not in _SCALAR:
        raise _err(f"{_a(k)} cannot be a dict key: keys are int, str, bytes, bool, None, Decimal "
                   "or tuples of them")


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
        allocate(_mem_of(ta, n))
        charge(_len_cost(a) + _len_cost(b))
        return a + b
    if _decimal_pair(a, b):
        charge(G.BUILTIN + G.words(int(a)) + G.words(int(b)))
        return _number(a + b)
    raise _bad_operands("+", a, b)


def _iadd(a: Any, b: Any) -> Any:
    """`a += b`: a list grows in place, as in Python; anything else is `a + b`."""
    if type(a) is list:
        if type(b) not in (list, tuple):
            raise _bad_operands("+=", a, b)
        _check_len(len(a) + len(b))
        allocate(8 * len(b))
        charge(_len_cost(b))
        a += b
        return a
    return _add(a, b)


def _sub(a: Any, b: Any) -> Any:
    if _isint(a) and _isint(b):
        charge(G.BUILTIN + G.words(a) + G.words(b))
        return _number(a - b)
    if _decimal_pair(a, b):
        charge(G.BUILTIN)
        return _number(a - b)
    raise _bad_operands("-", a, b)


def _repeat(seq: Any, k: int) -> Any:
    n = len(seq) * max(int(k), 0)
    _check_len(n)
    allocate(_mem_of(type(seq), n))
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
        charge(G.BUILTIN + 4 * G.words(int(a) or 1) * G.PER_WORD_PRODUCT)
        return _number(a * b)
    raise _bad_operands("*", a, b)


def _imul(a: Any, b: Any) -> Any:
    if type(a) is list and _isint(b):
        k = max(int(b), 0)
        _check_len(len(a) * k)
        allocate(8 * len(a) * k)
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
        charge(G.BUILTIN + 4 * G.PER_WORD_PRODUCT)
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
        charge(G.BUILTIN + 4 * G.PER_WORD_PRODUCT)
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
    if ta is str or ta is bytes or tb is str or tb is bytes:
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
    if t not in _SEQ and t is not range:
        raise _err(f"{_a(x)} cannot be sliced")
    n = _slice_len(x, lo, hi, st)
    allocate(_mem_of(t, n))
    charge(n * G.PER_ELEMENT if t in (list, tuple) else (n >> 5) * G.PER_32_BYTES)
    return x[lo:hi:st]


def _setitem(x: Any, k: Any, v: Any) -> None:
    t = type(x)
    if t is list:
        charge(G.BUILTIN)
        try:
            x[_index(k)] = v
        except IndexError:
            raise _err("list assignment index out of range") from None
    elif t is dict:
        charge(G.BUILTIN)
        _key(k)
        if k not in x:
            _check_len(len(x) + 1, "dict")
            allocate(64)
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
    allocate(8 * len(v))
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
    if name in METHODS:
        raise _err(f".{name} is a method: call it, as in x.{name}(...)")
    raise _err(f"{_a(x)} has no attribute {name}")


_ANNOTATION_TYPES = {"int": (int,), "str": (str,), "bytes": (bytes,), "bool": (bool,), "list": (list,),
                     "dict": (dict,), "tuple": (tuple,), "Decimal": (Decimal,)}


def _argtype(v: Any, tname: str, param: str) -> None:
    if type(v) not in _ANNOTATION_TYPES[tname]:
        raise E.InvalidArguments(f"argument {param!r} must be {tname}, not {type_name(v)}")


# ---- ctx and storage -----------------------------------------------------------------------

class Ctx:
    """`ctx`: read-only facts about the current call (DESIGN 3)."""

    __slots__ = ()

    def field(self, name: str) -> Any:
        rt, frame = _RT, _RT.frames[-1]
        if name == "sender":
            return rt.env.origin
        if name == "caller":
            return frame.caller
        if name == "this":
            return frame.this
        if name == "value":
            return frame.value
        if name == "balance":
            charge(G.STORAGE_READ)
            return rt.host.balance(frame.this)
        if name == "block_height":
            return rt.env.block_height
        if name == "block_time":
            return rt.env.block_time
        return rt.env.chain_id  # chain_id

    def __iter__(self):
        raise _err("cannot iterate over ctx")


class Storage:
    """`storage`: the running contract's persistent mapping (keys as dict keys)."""

    __slots__ = ()

    def __iter__(self):
        raise _err("cannot iterate over storage: keep an index of keys in storage")


_CTX = Ctx()
_STORAGE = Storage()


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
    raw = _RT.host.storage_get(_RT.frames[-1].this, key)
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
    return _RT.host.storage_get(_RT.frames[-1].this, key) is not None


def _sstore(k: Any, v: Any) -> None:
    key = _storage_key(k)
    charge(G.STORAGE_WRITE)
    if type(v) not in _SCALAR:
        _size_cost(v)
    raw = encode_value(v, MAX_STORAGE_VALUE_BYTES)
    charge((len(key) + len(raw)) * G.STORAGE_PER_BYTE)
    _RT.host.storage_set(_RT.frames[-1].this, key, raw)


def _sdel(k: Any) -> None:
    key = _storage_key(k)
    charge(G.STORAGE_DELETE + len(key) * G.STORAGE_PER_BYTE)
    _RT.host.storage_set(_RT.frames[-1].this, key, None)


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
        charge(G.words(v) ** 2 * G.PER_WORD_PRODUCT)  # decimal conversion is quadratic
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
    if t is range:
        step = "" if v.step == 1 else ", " + int_to_str(v.step)
        return f"range({int_to_str(v.start)}, {int_to_str(v.stop)}{step})"
    raise _err(f"{_a(v)} cannot be converted to str")


def _to_text(v: Any) -> str:
    n = _size_cost(v)
    if type(v) is not str:
        allocate(32 * n)
    s = _text(v)
    _check_len(len(s), "str")
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
        allocate(x + 64)
        return bytes(x)
    if t is bytes:
        charge(G.BUILTIN)
        return x
    if t in (list, tuple):
        _check_len(len(x), "bytes")
        allocate(len(x) + 64)
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
    charge(len(items) * G.WALK_PER_ELEMENT)  # a loop in Python, and _key costs nothing for an int
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
    allocate(64 * len(d) + 64)
    charge(len(d) * G.PER_ELEMENT)
    return d


def b_divmod(a: Any, b: Any) -> tuple:
    return (_divide("//", a, b), _divide("%", a, b))


def _materialise(it: Any, what: str) -> list:
    it = _flat(it, what)
    _check_len(len(it))
    allocate(8 * len(it) + 64)
    return list(it)


def b_enumerate(it: Any, start: Any = 0) -> list:
    items = _materialise(it, "enumerate")
    allocate(64 * len(items))
    s = int(_index(start))
    if s.bit_length() > 512:  # every index is a new int as big as start: count them
        allocate(len(items) * (s.bit_length() >> 3))
    return [(i + s, x) for i, x in enumerate(items)]


# str.translate tables that delete the digits of base 2, 8 and 16
_DIGITS = {b: str.maketrans("", "", "0123456789abcdefABCDEF"[:n]) for b, n in ((2, 2), (8, 8), (16, 22))}


def b_int(x: Any = 0, base: Any = None) -> int:
    t = type(x)
    if base is not None:
        if t is not str or not _isint(base) or base not in (2, 8, 10, 16):
            raise _err("int(text, base) takes a str and a base of 2, 8, 10 or 16")
        charge(G.BUILTIN + (len(x) >> 5) * G.PER_32_BYTES)
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
        charge(G.BUILTIN + (len(x) >> 5) * G.PER_32_BYTES * G.words(1 << min(len(x) * 4, MAX_INT_BITS)))
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
            raise _err("isinstance() takes a type (int, str, bytes, bool, list, dict, tuple, Decimal) or a tuple of them")
        real += _ISINSTANCE_TYPES[k]
    return isinstance(x, real)


def b_len(x: Any) -> int:
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
    charge(size * G.PRINT_PER_BYTE)  # before joining: the text can be far bigger than the part kept
    rt = _RT
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
    allocate((64 + 8 * len(seqs)) * n + 64)
    charge(n * len(seqs) * G.PER_ELEMENT)
    return list(zip(*seqs))


def b_Decimal(x: Any = 0) -> Decimal:
    charge(G.BUILTIN + ((len(x) >> 5) * G.PER_32_BYTES if type(x) is str else 0))
    return _number(Decimal(x))


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
    rt = _RT
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
    rt = _RT
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
    rt = _RT
    contract = _address(contract, "call()'s contract")
    if type(function) is not str:
        raise _err("call()'s function name must be a str")
    charge(G.CONTRACT_CALL)
    if any(f.this == contract for f in rt.frames):
        raise E.Reentrancy(f"contract 0x{contract.hex()} is already running: re-entering it is not allowed")
    args = _copy_value(list(args), MAX_ARGS_BYTES, "call() arguments")
    kwargs = _copy_value(kwargs, MAX_ARGS_BYTES, "call() arguments")
    out = invoke(rt, contract, rt.frames[-1].this, 0, function, args, kwargs)
    return _copy_value(out, MAX_OUTPUT_BYTES, "call() result")


# ---- methods ---------------------------------------------------------------------------------

def _list_append(x: list, v: Any) -> None:
    _check_len(len(x) + 1)
    allocate(16)
    x.append(v)


def _list_extend(x: list, v: Any) -> None:
    _iadd(x, v)


def _list_insert(x: list, i: Any, v: Any) -> None:
    _check_len(len(x) + 1)
    allocate(16)
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
    allocate(_mem_of(type(x), len(x)) * (8 if type(x) is dict else 1))
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
        allocate((8 if which != "items" else 72) * len(x) + 64)
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
        allocate(64)
    return x.setdefault(k, default)


def _dict_update(x: dict, other: Any) -> None:
    # other's keys are hashed again as they go into x: each is charged and counted (_key)
    pairs = _pairs(list(other.items()) if type(other) is dict else other)
    _check_len(len(x) + len(pairs), "dict")
    allocate(64 * len(pairs))
    charge(len(pairs) * G.PER_ELEMENT)
    x.update(pairs)


def _text_cost(x: Any, extra: int = 0) -> None:
    charge(G.BUILTIN + ((len(x) + extra) >> 5) * G.PER_32_BYTES)


def _case(table: dict) -> Callable[[Any], Any]:
    def change(x: Any) -> Any:
        _text_cost(x)
        allocate(len(x) + 64)
        return x.translate(table) if type(x) is str else (x.upper() if table is _UPPER else x.lower())
    return change


def _strip(kind: str) -> Callable[..., Any]:
    def strip(x: Any, chars: Any = None) -> Any:
        if chars is not None and type(chars) is not type(x):
            raise _err(f"{kind}() takes {_a(x)} of characters")
        _text_cost(x)
        allocate(len(x) + 64)
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
    allocate(2 * len(x) + 64)
    if sep is None and type(x) is str:
        parts = _ASCII_WS_RUN.split(x.lstrip(_ASCII_WS), maxsplit=max(maxsplit, 0) if maxsplit >= 0 else 0)
        if maxsplit == 0:
            parts = [x.lstrip(_ASCII_WS)] if x.lstrip(_ASCII_WS) else []
        elif parts and parts[-1] == "":
            parts.pop()
    else:
        parts = x.split(sep, maxsplit)
    allocate(64 * len(parts))
    return parts


def _join(sep: Any, items: Any) -> Any:
    if type(items) not in (list, tuple):
        raise _err("join() takes a list or tuple")
    total = len(sep) * max(len(items) - 1, 0)
    for s in items:
        if type(s) is not type(sep):
            raise _err(f"join() on {_a(sep)} needs {type_name(sep)} items, not {type_name(s)}")
        total += len(s)
    _check_len(total, type_name(sep))
    allocate(total + 64)
    charge(G.BUILTIN + len(items) * G.PER_ELEMENT + (total >> 5) * G.PER_32_BYTES)
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
    allocate(n + 64)
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
    allocate(4 * len(x) + 64)
    try:
        return x.encode("utf-8")
    except UnicodeEncodeError:
        raise _err("str holds a lone surrogate and cannot be encoded") from None


def _decode(x: bytes, encoding: Any = "utf-8") -> str:
    if encoding not in ("utf-8", "utf8"):
        raise _err("decode() only supports utf-8")
    _text_cost(x)
    allocate(len(x) + 64)
    try:
        return x.decode("utf-8")
    except UnicodeDecodeError:
        raise _err("bytes are not valid UTF-8") from None


def _hex(x: bytes) -> str:
    _text_cost(x)
    allocate(2 * len(x) + 64)
    return x.hex()


def _fromhex(cls: Any, s: Any) -> bytes:
    if cls is not b_bytes or type(s) is not str:
        raise _err("fromhex is called as bytes.fromhex(text)")
    _text_cost(s)
    allocate(len(s) + 64)
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise _err("fromhex() got text that is not hex") from None


def _to_bytes(x: int, length: Any = 1, byteorder: Any = "big", *, signed: Any = False) -> bytes:
    if not _isint(length) or not 0 <= length <= MAX_LEN or byteorder not in ("big", "little") \
            or type(signed) is not bool:
        raise _err("to_bytes(length, byteorder='big'|'little', signed=False)")
    allocate(length + 64)
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


# ---- the namespace compiled code runs in ---------------------------------------------------

BUILTIN_FUNCTIONS: dict[str, Callable] = {
    "abs": b_abs, "all": b_all, "any": b_any, "bool": b_bool, "bytes": b_bytes, "dict": b_dict,
    "divmod": b_divmod, "enumerate": b_enumerate, "int": b_int, "isinstance": b_isinstance, "len": b_len,
    "list": b_list, "max": b_max, "min": b_min, "pow": b_pow, "print": b_print, "range": b_range,
    "reversed": b_reversed, "sorted": b_sorted, "str": b_str, "sum": b_sum, "tuple": b_tuple, "zip": b_zip,
}
INJECTED: dict[str, Any] = {
    "storage": _STORAGE, "ctx": _CTX, "emit": b_emit, "require": b_require, "transfer": b_transfer,
    "call": b_call, "Decimal": b_Decimal,
}
_ISINSTANCE_TYPES.update({b_int: (int,), b_str: (str,), b_bytes: (bytes,), b_bool: (bool,), b_list: (list,),
                          b_dict: (dict,), b_tuple: (tuple,), b_Decimal: (Decimal,)})
_HELPERS = {f.__name__: f for f in (
    _oog, _oom, _deep, _bigint, _ck, _key, _add, _iadd, _sub, _mul, _imul, _floordiv, _mod, _truediv, _pow,
    _lshift, _rshift, _and, _or, _xor, _neg, _pos, _inv, _eq, _ne, _lt, _le, _gt, _ge, _in, _notin,
    _getitem, _getslice, _setitem, _setslice, _delitem, _delslice, _iter, _unpack, _attr, _argtype,
    _sload, _sstore, _sdel, _sget_or)}
_NAMESPACE: dict[str, Any] = {"__builtins__": {}, **BUILTIN_FUNCTIONS, **INJECTED, **_HELPERS,
                              **{"_m_" + m: _method(m) for m in METHODS}}


# ---- running contract code -------------------------------------------------------------------

def invoke(rt: Execution, contract: bytes, caller: bytes, value: int, function: str, args: list,
           kwargs: dict, compiled: Compiled | None = None) -> Any:
    """Run one exported function (or the constructor, when `compiled` is given) of a
    contract as a new frame; errors carry where they happened."""
    if len(rt.frames) >= MAX_CALL_DEPTH:
        _deep()
    if compiled is None:
        source = rt.host.get_code(contract)
        if source is None:
            raise E.NotFound(f"no contract at 0x{contract.hex()}")
        compiled = load(source)
        if function not in compiled.exports:
            # ascii(), not repr(): repr keeps what each CPython's Unicode tables call printable
            raise E.NotFound(f"contract 0x{contract.hex()} exports no function {ascii(function)}")
    fn = _functions(compiled)[function]
    rt.frames.append(Frame(contract, caller, value, compiled))
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - whatever contract code caused becomes a receipt
        err = e if isinstance(e, E.VMError) else _translate(e)
        if err.contract is None:
            _locate_error(err, contract, compiled, e.__traceback__)
            if not err.function:  # the call itself failed (its arguments): point at the def
                err.function, err.line = function, fn.__code__.co_firstlineno
        if err is e:
            raise
        raise err from None
    finally:
        rt.frames.pop()


_HOST_ERRORS: list[tuple[type, str]] = [
    (ZeroDivisionError, "division by zero"),
    (KeyError, "key not found"),
    (IndexError, "index out of range"),
    # one message for both: a local read by a comprehension before it is assigned is a
    # NameError on 3.11 (a free variable) and an UnboundLocalError on 3.12+ (inlined)
    (NameError, "a local variable was used before it was assigned"),
    (OverflowError, "number too large"),
    (TypeError, "a value of the wrong type, or the wrong number of arguments"),
    (ValueError, "invalid value"),
    (RuntimeError, "a dict changed size while it was iterated over"),
]


def _translate(e: Exception) -> E.VMError:
    """A host exception raised by contract code, in the VM's own words (host messages
    differ between CPython releases and must never reach a receipt)."""
    if isinstance(e, RecursionError):
        return E.LimitExceeded("value or call nesting too deep")
    if isinstance(e, MemoryError):
        return E.LimitExceeded("out of memory")
    if isinstance(e, TypeError) and e.__traceback__ is not None and e.__traceback__.tb_next is None:
        return E.InvalidArguments("the arguments do not match the function's parameters")
    for cls, message in _HOST_ERRORS:
        if isinstance(e, cls):
            return E.ContractRuntimeError(message)
    return E.ContractRuntimeError("the operation failed")


def _locate_error(e: E.VMError, contract: bytes, compiled: Compiled, tb: Any) -> None:
    """Attach the innermost contract, function and source line.  A comprehension is
    reported as the function it is written in: 3.11 runs it as a code object of its own
    (<listcomp>), 3.12+ inline, and receipts must not tell them apart."""
    e.contract = contract
    filename = FILENAME_PREFIX + compiled.code_hash.hex()[:16] + ">"
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename and code.co_name not in ("_factory", "_outer"):
            if not code.co_name.startswith("<"):
                e.function = code.co_name
            e.line = tb.tb_lineno
        tb = tb.tb_next


def execute(host: Host, env: Env, gas_limit: int, run: Callable[[Execution], Any]) -> Outcome:
    """Run `run(execution)` with `gas_limit` gas; never raises for a contract's fault."""
    global _RT
    with _LOCK:
        rt = Execution(host, env)
        prev = _RT, _GAS.cell_contents, _DEPTH.cell_contents, _MEM.cell_contents
        _RT = rt
        _GAS.cell_contents, _DEPTH.cell_contents, _MEM.cell_contents = gas_limit, 0, MAX_MEMORY
        out = Outcome(0)
        try:
            out.output = run(rt)
        except E.VMError as e:
            out.error = e
        finally:
            left = _GAS.cell_contents
            _RT = prev[0]
            _GAS.cell_contents, _DEPTH.cell_contents, _MEM.cell_contents = prev[1:]
        out.gas_used = gas_limit if out.error is not None and out.error.code == "out_of_gas" \
            else min(gas_limit - left, gas_limit)
        out.events, out.logs = rt.events, rt.logs
        return out


def call_function(rt: Execution, contract: bytes, function: str, args: list, kwargs: dict, value: int) -> bytes:
    """A transaction's or read-only call's entry: returns the encoded result."""
    result = invoke(rt, contract, rt.env.origin, value, function, args, kwargs)
    return _encode_output(result)


def deploy_contract(rt: Execution, contract: bytes, source: str, args: list, kwargs: dict, value: int) -> Compiled:
    """Validate and compile `source` and run its constructor.  The caller stores the
    code (ledger.contracts) once this returns."""
    try:
        compiled = load(source)
    except ContractInvalid as e:
        raise E.InvalidContract([str(i) for i in e.issues]) from None
    if compiled.constructor is not None:
        invoke(rt, contract, rt.env.origin, value, compiled.constructor, args, kwargs, compiled)
    elif args or kwargs:
        raise E.InvalidArguments("the contract has no @constructor to take arguments")
    return compiled


def _encode_output(v: Any) -> bytes:
    try:
        return encode_value(v, MAX_OUTPUT_BYTES)
    except E.VMError as e:
        raise E.InvalidValue(f"the function's result cannot be returned: {e.message}") from None
