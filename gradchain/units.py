"""GRAD <-> base units, with integer arithmetic only: amounts on chain are base units
(unsigned 64-bit), people write and read GRAD with up to 9 decimals.

    parse_amount("1.5") == 1_500_000_000 == parse_amount("1500000000u")
    format_grad(1_000_000_000_000_021) == "1000000.000000021 GRAD"
"""
from __future__ import annotations

import re

from gradchain.errors import GradchainError
from ledger.units import COIN, DECIMALS, format_grad
from ledger.tx import U64_MAX

__all__ = ["COIN", "DECIMALS", "AmountError", "parse_amount", "format_grad"]


class AmountError(GradchainError, ValueError):
    """Text that is not an amount; the message says why, in the words the CLI prints."""


_GRAD_RE = re.compile(r"(\d+)(?:\.(\d+))?")
_UNITS_RE = re.compile(r"(\d+)u")


def parse_amount(text: str) -> int:
    """`1.5` (GRAD, up to 9 decimals) or `1500000000u` (base units) -> base units."""
    s = text.strip().replace("_", "")
    if s.startswith("-"):
        raise AmountError(f"bad amount {text!r}: amounts cannot be negative")
    if s.startswith("+"):
        s = s[1:]
    m = _UNITS_RE.fullmatch(s)
    if m:
        units = int(m.group(1))
    else:
        m = _GRAD_RE.fullmatch(s)
        if not m:
            raise AmountError(f"bad amount {text!r}: give GRAD like 1.5 or base units like 1500000000u")
        whole, frac = m.group(1), m.group(2) or ""
        if len(frac) > DECIMALS:
            raise AmountError(f"bad amount {text!r}: GRAD has at most {DECIMALS} decimals "
                              f"(1 base unit = 0.000000001 GRAD)")
        units = int(whole) * COIN + int(frac.ljust(DECIMALS, "0"))
    if units > U64_MAX:
        raise AmountError(f"bad amount {text!r}: over the largest amount, {format_grad(U64_MAX)}")
    return units
