"""What the wrappers know about values: their type names, their sizes and the price of
walking them, and which values may be dict or storage keys (and at what cost)."""
from __future__ import annotations

from typing import Any

from vm import errors as E
from vm import gas as G
from vm.limits import MAX_LEN, MAX_SAME_HASH, MAX_VALUE_DEPTH
from vm.values import Decimal, Model, Tensor, hash_group, int_to_str
from vm import meter
from vm.meter import _GAS, _MEM, _oom, charge


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


def _mem_of(t: type, n: int) -> int:
    return n + 64 if t is str or t is bytes else 8 * n + 64


def _key(k: Any) -> Any:
    """A value used as a dict key: only values that hash the same on every node, and
    never more than MAX_SAME_HASH distinct keys of one hash group (values.hash_group) in
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
