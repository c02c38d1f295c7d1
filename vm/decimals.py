"""The contract's fixed-point `Decimal`: exactly DECIMAL_PLACES (18) fractional digits, held
as one scaled int, with arithmetic and rounding that are the same on every node."""
from __future__ import annotations

from typing import Any

from vm.errors import ContractRuntimeError, LimitExceeded
from vm.intstr import _digits_to_int, _is_ascii_digits, int_to_str
from vm.limits import DECIMAL_PLACES, MAX_INT_DIGITS
from vm.values import _check_int, _type_name

__all__ = ["Decimal", "decimal_scaled"]

_SCALE = 10 ** DECIMAL_PLACES


def _round_half_even(n: int, d: int) -> int:
    """n / d rounded to the nearest int, ties to even (d != 0)."""
    if d < 0:
        n, d = -n, -d
    q, r = divmod(n, d)  # n/d = q + r/d with 0 <= r/d < 1
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
    return q


def _trunc_div(n: int, d: int) -> int:
    """n / d truncated toward zero (d != 0)."""
    q = abs(n) // abs(d)
    return q if (n < 0) == (d < 0) else -q


class Decimal:
    """A fixed-point number with exactly DECIMAL_PLACES (18) fractional digits.

    Held as one scaled int q (the value is q / 10**18), immutable.  `*` and `/` round
    half-to-even to 18 places; `//` truncates toward zero and `%` takes the dividend's
    sign (as Python's decimal module does).  Operands may be Decimal or int, never bool.
    """

    __slots__ = ("_q",)
    _q: int

    def __init__(self, value: "Decimal | int | str"):
        t = type(value)
        if t is Decimal:
            q = value._q
        elif t is int:
            q = _check_int(value * _SCALE)
        elif t is str:
            q = _parse_decimal(value)
        else:
            raise ContractRuntimeError(f"Decimal() takes an int, a str or a Decimal, not {_type_name(value)}")
        object.__setattr__(self, "_q", q)

    @classmethod
    def from_scaled(cls, q: int) -> "Decimal":
        """The Decimal q / 10**18 (for the VM, not reachable from contracts)."""
        if type(q) is not int:
            raise ContractRuntimeError(f"a scaled Decimal is an int, not {_type_name(q)}")
        d = object.__new__(cls)
        object.__setattr__(d, "_q", _check_int(q))
        return d

    def __setattr__(self, name: str, value: Any) -> None:
        raise ContractRuntimeError("Decimal values are immutable")

    def __delattr__(self, name: str) -> None:
        raise ContractRuntimeError("Decimal values are immutable")

    def __reduce__(self) -> tuple:
        return (Decimal.from_scaled, (self._q,))

    # --- operands

    def _operand(self, other: Any, op: str, reflected: bool) -> int:
        t = type(other)
        if t is Decimal:
            return other._q
        if t is int:
            return other * _SCALE
        a, b = ("Decimal", _type_name(other))
        if reflected:
            a, b = b, a
        raise ContractRuntimeError(f"unsupported operand types for {op}: {a} and {b}")

    def _ordered(self, other: Any) -> int:
        t = type(other)
        if t is Decimal:
            return other._q
        if t is int:
            return other * _SCALE
        raise ContractRuntimeError(f"Decimal and {_type_name(other)} cannot be ordered")

    # --- arithmetic

    def __add__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._q + self._operand(other, "+", False))

    def __radd__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._operand(other, "+", True) + self._q)

    def __sub__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._q - self._operand(other, "-", False))

    def __rsub__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(self._operand(other, "-", True) - self._q)

    def __mul__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(_round_half_even(self._q * self._operand(other, "*", False), _SCALE))

    def __rmul__(self, other: Any) -> "Decimal":
        return Decimal.from_scaled(_round_half_even(self._operand(other, "*", True) * self._q, _SCALE))

    def __truediv__(self, other: Any) -> "Decimal":
        return _div(self._q, self._operand(other, "/", False))

    def __rtruediv__(self, other: Any) -> "Decimal":
        return _div(self._operand(other, "/", True), self._q)

    def __floordiv__(self, other: Any) -> "Decimal":
        return _floordiv(self._q, self._operand(other, "//", False))

    def __rfloordiv__(self, other: Any) -> "Decimal":
        return _floordiv(self._operand(other, "//", True), self._q)

    def __mod__(self, other: Any) -> "Decimal":
        return _mod(self._q, self._operand(other, "%", False))

    def __rmod__(self, other: Any) -> "Decimal":
        return _mod(self._operand(other, "%", True), self._q)

    def __divmod__(self, other: Any) -> "tuple[Decimal, Decimal]":
        b = self._operand(other, "divmod()", False)
        return _floordiv(self._q, b), _mod(self._q, b)

    def __rdivmod__(self, other: Any) -> "tuple[Decimal, Decimal]":
        a = self._operand(other, "divmod()", True)
        return _floordiv(a, self._q), _mod(a, self._q)

    def __neg__(self) -> "Decimal":
        return Decimal.from_scaled(-self._q)

    def __pos__(self) -> "Decimal":
        return self

    def __abs__(self) -> "Decimal":
        return self if self._q >= 0 else Decimal.from_scaled(-self._q)

    # --- comparisons and conversions

    def __eq__(self, other: Any) -> bool:
        t = type(other)
        if t is Decimal:
            return self._q == other._q
        if t is int or t is bool:  # as in Python, True == 1: keeps dict keys consistent with hash
            return self._q == other * _SCALE
        return NotImplemented

    def __lt__(self, other: Any) -> bool:
        return self._q < self._ordered(other)

    def __le__(self, other: Any) -> bool:
        return self._q <= self._ordered(other)

    def __gt__(self, other: Any) -> bool:
        return self._q > self._ordered(other)

    def __ge__(self, other: Any) -> bool:
        return self._q >= self._ordered(other)

    def __hash__(self) -> int:
        i, r = divmod(self._q, _SCALE)
        return hash(i) if r == 0 else hash(self._q)

    def __bool__(self) -> bool:
        return self._q != 0

    def __int__(self) -> int:
        return _trunc_div(self._q, _SCALE)

    def __str__(self) -> str:
        sign, q = ("-", -self._q) if self._q < 0 else ("", self._q)
        i, f = divmod(q, _SCALE)
        frac = str(f).zfill(DECIMAL_PLACES).rstrip("0")
        return sign + int_to_str(i) + ("." + frac if frac else "")

    def __repr__(self) -> str:
        return f"Decimal('{self}')"


