"""Exact int <-> decimal text, whatever the host's int <-> str digit limit (CPython's
default refuses more than 4300 digits, and a host may set any limit): conversions run 600
digits at a time, so every node gives the same digits or the same error."""
from __future__ import annotations

from vm.errors import ContractRuntimeError, LimitExceeded
from vm.limits import MAX_INT_DIGITS
from vm.values import _check_int, _type_name

__all__ = ["int_to_str", "str_to_int"]

_CHUNK = 600                      # digits per conversion step: under CPython's minimum limit of 640
_CHUNK_BASE = 10 ** _CHUNK


def int_to_str(n: int) -> str:
    """Decimal digits of n, whatever the host's int <-> str digit limit."""
    _check_int(n)
    if -_CHUNK_BASE < n < _CHUNK_BASE:
        return str(n)
    sign, n = ("-", -n) if n < 0 else ("", n)
    chunks = []
    while n >= _CHUNK_BASE:
        n, r = divmod(n, _CHUNK_BASE)
        chunks.append(str(r).zfill(_CHUNK))
    chunks.append(str(n))
    return sign + "".join(reversed(chunks))


def _digits_to_int(digits: str) -> int:
    """The int of a non-empty string of ASCII digits, converted 600 digits at a time."""
    n = 0
    for i in range(0, len(digits), _CHUNK):
        chunk = digits[i:i + _CHUNK]
        n = n * 10 ** len(chunk) + int(chunk)
    return n


def _is_ascii_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def str_to_int(s: str) -> int:
    """Parse `[+-]digits` (ASCII 0-9 only; no spaces or underscores) into an int."""
    if type(s) is not str:
        raise ContractRuntimeError(f"expected a str, not {_type_name(s)}")
    body = s[1:] if s[:1] in ("+", "-") else s
    if not _is_ascii_digits(body):
        raise ContractRuntimeError("invalid int literal: expected an optional sign and the digits 0-9 only")
    if len(body) > MAX_INT_DIGITS:
        raise LimitExceeded(f"an int literal may have at most {MAX_INT_DIGITS} digits")
    n = _check_int(_digits_to_int(body))
    return -n if s[0] == "-" else n
