"""GRAD and its base units: amounts on chain are base units; people read GRAD.  Here so that
the node's own messages (a refused transaction's reason) speak GRAD as the CLI does."""
from __future__ import annotations

DECIMALS = 9
COIN = 10**DECIMALS  # base units in one GRAD


def format_grad(units: int) -> str:
    """Base units as exact GRAD text: 1000000000000021 -> '1000000.000000021 GRAD'."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), COIN)
    text = f"{whole}.{frac:0{DECIMALS}d}".rstrip("0").rstrip(".")
    return f"{sign}{text} GRAD"
