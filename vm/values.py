"""What a contract value is.

A contract keeps, stores, emits, passes and returns only these values: None, bool, int,
str, bytes, list, tuple, dict, the fixed-point `Decimal` (vm/decimals.py), and the immutable ML
values `Tensor` and `Model` (vm/tensors.py; the `ml` API of vm/ml.py computes with them).  Every
node must agree on each value's bytes (vm/codec.py), on every result of Decimal arithmetic, and
on every error (class and message), so nothing in these modules depends on PYTHONHASHSEED, on
the host's int <-> str digit limit (vm/intstr.py) or on the CPython version (3.11, 3.12, 3.13),
and no host exception text ever reaches a receipt.  Dict keys and their hash groups are in
vm/hash_groups.py, the JSON views for RPC and the CLI in vm/json_values.py.

This module holds what they all share: a value's type name in messages, the bound on ints,
and the error for anything that is not a value.
"""
from __future__ import annotations

from typing import Any

from vm.errors import InvalidValue, LimitExceeded
from vm.limits import MAX_INT_BITS


def _type_name(v: Any) -> str:
    return "None" if v is None else type(v).__name__


def _check_int(n: int) -> int:
    if n.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"an int may have at most {MAX_INT_BITS} bits")
    return n


def _not_a_value(v: Any) -> InvalidValue:
    return InvalidValue(
        f"a value of type {_type_name(v)} cannot be stored, emitted, passed or returned "
        "(only None, bool, int, str, bytes, list, tuple, dict, Decimal, Tensor and Model can)")
