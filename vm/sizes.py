"""What the wrappers know about values: their type names, their sizes and the price of
walking them, and which values may be dict or storage keys (and at what cost)."""
from __future__ import annotations

from typing import Any

from vm import errors as E
from vm import gas as G
from vm.limits import MAX_LEN, MAX_SAME_HASH, MAX_VALUE_DEPTH
from vm.decimals import Decimal
from vm.hash_groups import hash_group
from vm.intstr import int_to_str
from vm.tensors import Model, Tensor
from vm import meter
from vm.meter import _GAS, _MEM, _oom, charge, hold


# ---- value types -------------------------------------------------------------------------

_NoneType = type(None)
_SCALAR = (int, bool, str, bytes, _NoneType, Decimal)
_SEQ = (list, tuple, str, bytes)
_FLAT_KEY_TYPES = frozenset((int, bool, str, bytes, _NoneType))
_TYPE_NAMES = {int: "int", bool: "bool", str: "str", bytes: "bytes", _NoneType: "None", list: "list",
               tuple: "tuple", dict: "dict", Decimal: "Decimal", range: "range", Tensor: "Tensor",
               Model: "Model"}


def type_name(v: Any) -> str:
    t = type(v)
    if t in _TYPE_NAMES:
        return _TYPE_NAMES[t]
    if t is Storage:
        return "storage"
    if t is Ctx:
        return "ctx"
    if t is ML:
        return "ml"
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
        elif t is Tensor or t is Model:  # copied in C: by the 256 bytes
            n += x.nbytes >> 8
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


# ---- what CPython allocates ------------------------------------------------------------------
# Fixed formulas of the value alone (never sys.getsizeof, which differs between releases),
# at or above what CPython 3.11-3.13 on 64 bits really allocates: object headers as in
# Include/cpython/*.h, 16 bytes of GC header on containers, pymalloc's 16-byte rounding.
# The memory budget (MAX_MEMORY) is counted with them, so a transaction's real growth
# stays within it for every kind of value (tests/test_hostile_vm.py measures RSS).

LIST_SLOT = 16      # a list item grown one at a time: 8 bytes, 1/8 over-allocation, a realloc's slack
LIST_BYTES = 80     # a list's header (GC header included) and its item array's rounding
TUPLE_BYTES = 48    # a tuple's header (GC header included) and rounding, beside its 8-byte slots
DICT_BYTES = 64     # an empty dict (it shares CPython's empty key table)
DICT_TABLE = 96     # its first table beyond its entries (8 slots, 5 usable)
DICT_ENTRY = 80     # a dict entry: 24 bytes in a table kept at most 2/3 full, indices, resize slack
DECIMAL_BYTES = 48  # a vm.decimals.Decimal: one slot and a GC header, beside its int


def _round16(n: int) -> int:
    return (n + 15) & ~15


def int_bytes(v: int) -> int:
    """A new int object: 24 bytes of header and 4 bytes per 30-bit digit."""
    return _round16(24 + 4 * max((abs(v).bit_length() + 29) // 30, 1))


def str_bytes(n: int, ascii: bool) -> int:
    """A str of n characters and its NUL: 48 bytes of header (3.11's; 40 since 3.12) and 1
    byte a character when it is ASCII, else 72 (56) and up to 4 (str.isascii() is free;
    the widest character is not)."""
    return _round16(49 + n) if ascii else _round16(72 + 4 * (n + 1))


def bytes_bytes(n: int) -> int:
    return _round16(33 + n)


def dict_bytes(n: int) -> int:
    return DICT_BYTES + (DICT_TABLE + DICT_ENTRY * n if n else 0)


def seq_bytes(v: Any, n: int) -> int:
    """A new str, bytes, list or tuple of n items made from (the items of) v."""
    t = type(v)
    if t is str:
        return str_bytes(n, v.isascii())
    if t is bytes:
        return bytes_bytes(n)
    return (TUPLE_BYTES if t is tuple else LIST_BYTES) + 8 * n


def fresh_bytes(v: Any) -> int:
    """The object a value placed in a container may be new for: an int (outside the
    -5..256 that CPython caches) or a Decimal.  Every other value was counted where it was
    built (literals, wrappers), and None, bools and the cached ints are shared."""
    t = type(v)
    if t is int:
        return 0 if -5 <= v <= 256 else int_bytes(v)
    if t is Decimal:
        return DECIMAL_BYTES + int_bytes(v._q)
    return 0


def _kept(v: Any) -> Any:
    """An element of a literal or comprehension: count the int or Decimal it may make
    live for as long as its container (`[i * 7 for i in range(n)]` keeps a 32-byte int
    per item beside its 8-byte slot)."""
    t = type(v)
    if t is int:
        if -5 <= v <= 256:
            return v
        n = 32 if -_SMALL < v < _SMALL else int_bytes(v)
    elif t is Decimal:
        n = DECIMAL_BYTES + int_bytes(v._q)
    else:
        return v
    left = _MEM.cell_contents - n  # meter.hold, inline: this runs for every element
    _MEM.cell_contents = left
    if left < 0:
        _oom()
    return v


_SMALL = 1 << 60  # ints of at most two 30-bit digits: 32 bytes


def _key(k: Any) -> Any:
    """A value used as a dict key: only values that hash the same on every node, and
    never more than MAX_SAME_HASH distinct keys of one hash group (hash_groups.hash_group) in
    one execution, so no dict operation walks a long chain of colliding keys."""
    _check_key(k)
    group = hash_group(k)
    if group is not None:
        same = meter.RT.chosen_hashes.setdefault(group, [])
        charge(G.BUILTIN + len(same) * G.PER_ELEMENT)
        if k not in same:
            if len(same) >= MAX_SAME_HASH:
                raise E.LimitExceeded(f"more than {MAX_SAME_HASH} dict keys share one hash")
            same.append(k)
            # kept to the end of the execution: its memory counts (not its gas, which
            # the key's own charges cover)
            hold(160)
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


# ---- the objects that are not values: ctx, storage and ml ---------------------------------

class Ctx:
    """`ctx`: read-only facts about the current call (DESIGN 3)."""

    __slots__ = ()

    def field(self, name: str) -> Any:
        rt, frame = meter.RT, meter.RT.frames[-1]
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


class ML:
    """`ml`: the injected object whose methods (vm/ml.py) make and train models."""

    __slots__ = ()

    def __iter__(self):
        raise _err("cannot iterate over ml")


_CTX = Ctx()
_STORAGE = Storage()
_ML = ML()