def decimal_scaled(d: Decimal) -> int:
    """The scaled int q of d (d == q / 10**18): for the VM, not reachable from contracts."""
    return d._q


def _parse_decimal(s: str) -> int:
    """Scaled int of `[+-]digits[.digits]` (at most 18 fractional digits, no exponent)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    whole, point, frac = body.partition(".")
    if (not whole and not frac) or not all(_is_ascii_digits(p) for p in (whole, frac) if p):
        raise ContractRuntimeError(
            "invalid Decimal literal: expected an optional sign, digits 0-9 and an optional point "
            "(no exponent, spaces or underscores)")
    if len(frac) > DECIMAL_PLACES:
        raise ContractRuntimeError(f"a Decimal has at most {DECIMAL_PLACES} fractional digits")
    if len(whole) > MAX_INT_DIGITS:
        raise LimitExceeded(f"a Decimal literal may have at most {MAX_INT_DIGITS} integer digits")
    q = _check_int(_digits_to_int(whole + frac.ljust(DECIMAL_PLACES, "0")))
    return -q if s[0] == "-" else q


def _nonzero(d: int) -> None:
    if d == 0:
        raise ContractRuntimeError("division by zero")


def _div(a: int, b: int) -> Decimal:
    _nonzero(b)
    return Decimal.from_scaled(_round_half_even(a * _SCALE, b))


def _floordiv(a: int, b: int) -> Decimal:
    _nonzero(b)
    return Decimal.from_scaled(_trunc_div(a, b) * _SCALE)


def _mod(a: int, b: int) -> Decimal:
    _nonzero(b)
    return Decimal.from_scaled(a - b * _trunc_div(a, b))
